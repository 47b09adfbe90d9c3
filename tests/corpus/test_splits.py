import pytest

from convmem.corpus.splits import check_speaker_disjoint, loso_folds, predefined_fold, speaker_overlap
from convmem.corpus.types import Dialogue, Utterance
from convmem.errors import ManifestError


def _dialogue(did: str, session: str, speakers: tuple[str, ...]) -> Dialogue:
    utts = [Utterance(f"{did}_{i}", spk, float(i), i + 0.5, "neu", audio=None) for i, spk in enumerate(speakers)]
    return Dialogue(did, session, utts)


def iemocap_like() -> list[Dialogue]:
    """5 sessions x 2 dialogues, speakers Ses0k_F / Ses0k_M unique to their session."""
    return [_dialogue(f"Ses0{k}{g}_impro0{j}", f"Ses0{k}", (f"Ses0{k}_F", f"Ses0{k}_M"))
            for k in range(1, 6) for j, g in ((1, "F"), (2, "M"))]


def test_loso_gives_one_fold_per_session():
    ds = iemocap_like()
    folds = loso_folds(ds)
    assert [f.name for f in folds] == [f"loso_Ses0{k}" for k in range(1, 6)]
    f3 = folds[2]
    assert f3.test_sessions == ("Ses03",) and f3.dev_sessions == ()
    assert f3.test_ids == ("Ses03F_impro01", "Ses03M_impro02")
    assert len(f3.train_ids) == 8 and not set(f3.train_ids) & set(f3.test_ids)
    # every dialogue is tested exactly once over the folds
    assert sorted(i for f in folds for i in f.test_ids) == sorted(d.dialogue_id for d in ds)


def test_loso_dev_sessions_follow_the_test_session():
    folds = loso_folds(iemocap_like(), dev_sessions=1)
    assert [(f.test_sessions[0], f.dev_sessions) for f in folds] == [
        ("Ses01", ("Ses02",)), ("Ses02", ("Ses03",)), ("Ses03", ("Ses04",)), ("Ses04", ("Ses05",)), ("Ses05", ("Ses01",)),
    ]
    f5 = folds[4]
    assert f5.dev_ids == ("Ses01F_impro01", "Ses01M_impro02") and len(f5.train_ids) == 6


def test_speaker_on_both_sides_is_refused():
    ds = iemocap_like()
    ds.append(_dialogue("odd", "Ses04", ("Ses02_F", "Ses04_M")))  # Ses02_F also speaks in session 4
    with pytest.raises(ManifestError) as err:
        loso_folds(ds)
    assert "split 'loso_Ses02': 1 speaker(s) on more than one side, e.g. Ses02_F in train+test" in str(err.value)


def test_too_few_sessions():
    ds = [_dialogue("a", "S1", ("x",))]
    with pytest.raises(ManifestError, match="needs at least 2 sessions, found 1"):
        loso_folds(ds)
    with pytest.raises(ManifestError, match="needs at least 3 sessions"):
        loso_folds(ds + [_dialogue("b", "S2", ("y",))], dev_sessions=1)


def meld_like() -> list[Dialogue]:
    return [
        _dialogue("train_dia0", "train", ("Chandler", "Monica")),
        _dialogue("train_dia1", "train", ("Joey", "Rachel")),
        _dialogue("dev_dia0", "dev", ("Monica", "Ross")),
        _dialogue("test_dia0", "test", ("Chandler", "Phoebe")),
    ]


def test_meld_official_split_reports_speaker_overlap():
    ds = meld_like()
    with pytest.raises(ManifestError, match="split 'official': 2 speaker\\(s\\) on more than one side, e.g. Chandler in train\\+test; Monica in train\\+dev"):
        predefined_fold(ds)
    fold = predefined_fold(ds, allow_speaker_overlap=True)
    assert fold.train_ids == ("train_dia0", "train_dia1")
    assert fold.dev_ids == ("dev_dia0",) and fold.test_ids == ("test_dia0",)
    assert speaker_overlap(ds, fold) == {"Chandler": ["train", "test"], "Monica": ["train", "dev"]}
    with pytest.raises(ManifestError):
        check_speaker_disjoint(ds, fold)
    # LOSO over MELD's splits is refused for the same reason
    with pytest.raises(ManifestError, match="on more than one side"):
        loso_folds(ds)


def test_predefined_fold_bad_sessions():
    ds = meld_like()
    with pytest.raises(ManifestError, match="session\\(s\\) \\['validation'\\] not in the manifest"):
        predefined_fold(ds, dev=("validation",), allow_speaker_overlap=True)
    with pytest.raises(ManifestError, match="are both test and dev"):
        predefined_fold(ds, test=("dev",), dev=("dev",), allow_speaker_overlap=True)
    with pytest.raises(ManifestError, match="empty train side"):
        predefined_fold(ds, test=("train", "test"), allow_speaker_overlap=True)

"""TurEV-DB pseudo-conversations: fake folders in the release layout, bad input, the shared real metadata."""

import json
from collections import Counter

import pytest

from convmem.cli import main
from convmem.corpus.manifest import read_manifest
from convmem.corpus.pseudo_conversations import PseudoConversationConfig, PseudoReport, to_dialogues
from convmem.corpus.turev import plan_turev
from convmem.errors import ManifestError
from tests.conftest import SHARED_DATA
from tests.corpus.fixtures_acted import TUREV_CODES, edit_metadata, write_fake_turev

TUREV16K = SHARED_DATA / "turev16k"
needs_turev = pytest.mark.skipif(not (TUREV16K / "metadata.csv").is_file(), reason="../shared/data/turev16k absent")


def test_command_pairs_by_id_maps_calm_to_neutral_and_uses_every_clip(tmp_path):
    src = write_fake_turev(tmp_path / "src")  # 1157: 6 clips (no calm, no happy); the others 8
    out = tmp_path / "out"
    assert main(["corpus", "turev", str(src), str(out), "--turns", "6", "--no-progress"]) == 0
    dialogues = read_manifest(out / "manifest.jsonl")
    sessions = {d.session: sorted({u.speaker for u in d.utterances}) for d in dialogues}
    assert sessions == {"turev_1157-1234": ["turev_1157", "turev_1234"], "turev_1358-1984": ["turev_1358", "turev_1984"]}
    utts = [u for d in dialogues for u in d.utterances]
    assert len(utts) == len({u.id for u in utts}) == 30
    code_to_label = {"kz": "ang", "sk": "neu", "mt": "hap", "hl": "sad"}
    assert all(u.emotion == code_to_label[u.id.split("_")[2]] for u in utts)  # calm (sk) -> neu; nothing unscored
    assert Counter(u.emotion for u in utts) == {"ang": 9, "sad": 9, "neu": 6, "hap": 6}
    assert utts[0].text in ("acik", "algi", "beste", "bugu", "cicek")
    assert [len(d.utterances) for d in dialogues] == [7, 7, 6, 6, 4]
    assert [u.id for u in dialogues[0].utterances] == PINNED_SEED0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["emotion_map"] == {"angry": "ang", "happy": "hap", "sad": "sad", "calm": "neu"}
    assert "Calm" in summary["emotion_map_note"] and "no gender" in summary["pairing"]
    assert summary["note"] == "pseudo-conversations of isolated acted single words"
    assert summary["report"] == ["2 follow-up turns (a speaker twice in a row) because paired speakers have unequal clip counts"]


PINNED_SEED0 = ["turev_1157_kz_beste", "turev_1234_mt_algi", "turev_1157_kz_algi", "turev_1234_kz_acik",
                "turev_1234_kz_algi", "turev_1157_kz_acik", "turev_1234_hl_algi"]  # 1234 twice: a follow-up turn


def test_only_four_labels():
    with pytest.raises(SystemExit):
        main(["corpus", "turev", "src", "out", "--labels", "7"])


@pytest.mark.parametrize(("change", "message"), [
    ({"emotion": "neutral"}, "column emotion: unknown TurEV-DB emotion 'neutral' (expected one of angry, calm, happy, sad)"),
    ({"emotion_code": "sk"}, "column emotion_code: 'sk' does not agree with emotion 'angry'"),
    ({"file": "Angry/1157_kz_zzz.flac"}, "column file: 'Angry/1157_kz_zzz.flac' not found"),
])
def test_bad_rows_are_named_and_nothing_is_written(tmp_path, capsys, change, message):
    src = write_fake_turev(tmp_path / "src")
    edit_metadata(src, 4, **change)  # line 4: 1157's third angry word
    assert main(["corpus", "turev", str(src), str(tmp_path / "out"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"{src / 'metadata.csv'}:4: " in err and message in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


def test_emotion_names_are_matched_without_case(tmp_path):
    src = write_fake_turev(tmp_path / "src")
    edit_metadata(src, 2, emotion="Angry")  # the folder's spelling
    plans, _ = plan_turev(src)
    assert sum(len(p.turns) for p in plans) == 30


def test_an_odd_speaker_out_is_reported(tmp_path):
    counts = {s: dict.fromkeys(TUREV_CODES, 1) for s in ("1234", "1358", "1984")}
    report = PseudoReport()
    plans, pairing = plan_turev(write_fake_turev(tmp_path / "src", counts), PseudoConversationConfig(), report)
    assert {p.session for p in plans} == {"turev_1234-1358"} and pairing.unpaired == ["1984"]
    assert report.unpaired_clips == 4
    with pytest.raises(ManifestError, match="no pair of speakers"):
        plan_turev(write_fake_turev(tmp_path / "one", {"1234": {"sad": 2}}))


@needs_turev
def test_shared_turev_metadata_maps_to_three_sessions():
    """The real table and audio headers (no audio is rendered)."""
    report = PseudoReport()
    plans, pairing = plan_turev(TUREV16K, PseudoConversationConfig(), report)
    assert report.clips == 1735 and report.unpaired == []
    assert [s.name for s in pairing.sessions] == ["turev_1157-1234", "turev_1358-1984", "turev_6783-7895"]
    # 1157 has 150 words, 1234 328; 6783 328, 7895 273: the surplus becomes follow-up turns
    assert report.follow_up_turns == 178 + 55
    dialogues = to_dialogues(plans, TUREV16K / "unused", "4")
    utts = [u for d in dialogues for u in d.utterances]
    assert len(utts) == len({u.id for u in utts}) == 1735
    assert Counter(d.session for d in dialogues) == {"turev_1157-1234": 16, "turev_1358-1984": 22, "turev_6783-7895": 20}
    assert Counter(u.emotion for u in utts) == {"ang": 487, "hap": 357, "neu": 408, "sad": 483}
    assert len({u.speaker for u in utts}) == 6 and all(u.speaker.startswith("turev_") for u in utts)

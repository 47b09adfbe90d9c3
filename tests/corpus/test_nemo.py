"""nEMO pseudo-conversations: fake folders in the release layout, bad input, the shared real metadata."""

import json
from collections import Counter

import pytest

from convmem.cli import main
from convmem.corpus.manifest import read_manifest
from convmem.corpus.nemo import NEMO, plan_nemo
from convmem.corpus.pseudo_conversations import PseudoConversationConfig, PseudoReport, to_dialogues
from convmem.errors import AudioError, ManifestError
from tests.conftest import SHARED_DATA
from tests.corpus.fixtures_acted import NEMO_SENTENCES, edit_metadata, write_fake_nemo

NEMO16K = SHARED_DATA / "nemo16k"
needs_nemo = pytest.mark.skipif(not (NEMO16K / "metadata.csv").is_file(), reason="../shared/data/nemo16k absent")


def test_command_builds_speaker_disjoint_sessions_with_text(tmp_path):
    src = write_fake_nemo(tmp_path / "src", skip=("SM0_fear_2",))  # 12 clips each, SM0 11
    out = tmp_path / "out"
    assert main(["corpus", "nemo", str(src), str(out), "--turns", "8", "--seed", "1", "--no-progress"]) == 0
    dialogues = read_manifest(out / "manifest.jsonl")
    sessions = {d.session: sorted({u.speaker for u in d.utterances}) for d in dialogues}
    assert sessions == {"nemo_EB0-KS0": ["nemo_EB0", "nemo_KS0"], "nemo_IC0-SM0": ["nemo_IC0", "nemo_SM0"]}
    utts = [u for d in dialogues for u in d.utterances]
    assert len(utts) == len({u.id for u in utts}) == 47  # every clip exactly once
    assert {u.id for u in utts} >= {"nemo_EB0_anger_1", "nemo_SM0_fear_1"} and "nemo_SM0_fear_2" not in {u.id for u in utts}
    assert all(u.text in NEMO_SENTENCES for u in utts)
    by_raw = Counter((u.id.split("_")[2], u.emotion) for u in utts)
    assert by_raw == {("anger", "ang"): 8, ("happiness", "hap"): 8, ("neutral", "neu"): 8, ("sadness", "sad"): 8,
                      ("fear", None): 7, ("surprised", None): 8}
    assert [d.dialogue_id for d in dialogues] == ["nemo_EB0-KS0_d01", "nemo_EB0-KS0_d02", "nemo_EB0-KS0_d03",
                                                  "nemo_IC0-SM0_d01", "nemo_IC0-SM0_d02", "nemo_IC0-SM0_d03"]
    assert [u.id for u in dialogues[0].utterances[:4]] == PINNED_SEED1
    summary = json.loads((out / "summary.json").read_text())
    assert summary["emotion_map"] == {"neutral": "neu", "happiness": "hap", "sadness": "sad", "anger": "ang",
                                      "fear": None, "surprised": None}
    assert summary["session_speakers"] == {k: v for k, v in sessions.items()}
    assert "female + one male" in summary["pairing"] and summary["unscored_turns"] == 15
    assert summary["report"] == ["1 follow-up turns (a speaker twice in a row) because paired speakers have unequal clip counts"]
    assert sorted(p.name for p in out.iterdir()) == ["audio", "manifest.jsonl", "summary.json"]


PINNED_SEED1 = ["nemo_KS0_fear_2", "nemo_EB0_sadness_2", "nemo_KS0_surprised_1", "nemo_EB0_surprised_1"]


def test_seven_labels_score_fear_and_surprise(tmp_path):
    src = write_fake_nemo(tmp_path / "src", per_emotion=1)
    assert main(["corpus", "nemo", str(src), str(tmp_path / "out"), "--labels", "7", "--no-progress"]) == 0
    emotions = Counter(u.emotion for d in read_manifest(tmp_path / "out" / "manifest.jsonl") for u in d.utterances)
    assert emotions == {"neu": 4, "hap": 4, "sad": 4, "ang": 4, "fea": 4, "sur": 4}


def test_an_unpaired_speaker_is_reported(tmp_path):
    src = write_fake_nemo(tmp_path / "src", speakers={"EB0": "female", "IC0": "female", "KS0": "male"}, per_emotion=1)
    report = PseudoReport()
    plans, pairing = plan_nemo(src, PseudoConversationConfig(), report)
    assert {p.session for p in plans} == {"nemo_EB0-KS0"} and pairing.unpaired == ["IC0"]
    assert report.unpaired_clips == 6 and any("without a partner" in line for line in report.lines())
    with pytest.raises(ManifestError, match="no pair of speakers.*speakers: EB0, IC0"):
        plan_nemo(write_fake_nemo(tmp_path / "f", speakers={"EB0": "female", "IC0": "female"}, per_emotion=1))


@pytest.mark.parametrize(("change", "message"), [
    ({"emotion": "joy"}, "column emotion: unknown nEMO emotion 'joy' (expected one of anger, fear, happiness"),
    ({"file": "samples/EB0_anger_9.flac"}, "column file: 'samples/EB0_anger_9.flac' not found"),
    ({"file": "samples/EB0_anger_1.mp3"}, "is not a .wav or .flac file"),
    ({"gender": "male"}, "speaker EB0 is male here but female on line 2"),
    ({"gender": "x"}, "column gender: expected female or male, got 'x'"),
    ({"speaker": "E B"}, "column speaker: expected letters and digits"),
    ({"file": "samples/EB0_anger_1.flac"}, "repeats line 2"),
])
def test_bad_rows_are_named_and_nothing_is_written(tmp_path, capsys, change, message):
    src = write_fake_nemo(tmp_path / "src", per_emotion=1)
    edit_metadata(src, 3, **change)  # line 3 = the second clip (EB0 fear)
    out = tmp_path / "out"
    assert main(["corpus", "nemo", str(src), str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"{src / 'metadata.csv'}:3: " in err and message in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]  # no OUT, no staging folder


def test_missing_or_broken_metadata(tmp_path):
    src = write_fake_nemo(tmp_path / "src", per_emotion=1)
    (src / "samples" / "EB0_fear_1.flac").write_bytes(b"not audio")
    with pytest.raises(AudioError, match=r"metadata.csv:3: .*EB0_fear_1.flac: not a readable audio file"):
        plan_nemo(src)
    (src / "metadata.csv").unlink()
    with pytest.raises(ManifestError, match=f"{src / 'metadata.csv'}: metadata.csv not found"):
        plan_nemo(src)
    (src / "metadata.csv").write_text("file,speaker,emotion\n", encoding="utf-8")
    with pytest.raises(ManifestError, match=r"metadata.csv:1: missing column\(s\) raw_text"):
        plan_nemo(src)
    (src / "metadata.csv").write_text("file,speaker,emotion,raw_text\n", encoding="utf-8")
    with pytest.raises(ManifestError, match="no clips"):
        plan_nemo(src)
    with pytest.raises(ManifestError, match="nEMO folder not found"):
        plan_nemo(tmp_path / "nowhere")


@needs_nemo
def test_shared_nemo_metadata_maps_to_two_sessions():
    """The real table and audio headers (no audio is rendered)."""
    report = PseudoReport()
    plans, pairing = plan_nemo(NEMO16K, PseudoConversationConfig(), report)
    assert report.clips == 2157 and report.unpaired == [] and report.follow_up_turns == 3
    assert {s.name: s.speakers for s in pairing.sessions} == {
        "nemo_EB0-KS0": ("nemo_EB0", "nemo_KS0"), "nemo_IC0-SM0": ("nemo_IC0", "nemo_SM0")}
    dialogues = to_dialogues(plans, NEMO16K / "unused", "4")
    utts = [u for d in dialogues for u in d.utterances]
    assert len(utts) == len({u.id for u in utts}) == 2157
    assert Counter(d.session for d in dialogues) == {"nemo_EB0-KS0": 36, "nemo_IC0-SM0": 36}
    assert Counter(u.emotion for u in utts) == {"ang": 360, "hap": 359, "neu": 360, "sad": 360, None: 718}
    assert Counter(u.speaker for u in utts) == {"nemo_EB0": 539, "nemo_IC0": 540, "nemo_KS0": 540, "nemo_SM0": 538}
    assert all(u.text for u in utts) and NEMO.categories["surprised"] == "sur"

import json
from collections import Counter

import pytest

from convmem.cli import main
from convmem.corpus.iemocap import IemocapReport, load_iemocap
from convmem.corpus.manifest import read_manifest, write_manifest
from convmem.errors import ManifestError
from tests.corpus.fixtures_iemocap import eval_file, write_fake_iemocap


@pytest.fixture
def release(tmp_path):
    return write_fake_iemocap(tmp_path / "src")


def test_loads_the_real_layout_with_repairs_reported(release, tmp_path):
    rep = IemocapReport()
    ds = load_iemocap(release, report=rep)
    assert [d.dialogue_id for d in ds] == ["Ses01F_impro01", "Ses01M_script01_1", "Ses02F_impro02", "Ses02M_script02_2"]
    assert [d.session for d in ds] == ["Ses01", "Ses01", "Ses02", "Ses02"]
    emotions = Counter(u.emotion for d in ds for u in d.utterances)
    assert emotions == {"neu": 4, "hap": 5, "sad": 3, "ang": 3, None: 6}  # exc merged into hap
    first = ds[0]
    # written in reverse order in the file; the loader sorts by start time
    assert [u.id[-4:] for u in first.utterances] == ["F000", "M000", "F001", "M001", "F002", "F003", "M002"]
    assert [u.emotion for u in first.utterances] == ["neu", "hap", None, "ang", "sad", "hap", None]
    by_id = {u.id: u for d in ds for u in d.utterances}
    assert by_id["Ses01F_impro01_M000"].speaker == "Ses01_M"  # letter before the number, not the prefix
    assert by_id["Ses02M_script02_2_F001"].speaker == "Ses02_F"
    assert by_id["Ses01F_impro01_F002"].end == pytest.approx(11.8)  # clipped to F003's start
    assert by_id["Ses01F_impro01_M002"].end == pytest.approx(20.0)  # clipped to the audio
    assert "Ses01M_script01_1_F002" not in by_id  # starts after the audio
    assert by_id["Ses01F_impro01_F000"].text == "words of f000."
    assert by_id["Ses01M_script01_1_F000"].text is None
    assert by_id["Ses02F_impro02_M001"].audio is None
    assert by_id["Ses02F_impro02_F000"].audio == release / "Session2/sentences/wav/Ses02F_impro02/Ses02F_impro02_F000.wav"
    assert first.audio == release / "Session1/dialog/wav/Ses01F_impro01.wav"
    assert rep.overlaps_clipped == ["Ses01F_impro01_F002"]
    assert rep.clipped_to_audio == ["Ses01F_impro01_M002"]
    assert rep.dropped_beyond_audio == ["Ses01M_script01_1_F002"]
    assert rep.missing_sentence_wavs == ["Ses02F_impro02_M001"]
    assert rep.missing_transcriptions == ["Ses01M_script01_1"]
    assert rep.unparsed_transcript_lines == 1
    assert rep.raw_labels["exc"] == 3 and rep.raw_labels["fru"] == 1
    assert any("same-speaker overlap" in line for line in rep.lines())
    # the repaired output passes manifest validation (overlaps, audio extents)
    back = read_manifest(write_manifest(tmp_path / "m" / "manifest.jsonl", ds))
    assert [len(d.utterances) for d in back] == [7, 4, 6, 4]


def test_session_selection(release):
    ds = load_iemocap(release, sessions=[2])
    assert {d.session for d in ds} == {"Ses02"}
    with pytest.raises(ManifestError, match="Session3"):
        load_iemocap(release, sessions=[3])


def test_cli_writes_manifest_and_summary(release, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["corpus", "iemocap", str(release), str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "2 sessions, 4 speakers, 4 dialogues, 15 scored + 6 unscored turns" in printed
    assert "note: 1 same-speaker overlap" in printed
    assert len(read_manifest(out / "manifest.jsonl")) == 4
    summary = json.loads((out / "summary.json").read_text())
    assert summary["emotions"] == {"ang": 3, "hap": 5, "neu": 4, "sad": 3}
    assert summary["raw_labels"]["xxx"] == 1
    # a second run refuses to replace the corpus unless --force
    assert main(["corpus", "iemocap", str(release), str(out), "--no-progress"]) == 2
    assert "not empty (use --force" in capsys.readouterr().err


TURN = "[0.3000 - 2.0000]\tSes02M_script02_2_F000\tneu\t[2.5000, 2.5000, 2.5000]"


@pytest.mark.parametrize(
    ("lineno", "line", "message"),
    [
        (3, "[6.2901 - ]\tSes02M_script02_2_F000\tneu\t[2.5, 2.5, 2.5]", "not a turn line"),
        (3, "some stray words", "not a turn line"),
        (3, TURN.replace("\tneu\t", "\thappy\t"), "unknown emotion label 'happy'"),
        (3, TURN.replace("[0.3000 - 2.0000]", "[2.0000 - 0.3000]"), "ends at 0.3 s, not after its start 2.0 s"),
        (3, TURN.replace("Ses02M_script02_2_F000", "Ses01F_impro01_F000"), "does not belong to dialog 'Ses02M_script02_2'"),
        (8, TURN.replace("[0.3000 - 2.0000]", "[4.2 - 6.0]"), "turn Ses02M_script02_2_F000 appears twice (first on line 3)"),
    ],
)
def test_bad_emo_evaluation_line_names_file_and_line(release, lineno, line, message):
    path = eval_file(release, "Ses02M_script02_2")
    lines = path.read_text().splitlines()
    lines[lineno - 1] = line
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ManifestError) as err:
        load_iemocap(release)
    assert f"{path}:{lineno}:" in str(err.value)
    assert message in str(err.value)


def test_label_file_without_turns(release):
    path = eval_file(release, "Ses01M_script01_1")
    path.write_text("% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n")
    with pytest.raises(ManifestError, match="Ses01M_script01_1.txt: no turn lines"):
        load_iemocap(release)


def test_missing_dialogue_wav(release):
    wav = release / "Session2/dialog/wav/Ses02F_impro02.wav"
    wav.unlink()
    with pytest.raises(ManifestError, match=f"dialogue audio not found: {wav}"):
        load_iemocap(release)


def test_corrupt_dialogue_wav(release):
    wav = release / "Session1/dialog/wav/Ses01F_impro01.wav"
    wav.write_bytes(b"RIFF not really a wave file")
    with pytest.raises(ManifestError, match="Ses01F_impro01.txt: dialogue audio unusable: .*not a readable audio file"):
        load_iemocap(release)


def test_not_a_release_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ManifestError, match="no SessionN folders"):
        load_iemocap(tmp_path / "empty")
    with pytest.raises(ManifestError, match="IEMOCAP folder not found"):
        load_iemocap(tmp_path / "nowhere")
    (tmp_path / "empty" / "Session1").mkdir()
    with pytest.raises(ManifestError, match="EmoEvaluation folder not found"):
        load_iemocap(tmp_path / "empty")


def test_corrupt_sentence_wav_fails_validation(release, tmp_path):
    bad = release / "Session2/sentences/wav/Ses02M_script02_2/Ses02M_script02_2_F001.wav"
    bad.write_bytes(b"garbage")
    out = tmp_path / "out"
    with pytest.raises(ManifestError, match=r"utterances\[2\]\.audio: .*Ses02M_script02_2_F001.wav: not a readable audio file"):
        write_manifest(out / "manifest.jsonl", load_iemocap(release))
    assert not (out / "manifest.jsonl").exists()

import json
from collections import Counter

import pytest

from convmem.cli import main
from convmem.corpus.manifest import read_manifest, write_manifest
from convmem.corpus.meld import MeldReport, load_meld, parse_time, read_meld_csv
from convmem.corpus.types import EMOTIONS_7
from convmem.errors import AudioError, ManifestError
from tests.conftest import SHARED_DATA
from tests.corpus.fixtures_meld import DURATION, ROWS, write_audio, write_csv, write_fake_meld

MELD_CSV = SHARED_DATA / "meld"
needs_meld = pytest.mark.skipif(not (MELD_CSV / "train_sent_emo.csv").is_file(), reason="../shared/data/meld absent")


@pytest.fixture
def fake(tmp_path):
    return write_fake_meld(tmp_path / "meld")


def test_loads_fake_release(fake, tmp_path):
    csv_dir, audio_dir = fake
    rep = MeldReport()
    ds = load_meld(csv_dir, audio_dir, report=rep)
    assert [d.dialogue_id for d in ds] == ["train_dia0", "train_dia1", "dev_dia0", "test_dia0"]
    assert [d.session for d in ds] == ["train", "train", "dev", "test"]
    d0 = ds[0]
    assert [u.id for u in d0.utterances] == ["train_dia0_utt0", "train_dia0_utt1", "train_dia0_utt2"]
    assert [u.speaker for u in d0.utterances] == ["Chandler", "The Interviewer", "Chandler"]
    # virtual timeline: real file durations laid end to end, not the overlapping episode times
    assert [t for u in d0.utterances for t in (u.start, u.end)] == pytest.approx([0.0, 0.6, 0.6, 1.05, 1.05, 1.85])
    assert d0.utterances[1].text == "You must’ve had your hands full."  # the cp1252 line, decoded
    assert d0.utterances[0].audio == audio_dir / "train" / "dia0_utt0.wav"
    assert [u.emotion for d in ds for u in d.utterances] == ["neu", "neu", "hap", None, "ang", "sad", None, None, "neu"]
    assert rep.rows == 9 and rep.cp1252_lines == 1
    assert "1 CSV line(s) were not UTF-8" in rep.lines()[0]
    back = read_manifest(write_manifest(tmp_path / "out" / "manifest.jsonl", ds))
    assert back[0].utterances[2].end == pytest.approx(1.85)


def test_seven_labels(fake):
    ds = load_meld(*fake, labels="7")
    assert [u.emotion for d in ds for u in d.utterances] == ["neu", "neu", "hap", "sur", "ang", "sad", "dis", "fea", "neu"]
    assert {u.emotion for d in ds for u in d.utterances} <= set(EMOTIONS_7)


def test_missing_audio_is_reported_not_dropped(fake):
    csv_dir, audio_dir = fake
    (audio_dir / "train" / "dia0_utt1.wav").unlink()
    (audio_dir / "test" / "dia0_utt0.wav").unlink()
    with pytest.raises(ManifestError) as err:
        load_meld(csv_dir, audio_dir)
    assert "2 of 9 MELD rows have no audio file" in str(err.value)
    assert "first: train_dia0_utt1, test_dia0_utt0" in str(err.value)
    assert "--allow-missing" in str(err.value)
    rep = MeldReport()
    ds = load_meld(csv_dir, audio_dir, allow_missing=True, report=rep)
    assert rep.missing_audio == ["train_dia0_utt1", "test_dia0_utt0"]
    assert [u.id for u in ds[0].utterances] == ["train_dia0_utt0", "train_dia0_utt2"]
    assert ds[0].utterances[1].start == pytest.approx(DURATION[0])
    assert "2 of 9 rows have no audio and were left out" in rep.lines()[-1]


def test_mp4_audio_asks_for_conversion(fake):
    csv_dir, audio_dir = fake
    wav = audio_dir / "dev" / "dia0_utt0.wav"
    wav.rename(wav.with_suffix(".mp4"))
    with pytest.raises(AudioError, match=r"dia0_utt0.mp4: MELD ships mp4; .*ffmpeg -i dia0_utt0.mp4 -ac 1 -ar 16000 dia0_utt0.wav"):
        load_meld(csv_dir, audio_dir)


def test_audio_folders_by_release_name_or_flat_for_one_split(fake, tmp_path):
    csv_dir, audio_dir = fake
    (audio_dir / "dev").rename(audio_dir / "dev_splits_complete")
    assert len(load_meld(csv_dir, audio_dir, splits=("dev",))) == 1
    with pytest.raises(ManifestError, match=r"no audio folder for split 'train' \(tried: train, train_splits\)"):
        load_meld(csv_dir, tmp_path / "meld" / "audio" / "train", splits=("train", "test"))
    assert len(load_meld(csv_dir, audio_dir / "test", splits=("test",))) == 1


def _rewrite_row(csv_dir, index, **changes):
    rows = [list(r) for r in ROWS["train"]]
    keys = ["text", "speaker", "emotion", "dialogue", "utt", "start", "end"]
    for k, v in changes.items():
        rows[index][keys.index(k)] = v
    return write_csv(csv_dir / "train_sent_emo.csv", [tuple(r) for r in rows])


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"emotion": "happy"}, "column Emotion: unknown label 'happy'"),
        ({"dialogue": "x1"}, "column Dialogue_ID: expected an integer, got 'x1'"),
        ({"utt": ""}, "column Utterance_ID: expected an integer, got ''"),
        ({"start": "16:16"}, "column StartTime: expected a time like 00:16:16,059, got '16:16'"),
        ({"end": "00:16:26.389.1"}, "column EndTime: expected a time like"),
        ({"speaker": "  "}, "column Speaker: empty"),
        ({"utt": 1}, "Dialogue_ID 0, Utterance_ID 1 repeats line 3"),
    ],
)
def test_bad_csv_value_names_file_line_and_column(fake, changes, message):
    path = _rewrite_row(fake[0], 2, **changes)
    with pytest.raises(ManifestError) as err:
        load_meld(*fake)
    assert f"{path}:4: " in str(err.value)
    assert message in str(err.value)


def test_bad_csv_structure(fake):
    csv_dir, _ = fake
    path = csv_dir / "dev_sent_emo.csv"
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("Emotion,", "Feeling,", 1), encoding="utf-8")
    with pytest.raises(ManifestError, match=r"dev_sent_emo.csv:1: missing column\(s\) Emotion"):
        read_meld_csv(path, "dev")
    path.write_text(text.rstrip("\r\n") + ",extra\r\n", encoding="utf-8")
    with pytest.raises(ManifestError, match=r"dev_sent_emo.csv:3: expected 11 columns"):
        read_meld_csv(path, "dev")
    path.write_text(text.splitlines()[0] + "\r\n", encoding="utf-8")
    with pytest.raises(ManifestError, match="dev_sent_emo.csv: no data rows"):
        read_meld_csv(path, "dev")
    path.unlink()
    with pytest.raises(ManifestError, match="dev_sent_emo.csv: MELD CSV not found"):
        load_meld(*fake)


def test_parse_time_forms():
    assert parse_time("00:16:16,059", "x") == pytest.approx(976.059)
    assert parse_time("0:05:52,435", "x") == pytest.approx(352.435)
    assert parse_time("00:06:47,28", "x") == pytest.approx(407.28)  # a real row lost a digit


def test_cli_summary(fake, tmp_path, capsys):
    out = tmp_path / "corpus"
    assert main(["corpus", "meld", str(fake[0]), str(fake[1]), str(out), "--labels", "7", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "3 sessions, 7 speakers, 4 dialogues, 9 scored + 0 unscored turns" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["emotions"] == {"ang": 1, "dis": 1, "fea": 1, "hap": 1, "neu": 3, "sad": 1, "sur": 1}
    assert len(read_manifest(out / "manifest.jsonl")) == 4


@needs_meld
def test_real_csvs_parse_with_no_errors():
    expected = {  # the MELD release's label counts (7 classes)
        "train": (9989, {"neutral": 4710, "joy": 1743, "surprise": 1205, "anger": 1109, "sadness": 683, "disgust": 271, "fear": 268}),
        "dev": (1109, {"neutral": 470, "joy": 163, "anger": 153, "surprise": 150, "sadness": 111, "fear": 40, "disgust": 22}),
        "test": (2610, {"neutral": 1256, "joy": 402, "anger": 345, "surprise": 281, "sadness": 208, "disgust": 68, "fear": 50}),
    }
    short = {"neutral": "neu", "joy": "hap", "sadness": "sad", "anger": "ang", "surprise": "sur", "fear": "fea", "disgust": "dis"}
    for split, (n, counts) in expected.items():
        rep = MeldReport()
        rows = read_meld_csv(MELD_CSV / f"{split}_sent_emo.csv", split, labels="7", report=rep)
        assert len(rows) == n and rep.cp1252_lines == 0
        assert Counter(r.emotion for r in rows) == {short[k]: v for k, v in counts.items()}
    train = {r.speaker for r in read_meld_csv(MELD_CSV / "train_sent_emo.csv", "train")}
    test = {r.speaker for r in read_meld_csv(MELD_CSV / "test_sent_emo.csv", "test")}
    assert {"Chandler", "Monica", "Ross"} <= train & test  # why MELD cannot be speaker-disjoint


@needs_meld
def test_real_dev_csv_with_generated_audio(tmp_path):
    rows = read_meld_csv(MELD_CSV / "dev_sent_emo.csv", "dev")
    folder = tmp_path / "audio" / "dev"
    write_audio(folder, [(r.text, r.speaker, "neutral", r.dialogue, r.utterance) for r in rows])
    csv_dir = tmp_path / "csv"
    csv_dir.mkdir()
    (csv_dir / "dev_sent_emo.csv").symlink_to(MELD_CSV / "dev_sent_emo.csv")
    ds = load_meld(csv_dir, tmp_path / "audio", splits=("dev",))
    assert len(ds) == 114 and sum(len(d.utterances) for d in ds) == 1109
    assert Counter(u.emotion for d in ds for u in d.utterances) == {"neu": 470, "hap": 163, "ang": 153, "sad": 111, None: 212}
    write_manifest(tmp_path / "out" / "manifest.jsonl", ds)  # validates: no same-speaker overlap
    for name in ("dia3_utt0.wav", "dia3_utt1.wav", "dia0_utt1.wav"):
        (folder / name).unlink()
    with pytest.raises(ManifestError, match="3 of 1109 MELD rows have no audio .*first: dev_dia0_utt1, dev_dia3_utt0, dev_dia3_utt1"):
        load_meld(csv_dir, tmp_path / "audio", splits=("dev",))


def test_corrupt_audio_is_named(fake):
    csv_dir, audio_dir = fake
    bad = audio_dir / "test" / "dia0_utt1.wav"
    bad.write_bytes(b"not audio at all")
    with pytest.raises(AudioError, match=f"{bad}: not a readable audio file"):
        load_meld(csv_dir, audio_dir)

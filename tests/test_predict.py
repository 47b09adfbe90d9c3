"""`convmem predict` and the Python/live API, on real speech with a tiny untrained model.

The model is untrained, so these tests check plumbing and equivalences (file = array = live
stream, segments = pushed utterances, resampled = native), never accuracy.
"""

from __future__ import annotations

import csv
import json
import re
import threading
import time

import numpy as np
import pytest
import soundfile as sf
import torch

from convmem.audio.segments import TimeSegment
from convmem.cli import main
from convmem.errors import AudioError, ConfigError, ConvmemError, ManifestError
from convmem.predict import Predictor, Timeline
from tests.model_fixture import speech_clips, speech_recording, tiny_bundle


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.set_num_threads(1)
    return tiny_bundle(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    wave, spans = speech_recording(5, seed=21)
    path = tmp_path_factory.mktemp("audio") / "talk.wav"
    sf.write(path, wave, 16000, subtype="FLOAT")
    return path, wave, spans


@pytest.fixture(scope="module")
def dpm(model_dir):
    return Predictor.load(model_dir, memory="dpm")


def _rows(t: Timeline):
    return [(u.start, u.end, u.speaker, u.emotion, tuple(round(u.probs[k], 5) for k in t.labels))
            for u in t.utterances]


def test_file_timeline_and_outputs(dpm, recording, tmp_path):
    path, _, spans = recording
    seen = []
    t = dpm.predict(path, progress=False, on_utterance=seen.append)
    assert len(t.utterances) == len(spans) == len(seen)
    for u, (cs, ce) in zip(t.utterances, spans):
        assert cs - 0.05 <= u.start < u.end <= ce + 0.05
        assert sum(u.probs.values()) == pytest.approx(1.0, abs=1e-6)
        assert u.emotion == max(u.probs, key=u.probs.get) and u.speaker is None
    assert t.duration == pytest.approx(sf.info(path).duration)
    assert sum(t.emotion_counts().values()) == len(spans)
    # deterministic: same key, same audio, same memory -> same timeline
    assert _rows(dpm.predict(path, progress=False)) == _rows(t)

    data = json.loads(t.to_json(tmp_path / "t.json").read_text())
    assert data["memory"] == "dpm" and data["labels"] == list(t.labels) and data["segmentation"] == "vad"
    assert data["vad"]["backend"] in ("onnx", "jit") and data["vad"]["max_utterance_s"] == 15.0
    assert [u["emotion"] for u in data["utterances"]] == [u.emotion for u in t.utterances]
    with open(t.to_csv(tmp_path / "t.csv")) as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(spans) and float(rows[0]["start"]) == pytest.approx(t.utterances[0].start, abs=1e-3)
    assert sum(float(rows[0][f"p_{k}"]) for k in t.labels) == pytest.approx(1.0, abs=1e-4)
    png = t.plot(tmp_path / "t.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_array_and_live_stream_equal_file(dpm, recording):
    path, wave, _ = recording
    from_file = dpm.predict(path, progress=False, key="k")
    assert _rows(dpm.predict(wave, 16000, progress=False, key="k")) == _rows(from_file)
    session = dpm.open_session("k")
    live = []
    for i in range(0, wave.size, 320):  # 20 ms chunks, as a microphone sends them
        live += session.push_audio(wave[i:i + 320], 16000)
    live += session.flush()
    session.close()
    assert _rows(Timeline(live, dpm.labels, 0, "dpm", "")) == _rows(from_file)


def test_interleaved_live_sessions_are_independent(dpm, recording):
    """Two callers at once (as the service has them) get what each would get alone."""
    _, w1, _ = recording
    w2, _ = speech_recording(3, seed=22)

    def alone(w, key):
        s = dpm.open_session(key)
        out = s.push_audio(w) + s.flush()
        s.close()
        return out

    s1, s2 = dpm.open_session("a"), dpm.open_session("b")
    o1, o2 = [], []
    for i in range(0, max(w1.size, w2.size), 8000):
        if i < w1.size:
            o1 += s1.push_audio(w1[i:i + 8000])
        if i < w2.size:
            o2 += s2.push_audio(w2[i:i + 8000])
    o1, o2 = o1 + s1.flush(), o2 + s2.flush()
    t = lambda us: _rows(Timeline(us, dpm.labels, 0, "dpm", ""))  # noqa: E731
    assert t(o1) == t(alone(w1, "a")) and t(o2) == t(alone(w2, "b"))
    assert len(o1) == 5 and len(o2) == 3


@pytest.mark.parametrize("memory", ["dpm", "window"])
def test_sessions_on_threads_equal_each_alone(model_dir, recording, memory):
    """The Python API is thread-safe: sessions driven from threads at once give their lone results
    (without the predictor's model lock, one thread's DPM hooks act on the other's calls)."""
    import threading

    pred = Predictor.load(model_dir, memory=memory)
    _, w1, _ = recording
    w2, _ = speech_recording(3, seed=22)
    waves = {"a": w1, "b": w2, "c": w1[::-1].copy()}

    def run(key, out=None):
        s = pred.open_session(key)
        got = []
        for i in range(0, waves[key].size, 4000):
            got += s.push_audio(waves[key][i:i + 4000])
        got += s.flush()
        s.close()
        rows = _rows(Timeline(got, pred.labels, 0, memory, ""))
        if out is not None:
            out[key] = rows
        return rows

    alone = {k: run(k) for k in waves}
    together: dict = {}
    threads = [threading.Thread(target=run, args=(k, together)) for k in waves]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert together == alone and len(alone["a"]) == 5


def test_other_rate_and_stereo_give_same_utterances(dpm, recording, tmp_path):
    path, wave, _ = recording
    from scipy.signal import resample_poly

    w44 = resample_poly(wave, 441, 160).astype(np.float32)
    p44 = tmp_path / "talk44.wav"
    sf.write(p44, np.stack([w44, w44], axis=1), 44100, subtype="FLOAT")
    a = dpm.predict(path, progress=False).utterances
    b = dpm.predict(p44, progress=False).utterances
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert abs(x.start - y.start) <= 0.07 and abs(x.end - y.end) <= 0.07


def test_segments_equal_pushed_utterances(model_dir, recording):
    path, wave, spans = recording
    pred = Predictor.load(model_dir, memory="window")
    segs = [TimeSegment(s + 0.9, e - 0.3, spk) for (s, e), spk in zip(spans, "ABABA")]
    t = pred.predict(path, segments=segs, progress=False, key="s")
    assert [(u.start, u.end, u.speaker) for u in t.utterances] == [(s.start, s.end, s.speaker) for s in segs]
    session = pred.open_session("s")
    pushed = [session.push_utterance(wave[round(s.start * 16000): round(s.end * 16000)], 16000,
                                     s.start, s.end, s.speaker) for s in segs]
    assert _rows(Timeline(pushed, pred.labels, 0, "window", "")) == _rows(t)
    assert _rows(pred.predict(wave, 16000, segments=segs, progress=False, key="s")) == _rows(t)


def test_prosody_marks_compare_each_turn_with_its_own_speaker(tmp_path, recording):
    """A model reading prosody marks: the second turn (B's first) is 'unknown' when B is new and
    compared with A's turn when the same turns are all labelled A, so its probabilities differ
    even under `none`; the first turn cannot differ, and live pushes equal the offline pass."""
    path, wave, spans = recording
    pred = Predictor.load(tiny_bundle(tmp_path, "marked", prosody_marks=True), memory="none")
    assert pred.bundle.vocab.prosody_marks

    def run(speakers):
        segs = [TimeSegment(s + 0.9, e - 0.3, spk) for (s, e), spk in zip(spans, speakers)]
        return _rows(pred.predict(path, segments=segs, progress=False, key=speakers)), segs

    two, segs = run("ABABA")
    one, _ = run("AAAAA")
    assert two[0][4] == one[0][4] and two[1][4] != one[1][4]
    session = pred.open_session("live")
    pushed = [session.push_utterance(wave[round(s.start * 16000): round(s.end * 16000)], 16000,
                                     s.start, s.end, s.speaker) for s in segs]
    assert _rows(Timeline(pushed, pred.labels, 0, "none", "")) == two
    session.close()
    ids = pred.bundle.encoder().conversation().encode(wave[:32000]).model_input(pred.bundle.vocab).ids
    assert ids.numel() == 50 + 4 and (ids[-4:] >= pred.bundle.vocab.mark_offset).all()


def test_memory_changes_predictions(model_dir, recording):
    """The memory is really in the loop: 'none' and 'dpm' differ on the later utterances."""
    path, _, _ = recording
    none = Predictor.load(model_dir, memory="none").predict(path, progress=False)
    dpm = Predictor.load(model_dir, memory="dpm").predict(path, progress=False)
    assert _rows(none)[0][:2] == _rows(dpm)[0][:2]
    assert [r[4] for r in _rows(none)[1:]] != [r[4] for r in _rows(dpm)[1:]]


def test_live_input_validation(dpm):
    s = dpm.open_session("v")
    ok = np.zeros(1600, np.float32)
    with pytest.raises(AudioError, match="NaN"):
        s.push_audio(np.full(10, np.nan, np.float32), 16000)
    with pytest.raises(AudioError, match="dtype int16"):
        s.push_audio(np.zeros(10, np.int16), 16000)
    with pytest.raises(AudioError, match="empty"):
        s.push_audio(np.zeros(0, np.float32), 16000)
    with pytest.raises(AudioError, match="sample rate"):
        s.push_audio(ok, 0)
    with pytest.raises(AudioError, match="smaller chunks"):
        s.push_audio(np.zeros(16000 * 61, np.float32), 16000)
    assert s.push_audio(ok, 16000) == []
    with pytest.raises(AudioError, match="changed from 16000 to 8000"):
        s.push_audio(ok, 8000)
    assert s.flush() == []
    s.close()
    with pytest.raises(ConvmemError, match="closed"):
        s.push_audio(ok, 16000)


def test_bad_inputs_are_clear(model_dir, recording, tmp_path):
    path, _, _ = recording
    with pytest.raises(ConvmemError, match="not a convmem model directory"):
        Predictor.load(tmp_path)
    with pytest.raises(ConfigError, match="unknown method"):
        Predictor.load(model_dir, memory="telepathy")
    pred = Predictor.load(model_dir, memory="none")
    with pytest.raises(AudioError, match="not found"):
        pred.predict(tmp_path / "missing.wav", progress=False)
    with pytest.raises(ManifestError, match="x.csv:2: starts at 999.000 s, after the end"):
        pred.predict(path, segments=[TimeSegment(999.0, 1000.0, where="x.csv:2")], progress=False)


def test_cli(model_dir, recording, tmp_path, capsys):
    path, _, spans = recording
    out = tmp_path / "res" / "talk.csv"
    assert main(["predict", str(model_dir), str(path), "--memory", "window", "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert f"{len(spans)} utterances" in printed and str(out) in printed
    assert out.with_suffix(".png").is_file()
    assert len(out.read_text().splitlines()) == len(spans) + 1

    seg = tmp_path / "segs.csv"
    seg.write_text("start,end\n1.0,2.0\n3.0,oops\n")
    assert main(["predict", str(model_dir), str(path), "--segments", str(seg), "--out", str(tmp_path / "x.json")]) == 2
    assert f"{seg}:3" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()
    assert main(["predict", str(tmp_path), str(path), "--quiet"]) == 2
    assert "not a convmem model directory" in capsys.readouterr().err
    assert main(["predict", str(model_dir), str(path), "--out", str(tmp_path / "x.txt")]) == 2
    assert main(["predict", str(model_dir), str(tmp_path / "none.wav")]) == 2
    assert "audio file not found" in capsys.readouterr().err


# ---------------------------------------------------------------- recordings and segment files that lie


def test_segments_past_the_audio_overlapping_or_duplicated_are_refused(model_dir, recording, tmp_path, capsys):
    """The rule manifests are held to (corpus/turn_times.py) holds for segment files too."""
    path, _, _ = recording
    duration = sf.info(path).duration
    cases = {"past_end": f"start,end\n1.0,2.0\n6.0,{duration + 12:.1f}\n",
             "overlap": "start,end,speaker\n1.0,3.0,A\n2.0,4.0,A\n",
             "duplicate": "start,end,speaker\n1.0,2.0,A\n1.0,2.0,A\n"}
    messages = {"past_end": ":3: .* s is outside the audio", "overlap": ":3: turns of speaker 'A' overlap",
                "duplicate": ":3: duplicates .*:2"}
    for name, text in cases.items():
        seg = tmp_path / f"{name}.csv"
        seg.write_text(text)
        out = tmp_path / f"{name}.json"
        assert main(["predict", str(model_dir), str(path), "--segments", str(seg), "--out", str(out),
                     "--quiet", "--no-plot"]) == 2, name
        err = capsys.readouterr().err
        assert re.search(f"{re.escape(str(seg))}{messages[name]}", err), (name, err)
        assert not out.exists()
    # crosstalk of two speakers is fine
    ok = tmp_path / "crosstalk.csv"
    ok.write_text("start,end,speaker\n1.0,3.0,A\n2.0,4.0,B\n")
    assert len(Predictor.load(model_dir, memory="none").predict(path, segments=ok, progress=False).utterances) == 2


def test_rttm_lines_of_another_recording_are_not_merged(model_dir, recording, tmp_path, capsys):
    path, _, _ = recording  # talk.wav
    rttm = tmp_path / "both.rttm"
    rttm.write_text("SPEAKER other 1 0.50 1.00 <NA> <NA> x <NA> <NA>\n"
                    "SPEAKER other 1 5.00 1.00 <NA> <NA> x <NA> <NA>\n"
                    "SPEAKER talk 1 1.00 1.50 <NA> <NA> A <NA> <NA>\n")
    pred = Predictor.load(model_dir, memory="none")
    t = pred.predict(path, segments=rttm, progress=False)  # picked by the audio's name
    assert [(u.start, u.end, u.speaker) for u in t.utterances] == [(1.0, 2.5, "A")]
    out = tmp_path / "t.json"
    assert main(["predict", str(model_dir), str(path), "--segments", str(rttm), "--file-id", "other",
                 "--out", str(out), "--quiet", "--no-plot"]) == 0
    assert [u["speaker"] for u in json.loads(out.read_text())["utterances"]] == ["x", "x"]
    rttm.write_text(rttm.read_text().replace(" talk ", " third "))
    assert main(["predict", str(model_dir), str(path), "--segments", str(rttm), "--quiet", "--no-plot",
                 "--out", str(out)]) == 2
    assert "RTTM lines of 2 recordings ('other', 'third')" in capsys.readouterr().err


def test_all_nan_recording_is_an_error_naming_the_file(model_dir, tmp_path, capsys):
    nan = tmp_path / "nan.wav"
    sf.write(nan, np.full(32000, np.nan, np.float32), 16000, subtype="FLOAT")
    assert main(["predict", str(model_dir), str(nan), "--out", str(tmp_path / "n.json"), "--quiet", "--no-plot"]) == 2
    assert f"{nan}: audio is all NaN" in capsys.readouterr().err
    assert not (tmp_path / "n.json").exists()


@pytest.mark.parametrize("name, wave, says", [
    ("silent.wav", np.zeros(48000, np.float32), "the audio is silent (peak digital silence)"),
    ("short.wav", 0.3 * np.sin(np.arange(800) / 5).astype(np.float32), "0.050 s of audio is shorter than the shortest"),
])
def test_silent_or_too_short_recording_warns_naming_the_file(model_dir, tmp_path, capsys, name, wave, says):
    path = tmp_path / name
    sf.write(path, wave, 16000)
    out = tmp_path / "t.json"
    assert main(["predict", str(model_dir), str(path), "--out", str(out), "--quiet", "--no-plot"]) == 0
    err = capsys.readouterr().err
    assert f"warning: {path}: {says}" in err
    warned = [line.removeprefix("warning: ") for line in err.splitlines() if line.startswith("warning: ")]
    assert json.loads(out.read_text())["warnings"] == warned and len(warned) == 1


def test_too_short_utterance_is_refused_live_and_skipped_from_segments(model_dir, recording):
    path, wave, _ = recording
    pred = Predictor.load(model_dir, memory="none")
    session = pred.open_session("s")
    with pytest.raises(AudioError, match="utterance of 4 samples .* shorter than the shortest"):
        session.push_utterance(wave[16000:16004], 16000)
    with pytest.raises(AudioError, match="times must be finite"):
        session.push_utterance(wave[16000:24000], 16000, start=0.0, end=float("inf"))
    session.close()
    t = pred.predict(path, segments=[TimeSegment(1.0, 1.05, "A"), TimeSegment(2.0, 3.0, "A")], progress=False)
    assert [(u.start, u.end) for u in t.utterances] == [(2.0, 3.0)] and t.dropped_short == 1


# ---------------------------------------------------------------- the acceptance test

def _write_hour(path, clips, seconds: float, seed: int = 0) -> int:
    """Write `seconds` of clips separated by seeded 0.3-2 s pauses, block by block (never the
    whole recording in memory). Returns the number of clips written."""
    rng = np.random.default_rng(seed)
    n, written = 0, 0
    with sf.SoundFile(str(path), "w", 16000, 1, subtype="PCM_16") as fh:
        while written < seconds * 16000:
            clip = clips[n % len(clips)]
            gap = np.zeros(int(rng.uniform(0.3, 2.0) * 16000), np.float32)
            fh.write(np.concatenate([clip[int(0.8 * 16000):], gap]))
            written += clip.size - int(0.8 * 16000) + gap.size
            n += 1
    return n


@pytest.mark.slow
def test_one_hour_without_segments_has_flat_memory(model_dir, tmp_path, capsys, monkeypatch):
    """Acceptance: `convmem predict` on ≥ 1 h of real speech clips and pauses, VAD-segmented,
    through DPM, writes the timeline and plot; resident memory after 10 min of audio and near the
    end differ by < 50 MB."""
    import psutil

    from convmem.predict import LiveSession

    wav = tmp_path / "hour.wav"
    n_clips = _write_hour(wav, speech_clips(24, seed=8), seconds=3605.0)
    proc = psutil.Process()
    samples: list[tuple[float, int]] = []  # (audio seconds read, rss)
    reached = [0.0]
    real_push = LiveSession.push_audio

    def push_and_note(self, *a, **k):
        out = real_push(self, *a, **k)
        reached[0] = self._seg.position
        return out

    monkeypatch.setattr(LiveSession, "push_audio", push_and_note)
    stop = threading.Event()

    def sample():
        while not stop.wait(0.2):
            samples.append((reached[0], proc.memory_info().rss))

    out = tmp_path / "hour.timeline.json"
    sampler = threading.Thread(target=sample, daemon=True)
    t0 = time.perf_counter()
    sampler.start()
    try:
        rc = main(["predict", str(model_dir), str(wav), "--memory", "dpm", "--out", str(out), "--quiet",
                   "--speakers", "none"])  # the VAD stream path this test measures
    finally:
        stop.set()
        sampler.join()
    seconds = time.perf_counter() - t0
    assert rc == 0
    printed = capsys.readouterr().out
    data = json.loads(out.read_text())
    # streaming phase only: the last block ends the stream, then JSON and matplotlib's plot follow
    after_10 = [r for t, r in samples if 600 <= t < 700]
    late = [r for t, r in samples if 3000 <= t < 3590]
    assert after_10 and late
    growth = max(late) - min(after_10)
    with capsys.disabled():
        print(f"\n1 h recording: {seconds:.0f} s wall, {len(data['utterances'])} utterances, "
              f"rss at 10 min {min(after_10) / 2**20:.0f} MB, peak 50-60 min {max(late) / 2**20:.0f} MB, "
              f"growth {growth / 2**20:.1f} MB; peak of the whole command incl. plot "
              f"{max(r for _, r in samples) / 2**20:.0f} MB\n{printed}")
    assert data["duration_s"] >= 3600 and f"{len(data['utterances'])} utterances" in printed
    assert len(data["utterances"]) >= 0.95 * n_clips
    assert growth < 50 * 2**20
    assert out.with_suffix(".png").stat().st_size > 5000

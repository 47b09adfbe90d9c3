"""Keeps the cost benchmarks from rotting: runs bench_dpm_cost.py in --smoke mode (tiny model,
generated tones, in one process) and checks the JSON it writes has every part's fields. Timings
are never asserted: they are measurements, not pass/fail conditions of the code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_dpm_cost.py"


def test_dpm_cost_smoke_writes_every_part(tmp_path: Path) -> None:
    out = tmp_path / "dpm_cost.json"
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--smoke", "--no-subprocess", "--threads", "1", "--part", "a",
         "--part", "b", "--part", "c", "--cache", str(tmp_path / "cache"), "--out", str(out)],
        capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["bench"] == "dpm_cost" and data["mode"] == "smoke"
    assert {"cpu", "cores", "torch_threads", "torch", "date_utc", "load_avg_1_5_15"} <= set(data["machine"])
    assert data["machine"]["torch_threads"] == 1
    res = data["results"]
    a = res["a"]
    assert a["turns"] == 5 and a["argmax_equal"] is True and a["logits_within_1e-5"] is True
    assert {"stream_s", "per_sample_s", "ratio", "max_abs_logit_diff"} <= set(a)
    cps = res["b"]["dpm"]["checkpoints"]
    assert [c["minutes"] for c in cps] == [0.2, 0.5]
    assert cps[1]["utterances"] > cps[0]["utterances"] > 2  # prefixes cut by end time
    for c in cps:
        assert {"utterance_s", "write_s", "read_s", "tokenize_s", "peak_rss_mb", "rtf"} <= set(c)
        assert {"mean", "p50", "p90", "n"} <= set(c["utterance_s"])
    assert res["b"]["window_full_fits_minutes"] == [0.2, 0.5]
    assert [c["batch"] for c in res["c"]] == [1, 2]
    assert all({"utt_per_s", "steady_utt_per_s", "steady_tokens_per_s"} <= set(c) for c in res["c"])
    assert set(data["verdicts"]) == {"a", "b_time", "b_rss", "c", "d"}
    assert "| streaming s |" in proc.stdout and "(d) real-time factor" in proc.stdout


@pytest.mark.slow
def test_probe_codes_on_a_tiny_synthetic_corpus(tmp_path: Path) -> None:
    from convmem.cli import main

    corpus = tmp_path / "corpus"
    assert main(["synth", str(corpus), "--preset", "tiny", "--seed", "0", "--quiet", "--workers", "1"]) == 0
    out = tmp_path / "probe.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH.parent / "probe_codes.py"), str(corpus / "manifest.jsonl"),
         "--tokenizer", 'kmeans:{"codebook_size": 16, "prosody_weight": 1}',
         "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["bench"] == "probe_codes" and [r["options"] for r in data["results"]] == [
        {"codebook_size": 16, "prosody_weight": 1}]
    for r in data["results"]:
        assert set(r["folds"]) == {"S01", "S02", "S03"} and r["n"] > 50
        assert all(0 <= r[w]["wa"] <= 100 and 0 <= r[w]["ua"] <= 100 for w in ("alone", "relative"))
    assert "| tokenizer | turns |" in proc.stdout
    bad = subprocess.run([sys.executable, str(BENCH.parent / "probe_codes.py"), str(corpus / "manifest.jsonl"),
                          "--tokenizer", "kmeans:{oops", "--out", str(tmp_path / "x.json")],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "error: --tokenizer" in bad.stderr and "options are not JSON" in bad.stderr and not (tmp_path / "x.json").exists()


@pytest.mark.slow
def test_whisper_probes_and_front_end_cost_on_a_tiny_synthetic_corpus(tmp_path: Path) -> None:
    from convmem.cli import main

    corpus = tmp_path / "corpus"
    assert main(["synth", str(corpus), "--preset", "tiny", "--seed", "0", "--quiet", "--workers", "1"]) == 0
    env = {**os.environ, "CONVMEM_CACHE": str(tmp_path / "cache")}
    out = tmp_path / "layers.json"
    proc = subprocess.run([sys.executable, str(BENCH.parent / "probe_whisper_layers.py"), str(corpus / "manifest.jsonl"),
                           "--model", "tiny.en", "--out", str(out)], capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(out.read_text())
    assert [r["layer"] for r in data["results"]] == [0, 1, 2, 3, 4] and data["padded"] is False
    assert all(set(r["folds"]) == {"S01", "S02", "S03"} and 0 <= r["alone"]["wa"] <= 100 for r in data["results"])
    out = tmp_path / "probe.json"
    proc = subprocess.run([sys.executable, str(BENCH.parent / "probe_codes.py"), str(corpus / "manifest.jsonl"),
                           "--features", 'whisper:{"model": "tiny.en", "layer": 2}', "--out", str(out)],
                          capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    frames = json.loads(out.read_text())["results"][0]
    # the same layer, the same folds, the same probe: the two scripts agree
    assert frames["features"] == "whisper" and frames["alone"] == data["results"][2]["alone"]
    out = tmp_path / "whisper.json"
    proc = subprocess.run([sys.executable, str(BENCH.parent / "bench_whisper.py"), "--models", "tiny.en",
                           "--threads", "1", "--utterances", "3", "--padded-utterances", "1", "--out", str(out)],
                          capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    cost = json.loads(out.read_text())
    rtf = [r for r in cost["results"] if "rtf_variable" in r]
    assert len(rtf) == 1 and rtf[0]["rtf_variable"] > 0 and rtf[0]["rtf_padded"] > 0
    assert "| model | threads |" in proc.stdout


@pytest.mark.slow
def test_predict_cost_smoke_splits_the_time_of_one_recording(tmp_path: Path) -> None:
    """bench_predict.py: one recording through Predictor.predict per memory, with the front-end's
    and the memory's share of the wall time (each a fraction of it, together at most all of it)."""
    out = tmp_path / "predict.json"
    proc = subprocess.run([sys.executable, str(BENCH.parent / "bench_predict.py"), "--models", "tiny.en",
                           "--memory", "none", "dpm", "--threads", "1", "--utterances", "8", "--out", str(out)],
                          capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads(out.read_text())["rows"]
    assert [(r["model"], r["memory"]) for r in rows] == [("tiny.en", "none"), ("tiny.en", "dpm")]
    for r in rows:
        assert r["utterances"] >= 1 and r["rtf"] > 0
        assert 0 < r["front_end_share"] < 1 and 0 < r["memory_share"] < 1
        assert r["front_end_share"] + r["memory_share"] <= 1
    # DPM writes by backprop: its memory time is more than the one-shot read's
    assert rows[1]["memory_s"] > rows[0]["memory_s"]
    assert "| Whisper | memory |" in proc.stdout


@pytest.mark.slow
def test_single_turn_ceiling_on_a_tiny_synthetic_corpus(tmp_path: Path) -> None:
    from collections import Counter

    from convmem.cli import main
    from convmem.corpus.manifest import read_manifest
    from convmem.corpus.types import EMOTIONS

    corpus = tmp_path / "corpus"
    assert main(["synth", str(corpus), "--preset", "tiny", "--seed", "1", "--quiet", "--workers", "1"]) == 0
    out = tmp_path / "ceiling.json"
    proc = subprocess.run([sys.executable, str(BENCH.parent / "single_turn_ceiling.py"), str(corpus / "manifest.jsonl"),
                           "--workers", "1", "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (r,) = json.loads(out.read_text())["results"]
    dialogues = read_manifest(corpus / "manifest.jsonl")
    gold = [(d.session, u.emotion) for d in dialogues for u in d.utterances if u.emotion in EMOTIONS]
    hits = 0
    for s in {s for s, _ in gold}:  # the training sessions' majority, ties to the earlier label
        counts = Counter(e for t, e in gold if t != s)
        best = max(EMOTIONS, key=lambda e: (counts[e], -EMOTIONS.index(e)))
        hits += sum(e == best for t, e in gold if t == s)
    assert r["n"] == len(gold) and r["wa"]["majority class"] == round(100 * hits / len(gold), 1)
    assert set(r["wa"]) == {"majority class", "logistic", "logistic, quadratic features", "gradient boosting",
                            "RBF SVM", "emotion sentences + majority"} and all(0 <= v <= 100 for v in r["wa"].values())
    # an emotion sentence only ever voices its own emotion: reading the words can only add
    assert r["wa"]["emotion sentences + majority"] >= r["wa"]["majority class"]
    assert "| manifest | turns | majority class WA |" in proc.stdout


def _fake_run(tmp_path: Path, predict) -> Path:
    """A finished run folder on a generated corpus: six speakers whose habitual tempo spreads from slow
    to fast, four turns each, every turn gold `neu`; `predict(rate)` gives the predicted emotion."""
    import csv

    run = tmp_path / "run"
    (run / "corpus").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"corpus": {"manifest": None}}))
    rates = {f"S0{i}_A": r for i, r in enumerate((120, 140, 160, 175, 200, 230))}
    shift = {"neu": {"pitch": 0, "range": 0, "rate": 1.0, "volume": 1.0},
             "sad": {"pitch": -8, "range": -12, "rate": 0.86, "volume": 0.8},
             "ang": {"pitch": 4, "range": 10, "rate": 1.13, "volume": 1.4}}
    speakers = {s: {"habit": {"pitch": 50 + i, "range": 50 - i, "rate": r, "volume": 95}}
                for i, (s, r) in enumerate(rates.items())}
    (run / "corpus" / "generator_truth.json").write_text(json.dumps({"emotion_shift": shift, "speakers": speakers}))
    with open(run / "predictions.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["method", "speaker", "gold", "predicted"])
        for s, r in rates.items():
            for t in range(4):
                w.writerow(["habit_reader", s, "neu", predict(r, t)])
                w.writerow(["oracle", s, "neu", "neu"])
    return run


def test_habit_misreads_finds_a_model_that_reads_tempo_habit_as_emotion(tmp_path: Path) -> None:
    # slow speakers called sad, fast ones angry, more turns the further from the middle
    run = _fake_run(tmp_path, lambda r, t: "sad" if r < 165 - 15 * t else "ang" if r > 165 + 15 * t else "neu")
    out = tmp_path / "h.json"
    proc = subprocess.run([sys.executable, str(BENCH.parent / "habit_misreads.py"), str(run), "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(out.read_text())["results"][str(run)]
    assert res["habit_reader"]["r"]["rate"] > 0.9
    assert res["habit_reader"]["speakers"]["S00_A"]["excess"]["rate"] < 0 < res["habit_reader"]["speakers"]["S05_A"]["excess"]["rate"]
    assert all(v is None for v in res["oracle"]["r"].values())  # no errors, nothing to correlate
    assert "| run | method | speakers | r pitch | r range | r rate | r volume |" in proc.stdout


def test_habit_misreads_needs_a_generated_corpus(tmp_path: Path) -> None:
    run = _fake_run(tmp_path, lambda r, t: "neu")
    (run / "corpus" / "generator_truth.json").unlink()
    proc = subprocess.run([sys.executable, str(BENCH.parent / "habit_misreads.py"), str(run), "--out",
                           str(tmp_path / "h.json")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "generator_truth.json: missing" in proc.stderr
    assert not (tmp_path / "h.json").exists()


def test_rerender_speaker_reads_every_turn_of_the_speaker_four_ways(tmp_path: Path) -> None:
    import shutil

    from convmem.cli import main
    from convmem.corpus.manifest import read_manifest
    from tests.model_fixture import tiny_bundle

    corpus = tmp_path / "corpus"
    assert main(["synth", str(corpus), "--preset", "tiny", "--seed", "1", "--quiet", "--workers", "1"]) == 0
    dialogues = read_manifest(corpus / "manifest.jsonl")
    speaker = dialogues[0].utterances[0].speaker
    run = tmp_path / "run"
    (run / "folds").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"corpus": {"manifest": str(corpus / "manifest.jsonl")}}))
    shutil.copytree(tiny_bundle(tmp_path), run / "folds" / f"loso_{dialogues[0].session}" / "model")
    out = tmp_path / "r.json"
    script = str(BENCH.parent / "rerender_speaker.py")
    proc = subprocess.run([sys.executable, script, str(run), speaker, "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(out.read_text())
    n = sum(u.speaker == speaker and u.emotion in ("neu", "hap", "sad", "ang") for d in dialogues for u in d.utterances)
    assert res["turns"] == n > 0
    assert list(res["variants"]) == ["own habit", "typical tempo", "stretched, pauses kept", "stretched, pauses x f^2"]
    assert all(sum(v["predicted"].values()) == n and 0 <= v["wa"] <= 100 for v in res["variants"].values())
    bad = subprocess.run([sys.executable, script, str(run), "S99_Z", "--out", str(out)], capture_output=True, text=True,
                         timeout=300)
    assert bad.returncode == 2 and "S99_Z: not a speaker" in bad.stderr


def test_recogniser_cer_reads_each_speaker(tmp_path: Path) -> None:
    from convmem.cli import main
    from convmem.corpus.manifest import read_manifest
    from convmem.tokenizers import build_tokenizer, fit_on_dialogues

    sys.path.insert(0, str(BENCH.parent))
    from recogniser_cer import edit_distance

    assert edit_distance(list("kitten"), list("sitting")) == 3 and edit_distance([], [1, 2]) == 2
    corpus = tmp_path / "corpus"
    assert main(["synth", str(corpus), "--preset", "tiny", "--seed", "0", "--quiet", "--workers", "1"]) == 0
    tok = build_tokenizer("ctc-kmeans", codebook_size=8, hidden=16, epochs=1)
    fit_on_dialogues(tok, read_manifest(corpus / "manifest.jsonl"), ["S01"], progress=False).save(tmp_path / "tok")
    out = tmp_path / "cer.json"
    script = str(BENCH.parent / "recogniser_cer.py")
    proc = subprocess.run([sys.executable, script, str(tmp_path / "tok"), str(corpus / "manifest.jsonl"),
                           "--turns", "2", "--held-out", "S02", "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(out.read_text())
    speakers = {u.speaker: d.session for d in read_manifest(corpus / "manifest.jsonl") for u in d.utterances}
    assert set(res["speakers"]) == set(speakers) and res["ctc_hz"] == 50 and res["held_out"] == ["S02"]
    assert all(r["turns"] == 2 and r["chars"] > 0 and r["cer"] >= 0 for r in res["speakers"].values())
    assert "held out" in proc.stdout
    km = build_tokenizer("kmeans", codebook_size=8)
    fit_on_dialogues(km, read_manifest(corpus / "manifest.jsonl"), ["S01"], progress=False).save(tmp_path / "km")
    bad = subprocess.run([sys.executable, script, str(tmp_path / "km"), str(corpus / "manifest.jsonl"), "--out",
                          str(tmp_path / "x.json")], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "has no recogniser" in bad.stderr and not (tmp_path / "x.json").exists()


def _two_voice_manifest(tmp_path: Path) -> Path:
    """A one-dialogue manifest of tests/speakers/voices.py's two voices (gold speakers A, B)."""
    import soundfile as sf

    from tests.speakers.voices import two_voices

    wave, gold = two_voices()
    (tmp_path / "audio").mkdir()
    sf.write(tmp_path / "audio" / "d1.wav", wave, 16000, subtype="FLOAT")
    utts = [{"id": f"d1_{i}", "speaker": "AB"[v], "start": round(a, 4), "end": round(b, 4),
             "emotion": "neu" if i % 2 else None} for i, (a, b, v) in enumerate(gold)]
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text(json.dumps({"dialogue_id": "d1", "session": "s1", "audio": "audio/d1.wav",
                                    "utterances": utts}) + "\n")
    return manifest


def test_diarisation_candidates_score_every_rule(tmp_path: Path) -> None:
    manifest = _two_voice_manifest(tmp_path)
    proc = subprocess.run([sys.executable, str(BENCH.parent / "diarisation_candidates.py"), "--manifest", str(manifest),
                           "--fit", tmp_path.name], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {line.split(" | ")[0].strip("| "): line for line in proc.stdout.splitlines() if line.startswith("| ")}
    assert f"{tmp_path.name} (fit, 1)" in rows["rule"]
    assert {"cut 0.70", "silhouette", "estimate (share 0.1)"} <= set(rows)
    assert rows["estimate (share 0.1)"].endswith("| 100.0 / 0.0 |")  # two clearly different voices


def test_diarisation_bench_scores_der_jer_and_emotion_wa(tmp_path: Path) -> None:
    from tests.model_fixture import tiny_bundle

    manifest = _two_voice_manifest(tmp_path)
    out = tmp_path / "diar.json"
    proc = subprocess.run([sys.executable, str(BENCH.parent / "bench_diarisation.py"), "--manifest", str(manifest),
                           "--model", str(tiny_bundle(tmp_path)), "--memory", "window", "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(out.read_text())["results"][0]
    assert res["dialogues"] == 1 and res["speakers_gold_vs_estimated"] == [[2, 2]]
    assert res["speakers_gold_vs_online"] == [[2, 2]] and res["online_offline_agreement"] > 80
    assert set(res["runs"]) == {"auto", "oracle N", "online"}
    for name, run in res["runs"].items():
        assert {"der", "jer", "missed", "false_alarm", "confusion", "cpu_s_per_audio_min"} <= set(run)
        assert run["exact_count"] == 100 and run["mean_abs_count_error"] == 0
        # two clearly different voices: labels all but right (online misnames the second voice's first turn)
        assert run["confusion"] < (25 if name == "online" else 5)
    assert set(res["emotion_wa"]) == {"gold turns, gold speakers", "gold turns, one speaker",
                                      "VAD + auto diarisation", "VAD, one speaker"}
    assert all(v["n"] == 3 for v in res["emotion_wa"].values())
    assert "| DER % |" in proc.stdout


@pytest.mark.slow
def test_smollm2_cost_smoke_on_the_tiny_backbone(tmp_path: Path) -> None:
    """bench_smollm2.py --smoke on the tiny backbone (the SmolLM2 rows run the same code paths with
    another backbone name; the slm and memory tests load SmolLM2 itself): every phase's fields."""
    out = tmp_path / "smollm2.json"
    proc = subprocess.run([sys.executable, str(BENCH.parent / "bench_smollm2.py"), "--smoke", "--backbone", "tiny",
                           "--no-subprocess", "--threads", "1", "--out", str(out)],
                          capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["bench"] == "smollm2" and data["mode"] == "smoke" and data["machine"]["torch_threads"] == 1
    train, *pred = data["results"]
    assert train["phase"] == "train" and train["steps"] == 2 and train["tokens_per_s"] > 0
    assert train["params_trainable"] == train["params_total"]  # tiny: everything trains
    assert [r["method"] for r in pred] == ["none", "dpm", "mal"]
    for r in pred:
        assert r["utterance_s"]["n"] == 2 and r["rtf"] > 0 and r["peak_rss_mb"] > 0
    assert pred[1]["write_s"]["mean"] > pred[0]["write_s"]["mean"]  # DPM writes by backprop; none does not
    assert "| backbone | memory |" in proc.stdout

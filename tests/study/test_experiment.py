"""End to end: the tiny synthetic preset through the whole runner, resume after a kill, and the
2-process sharded evaluation. Slow by nature (a few minutes in all on 2 cores)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from convmem.eval.predictions import read_predictions_csv
from convmem.eval.results import recompute_check, validate_results
from tests.distributed import ENV, two_process_launch

pytestmark = pytest.mark.slow

TINY = [
    "name=tiny", "threads=1", "eval.bootstrap=200", "eval.batch_size=4",
    "eval.methods=[none,window,classifier,dpm,dpm_surprise,mal,majority]",
    "eval.dpm_variants={dpm_surprise: {stepping: surprise}}", "eval.vad_methods=[window]",
    "tokenizer.options={codebook_size: 32}",
    "slm.hidden_size=64", "slm.num_layers=2", "slm.num_heads=2", "slm.intermediate_size=128",
    "slm.n_limit=128", "slm.max_position_embeddings=2048",
    "train.epochs=2", "train.lr=3.0e-3", "train.objective=dense", "train.checkpoint_every=20",
    "classifier_train.epochs=1", "classifier_train.batch_size=8", "classifier_train.progress=false",
    "classifier={n_layers: 1, n_heads: 2}",
    "dpm.rank=8", "dpm.alpha=8", "dpm.lr=1.0e-3", "dpm.n_r=48",
    "mal_train.epochs=1",
]


def _cli(*args, env=None, **kw):
    return subprocess.run([sys.executable, "-m", "convmem", *args], env={**os.environ, **(env or {})},
                          capture_output=True, text=True, **kw)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("corpus") / "tiny"
    res = _cli("synth", str(out), "--preset", "tiny", "--seed", "3")
    assert res.returncode == 0, res.stderr
    return out / "manifest.jsonl"


@pytest.fixture(scope="module")
def overrides(corpus) -> list[str]:
    return TINY + [f"corpus.manifest={corpus}"]


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, overrides) -> Path:
    out = tmp_path_factory.mktemp("runs") / "full"
    t0 = time.perf_counter()
    res = _cli("run", "--out", str(out), "-", *overrides, input="")
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]
    print(f"tiny end-to-end run: {time.perf_counter() - t0:.0f} s")
    return out


def test_results_follow_schema_and_recompute_from_predictions(full_run):
    results = json.loads((full_run / "results.json").read_text())
    validate_results(results)
    assert recompute_check(results, full_run / "predictions.csv") == []
    table = read_predictions_csv(full_run / "predictions.csv")
    assert set(results["methods"]) == {"none", "window", "classifier", "dpm", "dpm_surprise", "mal", "majority",
                                       "window@vad"}
    assert results["baseline"]["reference"] == "majority" and "none" in results["baseline"]["tests"]
    # the same gold utterances are scored under VAD segmentation, mapped back by time overlap
    utts = lambda m: sorted(table.utterance[table.method == m])  # noqa: E731
    assert utts("window@vad") == utts("window")
    cost = json.loads((full_run / "cost.json").read_text())
    assert 0 <= cost["window@vad"]["unmatched_gold_utterances"] <= cost["window@vad"]["utterances"]
    assert len(table) > 0
    for name in ("report.md", "cost.json", "plots/accuracy_vs_history.png"):
        assert (full_run / name).exists(), name
    report = (full_run / "report.md").read_text()
    assert "Table 1" in report and "dpm" in report
    # every fold's model directory is a self-contained product
    for fold in (full_run / "folds").iterdir():
        assert {"tokenizer", "slm", "classifier", "mal"} <= {p.name for p in (fold / "model").iterdir()}
        assert (fold / "model" / "MODEL_CARD.md").exists()


def test_majority_row_predicts_the_training_majority_on_the_same_buckets(full_run, corpus):
    from collections import Counter

    from convmem.corpus.manifest import read_manifest

    dialogues = read_manifest(corpus)
    table = read_predictions_csv(full_run / "predictions.csv")
    for fold in sorted(set(table.fold)):
        test_session = fold.removeprefix("loso_")
        counts = Counter(u.emotion for d in dialogues if d.session != test_session for u in d.utterances
                         if u.emotion is not None)
        rows = table.select((table.method == "majority") & (table.fold == fold))
        labels = ("neu", "hap", "sad", "ang")  # the config's label order breaks ties
        assert {table.labels[i] for i in rows.predicted} == {max(labels, key=lambda x: (counts[x], -labels.index(x)))}, fold
        none = table.select((table.method == "none") & (table.fold == fold))
        # the same utterances with the same history counts and buckets as every other method
        assert list(rows.utterance) == list(none.utterance)
        assert list(rows.history_tokens) == list(none.history_tokens)
        assert list(rows.long_context) == list(none.long_context)


def test_killed_run_resumes_to_identical_results(tmp_path, overrides, full_run):
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "convmem", "run", "--out", str(out), "-", *overrides],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 600
    # kill once the first fold's first method is evaluated: models and some predictions exist, not all
    while time.time() < deadline and not list(out.glob("folds/*/predictions_none.json")):
        if proc.poll() is not None:
            pytest.fail("the run ended before it could be killed")
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "results.json").exists()
    res = _cli("run", "--out", str(out), "-", *overrides)
    assert res.returncode == 0, res.stderr[-4000:]
    assert json.loads((out / "results.json").read_text()) == json.loads((full_run / "results.json").read_text())


def test_two_process_evaluation_equals_one(tmp_path, overrides, full_run):
    pytest.importorskip("accelerate")
    out = tmp_path / "two"
    shutil.copytree(full_run, out)
    for p in list(out.glob("folds/*/predictions_*.json")) + [out / "results.json", out / "predictions.csv"]:
        p.unlink()
    cmd = two_process_launch("-m", "convmem", "run", "--out", str(out), "-", *overrides)
    res = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **ENV})
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]
    # it was 2 processes: a launcher that starts one would pass the comparisons below
    assert {json.loads(p.read_text())["cost"].get("processes") for p in out.glob("folds/*/predictions_*.json")} == {2}
    # A process holding every other dialogue batches them with other rows (eval.batch_size), so
    # float32 sums run in another order: probabilities and write losses agree to rounding (seen:
    # 2e-7 and 4e-6), everything else, every prediction and every score, exactly.
    two, one = read_predictions_csv(out / "predictions.csv"), read_predictions_csv(full_run / "predictions.csv")
    for name in ("dialogue", "utterance", "fold", "method", "position", "gold", "predicted", "history_tokens",
                 "long_context", "last_scored", "session", "speaker"):
        assert (getattr(two, name) == getattr(one, name)).all(), name
    np.testing.assert_allclose(two.probs, one.probs, rtol=0, atol=1e-6)
    np.testing.assert_allclose(two.write_loss, one.write_loss, rtol=1e-5, equal_nan=True)
    a, b = (json.loads((d / "results.json").read_text()) for d in (out, full_run))
    curves_a, curves_b = a["curves"].pop("write_loss_by_position"), b["curves"].pop("write_loss_by_position")
    # MAL's gate and residual means are float sums over the same reads, batched otherwise
    diag_a, diag_b = a["meta"].pop("mal_diagnostics"), b["meta"].pop("mal_diagnostics")
    assert a == b
    assert diag_a.keys() == diag_b.keys()
    for m in diag_a:
        assert [(d["positions"], d["n"]) for d in diag_a[m]] == [(d["positions"], d["n"]) for d in diag_b[m]]
        for key in ("gate", "residual_ratio"):
            np.testing.assert_allclose([d[key] for d in diag_a[m]], [d[key] for d in diag_b[m]], rtol=1e-5, atol=1e-7)
    assert curves_a.keys() == curves_b.keys()
    for m in curves_a:
        for k in curves_a[m]:
            np.testing.assert_allclose(np.array(curves_a[m][k], float), np.array(curves_b[m][k], float),
                                       rtol=1e-5, atol=1e-6, equal_nan=True)


def test_eval_command_reuses_the_study_folds_and_models(tmp_path, overrides, full_run):
    out = tmp_path / "eval"
    shutil.copytree(full_run, out)
    (out / "results.json").unlink()
    res = _cli("eval", "-", "--out", str(out), "--memory", "none", "--memory", "dpm", *overrides)
    assert res.returncode == 0, res.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert set(results["methods"]) == {"none", "dpm"}
    full = json.loads((full_run / "results.json").read_text())
    assert results["methods"]["dpm"]["buckets"]["all"] == full["methods"]["dpm"]["buckets"]["all"]


def test_train_command_makes_a_model_that_predict_loads(tmp_path, overrides):
    model = tmp_path / "model"
    res = _cli("train", "-", "--out", str(model), "--no-classifier", *overrides)
    assert res.returncode == 0, res.stderr[-3000:]
    from convmem.bundle import load_bundle

    bundle = load_bundle(model)
    assert bundle.mal_adapter is not None and bundle.classifier is None
    card = (model / "MODEL_CARD.md").read_text()
    assert "S01" in card and "Privacy" in card


def test_prosody_marks_run_end_to_end(tmp_path, overrides, corpus):
    """slm.prosody_marks through every path that turns audio into model input: training with a
    perturbed copy, none/DPM/MAL evaluation, VAD segments; majority counts the same tokens."""
    from convmem.bundle import load_bundle

    out = tmp_path / "marks"
    res = _cli("run", "--out", str(out), "-", *overrides, "slm.prosody_marks=true", "augment.copies=1",
               "train.epochs=1", "folds.test_sessions=[S01]", "eval.methods=[majority,none,dpm,mal]",
               "eval.vad_methods=[none]", "eval.dpm_variants={}", input="")
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]
    bundle = load_bundle(out / "folds" / "loso_S01" / "model")
    assert bundle.vocab.prosody_marks and bundle.slm.get_input_embeddings().weight.shape[0] == bundle.vocab.size
    table = read_predictions_csv(out / "predictions.csv")
    assert set(table.method) == {"majority", "none", "dpm", "mal", "none@vad"}
    none = table.select(table.method == "none")
    majority = table.select(table.method == "majority")
    assert list(majority.history_tokens) == list(none.history_tokens) and len(none) > 0


def test_continuous_frames_run_end_to_end(tmp_path, overrides, corpus):
    """slm.audio_input=frames (Whisper tiny.en frames, codes as targets) through every path that
    feeds the model: training with code noise and a perturbed copy, prosody marks, every memory,
    VAD segments; the fold's model dir holds the projector and predicts live."""
    from convmem.bundle import load_bundle
    from convmem.corpus.manifest import read_manifest
    from convmem.predict import Predictor
    from convmem.slm.audio_embedding import projector_of
    from convmem.tokenizers.dialogue_audio import utterance_waveform

    out = tmp_path / "frames"
    res = _cli("run", "--out", str(out), "-", *overrides, "tokenizer.kind=whisper-kmeans",
               "tokenizer.options={model: tiny.en, codebook_size: 32}", "slm.audio_input=frames",
               "slm.prosody_marks=true", "augment.copies=1", "train.code_noise=0.1", "train.epochs=1",
               "folds.test_sessions=[S01]", "eval.methods=[majority,none,window,classifier,dpm,mal]",
               "eval.vad_methods=[dpm]", "eval.dpm_variants={}", input="", env={"CONVMEM_CACHE": str(tmp_path / "c")})
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]
    results = json.loads((out / "results.json").read_text())
    validate_results(results)
    assert recompute_check(results, out / "predictions.csv") == []
    assert set(results["methods"]) == {"majority", "none", "window", "classifier", "dpm", "mal", "dpm@vad"}
    model_dir = out / "folds" / "loso_S01" / "model"
    assert (model_dir / "slm" / "audio_projector.safetensors").is_file()
    bundle = load_bundle(model_dir)
    assert bundle.slm_config.audio_input == "frames" and projector_of(bundle.slm).frame_dim == 384
    dialogue = read_manifest(corpus)[0]
    wave = utterance_waveform(dialogue.utterances[0], dialogue)
    x = bundle.encoder().conversation().encode(wave).model_input(bundle.vocab)
    assert x.frames.shape == (len(x), 384) and (x.frames[-4:] == 0).all()  # zeros at the 4 marks
    session = Predictor(bundle, memory="dpm").open_session("k")
    got = [session.push_utterance(wave).probs for _ in range(2)]
    assert all(abs(sum(p.values()) - 1) < 1e-5 for p in got)

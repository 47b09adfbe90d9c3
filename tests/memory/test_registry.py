"""The memory registry (memory/registry.py): a memory registered in ONE place — here, in this
file — is offered by model directories and runs through `convmem run`, `convmem predict` and
`convmem serve` with nothing else edited; the registry's grad mode is the one every caller runs it in.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from convmem.errors import ConfigError
from convmem.memory import registry
from convmem.memory.base import WindowBatch
from convmem.memory.context import ContextMemory, read_emotion_logits

NAME = "half_none"


class HalfNone(ContextMemory):
    """A throw-away memory: the current utterance alone (as `none`), its emotion logits halved, so
    its probabilities differ from `none`'s. Unlike ContextMemory's, its read sets no grad mode of
    its own: READS records the one its caller ran it in."""

    def read(self, state, batch: WindowBatch) -> torch.Tensor:
        READS.append(torch.is_grad_enabled())
        return 0.5 * read_emotion_logits(self.model, batch, self.emotion_ids)


READS: list[bool] = []  # torch.is_grad_enabled() at each read, whichever caller drove it


@pytest.fixture(scope="module", autouse=True)
def half_none():
    """The one place the throw-away memory is added (and removed again after these tests)."""
    spec = registry.register(registry.MemorySpec(
        NAME, lambda bundle, options: HalfNone(bundle.slm, tuple(bundle.vocab.emotion_ids), bundle.n_limit,
                                              name=NAME, history_tokens=0),
        needs=("slm",), writes_by_backprop=False, label="Half-confident one-shot"))
    yield spec
    registry.unregister(NAME)


def test_the_table_lists_the_shipped_memories_in_order():
    assert registry.names()[:6] == ("none", "window", "window_full", "classifier", "dpm", "mal")
    assert registry.get("dpm").writes_by_backprop and not registry.get("window").writes_by_backprop
    assert registry.get("mal").needs == ("slm", "mal") and registry.get("classifier").needs == ("classifier",)
    spec, overrides = registry.resolve("dpm_fast", {"dpm_fast": {"lr": 1e-3}})
    assert spec.name == "dpm" and overrides == {"lr": 1e-3}
    assert registry.label("dpm_surprise") == "SLLM-DPM, surprise-gated writes"
    with pytest.raises(ConfigError, match="unknown memory 'nope'"):
        registry.get("nope")
    with pytest.raises(ValueError, match="registered already"):
        registry.register(registry.MemorySpec("none", lambda b, o: None))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from tests.model_fixture import tiny_bundle

    torch.set_num_threads(1)
    return tiny_bundle(tmp_path_factory.mktemp("registry_model"))


def test_a_registered_memory_is_offered_by_every_model_that_has_its_parts(model_dir):
    from convmem.bundle import load_bundle, model_methods

    assert NAME in model_methods(model_dir)
    bundle = load_bundle(model_dir)
    assert bundle.methods == model_methods(model_dir)
    assert isinstance(bundle.memory(NAME), HalfNone)


def _speech_file(tmp_path):
    import soundfile as sf

    from tests.model_fixture import speech_recording

    wave, spans = speech_recording(3, seed=5)
    path = tmp_path / "talk.wav"
    sf.write(path, wave, 16000, subtype="FLOAT")
    return path, wave, spans


def test_predict_runs_it_in_its_grad_mode(model_dir, tmp_path):
    from convmem.cli import main
    from convmem.predict import Predictor

    path, _, spans = _speech_file(tmp_path)
    out = tmp_path / "talk.json"
    READS.clear()
    assert main(["predict", str(model_dir), str(path), "--memory", NAME, "--out", str(out), "--quiet"]) == 0
    timeline = json.loads(out.read_text())
    assert timeline["memory"] == NAME and len(timeline["utterances"]) == len(spans)
    assert READS and not any(READS)  # every read under torch.no_grad, as the registry declares
    ours = Predictor.load(model_dir, memory=NAME).predict(path, progress=False)
    none = Predictor.load(model_dir, memory="none").predict(path, progress=False)
    # the same logits as `none`, halved: the same emotions, flatter probabilities
    assert [u.emotion for u in ours.utterances] == [u.emotion for u in none.utterances]
    assert [u.probs for u in ours.utterances] != [u.probs for u in none.utterances]


def test_serve_runs_it(model_dir):
    from fastapi.testclient import TestClient

    from convmem.serve.app import create_app
    from convmem.serve.sessions import ServeConfig
    from tests.serve.conftest import speech

    _, sr, clips = speech(2)
    client = TestClient(create_app(str(model_dir), ServeConfig(memory=NAME, allowed_origins=("http://testserver",))))
    READS.clear()
    with client, client.websocket_connect("/ws") as ws:
        ws.send_text(json.dumps({"type": "start", "sample_rate": sr, "mode": "utterances"}))
        ready = ws.receive_json()
        assert ready["type"] == "ready" and ready["memory"] == NAME
        for clip in clips:
            ws.send_text('{"type": "utterance"}')
            ws.send_bytes(clip.astype("<f4").tobytes())
            msg = ws.receive_json()
            assert msg["type"] == "utterance" and abs(sum(msg["probs"].values()) - 1) < 1e-4
        ws.send_text('{"type": "end"}')
        assert ws.receive_json()["type"] == "end"
    assert len(READS) == len(clips) and not any(READS)


def test_convmem_run_evaluates_and_reports_it(tmp_path):
    """A tiny study in this process (the registration lives here): the memory is evaluated beside
    `none`, scored, paired-tested and named by its label in the report."""
    from convmem.cli import main
    from convmem.eval.predictions import read_predictions_csv

    corpus = tmp_path / "corpus"
    assert main(["synth", str(corpus), "--preset", "tiny", "--seed", "3"]) == 0
    out = tmp_path / "run"
    READS.clear()
    assert main(["run", "-", "--out", str(out), f"corpus.manifest={corpus / 'manifest.jsonl'}", "threads=1",
                 f"eval.methods=[none,window,{NAME}]", "eval.bootstrap=50", "folds.test_sessions=[S01]",
                 "tokenizer.options={codebook_size: 32}", "slm.hidden_size=32", "slm.num_layers=1",
                 "slm.num_heads=2", "slm.intermediate_size=64", "slm.n_limit=128", "slm.max_position_embeddings=1024",
                 "train.epochs=1", "train.objective=dense"]) == 0
    assert READS and not any(READS)
    table = read_predictions_csv(out / "predictions.csv")
    ours, none = (table.select(table.method == m) for m in (NAME, "none"))
    assert len(ours) == len(none) > 0 and list(ours.utterance) == list(none.utterance)
    assert list(ours.predicted) == list(none.predicted)
    assert not np.allclose(ours.probs, none.probs)
    results = json.loads((out / "results.json").read_text())
    assert NAME in results["methods"] and NAME in results["paired"]["tests"]
    assert f"Half-confident one-shot (`{NAME}`)" in (out / "report.md").read_text()
    # the fold's model directory offers it too, without anything trained for it
    from convmem.bundle import model_methods

    assert NAME in model_methods(out / "folds" / "loso_S01" / "model")

"""`convmem train --out MODEL_DIR`: a model directory is what it says it is. It keeps its own
checkpoints, corpus and cache, shares nothing with a sibling, resumes only with the settings that
made it, writes into no folder it did not make, and a killed train (MAL included) resumes to the
same bytes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from convmem.cli import main

pytestmark = pytest.mark.slow

B = ["-", "corpus.synth_preset=tiny", "train.epochs=1", "threads=1", "--no-classifier", "--no-mal"]


def _train(*args) -> int:
    return main(["train", *B, *args])


@pytest.fixture(scope="module")
def parent(tmp_path_factory) -> Path:
    """A folder with one model `m` trained with B."""
    p = tmp_path_factory.mktemp("models")
    assert _train("--out", str(p / "m")) == 0
    return p


def _slm(model: Path) -> bytes:
    return (model / "slm" / "model.safetensors").read_bytes()


def test_sibling_models_share_nothing(parent):
    assert _train("slm.init_seed=7", "--out", str(parent / "m_seed7")) == 0
    assert _slm(parent / "m") != _slm(parent / "m_seed7")
    assert json.loads((parent / "m_seed7" / "bundle.json").read_text())["config"]["slm"]["init_seed"] == 7
    # nothing beside the models: no shared checkpoints, corpus or cache in the parent folder
    assert sorted(p.name for p in parent.iterdir()) == ["m", "m_seed7"]
    # and the training work inside each is not part of the model (bundle "parts", fingerprint)
    assert json.loads((parent / "m" / "bundle.json").read_text())["parts"] == ["slm", "tokenizer"]


def test_rerun_with_other_settings_is_refused_naming_them(parent, capsys):
    before = {p: p.read_bytes() for p in (parent / "m").rglob("*") if p.is_file() and ".convmem.lock" not in p.name}
    assert _train("train.lr=1e-3", "slm.num_layers=2", "--out", str(parent / "m")) == 2
    err = capsys.readouterr().err
    assert "other settings (differs at: slm.num_layers, train.lr)" in err and "Traceback" not in err
    assert {p: p.read_bytes() for p in before} == before
    # the same settings resume: nothing left to train
    assert _train("--out", str(parent / "m")) == 0
    assert _slm(parent / "m") == before[parent / "m" / "slm" / "model.safetensors"]


def test_a_deleted_model_leaves_no_corpus_behind(tmp_path):
    assert _train("train.max_steps=1", "--out", str(tmp_path / "m")) == 0
    first = json.loads((tmp_path / "m" / ".convmem-output.json").read_text())["data"]["corpus_sha256"]
    shutil.rmtree(tmp_path / "m")
    assert _train("train.max_steps=1", "corpus.synth_seed=1", "--out", str(tmp_path / "m")) == 0
    second = json.loads((tmp_path / "m" / ".convmem-output.json").read_text())["data"]["corpus_sha256"]
    assert first != second  # seed 1's corpus was generated, not seed 0's reused
    assert "seed 1" in (tmp_path / "m" / "MODEL_CARD.md").read_text()


def test_train_and_run_write_into_no_folder_of_the_users(tmp_path, capsys):
    users = tmp_path / "recordings"
    users.mkdir()
    (users / "call.wav").write_bytes(b"RIFF....")
    (users / "report.md").write_text("my notes")
    assert _train("--out", str(users)) == 2
    assert main(["run", "-", "corpus.synth_preset=tiny", "threads=1", f"out={users}"]) == 2
    err = capsys.readouterr().err
    assert err.count("folder is not empty and was not made by `convmem") == 2 and "call.wav, report.md" in err
    assert sorted(p.name for p in users.iterdir()) == ["call.wav", "report.md"]


def test_a_config_that_cannot_build_a_model_is_refused_before_writing(tmp_path, capsys):
    assert _train("slm.hidden_size=100", "--out", str(tmp_path / "m")) == 2
    err = capsys.readouterr().err
    assert "slm.hidden_size: the head dimension hidden_size / num_heads = 100 / 4 = 25 must be even" in err
    assert not (tmp_path / "m").exists()


MAL = ["-", "corpus.synth_preset=tiny", "threads=1", "--no-classifier", "train.epochs=2",
       "train.checkpoint_every=1", "slm.hidden_size=64", "slm.num_layers=2", "slm.num_heads=2",
       "slm.intermediate_size=128", "slm.n_limit=128", "tokenizer.options={codebook_size: 32}",
       "dpm.n_r=48", "mal_train.epochs=1"]


def _cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "convmem", *args], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, **kw)


def test_killed_train_with_mal_resumes_to_the_same_bytes(tmp_path):
    full = tmp_path / "full"
    res = _cli("train", *MAL, "--out", str(full))
    assert res.returncode == 0, res.stderr[-3000:]
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "convmem", "train", *MAL, "--out", str(killed)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.time() + 600
    # kill mid-SLM training: a checkpoint exists, the SLM is not saved yet
    while time.time() < deadline and not (killed / ".checkpoints" / "slm" / "checkpoints" / "latest").exists():
        if proc.poll() is not None:
            pytest.fail("train ended before it could be killed")
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (killed / "slm").exists() and not (killed / "mal").exists()
    res = _cli("train", *MAL, "--out", str(killed))
    assert res.returncode == 0, res.stderr[-3000:]
    for f in ("slm/model.safetensors", "mal/adapter.safetensors", "tokenizer/codebook.npz"):
        assert (killed / f).read_bytes() == (full / f).read_bytes(), f
    assert (json.loads((killed / "bundle.json").read_text())["files"]
            == json.loads((full / "bundle.json").read_text())["files"])

"""Training under `accelerate launch --num_processes 2` on CPU (gloo), end to end, against a
one-process run of the same config: the same global batch (`TrainConfig.batch_size`, split among
the processes), per-step losses and final weights equal within float rounding, one checkpoint
written by rank 0 (plus Accelerate's per-process RNG state), and a stopped-and-resumed 2-process
run ends where the uninterrupted one does. The runs are tests/train/ddp_worker.py's."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import torch

from tests.distributed import ENV, two_process_launch
from tests.train import ddp_worker

pytestmark = pytest.mark.slow  # as the 2-process evaluation test (tests/study/test_experiment.py)

# Per-step losses: the 2-process loss is the sum of the shares' sums / the whole batch's counts,
# the 1-process one the batch mean, and the forward runs on other batch shapes; float32 rounding
# leaves ~2e-7 relative after six Adam steps, weights ~1e-7 apart. Averaging the processes' own
# means instead is already ~1e-4 off at step 1 here; a batch per process changes the step count.
LOSS_RTOL = 1e-5
WEIGHT_ATOL = 1e-6  # final weights, 2 processes vs 1
RESUME_ATOL = 1e-7  # 2 processes resumed vs uninterrupted: the same computation, replayed


def _log(run_dir: Path) -> list[dict]:
    return json.loads((run_dir / "train_log.json").read_text())["history"]


@pytest.fixture(scope="module")
def two(tmp_path_factory) -> Path:
    pytest.importorskip("accelerate")
    out = tmp_path_factory.mktemp("two")
    res = subprocess.run(two_process_launch(str(Path(ddp_worker.__file__)), str(out)), capture_output=True,
                         text=True, timeout=300, env={**os.environ, **ENV})
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]
    return out


@pytest.fixture(scope="module")
def one(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("one")
    return out, {run: ddp_worker.train(run, out / run).state_dict() for run in ddp_worker.RUNS}


@pytest.mark.parametrize("run", list(ddp_worker.RUNS))
def test_two_processes_train_like_one(two, one, run):
    one_dir, one_weights = one
    a, b = _log(one_dir / run), _log(two / run)
    # same global batch: as many optimizer steps, at the same learning rates
    assert [h["step"] for h in b] == [h["step"] for h in a] and len(a) >= 6
    assert [h["epoch"] for h in b] == [h["epoch"] for h in a]
    for h1, h2 in zip(a, b):
        assert h2["lr"] == pytest.approx(h1["lr"], rel=1e-12)
        for key in ("loss", "L_a", "L_e"):
            assert h2[key] == pytest.approx(h1[key], rel=LOSS_RTOL), (run, h1["step"], key)
    w1, w2 = one_weights[run], torch.load(two / "weights.pt")[run]
    assert w1.keys() == w2.keys()
    for k in w1:
        assert torch.allclose(w1[k], w2[k], atol=WEIGHT_ATOL, rtol=0), (run, k)
    start = ddp_worker.build_model(ddp_worker.SLM, ddp_worker.make_vocab(
        ddp_worker.SLM, ddp_worker.CODEBOOK, ddp_worker.LABELS)).state_dict()
    assert any(not torch.allclose(w2[k], start[k], atol=1e-4) for k in w2)  # training moved them


def test_two_processes_write_one_checkpoint(two):
    root = two / "dense" / "checkpoints"
    steps = _log(two / "dense")[-1]["step"]
    assert sorted(p.name for p in root.iterdir()) == ["latest", f"step-{steps:08d}"]  # no temporary left
    files = sorted(p.name for p in (root / f"step-{steps:08d}").iterdir())
    # one model, one optimizer, one scheduler, one progress object; an RNG state per process
    assert files == ["custom_checkpoint_0.pkl", "meta.json", "optimizer.bin", "pytorch_model.bin",
                     "random_states_0.pkl", "random_states_1.pkl", "scheduler.bin"], files
    # it was 2 processes (a launcher that starts one would pass everything else)
    assert json.loads((root / f"step-{steps:08d}" / "meta.json").read_text())["fingerprint"]["world_size"] == 2


def test_two_processes_resume_where_they_stopped(two):
    full, resumed = torch.load(two / "weights.pt")["dense"], torch.load(two / "weights.pt")["resumed"]
    for k in full:
        assert torch.allclose(full[k], resumed[k], atol=RESUME_ATOL, rtol=0), k
    log, uninterrupted = _log(two / "resumed"), _log(two / "dense")
    assert [h["step"] for h in log] == [h["step"] for h in uninterrupted]
    # the resumed half of the log was computed after the restart, and matches
    for h1, h2 in zip(uninterrupted[ddp_worker.STOP_AT:], log[ddp_worker.STOP_AT:]):
        assert h2["loss"] == pytest.approx(h1["loss"], rel=1e-6)

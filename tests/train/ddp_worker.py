"""The training runs of tests/train/test_distributed_training.py, as a script `accelerate launch`
can start as 2 processes (`tests.distributed.two_process_launch("ddp_worker.py", OUT)`) and the
test can import (the one-process runs, in the test's own process).

Every run trains the same tiny SLM on the same tiny coded dialogues, so runs differ only in the
number of processes and in being stopped and resumed. Under `accelerate launch` rank 0 writes
OUT/weights.pt: {run name: the trained state_dict}.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import torch

if __package__ in (None, ""):  # run as a script by accelerate launch: make `tests` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from convmem.slm.model import SLMConfig, build_model, make_vocab  # noqa: E402
from convmem.train.loop import TrainConfig, train_slm  # noqa: E402
from tests.train.tiny_data import LABELS, dialogues  # noqa: E402

CODEBOOK = 16
SLM = SLMConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, n_limit=32, init_seed=0)
BASE = TrainConfig(lr=3e-3, epochs=2, seed=7, log_every=1, warmup_frac=0.2, n_o=16, n_p=16, n_q=32)
RUNS = {
    # dense chunks (9 of them: global batches of 4, 4 and 1, so one process of two has no row of
    # the last: process_share's empty share), token-mean L_a, code noise over the whole batch
    "dense": replace(BASE, objective="dense", batch_size=4, code_noise=0.2),
    # eq. 3-7 windows (20: batches of 7, 7, 6, so shares of 4 and 3 rows), per-example L_a
    "paper": replace(BASE, objective="paper", batch_size=7),
}
STOP_AT = 4  # the resumed run: stopped (checkpoint written) after this many steps, then resumed


def train(run: str, out_dir: Path, max_steps: int | None = None, resume: bool = False) -> torch.nn.Module:
    """Train run `run` of RUNS into `out_dir` (its log: out_dir/train_log.json); the trained model."""
    vocab = make_vocab(SLM, CODEBOOK, LABELS)
    cfg = replace(RUNS[run], max_steps=max_steps)
    # 4 dialogues of 5 turns: the example counts RUNS' comments rely on
    return train_slm(build_model(SLM, vocab), vocab, dialogues(4, 5, codebook=CODEBOOK), cfg, out_dir,
                     resume=resume)


def main(out: Path) -> None:
    from convmem.parallel import process_state

    weights = {}
    for run in RUNS:
        weights[run] = train(run, out / run).state_dict()
    # stopped after STOP_AT steps as a separate run would be, then resumed from its checkpoint
    train("dense", out / "resumed", max_steps=STOP_AT)
    weights["resumed"] = train("dense", out / "resumed", resume=True).state_dict()
    if process_state().is_main_process:
        torch.save(weights, out / "weights.pt")


if __name__ == "__main__":
    main(Path(sys.argv[1]))

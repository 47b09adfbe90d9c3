"""The training runs of tests/train/test_distributed_training.py, as a script `accelerate launch`
can start (`python -m accelerate.commands.launch --cpu --num_processes 2 ddp_worker.py OUT`) and
the test can import (the one-process runs, in the test's own process).

Every run trains the same tiny SLM on the same tiny coded dialogues, so runs differ only in the
number of processes and in being stopped and resumed. Under `accelerate launch` rank 0 writes
OUT/weights.pt: {run name: the trained state_dict}.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from convmem.slm.model import SLMConfig, build_model, make_vocab
from convmem.slm.stream import CodedDialogue
from convmem.train.loop import TrainConfig, train_slm

LABELS = ("neu", "hap", "sad", "ang")
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


def dialogues(n_dialogues: int = 4, n_utts: int = 5, seed: int = 0) -> list[CodedDialogue]:
    """Emotion k speaks codes from its own quarter of the codebook (learnable), some turns unscored."""
    rng = np.random.default_rng(seed)
    out = []
    for d in range(n_dialogues):
        utts = []
        for _ in range(n_utts):
            k = int(rng.integers(0, 4))
            lo = k * CODEBOOK // 4
            codes = rng.integers(lo, lo + CODEBOOK // 4, int(rng.integers(3, 12))).astype(np.int64)
            utts.append((codes, LABELS[k] if rng.random() < 0.85 else None))
        out.append(CodedDialogue(f"d{d}", utts))
    return out


def train(run: str, out_dir: Path, max_steps: int | None = None, resume: bool = False) -> torch.nn.Module:
    """Train run `run` of RUNS into `out_dir` (its log: out_dir/train_log.json); the trained model."""
    vocab = make_vocab(SLM, CODEBOOK, LABELS)
    cfg = replace(RUNS[run], max_steps=max_steps)
    return train_slm(build_model(SLM, vocab), vocab, dialogues(), cfg, out_dir, resume=resume)


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

"""Training speed of the emotion SLM: tokens/s of the "paper" and "dense" objectives and the
fraction of this machine's measured fp32 matmul ceiling they reach. Not a test.

    .venv/bin/python benchmarks/bench_train.py [--threads 2] [--codebook 1024] [--batch-size 8]

Synthetic dialogues (utterance lengths ~ 25 Hz x log-normal, mean ~4.5 s, the scale of IEMOCAP)
feed the real windows, collate, losses and AdamW step of `convmem.train.loop` on the default tiny
model. Prints a table and writes benchmarks/results/bench_train.json.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from convmem.fileio import atomic_write_json
from convmem.slm.model import SLMConfig, build_model, count_parameters, make_vocab
from convmem.slm.stream import CodedDialogue, dialogue_stream
from convmem.slm.windows import IGNORE, build_examples, collate
from convmem.train.loop import TrainConfig, epoch_batches, forward_losses, make_optimizer

LABELS = ("neu", "hap", "sad", "ang")


def matmul_ceiling(n: int = 1024, seconds: float = 2.0) -> float:
    """Best measured fp32 GFLOP/s of an n x n matmul at the current thread count."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    best, end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        t = time.perf_counter()
        for _ in range(5):
            a @ b
        best = max(best, 5 * 2 * n ** 3 / (time.perf_counter() - t) / 1e9)
    return best


def synthetic_dialogues(n_dialogues: int, n_utts: int, codebook: int, seed: int = 0) -> list[CodedDialogue]:
    rng = np.random.default_rng(seed)
    out = []
    for d in range(n_dialogues):
        utts = []
        for _ in range(n_utts):
            n = int(np.clip(25 * rng.lognormal(np.log(3.6), 0.6), 10, 700))
            utts.append((rng.integers(0, codebook, n).astype(np.int64), LABELS[int(rng.integers(0, 4))]))
        out.append(CodedDialogue(f"bench{d}", utts))
    return out


def step_flops(model_cfg: SLMConfig, vocab_size: int, batch) -> float:
    """Useful model FLOPs of one forward+backward: 6 x (non-embedding params) x tokens (padding
    included: it is computed), causal attention 6 L d T^2 per row (half of the dense 12 L d T^2),
    LM head 6 d V on the kept positions only."""
    d, L, inter = model_cfg.hidden_size, model_cfg.num_layers, model_cfg.intermediate_size
    B, T = batch.input_ids.shape
    per_token = L * (4 * d * d + 3 * d * inter)
    kept = batch.n_keep or T
    return 6 * B * T * per_token + 6 * L * d * B * T * T + 6 * B * kept * d * vocab_size


def bench_objective(objective: str, dialogues, cfg: SLMConfig, vocab, batch_size: int,
                    warmup: int, steps: int) -> dict:
    tc = TrainConfig(objective=objective, batch_size=batch_size, lr=1e-3)
    streams = [dialogue_stream(d, vocab) for d in dialogues]
    examples = build_examples(streams, vocab, objective, tc.windows, cfg.n_limit)
    batches = epoch_batches(examples, 0, batch_size, seed=0)[:warmup + steps]
    model = build_model(cfg, vocab).train()
    opt = make_optimizer(model, tc)
    params = [p for p in model.parameters() if p.requires_grad]
    n_tok = n_tgt = n_utt = 0
    flops = elapsed = 0.0
    step_rates: list[float] = []  # tokens/s of each timed step: the box is shared, so report spread
    for i, idx in enumerate(batches):
        t = time.perf_counter()
        batch = collate([examples[j] for j in idx], vocab.pad_id)
        losses = forward_losses(model, batch, vocab, per_example=objective == "paper")
        losses.total.backward()
        torch.nn.utils.clip_grad_norm_(params, tc.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if i >= warmup:
            dt = time.perf_counter() - t
            elapsed += dt
            step_rates.append(batch.n_tokens / dt)
            n_tok += batch.n_tokens
            n_tgt += int((batch.la_targets != IGNORE).sum() + (batch.le_labels != IGNORE).sum())
            n_utt += int((batch.le_labels != IGNORE).sum())
            flops += step_flops(cfg, model.config.vocab_size, batch)
    n_utts_total = sum(len(d.utterances) for d in dialogues)
    per_epoch_steps = len(epoch_batches(examples, 0, batch_size, seed=0))
    return {
        "objective": objective, "steps": len(batches) - warmup, "seconds": elapsed,
        "tokens_per_s": n_tok / elapsed, "step_tokens_per_s_median": float(np.median(step_rates)),
        "step_tokens_per_s_best": max(step_rates), "targets_per_s": n_tgt / elapsed,
        "scored_utterances_per_s": n_utt / elapsed, "gflops_per_s": flops / elapsed / 1e9,
        "examples_per_epoch": len(examples), "stream_tokens": sum(len(s) for s in streams),
        "example_tokens_per_epoch": sum(len(e.ids) for e in examples),
        "est_epoch_s": elapsed / (len(batches) - warmup) * per_epoch_steps,
        "utterances": n_utts_total,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--codebook", type=int, default=1024)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--dialogues", type=int, default=30)
    ap.add_argument("--utterances", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "bench_train.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    load0 = os.getloadavg()[0]

    cfg = SLMConfig()
    vocab = make_vocab(cfg, args.codebook, LABELS)
    # The box is shared: the ceiling is the best of measurements before, between and after the
    # runs, so a burst of someone else's load cannot deflate it (it can still deflate the runs).
    ceilings = [matmul_ceiling()]
    dialogues = synthetic_dialogues(args.dialogues, args.utterances, args.codebook)
    rows = []
    for o in ("paper", "dense"):
        rows.append(bench_objective(o, dialogues, cfg, vocab, args.batch_size, args.warmup, args.steps))
        ceilings.append(matmul_ceiling())
    ceiling = max(ceilings)
    for r in rows:
        r["fraction_of_matmul_ceiling"] = r["gflops_per_s"] / ceiling

    n_params = count_parameters(build_model(cfg, vocab))[1]
    print(f"tiny SLM {n_params / 1e6:.2f} M params, codebook {args.codebook}, batch {args.batch_size}, "
          f"threads {args.threads}, load avg {load0:.1f}->{os.getloadavg()[0]:.1f}, fp32 matmul ceiling {ceiling:.1f} GFLOP/s")
    hdr = f"{'objective':9} {'tok/s':>8} {'best':>6} {'targets/s':>9} {'utt/s':>6} {'GFLOP/s':>8} {'ceiling':>7} " \
          f"{'ex-tokens/epoch':>15} {'est epoch s':>11}"
    print(hdr)
    for r in rows:
        print(f"{r['objective']:9} {r['tokens_per_s']:8.0f} {r['step_tokens_per_s_best']:6.0f} {r['targets_per_s']:9.0f} "
              f"{r['scored_utterances_per_s']:6.2f} {r['gflops_per_s']:8.2f} {r['fraction_of_matmul_ceiling']:7.1%} "
              f"{r['example_tokens_per_epoch']:15d} {r['est_epoch_s']:11.1f}")
    atomic_write_json(args.out, {
        "bench": "train", "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
        "threads": args.threads, "load_avg_1min": [load0, os.getloadavg()[0]], "torch": torch.__version__,
        "matmul_ceiling_gflops": ceiling, "matmul_ceiling_samples": ceilings, "params": n_params, "codebook": args.codebook,
        "batch_size": args.batch_size, "dialogues": args.dialogues, "utterances_per_dialogue": args.utterances,
        "window": {"n_o": TrainConfig.n_o, "n_p": TrainConfig.n_p, "n_q": TrainConfig.n_q, "n_limit": cfg.n_limit},
        "results": rows,
    })
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

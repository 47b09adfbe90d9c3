"""Cost of the paper's recipe on a real pretrained LLM (SmolLM2-135M, packaged) beside the tiny
from-scratch backbone: training tokens/s, DPM write time per utterance, the memory's real-time
factor, and peak memory. Not a test.

    .venv/bin/python benchmarks/bench_smollm2.py [--threads 2] [--n-limit 512] [--smoke]

Each (backbone, phase) runs in a fresh process (clean peak RSS), with untrained weights: cost does
not depend on what the weights are. The model shape is the real-speech one (configs/ravdess.yaml):
the SLM reads Whisper-base frames (D 512) with the utterance summary, codebook 512. The workload
is seeded random: utterances of `--utt-seconds` of 25 Hz codes with frames.

- train: `train_slm` (the Accelerate loop), dense objective, batch 1 of n_limit-token chunks,
  `--train-steps` steps; tokens/s is the median over the steps after the first (warm-up).
- predict (per memory `none`, `dpm`, `mal`): the model is merged (as saved) and the memory is the
  one `predict` builds (`Bundle.memory`: DPM r 64 / alpha 64 on every linear layer, lr 5e-5,
  n_r = n_limit / 2; a fresh MAL adapter); `--utterances` utterances are pushed as a live
  conversation. Write and read ms are per utterance after the first two; RTF = engine seconds /
  audio seconds, the speech front-end excluded (Whisper base adds RTF ~0.014 on an idle machine,
  bench_predict.py).

Prints markdown tables and writes benchmarks/results/smollm2.json (machine facts and load average
included: say "under load" when the 1-minute load average exceeds the cores).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

BACKBONES = ("smollm2-135m", "tiny")
METHODS = ("none", "dpm", "mal")
FRAME_DIM = 512  # Whisper base's width
CODEBOOK = 512


def _cfg(backbone: str, n_limit: int):
    from convmem.slm.model import SLMConfig

    return SLMConfig(backbone=backbone, n_limit=n_limit, audio_input="frames", utterance_summary=True)


def _dialogue(args, seed: int):
    """A CodedDialogue of `args.utterances` turns of utt_seconds * 25 codes with random frames."""
    import numpy as np

    from convmem.slm.stream import CodedDialogue

    rng = np.random.default_rng(seed)
    n = int(round(args.utt_seconds * 25))
    utts = [(rng.integers(0, CODEBOOK, n).astype(np.int64), common.LABELS[i % 4]) for i in range(args.utterances)]
    frames = [rng.standard_normal((n, FRAME_DIM)).astype(np.float32) for _ in range(args.utterances)]
    return CodedDialogue(f"bench{seed}", utts, frames=frames)


def train_worker(backbone: str, args) -> dict:
    from convmem.slm.model import build_model, count_parameters, make_vocab
    from convmem.train.loop import LOG_FILE, TrainConfig, train_slm

    cfg = _cfg(backbone, args.n_limit)
    vocab = make_vocab(cfg, CODEBOOK, common.LABELS)
    t = time.perf_counter()
    model = build_model(cfg, vocab, FRAME_DIM)
    build_s = time.perf_counter() - t
    trainable, total = count_parameters(model)
    # enough dialogue for every step to be one full n_limit-token chunk
    need = args.train_steps * args.n_limit
    dialogues, seed = [], 0
    while sum(d.n_tokens for d in dialogues) < need + args.n_limit:
        dialogues.append(_dialogue(args, seed))
        seed += 1
    tc = TrainConfig(lr=5e-5, epochs=1, batch_size=1, objective="dense", max_steps=args.train_steps, log_every=1,
                     checkpoint_every=10**6, warmup_frac=0.0)
    with tempfile.TemporaryDirectory() as tmp:
        train_slm(model, vocab, dialogues, tc, tmp)
        log = json.loads((Path(tmp) / LOG_FILE).read_text())["history"]
    rates = [h["tokens_per_s"] for h in log[1:]] or [log[0]["tokens_per_s"]]
    return {"backbone": backbone, "phase": "train", "build_s": build_s, "params_total": total,
            "params_trainable": trainable, "steps": len(log), "tokens_per_step": args.n_limit,
            "tokens_per_s": statistics.median(rates), "tokens_per_s_all": [h["tokens_per_s"] for h in log],
            "peak_rss_mb": common.peak_rss_mb(), "load_avg_1min": common.machine_info(0)["load_avg_1_5_15"][0]}


def predict_worker(backbone: str, method: str, args) -> dict:
    from convmem.memory import registry

    cfg = _cfg(backbone, args.n_limit)
    bundle = common.untrained_bundle(SimpleNamespace(codebook_size=CODEBOOK), cfg, backbone, frame_dim=FRAME_DIM)
    engine, mem = common.engine_for(bundle, method)
    conv = engine.open("bench")
    dialogue = _dialogue(args, 10_000)
    base_rss = common.current_rss_mb()
    per = []
    with registry.grad_mode(method):
        for utt in dialogue.inputs(bundle.vocab):
            t = time.perf_counter()
            conv.push(utt)
            per.append(time.perf_counter() - t)
    steady = slice(2, None)  # the first write happens at turn 2; warm-up excluded
    audio_s = args.utt_seconds * len(per[steady])
    return {"backbone": backbone, "phase": "predict", "method": method, "utterances": len(per),
            "utterance_s": common.stats(per[steady]), "write_s": common.stats(mem.write_s[steady]),
            "read_s": common.stats(mem.read_s[steady]), "rtf": sum(per[steady]) / audio_s,
            "peak_rss_mb": common.peak_rss_mb(), "rss_before_stream_mb": base_rss,
            "load_avg_1min": common.machine_info(0)["load_avg_1_5_15"][0]}


def worker(spec: dict, args) -> dict:
    if spec["phase"] == "train":
        return train_worker(spec["backbone"], args)
    return predict_worker(spec["backbone"], spec["method"], args)


def report(runs: list[dict], args) -> str:
    train = [r for r in runs if r["phase"] == "train"]
    pred = [r for r in runs if r["phase"] == "predict"]
    t1 = common.markdown_table(
        ["backbone", "params", "trainable", "n_limit", "steps", "train tokens/s", "peak RSS MiB", "load 1 min"],
        [[r["backbone"], f"{r['params_total'] / 1e6:.1f} M", f"{r['params_trainable'] / 1e6:.2f} M", r["tokens_per_step"],
          r["steps"], r["tokens_per_s"], r["peak_rss_mb"], r["load_avg_1min"]] for r in train])
    t2 = common.markdown_table(
        ["backbone", "memory", "utts", "ms / utterance", "write ms", "read ms", "RTF (memory only)", "peak RSS MiB",
         "load 1 min"],
        [[r["backbone"], r["method"], r["utterance_s"]["n"], 1e3 * r["utterance_s"]["mean"], 1e3 * r["write_s"]["mean"],
          1e3 * r["read_s"]["mean"], r["rtf"], r["peak_rss_mb"], r["load_avg_1min"]] for r in pred])
    return (f"**Training** (dense, batch 1 x {args.n_limit} tokens, {args.threads} threads)\n\n{t1}\n\n"
            f"**Predict** ({args.utterances} utterances of {args.utt_seconds} s, first two excluded)\n\n{t2}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--n-limit", type=int, default=512)
    p.add_argument("--train-steps", type=int, default=4)
    p.add_argument("--utterances", type=int, default=8)
    p.add_argument("--utt-seconds", type=float, default=3.5, help="RAVDESS clips last ~3.5 s")
    p.add_argument("--backbone", action="append", choices=BACKBONES, help="default: both")
    p.add_argument("--smoke", action="store_true", help="n_limit 64, 2 steps, 4 utterances of 1 s")
    p.add_argument("--no-subprocess", action="store_true",
                   help="run every phase in this process (faster; peak RSS then accumulates)")
    p.add_argument("--out", type=Path, default=common.RESULTS_DIR / "smollm2.json")
    p.add_argument("--cache", type=Path, default=common.DEFAULT_CACHE)  # run_worker passes it; unused
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--worker-out", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.smoke:
        args.n_limit, args.train_steps, args.utterances, args.utt_seconds = 64, 2, 4, 1.0
    import torch

    torch.set_num_threads(args.threads)
    if args.worker:
        from convmem.fileio import atomic_write_json

        atomic_write_json(args.worker_out, worker(json.loads(args.worker), args))
        return 0
    extra = ["--n-limit", str(args.n_limit), "--train-steps", str(args.train_steps), "--utterances",
             str(args.utterances), "--utt-seconds", str(args.utt_seconds)]
    runs = []
    for backbone in args.backbone or BACKBONES:
        specs = [{"phase": "train", "backbone": backbone}] + [
            {"phase": "predict", "backbone": backbone, "method": m} for m in METHODS]
        for spec in specs:
            print(f"running {spec}", flush=True)
            runs.append(worker(spec, args) if args.no_subprocess
                        else common.run_worker(Path(__file__), spec, args.threads, args.cache, extra))
    text = report(runs, args)
    print(text)
    common.write_results(args.out, "smollm2", args.threads,
                         {"mode": "smoke" if args.smoke else "full", "settings": vars(args) | {"out": str(args.out),
                          "cache": str(args.cache), "worker_out": None}, "results": runs})
    return 0


if __name__ == "__main__":
    common.run_script(main)

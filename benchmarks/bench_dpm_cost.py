"""Cost of DPM (the temporary-LoRA memory) on the tiny default SLM, on real synthetic speech. Not a test.

    .venv/bin/python benchmarks/bench_dpm_cost.py [--part a ...] [--quick | --smoke] [--threads 2]

Parts (each configuration runs in a fresh Python process, so peak RSS is its own):
  a  streaming (`engine.run`) vs the paper's per-sample protocol (`engine.run_per_sample`) on a
     40-turn prefix: identical predictions (argmax, max |logit diff|) and the wall-clock ratio;
  b  per-utterance time (mean/p50/p90 after warm-up, write/read split) and peak RSS after 5, 15,
     30 and 60 min of dialogue, beside `window_full` (whole history in context) where the history
     fits the model's 8192 positions;
  c  throughput (utterances/s) of B = 1, 4, 8, 16 equal-length conversations, `engine.run(batch_size=B)`;
  d  real-time factor (audio read + tokenization + engine seconds / audio seconds) at >= 15 min
     (taken from b's DPM run, which tokenizes each turn as it arrives);
  e  achieved GFLOP/s of write steps (matmul FLOPs measured by torch's FlopCounterMode, causal
     attention added analytically) against this machine's fp32 matmul ceiling (bench_train.py).
Paper defaults: r 64, alpha 64, AdamW, n_r = n_limit // 2 = 512, sentence stepping, 2 threads.
The model is UNTRAINED (cost does not depend on the weights). Prints markdown tables with the
targets and writes benchmarks/results/dpm_cost.json (rewritten after each part; --quick and --smoke
write dpm_cost_quick.json / dpm_cost_smoke.json).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

SETTINGS = {
    # a: turns; b: checkpoints (min); c: batch sizes, turns per conversation, warm-up steps; d: RTF from
    # this many minutes on; e: timed writes; warmup: utterances left out of b's and e's statistics
    "full": dict(a_turns=40, b_minutes=[5, 15, 30, 60], c_batches=[1, 4, 8, 16], c_utts=12, c_warmup=5,
                 d_minutes=15, e_writes=30, warmup=10),
    "quick": dict(a_turns=12, b_minutes=[2, 5], c_batches=[1, 4, 8], c_utts=8, c_warmup=4,
                  d_minutes=5, e_writes=12, warmup=5),
    "smoke": dict(a_turns=5, b_minutes=[0.2, 0.5], c_batches=[1, 2], c_utts=4, c_warmup=1,
                  d_minutes=0.5, e_writes=4, warmup=2),
}
TARGETS = {"a_ratio": 15.0, "b_time": 1.25, "b_rss": 1.15, "c_ratio": 2.0, "d_rtf": 0.05, "e_fraction": 0.35}


# ---------------------------------------------------------------- workers (one fresh process each)

def _setup(args):
    turns = common.long_stream(args.cache, args.smoke)
    tok = common.fitted_tokenizer(args.cache, turns, args.codebook, args.smoke)
    return turns, common.tiny_bundle(tok, args.smoke)


def _coded(bundle, turns):
    """Vocabulary ids int64[n] of each turn (tokenized up front: parts a, c and e do not time it)."""
    return [bundle.vocab.audio_ids(bundle.tokenizer.encode(common.read_turn(t))) for t in turns]


def worker_a(spec: dict, args) -> dict:
    import numpy as np
    import torch

    turns, bundle = _setup(args)
    conv = _coded(bundle, turns[: spec["turns"]])
    engine, _ = common.engine_for(bundle, "dpm")
    with torch.enable_grad():
        t = time.perf_counter()
        stream = engine.run([conv], keys=["a"])[0]
        t_stream = time.perf_counter() - t
        t = time.perf_counter()
        per = engine.run_per_sample([conv], keys=["a"])[0]
        t_per = time.perf_counter() - t
    diff = float(np.abs(stream.logits - per.logits).max())
    return {"turns": len(conv), "tokens": int(sum(c.numel() for c in conv)), "stream_s": t_stream,
            "per_sample_s": t_per, "ratio": t_per / t_stream,
            "argmax_equal": bool((stream.predictions == per.predictions).all()), "max_abs_logit_diff": diff,
            "logits_within_1e-5": bool(diff <= 1e-5)}


def worker_b(spec: dict, args) -> dict:
    turns, bundle = _setup(args)
    minutes = spec["minutes"]
    return common.stream_live(bundle, spec["method"], common.prefix(turns, max(minutes)), minutes,
                              spec["warmup"], progress=not args.smoke)


def worker_c(spec: dict, args) -> dict:
    import torch

    turns, bundle = _setup(args)
    B, n = spec["batch"], spec["utterances"]
    convs = [_coded(bundle, turns[j * n:(j + 1) * n]) for j in range(B)]
    engine, mem = common.engine_for(bundle, "dpm")
    starts: list[float] = []
    inner_write = mem.write

    def stamped_write(state, batch):  # one write per engine step: its start time marks the step
        starts.append(time.perf_counter())
        return inner_write(state, batch)

    mem.write = stamped_write
    with torch.enable_grad():
        t = time.perf_counter()
        engine.run(convs, keys=[f"c{j}" for j in range(B)], batch_size=B)
        end = time.perf_counter()
    w = spec["warmup"]
    steady_tokens = sum(int(c[k].numel()) for c in convs for k in range(w, n))
    return {"batch": B, "utterances_per_conversation": n, "steps": len(starts), "total_s": end - t,
            "utt_per_s": B * n / (end - t), "steady_utt_per_s": B * (n - w) / (end - starts[w]),
            "steady_tokens_per_s": steady_tokens / (end - starts[w]), "warmup_steps": w,
            "peak_rss_mb": common.peak_rss_mb()}


def worker_e(spec: dict, args) -> dict:
    import numpy as np
    import torch
    from bench_train import matmul_ceiling
    from torch.utils.flop_counter import FlopCounterMode

    turns, bundle = _setup(args)
    conv = _coded(bundle, turns[: spec["writes"] + spec["warmup"]])
    ceilings = [matmul_ceiling()]
    engine, mem = common.engine_for(bundle, "dpm")
    with torch.enable_grad():
        engine.run([conv], keys=["e"])  # timed pass (TimedMemory)
    write_s, read_s = mem.write_s, mem.read_s
    ceilings.append(matmul_ceiling())
    # Second, identical pass with the counters on: same windows, same work, so the same FLOPs.
    counted = {"write": [], "read": []}
    inner = mem.inner

    class Counting:
        def __getattr__(self, name):
            return getattr(inner, name)

        def _count(self, kind, fn, *a):
            with FlopCounterMode(display=False) as fc, AttentionFlops() as att:
                out = fn(*a)
            counted[kind].append(fc.get_total_flops() + att.flops)
            return out

        def write(self, state, batch):
            return self._count("write", inner.write, state, batch)

        def read(self, state, batch):
            return self._count("read", inner.read, state, batch)

    engine.memory = Counting()
    with torch.enable_grad():
        engine.run([conv], keys=["e"])
    w = spec["warmup"]
    wf, ws = np.array(counted["write"][w:], float), np.array(write_s[w:])
    rf, rs = np.array(counted["read"][w:], float), np.array(read_s[w:])
    ceiling = max(ceilings)
    return {"writes": int(wf.size), "write_gflop_mean": wf.mean() / 1e9, "write_s_mean": ws.mean(),
            "write_gflops_per_s": wf.sum() / ws.sum() / 1e9, "write_gflops_per_s_best": float((wf / ws).max() / 1e9),
            "read_gflop_mean": rf.mean() / 1e9, "read_gflops_per_s": rf.sum() / rs.sum() / 1e9,
            "matmul_ceiling_gflops": ceiling, "matmul_ceiling_samples": ceilings,
            "write_fraction_of_ceiling": wf.sum() / ws.sum() / 1e9 / ceiling,
            "read_fraction_of_ceiling": rf.sum() / rs.sum() / 1e9 / ceiling}


class AttentionFlops:
    """Adds the FLOPs of `scaled_dot_product_attention`, which FlopCounterMode does not count for
    torch's CPU kernel: causal q.k and p.v = 2 * B * H * Tq * Tk * D (half of the dense 4 BHTqTkD),
    x3 when a backward will follow (autograd needs the input gradients of q, k and v)."""

    def __init__(self):
        import torch
        from torch.overrides import TorchFunctionMode

        self.flops = 0

        outer = self

        class Mode(TorchFunctionMode):
            def __torch_function__(self, func, types, a=(), kw=None):
                kw = kw or {}
                if func is torch.nn.functional.scaled_dot_product_attention:
                    q, k = a[0], a[1]
                    f = 2 * q.shape[0] * q.shape[1] * q.shape[2] * k.shape[2] * q.shape[3]
                    outer.flops += f * (3 if torch.is_grad_enabled() and q.requires_grad else 1)
                return func(*a, **kw)

        self._mode = Mode()

    def __enter__(self):
        self._mode.__enter__()
        return self

    def __exit__(self, *exc):
        return self._mode.__exit__(*exc)


WORKERS = {"a": worker_a, "b": worker_b, "c": worker_c, "e": worker_e}


# ---------------------------------------------------------------- orchestration

def window_full_fits(turns, minutes: float, positions: int) -> bool:
    """Whether the whole history of a `minutes` prefix (25 codes/s + `<audio_end>` and emotion
    token per turn) fits the model's positions."""
    sub = common.prefix(turns, minutes)
    return sum(round(25 * (t.end - t.start)) + 2 for t in sub) <= positions


def run_parts(args, parts: list[str], s: dict, results: dict, save) -> None:
    def work(spec):
        if args.no_subprocess:
            return WORKERS[spec["part"]](spec, args)
        return common.run_worker(Path(__file__), spec, args.threads, args.cache,
                                 ["--codebook", str(args.codebook)] + (["--smoke"] if args.smoke else []))

    if "a" in parts:
        results["a"] = work({"part": "a", "turns": s["a_turns"]})
        save()
    if "b" in parts or "d" in parts:
        minutes = s["b_minutes"] if "b" in parts else [s["d_minutes"]]
        results["b"] = {"dpm": work({"part": "b", "method": "dpm", "minutes": minutes, "warmup": s["warmup"]})}
        save()
        if "b" in parts:
            turns = common.long_stream(args.cache, args.smoke)
            positions = 1024 if args.smoke else 8192  # SLMConfig.max_position_embeddings
            results["b"]["window_full_positions"] = positions
            fit = [m for m in minutes if window_full_fits(turns, m, positions)]
            results["b"]["window_full_fits_minutes"] = fit
            if fit:
                results["b"]["window_full"] = work({"part": "b", "method": "window_full", "minutes": fit,
                                                    "warmup": s["warmup"]})
            save()
    if "c" in parts:
        results["c"] = [work({"part": "c", "batch": B, "utterances": s["c_utts"], "warmup": s["c_warmup"]})
                        for B in s["c_batches"]]
        save()
    if "e" in parts:
        results["e"] = work({"part": "e", "writes": s["e_writes"], "warmup": s["warmup"]})
        save()


def report(results: dict, s: dict) -> tuple[str, dict]:
    """Markdown tables (one per part) and the verdicts."""
    out, verdicts, T = [], {}, TARGETS
    if "a" in results:
        a = results["a"]
        ok = bool(a["ratio"] >= T["a_ratio"] and a["argmax_equal"] and a["logits_within_1e-5"])
        verdicts["a"] = ok
        out.append(f"**(a) streaming vs per-sample, {a['turns']} turns ({a['tokens']} audio tokens)**\n\n" + common.markdown_table(
            ["streaming s", "per-sample s", "ratio", "target", "argmax equal", "max abs logit diff", "verdict"],
            [[a["stream_s"], a["per_sample_s"], f"{a['ratio']:.1f}x", f">= {T['a_ratio']:.0f}x, identical",
              a["argmax_equal"], f"{a['max_abs_logit_diff']:.2e}", common.verdict(ok)]]))
    if "b" in results and len(results["b"]["dpm"]["checkpoints"]) > 1:
        rows = []
        for method in ("dpm", "window_full"):
            for c in results["b"].get(method, {}).get("checkpoints", []):
                rows.append([method, c["minutes"], c["utterances"], c["tokens"], 1e3 * c["utterance_s"]["mean"],
                             1e3 * c["utterance_s"]["p50"], 1e3 * c["utterance_s"]["p90"],
                             1e3 * c["utterance_s_last5min"]["mean"], 1e3 * c["write_s"]["mean"],
                             1e3 * c["read_s"]["mean"], c["peak_rss_mb"], c["peak_rss_over_baseline_mb"]])
        cps = results["b"]["dpm"]["checkpoints"]
        lo, hi = cps[0], cps[-1]
        t_ratio = hi["utterance_s"]["mean"] / lo["utterance_s"]["mean"]
        p50_ratio = hi["utterance_s"]["p50"] / lo["utterance_s"]["p50"]
        r_ratio = hi["peak_rss_mb"] / lo["peak_rss_mb"]
        verdicts["b_time"], verdicts["b_rss"] = bool(t_ratio <= T["b_time"]), bool(r_ratio <= T["b_rss"])
        fit = results["b"].get("window_full_fits_minutes", [])
        out.append(f"**(b) per-utterance time and peak RSS vs dialogue length** (after {s['warmup']} warm-up "
                   f"utterances; `window_full` only where the whole history fits the model's "
                   f"{results['b'].get('window_full_positions')} positions: {fit} min)\n\n"
                   + common.markdown_table(["method", "min", "utts", "tokens", "mean ms", "p50 ms", "p90 ms",
                                            "last-5-min mean ms", "write ms", "read ms", "peak RSS MiB",
                                            "RSS over baseline MiB"], rows)
                   + "\n\n" + common.markdown_table(
                       ["check", "measured", "target", "verdict"],
                       [[f"time/utt {hi['minutes']} min vs {lo['minutes']} min (mean)", f"{t_ratio:.2f}x",
                         f"<= {T['b_time']}x", common.verdict(verdicts["b_time"])],
                        [f"time/utt {hi['minutes']} min vs {lo['minutes']} min (p50)", f"{p50_ratio:.2f}x",
                         f"<= {T['b_time']}x", "(info)"],
                        [f"peak RSS {hi['minutes']} min vs {lo['minutes']} min", f"{r_ratio:.3f}x",
                         f"<= {T['b_rss']}x", common.verdict(verdicts["b_rss"])]]))
    if "c" in results:
        base = results["c"][0]["steady_utt_per_s"]
        rows = [[c["batch"], c["utterances_per_conversation"], c["utt_per_s"], c["steady_utt_per_s"],
                 c["steady_tokens_per_s"], f"{c['steady_utt_per_s'] / base:.2f}x", c["peak_rss_mb"]]
                for c in results["c"]]
        b8 = next((c for c in results["c"] if c["batch"] == 8), None)
        verdicts["c"] = None if b8 is None else bool(b8["steady_utt_per_s"] / base >= T["c_ratio"])
        out.append(f"**(c) batched throughput** (steady state: steps >= {s['c_warmup']}; target B=8 >= "
                   f"{T['c_ratio']:.0f}x B=1: {common.verdict(verdicts['c'])})\n\n" + common.markdown_table(
                       ["B", "utts/conv", "utt/s (all)", "utt/s (steady)", "tokens/s (steady)", "vs B=1",
                        "peak RSS MiB"], rows))
    if "b" in results:
        cps = results["b"]["dpm"]["checkpoints"]
        rows = []
        for c in cps:
            if c["minutes"] >= s["d_minutes"]:
                ok = bool(c["rtf"] <= T["d_rtf"])
                verdicts.setdefault("d", ok)
                rows.append([c["minutes"], c["audio_s"], c["tokenize_total_s"], c["engine_total_s"],
                             f"{c['rtf']:.3f}", f"<= {T['d_rtf']}", 60 * c["rtf"], common.verdict(ok)])
        out.append("**(d) real-time factor of DPM, tokenization included**\n\n" + common.markdown_table(
            ["min", "audio s", "read+tokenize s", "engine s", "RTF", "target", "min per hour of audio", "verdict"], rows))
    if "e" in results:
        e = results["e"]
        ok = bool(e["write_fraction_of_ceiling"] >= T["e_fraction"])
        verdicts["e"] = ok
        out.append("**(e) achieved GFLOP/s vs the fp32 matmul ceiling**\n\n" + common.markdown_table(
            ["step", "GFLOP/step", "ms/step", "GFLOP/s", "ceiling GFLOP/s", "fraction", "target", "verdict"],
            [["write", e["write_gflop_mean"], 1e3 * e["write_s_mean"], e["write_gflops_per_s"],
              e["matmul_ceiling_gflops"], f"{e['write_fraction_of_ceiling']:.1%}", f">= {T['e_fraction']:.0%}",
              common.verdict(ok)],
             ["read", e["read_gflop_mean"], "", e["read_gflops_per_s"], e["matmul_ceiling_gflops"],
              f"{e['read_fraction_of_ceiling']:.1%}", "(info)", ""]]))
    return "\n\n".join(out), verdicts


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", action="append", choices=["a", "b", "c", "d", "e"],
                    help="part(s) to run (repeatable; default: all)")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="reduced set (~1/5 of the work)")
    mode.add_argument("--smoke", action="store_true", help="seconds: tiny model, generated tones (for the tests)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--codebook", type=int, default=None, help="kmeans codebook (default 512, the KMeansConfig "
                    "default; 32 with --smoke)")
    ap.add_argument("--cache", type=Path, default=common.DEFAULT_CACHE, help="synthetic corpus + tokenizer cache")
    ap.add_argument("--out", type=Path, default=common.RESULTS_DIR / "dpm_cost.json")
    ap.add_argument("--no-subprocess", action="store_true", help="run every configuration in this process")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--worker-out", help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def main(argv=None) -> int:
    import torch

    args = parse_args(argv)
    args.codebook = args.codebook or (32 if args.smoke else 512)
    torch.set_num_threads(args.threads)
    args.cache.mkdir(parents=True, exist_ok=True)
    if args.worker:
        spec = json.loads(args.worker)
        Path(args.worker_out).write_text(json.dumps(WORKERS[spec["part"]](spec, args)))
        return 0
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    if mode != "full" and args.out == common.RESULTS_DIR / "dpm_cost.json":  # keep the full run's file
        args.out = common.RESULTS_DIR / f"dpm_cost_{mode}.json"
    s = SETTINGS[mode]
    parts = args.part or ["a", "b", "c", "d", "e"]
    results: dict = {}
    started = time.time()

    def save():
        text, verdicts = report(results, s)
        common.write_results(args.out, "dpm_cost", args.threads, {
            "mode": mode, "parts": parts, "settings": s, "targets": TARGETS, "command": " ".join(sys.argv),
            "dpm_config": "paper defaults (DPMConfig()): r 64, alpha 64, adamw, lr 5e-5, n_r 512, sentence",
            "model": "tiny default SLM (SLMConfig()), untrained" if not args.smoke else "smoke SLM (hidden 32)",
            "workload": "synthetic long preset seed 0, dialogues played back to back" if not args.smoke else "tones",
            "elapsed_s": time.time() - started, "verdicts": verdicts, "results": results})
        return text

    run_parts(args, parts, s, results, save)
    print(save())
    print(f"\nthreads {args.threads}, load avg {common.machine_info(args.threads)['load_avg_1_5_15']}, "
          f"{time.time() - started:.0f} s; wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

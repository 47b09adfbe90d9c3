"""Cost of MAL (Memory-as-a-Layer) beside DPM's: per-utterance time and peak RSS against dialogue
length, and the real-time factor, on the tiny default SLM and real synthetic speech. Not a test.

    .venv/bin/python benchmarks/bench_mal_cost.py [--quick | --smoke] [--threads 2] [--with-dpm]

The MAL stream runs in a fresh process, exactly like bench_dpm_cost.py part b (same workload:
the synthetic `long` preset played back to back, each turn tokenized as it arrives; same
checkpoints after 5, 15, 30 and 60 min; same warm-up). The adapter is fresh (untrained, default
MALConfig: memory dim 64, middle layer, one write per utterance): cost does not depend on its
weights. DPM's rows come from benchmarks/results/dpm_cost.json when it holds part b of the same
mode, otherwise (or with --with-dpm) DPM is run here too. Prints markdown tables and writes
benchmarks/results/mal_cost.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
from bench_dpm_cost import SETTINGS, TARGETS  # noqa: E402


def worker(spec: dict, args) -> dict:
    turns = common.long_stream(args.cache, args.smoke)
    tok = common.fitted_tokenizer(args.cache, turns, args.codebook, args.smoke)
    bundle = common.tiny_bundle(tok, args.smoke)
    minutes = spec["minutes"]
    return common.stream_live(bundle, spec["method"], common.prefix(turns, max(minutes)), minutes,
                              spec["warmup"], progress=not args.smoke)


def dpm_rows(args, mode: str, s: dict, work) -> tuple[dict, str]:
    """DPM's part-b run: reused from dpm_cost.json when it matches this mode, else run now."""
    path = common.RESULTS_DIR / ("dpm_cost.json" if mode == "full" else f"dpm_cost_{mode}.json")
    if not args.with_dpm and path.is_file():
        saved = json.loads(path.read_text())
        b = saved.get("results", {}).get("b", {}).get("dpm")
        if saved.get("mode") == mode and b and [c["minutes"] for c in b["checkpoints"]] == s["b_minutes"]:
            return b, f"{path.name} ({saved['machine']['date_utc']})"
    return work({"method": "dpm", "minutes": s["b_minutes"], "warmup": s["warmup"]}), "this run"


def report(runs: dict[str, dict], s: dict) -> tuple[str, dict]:
    rows, checks, verdicts = [], [], {}
    for method, run in runs.items():
        cps = run["checkpoints"]
        for c in cps:
            rows.append([method, c["minutes"], c["utterances"], 1e3 * c["utterance_s"]["mean"],
                         1e3 * c["utterance_s"]["p50"], 1e3 * c["utterance_s"]["p90"],
                         1e3 * c["utterance_s_last5min"]["mean"], 1e3 * c["write_s"]["mean"],
                         1e3 * c["read_s"]["mean"], c["peak_rss_mb"], c["peak_rss_over_baseline_mb"], f"{c['rtf']:.3f}"])
        lo, hi = cps[0], cps[-1]
        t_ratio = hi["utterance_s"]["mean"] / lo["utterance_s"]["mean"]
        r_ratio = hi["peak_rss_mb"] / lo["peak_rss_mb"]
        d = next((c for c in cps if c["minutes"] >= s["d_minutes"]), hi)
        verdicts[method] = {"time": bool(t_ratio <= TARGETS["b_time"]), "rss": bool(r_ratio <= TARGETS["b_rss"]),
                            "rtf": bool(d["rtf"] <= TARGETS["d_rtf"])}
        checks += [
            [method, f"time/utt {hi['minutes']} vs {lo['minutes']} min (mean)", f"{t_ratio:.2f}x",
             f"<= {TARGETS['b_time']}x", common.verdict(verdicts[method]["time"])],
            [method, f"peak RSS {hi['minutes']} vs {lo['minutes']} min", f"{r_ratio:.3f}x",
             f"<= {TARGETS['b_rss']}x", common.verdict(verdicts[method]["rss"])],
            [method, f"RTF at {d['minutes']} min (tokenization included)", f"{d['rtf']:.3f}",
             f"<= {TARGETS['d_rtf']}", common.verdict(verdicts[method]["rtf"])],
        ]
    text = ("**MAL beside DPM: per-utterance time, peak RSS and real-time factor vs dialogue length** "
            f"(after {s['warmup']} warm-up utterances)\n\n"
            + common.markdown_table(["method", "min", "utts", "mean ms", "p50 ms", "p90 ms", "last-5-min mean ms",
                                     "write ms", "read ms", "peak RSS MiB", "RSS over baseline MiB", "RTF"], rows)
            + "\n\n" + common.markdown_table(["method", "check", "measured", "target", "verdict"], checks))
    return text, verdicts


def main(argv=None) -> int:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode_group = ap.add_mutually_exclusive_group()
    mode_group.add_argument("--quick", action="store_true")
    mode_group.add_argument("--smoke", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--codebook", type=int, default=None, help="kmeans codebook (default 512; 32 with --smoke)")
    ap.add_argument("--cache", type=Path, default=common.DEFAULT_CACHE)
    ap.add_argument("--out", type=Path, default=None, help="default benchmarks/results/mal_cost[_quick|_smoke].json")
    ap.add_argument("--with-dpm", action="store_true", help="run DPM here even if dpm_cost.json has its rows")
    ap.add_argument("--no-subprocess", action="store_true")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--worker-out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.codebook = args.codebook or (32 if args.smoke else 512)
    torch.set_num_threads(args.threads)
    args.cache.mkdir(parents=True, exist_ok=True)
    if args.worker:
        Path(args.worker_out).write_text(json.dumps(worker(json.loads(args.worker), args)))
        return 0
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    s = SETTINGS[mode]
    out = args.out or common.RESULTS_DIR / ("mal_cost.json" if mode == "full" else f"mal_cost_{mode}.json")
    started = time.time()

    def work(spec):
        if args.no_subprocess:
            return worker(spec, args)
        return common.run_worker(Path(__file__), spec, args.threads, args.cache,
                                 ["--codebook", str(args.codebook)] + (["--smoke"] if args.smoke else []))

    runs = {"mal": work({"method": "mal", "minutes": s["b_minutes"], "warmup": s["warmup"]})}
    runs["dpm"], dpm_source = dpm_rows(args, mode, s, work)
    text, verdicts = report(runs, s)
    common.write_results(out, "mal_cost", args.threads, {
        "mode": mode, "settings": s, "targets": TARGETS, "command": " ".join(sys.argv), "dpm_source": dpm_source,
        "mal_config": "MALConfig defaults (memory dim 64, expansion 2, depth 2, middle layer, per-utterance writes), "
                      "fresh adapter",
        "model": "tiny default SLM (SLMConfig()), untrained" if not args.smoke else "smoke SLM (hidden 32)",
        "elapsed_s": time.time() - started, "verdicts": verdicts, "results": runs})
    print(text)
    print(f"\nDPM rows from {dpm_source}; threads {args.threads}, load avg "
          f"{common.machine_info(args.threads)['load_avg_1_5_15']}, {time.time() - started:.0f} s; wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

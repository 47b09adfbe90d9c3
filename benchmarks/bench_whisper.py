"""Cost of the Whisper front-end: real-time factor of the packaged encoders, padded vs variable
length, 1 and 2 threads, and how far variable-length hidden states are from the padded ones.
Not a test.

    .venv/bin/python benchmarks/bench_whisper.py [--models base tiny.en] [--threads 1 2] [--utterances 24]

Workload: real acted utterances when ../shared/data/ravdess16k is there (the first N clips in
file order, 16 kHz, 3-5 s each), else seeded speech-like audio of the same lengths. "variable" is
what convmem runs (each utterance costs its own length, batched longest-first); "padded" is
Whisper's own computation (every utterance padded to 30 s, one at a time). RTF = encoder seconds
per second of audio (log-mel included). Prints a table and writes benchmarks/results/whisper.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import markdown_table, run_script, write_results  # noqa: E402

RAVDESS = Path(__file__).resolve().parents[2] / "shared" / "data" / "ravdess16k"


def workload(n: int) -> tuple[list[np.ndarray], str]:
    from convmem.audio.io import load_audio

    clips = sorted(RAVDESS.glob("Actor_*/*.flac"))[:n] if RAVDESS.is_dir() else []
    if len(clips) == n:
        return [load_audio(p) for p in clips], f"RAVDESS clips ({n}, file order)"
    rng = np.random.default_rng(0)
    waves = []
    for i in range(n):
        t = np.arange(int(16000 * rng.uniform(3, 5))) / 16000
        f0 = 120 + 40 * np.sin(2 * np.pi * 0.7 * t)
        waves.append((0.2 * np.sin(2 * np.pi * np.cumsum(f0) / 16000) * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t) ** 2)
                      + 0.01 * rng.standard_normal(t.size)).astype(np.float32))
    return waves, f"speech-like synthetic audio ({n})"


def main(argv=None) -> int:
    import torch

    from convmem.tokenizers.whisper_encoder import WhisperAudioEncoder, padding_difference

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["tiny.en", "base"])
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--utterances", type=int, default=24)
    ap.add_argument("--padded-utterances", type=int, default=4, help="padded runs are ~10x slower: fewer of them")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/whisper.json"))
    args = ap.parse_args(argv)
    waves, source = workload(args.utterances)
    seconds = sum(w.size for w in waves) / 16000
    padded_waves = waves[: args.padded_utterances]
    padded_seconds = sum(w.size for w in padded_waves) / 16000
    rows, results = [], []
    for name in args.models:
        enc = WhisperAudioEncoder(name)
        drift = {layer: padding_difference(enc, waves[0], layer) for layer in range(enc.n_layers + 1)}
        for threads in args.threads:
            torch.set_num_threads(threads)
            enc.features(waves[:2])  # warm-up
            t0 = time.perf_counter()
            enc.features(waves)
            variable = (time.perf_counter() - t0) / seconds
            t0 = time.perf_counter()
            for w in padded_waves:
                enc.padded_output(w)
            padded = (time.perf_counter() - t0) / padded_seconds
            rows.append([name, threads, variable, padded, padded / variable])
            results.append({"model": name, "threads": threads, "rtf_variable": variable, "rtf_padded": padded})
        results.append({"model": name, "padding_difference_by_layer": {str(k): v for k, v in drift.items()},
                        "drift_utterance_s": waves[0].size / 16000})
        print(f"{name}: variable vs padded hidden states on a {waves[0].size / 16000:.1f} s utterance, by layer: "
              + ", ".join(f"{k}: cos {v['cosine']:.3f}" for k, v in drift.items()))
    print(f"\nworkload: {source}, {seconds:.1f} s of audio (padded: first {len(padded_waves)}, {padded_seconds:.1f} s)\n")
    print(markdown_table(["model", "threads", "RTF variable", "RTF padded", "padded / variable"], rows))
    write_results(args.out, "whisper", max(args.threads), {"source": source, "audio_s": seconds, "results": results})
    return 0


if __name__ == "__main__":
    run_script(main)

"""End-to-end cost of `convmem predict` on the real-speech model shape, and the Whisper front-end's
share of it. Not a test.

    .venv/bin/python benchmarks/bench_predict.py [--models base tiny.en] [--memory dpm none mal]
        [--threads 2] [--utterances 40]

Workload: one recording made of the first N RAVDESS clips (16 kHz, 3-5 s each, two actors in
turn) with 0.8 s of silence between them, predicted through `Predictor.predict` exactly as
`convmem predict REC --memory M` does: blocks read, silero-vad segmentation, each utterance encoded
(Whisper encoder at its own length, k-means codes, speaker-relative prosody marks, frames) and
pushed through the memory. Without ../shared/data, seeded speech-like audio of the same lengths.

Model: the shape `configs/ravdess.yaml` ships (whisper-kmeans at the middle block, 512 codes fitted
on the workload's clips; the half-width SLM, hidden 128, 2 layers, n_limit 1024, reading frames, the
utterance summary and prosody marks; DPM n_r 256 at the paper's other settings; a fresh MAL
adapter), untrained: cost does not depend on the weights. RTF = wall seconds per second of audio;
"front-end" is the time inside the utterance encoder (log-mel, Whisper, codes, marks), "memory" the
time inside the engine's push (DPM write + read, MAL, ...), the rest is reading, resampling and VAD.
Prints a table and writes benchmarks/results/predict.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_whisper import workload  # noqa: E402
from common import markdown_table, run_script, untrained_bundle, write_results  # noqa: E402

GAP_SECONDS = 0.8


def recording(waves: list[np.ndarray]) -> np.ndarray:
    """float32[samples]: the clips joined with GAP_SECONDS of silence (and half a gap at each end)."""
    gap = np.zeros(int(16000 * GAP_SECONDS), np.float32)
    parts = [gap[: gap.size // 2]]
    for w in waves:
        parts += [w.astype(np.float32), gap]
    return np.concatenate(parts)


def real_speech_bundle(model: str, waves: list[np.ndarray]):
    """An in-memory Bundle of configs/ravdess.yaml's shape (module doc), untrained."""
    from convmem.memory.temp_lora import DPMConfig
    from convmem.slm.model import SLMConfig
    from convmem.tokenizers.whisper_kmeans import WhisperKMeansConfig, WhisperKMeansTokenizer

    tok = WhisperKMeansTokenizer(WhisperKMeansConfig(model=model, codebook_size=512))
    tok.fit(waves)
    cfg = SLMConfig(n_limit=1024, hidden_size=128, num_layers=2, num_heads=4, intermediate_size=512,
                    prosody_marks=True, audio_input="frames", utterance_summary=True)
    return untrained_bundle(tok, cfg, f"{model} real-speech model", frame_dim=tok.frames(waves[0]).shape[1],
                            dpm_config=DPMConfig(n_r=256))


class Stopwatch:
    """Seconds spent inside one method of a class, summed over calls (patched in, then restored)."""

    def __init__(self, owner: type, name: str):
        self.owner, self.name, self.seconds = owner, name, 0.0
        self.original = getattr(owner, name)

    def __enter__(self) -> "Stopwatch":
        original = self.original

        def timed(*args, **kw):
            t0 = time.perf_counter()
            try:
                return original(*args, **kw)
            finally:
                self.seconds += time.perf_counter() - t0

        setattr(self.owner, self.name, timed)
        return self

    def __exit__(self, *exc) -> None:
        setattr(self.owner, self.name, self.original)


def measure(bundle, memory: str, wave: np.ndarray) -> dict:
    """One predict of `wave` with `memory`: wall seconds, front-end and memory seconds, utterances."""
    from convmem.engine.conversation import ConversationEngine
    from convmem.predict import Predictor
    from convmem.tokenizers.utterance_encoder import ConversationEncoder

    predictor = Predictor(bundle, memory=memory)
    predictor.predict(wave[: 16000 * 6], progress=False)  # warm-up: VAD model, first allocations
    with Stopwatch(ConversationEncoder, "encode") as front, Stopwatch(ConversationEngine, "step") as mem:
        t0 = time.perf_counter()
        timeline = predictor.predict(wave, progress=False)
        wall = time.perf_counter() - t0
    seconds = wave.size / 16000
    return {"memory": memory, "audio_s": round(seconds, 2), "utterances": len(timeline.utterances),
            "wall_s": round(wall, 3), "rtf": round(wall / seconds, 5),
            "front_end_s": round(front.seconds, 3), "front_end_rtf": round(front.seconds / seconds, 5),
            "front_end_share": round(front.seconds / wall, 4),
            "memory_s": round(mem.seconds, 3), "memory_share": round(mem.seconds / wall, 4)}


def main(argv=None) -> int:
    import torch

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["base", "tiny.en"])
    ap.add_argument("--memory", nargs="+", default=["dpm", "mal", "none"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--utterances", type=int, default=40)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/predict.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    waves, source = workload(args.utterances)
    wave = recording(waves)
    rows, table = [], []
    for model in args.models:
        bundle = real_speech_bundle(model, waves)
        for memory in args.memory:
            r = {"model": model, **measure(bundle, memory, wave)}
            rows.append(r)
            table.append([model, memory, r["utterances"], r["rtf"], r["front_end_rtf"],
                          f"{100 * r['front_end_share']:.1f}%", f"{100 * r['memory_share']:.1f}%"])
            print(f"{model} {memory}: RTF {r['rtf']}", file=sys.stderr)
    print(f"Workload: {source} joined into one {wave.size / 16000:.1f} s recording, {args.threads} threads\n")
    print(markdown_table(["Whisper", "memory", "utterances", "RTF end-to-end", "RTF front-end",
                          "front-end share", "memory share"], table))
    write_results(args.out, "predict", args.threads, {"workload": source, "gap_s": GAP_SECONDS, "rows": rows})
    return 0


if __name__ == "__main__":
    run_script(main)

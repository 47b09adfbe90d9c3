"""Which Whisper layer carries emotion for unseen speakers: a linear probe per layer (a diagnostic,
not a test). Leave-one-session-out; every turn is the mean + std of one layer's 25 Hz frames
(`convmem.eval.code_probe.frame_statistics`), read alone and relative to the same speaker's
earlier turns, as `benchmarks/probe_codes.py` reads codes.

    .venv/bin/python benchmarks/probe_whisper_layers.py MANIFEST [--model base|tiny.en] [--padded]

`--padded` runs Whisper's own computation (each utterance padded to 30 s) instead of convmem's
variable-length one, to measure what skipping the padding costs (about 40x slower). All layers
come from one encoder pass. Prints a table and writes benchmarks/results/probe_whisper_layers.json.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import markdown_table, run_script, write_results  # noqa: E402

BATCH = 16


def layer_vectors(dialogues, model: str, padded: bool) -> dict[int, dict[str, np.ndarray]]:
    """{layer: {utterance id: float64[2 * hidden]}} for every utterance of `dialogues`."""
    from tqdm import tqdm

    from convmem.eval.code_probe import frame_statistics
    from convmem.tokenizers import n_frames, utterance_waveform
    from convmem.tokenizers.whisper_encoder import WINDOW_CODES, WhisperAudioEncoder

    enc = WhisperAudioEncoder(model)
    layers = list(range(enc.n_layers + 1))
    out: dict[int, dict[str, np.ndarray]] = {layer: {} for layer in layers}
    items = [(d, u) for d in dialogues for u in d.utterances]
    for a in tqdm(range(0, len(items), BATCH), desc=f"whisper {model}", unit="batch"):
        chunk = items[a:a + BATCH]
        waves = [utterance_waveform(u, d)[: WINDOW_CODES * 640] for d, u in chunk]
        if padded:
            mels = [enc.log_mel(np.pad(w, (0, WINDOW_CODES * 640 - w.size))) for w in waves]
        else:
            mels = [enc.log_mel(w) for w in waves]
        hidden = enc.forward_layers(mels, layers)
        for layer in layers:
            for (_, u), w, h in zip(chunk, waves, hidden[layer]):
                # float16-rounded like the whisper-kmeans feature store, so probe_codes --features agrees
                out[layer][u.id] = frame_statistics(h[: n_frames(w.size)].astype(np.float16).astype(np.float32))
    return out


def main(argv=None) -> int:
    from convmem.corpus.manifest import read_manifest
    from convmem.corpus.types import EMOTIONS
    from convmem.eval.code_probe import WAYS, loso_probe_vectors

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("manifest", type=Path)
    ap.add_argument("--model", choices=("base", "tiny.en"), default="base")
    ap.add_argument("--padded", action="store_true", help="pad every utterance to 30 s (Whisper's own computation)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/probe_whisper_layers.json"))
    args = ap.parse_args(argv)
    dialogues = read_manifest(args.manifest)
    vectors = layer_vectors(dialogues, args.model, args.padded)
    results, rows = [], []
    for layer, vecs in vectors.items():
        res = loso_probe_vectors(dialogues, lambda train, vecs=vecs: vecs, list(EMOTIONS))
        results.append({"layer": layer, **res})
        rows.append([layer, res["n"], res["majority_wa"], *(f"{res[w]['wa']} / {res[w]['ua']}" for w in WAYS)])
    mode = "padded to 30 s" if args.padded else "variable length"
    print(f"\nWhisper {args.model}, {mode}, {args.manifest}\n")
    print(markdown_table(["layer", "turns", "majority WA", "alone WA / UA", "relative WA / UA"], rows))
    write_results(args.out, "probe_whisper_layers", 0, {"manifest": str(args.manifest), "model": args.model,
                                                        "padded": args.padded, "results": results})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    run_script(main)

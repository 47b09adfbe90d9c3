"""Shared pieces of the memory cost benchmarks (bench_dpm_cost.py, bench_mal_cost.py). Not a test.

- the workload: the synthetic `long` corpus (eSpeak NG speech, seed 0), cached on disk, and a
  k-means tokenizer fitted on its first minutes; `--smoke` swaps in a few seconds of generated
  tones so the scripts can be exercised in seconds;
- the model: the tiny default SLM (SLMConfig defaults: hidden 256, 4 layers, n_limit 1024) with
  UNTRAINED weights — cost does not depend on what the weights are — wrapped in an in-memory
  `Bundle`, so `Bundle.memory(method)` builds exactly the memory `predict`/`serve` would;
- measurement: a timing proxy around a Memory (write / read seconds per call), peak RSS from the
  kernel (`getrusage` ru_maxrss: the true high-water mark, no sampling gaps), percentiles;
- reporting: markdown tables and JSON with machine facts (CPU, cores, threads, load average).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
LABELS = ("neu", "hap", "sad", "ang")
DEFAULT_CACHE = Path(os.environ.get("CONVMEM_BENCH_CACHE", Path(tempfile.gettempdir()) / "convmem_bench_cache"))


# ---------------------------------------------------------------- workload

@dataclass(frozen=True)
class Turn:
    """One utterance of the benchmark stream: where its audio is and when it ends in the stream."""

    audio: str  # wav of the whole dialogue
    start: float  # seconds in that wav
    end: float
    stream_end: float  # seconds from the start of the (possibly concatenated) stream


def long_stream(cache: Path, smoke: bool = False) -> list[Turn]:
    """The dialogues of the synthetic `long` preset (seed 0), played one after the other.

    The preset's two dialogues last ~30 and ~44 min; a 60 min stream therefore runs the first and
    continues into the second (a new pair of speakers, as if the conversation went on). Times in
    `stream_end` count the whole stream; the wav files are read a turn at a time.
    """
    if smoke:
        return _smoke_stream(cache)
    corpus = cache / "synth_long_seed0"
    if not (corpus / "manifest.jsonl").is_file():
        from convmem.corpus.synth import synthesize_corpus

        print(f"synthesizing the long corpus into {corpus} (once; ~1 min)", flush=True)
        synthesize_corpus(corpus, preset="long", seed=0, force=True)
    from convmem.corpus.manifest import read_manifest

    turns, offset = [], 0.0
    for d in sorted(read_manifest(corpus / "manifest.jsonl"), key=lambda d: d.dialogue_id):
        for u in d.utterances:
            turns.append(Turn(str(d.audio), u.start, u.end, offset + u.end))
        offset += d.utterances[-1].end
    return turns


def _smoke_stream(cache: Path) -> list[Turn]:
    """~40 s of seeded tones and noise in 1-2 s turns (smoke mode: no eSpeak, seconds to make)."""
    import soundfile as sf

    wav = cache / "smoke_stream.wav"
    rng = np.random.default_rng(0)
    sr, spans, parts, t = 16000, [], [], 0.0
    for i in range(24):
        n = int(rng.uniform(1.0, 2.0) * sr)
        tt = np.arange(n) / sr
        parts.append((0.2 * np.sin(2 * np.pi * (110 + 40 * i) * tt) + 0.02 * rng.standard_normal(n)).astype(np.float32))
        spans.append((t, t + n / sr))
        parts.append(np.zeros(int(0.3 * sr), np.float32))
        t += n / sr + 0.3
    if not wav.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        tmp = wav.with_suffix(f".tmp{os.getpid()}.wav")
        sf.write(tmp, np.concatenate(parts), sr)
        os.replace(tmp, wav)
    return [Turn(str(wav), a, b, b) for a, b in spans]


def prefix(turns: Sequence[Turn], minutes: float) -> list[Turn]:
    """The turns that end within the first `minutes` of the stream."""
    return [t for t in turns if t.stream_end <= minutes * 60.0]


def read_turn(turn: Turn) -> np.ndarray:
    """float32[samples] at 16 kHz of one turn (read from its wav; the whole file never is)."""
    from convmem.audio.io import load_audio

    return load_audio(turn.audio, start=turn.start, end=turn.end)


def fitted_tokenizer(cache: Path, turns: Sequence[Turn], codebook: int, smoke: bool = False):
    """A kmeans tokenizer (log-mel, `codebook` codes) fitted on the stream's first ~5 min, cached."""
    from convmem.tokenizers import load_tokenizer
    from convmem.tokenizers.kmeans import KMeansConfig, LogMelKMeansTokenizer

    where = cache / f"tokenizer_kmeans{codebook}{'_smoke' if smoke else ''}"
    if (where / "tokenizer.json").is_file():
        return load_tokenizer(where)
    tok = LogMelKMeansTokenizer(KMeansConfig(codebook_size=codebook, seed=0, max_fit_frames=max(codebook, 8000)))
    tok.fit(read_turn(t) for t in prefix(turns, 5.0) or turns)
    tmp = Path(tempfile.mkdtemp(dir=cache, prefix=".tok"))
    tok.save(tmp)
    os.replace(tmp, where)
    return tok


def tiny_bundle(tokenizer, smoke: bool = False):
    """An in-memory Bundle: untrained tiny default SLM (frozen, eval) + `tokenizer` + a fresh MAL
    adapter. Smoke mode shrinks the SLM (hidden 32, 2 layers, n_limit 128) so a run takes seconds."""
    from convmem.slm.model import SLMConfig

    cfg = SLMConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, n_limit=128,
                    max_position_embeddings=1024) if smoke else SLMConfig()
    return untrained_bundle(tokenizer, cfg, "tiny model")


def untrained_bundle(tokenizer, cfg, name: str, frame_dim: int | None = None, dpm_config=None):
    """An in-memory Bundle of an untrained SLM of config `cfg` (frozen, eval; `frame_dim`: the width
    of the tokenizer's frames when `cfg` reads them) + `tokenizer` + a fresh MAL adapter, and
    `dpm_config` (None: DPMConfig's defaults). Cost does not depend on the weights."""
    import torch

    from convmem.bundle import Bundle
    from convmem.memory.mal import MALConfig
    from convmem.memory.mal_layer import MALAdapter
    from convmem.slm.model import build_model, make_vocab, merged

    vocab = make_vocab(cfg, tokenizer.codebook_size, LABELS)
    # merged: a pretrained backbone's LoRA folded in, as in a saved model dir (tiny: unchanged)
    slm = merged(build_model(cfg, vocab, frame_dim)).eval()
    for p in slm.parameters():
        p.requires_grad_(False)
    mal_cfg = MALConfig(emotion_ids=vocab.emotion_ids,
                        audio_id_range=(vocab.audio_offset, vocab.audio_offset + vocab.codebook_size))
    torch.manual_seed(0)
    # the model's own width (cfg.hidden_size is the tiny backbone's and unused by a pretrained one)
    adapter = MALAdapter(slm.get_input_embeddings().embedding_dim, mal_cfg.memory).eval()
    return Bundle(path=Path(f"<in-memory {name}>"), labels=LABELS, n_limit=cfg.n_limit, tokenizer=tokenizer,
                  slm=slm, vocab=vocab, slm_config=cfg, mal_adapter=adapter, mal_config=mal_cfg,
                  dpm_config=dpm_config)


def engine_for(bundle, method: str):
    """(ConversationEngine over a TimedMemory, the TimedMemory) for a Bundle method name."""
    from convmem.engine.conversation import ConversationEngine

    memory = TimedMemory(bundle.memory(method))
    limit = getattr(memory.inner, "n_limit", bundle.n_limit)
    return ConversationEngine(memory, bundle.vocab.audio_end_id, bundle.vocab.emotion_ids, limit), memory


# ---------------------------------------------------------------- measurement

class TimedMemory:
    """A Memory that records the wall-clock seconds of every write and read of the one it wraps."""

    def __init__(self, inner):
        self.inner = inner
        self.write_s: list[float] = []
        self.read_s: list[float] = []

    def __getattr__(self, name: str) -> Any:  # name, history_tokens, max_window, n_limit, ...
        return getattr(self.inner, name)

    def init(self, batch_size):
        return self.inner.init(batch_size)

    def reset(self, state, rows, keys=None):
        return self.inner.reset(state, rows, keys)

    def write(self, state, batch):
        t = time.perf_counter()
        out = self.inner.write(state, batch)
        self.write_s.append(time.perf_counter() - t)
        return out

    def read(self, state, batch):
        t = time.perf_counter()
        out = self.inner.read(state, batch)
        self.read_s.append(time.perf_counter() - t)
        return out


def peak_rss_mb() -> float:
    """This process's peak resident set size so far, MiB (kernel high-water mark, Linux KiB units)."""
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / 1024 if sys.platform != "darwin" else kib / 2**20


def current_rss_mb() -> float:
    """Resident set size now, MiB (from /proc; falls back to the peak where /proc is absent)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return peak_rss_mb()


def stats(xs: Sequence[float]) -> dict:
    """mean / p50 / p90 / n of a sample (NaN when empty)."""
    a = np.asarray(xs, dtype=np.float64)
    if a.size == 0:
        return {"mean": float("nan"), "p50": float("nan"), "p90": float("nan"), "n": 0}
    return {"mean": float(a.mean()), "p50": float(np.percentile(a, 50)), "p90": float(np.percentile(a, 90)),
            "n": int(a.size)}


def stream_live(bundle, method: str, turns: Sequence[Turn], checkpoints_min: Sequence[float],
                warmup: int, progress: bool = True) -> dict:
    """Play `turns` through `method` as a live conversation (`engine.open().push`, the same path as
    `engine.run` at B=1), tokenizing each turn as it arrives. Per turn: audio read + tokenization,
    write and read seconds. At each checkpoint (minutes of stream) it records per-utterance time
    statistics over turns >= `warmup` and over the last 5 minutes, the process's peak RSS so far
    (= the peak of a run that stopped there), and the real-time factor. Returns a JSON-able dict."""
    from tqdm import tqdm

    engine, mem = engine_for(bundle, method)
    conv = engine.open("bench")
    tok, vocab = bundle.tokenizer, bundle.vocab
    base_rss = current_rss_mb()
    marks = sorted(checkpoints_min)
    rows, per = [], {"tokenize": [], "write": [], "read": [], "utterance": [], "tokens": [], "end": []}
    from convmem.memory import registry

    with registry.grad_mode(method):
        for i, turn in enumerate(tqdm(turns, desc=f"{method} stream", unit="utt", disable=not progress)):
            t0 = time.perf_counter()
            ids = vocab.audio_ids(tok.encode(read_turn(turn)))
            t1 = time.perf_counter()
            conv.push(ids)
            t2 = time.perf_counter()
            per["tokenize"].append(t1 - t0)
            per["write"].append(mem.write_s[-1])
            per["read"].append(mem.read_s[-1])
            per["utterance"].append(t2 - t1)
            per["tokens"].append(int(ids.numel()))
            per["end"].append(turn.stream_end)
            last = i + 1 == len(turns)
            while marks and (last or turns[i + 1].stream_end > marks[0] * 60):
                rows.append(_checkpoint(marks.pop(0), per, warmup, base_rss))
                if last:
                    break
    return {"method": method, "warmup_utterances": warmup, "baseline_rss_mb": base_rss, "checkpoints": rows,
            "history_tokens_at_end": conv.history_tokens}


def _checkpoint(minutes: float, per: dict, warmup: int, base_rss: float) -> dict:
    n = len(per["utterance"])
    end = per["end"][-1]
    recent = [k for k in range(warmup, n) if per["end"][k] > end - 300.0]
    steady = range(min(warmup, n), n)
    engine_s, tok_s = sum(per["utterance"]), sum(per["tokenize"])
    return {
        "minutes": minutes, "audio_s": end, "utterances": n, "tokens": int(sum(per["tokens"])),
        "utterance_s": stats([per["utterance"][k] for k in steady]),
        "utterance_s_last5min": stats([per["utterance"][k] for k in recent]),
        "write_s": stats([per["write"][k] for k in steady]),
        "read_s": stats([per["read"][k] for k in steady]),
        "tokenize_s": stats([per["tokenize"][k] for k in steady]),
        "ms_per_token": 1e3 * sum(per["utterance"][k] for k in steady) / max(1, sum(per["tokens"][k] for k in steady)),
        "peak_rss_mb": peak_rss_mb(), "rss_now_mb": current_rss_mb(),
        "peak_rss_over_baseline_mb": peak_rss_mb() - base_rss,
        "engine_total_s": engine_s, "tokenize_total_s": tok_s, "rtf": (engine_s + tok_s) / end,
        "load_avg_1min": os.getloadavg()[0],
    }


# ---------------------------------------------------------------- orchestration and reporting

def run_worker(script: Path, spec: dict, threads: int, cache: Path, extra: Sequence[str] = ()) -> dict:
    """Run one configuration in a fresh Python process (clean peak RSS); returns its JSON."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.json"
        cmd = [sys.executable, str(script), "--worker", json.dumps(spec), "--worker-out", str(out),
               "--threads", str(threads), "--cache", str(cache), *extra]
        proc = subprocess.run(cmd)
        if proc.returncode != 0 or not out.is_file():
            raise RuntimeError(f"worker {spec} failed (exit {proc.returncode})")
        return json.loads(out.read_text())


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(threads: int) -> dict:
    import torch

    return {"cpu": cpu_model(), "cores": os.cpu_count(), "torch_threads": threads, "torch": torch.__version__,
            "python": platform.python_version(), "date_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "load_avg_1_5_15": list(os.getloadavg()),
            # On a shared box libgomp's default spin-then-sleep barrier can make 2-thread runs 100x
            # slower (measured); OMP_WAIT_POLICY=PASSIVE avoids it. Record what this run used.
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(libgomp default)")}


def write_results(path: Path, bench: str, threads: int, payload: dict) -> None:
    """Write `payload` + machine facts atomically to `path`."""
    from convmem.fileio import atomic_write_json

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, {"bench": bench, "machine": machine_info(threads), **payload})


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub markdown table; floats keep 3 significant digits."""
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return "nan" if v != v else f"{v:.3g}"
        return str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "MISS")


def run_script(main) -> None:
    """Exit with `main()`'s status; a ConvmemError (bad input, named by the library) prints
    `error: ...` and exits 2 instead of a traceback."""
    from convmem.errors import ConvmemError

    try:
        raise SystemExit(main())
    except ConvmemError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None

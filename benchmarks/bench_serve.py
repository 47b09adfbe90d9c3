"""Load test of `convmem serve` on loopback: per-utterance latency percentiles. Not a test.

    .venv/bin/python benchmarks/bench_serve.py [--model DIR] [--memory dpm] [--clients 4]
                                               [--utterances 6] [--mode both] [--no-realtime]

Starts the service (uvicorn, in a thread) on a free 127.0.0.1 port and runs `--clients`
concurrent WebSocket sessions, each a conversation of `--utterances` eSpeak NG sentences
(two voices, 0.6 s pauses), so it is bounded: clients x utterances results, then it stops.

Latency of one utterance:
  mode "utterances": from sending the utterance's audio frame to receiving its emotion.
  mode "stream":     audio is sent in 0.25 s chunks, paced at real time (as a microphone would;
                     --no-realtime sends as fast as the server takes it). Latency runs from the
                     moment the client had sent the audio that shows the utterance is over (its
                     end + the VAD's closing pause, `min_silence_s`) to receiving its emotion.
Both include waiting for other sessions' model calls (the service runs them one at a time).
Without --model the untrained tiny test model is used: it measures the service's overhead and
the VAD/tokenizer path, not the compute of a real SLM. Prints a table and writes
benchmarks/results/bench_serve.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SENTENCES = ("Hello there, how are you doing today?", "I am quite well, thank you for asking.",
             "That is not what we agreed on at all.", "Could you please say that one more time?",
             "We should leave before it starts raining.", "Honestly, I did not expect this from you.")
CHUNK_S = 0.25
PAUSE_S = 0.6


def conversation(n: int, client: int) -> list[np.ndarray]:
    """`n` sentences at 16 kHz, the client's own rotation of texts and voices."""
    from convmem.audio.io import resample
    from convmem.corpus.espeak import VoiceSettings, native_sample_rate, synthesize

    sr = native_sample_rate()
    voices = ("en-us", "en-us+f3", "en+m2", "en-us+m3")
    out = []
    for i in range(n):
        k = client + i
        wave = synthesize(SENTENCES[k % len(SENTENCES)], VoiceSettings(voice=voices[k % len(voices)]))
        out.append(resample(wave, sr, 16000).astype(np.float32))
    return out


async def run_utterances(url: str, clips: list[np.ndarray]) -> list[float]:
    from websockets.asyncio.client import connect

    lat = []
    async with connect(url, max_size=None) as ws:
        await ws.send(json.dumps({"type": "start", "sample_rate": 16000, "mode": "utterances"}))
        assert json.loads(await ws.recv())["type"] == "ready"
        for clip in clips:
            await ws.send(json.dumps({"type": "utterance"}))
            t0 = time.perf_counter()
            await ws.send(clip.astype("<f4").tobytes())
            msg = json.loads(await ws.recv())
            if msg["type"] != "utterance":
                raise RuntimeError(f"server said {msg}")
            lat.append(time.perf_counter() - t0)
        await ws.send('{"type": "end"}')
        await ws.recv()
    return lat


async def run_stream(url: str, clips: list[np.ndarray], realtime: bool, min_silence: float) -> list[float]:
    from websockets.asyncio.client import connect

    gap = np.zeros(int(PAUSE_S * 16000), np.float32)
    wave = np.concatenate([gap[:4000]] + [x for c in clips for x in (c, gap)])
    step = int(CHUNK_S * 16000)
    sent: list[tuple[float, float]] = []  # (audio seconds sent so far, wall time)
    results: list[tuple[dict, float]] = []
    async with connect(url, max_size=None) as ws:
        await ws.send(json.dumps({"type": "start", "sample_rate": 16000, "mode": "stream"}))
        assert json.loads(await ws.recv())["type"] == "ready"

        async def receive():
            async for raw in ws:
                msg = json.loads(raw)
                if msg["type"] == "utterance":
                    results.append((msg, time.perf_counter()))
                elif msg["type"] == "error":
                    raise RuntimeError(f"server said {msg}")
                elif msg["type"] == "end":
                    return

        reader = asyncio.create_task(receive())
        t0 = time.perf_counter()
        for k, i in enumerate(range(0, wave.size, step)):
            if realtime:
                await asyncio.sleep(max(0.0, t0 + k * CHUNK_S - time.perf_counter()))
            await ws.send(wave[i: i + step].astype("<f4").tobytes())
            sent.append((min(wave.size, i + step) / 16000, time.perf_counter()))
        await ws.send('{"type": "end"}')
        end_sent = time.perf_counter()
        await reader
    lat = []
    for msg, t_recv in results:
        known = next((t for audio, t in sent if audio >= msg["end"] + min_silence), end_sent)
        lat.append(t_recv - known)
    return lat


def percentiles(x: list[float]) -> dict:
    a = np.asarray(x) * 1000
    return {"n": int(a.size), "p50_ms": float(np.percentile(a, 50)), "p90_ms": float(np.percentile(a, 90)),
            "p99_ms": float(np.percentile(a, 99)), "max_ms": float(a.max()), "mean_ms": float(a.mean())}


async def load(url, convs, mode, realtime, min_silence):
    t = time.perf_counter()
    if mode == "utterances":
        parts = await asyncio.gather(*(run_utterances(url, c) for c in convs))
    else:
        parts = await asyncio.gather(*(run_stream(url, c, realtime, min_silence) for c in convs))
    return [x for p in parts for x in p], time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="model directory (default: the untrained tiny test model)")
    ap.add_argument("--memory", default="dpm")
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--utterances", type=int, default=6)
    ap.add_argument("--mode", choices=("utterances", "stream", "both"), default="both")
    ap.add_argument("--no-realtime", dest="realtime", action="store_false")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's own)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bench_serve.json"))
    args = ap.parse_args()

    import torch

    from convmem.fileio import atomic_write_json
    from convmem.predict import Predictor

    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if model is None:
            sys.path.insert(0, str(ROOT))
            from tests.model_fixture import tiny_bundle

            model = tiny_bundle(tmp)
        predictor = Predictor.load(model, memory=args.memory)
    convs = [conversation(args.utterances, c) for c in range(args.clients)]
    speech_s = sum(c.size for conv in convs for c in conv) / 16000
    from convmem.serve.app import BackgroundServer, create_app
    from convmem.serve.sessions import ServeConfig

    srv = BackgroundServer(create_app(lambda: predictor, ServeConfig(max_sessions=args.clients)))
    url = srv.url.replace("http://", "ws://") + "/ws"
    rows = {}
    try:
        modes = ("utterances", "stream") if args.mode == "both" else (args.mode,)
        for mode in modes:
            lat, wall = asyncio.run(load(url, convs, mode, args.realtime, predictor.vad.min_silence_s))
            rows[mode] = {**percentiles(lat), "wall_s": wall, "speech_s": speech_s,
                          "expected_utterances": args.clients * args.utterances}
    finally:
        srv.stop()

    print(f"convmem serve load test: {args.clients} concurrent sessions x {args.utterances} utterances, "
          f"memory {args.memory}, model {'tiny untrained' if args.model is None else args.model}, "
          f"torch threads {torch.get_num_threads()}, {os.cpu_count()} cores")
    print(f"{'mode':<11} {'n':>4} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'max ms':>8} {'wall s':>7}")
    for mode, r in rows.items():
        print(f"{mode:<11} {r['n']:>4} {r['p50_ms']:>8.0f} {r['p90_ms']:>8.0f} {r['p99_ms']:>8.0f} "
              f"{r['max_ms']:>8.0f} {r['wall_s']:>7.1f}")
    out = {"benchmark": "bench_serve", "command": " ".join(["benchmarks/bench_serve.py", *sys.argv[1:]]),
           "clients": args.clients, "utterances_per_client": args.utterances, "memory": args.memory,
           "model": args.model or "tests/model_fixture.py tiny_bundle (untrained)", "realtime_stream": args.realtime,
           "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), "machine": platform.platform(),
           "python": platform.python_version(), "torch": torch.__version__, "results": rows}
    atomic_write_json(args.out, out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

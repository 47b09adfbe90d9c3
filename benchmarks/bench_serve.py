"""Load test of `convmem serve` on loopback: per-utterance latency percentiles. Not a test.

    .venv/bin/python benchmarks/bench_serve.py [--model DIR] [--memory dpm] [--clients 4]
                                               [--utterances 6] [--mode all] [--no-realtime]

Starts the service (uvicorn, in a thread) on a free 127.0.0.1 port and runs `--clients`
concurrent WebSocket sessions, each a conversation of `--utterances` eSpeak NG sentences
(two voices, 0.6 s pauses), so it is bounded: clients x utterances results, then it stops.

Latency of one utterance:
  mode "utterances": from sending the utterance's audio frame to receiving its emotion.
  mode "stream":     audio is sent in 0.25 s chunks, paced at real time (as a microphone would;
                     --no-realtime sends as fast as the server takes it). Latency runs from the
                     moment the client had sent the audio that shows the utterance is over (its
                     end + the VAD's closing pause, `min_silence_s`) to receiving its emotion.
  mode "slow":       the attack of slow clients: `--clients` clients take every slot and then
                     trickle 4 bytes a second; one legitimate client retries until it gets a
                     slot (the idle timeout, `--idle-timeout`, counts only progress, so the
                     trickling clients lose theirs) and then runs its conversation in utterance
                     mode. Reported: how long it waited, its latencies, how the slow sessions ended.
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


class Full(RuntimeError):
    """The server answered `too_many_sessions`."""


async def run_utterances(url: str, clips: list[np.ndarray]) -> list[float]:
    from websockets.asyncio.client import connect

    lat = []
    async with connect(url, max_size=None) as ws:
        await ws.send(json.dumps({"type": "start", "sample_rate": 16000, "mode": "utterances"}))
        first = json.loads(await ws.recv())
        if first.get("code") == "too_many_sessions":
            raise Full(first["message"])
        assert first["type"] == "ready", first
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


async def trickle(url: str, stop: asyncio.Event) -> str:
    """A slow client: takes a slot, then sends 4 bytes a second. Returns how its session ended:
    the server's error code, or "held" if it still had its slot when told to stop."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    async with connect(url) as ws:
        await ws.send(json.dumps({"type": "start", "sample_rate": 16000}))
        msg = json.loads(await ws.recv())
        if msg["type"] != "ready":
            return msg.get("code", "?")
        try:
            while not stop.is_set():
                await ws.send(b"\0\0\0\0")
                try:
                    return json.loads(await asyncio.wait_for(ws.recv(), 1.0)).get("code", "?")
                except asyncio.TimeoutError:
                    pass
        except ConnectionClosed as closed:
            return f"closed {closed.rcvd.code if closed.rcvd else '?'}"
    return "held"


async def slow_attack(url: str, clips: list[np.ndarray], slots: int) -> dict:
    """Every slot held by a trickling client, then one legitimate client (see module doc)."""
    stop = asyncio.Event()
    slow = [asyncio.create_task(trickle(url, stop)) for _ in range(slots)]
    await asyncio.sleep(1.0)  # every slot taken
    t0, refused = time.perf_counter(), 0
    while True:
        try:
            started = time.perf_counter()
            lat = await run_utterances(url, clips)
            break
        except Full:
            refused += 1
            await asyncio.sleep(0.5)
    stop.set()
    ends = await asyncio.gather(*slow)
    return {**percentiles(lat), "served": len(lat) == len(clips), "waited_s": started - t0,
            "refused_attempts": refused, "slow_clients": slots,
            "slow_sessions_ended_by": {e: ends.count(e) for e in sorted(set(ends))}}


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
    ap.add_argument("--mode", choices=("utterances", "stream", "slow", "both", "all"), default="all",
                    help="both: utterances and stream; all: both and slow (default)")
    ap.add_argument("--idle-timeout", type=float, default=5.0, help="the server's idle timeout in mode slow (5 s)")
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
        modes = {"both": ("utterances", "stream"), "all": ("utterances", "stream", "slow")}.get(args.mode, (args.mode,))
        for mode in (m for m in modes if m != "slow"):
            lat, wall = asyncio.run(load(url, convs, mode, args.realtime, predictor.vad.min_silence_s))
            rows[mode] = {**percentiles(lat), "wall_s": wall, "speech_s": speech_s,
                          "expected_utterances": args.clients * args.utterances}
    finally:
        srv.stop()
    if "slow" in modes:
        srv = BackgroundServer(create_app(lambda: predictor, ServeConfig(max_sessions=args.clients,
                                                                         idle_timeout_s=args.idle_timeout)))
        try:
            t = time.perf_counter()
            rows["slow"] = asyncio.run(slow_attack(srv.url.replace("http://", "ws://") + "/ws", convs[0], args.clients))
            rows["slow"].update(wall_s=time.perf_counter() - t, idle_timeout_s=args.idle_timeout)
        finally:
            srv.stop()

    print(f"convmem serve load test: {args.clients} concurrent sessions x {args.utterances} utterances, "
          f"memory {args.memory}, model {'tiny untrained' if args.model is None else args.model}, "
          f"torch threads {torch.get_num_threads()}, {os.cpu_count()} cores")
    print(f"{'mode':<11} {'n':>4} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'max ms':>8} {'wall s':>7}")
    for mode, r in rows.items():
        print(f"{mode:<11} {r['n']:>4} {r['p50_ms']:>8.0f} {r['p90_ms']:>8.0f} {r['p99_ms']:>8.0f} "
              f"{r['max_ms']:>8.0f} {r['wall_s']:>7.1f}")
    if "slow" in rows:
        r = rows["slow"]
        print(f"slow: {r['slow_clients']} trickling clients held every slot; the legitimate client was "
              f"{'served' if r['served'] else 'NOT served'} after {r['waited_s']:.1f} s ({r['refused_attempts']} "
              f"refusals); slow sessions ended by {r['slow_sessions_ended_by']}")
    out = {"benchmark": "bench_serve", "command": " ".join(["benchmarks/bench_serve.py", *sys.argv[1:]]),
           "clients": args.clients, "utterances_per_client": args.utterances, "memory": args.memory,
           "model": args.model or "tests/model_fixture.py tiny_bundle (untrained)", "realtime_stream": args.realtime,
           "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), "machine": platform.platform(),
           "python": platform.python_version(), "torch": torch.__version__, "results": rows}
    atomic_write_json(args.out, out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

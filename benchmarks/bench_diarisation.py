"""Diarisation quality (DER/JER) and its effect on emotion WA. A benchmark, not a test.

    python benchmarks/bench_diarisation.py --manifest /tmp/synth/manifest.jsonl \
        --manifest /work/data/ravdess/manifest.jsonl --limit 6 --model runs/x/final_model

For every dialogue of each manifest (its whole-dialogue `audio`, gold turns = utterances' speaker,
start, end): convmem's diarisation (speakers/diarise.py) with the number of speakers estimated
(`auto`) and given (the gold count, `oracle N`), and the online labels a live session gives
(`online`: each VAD utterance embedded whole and named at once by speakers/online.py, in time
order), scored with pyannote.metrics' DiarizationErrorRate and JaccardErrorRate, collar 0.25 s,
overlapping speech excluded; DER's parts (missed speech, false alarm, confusion) are reported too,
since gold turns that include silence at their edges (RAVDESS clips) count as missed speech
whatever the speaker labels. Per run also: the share of dialogues whose speaker count is exact,
the mean |count error|, and the seconds of CPU per audio minute (process time of this process:
under load it is the CPU used, not the wall time; the machine's load average is written beside
it). `online` also gives its agreement with `auto`: the share of VAD speech time whose online label
is the offline label under the best one-to-one renaming.

With `--model`: the emotion WA of `predict` on the same dialogues, same model, four ways: gold
turns with gold speakers, gold turns as one speaker, VAD + auto diarisation, VAD as one speaker.
Each scored gold utterance (emotion not null) takes the prediction of the predicted utterance that
overlaps it most (none: counted wrong). Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_info  # noqa: E402

COLLAR = 0.25


def _annotation(turns, uri: str):
    from pyannote.core import Annotation, Segment

    ann = Annotation(uri=uri)
    for i, (start, end, speaker) in enumerate(turns):
        ann[Segment(start, end), i] = speaker
    return ann


def _metrics():
    from pyannote.metrics.diarization import DiarizationErrorRate, JaccardErrorRate

    return (DiarizationErrorRate(collar=COLLAR, skip_overlap=True),
            JaccardErrorRate(collar=COLLAR, skip_overlap=True))


def online_labels(audio: Path) -> list[tuple[float, float, str]]:
    """What a live session names each VAD utterance (speakers/online.py), in time order."""
    from convmem.speakers.diarise import speech_units
    from convmem.speakers.online import OnlineSpeakers

    utterances, _, emb = speech_units(audio, window=None)
    online = OnlineSpeakers()
    return [(a, b, online.assign(e, b - a)) for (a, b), e in zip(utterances, emb)]


def agreement(online: list[tuple[float, float, str]], offline) -> float:
    """Share of the online utterances' time whose label is offline's under the best one-to-one
    renaming (scipy linear_sum_assignment on overlap seconds)."""
    import numpy as np
    from scipy.optimize import linear_sum_assignment

    names_on = sorted({k for _, _, k in online})
    names_off = sorted({s.speaker for s in offline})
    overlap = np.zeros((len(names_on), max(len(names_off), 1)))
    for a, b, k in online:
        for s in offline:
            overlap[names_on.index(k), names_off.index(s.speaker)] += max(0.0, min(b, s.end) - max(a, s.start))
    rows, cols = linear_sum_assignment(-overlap)
    total = sum(b - a for a, b, _ in online)
    return float(overlap[rows, cols].sum() / total) if total > 0 else 1.0


def score_manifest(manifest: Path, limit: int | None, predictor=None) -> dict:
    from convmem.audio.io import audio_info
    from convmem.audio.segments import TimeSegment
    from convmem.corpus.manifest import read_manifest
    from convmem.speakers.diarise import diarise

    dialogues = [d for d in read_manifest(manifest) if d.audio][:limit]
    if not dialogues:
        raise SystemExit(f"{manifest}: no dialogue with a whole-dialogue audio file")
    runs = {"auto": _metrics(), "oracle N": _metrics(), "online": _metrics()}
    seconds = {name: 0.0 for name in runs}
    counts: dict[str, list[tuple[int, int]]] = {name: [] for name in runs}
    audio_s = 0.0
    agree: list[tuple[float, float]] = []  # (online speech seconds, agreeing seconds)
    wa: dict[str, list[bool]] = {}
    for d in dialogues:
        audio = Path(d.audio)
        audio = audio if audio.is_absolute() else manifest.parent / audio
        duration = audio_info(audio).duration
        audio_s += duration
        from pyannote.core import Segment, Timeline

        uem = Timeline([Segment(0.0, duration)], uri=d.dialogue_id)  # scored region: the whole recording
        gold = [(u.start, u.end, u.speaker) for u in d.utterances]
        ref = _annotation(gold, d.dialogue_id)
        n_gold = len({s for _, _, s in gold})
        hyps = {}
        for name, n in (("auto", None), ("oracle N", n_gold)):
            t0 = time.process_time()
            hyps[name] = diarise(audio, n_speakers=n)
            seconds[name] += time.process_time() - t0
            hyp = _annotation([(s.start, s.end, s.speaker) for s in hyps[name]], d.dialogue_id)
            for metric in runs[name]:
                metric(ref, hyp, uem=uem)
            counts[name].append((n_gold, len({s.speaker for s in hyps[name]})))
        t0 = time.process_time()
        online = online_labels(audio)
        seconds["online"] += time.process_time() - t0
        for metric in runs["online"]:
            metric(ref, _annotation(online, d.dialogue_id), uem=uem)
        counts["online"].append((n_gold, len({k for _, _, k in online})))
        speech = sum(b - a for a, b, _ in online)
        agree.append((speech, speech * agreement(online, hyps["auto"])))
        if predictor is not None:
            ways = {"gold turns, gold speakers": [TimeSegment(a, b, s) for a, b, s in gold],
                    "gold turns, one speaker": [TimeSegment(a, b, None) for a, b, _ in gold],
                    "VAD + auto diarisation": hyps["auto"], "VAD, one speaker": None}
            for way, segments in ways.items():
                tl = predictor.predict(audio, segments=segments, progress=False, key=d.dialogue_id)
                wa.setdefault(way, []).extend(_hits(d.utterances, tl.utterances))
    out = {"manifest": str(manifest), "dialogues": len(dialogues), "audio_minutes": round(audio_s / 60, 2),
           "speakers_gold_vs_estimated": counts["auto"], "speakers_gold_vs_online": counts["online"],
           "online_offline_agreement": round(100 * sum(a for _, a in agree) / max(sum(s for s, _ in agree), 1e-9), 2),
           "runs": {}}
    for name, (der, jer) in runs.items():
        parts = der[:]  # accumulated components over all dialogues
        total = parts["total"]
        out["runs"][name] = {
            "der": round(100 * abs(der), 2), "jer": round(100 * abs(jer), 2),
            "missed": round(100 * parts["missed detection"] / total, 2),
            "false_alarm": round(100 * parts["false alarm"] / total, 2),
            "confusion": round(100 * parts["confusion"] / total, 2),
            "exact_count": round(100 * sum(g == e for g, e in counts[name]) / len(counts[name]), 1),
            "mean_abs_count_error": round(sum(abs(g - e) for g, e in counts[name]) / len(counts[name]), 2),
            "cpu_s_per_audio_min": round(seconds[name] / (audio_s / 60), 2)}
    if wa:
        out["emotion_wa"] = {way: {"wa": round(100 * sum(h) / len(h), 2), "n": len(h)} for way, h in wa.items()}
    return out


def transcribe_cost(manifest: Path, language: str | None) -> dict:
    """CPU seconds per audio minute of `--transcribe` on the gold turns of the manifest's first
    dialogue (language given or detected), and the first transcript for a look."""
    from convmem.audio.io import load_audio
    from convmem.corpus.manifest import read_manifest
    from convmem.speakers.transcribe import Transcriber

    d = next(d for d in read_manifest(manifest) if d.audio)
    audio = Path(d.audio) if Path(d.audio).is_absolute() else manifest.parent / d.audio
    tr = Transcriber(language=language)
    tr(load_audio(audio, 16000, d.utterances[0].start, d.utterances[0].end))  # warm-up
    t0, speech, texts = time.process_time(), 0.0, []
    for u in d.utterances:
        texts.append(tr(load_audio(audio, 16000, u.start, u.end)))
        speech += u.end - u.start
    cpu = time.process_time() - t0
    return {"language": language or "detected", "utterances": len(d.utterances), "speech_minutes": round(speech / 60, 2),
            "cpu_s_per_audio_min": round(cpu / (speech / 60), 2), "first": texts[0],
            "first_gold_text": d.utterances[0].text}


def _hits(gold_utts, predicted) -> list[bool]:
    hits = []
    for u in gold_utts:
        if u.emotion is None:
            continue
        overlap = [(min(u.end, p.end) - max(u.start, p.start), p) for p in predicted]
        best = max(overlap, key=lambda x: x[0], default=(0.0, None))
        hits.append(best[0] > 0 and best[1].emotion == u.emotion)
    return hits


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--manifest", action="append", required=True, type=Path, help="manifest JSONL (repeatable)")
    ap.add_argument("--limit", type=int, default=None, help="first N dialogues of each manifest")
    ap.add_argument("--model", help="final model directory: also measure emotion WA four ways")
    ap.add_argument("--memory", default="dpm")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--transcribe-cost", action="store_true",
                    help="also time --transcribe (language en given, and detected) on each manifest's first dialogue")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "diarisation.json")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    predictor = None
    if args.model:
        from convmem.predict import Predictor

        predictor = Predictor.load(args.model, memory=args.memory)
    results = [score_manifest(m, args.limit, predictor) for m in args.manifest]
    if args.transcribe_cost:
        for m, r in zip(args.manifest, results):
            r["transcribe"] = [transcribe_cost(m, "en"), transcribe_cost(m, None)]
    print(f"| corpus | dialogues | audio min | speakers | exact count % | mean abs count error | DER % | JER % | "
          f"missed % | false alarm % | confusion % | CPU s / audio min |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        for name, m in r["runs"].items():
            print(f"| {Path(r['manifest']).parent.name} | {r['dialogues']} | {r['audio_minutes']} | {name} | "
                  f"{m['exact_count']} | {m['mean_abs_count_error']} | {m['der']} | {m['jer']} | {m['missed']} | "
                  f"{m['false_alarm']} | {m['confusion']} | {m['cpu_s_per_audio_min']} |")
    for r in results:
        print(f"{Path(r['manifest']).parent.name}: online labels agree with offline on {r['online_offline_agreement']}% "
              f"of speech time")
    for r in results:
        for way, v in r.get("emotion_wa", {}).items():
            print(f"{Path(r['manifest']).parent.name}: emotion WA {way}: {v['wa']}% of {v['n']}")
    for r in results:
        for t in r.get("transcribe", []):
            print(f"{Path(r['manifest']).parent.name}: transcribe ({t['language']}): {t['cpu_s_per_audio_min']} CPU s "
                  f"per audio minute; e.g. {t['first']!r} (gold {t['first_gold_text']!r})")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"bench": "diarisation", "collar_s": COLLAR, "skip_overlap": True,
                                    "model": args.model, "memory": args.memory if args.model else None,
                                    "machine": machine_info(args.threads), "results": results}, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

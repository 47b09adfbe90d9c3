"""`convmem predict MODEL AUDIO`: emotion timeline of a recording (thin wrapper over convmem.predict)."""

from __future__ import annotations

import argparse

OUT_SUFFIXES = (".json", ".csv")


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "predict", help="emotion timeline of a recording of any length (JSON/CSV + PNG)",
        description="Split a recording into utterances (silero-vad, or a segments file), stream them through "
                    "the model's test-time memory and write start, end, emotion and probabilities per "
                    "utterance, plus a PNG timeline. Memory use is constant in the recording's length.")
    p.add_argument("model", help="model directory (e.g. the final_model/ of `convmem run`)")
    p.add_argument("audio", help="wav/flac/ogg recording, any sample rate and channel count")
    p.add_argument("--segments", metavar="FILE",
                   help="utterance times instead of VAD: CSV (start,end[,speaker] header), RTTM or IEMOCAP-style "
                        "'[start - end]<TAB>id<TAB>label' lines (labels are ignored)")
    p.add_argument("--file-id", metavar="ID",
                   help="with an RTTM --segments file describing several recordings: the one to read "
                        "(default: the only one, else the one named like the audio file)")
    p.add_argument("--speakers", default=None, metavar="auto|N|none",
                   help="who spoke when, without --segments: auto (estimate the number of speakers; the default), "
                        "N (that many), none (one speaker). GE2E voice embeddings of the VAD utterances, clustered")
    p.add_argument("--transcribe", action="store_true",
                   help="add each utterance's words (packaged Whisper base, CTranslate2) to the timeline's text")
    p.add_argument("--language", default=None, metavar="CODE",
                   help="with --transcribe: the spoken language (en, de, pl, tr, ...; default: detected per utterance)")
    p.add_argument("--memory", default="dpm", metavar="METHOD",
                   help="dpm | mal | window | none (or any method the model offers; default dpm)")
    p.add_argument("--out", metavar="FILE", help="timeline .json or .csv (default: <audio name>.timeline.json here)")
    p.add_argument("--plot", metavar="PNG", help="timeline picture (default: beside --out, .png)")
    p.add_argument("--no-plot", action="store_true", help="do not draw the PNG")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing --out/--plot file that convmem did not write (never an input)")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--threads", type=int, help="torch threads for the model (default: torch's choice)")
    g = p.add_argument_group("voice-activity segmentation (without --segments)")
    g.add_argument("--min-utterance", type=float, default=0.5, metavar="S", help="drop speech shorter than this (0.5)")
    g.add_argument("--max-utterance", type=float, default=15.0, metavar="S",
                   help="cut longer speech at its least speech-like moment (15)")
    g.add_argument("--min-silence", type=float, default=0.3, metavar="S", help="pause that ends an utterance (0.3)")
    g.add_argument("--vad-threshold", type=float, default=0.5, metavar="P", help="silero speech threshold (0.5)")
    g.add_argument("--vad-backend", default="auto", choices=("auto", "onnx", "jit"),
                   help="silero runtime: onnx (faster, needs onnxruntime), jit (torch only), auto (default)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def run(args) -> int:
    from pathlib import Path

    from convmem.audio.vad import VADConfig
    from convmem.errors import ConfigError

    audio = Path(args.audio)
    out = Path(args.out) if args.out else Path(f"{audio.stem}.timeline.json")
    if out.suffix.lower() not in OUT_SUFFIXES:
        raise ConfigError(f"--out {out}: must end in .json or .csv")
    plot = None if args.no_plot else Path(args.plot) if args.plot else out.with_suffix(".png")
    from convmem.output_folder import check_output_files

    outputs = {"--out": out, **({"--plot": plot} if plot is not None else {})}
    inputs = {"AUDIO": audio, "--segments": Path(args.segments) if args.segments else None}
    for name, o in outputs.items():  # the model is an input too, whole
        if o.resolve().is_relative_to(Path(args.model).resolve()):
            raise ConfigError(f"{name} {o}: is inside the model directory {args.model}; write it elsewhere")
    check_output_files(outputs, inputs, args.overwrite, is_timeline_output)
    vad = VADConfig(threshold=args.vad_threshold, min_utterance_s=args.min_utterance,
                    max_utterance_s=args.max_utterance, min_silence_s=args.min_silence, backend=args.vad_backend)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    from convmem.audio.io import audio_info
    from convmem.predict import Predictor

    audio_info(audio)  # a bad recording fails before the model is loaded
    from convmem.speakers.options import parse_speakers

    if args.segments and args.speakers not in (None, "none"):
        raise ConfigError("--speakers: the segments file already says who speaks; give one or the other")
    speakers = parse_speakers(args.speakers if args.speakers is not None else "none" if args.segments else "auto")
    if args.language and not args.transcribe:
        raise ConfigError("--language is for --transcribe")
    transcriber = None
    if args.transcribe:
        from convmem.speakers.transcribe import Transcriber

        transcriber = Transcriber(language=args.language)  # a missing package fails before the model loads
    segments = None
    if args.segments:
        from convmem.audio.segments import read_segments

        segments = read_segments(args.segments, file_id=args.file_id, audio_stem=audio.stem)
    predictor = Predictor.load(args.model, memory=args.memory, device=args.device, vad=vad, transcriber=transcriber)
    timeline = predictor.predict(audio, segments=segments, progress=not args.quiet, speakers=speakers)
    if args.segments:
        timeline.segmentation = args.segments
    (timeline.to_csv if out.suffix.lower() == ".csv" else timeline.to_json)(out)
    if plot is not None:
        timeline.plot(plot)
    import sys

    for warning in timeline.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(summary(timeline))
    print(f"timeline: {out}")
    if plot is not None:
        print(f"plot:     {plot}")
    return 0


def summary(timeline) -> str:
    """A few lines: utterances, minutes, emotion counts."""
    n = len(timeline.utterances)
    speech = sum(u.end - u.start for u in timeline.utterances)
    counts = timeline.emotion_counts()
    lines = [f"{timeline.audio}: {timeline.duration / 60:.1f} min, {n} utterances "
             f"({speech / 60:.1f} min of speech), memory={timeline.memory}, segmentation={timeline.segmentation}"]
    if timeline.dropped_short:
        lines.append(f"  {timeline.dropped_short} speech burst(s) shorter than the minimum utterance were skipped")
    speakers = sorted({u.speaker for u in timeline.utterances if u.speaker is not None})
    if speakers:
        lines.append(f"  {len(speakers)} speaker(s): " + ", ".join(
            f"{s} {sum(u.end - u.start for u in timeline.utterances if u.speaker == s) / 60:.1f} min" for s in speakers))
    lines.append("  " + "  ".join(f"{k}: {v} ({100 * v / n:.0f}%)" if n else f"{k}: 0" for k, v in counts.items()))
    return "\n".join(lines)


def is_timeline_output(path) -> bool:
    """Whether `path` is a file `convmem predict` wrote (a timeline JSON/CSV or its PNG), which a
    new prediction may replace; anything else is the user's."""
    import json

    try:
        with open(path, "rb") as fh:
            head = fh.read(4096)
    except OSError:
        return False
    suffix = path.suffix.lower()
    if suffix == ".png":
        from convmem.timeline_plot import PNG_SOFTWARE

        return head.startswith(b"\x89PNG") and PNG_SOFTWARE.encode() in head
    if suffix == ".csv":
        return head.startswith(b"start,end,speaker,emotion,p_")
    if suffix == ".json":
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        return isinstance(d, dict) and {"model", "memory", "utterances", "labels"} <= set(d)
    return False

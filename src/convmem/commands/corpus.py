"""`convmem corpus {ravdess,nemo,turev,iemocap,meld} ...`: turn a real corpus into OUT/manifest.jsonl.

Each writes OUT/manifest.jsonl and OUT/summary.json (counts and what the loader repaired or left
out) all or nothing, and prints the summary. RAVDESS, nEMO and TurEV-DB hold isolated acted clips:
they become pseudo-conversations of two alternating speakers and also write OUT/audio/<dialogue>.wav.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("corpus", help="build a manifest from RAVDESS, nEMO, TurEV-DB, IEMOCAP or MELD",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="corpus", metavar="CORPUS", required=True)

    r = _pseudo_parser(sub, "ravdess", "pseudo-conversations from RAVDESS actors (Actor_XX/03-01-*.wav|flac)",
                       "folder with Actor_01 ... (48 kHz wav release or 16 kHz flac copy)",
                       "4: fearful/disgust/surprised are unscored context (default); 7: scored")
    n = _pseudo_parser(sub, "nemo", "pseudo-conversations from nEMO (Polish; metadata.csv + samples/)",
                       "nEMO folder with metadata.csv", "4: fear/surprised are unscored context (default); 7: scored")
    t = _pseudo_parser(sub, "turev", "pseudo-conversations from TurEV-DB (Turkish words; metadata.csv + "
                       "{Angry,Calm,Happy,Sad}/)", "TurEV-DB folder with metadata.csv",
                       "4 only: angry/happy/sad/calm, calm counted as neu (TurEV-DB has no neutral)", ("4",))

    i = sub.add_parser("iemocap", help="IEMOCAP_full_release (SessionN/dialog/EmoEvaluation ...)")
    i.add_argument("src", type=Path, help="the IEMOCAP_full_release folder")
    i.add_argument("out", type=Path)
    i.add_argument("--sessions", type=int, nargs="+", default=None, help="session numbers (default: all found)")

    m = sub.add_parser("meld", help="MELD CSVs + one audio file per row (dia{D}_utt{U}.wav)")
    m.add_argument("csv_dir", type=Path, help="folder with {train,dev,test}_sent_emo.csv")
    m.add_argument("audio_dir", type=Path, help="folder with train/ dev/ test/ (or MELD.Raw folder names)")
    m.add_argument("out", type=Path)
    m.add_argument("--labels", choices=("4", "7"), default="4",
                   help="4: surprise/fear/disgust are unscored context (default); 7: all scored")
    m.add_argument("--splits", nargs="+", default=["train", "dev", "test"], choices=["train", "dev", "test"])
    m.add_argument("--allow-missing", action="store_true",
                   help="leave out rows without audio (reported) instead of failing")

    for sp in (r, n, t, i, m):
        sp.add_argument("--force", action="store_true", help="replace a non-empty OUT")
        sp.add_argument("--no-progress", action="store_true")
    return p


def _pseudo_parser(sub, name: str, help: str, src_help: str, labels_help: str, labels=("4", "7")):
    """The arguments every pseudo-conversation corpus takes."""
    sp = sub.add_parser(name, help=help)
    sp.add_argument("src", type=Path, help=src_help)
    sp.add_argument("out", type=Path)
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--turns", type=int, default=30, help="turns per dialogue, about (default 30)")
    sp.add_argument("--labels", choices=labels, default="4", help=labels_help)
    return sp


def run(args) -> int:
    from convmem.corpus.pseudo_conversations import OWNED_FILES
    from convmem.corpus.types import EMOTIONS, EMOTIONS_7
    from convmem.staging import check_output_dir

    check_output_dir(args.out, args.force, OWNED_FILES)  # before minutes of loading, not after
    progress = not args.no_progress
    if args.corpus in ("ravdess", "nemo", "turev"):
        _pseudo_conversations(args, progress)
        return 0
    if args.corpus == "iemocap":
        from convmem.corpus.iemocap import IemocapReport, load_iemocap

        rep = IemocapReport()
        dialogues = load_iemocap(args.src, args.sessions, rep, progress=progress)
        _finish(args.out, _manifest_writer(dialogues, EMOTIONS), rep.lines(), args.force,
                extra={"source": str(args.src), "raw_labels": dict(sorted(rep.raw_labels.items()))})
        return 0
    from convmem.corpus.meld import MeldReport, load_meld

    rep = MeldReport()
    dialogues = load_meld(args.csv_dir, args.audio_dir, tuple(args.splits), args.labels,
                          args.allow_missing, rep, progress=progress)
    _finish(args.out, _manifest_writer(dialogues, EMOTIONS if args.labels == "4" else EMOTIONS_7),
            rep.lines(), args.force,
            extra={"source": str(args.csv_dir), "audio": str(args.audio_dir),
                   "missing_audio": rep.missing_audio,
                   "note": "MELD speakers appear in every split: speaker-disjoint splits do not hold"})
    return 0


def _pseudo_conversations(args, progress: bool) -> None:
    """RAVDESS, nEMO or TurEV-DB: plan the pseudo-conversations, then render them into OUT."""
    from convmem.corpus.pseudo_conversations import PseudoConversationConfig, PseudoReport, render_corpus

    config = PseudoConversationConfig(seed=args.seed, turns_per_dialogue=args.turns, labels=args.labels)
    rep = PseudoReport()
    extra = {"source": str(args.src), "seed": args.seed, "turns": args.turns,
             "note": "pseudo-conversations of isolated acted sentences"}
    if args.corpus == "ravdess":
        from convmem.corpus import ravdess

        plans = ravdess.plan_dialogues(ravdess.scan_clips(args.src, rep), config, rep)
    else:
        from convmem.corpus.clip_metadata import plan_metadata_corpus, summary_extra
        from convmem.corpus.nemo import NEMO
        from convmem.corpus.turev import TUREV

        spec = NEMO if args.corpus == "nemo" else TUREV
        plans, pairing = plan_metadata_corpus(args.src, spec, config, rep)
        extra["note"] = f"pseudo-conversations of isolated acted {spec.clips_are}"
        extra.update(summary_extra(spec, pairing, args.labels))
    _finish(args.out, lambda stage: render_corpus(plans, stage, args.labels, progress, f"{args.corpus} dialogues"),
            rep.lines(), args.force, extra=extra)


def summarize(dialogues) -> dict:
    """Counts for humans and summary.json: sessions, dialogues, scored/unscored turns, minutes, emotions."""
    from collections import Counter

    utts = [u for d in dialogues for u in d.utterances]
    emotions = Counter(u.emotion for u in utts if u.emotion is not None)
    return {
        "sessions": len({d.session for d in dialogues}),
        "speakers": len({u.speaker for u in utts}),
        "dialogues": len(dialogues),
        "scored_turns": sum(emotions.values()),
        "unscored_turns": sum(1 for u in utts if u.emotion is None),
        "minutes": round(sum(d.duration for d in dialogues) / 60.0, 2),
        "emotions": dict(sorted(emotions.items())),
    }


def _manifest_writer(dialogues, labels):
    def write(stage: Path):
        from convmem.corpus.manifest import write_manifest

        write_manifest(stage / "manifest.jsonl", dialogues, labels=labels)
        return dialogues

    return write


def _finish(out: Path, write_into, report_lines: list[str], force: bool, extra: dict) -> None:
    """Build OUT in a staging folder with `write_into(stage) -> dialogues`, add summary.json, rename."""
    from convmem.corpus.pseudo_conversations import OWNED_FILES
    from convmem.fileio import atomic_write_json
    from convmem.staging import staged_directory

    with staged_directory(out, force, OWNED_FILES) as stage:
        dialogues = write_into(stage)
        summary = summarize(dialogues)
        atomic_write_json(stage / "summary.json", {**summary, **extra, "report": report_lines})
    emo = ", ".join(f"{k} {v}" for k, v in summary["emotions"].items())
    print(f"{out / 'manifest.jsonl'}: {summary['sessions']} sessions, {summary['speakers']} speakers, "
          f"{summary['dialogues']} dialogues, {summary['scored_turns']} scored + {summary['unscored_turns']} "
          f"unscored turns, {summary['minutes']} min; emotions: {emo}")
    for line in report_lines:
        print(f"  note: {line}")

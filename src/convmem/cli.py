"""`convmem` command line: thin. Parses arguments and calls the library.

Each subcommand lives in `convmem/commands/<name>.py` (`-` in a name is `_` there) and exposes
`add_parser(subparsers)` (cheap: argparse only) and `run(args) -> int`. Heavy imports
(torch, transformers, peft) happen inside `run`, so `convmem --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from convmem import __version__
from convmem.errors import ConvmemError

# Order here is the order in `convmem --help`.
COMMANDS = ("demo", "synth", "corpus", "tokenize", "train", "eval", "eval-model", "run", "ablate", "predict", "serve")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="convmem",
        description="Emotion of every utterance in long spoken conversations, with test-time memory (DPM, MAL).",
    )
    parser.add_argument("--version", action="version", version=f"convmem {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"convmem.commands.{name.replace('-', '_')}")
        sp = module.add_parser(sub)
        sp.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    # `key=value` overrides may come before or after options (`run CFG --out X a.b=1`)
    args, extra = parser.parse_known_args(argv)
    if extra:
        if hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
            args.overrides = list(args.overrides or []) + extra
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except ConvmemError as exc:
        notes = "".join(f"\n{n}" for n in getattr(exc, "__notes__", ()))
        print(f"convmem {args.command}: error: {exc}{notes}", file=sys.stderr)
        return 2
    except OSError as exc:
        # a file system refusal (no space, no permission, a broken link on the way) is the user's
        # to fix, not a bug: name the path and the reason, without a traceback (CONVMEM_DEBUG=1
        # shows it). Output files are written atomically, so nothing is left half-written.
        if os.environ.get("CONVMEM_DEBUG"):
            raise
        print(f"convmem {args.command}: error: {_os_error_text(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"convmem {args.command}: interrupted", file=sys.stderr)
        return 130


def _os_error_text(exc: OSError) -> str:
    """`path: reason` of a file system error (both paths of a failed rename), naming a link to
    nothing when the path or a folder above it is one."""
    from pathlib import Path

    if exc.filename is None:
        return str(exc)
    path = Path(exc.filename)
    reason = exc.strerror or str(exc)
    if exc.filename2 is not None:
        reason += f" (to {exc.filename2})"
    for p in (path, *path.parents):
        try:
            broken = p.is_symlink() and not p.exists()
        except OSError:  # e.g. no permission to look: keep the original reason
            broken = False
        if broken:
            return f"{p}: a link to {os.readlink(p)}, which does not exist"
    return f"{path}: {reason}"


if __name__ == "__main__":
    sys.exit(main())

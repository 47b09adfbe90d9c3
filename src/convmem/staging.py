"""Output folders written all or nothing, and what `--force` may replace.

A corpus folder (`convmem synth`, `convmem corpus ...`) is built in a staging folder beside it and
renamed into place at the end, so an error or interrupt never leaves half a corpus.

`--force` replaces only what convmem wrote there. Each writer names its own outputs as patterns
(`manifest.jsonl`, `audio/*.wav`, ...); any other file in the folder is the user's (notes, other
data), and replacing the folder would delete it, so `--force` refuses and names those files.

A run killed with SIGKILL (or a power cut) cannot remove its staging folder. Staging folders are
therefore recognisable: named `.<out>.convmem-stage-<random>` and holding a marker file with the
pid of the process that made them. The next run for the same output removes every such folder
whose maker is no longer running (a live one may be another run's work in progress).
"""

from __future__ import annotations

import contextlib
import fnmatch
import glob
import os
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

from convmem.errors import ConfigError
from convmem.fileio import make_temp_dir
from convmem.output_folder import LOCK, folder_lock

STAGE_INFIX = ".convmem-stage-"  # .<out>.convmem-stage-XXXX: the folder being built
OLD_INFIX = ".convmem-old-"  # .<out>.convmem-old-XXXX: the replaced folder, until it is deleted
MARKER = ".convmem-staging"  # in both: "pid\n" of the process that made it
# atomic_open's temporary files: a killed writer's leftovers are ours too
TEMP_FILES = (".*.tmp", "*/.*.tmp")


def foreign_files(out: Path, owned: Sequence[str]) -> list[str]:
    """Paths under `out` (relative, '/'-separated, folders with a trailing '/') that match none of
    the `owned` patterns: what replacing `out` would destroy that convmem did not write."""
    patterns = (*owned, *TEMP_FILES)
    foreign = []
    for root, dirs, files in os.walk(out):
        rel_root = Path(root).relative_to(out)
        for name in sorted(files):
            rel = (rel_root / name).as_posix()
            # fnmatch's * crosses '/': also compare depths, so audio/*.wav is not audio/x/y.wav
            if not any(fnmatch.fnmatchcase(rel, p) and rel.count("/") == p.count("/") for p in patterns):
                foreign.append(rel)
        for name in sorted(dirs):
            rel = (rel_root / name).as_posix()
            # a folder is ours when some owned pattern lives inside it; else it is the user's, whole
            if not any(p.startswith(rel + "/") for p in patterns):
                foreign.append(rel + "/")
                dirs.remove(name)
    return sorted(foreign)


def check_output_dir(out: Path, force: bool, owned: Sequence[str]) -> None:
    """Refuse a file at `out`, a non-empty folder unless `force`, and with `force` a folder holding
    anything convmem did not write there (checked before long work, and again before replacing)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: exists and is not a folder")
    if not out.is_dir() or not any(out.iterdir()):
        return
    if not force:
        raise ConfigError(f"{out}: folder exists and is not empty (use --force to replace it)")
    foreign = foreign_files(out, owned)
    if foreign:
        shown = ", ".join(foreign[:8]) + (f" and {len(foreign) - 8} more" if len(foreign) > 8 else "")
        raise ConfigError(f"{out}: --force replaces only what convmem wrote, and this folder also holds "
                          f"{shown}; move those away or choose another folder")


def remove_stale_stages(out: Path) -> list[Path]:
    """Delete the staging and replaced folders of `out` left by runs that are no longer alive."""
    out = Path(out)
    removed = []
    if not out.parent.is_dir():
        return removed
    for infix in (STAGE_INFIX, OLD_INFIX):
        for candidate in out.parent.glob(f".{glob.escape(out.name)}{infix}*"):
            if candidate.is_dir() and not candidate.is_symlink() and _maker_is_gone(candidate / MARKER):
                shutil.rmtree(candidate, ignore_errors=True)
                removed.append(candidate)
    return removed


def _maker_is_gone(marker: Path) -> bool:
    """True when `marker` names a pid that no longer runs. No marker: not ours, never removed."""
    try:
        pid = int(marker.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return False
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, someone else's
        return False
    return False


def _new_marked_dir(out: Path, infix: str) -> Path:
    path = make_temp_dir(prefix=f".{out.name}{infix}", dir=out.parent)
    (path / MARKER).write_text(f"{os.getpid()}\n")
    return path


@contextlib.contextmanager
def staged_directory(out: Path, force: bool, owned: Sequence[str]) -> Iterator[Path]:
    """Yield an empty staging folder beside `out`; on success it replaces `out` (rename).

    `owned`: patterns of what the writer puts there (see `foreign_files`); `force` may replace a
    folder holding only such files. On any exception the staging folder is removed."""
    out = Path(out)
    check_output_dir(out, force, owned)
    out.parent.mkdir(parents=True, exist_ok=True)
    # the folder itself is replaced by a rename, so its writers lock a file beside it
    with folder_lock(out.parent / f".{out.name}{LOCK}", out, remove=True):
        check_output_dir(out, force, owned)  # another writer may have finished while we waited
        remove_stale_stages(out)
        stage = _new_marked_dir(out, STAGE_INFIX)
        yield from _build(out, stage, force, owned)


def _build(out: Path, stage: Path, force: bool, owned: Sequence[str]) -> Iterator[Path]:
    try:
        yield stage
        (stage / MARKER).unlink()
        check_output_dir(out, force, owned)  # the folder may have changed during a long build
        if out.exists():
            old = _new_marked_dir(out, OLD_INFIX)
            os.replace(out, old / out.name)
            os.replace(stage, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(stage, out)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise

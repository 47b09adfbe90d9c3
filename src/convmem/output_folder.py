"""The one output rule of every command: a command writes only into what it made.

An output folder (`run`, `eval`, `ablate`, `train`, `eval-model`; `synth` and `corpus` stage theirs,
convmem/staging.py) is either created by the command, or reused when this command made it with the
same settings, or refused with a message naming what is there. A folder a command made holds
`.convmem-output.json` (the command and, where it decides the outputs, its settings); a folder made
before that file existed is recognised by what the command always writes there (`legacy`).
`--force` replaces only convmem's own files: a folder that also holds anything else is refused.

While a command writes, it holds an advisory lock (`flock`) on `.convmem.lock` in the folder, which
records its pid: a second writer is refused and told whose the folder is. The lock dies with its
process, so a killed run never leaves a folder locked. Locks are reentrant within one process (a
study and its final model lock the same folder).

Single output files (`predict`'s timeline and plot) follow the same rule: never an input, never the
other output, never an existing file that convmem did not write, unless the user says so.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

from convmem.errors import ConfigError
from convmem.fileio import atomic_write_json

MARKER = ".convmem-output.json"
LOCK = ".convmem.lock"
# what is never the user's in a folder we made: our marker, our lock, atomic_open's temporaries
_OURS = (MARKER, LOCK)

_held: dict[str, list] = {}  # resolved lock path -> [fd, depth]


def _describe(names: Sequence[str], n: int = 6) -> str:
    return ", ".join(names[:n]) + (f" and {len(names) - n} more" if len(names) > n else "")


@contextlib.contextmanager
def folder_lock(lock_path: str | os.PathLike, what: str | os.PathLike, remove: bool = False) -> Iterator[None]:
    """Hold an exclusive advisory lock on `lock_path` (created, recording our pid) while the block
    runs; ConfigError naming the holder's pid when another process holds it. Reentrant.
    `remove`: delete the file when done (a lock beside a folder, which would otherwise litter the
    user's parent folder; a writer that opened it meanwhile was refused, not queued)."""
    lock_path = Path(lock_path)
    key = str(lock_path.resolve())
    if key in _held:
        _held[key][1] += 1
        try:
            yield
        finally:
            _held[key][1] -= 1
        return
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise ConfigError(f"{what}: another convmem process (pid {holder}) is writing here; wait for it "
                          "to finish, or choose another folder") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _held[key] = [fd, 1]
    try:
        yield
    finally:
        _held[key][1] -= 1
        if _held[key][1] == 0:
            del _held[key]
            if remove:
                lock_path.unlink(missing_ok=True)
            os.close(fd)  # releases the lock; the file stays (removing it would race a new locker)


def read_marker(out: Path) -> dict | None:
    """The marker of a folder a command made, or None."""
    path = Path(out) / MARKER
    if not path.is_file():
        return None
    try:
        marker = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return marker if isinstance(marker, dict) and "command" in marker else None


def diff_keys(a, b, prefix: str = "") -> list[str]:
    """Dotted keys where two nested dicts differ (sorted)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return sorted(k for key in set(a) | set(b) for k in diff_keys(a.get(key), b.get(key), f"{prefix}{key}."))
    return [] if a == b else [prefix.rstrip(".")]


def foreign_entries(out: Path, owned: Iterable[str]) -> list[str]:
    """Top-level names in `out` that are neither in `owned` nor convmem's bookkeeping (folders with
    a trailing '/')."""
    owned = set(owned) | set(_OURS)
    return sorted(p.name + ("/" if p.is_dir() else "") for p in Path(out).iterdir()
                  if p.name not in owned and not (p.name.startswith(".") and p.name.endswith(".tmp")))


@contextlib.contextmanager
def claim_output_folder(out: str | os.PathLike, command: str, settings: dict | None = None, *,
                        owned: Sequence[str] = (), legacy: Callable[[Path], bool] | None = None,
                        force: bool = False, kinds: Sequence[str] = ()) -> Iterator[Path]:
    """Create `out`, or reuse it (module doc), and hold its lock while the block runs.

    command: the command as its users type it ("train"); `kinds`: other commands whose folders it
    may continue (`eval` continues a `run`). settings: what decides the outputs (`record_settings`),
    or None when the command checks them itself or later. owned: the top-level names this command
    writes (what `force` may delete). legacy(out): True when `out`, without a marker, is what this
    command made before markers existed."""
    out = Path(out)
    if _secondary_process():  # under `accelerate launch`/torchrun the main process claims for all
        yield out
        return
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: exists and is not a folder")
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    had_lock = (out / LOCK).exists()
    try:
        with folder_lock(out / LOCK, out):
            try:
                _check_claim(out, command, settings, owned, legacy, force, kinds)
            except ConfigError:
                if not had_lock:  # a refused folder is left as it was found
                    (out / LOCK).unlink(missing_ok=True)
                raise
            yield out
    finally:
        # a command refused (bad input) before it wrote anything leaves no folder behind
        if created and out.is_dir() and {p.name for p in out.iterdir()} <= set(_OURS):
            shutil.rmtree(out, ignore_errors=True)


def _secondary_process() -> bool:
    """True in a process of a multi-process launch other than the main one (torchrun's env)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and int(os.environ.get("RANK", "0")) != 0


def _check_claim(out: Path, command: str, settings: dict | None, owned: Sequence[str],
                 legacy: Callable[[Path], bool] | None, force: bool, kinds: Sequence[str]) -> None:
    marker = read_marker(out)
    others = foreign_entries(out, ())
    if marker is None and others and not (legacy is not None and legacy(out)):
        raise ConfigError(f"{out}: folder is not empty and was not made by `convmem {command}` (it holds "
                          f"{_describe(others)}); choose a new or empty folder")
    if marker is not None and marker["command"] not in (command, *kinds):
        raise ConfigError(f"{out}: holds the output of `convmem {marker['command']}`, not of "
                          f"`convmem {command}`; choose another folder")
    if marker is None:
        atomic_write_json(out / MARKER, {"command": command})
    if settings is not None:
        record_settings(out, command, settings, owned=owned, force=force)


def record_settings(out: Path, command: str, settings: dict, *, field: str = "settings",
                    owned: Sequence[str] = (), force: bool = False) -> None:
    """Record `settings` under `field` of `out`'s marker, or compare them with those recorded:
    a difference is a ConfigError naming the keys, or with `force` replaces the `owned` files
    (`replace_own_files`) and records the new settings. Call inside `claim_output_folder`."""
    marker = read_marker(out) or {"command": command}
    settings = json.loads(json.dumps(settings))  # as the marker will read back (tuples as lists)
    previous = marker.get(field)
    if previous is not None and previous != settings:
        diff = diff_keys(previous, settings)
        if not force:
            raise ConfigError(f"{out}: holds a `convmem {command}` output made with other settings (differs at: "
                              f"{_describe(diff, 5)}); use another folder, or --force to replace it")
        replace_own_files(out, owned)
    if previous != settings:
        atomic_write_json(out / MARKER, {**marker, field: settings})


def replace_own_files(out: Path, owned: Sequence[str]) -> None:
    """Delete what a command wrote in `out` (`owned` top-level names), refusing when the folder
    also holds anything else (that would be the user's)."""
    foreign = foreign_entries(out, owned)
    if foreign:
        raise ConfigError(f"{out}: --force replaces only what convmem wrote, and this folder also holds "
                          f"{_describe(foreign)}; move those away or choose another folder")
    for name in owned:
        p = out / name
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        elif p.exists() or p.is_symlink():
            p.unlink()


def check_output_files(outputs: dict[str, Path], inputs: dict[str, Path], overwrite: bool,
                       is_ours: Callable[[Path], bool]) -> None:
    """Refuse an output path (by option name) that is an input, another output, or an existing
    file `is_ours` does not recognise, unless `overwrite` (never for an input)."""
    def same(a: Path, b: Path) -> bool:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and os.path.samefile(a, b))

    names = list(outputs)
    for i, name in enumerate(names):
        path = outputs[name]
        for in_name, in_path in inputs.items():
            if in_path is not None and same(path, in_path):
                raise ConfigError(f"{name} {path}: is the input {in_name}; writing it would destroy the input")
        for other in names[i + 1:]:
            if same(path, outputs[other]):
                raise ConfigError(f"{name} {path}: is also {other}; give them different paths")
        if path.exists() and not path.is_file():
            raise ConfigError(f"{name} {path}: exists and is not a file")
        if path.is_file() and not overwrite and not is_ours(path):
            raise ConfigError(f"{name} {path}: exists and was not written by convmem; choose another path, "
                              "or --overwrite to replace it")

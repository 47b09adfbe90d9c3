"""Atomic, resumable training checkpoints on top of `Accelerator.save_state` / `load_state`.

A checkpoint is `<out_dir>/checkpoints/step-<N>/`: Accelerate's state (model, optimizer,
scheduler, the Python/NumPy/torch RNG states, and registered objects such as `TrainProgress`,
which holds the data-order position). It is written under a temporary name and renamed into
place, and `<out_dir>/checkpoints/latest` (written atomically) names the newest complete one,
so an interruption at any moment leaves the previous checkpoint usable.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

from convmem.fileio import atomic_write_json, atomic_write_text

CHECKPOINTS = "checkpoints"
LATEST = "latest"
META = "meta.json"


@dataclass
class TrainProgress:
    """Where training stands: optimizer steps done (the data-order position follows from it: epoch
    = step // steps_per_epoch, batch = step % steps_per_epoch) and the logged history."""

    step: int = 0
    history: list[dict] = field(default_factory=list)

    def state_dict(self) -> dict:
        return asdict(self)

    def load_state_dict(self, d: dict) -> None:
        self.step = int(d["step"])
        self.history = list(d.get("history", []))


def checkpoint_root(out_dir: str | os.PathLike) -> Path:
    return Path(out_dir) / CHECKPOINTS


def latest_checkpoint(out_dir: str | os.PathLike) -> Path | None:
    """The newest complete checkpoint under `out_dir`, or None."""
    root = checkpoint_root(out_dir)
    pointer = root / LATEST
    if not pointer.is_file():
        return None
    path = root / pointer.read_text().strip()
    return path if path.is_dir() else None


def save_checkpoint(accelerator, out_dir: str | os.PathLike, step: int, keep_last: int = 2,
                    meta: dict | None = None) -> Path:
    """Save the accelerator's full state as checkpoint `step`, atomically; prune older ones.

    `meta` (JSON-able, e.g. the run's data/config fingerprint) is written beside it as
    `meta.json`, readable with `read_meta` before anything is loaded.
    """
    root = checkpoint_root(out_dir)
    final = root / f"step-{step:08d}"
    tmp = root / f".tmp-step-{step:08d}"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    # Pickled (not safetensors) weights: backbones with tied embeddings share storage, which
    # safetensors refuses; these files are only ever read back by `load_checkpoint`.
    accelerator.save_state(output_dir=str(tmp), safe_serialization=False)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        atomic_write_json(tmp / META, {"step": step, **(meta or {})})
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        atomic_write_text(root / LATEST, final.name + "\n")
        done = sorted(p for p in root.glob("step-*") if p.is_dir() and p != final)
        for old in done[:max(0, len(done) - (keep_last - 1))]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def read_meta(path: str | os.PathLike) -> dict:
    """The `meta` a checkpoint was saved with (plus its step); {} for one saved without."""
    f = Path(path) / META
    return json.loads(f.read_text()) if f.is_file() else {}


def load_checkpoint(accelerator, path: str | os.PathLike) -> None:
    """Restore everything `save_checkpoint` saved (model, optimizer, scheduler, RNG, progress)."""
    accelerator.load_state(str(path))

"""Which config a run folder belongs to: `config.json`, written by the first run into it.

Resuming a study reuses whatever earlier runs left in its folder (convmem.study), so a
folder with results may only be resumed with the config that made them, up to the parts that
change nothing already computed (`_comparable`). A run that failed before leaving anything a rerun
would reuse does not claim the folder: the corrected config simply takes its place.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from convmem.config import to_dict
from convmem.errors import ConfigError
from convmem.fileio import atomic_write_json
from convmem.run_config import RunConfig

CONFIG_FILE = "config.json"


def claim_run_folder(out: Path, cfg: RunConfig) -> None:
    """Write `cfg` into `out`, or check it against the config already there (module doc): a
    different config is refused only while `out` holds something a rerun would reuse — anything
    under folds/ (model parts, training checkpoints, predictions), results.json, and corpus/ (the
    generated corpus) when the corpus settings changed. The code cache is keyed by content and
    serves any config."""
    path = out / CONFIG_FILE
    current = _comparable(to_dict(cfg))
    if path.exists():
        previous = _comparable(_with_defaults(json.loads(path.read_text())))
        if previous == current:
            return
        diff = sorted(_diff_keys(previous, current))
        kept = _reused_artifacts(out, corpus_changed=any(k.startswith("corpus.") for k in diff))
        if kept:
            raise ConfigError(f"{out}: holds a run with a different config (differs at: {', '.join(diff[:5])}) "
                              f"and its results ({', '.join(kept[:3])}); use another out folder")
    atomic_write_json(path, to_dict(cfg))


def claim_folder(path: Path, settings: dict, comparable: Callable[[dict], dict], other: str) -> None:
    """`path` (a JSON file in an output folder) records the settings the folder's outputs were made
    with: written on first use; a later use whose `comparable(settings)` differs is a ConfigError
    saying the folder holds `other` and where the settings differ (`convmem eval-model`'s folders,
    whose every file is reused by a rerun)."""
    current = comparable(settings)
    if path.exists():
        previous = comparable(json.loads(path.read_text()))
        if previous != current:
            diff = sorted(_diff_keys(previous, current))
            raise ConfigError(f"{path.parent}: holds {other} (differs at: {', '.join(diff[:5])}); "
                              "use another out folder")
        return
    atomic_write_json(path, settings)


def _reused_artifacts(out: Path, corpus_changed: bool) -> list[str]:
    """What in `out` a rerun would pick up as its own (claim_run_folder), as relative names."""
    found = [p for p in sorted((out / "folds").rglob("*")) if p.is_file()][:3]
    if (out / "results.json").exists():
        found.append(out / "results.json")
    if corpus_changed and (out / "corpus").is_dir() and any((out / "corpus").iterdir()):
        found.append(out / "corpus")
    return [str(p.relative_to(out)) for p in found]


def _with_defaults(recorded: dict) -> dict:
    """A recorded config with the settings added since it was written at their defaults (a field
    added later, at its default, changes nothing the folder holds); as recorded when it no longer
    reads as a RunConfig."""
    from convmem.config import from_dict

    try:
        return to_dict(from_dict(RunConfig, recorded))
    except (ConfigError, TypeError, ValueError):
        return recorded


def _comparable(d: dict) -> dict:
    """The parts of a config that decide a run's models and predictions: methods can be added to a
    study (each has its own predictions file), so can folds (`folds.test_sessions`: each fold has
    its own folder and trains on the same sessions whichever others run), `final` only adds a model,
    and the corpus's name and caveat only describe it."""
    d = json.loads(json.dumps(d))
    for key in ("name", "caveat"):
        d.get("corpus", {}).pop(key, None)
    d.get("eval", {}).pop("methods", None)
    d.get("eval", {}).pop("vad_methods", None)
    d.get("folds", {}).pop("test_sessions", None)
    d.pop("final", None)
    d.pop("final_methods", None)
    return d


def _diff_keys(a, b, prefix="") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        keys = set(a) | set(b)
        return [k for key in keys for k in _diff_keys(a.get(key), b.get(key), f"{prefix}{key}.")]
    return [] if a == b else [prefix.rstrip(".")]

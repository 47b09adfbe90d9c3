"""A trained model directory scored on any manifest (`convmem eval-model`): cross-corpus evaluation.

The whole manifest is one held-out fold (`FOLD`). Each memory streams every dialogue exactly as in
`convmem run` (study.evaluation.evaluate_fold: the model's own saved tokenizer, the code cache keyed
by its fingerprint and the audio, gold labels read only to score), and the outputs are a study's
(study.report.write_outputs: predictions.csv, results.json, cost.json, plots, report.md), with the corpus
and the model named in results.json's meta and the report.

The majority-class row is the model's *training* majority (eval/majority.py), from the label counts
`convmem train` records in bundle.json ("training"); never from this manifest's labels. A model
trained before that was recorded has no majority row (the report says so).

An output folder belongs to one (model, manifest, settings): `eval_model.json` records them, and a
rerun with the same ones resumes and can add memories, as `convmem eval` does for a study. Every input
is checked before anything is written into it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from convmem.errors import ConfigError, ConvmemError, ManifestError
from convmem.fileio import file_sha256
from convmem.eval.majority import METHOD as MAJORITY
from convmem.study.evaluation import evaluate_fold
from convmem.study.methods import VAD_SUFFIX, split_vad
from convmem.study.report import code_commit, write_outputs
from convmem.study.run_folder import claim_folder

FOLD = "whole_manifest"
SETTINGS_FILE = "eval_model.json"


@dataclass
class ModelEvaluation:
    """What `evaluate_model` wrote (report.md beside results.json, predictions.csv, ...), the methods
    scored and notes for the user (a majority row left out, training speaker ids seen again)."""

    out: Path
    report: Path
    methods: list[str]
    notes: list[str] = field(default_factory=list)


def offered_methods(model_dir: Path, info: dict) -> list[str]:
    """What `model_dir` can be scored with: the majority row when its training label counts are
    recorded, its memories (Bundle.methods) and the DPM variants its training config declared."""
    from convmem.bundle import model_methods

    memories = model_methods(model_dir)
    variants = _saved(info, "eval", "dpm_variants", {})
    variants = [v for v in variants if v not in memories] if isinstance(variants, dict) else []
    return ([MAJORITY] if _training_counts(info) else []) + memories + variants


def evaluate_model(model_dir: str | Path, manifest: str | Path, out: str | Path, methods: list[str] | None = None,
                   name: str | None = None, caveat: str = "", cache_root: str | Path | None = None,
                   batch_size: int | None = None, bootstrap: int = 1000, seed: int = 0,
                   on_method: Callable[[str], None] | None = None) -> ModelEvaluation:
    """Score `model_dir` on every dialogue of `manifest` with `methods` (default: `offered_methods`;
    "<memory>@vad" runs a memory on VAD segments of each dialogue's audio) into `out`.

    name: the corpus as the report names it (default: the manifest path). cache_root: the code cache
    (default: `$CONVMEM_CACHE/codes`, as `convmem tokenize`). batch_size: dialogues per engine batch
    (default: the model's training config's eval.batch_size). Bad inputs raise ConvmemError naming
    what and where before anything is written into `out`."""
    from convmem.bundle import model_fingerprint, model_title, read_model_info
    from convmem.corpus.manifest import read_manifest
    from convmem.tokenizers.cache import default_cache_root

    model_dir, manifest, out = Path(model_dir), Path(manifest), Path(out)
    _check_out(out)
    info = read_model_info(model_dir)
    labels = tuple(info["labels"])
    offered = offered_methods(model_dir, info)
    methods = _chosen_methods(methods, offered, model_dir)
    dialogues = read_manifest(manifest, labels=labels)
    _check_dialogues(dialogues, manifest, methods)
    bundle = _load(model_dir)
    fingerprint = model_fingerprint(model_dir)
    cfg = _eval_config(info, labels, batch_size, bootstrap, seed)
    settings = {"model": str(model_dir.resolve()), "model_fingerprint": fingerprint,
                "manifest": str(manifest.resolve()), "manifest_sha256": file_sha256(manifest),
                "labels": list(labels), "emotion_tokens": cfg.eval.emotion_tokens, "batch_size": cfg.eval.batch_size,
                "window_full_limit": cfg.eval.window_full_limit, "dpm_variants": cfg.eval.dpm_variants,
                "bootstrap": bootstrap, "seed": seed, "methods": methods}
    claim_folder(out / SETTINGS_FILE, settings, _comparable, "an evaluation of another model, manifest or settings")

    prior = None
    if MAJORITY in methods:
        from convmem.eval.majority import prior_of_counts

        prior = prior_of_counts(_training_counts(info), labels, where=f"{model_dir}'s training data")
    evaluate_fold(cfg, bundle, methods, dialogues, out / "folds" / FOLD, FOLD,
                  Path(cache_root) if cache_root else default_cache_root(), prior, on_method=on_method)
    notes = _notes(info, dialogues, model_dir)
    meta = {
        "corpus": name or f"manifest {manifest}",
        "caveat": " ".join([_provenance(info, manifest), *notes, caveat]).strip(),
        "folds": [FOLD], "seeds": [seed], "n_limit": bundle.n_limit, "config": "eval-model",
        "methods": methods, "commit": code_commit(), "manifest": str(manifest),
        "prosody_marks": bool(bundle.vocab.prosody_marks),
        "model": {"title": model_title(model_dir), "path": str(model_dir), "fingerprint": fingerprint,
                  "training_corpus": _training_corpus(info)},
    }
    report = write_outputs(out, [FOLD], methods, labels, meta, bootstrap, seed)
    return ModelEvaluation(out, report, methods, notes)


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: exists and is not a folder")
    if out.is_dir() and any(not p.name.startswith(".convmem") for p in out.iterdir()) and not (out / SETTINGS_FILE).is_file():
        raise ConfigError(f"--out {out}: folder is not empty and holds no eval-model results "
                          f"(no {SETTINGS_FILE}); use a new or empty folder")


def _chosen_methods(methods: list[str] | None, offered: list[str], model_dir: Path) -> list[str]:
    if methods is None:
        return offered
    for m in methods:
        base, _ = split_vad(m)
        if m == MAJORITY and MAJORITY not in offered:
            raise ConfigError(f"--memory majority: {model_dir} does not record its training label counts, so its "
                              "majority class is unknown (it is never taken from the test manifest); retrain the "
                              "model with this version or leave majority out")
        if base not in offered or base == MAJORITY != m:
            raise ConfigError(f"--memory {m}: {model_dir} does not offer it (it offers: {', '.join(offered)}; "
                              f"any memory also as <memory>{VAD_SUFFIX})")
    return list(dict.fromkeys(methods))


def _check_dialogues(dialogues, manifest: Path, methods: list[str]) -> None:
    if not any(u.emotion is not None for d in dialogues for u in d.utterances):
        raise ManifestError(f"{manifest}: no utterance has an emotion label, so there is nothing to score")
    if any(m.endswith(VAD_SUFFIX) for m in methods):
        missing = [d.dialogue_id for d in dialogues if d.audio is None]
        if missing:
            raise ManifestError(f"{manifest}: dialogue {missing[0]!r} has no whole-dialogue \"audio\", which "
                                f"{VAD_SUFFIX} methods segment ({len(missing)} such dialogue(s))")


def _load(model_dir: Path):
    from convmem.bundle import load_bundle

    try:
        return load_bundle(model_dir)
    except ConvmemError:
        raise
    except Exception as exc:  # damaged weights fail in torch/transformers/safetensors, each its own way
        raise ConvmemError(f"{model_dir}: cannot load the model ({type(exc).__name__}: {exc})") from None


def _eval_config(info: dict, labels, batch_size: int | None, bootstrap: int, seed: int):
    """The RunConfig the study's evaluation code reads: labels and the eval settings the model was
    trained and evaluated with (emotion tokens fed back, DPM variants, window_full limit)."""
    from convmem.config import from_dict
    from convmem.run_config import CorpusSection, EvalSection, RunConfig

    fed_back = _saved(info, "eval", "emotion_tokens", "predicted")
    if _saved(info, "train", "emotion_tokens", None) == "none":
        fed_back = "none"
    ev = from_dict(EvalSection, {"methods": [], "vad_methods": [], "emotion_tokens": fed_back, "bootstrap": bootstrap,
                                 "batch_size": batch_size or _saved(info, "eval", "batch_size", 8),
                                 "dpm_variants": _saved(info, "eval", "dpm_variants", {}),
                                 "window_full_limit": _saved(info, "eval", "window_full_limit", None)}, "eval")
    return RunConfig(seed=seed, corpus=CorpusSection(labels=list(labels)), eval=ev)


def _saved(info: dict, section: str, key: str, default):
    """`key` of `section` of the run config the model was trained with (bundle.json), else `default`."""
    sec = (info.get("config") or {}).get(section)
    return sec.get(key, default) if isinstance(sec, dict) else default


def _training_counts(info: dict) -> dict | None:
    counts = (info.get("training") or {}).get("label_counts")
    return counts if isinstance(counts, dict) and sum(counts.values()) > 0 else None


def _training_corpus(info: dict) -> str | None:
    from convmem.config import from_dict
    from convmem.run_config import CorpusSection

    corpus = (info.get("config") or {}).get("corpus")
    try:
        return from_dict(CorpusSection, corpus, "corpus").title() if isinstance(corpus, dict) else None
    except ConvmemError:
        return None


def _provenance(info: dict, manifest: Path) -> str:
    sessions = (info.get("training") or {}).get("sessions")
    return (f"Model trained on {_training_corpus(info) or 'another corpus'}"
            + (f" (sessions {', '.join(sessions)})" if sessions else "")
            + f", scored on every dialogue of {manifest} as one held-out fold.")


def _notes(info: dict, dialogues, model_dir: Path) -> list[str]:
    """What the reader must know beside the scores: a majority row left out, training speakers' ids seen again."""
    notes = []
    if not _training_counts(info):
        notes.append(f"No majority-class row: {model_dir} does not record its training label counts "
                     "(bundle.json \"training\"; models trained by this version do).")
    heard = set((info.get("training") or {}).get("speakers") or ())
    shared = sorted({u.speaker for d in dialogues for u in d.utterances} & heard)
    if shared:
        notes.append(f"{len(shared)} speaker id(s) of this manifest are also ids of training speakers (e.g. "
                     f"{shared[0]}): if they are the same people, this is not a held-out evaluation.")
    return notes


def _comparable(settings: dict) -> dict:
    """Memories can be added to an evaluation folder (each has its own predictions file)."""
    return {k: v for k, v in settings.items() if k != "methods"}


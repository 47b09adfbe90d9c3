"""A trained model is a product: one self-contained directory that `predict`, `serve` and the
experiment runner load, holding everything inference needs and nothing it must not see.

    MODEL_DIR/
      bundle.json      format, labels, n_limit, which parts exist, the run config that made it and
                       "training": its scored utterances per label, sessions and speakers
      tokenizer/       the fitted speech tokenizer (tokenizers.load_tokenizer)
      slm/             the emotion SLM, LoRA merged in fp32 (slm.model.load_model)
      classifier/      the classifier baseline (optional)
      mal/             the MAL adapter: adapter.safetensors + mal.json (optional)
      MODEL_CARD.md    training data, folds, scores, intended use, privacy

`Bundle.memory(method)` builds the test-time memory a method names (memory/registry.py), so every
caller gets the same method from the same name.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from convmem.errors import ConfigError, ConvmemError
from convmem.fileio import atomic_write_json, file_sha256

FORMAT = "convmem-model"
BUNDLE_FILE = "bundle.json"
# What the errors of a memory whose part is missing call that part.
_PART_NAMES = {"classifier": "classifier baseline", "mal": "MAL adapter (train one with `convmem run`)",
               "transitions": "record of its training dialogues' speaker transitions (retrain it with this version)"}


@dataclass
class Bundle:
    """Loaded parts of a model directory (see module doc)."""

    path: Path
    labels: tuple[str, ...]
    n_limit: int
    tokenizer: Any
    slm: torch.nn.Module
    vocab: Any
    slm_config: Any
    classifier: Any | None = None
    mal_adapter: Any | None = None
    mal_config: Any | None = None
    dpm_config: Any | None = None
    info: dict = field(default_factory=dict)

    @property
    def speaker_transitions(self) -> list | None:
        """The training dialogues' speaker-turn transition counts (bundle.json "training"), or None
        for a model trained before they were recorded (the inertia memories need them)."""
        return (self.info.get("training") or {}).get("speaker_transitions")

    @property
    def methods(self) -> list[str]:
        """The memories this model offers (memory registry order)."""
        from convmem.memory import registry

        return registry.offered(lambda part: getattr(self, registry.PARTS[part]) is not None)

    def memory(self, method: str, dpm_overrides: dict | None = None, window_full_limit: int | None = None):
        """The Memory (memory/base.py) for `method`, built as the memory registry says;
        `dpm_overrides`: DPMConfig fields over the model's own (a study's DPM variant)."""
        from convmem.memory import registry

        if method not in self.methods:
            if method in registry.names():
                part = next(p for p in registry.get(method).needs if getattr(self, registry.PARTS[p]) is None)
                raise ConvmemError(f"{self.path}: this model has no {_PART_NAMES.get(part, part)}, which "
                                   f"memory {method!r} needs")
            raise ConfigError(f"unknown method {method!r} (this model offers: {', '.join(self.methods)})")
        return registry.get(method).build(self, registry.MemoryOptions(dpm_overrides, window_full_limit))

    def encoder(self, cache=None):
        """The one utterance encoder this model reads with (tokenizers/utterance_encoder.py): its
        tokenizer, its prosody marks and continuous frames when its SLM reads them. `cache`: a
        CodeCache for offline passes (live encoding writes nothing)."""
        from convmem.tokenizers.utterance_encoder import UtteranceEncoder

        return UtteranceEncoder.of(self, cache)

    def engine(self, method: str, emotion_tokens: str = "predicted", **kw):
        from convmem.engine.conversation import ConversationEngine

        mem = self.memory(method, **kw)
        limit = getattr(mem, "n_limit", self.n_limit)
        return ConversationEngine(mem, self.vocab.audio_end_id, self.vocab.emotion_ids, limit, emotion_tokens)


def save_parts(path: Path, *, labels, n_limit: int, config: dict, tokenizer=None, slm=None,
               classifier=None, mal_adapter=None, mal_config=None, dpm_config=None, card: str | None = None,
               extra: dict | None = None) -> Path:
    """Write (or add to) a model directory; each part is written atomically by its own saver."""
    from convmem.config import to_dict

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    if tokenizer is not None:
        tokenizer.save(path / "tokenizer")
    if slm is not None:
        from convmem.slm.model import save_model

        save_model(slm, path / "slm")
    if classifier is not None:
        classifier.save(path / "classifier")
    if mal_adapter is not None:
        from safetensors.torch import save

        from convmem.fileio import atomic_open

        (path / "mal").mkdir(exist_ok=True)
        state = {k: v.detach().contiguous().cpu() for k, v in mal_adapter.state_dict().items()}
        with atomic_open(path / "mal" / "adapter.safetensors", "wb") as fh:
            fh.write(save(state))
        atomic_write_json(path / "mal" / "mal.json", to_dict(mal_config))
    info = _read_info(path) if (path / BUNDLE_FILE).exists() else {}
    written = [name for name, part in (("tokenizer", tokenizer), ("slm", slm), ("classifier", classifier),
                                       ("mal", mal_adapter)) if part is not None] + (["MODEL_CARD.md"] if card else [])
    if card is not None:
        from convmem.fileio import atomic_write_text

        atomic_write_text(path / "MODEL_CARD.md", card)
    info.update({
        "format": FORMAT,
        "version": 1,
        "labels": list(labels),
        "n_limit": int(n_limit),
        "config": config,
        "dpm": to_dict(dpm_config) if dpm_config is not None else info.get("dpm"),
        "parts": sorted(p.name for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")),
        "files": file_hashes(path, written, info.get("files")),
    })
    info.update(extra or {})
    atomic_write_json(path / BUNDLE_FILE, info)
    return path


def _model_files(path: Path, under: str | None = None) -> list[Path]:
    """The files of a model directory (or of its part `under`), relative: everything but bundle.json
    and hidden names (training work, temporaries)."""
    root = path / under if under else path
    if root.is_file():
        return [root.relative_to(path)]
    return sorted(f.relative_to(path) for f in root.rglob("*")
                  if f.is_file() and not any(x.startswith(".") for x in f.relative_to(path).parts)
                  and f.relative_to(path).as_posix() != BUNDLE_FILE)


def file_hashes(path: Path, written: list[str], previous: dict | None) -> dict[str, str]:
    """{relative file: sha256} of every model file: the parts just `written` hashed anew, the rest
    kept from `previous` (all hashed when there is none, e.g. a directory made before hashes)."""
    previous = dict(previous or {})
    fresh = previous == {}
    hashes = {}
    for rel in _model_files(path):
        key = rel.as_posix()
        top = rel.parts[0]
        if fresh or top in written or key not in previous:
            hashes[key] = file_sha256(path / rel)
        else:
            hashes[key] = previous[key]
    return hashes


def verify_files(path: Path, info: dict) -> str | None:
    """Check every file bundle.json records against its sha256 (ConvmemError naming the first that
    is missing or differs); a note when the directory records no hashes (made before they were
    recorded: still loaded, with every other check, so existing models keep working)."""
    files = info.get("files")
    if not isinstance(files, dict):
        return (f"{path}: bundle.json records no file hashes (made by an older convmem), so its files "
                "were not verified; retrain it to have them recorded")
    for rel, digest in files.items():
        f = path / rel
        if "/" in rel and not (path / rel.split("/")[0]).is_dir():
            continue  # a whole optional part taken out: the model offers fewer memories (Bundle.methods)
        if not f.is_file():
            raise ConvmemError(f"{f}: missing from the model directory (bundle.json lists it); "
                               "copy the whole model directory again, or retrain it")
        if file_sha256(f) != digest:
            raise ConvmemError(f"{f}: damaged or changed since training (its sha256 differs from the one in "
                               "bundle.json); copy the model directory again, or retrain it")
    return None


def read_model_info(path: str | Path) -> dict:
    """bundle.json of the model directory `path`, checked to be one (with tokenizer/ and slm/), without
    loading any weights."""
    path = Path(path)
    if not (path / BUNDLE_FILE).is_file():
        raise ConvmemError(f"{path}: not a convmem model directory (no {BUNDLE_FILE}); train one with `convmem run`")
    info = _read_info(path)
    for part in ("tokenizer", "slm"):
        if not (path / part).is_dir():
            raise ConvmemError(f"{path}: model directory is incomplete: missing {part}/")
    return info


def model_methods(path: str | Path) -> list[str]:
    """The methods `Bundle.methods` of the model directory `path` will offer, without loading it."""
    from convmem.memory import registry

    path = Path(path)

    def has(part: str) -> bool:
        if part == registry.TRANSITIONS:
            return (read_model_info(path).get("training") or {}).get("speaker_transitions") is not None
        return (path / part).is_dir()

    return registry.offered(has)


def model_fingerprint(path: str | Path) -> str:
    """sha256 hex of every file of the model directory `path` (relative names and contents; hidden
    names left out: temporaries, `convmem train`'s checkpoints and corpus): two directories with equal fingerprints make the same predictions."""
    import hashlib

    path = Path(path)
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*")
                    if p.is_file() and not any(x.startswith(".") for x in p.relative_to(path).parts)):
        h.update(f.relative_to(path).as_posix().encode() + b"\0%d\0" % f.stat().st_size)
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def model_title(path: str | Path) -> str:
    """The model as its card names it ("<config> / <fold>" from MODEL_CARD.md), else the folder name."""
    card = Path(path) / "MODEL_CARD.md"
    first = card.read_text(encoding="utf-8").split("\n", 1)[0] if card.is_file() else ""
    prefix = "# convmem model: "
    return first[len(prefix):].strip() if first.startswith(prefix) else Path(path).name


def load_bundle(path: str | Path, device: str = "cpu") -> Bundle:
    """Load every part of a model directory (the SLM with its LoRA merged, fp32), each file first
    checked against the sha256 bundle.json records; a part that cannot be read, or whose weights
    are not all finite, is a ConvmemError naming it and the remedy."""
    from convmem.config import from_dict
    from convmem.memory.temp_lora import DPMConfig
    from convmem.slm.model import load_model
    from convmem.tokenizers.base import load_tokenizer

    path = Path(path)
    info = read_model_info(path)
    note = verify_files(path, info)
    if note is not None:
        import sys

        print(f"note: {note}", file=sys.stderr)
    slm, vocab, slm_cfg = _load_part(path, "slm", lambda: load_model(path / "slm", merge=True))
    slm = slm.to(device).eval()
    for p in slm.parameters():
        p.requires_grad_(False)
    labels = tuple(info["labels"])
    if tuple(vocab.labels) != labels:
        raise ConvmemError(f"{path}: labels in bundle.json {labels} differ from the SLM's {tuple(vocab.labels)}")
    classifier = None
    if (path / "classifier").is_dir():
        from convmem.slm.classifier import EmotionClassifier

        classifier = _load_part(path, "classifier", lambda: EmotionClassifier.load(path / "classifier")).to(device).eval()
    mal_adapter = mal_cfg = None
    if (path / "mal").is_dir():
        from safetensors.torch import load_file

        from convmem.memory.mal import MALConfig
        from convmem.memory.mal_layer import MALAdapter

        def load_mal():
            cfg = from_dict(MALConfig, json.loads((path / "mal" / "mal.json").read_text()), "mal")
            adapter = MALAdapter(slm.get_input_embeddings().embedding_dim, cfg.memory)
            adapter.load_state_dict(load_file(str(path / "mal" / "adapter.safetensors")))
            return cfg, adapter

        mal_cfg, mal_adapter = _load_part(path, "mal", load_mal)
        mal_adapter = mal_adapter.to(device).eval()
    tokenizer = _load_part(path, "tokenizer", lambda: load_tokenizer(path / "tokenizer"))
    for part, module in (("slm", slm), ("classifier", classifier), ("mal", mal_adapter)):
        if module is not None:
            check_finite(module, path / part)
    dpm_cfg = from_dict(DPMConfig, info["dpm"], "dpm") if info.get("dpm") else None
    return Bundle(path=path, labels=labels, n_limit=int(info["n_limit"]), tokenizer=tokenizer,
                  slm=slm, vocab=vocab, slm_config=slm_cfg, classifier=classifier, mal_adapter=mal_adapter,
                  mal_config=mal_cfg, dpm_config=dpm_cfg, info=info)


def _load_part(path: Path, part: str, load):
    """`load()`, with any failure but our own errors (a truncated safetensors file, a broken zip, a
    weight of the wrong shape) turned into a ConvmemError naming the part and the remedy."""
    try:
        return load()
    except ConvmemError:
        raise
    except Exception as exc:  # noqa: BLE001 - the library's own error types vary by file format
        raise ConvmemError(f"{path / part}: cannot be loaded, the model directory is damaged or incomplete "
                           f"({type(exc).__name__}: {str(exc)[:200]}); copy it again or retrain it") from None


def check_finite(module: torch.nn.Module, where: Path) -> None:
    """ConvmemError naming the first parameter or buffer of `module` holding NaN or Inf."""
    for name, t in [*module.named_parameters(), *module.named_buffers()]:
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise ConvmemError(f"{where}: weight {name} holds NaN or infinite values (training diverged or the "
                               "file is damaged); retrain the model")


def _read_info(path: Path) -> dict:
    try:
        info = json.loads((path / BUNDLE_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConvmemError(f"{path / BUNDLE_FILE}: unreadable ({exc})") from None
    if info.get("format") != FORMAT:
        raise ConvmemError(f"{path / BUNDLE_FILE}: format is {info.get('format')!r}, expected {FORMAT!r}")
    return info

"""The one table of test-time memories: a method name -> how its memory is built from a model
bundle, which parts of the model directory it needs, its grad mode and its report label.

Every caller asks here (`Bundle.memory`/`Bundle.methods`, the study's method checks and training
plan, the run config's `final_methods`, predict, serve, the VAD run and the report's labels), so
a new memory is one `register` call:

    register(MemorySpec("loudest", build=lambda bundle, options: Loudest(bundle.slm, ...),
                        needs=("slm",), writes_by_backprop=False, label="Loudest frame"))

Variants: a study may declare named variants of a memory that takes settings (DPM:
`eval.dpm_variants: {dpm_surprise: {stepping: surprise}}`); `resolve` turns such a name into
(the memory it varies, its overrides). Variant names are the config's, so results name them as
the config does.

Kept free of torch at import: `convmem --help` and the report read this table.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping

from convmem.errors import ConfigError, ConvmemError

if TYPE_CHECKING:  # pragma: no cover
    from convmem.bundle import Bundle
    from convmem.memory.base import Memory

# Parts of a model directory a memory may need: folder name -> Bundle attribute holding it.
# "transitions" is not a folder: the speaker-turn transitions bundle.json's "training" records
# (study/training.py), which the inertia memories read; a model trained before they were recorded
# does not offer those memories.
PARTS = {"slm": "slm", "classifier": "classifier", "mal": "mal_adapter", "transitions": "speaker_transitions"}
TRANSITIONS = "transitions"


@dataclass(frozen=True)
class MemoryOptions:
    """Study settings a memory may read when it is built (each builder takes what concerns it).

    overrides: settings of a declared variant (for DPM: DPMConfig fields over the model's own).
    window_full_limit: the window of `window_full` in tokens (None = the model's max positions).
    """

    overrides: Mapping[str, Any] | None = None
    window_full_limit: int | None = None


@dataclass(frozen=True)
class MemorySpec:
    """One memory method.

    build(bundle, options) -> Memory (memory/base.py).
    needs: model-directory parts it reads (keys of PARTS); a bundle without one does not offer it.
    writes_by_backprop: its write takes gradients (DPM, MAL), so it runs with autograd on; every
        other memory runs under torch.no_grad (no graph is built for a read-only pass).
    label: its name in reports ("SLLM-DPM (temporary LoRA memory)"); None = the method name alone.
    label_with_marks: its name when the model reads speaker-relative prosody marks, if that changes
        what it reads (the marks compare a turn with the speaker's earlier turns: `none` then reads
        speaker history, and its label must say so); None = `label`.
    takes_variants: a study may declare named variants of it (overrides of its settings).
    variant_labels: labels of well-known variant names (e.g. "dpm_surprise").
    """

    name: str
    build: Callable[["Bundle", MemoryOptions], "Memory"]
    needs: tuple[str, ...] = ("slm",)
    writes_by_backprop: bool = False
    label: str | None = None
    label_with_marks: str | None = None
    takes_variants: bool = False
    variant_labels: Mapping[str, str] | None = None

    def __post_init__(self) -> None:
        bad = [p for p in self.needs if p not in PARTS]
        if bad:
            raise ValueError(f"memory {self.name!r}: unknown part {bad[0]!r} (known: {', '.join(PARTS)})")

    def grad_mode(self):
        """The autograd mode its passes run in (see writes_by_backprop)."""
        import torch

        return torch.enable_grad() if self.writes_by_backprop else torch.no_grad()


_REGISTRY: dict[str, MemorySpec] = {}


def register(spec: MemorySpec) -> MemorySpec:
    """Add `spec` to the table (its name must be new); returns it."""
    if spec.name in _REGISTRY:
        raise ValueError(f"memory {spec.name!r} is registered already")
    _REGISTRY[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    """Remove a memory (tests that register a throw-away one)."""
    _REGISTRY.pop(name, None)


def names() -> tuple[str, ...]:
    """Every registered memory, in registration order (the order models offer them)."""
    return tuple(_REGISTRY)


def get(name: str) -> MemorySpec:
    """The spec of memory `name` (ConfigError naming the known ones if there is none)."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown memory {name!r} (known: {', '.join(_REGISTRY)})") from None


def resolve(method: str, variants: Mapping[str, Mapping[str, Any]] | None = None
            ) -> tuple[MemorySpec, Mapping[str, Any] | None]:
    """(spec, overrides) of `method`: a registered memory (overrides None), or a name declared in
    `variants` ({name: overrides}) of the memory that takes variants."""
    if variants and method in variants:
        return variant_base(), variants[method]
    return get(method), None


def variant_base() -> MemorySpec:
    """The memory whose settings study variants override (DPM)."""
    found = [s for s in _REGISTRY.values() if s.takes_variants]
    if len(found) != 1:
        raise ConvmemError(f"{len(found)} registered memories take variants; exactly one may")
    return found[0]


def offered(has_part: Callable[[str], bool]) -> list[str]:
    """The memories whose every needed part `has_part(part)` says is there, in table order."""
    return [s.name for s in _REGISTRY.values() if all(has_part(p) for p in s.needs)]


def parts_needed(methods) -> set[str]:
    """The model parts the methods `methods` need (unknown names, e.g. `majority`, need none)."""
    return {p for m in methods if m in _REGISTRY for p in _REGISTRY[m].needs}


def label(method: str, prosody_marks: bool = False) -> str | None:
    """The report label of `method` (a memory, or a well-known variant name), else None;
    `prosody_marks`: the model reads speaker-relative prosody marks (see MemorySpec)."""
    if method in _REGISTRY:
        spec = _REGISTRY[method]
        return spec.label_with_marks if prosody_marks and spec.label_with_marks else spec.label
    for spec in _REGISTRY.values():
        if spec.variant_labels and method in spec.variant_labels:
            return spec.variant_labels[method]
    return None


def grad_mode(method: str, variants: Mapping[str, Mapping[str, Any]] | None = None):
    """The autograd mode of `method`'s passes; a null context for a name that is not a memory."""
    try:
        spec, _ = resolve(method, variants)
    except ConfigError:
        return contextlib.nullcontext()
    return spec.grad_mode()


# ---------------------------------------------------------------- the shipped memories

def _none(bundle: "Bundle", options: MemoryOptions):
    from convmem.memory.context import ContextMemory

    return ContextMemory.none(bundle.slm, bundle.vocab.emotion_ids, bundle.n_limit)


def _window(bundle: "Bundle", options: MemoryOptions):
    from convmem.memory.context import ContextMemory

    return ContextMemory.window(bundle.slm, bundle.vocab.emotion_ids, bundle.n_limit)


def _window_full(bundle: "Bundle", options: MemoryOptions):
    from convmem.memory.context import ContextMemory

    limit = options.window_full_limit or int(getattr(bundle.slm.config, "max_position_embeddings", bundle.n_limit))
    return ContextMemory.window(bundle.slm, bundle.vocab.emotion_ids, limit)


def _classifier(bundle: "Bundle", options: MemoryOptions):
    from convmem.memory.classifier_memory import ClassifierMemory

    return ClassifierMemory(bundle.classifier, bundle.vocab.emotion_ids, bundle.n_limit)


def _dpm(bundle: "Bundle", options: MemoryOptions):
    from convmem.config import from_dict, to_dict
    from convmem.memory.temp_lora import DPMConfig, DPMMemory

    base = to_dict(bundle.dpm_config) if bundle.dpm_config is not None else {}
    cfg = from_dict(DPMConfig, {**base, **(options.overrides or {})}, "dpm")
    return DPMMemory(bundle.slm, bundle.vocab.emotion_ids, bundle.n_limit, cfg)


def _mal(bundle: "Bundle", options: MemoryOptions):
    from convmem.memory.mal import MALMemory

    return MALMemory(bundle.slm, bundle.mal_adapter, bundle.mal_config)


def _through_inertia(inner: Callable[["Bundle", MemoryOptions], "Memory"], name: str):
    """A builder of `inner`'s memory read through each speaker's emotional inertia (memory/inertia.py),
    with the transitions and label prior the model's training dialogues recorded (bundle.json)."""
    def build(bundle: "Bundle", options: MemoryOptions):
        from convmem.memory.inertia import InertiaMemory, transition_matrix

        training = bundle.info.get("training") or {}
        counts, labels = bundle.speaker_transitions, training.get("label_counts")
        if counts is None or not labels:
            raise ConvmemError(f"{bundle.path}: memory {name!r} needs the training dialogues' speaker-turn "
                               "transitions, which this model does not record (bundle.json \"training\"); "
                               "retrain it with this version")
        a, pi = transition_matrix(counts, [labels.get(lab, 0) for lab in bundle.labels])
        return InertiaMemory(inner(bundle, options), a, pi, name=name)
    return build


register(MemorySpec("none", _none, label="SLLM one-shot, current utterance only",
                    label_with_marks="SLLM one-shot, current utterance + speaker-relative prosody marks "
                                     "(reads the speaker's earlier turns)"))
register(MemorySpec("window", _window, label="SLLM, history in context truncated to n_limit"))
register(MemorySpec("window_full", _window_full, label="SLLM, full history in context"))
register(MemorySpec("classifier", _classifier, needs=("classifier",), label="Classifier on speech tokens"))
register(MemorySpec("dpm", _dpm, writes_by_backprop=True, label="SLLM-DPM (temporary LoRA memory)",
                    takes_variants=True,
                    variant_labels={"dpm_paper": "SLLM-DPM at the paper's lr 5e-5",
                                    "dpm_stride1024": "SLLM-DPM, fixed stride 1024 tokens",
                                    "dpm_surprise": "SLLM-DPM, surprise-gated writes",
                                    "dpm_emotion": "SLLM-DPM, the write also covers the written-back "
                                                   "emotion token (dpm.write_emotion)"}))
register(MemorySpec("mal", _mal, needs=("slm", "mal"), writes_by_backprop=True, label="SLLM-MAL (memory as a layer)"))
register(MemorySpec("inertia", _through_inertia(_none, "inertia"), needs=("slm", TRANSITIONS),
                    label="Contextual reference: one-shot posteriors through each speaker's emotional inertia",
                    label_with_marks="Contextual reference: one-shot posteriors (+ speaker-relative prosody "
                                     "marks) through each speaker's emotional inertia"))
register(MemorySpec("dpm_inertia", _through_inertia(_dpm, "dpm_inertia"), needs=("slm", TRANSITIONS),
                    writes_by_backprop=True,
                    label="SLLM-DPM posteriors through each speaker's emotional inertia"))
register(MemorySpec("mal_inertia", _through_inertia(_mal, "mal_inertia"), needs=("slm", "mal", TRANSITIONS),
                    writes_by_backprop=True, label="SLLM-MAL posteriors through each speaker's emotional inertia"))

"""The methods a study evaluates: registered memories (memory/registry.py), the DPM variants its
config declares, the `majority` reference row (eval/majority.py), and any of them run on VAD
segmentation as `<method>@vad`."""

from __future__ import annotations

from convmem.errors import ConfigError
from convmem.eval.majority import METHOD as MAJORITY

VAD_SUFFIX = "@vad"


def split_vad(method: str) -> tuple[str, bool]:
    """("window", True) for "window@vad"; (method, False) for a gold-segmentation method."""
    if method.endswith(VAD_SUFFIX):
        return method[: -len(VAD_SUFFIX)], True
    return method, False


def method_list(cfg) -> list[str]:
    """The methods a run evaluates: eval.methods, then "<m>@vad" for each of eval.vad_methods.

    `majority` (eval/majority.py) is a reference row, not a memory: eval.methods only."""
    from convmem.memory import registry

    memories = set(registry.names()) | set(cfg.eval.dpm_variants)
    for key, listed, known in (("eval.methods", cfg.eval.methods, memories | {MAJORITY}),
                               ("eval.vad_methods", cfg.eval.vad_methods, memories)):
        bad = [m for m in listed if m not in known]
        if bad:
            raise ConfigError(f"{key}: unknown method {bad[0]!r} (known: {', '.join(sorted(known))}; "
                              "DPM variants are declared in eval.dpm_variants)")
    return list(cfg.eval.methods) + [f"{m}{VAD_SUFFIX}" for m in cfg.eval.vad_methods]


def parts_to_train(methods: list[str]) -> set[str]:
    """The optional model parts (classifier, MAL adapter) that `methods` read, gold or `@vad`."""
    from convmem.memory import registry

    return registry.parts_needed(split_vad(m)[0] for m in methods)

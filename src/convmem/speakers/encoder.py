"""GE2E speaker encoder from the weights packaged in the `resemblyzer` wheel, in a plain torch LSTM.

Resemblyzer 0.1.4 (Apache-2.0) ships `pretrained.pt`, a GE2E speaker encoder (Wan et al., 2018,
"Generalized end-to-end loss for speaker verification"): a 3-layer LSTM over 40-channel mel power
frames (25 ms window, 10 ms hop, 16 kHz; *not* log-mel) whose last hidden state goes through a
linear 256 -> 256 layer and a ReLU and is L2-normalised. An utterance is embedded as the
normalised mean of the embeddings of 160-frame (1.6 s) partials taken 1.3 times a second.

The package's own imports (librosa, webrtcvad) are heavy and not needed: it is installed with
`--no-deps` (Makefile) and only its `pretrained.pt` is read, checked against a pinned size and
sha256, into the same network defined here. The mel front-end is convmem's (tokenizers/logmel.py:
centred STFT, periodic Hann, Slaney filters, power 2, which is what librosa's melspectrogram
computes by default), tested against the package's own network on the same frames.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

import numpy as np

from convmem.errors import AudioError, ConfigError
from convmem.packaged import PackagedFile, locate

WEIGHTS = PackagedFile("resemblyzer", "0.1.4", "resemblyzer", "pretrained.pt")
WEIGHTS_SHA256 = "39373b86598fa3da9fcddee6142382efe09777e8d37dc9c0561f41f0070f134e"
WEIGHTS_SIZE = 17_090_379
PIP_LINE = "pip install --no-deps resemblyzer==0.1.4"

SAMPLE_RATE = 16000
N_MELS = 40
HOP = 160  # 10 ms
PARTIAL_FRAMES = 160  # 1.6 s partials, as trained
PARTIAL_RATE = 1.3  # partials per second of audio (resemblyzer's default)
MIN_COVERAGE = 0.75  # a last partial shorter than this fraction is dropped (unless it is the only one)
EMBEDDING_SIZE = 256
TARGET_DBFS = -30.0  # the encoder was trained on audio normalised (up only) to this level
MIN_SECONDS = 0.1  # shorter audio carries no voice worth embedding


def weights_path():
    """The installed, pinned `pretrained.pt` (ConfigError naming the package otherwise)."""
    return locate(WEIGHTS, "GE2E speaker encoder", PIP_LINE)


def _build(state: dict):
    import torch

    class GE2E(torch.nn.Module):
        """mels float32[B, T, 40] -> L2-normalised float32[B, 256]."""

        def __init__(self):
            super().__init__()
            self.lstm = torch.nn.LSTM(N_MELS, 256, 3, batch_first=True)
            self.linear = torch.nn.Linear(256, EMBEDDING_SIZE)

        def forward(self, mels):
            _, (hidden, _) = self.lstm(mels)
            raw = torch.relu(self.linear(hidden[-1]))
            return raw / torch.linalg.vector_norm(raw, dim=1, keepdim=True).clamp_min(1e-12)

    model = GE2E()
    model.load_state_dict({k: v for k, v in state.items() if k.startswith(("lstm.", "linear."))})
    return model.eval()


@lru_cache(maxsize=1)
def load_encoder():
    """The GE2E network with the packaged weights (verified), in eval mode, on CPU."""
    import io

    import torch

    path = weights_path()
    blob = path.read_bytes()
    if len(blob) != WEIGHTS_SIZE or hashlib.sha256(blob).hexdigest() != WEIGHTS_SHA256:
        raise ConfigError(f"GE2E speaker encoder: {WEIGHTS.relative} from package {WEIGHTS.distribution} is not "
                          f"the pinned file ({len(blob)} bytes, expected {WEIGHTS_SIZE}, sha256 mismatch); "
                          f"reinstall: {PIP_LINE}")
    checkpoint = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
    return _build(checkpoint["model_state"])


def mel_frames(wave: np.ndarray) -> np.ndarray:
    """float32[samples] 16 kHz -> mel power frames float32[frames, 40] (the encoder's input)."""
    from convmem.tokenizers.logmel import mel_power

    return np.ascontiguousarray(mel_power(wave, N_MELS).T)


def normalise_level(wave: np.ndarray) -> np.ndarray:
    """Raise a quiet wave to -30 dBFS RMS (never lowered), as the encoder's training audio was."""
    rms = float(np.sqrt(np.mean(np.square(wave, dtype=np.float64))))
    if rms <= 0:
        return wave
    change = TARGET_DBFS - 20 * np.log10(rms)
    return wave if change < 0 else (wave * 10 ** (change / 20)).astype(np.float32)


def partial_slices(n_samples: int) -> list[tuple[int, int]]:
    """Frame ranges [a, b) of the partials of an utterance of `n_samples` (resemblyzer's rule)."""
    n_frames = int(np.ceil((n_samples + 1) / HOP))
    step = int(np.round(SAMPLE_RATE / PARTIAL_RATE / HOP))
    steps = max(1, n_frames - PARTIAL_FRAMES + step + 1)
    out = [(i, i + PARTIAL_FRAMES) for i in range(0, steps, step)]
    coverage = (n_samples - out[-1][0] * HOP) / (PARTIAL_FRAMES * HOP)
    if coverage < MIN_COVERAGE and len(out) > 1:
        out.pop()
    return out


def embed_mels(mels: np.ndarray) -> np.ndarray:
    """Partials float32[B, 160, 40] -> embeddings float32[B, 256] (one forward pass)."""
    import torch

    with torch.no_grad():
        return load_encoder()(torch.from_numpy(np.ascontiguousarray(mels, np.float32))).numpy()


def embed_utterance(wave: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """One utterance float32[samples] -> its speaker embedding float32[256], unit length."""
    from convmem.audio.io import resample

    wave = np.asarray(wave, np.float32)
    if wave.ndim != 1 or wave.size < MIN_SECONDS * sample_rate:
        raise AudioError(f"speaker embedding needs mono audio of at least {MIN_SECONDS:g} s, "
                         f"got shape {wave.shape} at {sample_rate} Hz")
    wave = normalise_level(resample(wave, int(sample_rate), SAMPLE_RATE))
    slices = partial_slices(wave.size)
    need = slices[-1][1] * HOP
    if need >= wave.size:  # zero-pad so the last partial is whole (resemblyzer pads the same way)
        wave = np.pad(wave, (0, need - wave.size + 1))
    mel = mel_frames(wave)
    partials = embed_mels(np.stack([mel[a:b] for a, b in slices]))
    mean = partials.mean(0)
    return (mean / max(float(np.linalg.norm(mean)), 1e-12)).astype(np.float32)

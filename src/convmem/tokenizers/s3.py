"""`s3`: the CosyVoice2 25 Hz single-codebook supervised speech tokenizer, run from its ONNX file.

The model file (`speech_tokenizer_v2.onnx` of CosyVoice2-0.5B, or v1 of CosyVoice) is never
downloaded: point `onnx_path` at a local copy. We run it with onnxruntime because PyPI
`s3tokenizer` needs torchaudio, which does not work with our torch.

I/O of the ONNX graph (as CosyVoice's frontend calls it):
  inputs  [0] float32[1, 128, T]  Whisper log-mel at 100 Hz (n_fft 400, hop 160, Slaney mel,
                                   log10, floor max-8, (x+4)/4), T = samples // 160
          [1] int32[1]            T
  output  [0] int[1, 1, T/4] (any shape that flattens to the codes), 25 Hz codes.
The model was trained on windows of at most 30 s, so longer audio is tokenized in 30 s chunks
cut on 40 ms code boundaries.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
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
    prepare_waveform,
    read_tokenizer_json,
    write_tokenizer_json,
)

ENV_VAR = "CONVMEM_S3_ONNX"
# File name -> codebook size: v2 (CosyVoice2) is FSQ with 3^8 codes, v1 (CosyVoice) 4096.
KNOWN_MODELS = {"speech_tokenizer_v2.onnx": 6561, "speech_tokenizer_v1.onnx": 4096}


@dataclass(frozen=True)
class S3Config:
    onnx_path: str
    codebook_size: int = 6561
    n_mels: int = 128
    max_chunk_s: float = 30.0
    threads: int = 1  # onnxruntime intra-op threads; 1 keeps parallel workers from fighting

    def __post_init__(self):
        if self.codebook_size < 2 or not 1 <= self.max_chunk_s <= 30 or self.threads < 1:
            raise ValueError(
                f"need codebook_size >= 2, 1 <= max_chunk_s <= 30 and threads >= 1, got "
                f"{self.codebook_size}, {self.max_chunk_s}, {self.threads}"
            )


class S3Tokenizer:
    """CosyVoice S3 tokenizer: float32 audio -> int64 codes at 25 Hz (nothing to fit)."""

    kind = "s3"
    frame_rate = FRAME_RATE
    is_fitted = True

    def __init__(self, config: S3Config):
        self.config = config
        self.path = Path(config.onnx_path).expanduser().resolve()
        self.session = _open_session(self.path, config)
        inputs = self.session.get_inputs()
        self.feats_name, self.length_name = inputs[0].name, inputs[1].name
        self.length_dtype = np.int64 if "int64" in inputs[1].type else np.int32
        self._digest: str | None = None

    @property
    def codebook_size(self) -> int:
        return self.config.codebook_size

    @classmethod
    def from_config(cls, config: dict) -> S3Tokenizer:
        config = dict(config)
        if "onnx_path" not in config and os.environ.get(ENV_VAR):
            config["onnx_path"] = os.environ[ENV_VAR]
        if "onnx_path" not in config:
            raise ConfigError(f"s3 tokenizer: config key 'onnx_path' is required (or set {ENV_VAR})")
        return cls(from_dict(S3Config, config, "s3 tokenizer"))

    @classmethod
    def from_path(cls, path: str | Path) -> S3Tokenizer:
        """From an `.onnx` file or a model directory holding `speech_tokenizer_v2.onnx` (or v1)."""
        path = Path(path)
        if path.is_dir():
            found = [path / name for name in KNOWN_MODELS if (path / name).is_file()]
            if not found:
                raise ConfigError(f"{path}: no {' or '.join(KNOWN_MODELS)} in this directory")
            path = found[0]
        return cls(S3Config(onnx_path=str(path), codebook_size=KNOWN_MODELS.get(path.name, 6561)))

    @classmethod
    def load(cls, directory: str | Path) -> S3Tokenizer:
        directory = Path(directory)
        return cls(from_dict(S3Config, read_tokenizer_json(directory, cls.kind)["config"], str(directory)))

    def save(self, directory: str | Path) -> Path:
        """Write tokenizer.json pointing at the ONNX file (the model itself is not copied)."""
        directory = Path(directory)
        write_tokenizer_json(directory, self.kind, {**asdict(self.config), "onnx_path": str(self.path)}, self.fingerprint)
        return directory

    @property
    def fingerprint(self) -> str:
        if self._digest is None:
            self._digest = file_digest(self.path)
        cfg = {k: v for k, v in asdict(self.config).items() if k not in ("onnx_path", "threads")}
        return config_hash({"kind": self.kind, **cfg}, self._digest)

    def encode(self, waveform: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
        """float32[samples] -> int64[n_frames(samples at 16 kHz)] in [0, codebook_size)."""
        from convmem.tokenizers.logmel import whisper_log_mel

        wave = prepare_waveform(waveform, sample_rate)
        frames = n_frames(wave.size)
        wave = fit_to_frames(wave, frames)
        chunk = int(self.config.max_chunk_s * FRAME_RATE)
        codes = []
        for a in range(0, frames, chunk):
            b = min(frames, a + chunk)
            mel = whisper_log_mel(wave[a * HOP_SAMPLES : b * HOP_SAMPLES], self.config.n_mels)
            out = self.session.run(None, {
                self.feats_name: mel[None],
                self.length_name: np.array([mel.shape[1]], dtype=self.length_dtype),
            })[0]
            codes.append(self._exact(np.asarray(out).reshape(-1).astype(np.int64), b - a))
        result = np.concatenate(codes)
        if result.min() < 0 or result.max() >= self.codebook_size:
            raise ConfigError(
                f"{self.path}: codes outside [0, {self.codebook_size}) (max {result.max()}): "
                "is codebook_size right for this model?"
            )
        return result

    def _exact(self, out: np.ndarray, want: int) -> np.ndarray:
        """The model's conv rounding may give one code more or less than the 40 ms rule."""
        if out.size == 0 or abs(out.size - want) > 1:
            raise ConfigError(
                f"{self.path}: model gave {out.size} codes for {want * 4} mel frames, expected {want} "
                "(a 4x downsampling S3 tokenizer)"
            )
        if out.size >= want:
            return out[:want]
        return np.concatenate([out, out[-1:]])


def _open_session(path: Path, config: S3Config):
    from convmem.onnx_runtime import onnxruntime as import_onnxruntime

    onnxruntime = import_onnxruntime()  # telemetry off (convmem/onnx_runtime.py)

    if not path.is_file():
        raise ConfigError(f"{path}: S3 tokenizer model file not found (set onnx_path or {ENV_VAR})")
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = config.threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    try:
        session = onnxruntime.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidProtobuf types
        why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"{path}: not a loadable ONNX model ({why})") from None
    inputs = session.get_inputs()
    if len(inputs) != 2 or len(inputs[0].shape) != 3:
        shapes = [(i.name, i.shape) for i in inputs]
        raise ConfigError(f"{path}: expected inputs (feats [1, {config.n_mels}, T], feats_length [1]), got {shapes}")
    mel_dim = inputs[0].shape[1]
    if isinstance(mel_dim, int) and mel_dim != config.n_mels:
        raise ConfigError(f"{path}: model expects {mel_dim} mel bins, config says n_mels={config.n_mels}")
    return session

"""Log-mel features shared by the tokenizers: 100 Hz power mel, Whisper-style log-mel, 25 Hz log-mel.

STFT is torch.stft (centred, reflect padding, periodic Hann) and the filters are Slaney mel
filters from `transformers.audio_utils` — the same filters Whisper (and so the CosyVoice S3
tokenizer) were trained with. torch/transformers are imported inside the functions so that this
module stays cheap to import.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from convmem.tokenizers.base import SAMPLE_RATE

N_FFT = 400  # 25 ms window at 16 kHz
HOP = 160  # 10 ms hop: 100 Hz mel frames, 4 per 25 Hz code


@lru_cache(maxsize=8)
def mel_filters(n_mels: int, n_fft: int = N_FFT, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Slaney-normalised mel filter bank, float32[n_mels, n_fft // 2 + 1] (librosa's default)."""
    from transformers.audio_utils import mel_filter_bank

    bank = mel_filter_bank(
        num_frequency_bins=n_fft // 2 + 1,
        num_mel_filters=n_mels,
        min_frequency=0.0,
        max_frequency=sample_rate / 2,
        sampling_rate=sample_rate,
        norm="slaney",
        mel_scale="slaney",
    )
    return np.ascontiguousarray(bank.T, dtype=np.float32)


def mel_power(wave: np.ndarray, n_mels: int) -> np.ndarray:
    """Mel power spectrogram at 100 Hz.

    Args: wave float32[samples] at 16 kHz (samples > N_FFT // 2 for the reflect padding).
    Returns: float32[n_mels, samples // 160] — the centred STFT's last frame is dropped, as
    Whisper does, so the count is exactly samples // 160.
    """
    import torch

    audio = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))
    window = torch.hann_window(N_FFT)
    stft = torch.stft(audio, N_FFT, HOP, window=window, center=True, pad_mode="reflect", return_complex=True)
    power = stft[..., :-1].abs() ** 2  # [n_fft/2+1, frames]
    filters = torch.from_numpy(mel_filters(n_mels))
    return (filters @ power).numpy()


def whisper_log_mel(wave: np.ndarray, n_mels: int = 128) -> np.ndarray:
    """Whisper's log-mel: log10, floor 8 decades below the loudest bin, scaled (x + 4) / 4.

    Returns: float32[n_mels, samples // 160]. This is the input the S3 tokenizer expects.
    """
    log_spec = np.log10(np.maximum(mel_power(wave, n_mels), 1e-10))
    log_spec = np.maximum(log_spec, log_spec.max() - 8.0)
    return ((log_spec + 4.0) / 4.0).astype(np.float32)


def log_mel_25hz(wave: np.ndarray, n_mels: int = 80, floor: float = 1e-8) -> np.ndarray:
    """Absolute log-mel at 25 Hz: mel power averaged over 4 consecutive 10 ms frames, then log10.

    Averaging power (not log) over the 40 ms gives the energy of the whole code's span, so no
    audio between 25 Hz frames is skipped. The floor is absolute (-80 dB re full scale), not
    relative to the utterance's maximum, so loudness differences between utterances survive.

    Args: wave float32[samples], samples a multiple of 640 (see base.fit_to_frames).
    Returns: float32[samples // 640, n_mels].
    """
    power = mel_power(wave, n_mels)  # [n_mels, 4 * frames]
    frames = power.shape[1] // 4
    pooled = power[:, : frames * 4].reshape(n_mels, frames, 4).mean(axis=2)
    return np.log10(np.maximum(pooled, floor)).T.astype(np.float32)

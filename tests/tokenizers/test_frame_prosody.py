from __future__ import annotations

import numpy as np
import pytest

from convmem.tokenizers.base import fit_to_frames, n_frames
from convmem.tokenizers.frame_prosody import VOICING_JUMP_ST, code_log_f0, prosody_block
from convmem.tokenizers.logmel import log_mel_25hz

from .conftest import voice


def block_of(wave: np.ndarray, weight: float = 1.0) -> np.ndarray:
    frames = n_frames(wave.size)
    return prosody_block(log_mel_25hz(wave[: frames * 640], 80), code_log_f0(wave[: frames * 640], frames), weight)


def test_level_pitch_and_voicing_columns_are_in_db_and_semitones():
    low, high = block_of(voice(110)), block_of(voice(220))
    assert low.shape == (50, 3) and low.dtype == np.float32
    mid = slice(5, -5)  # frames the pitch tracker fills
    # 220 Hz is one octave above 110 Hz: 12 semitones apart; 110 Hz is 1.65 st above 100 Hz
    assert np.median(high[mid, 1] - low[mid, 1]) == pytest.approx(12.0, abs=0.2)
    assert np.median(low[mid, 1]) == pytest.approx(12 * np.log2(1.1), abs=0.2)
    assert set(low[mid, 2].tolist()) == {VOICING_JUMP_ST}
    # twice the amplitude is +6.02 dB on every frame, pitch and voicing unchanged
    loud = block_of(2 * voice(110))
    assert np.allclose(loud[:, 0] - low[:, 0], 20 * np.log10(2), atol=0.01)
    assert np.array_equal(loud[:, 2], low[:, 2])


def test_silence_is_unvoiced_and_weight_scales_every_column():
    silence = block_of(np.zeros(16000, dtype=np.float32))
    assert np.all(silence[:, 1:] == 0)
    assert np.allclose(silence[:, 0], 10 * np.log10(80 * 1e-8))  # every mel bin at the log-mel floor
    one, three = block_of(voice(150)), block_of(voice(150), weight=3.0)
    assert np.allclose(three, 3 * one, rtol=1e-5)


@pytest.mark.parametrize("samples", [80, 320, 799, 800, 801, 960])
def test_audio_too_short_for_a_pitch_track_is_unvoiced_not_an_error(samples):
    frames = n_frames(samples)
    f0 = code_log_f0(fit_to_frames(voice(150, seconds=1.0)[:samples], frames), frames)  # Praat would raise
    assert f0.shape == (frames,)

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from convmem.audio.augment import Perturbation, SpeakerAugmentConfig, draw_perturbations
from convmem.errors import ConfigError


def _peak_hz(wave, sr=16000):
    spec = np.abs(np.fft.rfft(wave * np.hanning(wave.size)))
    return np.fft.rfftfreq(wave.size, 1 / sr)[int(spec.argmax())]


def test_speed_moves_pitch_and_duration_and_gain_scales_level():
    t = np.arange(32000) / 16000
    tone = (0.1 * np.sin(2 * np.pi * 200 * t)).astype(np.float32)
    faster = Perturbation(Fraction(11, 10), 6.0).apply(tone)
    assert faster.dtype == np.float32 and faster.size == round(32000 / 1.1)
    assert _peak_hz(faster) == pytest.approx(220, abs=1.0)
    mid = slice(2000, -2000)  # away from the filter's edge transients
    ratio = np.sqrt(np.mean(faster[mid] ** 2) / np.mean(tone[mid] ** 2))
    assert ratio == pytest.approx(10 ** (6 / 20), rel=0.01)
    slower = Perturbation(Fraction(9, 10), 0.0).apply(tone)
    assert slower.size == round(32000 / 0.9) and _peak_hz(slower) == pytest.approx(180, abs=1.0)
    assert np.array_equal(Perturbation(Fraction(1), 0.0).apply(tone), tone)


def test_draws_are_seeded_per_dialogue_copy_and_speaker_and_stay_in_range():
    cfg = SpeakerAugmentConfig(copies=2, speed=0.12, gain_db=6.0, seed=3)
    a = draw_perturbations(cfg, "S01_D01", ["B", "A", "A"], copy=1)
    assert a == draw_perturbations(cfg, "S01_D01", ["A", "B"], copy=1)  # order/repeats do not matter
    assert set(a) == {"A", "B"} and a["A"] != a["B"]
    assert a != draw_perturbations(cfg, "S01_D01", ["A", "B"], copy=2)
    assert a != draw_perturbations(cfg, "S01_D02", ["A", "B"], copy=1)
    assert a != draw_perturbations(SpeakerAugmentConfig(copies=2, seed=4), "S01_D01", ["A", "B"], copy=1)
    many = [p for k in range(50) for p in draw_perturbations(cfg, f"d{k}", ["A", "B"], 1).values()]
    speeds = np.array([float(p.speed) for p in many])
    gains = np.array([p.gain_db for p in many])
    assert speeds.min() >= np.exp(-0.12) - 0.01 and speeds.max() <= np.exp(0.12) + 0.01
    assert speeds.min() < 0.95 and speeds.max() > 1.05  # the range is actually used
    assert np.abs(gains).max() <= 6.0 and gains.min() < -3 and gains.max() > 3
    assert all(p.speed.denominator <= 64 for p in many)


@pytest.mark.parametrize("bad, match", [
    (dict(copies=-1), "augment.copies"), (dict(copies=17), "augment.copies"),
    (dict(speed=0.7), "augment.speed"), (dict(speed=-0.1), "augment.speed"),
    (dict(gain_db=40), "augment.gain_db"),
])
def test_bad_settings_are_named(bad, match):
    with pytest.raises(ConfigError, match=match):
        SpeakerAugmentConfig(**bad)

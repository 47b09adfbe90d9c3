from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from convmem.audio.augment import Perturbation, SpeakerAugmentConfig, draw_perturbations
from convmem.errors import ConfigError


# draw_perturbations(speed 0.12, gain 6 dB, seed 3) for speaker A of S01_D01 copy 1, before tempo existed
_PINNED_A_SPEED, _PINNED_A_GAIN = Fraction(59, 63), 3.48


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


def test_tempo_changes_duration_and_keeps_pitch():
    t = np.arange(32000) / 16000
    tone = (0.1 * np.sin(2 * np.pi * 200 * t)).astype(np.float32)
    for tempo in (1.3, 0.75):
        out = Perturbation(Fraction(1), 0.0, tempo).apply(tone)
        assert out.dtype == np.float32 and out.size == round(32000 / tempo)
        assert _peak_hz(out[1000:-1000]) == pytest.approx(200, abs=2.0)
    # speed then tempo: pitch from speed only, duration from both
    both = Perturbation(Fraction(11, 10), 0.0, 1.2).apply(tone)
    assert both.size == round(round(32000 / 1.1) / 1.2) and _peak_hz(both[1000:-1000]) == pytest.approx(220, abs=2.0)
    # nothing lost at either end: a burst 0.1 s before the end is still there, in time
    burst = np.zeros(32000, np.float32)
    burst[30400:30800] = tone[:400]
    out = Perturbation(Fraction(1), 0.0, 1.25).apply(burst)
    loud = np.nonzero(np.abs(out) > 0.05)[0]
    assert abs(loud[0] - 30400 / 1.25) < 160 and loud[-1] < out.size
    short = tone[:1000]  # under two WSOLA frames: left as it is
    assert np.array_equal(Perturbation(Fraction(1), 0.0, 1.3).apply(short), short)


def test_pause_resizes_the_silences_inside_a_turn_and_keeps_its_sounds():
    sr = 16000
    burst = (0.3 * np.sin(2 * np.pi * 200 * np.arange(sr // 2) / sr)).astype(np.float32)
    short_gap = np.zeros(240, np.float32)  # 15 ms: a stop closure, not a pause
    wave = np.concatenate([np.zeros(1600), burst, np.zeros(4800), burst, short_gap, burst, np.zeros(1600)]).astype(np.float32)
    for factor in (2.0, 0.5):
        out = Perturbation(Fraction(1), 0.0, 1.0, factor).apply(wave)
        # the 300 ms pause moves by (factor - 1) x 300 ms, within the 25 ms analysis window
        assert out.size - wave.size == pytest.approx((factor - 1) * 4800, abs=400)
        assert np.array_equal(out[:1600 + burst.size], wave[:1600 + burst.size])  # lead-in and first sound kept
        tail = 2 * burst.size + short_gap.size + 1600
        assert np.array_equal(out[-tail:], wave[-tail:])  # short gap, later sounds and trailing silence kept
    assert np.array_equal(Perturbation(Fraction(1), 0.0, 1.0, 1.0).apply(wave), wave)
    assert np.array_equal(Perturbation(Fraction(1), 0.0, 1.0, 2.0).apply(np.zeros(8000, np.float32)), np.zeros(8000))


def test_tempo_draws_are_independent_of_speed_and_off_keeps_earlier_draws():
    base = SpeakerAugmentConfig(copies=1, speed=0.12, gain_db=6.0, seed=3)
    off = draw_perturbations(base, "S01_D01", ["A", "B"], 1)
    assert all(p.tempo == 1.0 and p.pause == 1.0 for p in off.values())
    # pinned: tempo 0 draws what this configuration drew before tempo existed
    assert (off["A"].speed, round(off["A"].gain_db, 4)) == (_PINNED_A_SPEED, _PINNED_A_GAIN)
    on = SpeakerAugmentConfig(copies=1, speed=0.12, gain_db=6.0, tempo=0.3, seed=3)
    many = [p for k in range(50) for p in draw_perturbations(on, f"d{k}", ["A", "B"], 1).values()]
    tempos = np.array([p.tempo for p in many])
    speeds = np.array([float(p.speed) for p in many])
    assert tempos.min() >= np.exp(-0.3) - 1e-9 and tempos.max() <= np.exp(0.3) + 1e-9
    assert tempos.min() < 0.8 and tempos.max() > 1.25
    assert abs(np.corrcoef(np.log(tempos), np.log(speeds))[0, 1]) < 0.3
    with_pause = SpeakerAugmentConfig(copies=1, speed=0.12, gain_db=6.0, tempo=0.3, pause=0.7, seed=3)
    pauses = np.array([p.pause for k in range(50) for p in draw_perturbations(with_pause, f"d{k}", ["A", "B"], 1).values()])
    assert pauses.min() >= np.exp(-0.7) - 1e-9 and pauses.max() <= np.exp(0.7) + 1e-9
    assert pauses.min() < 0.6 and pauses.max() > 1.7


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
    (dict(gain_db=40), "augment.gain_db"), (dict(tempo=0.6), "augment.tempo"), (dict(tempo=-0.1), "augment.tempo"),
    (dict(pause=1.5), "augment.pause"), (dict(pause=-0.1), "augment.pause"),
])
def test_bad_settings_are_named(bad, match):
    with pytest.raises(ConfigError, match=match):
        SpeakerAugmentConfig(**bad)

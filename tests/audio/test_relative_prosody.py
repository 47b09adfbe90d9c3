"""Speaker-relative prosody marks: each turn against its own speaker's earlier turns, causally."""

import numpy as np
import pytest

from convmem.audio.relative_prosody import (
    MARK_EDGES,
    MARKS_PER_TURN,
    N_BINS,
    N_MARK_TOKENS,
    UNKNOWN,
    SpeakerProsodyReference,
    conversation_marks,
    mark_token,
    turn_prosody,
)
from tests.audio.test_prosody import SR, _syllables

SAME = N_BINS // 2  # "about the same" bin
PITCH, RANGE, LEVEL, TEMPO = range(MARKS_PER_TURN)


def _p(pitch=0.0, spread=4.0, level=-20.0, tempo=1.5):
    return np.array([pitch, spread, level, tempo])


def test_first_turn_of_each_speaker_is_unknown_then_compared_with_that_speaker_only():
    ref = SpeakerProsodyReference()
    assert ref.mark("A", _p()).tolist() == [UNKNOWN] * 4
    assert ref.mark("B", _p(level=-5.0)).tolist() == [UNKNOWN] * 4  # B's own first turn
    # A again, 4 dB louder than A's mean (B's loud turn must not enter A's reference)
    m = ref.mark("A", _p(level=-16.0))
    assert m[LEVEL] == N_BINS - 1 and m[PITCH] == m[RANGE] == m[TEMPO] == SAME
    # B again at A's level: far quieter than B's habit
    assert ref.mark("B", _p(level=-20.0))[LEVEL] == 0


def test_reference_is_the_running_mean_of_earlier_turns_and_bins_follow_the_edges():
    ref = SpeakerProsodyReference()
    ref.mark(None, _p(pitch=0.0))
    ref.mark(None, _p(pitch=2.0))  # mean so far: 1.0 st
    for delta, want in ((-2.5, 0), (-1.0, 1), (0.5, 2), (1.0, 3), (3.0, 4)):
        probe = SpeakerProsodyReference()
        probe.mark(None, _p(pitch=0.0))
        probe.mark(None, _p(pitch=2.0))
        assert probe.mark(None, _p(pitch=1.0 + delta))[PITCH] == want, delta
    assert np.searchsorted(MARK_EDGES[PITCH], 0.0) == SAME


def test_unmeasurable_values_are_unknown_and_stay_out_of_the_reference():
    ref = SpeakerProsodyReference()
    ref.mark("A", _p(pitch=5.0))
    m = ref.mark("A", _p(pitch=np.nan))  # e.g. nothing voiced
    assert m[PITCH] == UNKNOWN and m[LEVEL] == SAME
    assert ref.mark("A", _p(pitch=5.0))[PITCH] == SAME  # the NaN did not drag the mean
    with pytest.raises(ValueError, match="shape"):
        ref.mark("A", np.zeros(3))


def test_marks_are_causal_a_later_turn_never_changes_an_earlier_mark():
    rng = np.random.default_rng(7)
    turns = [_p(*rng.normal([0, 4, -20, 1.5], [2, 1, 3, 0.1])) for _ in range(12)]
    speakers = ["A", "B"] * 6
    full = conversation_marks(speakers, turns)
    changed = turns[:6] + [_p(pitch=30.0, level=10.0)] * 6
    prefix = conversation_marks(speakers, changed)
    assert all((a == b).all() for a, b in zip(full[:6], prefix[:6]))
    with pytest.raises(ValueError, match="2 speakers but 3"):
        conversation_marks(["A", "B"], turns[:3])


def test_turn_prosody_on_real_signals_moves_the_right_mark():
    base = _syllables(150.0, amp=0.1)
    louder = _syllables(150.0, amp=0.2)  # +6 dB
    higher = _syllables(150.0 * 2 ** (3 / 12), amp=0.1)  # +3 semitones
    ref = SpeakerProsodyReference()
    ref.mark("A", turn_prosody(base, SR))
    m_loud = SpeakerProsodyReference()
    m_loud.mark("A", turn_prosody(base, SR))
    assert m_loud.mark("A", turn_prosody(louder, SR))[LEVEL] == N_BINS - 1
    m_high = ref.mark("A", turn_prosody(higher, SR))
    # same amplitude: the level moves by ~1 dB at most (frame ripple of a higher F0), never far
    assert m_high[PITCH] == N_BINS - 1 and abs(m_high[LEVEL] - SAME) <= 1
    assert np.isnan(turn_prosody(np.zeros(100, np.float32), SR)).all()  # too short: unknown, no error


def test_token_names_are_distinct():
    names = {mark_token(f, b) for f in range(MARKS_PER_TURN) for b in range(N_BINS + 1)}
    assert len(names) == N_MARK_TOKENS
    assert mark_token(LEVEL, N_BINS - 1) == "<pm_level_2>" and mark_token(PITCH, UNKNOWN) == "<pm_pitch_unk>"

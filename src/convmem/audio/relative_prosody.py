"""Speaker-relative prosody marks: how a turn's pitch, range, level and tempo compare with the
same speaker's earlier turns of the conversation, as four small tokens.

Why: a speaker's habitual voice (a loud, fast or low talker) differs across speakers by as much as
emotions move it, so one turn's absolute prosody misleads a reader that has not met the speaker,
and the emotion SLM, trained on a few speakers, reads habits as emotions
(docs/experiments/habit-misreads.md). What separates an angry turn from a calm one is how it departs from that speaker's usual
voice: speaker-level normalisation of prosodic features is the standard remedy in speech emotion
recognition (e.g. Busso et al., 2013, "Iterative feature normalization"). Here it is done causally
and per conversation, so it works live: the reference is the mean of the speaker's *earlier* turns
in this conversation only, kept as running sums (constant memory, whatever the length), written
while the conversation is read and dropped after it, like the test-time memories.

A mark is one of five bins of (this turn - the speaker's mean so far), in natural units with fixed
edges (semitones, dB, log tempo ratio), or "unknown" when the speaker has no earlier measurable turn
or this turn's value cannot be measured (too short, unvoiced). Fixed edges, not ones fitted to a
corpus: they are about the smallest steps listeners and the acoustic literature treat as a change
(~1 semitone, ~1 dB, ~5% tempo) and about three times that, so they carry to any speaker or
language. Speaker identity comes from the manifest, a diarisation, or the live client; without
one, the whole conversation is one reference (still removes the recording's level and the
conversation's habitual pitch).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np

# What is compared, in this order (convmem.audio.prosody.FEATURES, tempo as log syllable rate).
MARK_FEATURES: tuple[str, ...] = ("pitch", "range", "level", "tempo")
# Bin edges of (turn - speaker's mean of earlier turns): semitones, semitones, dB, log ratio.
MARK_EDGES: tuple[tuple[float, ...], ...] = (
    (-2.0, -0.75, 0.75, 2.0),
    (-2.5, -1.0, 1.0, 2.5),
    (-3.0, -1.0, 1.0, 3.0),
    (-0.12, -0.04, 0.04, 0.12),
)
N_BINS = len(MARK_EDGES[0]) + 1  # much lower, lower, about the same, higher, much higher
UNKNOWN = N_BINS  # bin index of "no reference yet / not measurable"
MARKS_PER_TURN = len(MARK_FEATURES)
N_MARK_TOKENS = MARKS_PER_TURN * (N_BINS + 1)


def mark_token(feature: int, bin_index: int) -> str:
    """Token string of bin `bin_index` (0..N_BINS, N_BINS = unknown) of feature `feature`."""
    name = "unk" if bin_index == UNKNOWN else str(bin_index - N_BINS // 2)
    return f"<pm_{MARK_FEATURES[feature]}_{name}>"


def turn_prosody(wave: np.ndarray, sample_rate: int = 16000) -> np.ndarray:
    """float64[4]: mean F0 (semitones re 100 Hz), F0 range (semitones), level (dB), log syllable
    rate of one turn float32[samples]; NaN where it cannot be measured (shorter than 50 ms,
    nothing voiced, no syllable found)."""
    from convmem.audio.prosody import utterance_prosody
    from convmem.errors import AudioError

    try:
        pitch, spread, level, rate = utterance_prosody(wave, sample_rate).as_array()
    except AudioError:
        return np.full(MARKS_PER_TURN, np.nan)
    tempo = np.log(rate) if rate > 0 else np.nan
    return np.array([pitch, spread, level, tempo], dtype=np.float64)


class SpeakerProsodyReference:
    """Per-conversation state: each speaker's running sums of their turns' prosody.

    `mark(speaker, prosody)` gives this turn's marks against the speaker's earlier turns, then adds
    the turn to the speaker's reference. `speaker=None` is one shared speaker (no diarisation).
    """

    def __init__(self) -> None:
        self._sums: dict[Hashable, np.ndarray] = {}
        self._counts: dict[Hashable, np.ndarray] = {}

    def mark(self, speaker: Hashable | None, prosody: np.ndarray) -> np.ndarray:
        """prosody float64[4] (`turn_prosody`) -> int64[4] bins in [0, N_BINS] (N_BINS = unknown)."""
        prosody = np.asarray(prosody, dtype=np.float64)
        if prosody.shape != (MARKS_PER_TURN,):
            raise ValueError(f"turn prosody must have shape ({MARKS_PER_TURN},), got {prosody.shape}")
        sums = self._sums.setdefault(speaker, np.zeros(MARKS_PER_TURN))
        counts = self._counts.setdefault(speaker, np.zeros(MARKS_PER_TURN))
        known = np.isfinite(prosody)
        out = np.full(MARKS_PER_TURN, UNKNOWN, dtype=np.int64)
        for f in np.flatnonzero(known & (counts > 0)):
            out[f] = np.searchsorted(MARK_EDGES[f], prosody[f] - sums[f] / counts[f])
        sums[known] += prosody[known]
        counts[known] += 1
        return out


def conversation_marks(speakers: Sequence[Hashable | None], prosody: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Marks of every turn of one conversation, in order: [int64[4]] (see `SpeakerProsodyReference`)."""
    if len(speakers) != len(prosody):
        raise ValueError(f"{len(speakers)} speakers but {len(prosody)} turns of prosody")
    ref = SpeakerProsodyReference()
    return [ref.mark(s, p) for s, p in zip(speakers, prosody)]

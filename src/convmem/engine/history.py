"""How many tokens of its conversation came before an utterance: the figure every report buckets by.

The engine counts its history with `history_added` (ConversationEngine.step reports the count per
utterance); `history_counts` gives the same figure without running an engine (the majority row,
gold utterances of a VAD run), and `long_context` is the flag derived from it. Numpy only, so
scoring code can use it without importing torch.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def history_added(utterance_tokens: int, emotion_token: bool) -> int:
    """Tokens one utterance adds to its conversation's history: its own ids, `<audio_end>`, and the
    emotion token written back after it (`emotion_token`). The engine counts its history with this."""
    return int(utterance_tokens) + 1 + int(bool(emotion_token))


def history_counts(utterance_tokens: Sequence[int], emotion_token: bool) -> np.ndarray:
    """int64[U]: tokens of the conversation before each of its U utterances, as the engine reports
    them in `DialogueResult.history_tokens`, for utterances of `utterance_tokens[i]` ids when every
    (`emotion_token`) or no utterance has an emotion token written back — for callers that need the
    figure without running the engine (the majority row, gold rows of a VAD run)."""
    added = np.array([history_added(n, emotion_token) for n in utterance_tokens], np.int64)
    return np.concatenate([np.zeros(1, np.int64), np.cumsum(added)[:-1]]) if added.size else added


def long_context(history_tokens, utterance_tokens, n_limit: int):
    """bool (or bool[U] for arrays): the utterance with its `<audio_end>` does not fit in `n_limit`
    tokens beside its whole history, i.e. a window model had to drop part of the conversation."""
    return history_tokens + utterance_tokens + 1 > n_limit

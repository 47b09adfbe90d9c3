"""Stream conversations through a test-time memory, B conversations at a time.

Like nanochat's engine, this knows nothing about audio, files or label names: a conversation is a
sequence of utterances given as vocabulary ids of their audio codes (int64[n], or an
`UtteranceInput`: the ids plus, for a model that reads continuous frames, float32[n, D] frames
aligned with them, carried through the history into `WindowBatch.frames`), and a memory
(memory/base.py) does the model work. Rows of a batch start and finish independently: when a
conversation ends its row is reset and the next waiting conversation starts there.

Honesty: the engine never receives gold labels. The emotion token written after each utterance's
`<audio_end>` is the model's own prediction (`emotion_tokens="predicted"`, default) or nothing
(`"none"`). `"oracle"` exists only for leakage analysis and needs labels passed explicitly.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch

from convmem.memory.base import Memory, WindowBatch
from convmem.slm.audio_embedding import UtteranceInput, as_input

EMOTION_TOKEN_MODES = ("predicted", "none", "oracle")


@dataclass
class DialogueResult:
    """Per-utterance outputs of one conversation (U utterances, E emotions).

    logits: float32[U, E]; write_loss: float32[U] (NaN where no write); history_tokens: int64[U]
    (tokens of the whole conversation before the utterance, whatever the window held);
    window_tokens: int64[U] (tokens the read window actually held); truncated: bool[U] (the
    utterance itself did not fit the model and lost its start).
    """

    logits: np.ndarray
    write_loss: np.ndarray
    history_tokens: np.ndarray
    window_tokens: np.ndarray
    truncated: np.ndarray

    @property
    def predictions(self) -> np.ndarray:
        return self.logits.argmax(-1)


@dataclass
class _Row:
    conv: int  # index into the input list
    keep: int  # history tokens worth keeping (bounds memory for any dialogue length)
    pos: int = 0
    history: deque = field(default_factory=deque)  # UtteranceInput pieces, oldest first
    history_len: int = 0  # tokens currently held in `history`
    seen_tokens: int = 0  # tokens of the whole conversation so far
    outputs: dict = field(default_factory=lambda: {k: [] for k in ("logits", "loss", "hist", "win", "trunc")})


class ConversationEngine:
    """Drive `memory` over conversations.

    Args:
        memory: a Memory (memory/base.py).
        audio_end_id: vocabulary id of `<audio_end>`.
        emotion_ids: vocabulary ids of the emotion tokens, in label order (E of them).
        n_limit: the model's context window in tokens.
        emotion_tokens: "predicted" | "none" | "oracle" (leakage analysis only).
    """

    def __init__(self, memory: Memory, audio_end_id: int, emotion_ids: Sequence[int], n_limit: int,
                 emotion_tokens: str = "predicted"):
        if emotion_tokens not in EMOTION_TOKEN_MODES:
            raise ValueError(f"emotion_tokens must be one of {EMOTION_TOKEN_MODES}, got {emotion_tokens!r}")
        self.memory = memory
        self.audio_end_id = int(audio_end_id)
        self.emotion_ids = tuple(int(i) for i in emotion_ids)
        self.n_limit = int(n_limit)
        self.emotion_tokens = emotion_tokens

    def run(
        self,
        conversations: Sequence[Sequence[torch.Tensor | UtteranceInput]],
        keys: Sequence[str] | None = None,
        batch_size: int = 1,
        oracle_labels: Sequence[Sequence[int | None]] | None = None,
        on_utterance: Callable[[int, int, np.ndarray], None] | None = None,
    ) -> list[DialogueResult]:
        """Predict every utterance of every conversation in one streaming pass each.

        Args:
            conversations: per conversation, per utterance int64[n] vocabulary ids of its audio codes,
                or an UtteranceInput (ids + aligned frames, for a model that reads frames).
            keys: one stable key per conversation (e.g. dialogue id) that seeds its fresh memory.
            batch_size: conversations processed side by side (rows).
            oracle_labels: label index per utterance; only with emotion_tokens="oracle".
            on_utterance: called as (conversation index, utterance index, logits float32[E]) as soon
                as an utterance is read (live use, progress bars).
        Returns: one DialogueResult per conversation, in input order.
        """
        if (self.emotion_tokens == "oracle") != (oracle_labels is not None):
            raise ValueError("oracle_labels are required by, and only allowed with, emotion_tokens='oracle'")
        keys = list(keys) if keys is not None else [str(i) for i in range(len(conversations))]
        conversations = [[as_input(u) for u in c] for c in conversations]
        waiting = deque(i for i, c in enumerate(conversations) if len(c) > 0)
        results: dict[int, DialogueResult] = {
            i: _empty_result(len(self.emotion_ids)) for i, c in enumerate(conversations) if len(c) == 0
        }
        batch_size = max(1, min(batch_size, len(waiting) or 1))
        state = self.memory.init(batch_size)
        rows: list[_Row | None] = [None] * batch_size
        keep = self._history_to_keep()

        def refill() -> None:
            nonlocal state
            fresh = []
            for r in range(batch_size):
                if rows[r] is None and waiting:
                    rows[r] = _Row(conv=waiting.popleft(), keep=keep)
                    fresh.append(r)
            if fresh:
                state = self.memory.reset(state, fresh, [keys[rows[r].conv] for r in fresh])

        refill()
        while any(r is not None for r in rows):
            batch = self._make_batch(rows, conversations)
            state, loss = self.memory.write(state, batch)
            logits = self.memory.read(state, batch).detach().float().cpu()
            loss = loss.detach().float().cpu()
            for r, row in enumerate(rows):
                if row is None:
                    continue
                utt = conversations[row.conv][row.pos]
                lg = logits[r].numpy().copy()
                out = row.outputs
                out["logits"].append(lg)
                out["loss"].append(float(loss[r]))
                out["hist"].append(row.seen_tokens)
                out["win"].append(int(batch.attention_mask[r].sum()))
                out["trunc"].append(bool(self._truncated[r]))
                if on_utterance is not None:
                    on_utterance(row.conv, row.pos, lg)
                label = None
                if self.emotion_tokens == "predicted":
                    label = int(lg.argmax())
                elif self.emotion_tokens == "oracle":
                    label = oracle_labels[row.conv][row.pos]
                self._append_history(row, utt, label)
                row.pos += 1
                if row.pos == len(conversations[row.conv]):
                    results[row.conv] = _finish(row)
                    rows[r] = None
            refill()
        return [results[i] for i in range(len(conversations))]

    def run_per_sample(self, conversations, keys=None, oracle_labels=None) -> list[DialogueResult]:
        """The paper's per-sample protocol: utterance k of a conversation is predicted by a fresh
        memory run over utterances 1..k. Quadratic in dialogue length; kept to reproduce the
        paper's cost and to check the streaming pass against it."""
        keys = list(keys) if keys is not None else [str(i) for i in range(len(conversations))]
        out = []
        for c, conv in enumerate(conversations):
            parts = []
            for k in range(1, len(conv) + 1):
                labels = [oracle_labels[c][:k]] if oracle_labels is not None else None
                parts.append(self.run([conv[:k]], keys=[keys[c]], oracle_labels=labels)[0])
            out.append(DialogueResult(
                logits=np.stack([p.logits[-1] for p in parts]) if parts else np.zeros((0, len(self.emotion_ids)), np.float32),
                write_loss=np.array([p.write_loss[-1] for p in parts], np.float32),
                history_tokens=np.array([p.history_tokens[-1] for p in parts], np.int64),
                window_tokens=np.array([p.window_tokens[-1] for p in parts], np.int64),
                truncated=np.array([p.truncated[-1] for p in parts], bool),
            ))
        return out

    def open(self, key: str = "0") -> "LiveConversation":
        """A single conversation fed one utterance at a time (live use: `convmem serve`, predict)."""
        return LiveConversation(self, key)

    # -- internals ---------------------------------------------------------------------------

    def _history_to_keep(self) -> int:
        h = self.memory.history_tokens
        return self.n_limit if h is None else int(h)

    def _append_history(self, row: _Row, utt: UtteranceInput, label: int | None) -> None:
        tail = [self.audio_end_id] + ([self.emotion_ids[label]] if label is not None else [])
        piece = _extend(utt, tail)
        row.history.append(piece)
        row.history_len += len(piece)
        row.seen_tokens += len(piece)
        # keep only what a future window can use: constant memory for any dialogue length
        while row.history and row.history_len - len(row.history[0]) >= row.keep:
            row.history_len -= len(row.history.popleft())

    def _window(self, row: _Row, utt: UtteranceInput) -> tuple[UtteranceInput, int, bool]:
        """(window: ids int64[T] [+ frames], number of utterance tokens in it, utterance truncated?)."""
        own = _extend(utt, [self.audio_end_id])
        h = self.memory.history_tokens
        max_window = getattr(self.memory, "max_window", None)
        budget = self.n_limit - len(own) if h is None else int(h)
        if max_window is not None:
            budget = min(budget, max_window - len(own))
        budget = max(0, budget)
        hist = _concat(list(row.history)) if row.history else _slice(own, 0, 0)
        prefix = _slice(hist, len(hist) - min(budget, len(hist)), len(hist))
        truncated = False
        if max_window is not None and len(own) > max_window:
            own, truncated = _slice(own, len(own) - max_window, len(own)), True
        return _concat([prefix, own]), len(own), truncated

    def _make_batch(self, rows: list[_Row | None], conversations) -> WindowBatch:
        windows, n_own, first, active = [], [], [], []
        self._truncated = []
        for row in rows:
            if row is None:
                windows.append(None)
                n_own.append(1)
                first.append(False)
                active.append(False)
                self._truncated.append(False)
                continue
            ids, own, trunc = self._window(row, conversations[row.conv][row.pos])
            windows.append(ids)
            n_own.append(own)
            first.append(row.pos == 0)
            active.append(True)
            self._truncated.append(trunc)
        real = [w for w in windows if w is not None]
        with_frames = {w.frames is not None for w in real}
        if len(with_frames) > 1:
            raise ValueError("some conversations of a batch carry frames and some do not")
        dim = real[0].frames.shape[1] if with_frames == {True} else None
        idle = UtteranceInput(torch.tensor([self.audio_end_id], dtype=torch.long),
                              None if dim is None else torch.zeros(1, dim))
        windows = [idle if w is None else w for w in windows]
        T = max(len(w) for w in windows)
        B = len(windows)
        input_ids = torch.full((B, T), self.audio_end_id, dtype=torch.long)
        attention = torch.zeros((B, T), dtype=torch.long)
        target = torch.zeros((B, T), dtype=torch.bool)
        frames = None if dim is None else torch.zeros((B, T, dim), dtype=torch.float32)
        for b, (w, own) in enumerate(zip(windows, n_own)):
            input_ids[b, T - len(w):] = w.ids
            attention[b, T - len(w):] = 1
            target[b, T - own:] = True
            if frames is not None:
                frames[b, T - len(w):] = w.frames
        return WindowBatch(
            input_ids=input_ids,
            attention_mask=attention,
            target_mask=target & torch.tensor(active).unsqueeze(1),
            end_pos=torch.full((B,), T - 1, dtype=torch.long),
            active=torch.tensor(active),
            first=torch.tensor(first),
            frames=frames,
        )


class LiveConversation:
    """One conversation with its own memory state, advanced by `push` as utterances arrive.

    Pushing utterances 1..k gives exactly what `ConversationEngine.run` gives for them: the same
    window building, memory calls and emotion-token policy (tested).
    """

    def __init__(self, engine: ConversationEngine, key: str):
        if engine.emotion_tokens == "oracle":
            raise ValueError("a live conversation has no labels: emotion_tokens='oracle' is not possible")
        self.engine = engine
        self._row = _Row(conv=0, keep=engine._history_to_keep())
        self._state = engine.memory.reset(engine.memory.init(1), [0], [key])
        self.closed = False

    @property
    def utterances(self) -> int:
        return self._row.pos

    def push(self, audio_ids: torch.Tensor | UtteranceInput) -> tuple[np.ndarray, float]:
        """Read utterance int64[n] (vocab ids) or an UtteranceInput; returns (emotion logits
        float32[E], write loss or NaN)."""
        if self.closed:
            raise RuntimeError("conversation is closed")
        audio_ids = as_input(audio_ids)
        eng, row = self.engine, self._row
        batch = eng._make_batch([row], _OneUtterance(row.pos, audio_ids))
        self._state, loss = eng.memory.write(self._state, batch)
        logits = eng.memory.read(self._state, batch).detach().float().cpu()[0].numpy().copy()
        label = int(logits.argmax()) if eng.emotion_tokens == "predicted" else None
        eng._append_history(row, audio_ids, label)
        row.pos += 1
        return logits, float(loss.detach().float().cpu()[0])

    def close(self) -> None:
        """Drop the memory: nothing of this conversation is kept."""
        self._state = None
        self._row = None
        self.closed = True


class _OneUtterance:
    """Index adapter so `_make_batch` can read `conversations[row.conv][row.pos]` for a live row."""

    def __init__(self, pos: int, ids: UtteranceInput):
        self.pos, self.ids = pos, ids

    def __getitem__(self, conv: int):
        return {self.pos: self.ids}


def _extend(utt: UtteranceInput, tail: list[int]) -> UtteranceInput:
    """`utt` followed by the non-audio ids `tail` (zero frames there)."""
    ids = torch.cat([utt.ids.long().cpu(), torch.tensor(tail, dtype=torch.long)])
    if utt.frames is None:
        return UtteranceInput(ids)
    f = utt.frames.float().cpu()
    return UtteranceInput(ids, torch.cat([f, f.new_zeros(len(tail), f.shape[1])]))


def _concat(pieces: list[UtteranceInput]) -> UtteranceInput:
    ids = torch.cat([p.ids for p in pieces])
    return UtteranceInput(ids, None if pieces[0].frames is None else torch.cat([p.frames for p in pieces]))


def _slice(x: UtteranceInput, start: int, end: int) -> UtteranceInput:
    return UtteranceInput(x.ids[start:end], None if x.frames is None else x.frames[start:end])


def _finish(row: _Row) -> DialogueResult:
    o = row.outputs
    return DialogueResult(
        logits=np.stack(o["logits"]).astype(np.float32),
        write_loss=np.array(o["loss"], np.float32),
        history_tokens=np.array(o["hist"], np.int64),
        window_tokens=np.array(o["win"], np.int64),
        truncated=np.array(o["trunc"], bool),
    )


def _empty_result(n_emotions: int) -> DialogueResult:
    return DialogueResult(np.zeros((0, n_emotions), np.float32), np.zeros(0, np.float32),
                          np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, bool))

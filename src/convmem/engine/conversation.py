"""Stream conversations through a test-time memory, B conversations at a time.

Like nanochat's engine, this knows nothing about audio, files or label names: a conversation is a
sequence of utterances given as vocabulary ids of their audio codes (int64[n], or an
`UtteranceInput`: the ids plus, for a model that reads continuous frames, float32[n, D] frames
aligned with them, carried through the history into `WindowBatch.frames`), and a memory
(memory/base.py) does the model work. Rows of a batch start and finish independently: when a
conversation ends its row is reset and the next waiting conversation starts there.

One step (`ConversationEngine.step`: each row's next utterance -> one memory write and read ->
per-row logits, write loss, history and window token counts) serves both the batched `run`
(evaluation) and `LiveConversation.push` (predict, serve). The history-token count is the engine's
(engine/history.py); a caller that needs it without running the engine uses `history_counts` there.

Honesty: the engine never receives gold labels. The emotion token written after each utterance's
`<audio_end>` is the model's own prediction (`emotion_tokens="predicted"`, default) or nothing
(`"none"`). `"oracle"` exists only for leakage analysis and needs labels passed explicitly.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Callable, NamedTuple, Sequence

import numpy as np
import torch

from convmem.engine.history import history_added
from convmem.memory.base import Memory, WindowBatch
from convmem.slm.audio_embedding import UtteranceInput, as_input

EMOTION_TOKEN_MODES = ("predicted", "none", "oracle")


@dataclass
class DialogueResult:
    """Per-utterance outputs of one conversation (U utterances, E emotions).

    logits: float32[U, E]; write_loss: float32[U] (NaN where no write); history_tokens: int64[U]
    (tokens of the whole conversation before the utterance, whatever the window held: the figure
    every report buckets by, `history_counts`);
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


class UtteranceStep(NamedTuple):
    """What one engine step gives for one utterance of one conversation (E emotions).

    logits: float32[E]; write_loss: the memory's write loss (NaN where it wrote nothing);
    history_tokens: tokens of the whole conversation before the utterance (`history_counts`);
    window_tokens: tokens the read window actually held; truncated: the utterance itself did not
    fit the model and lost its start.
    """

    logits: np.ndarray
    write_loss: float
    history_tokens: int
    window_tokens: int
    truncated: bool


@dataclass
class Cursor:
    """Where one conversation stands between steps: the utterance it reads next and the part of its
    history a future window can still use (bounded by `keep`, so memory is constant for any length)."""

    keep: int  # history tokens worth keeping
    pos: int = 0  # utterances read so far
    history: deque = field(default_factory=deque)  # UtteranceInput pieces, oldest first
    history_len: int = 0  # tokens currently held in `history`
    seen_tokens: int = 0  # tokens of the whole conversation so far
    # the model's probability of the emotion token last written back (its confidence), or None when
    # the last utterance got no emotion token: the weight a write that supervises it may give it
    last_confidence: float | None = None


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
        # per row: (conversation index, its cursor, its steps so far), or None while idle
        rows: list[tuple[int, Cursor, list[UtteranceStep]] | None] = [None] * batch_size

        def refill() -> None:
            nonlocal state
            fresh = []
            for r in range(batch_size):
                if rows[r] is None and waiting:
                    rows[r] = (waiting.popleft(), self.cursor(), [])
                    fresh.append(r)
            if fresh:
                state = self.memory.reset(state, fresh, [keys[rows[r][0]] for r in fresh])

        refill()
        while any(r is not None for r in rows):
            cursors = [None if row is None else row[1] for row in rows]
            utterances = [None if row is None else conversations[row[0]][row[1].pos] for row in rows]
            labels = None
            if oracle_labels is not None:
                labels = [None if row is None else oracle_labels[row[0]][row[1].pos] for row in rows]
            state, steps = self.step(state, cursors, utterances, labels)
            for r, row in enumerate(rows):
                if row is None:
                    continue
                conv, cursor, done = row
                done.append(steps[r])
                if on_utterance is not None:
                    on_utterance(conv, cursor.pos - 1, steps[r].logits)
                if cursor.pos == len(conversations[conv]):
                    results[conv] = _finish(done)
                    rows[r] = None
            refill()
        return [results[i] for i in range(len(conversations))]

    def cursor(self) -> Cursor:
        """A fresh conversation's cursor (its memory row is started with `memory.reset`)."""
        h = self.memory.history_tokens
        return Cursor(keep=self.n_limit if h is None else int(h))

    def step(self, state, cursors: Sequence[Cursor | None], utterances: Sequence[UtteranceInput | None],
             labels: Sequence[int | None] | None = None) -> tuple[object, list[UtteranceStep | None]]:
        """Advance each conversation of the batch by its next utterance: one memory write and read.

        The one step of both the batched `run` and `LiveConversation.push`.

        Args:
            state: the memory's state for B rows.
            cursors: per row the conversation's Cursor, or None for an idle row (B of them).
            utterances: per row its next utterance, int64[n] ids or an UtteranceInput (None when idle).
            labels: per row the label index written back after the utterance; only with
                emotion_tokens="oracle" (None there: no emotion token).
        Returns: (new state, per row its UtteranceStep or None when idle). Each cursor has moved
            past its utterance, whose ids, `<audio_end>` and emotion token (the model's own
            prediction, the oracle label, or none) are now in its history.
        """
        if (self.emotion_tokens == "oracle") != (labels is not None):
            raise ValueError("labels are required by, and only allowed with, emotion_tokens='oracle'")
        utterances = [None if u is None else as_input(u) for u in utterances]
        batch, truncated = self._make_batch(cursors, utterances)
        state, loss = self.memory.write(state, batch)
        logits = self.memory.read(state, batch).detach().float().cpu()
        loss = loss.detach().float().cpu()
        steps: list[UtteranceStep | None] = []
        for r, cursor in enumerate(cursors):
            if cursor is None:
                steps.append(None)
                continue
            lg = logits[r].numpy().copy()
            steps.append(UtteranceStep(lg, float(loss[r]), cursor.seen_tokens,
                                       int(batch.attention_mask[r].sum()), truncated[r]))
            label = confidence = None
            if self.emotion_tokens == "predicted":
                label = int(lg.argmax())
                confidence = float(torch.softmax(torch.from_numpy(lg).double(), -1)[label])
            elif self.emotion_tokens == "oracle":
                label, confidence = labels[r], 1.0
            self._append_history(cursor, utterances[r], label)
            cursor.last_confidence = None if label is None else confidence
            cursor.pos += 1
        return state, steps

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

    def _append_history(self, cursor: Cursor, utt: UtteranceInput, label: int | None) -> None:
        tail = [self.audio_end_id] + ([self.emotion_ids[label]] if label is not None else [])
        piece = _extend(utt, tail)
        cursor.history.append(piece)
        cursor.history_len += len(piece)
        cursor.seen_tokens += history_added(len(utt), label is not None)
        # keep only what a future window can use: constant memory for any dialogue length
        while cursor.history and cursor.history_len - len(cursor.history[0]) >= cursor.keep:
            cursor.history_len -= len(cursor.history.popleft())

    def _window(self, cursor: Cursor, utt: UtteranceInput) -> tuple[UtteranceInput, int, bool]:
        """(window: ids int64[T] [+ frames], number of utterance tokens in it, utterance truncated?)."""
        own = _extend(utt, [self.audio_end_id])
        h = self.memory.history_tokens
        max_window = getattr(self.memory, "max_window", None)
        budget = self.n_limit - len(own) if h is None else int(h)
        if max_window is not None:
            budget = min(budget, max_window - len(own))
        budget = max(0, budget)
        hist = _concat(list(cursor.history)) if cursor.history else _slice(own, 0, 0)
        prefix = _slice(hist, len(hist) - min(budget, len(hist)), len(hist))
        truncated = False
        if max_window is not None and len(own) > max_window:
            own, truncated = _slice(own, len(own) - max_window, len(own)), True
        return _concat([prefix, own]), len(own), truncated

    def _make_batch(self, cursors: Sequence[Cursor | None],
                    utterances: Sequence[UtteranceInput | None]) -> tuple[WindowBatch, list[bool]]:
        """(the B rows' windows as one WindowBatch, per row: its utterance truncated?)."""
        windows, n_own, first, active, truncated, weights = [], [], [], [], [], []
        for cursor, utt in zip(cursors, utterances):
            if cursor is None:
                windows.append(None)
                n_own.append(1)
                first.append(False)
                active.append(False)
                truncated.append(False)
                weights.append(0.0)
                continue
            ids, own, trunc = self._window(cursor, utt)
            windows.append(ids)
            n_own.append(own)
            first.append(cursor.pos == 0)
            active.append(True)
            truncated.append(trunc)
            # the previous utterance's emotion token, when it is the token just before this one's
            has_token = (cursor.last_confidence is not None and len(ids) > own
                         and int(ids.ids[len(ids) - own - 1]) in self.emotion_ids)
            weights.append(cursor.last_confidence if has_token else 0.0)
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
        emotion_weight = torch.zeros((B, T), dtype=torch.float32)
        for b, (w, own) in enumerate(zip(windows, n_own)):
            input_ids[b, T - len(w):] = w.ids
            attention[b, T - len(w):] = 1
            target[b, T - own:] = True
            if weights[b] > 0:
                emotion_weight[b, T - own - 1] = weights[b]
            if frames is not None:
                frames[b, T - len(w):] = w.frames
        batch = WindowBatch(
            input_ids=input_ids,
            attention_mask=attention,
            target_mask=target & torch.tensor(active).unsqueeze(1),
            end_pos=torch.full((B,), T - 1, dtype=torch.long),
            active=torch.tensor(active),
            first=torch.tensor(first),
            frames=frames,
            speakers=tuple(None if u is None else u.speaker for u in utterances),
            emotion_weight=emotion_weight,
        )
        return batch, truncated


class LiveConversation:
    """One conversation with its own memory state, advanced by `push` as utterances arrive.

    `push` is `ConversationEngine.step` on a batch of one row, so pushing utterances 1..k gives
    exactly what `ConversationEngine.run` gives for them (tested).
    """

    def __init__(self, engine: ConversationEngine, key: str):
        if engine.emotion_tokens == "oracle":
            raise ValueError("a live conversation has no labels: emotion_tokens='oracle' is not possible")
        self.engine = engine
        self._cursor = engine.cursor()
        self._state = engine.memory.reset(engine.memory.init(1), [0], [key])
        self.closed = False

    @property
    def utterances(self) -> int:
        return self._cursor.pos

    @property
    def history_tokens(self) -> int:
        """Tokens of the conversation so far (what the next utterance's `history_tokens` will be)."""
        return self._cursor.seen_tokens

    def push(self, audio_ids: torch.Tensor | UtteranceInput) -> UtteranceStep:
        """Read utterance int64[n] (vocab ids) or an UtteranceInput; returns its UtteranceStep
        (emotion logits float32[E] first, then write loss or NaN, history and window tokens,
        truncated)."""
        if self.closed:
            raise RuntimeError("conversation is closed")
        self._state, (step,) = self.engine.step(self._state, [self._cursor], [audio_ids])
        return step

    def close(self) -> None:
        """Drop the memory: nothing of this conversation is kept."""
        self._state = None
        self._cursor = None
        self.closed = True


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


def _finish(steps: list[UtteranceStep]) -> DialogueResult:
    return DialogueResult(
        logits=np.stack([s.logits for s in steps]).astype(np.float32),
        write_loss=np.array([s.write_loss for s in steps], np.float32),
        history_tokens=np.array([s.history_tokens for s in steps], np.int64),
        window_tokens=np.array([s.window_tokens for s in steps], np.int64),
        truncated=np.array([s.truncated for s in steps], bool),
    )


def _empty_result(n_emotions: int) -> DialogueResult:
    return DialogueResult(np.zeros((0, n_emotions), np.float32), np.zeros(0, np.float32),
                          np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, bool))

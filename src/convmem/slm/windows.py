"""Training examples cut from dialogue streams: the paper's per-utterance windows (eq. 3–6) and
the dense packed chunks.

Targets are *prediction-aligned*: `la_targets[t]` is the id the model must predict from the
logits at position t (i.e. token t+1 of the example), `le_labels[t]` the emotion class to read
from position t (an `<audio_end>`); -100 = no target. Both losses then index the same logits.

Paper objective, one utterance with `<audio_end>` at stream index T (n = T + 1 tokens of
history-and-current-utterance):
  L_a window (eq. 3–4): targets are the n_o tokens ending at `<audio_end>`, context the n_p tokens
      before them; when the history is short, eq. 4 shrinks n_p first (n_o <= n < n_o + n_p:
      n_p = n - n_o), then n_o (n < n_o: n_p = 0, n_o = n). With n_p = 0 the first target has no
      context at all; a causal LM cannot predict its first input, so that one target is dropped.
  L_e window (eq. 5–6): the n_q tokens ending at `<audio_end>` (n_q = n when n < n_q); the
      emotion is read from the logits at `<audio_end>`.
  When both windows start at the same index (the default n_q = n_o + n_p), one forward serves both.

Emotion tokens are inputs (gold in training) but never L_a targets: they are supervised only by
L_e with logits restricted to the emotion ids (eq. 5). Counting them in L_a as well would train
the full-vocabulary softmax to emit emotion tokens after `<audio_end>`, which no reader uses.
Every utterance gets an L_a example; only scored utterances get L_e.

Dense objective: the stream is cut into chunks of at most n_limit tokens at utterance boundaries
(an utterance is `audio… <audio_end> [<emo>]`; one longer than n_limit is split into n_limit pieces
with the last piece ending at its `<audio_end>`). Every next token except emotion tokens is an L_a
target and every scored `<audio_end>` an L_e target, so the utterance at `<audio_end>` sees all
history before it inside the chunk — the in-context history of the `window` memory baseline.

History-free examples (`history_free=True`, either objective; not in the paper): one more example
per scored utterance holding only `audio… <audio_end>` (its last n_limit tokens), with the same
L_a and L_e targets. Without them nearly every training utterance has history, while the `none`
baseline (and the first turn of every dialogue) reads one utterance alone. On the synthetic corpus
they raised `none` UA by 4 and `window` WA by 3 points (docs/experiments/slm-synthetic-loso.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import torch

from convmem.slm.stream import Stream
from convmem.slm.vocab import EmotionVocab

IGNORE = -100


@dataclass(frozen=True)
class WindowConfig:
    """Window sizes of the paper objective, in tokens.

    Defaults for n_limit = 1024 (the paper does not give its values): n_q = n_o + n_p = n_limit so
    one forward pass serves L_a and L_e and the model trains with the longest history its
    window allows; n_o = 256 (~10 s at 25 Hz) covers a typical utterance (IEMOCAP mean ~4.5 s)
    and its `<audio_end>`, n_p = 768 gives that prediction a long prefix.
    """

    n_o: int = 256
    n_p: int = 768
    n_q: int = 1024

    def check(self, n_limit: int) -> None:
        if self.n_o < 1 or self.n_p < 0 or self.n_q < 1:
            raise ValueError(f"windows need n_o >= 1, n_p >= 0, n_q >= 1; got {self}")
        if self.n_o + self.n_p > n_limit or self.n_q > n_limit:
            raise ValueError(f"windows exceed the model's n_limit {n_limit}: n_o + n_p = "
                             f"{self.n_o + self.n_p}, n_q = {self.n_q}")


@dataclass
class Example:
    """One training sequence.

    Attributes:
        ids:        int64[L] input ids.
        la_targets: int64[L] id to predict from each position (L_a), IGNORE elsewhere.
        le_labels:  int64[L] emotion class to read at each position (L_e), IGNORE elsewhere.
        frames:     float32[L, D] continuous frames aligned with `ids` (a frames model), or None.
    """

    ids: torch.Tensor
    la_targets: torch.Tensor
    le_labels: torch.Tensor
    frames: torch.Tensor | None = None

    @property
    def n_keep(self) -> int:
        """How many trailing positions hold every target (logits needed only there)."""
        has = (self.la_targets != IGNORE) | (self.le_labels != IGNORE)
        idx = torch.nonzero(has).flatten()
        return int(len(self.ids) - idx[0]) if len(idx) else 0


def audio_window(T: int, n_o: int, n_p: int) -> tuple[int, int]:
    """Eq. 3–4: (start of the window, first target index) for `<audio_end>` at stream index T.

    The window is stream[start : T+1]; targets are stream[first : T+1] (n_o of them, or n when the
    history is shorter), context stream[start : first] (n_p, shrunk per eq. 4).
    """
    n = T + 1
    first = max(0, n - n_o)
    return max(0, first - n_p), first


def emotion_window(T: int, n_q: int) -> int:
    """Eq. 6: start of the L_e window for `<audio_end>` at stream index T (n_q = n when n < n_q)."""
    return max(0, T + 1 - n_q)


def _la_targets(ids: torch.Tensor, first_target: int, emo_ids: torch.Tensor) -> torch.Tensor:
    """Prediction-aligned L_a targets for tokens at indices >= first_target (>= 1) of `ids`."""
    tgt = torch.full_like(ids, IGNORE)
    first_target = max(first_target, 1)
    nxt = ids[first_target:]
    tgt[first_target - 1:-1] = torch.where(torch.isin(nxt, emo_ids), IGNORE, nxt)
    return tgt


def _frames(stream: Stream, start: int, end: int) -> torch.Tensor | None:
    """The stream's frames for ids[start:end] (a view), or None for a codes stream."""
    return None if stream.frames is None else stream.frames[start:end]


def paper_examples(stream: Stream, vocab: EmotionVocab, w: WindowConfig) -> list[Example]:
    """Eq. 3–6 windows of every utterance of `stream` (see module doc)."""
    emo_ids = torch.tensor(vocab.emotion_ids)
    out: list[Example] = []
    for u in range(stream.n_utterances):
        T = int(stream.audio_end_pos[u])
        a_start, a_first = audio_window(T, w.n_o, w.n_p)
        lab = int(stream.labels[u])
        ids = stream.ids[a_start:T + 1]
        la = _la_targets(ids, a_first - a_start, emo_ids)
        le = torch.full_like(ids, IGNORE)
        q_start = emotion_window(T, w.n_q)
        if lab >= 0 and q_start == a_start:
            le[-1] = lab
        out.append(Example(ids, la, le, _frames(stream, a_start, T + 1)))
        if lab >= 0 and q_start != a_start:
            q_ids = stream.ids[q_start:T + 1]
            q_le = torch.full_like(q_ids, IGNORE)
            q_le[-1] = lab
            out.append(Example(q_ids, torch.full_like(q_ids, IGNORE), q_le, _frames(stream, q_start, T + 1)))
    return [e for e in out if e.n_keep > 0]


def chunk_bounds(stream: Stream, n_limit: int) -> list[tuple[int, int]]:
    """Dense chunks [start, end) of at most n_limit tokens, cut at utterance boundaries."""
    bounds: list[tuple[int, int]] = []
    cur_start = cur_end = 0
    for u in range(stream.n_utterances):
        s, e = int(stream.utt_start[u]), stream.utterance_end(u)
        if e - cur_start <= n_limit:
            cur_end = e
            continue
        if cur_end > cur_start:
            bounds.append((cur_start, cur_end))
        if e - s <= n_limit:
            cur_start, cur_end = s, e
            continue
        # An utterance longer than the window: pieces of n_limit, the last one ending at its end.
        head = (e - s) % n_limit
        if head:
            bounds.append((s, s + head))
        bounds.extend((p, p + n_limit) for p in range(s + head, e - n_limit, n_limit))
        cur_start, cur_end = e - n_limit, e
    if cur_end > cur_start:
        bounds.append((cur_start, cur_end))
    return bounds


def dense_examples(stream: Stream, vocab: EmotionVocab, n_limit: int) -> list[Example]:
    """Packed chunks: every non-emotion next token an L_a target, every scored `<audio_end>` an
    L_e target (see module doc)."""
    emo_ids = torch.tensor(vocab.emotion_ids)
    scored = stream.labels >= 0
    out = []
    for s, e in chunk_bounds(stream, n_limit):
        ids = stream.ids[s:e]
        le = torch.full_like(ids, IGNORE)
        pos = stream.audio_end_pos[scored]
        inside = (pos >= s) & (pos < e)
        le[pos[inside] - s] = stream.labels[scored][inside]
        ex = Example(ids, _la_targets(ids, 1, emo_ids), le, _frames(stream, s, e))
        if ex.n_keep > 0:
            out.append(ex)
    return out


@dataclass
class Batch:
    """Left-padded examples (the engine's WindowBatch convention).

    Attributes:
        input_ids, attention_mask, position_ids: int64[B, T]
        la_targets, le_labels: int64[B, T] (IGNORE on padding)
        n_keep: logits are needed only for the last n_keep positions (0 = all).
        frames: float32[B, T, D] (zeros on padding) for a frames model, else None.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    la_targets: torch.Tensor
    le_labels: torch.Tensor
    n_keep: int
    frames: torch.Tensor | None = None

    @property
    def n_tokens(self) -> int:
        return int(self.attention_mask.sum())

    def to(self, device) -> "Batch":
        return Batch(*(t.to(device) for t in (self.input_ids, self.attention_mask, self.position_ids,
                                               self.la_targets, self.le_labels)), self.n_keep,
                     None if self.frames is None else self.frames.to(device))


def collate(examples: Sequence[Example], pad_id: int, trim_logits: bool = True) -> Batch:
    """Left-pad `examples` into a Batch; `trim_logits` asks only for the logits that hold targets."""
    T = max(len(e.ids) for e in examples)
    B = len(examples)
    ids = torch.full((B, T), pad_id, dtype=torch.long)
    mask = torch.zeros((B, T), dtype=torch.long)
    la = torch.full((B, T), IGNORE, dtype=torch.long)
    le = torch.full((B, T), IGNORE, dtype=torch.long)
    with_frames = [e.frames is not None for e in examples]
    if any(with_frames) and not all(with_frames):
        raise ValueError("collate: some examples have frames and some do not")
    frames = torch.zeros((B, T, examples[0].frames.shape[1]), dtype=torch.float32) if all(with_frames) else None
    for b, e in enumerate(examples):
        L = len(e.ids)
        ids[b, T - L:], la[b, T - L:], le[b, T - L:] = e.ids, e.la_targets, e.le_labels
        mask[b, T - L:] = 1
        if frames is not None:
            frames[b, T - L:] = e.frames
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    keep = max(e.n_keep for e in examples) if trim_logits else 0
    return Batch(ids, mask, pos, la, le, 0 if keep >= T else keep, frames)


def history_free_examples(stream: Stream, vocab: EmotionVocab, n_limit: int) -> list[Example]:
    """One example per scored utterance with no history: `audio… <audio_end>` (at most its last
    n_limit tokens), L_a on its audio tokens, L_e at its `<audio_end>`."""
    emo_ids = torch.tensor(vocab.emotion_ids)
    out = []
    for u in torch.nonzero(stream.labels >= 0).flatten().tolist():
        end = int(stream.audio_end_pos[u])
        start = max(int(stream.utt_start[u]), end + 1 - n_limit)
        ids = stream.ids[start: end + 1]
        le = torch.full_like(ids, IGNORE)
        le[-1] = stream.labels[u]
        out.append(Example(ids, _la_targets(ids, 1, emo_ids), le, _frames(stream, start, end + 1)))
    return out


def build_examples(streams: Iterable[Stream], vocab: EmotionVocab, objective: str,
                   w: WindowConfig, n_limit: int, history_free: bool = False) -> list[Example]:
    """All training examples of `streams` for objective "paper" or "dense", plus one history-free
    example per scored utterance when `history_free` (after each stream's own examples)."""
    if objective not in ("paper", "dense"):
        raise ValueError(f"objective must be 'paper' or 'dense', got {objective!r}")
    if objective == "paper":
        w.check(n_limit)
    out: list[Example] = []
    for s in streams:
        out += paper_examples(s, vocab, w) if objective == "paper" else dense_examples(s, vocab, n_limit)
        if history_free:
            out += history_free_examples(s, vocab, n_limit)
    return out

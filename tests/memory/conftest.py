"""Fixtures for memory tests: a tiny random Llama built locally, token dialogues and a mini engine.

Token layout of the tiny vocabulary (64 ids): audio ids 0..58, `<audio_end>` 59, emotion ids 60..63.
A dialogue's stream is, per utterance, its audio ids, `<audio_end>`, then an emotion token (standing
in for the model's own earlier prediction; never a target).
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from convmem.memory.base import WindowBatch

VOCAB = 64
AUDIO_END = 59
EMOTION_IDS = (60, 61, 62, 63)
N_AUDIO = 59



@pytest.fixture
def tiny_llama():
    """Factory: a random fp32 LlamaForCausalLM (vocab 64, hidden 32, 2 layers, 2 heads, sdpa)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    def build(seed: int = 0, hidden: int = 32, layers: int = 2, heads: int = 2,
              intermediate: int = 64):
        torch.manual_seed(seed)
        cfg = LlamaConfig(vocab_size=VOCAB, hidden_size=hidden, intermediate_size=intermediate,
                          num_hidden_layers=layers, num_attention_heads=heads,
                          num_key_value_heads=heads, max_position_embeddings=512,
                          tie_word_embeddings=False, attn_implementation="sdpa")
        return LlamaForCausalLM(cfg).eval()

    return build


def random_dialogue(seed: int, n_utts: int, lengths: tuple[int, int] = (4, 12)) -> list[list[int]]:
    """n_utts utterances of random audio ids, each 'lengths' long (inclusive range, before <audio_end>)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_utts):
        n = int(torch.randint(lengths[0], lengths[1] + 1, (1,), generator=g))
        out.append(torch.randint(0, N_AUDIO, (n,), generator=g).tolist())
    return out


def utterance_window(dialogue: list[list[int]], i: int, history: int | None
                     ) -> tuple[list[int], list[bool]]:
    """Tokens and target flags of utterance i's window (0-based i): history + audio + <audio_end>."""
    stream = []
    for k, utt in enumerate(dialogue[:i]):
        stream += utt + [AUDIO_END, EMOTION_IDS[k % len(EMOTION_IDS)]]
    if history is not None:
        stream = stream[len(stream) - min(history, len(stream)):]
    own = dialogue[i] + [AUDIO_END]
    return stream + own, [False] * len(stream) + [True] * len(own)


@dataclass
class RowItem:
    """What one row holds at one engine step (None rows are inactive)."""

    dialogue: list[list[int]]
    index: int


def make_batch(items: list[RowItem | None], history: int | None) -> WindowBatch:
    """Left-padded WindowBatch of the given rows (inactive rows: one padding token)."""
    windows = [utterance_window(it.dialogue, it.index, history) if it else ([0], [False])
               for it in items]
    width = max(len(w[0]) for w in windows)
    n = len(items)
    ids = torch.zeros(n, width, dtype=torch.int64)
    att = torch.zeros(n, width, dtype=torch.int64)
    tgt = torch.zeros(n, width, dtype=torch.bool)
    for r, (toks, flags) in enumerate(windows):
        if items[r] is None:
            continue
        ids[r, width - len(toks):] = torch.tensor(toks)
        att[r, width - len(toks):] = 1
        tgt[r, width - len(toks):] = torch.tensor(flags)
    return WindowBatch(input_ids=ids, attention_mask=att, target_mask=tgt,
                       end_pos=torch.full((n,), width - 1),
                       active=torch.tensor([it is not None for it in items]),
                       first=torch.tensor([it is not None and it.index == 0 for it in items]))


def run_engine(memory, dialogues, n_rows: int):
    """Stream dialogues through `memory` on n_rows rows sharing ONE state; each row takes the next
    dialogue when free (reset with the dialogue's key), so rows start and finish independently.

    dialogues: {key: utterances} or a list of (key, utterances) pairs (keys may repeat).
    Returns: ([read logits float[U, E] per dialogue], [write losses float[U] per dialogue], state)
    in input order (a dict input gives dicts keyed like it).
    """
    pairs = list(dialogues.items()) if isinstance(dialogues, dict) else list(dialogues)
    queue = list(range(len(pairs)))
    state = memory.init(n_rows)
    current: list[list[int] | None] = [None] * n_rows        # [dialogue index, utterance index]
    reads = [[] for _ in pairs]
    losses = [[] for _ in pairs]
    while True:
        for r in range(n_rows):
            if current[r] is not None and current[r][1] >= len(pairs[current[r][0]][1]):
                current[r] = None
            if current[r] is None and queue:
                k = queue.pop(0)
                state = memory.reset(state, [r], keys=[pairs[k][0]])
                current[r] = [k, 0]
        if all(c is None for c in current):
            break
        items = [RowItem(pairs[c[0]][1], c[1]) if c else None for c in current]
        batch = make_batch(items, memory.history_tokens)
        state, loss = memory.write(state, batch)
        logits = memory.read(state, batch)
        for r, c in enumerate(current):
            if c is not None:
                reads[c[0]].append(logits[r].clone())
                losses[c[0]].append(float(loss[r]))
                c[1] += 1
    reads = [torch.stack(x) for x in reads]
    losses = [torch.tensor(x) for x in losses]
    if isinstance(dialogues, dict):
        return dict(zip(dialogues, reads)), dict(zip(dialogues, losses)), state
    return reads, losses, state


def engine_runs_agree(engine, convs, keys=None, batch_size: int = 2, atol: float = 1e-5):
    """Assert one conversation at a time == `batch_size` side by side == the per-sample protocol
    (utterance k read by a fresh run over 1..k); returns the one-at-a-time DialogueResults."""
    import numpy as np

    one = engine.run(convs, keys=keys, batch_size=1)
    together = engine.run(convs, keys=keys, batch_size=batch_size)
    per_sample = engine.run_per_sample(convs, keys=keys)
    for a, b, c in zip(one, together, per_sample):
        np.testing.assert_allclose(a.logits, b.logits, rtol=0, atol=atol)
        np.testing.assert_allclose(a.logits, c.logits, rtol=0, atol=atol)
    return one


@pytest.fixture
def dlg():
    """The helpers above as one fixture (test modules must not import conftest by name)."""
    from types import SimpleNamespace

    return SimpleNamespace(VOCAB=VOCAB, AUDIO_END=AUDIO_END, EMOTION_IDS=EMOTION_IDS,
                           random_dialogue=random_dialogue, utterance_window=utterance_window,
                           RowItem=RowItem, make_batch=make_batch, run_engine=run_engine,
                           engine_runs_agree=engine_runs_agree)

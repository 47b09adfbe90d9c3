"""MALProbe: gate and residual / hidden norm by utterance position, without changing a prediction;
and the gradient flow out of a fresh (identity) adapter."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from convmem.memory.mal import MALConfig, MALMemory
from convmem.memory.mal_probe import MALProbe, by_position, merge
from convmem.memory.neural_memory import NeuralMemoryConfig
from convmem.train.mal_trainer import UtteranceTokens, dialogue_window_batch

AUDIO = (4, 56)
END = 56
EMOTIONS = (60, 61, 62, 63)


@pytest.fixture(scope="module")
def model():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=4, attn_implementation="sdpa")
    return LlamaForCausalLM(cfg).eval().requires_grad_(False)


def _memory(model, out_std: float | None) -> MALMemory:
    torch.manual_seed(1)
    mem = MALMemory.build(model, MALConfig(emotion_ids=EMOTIONS, audio_id_range=AUDIO, layer=1,
                                           memory=NeuralMemoryConfig(dim=16)))
    if out_std is not None:
        torch.nn.init.normal_(mem.adapter.to_out.weight, std=out_std)
    return mem


def _dialogues(n: int, n_utt: int) -> list[list[UtteranceTokens]]:
    g = torch.Generator().manual_seed(3)
    return [[UtteranceTokens(torch.randint(*AUDIO, (5,), generator=g), 0) for _ in range(n_utt)] for _ in range(n)]


def _stream(mem: MALMemory, dialogues) -> list[torch.Tensor]:
    state, reads = mem.init(len(dialogues)), []
    with torch.no_grad():
        for i in range(max(len(d) for d in dialogues)):
            batch = dialogue_window_batch(dialogues, i, END, 0)
            state, _ = mem.write(state, batch)
            reads.append(mem.read(state, batch))
    return reads


def test_probe_counts_reads_by_position_and_changes_nothing(model) -> None:
    mem = _memory(model, out_std=1.0)
    dialogues = _dialogues(2, 5)[:1] + _dialogues(2, 3)[1:]  # rows of different lengths
    plain = _stream(mem, dialogues)
    mem.probe = MALProbe()
    probed = _stream(mem, dialogues)
    assert all(torch.equal(a, b) for a, b in zip(plain, probed))
    sums = mem.probe.sums()
    assert sums["n"][:6] == [2, 2, 2, 1, 1, 0]  # the short row stops reading after 3 utterances
    rows = by_position(sums)
    assert [r["positions"] for r in rows] == ["0", "1", "2-3", "4-7"]
    assert [r["n"] for r in rows] == [2, 2, 3, 1]
    assert all(0 < r["gate"] < 1 and r["residual_ratio"] > 0 for r in rows)
    assert merge(sums, sums)["n"][:3] == [4, 4, 4] and merge(None, sums) == sums


def test_fresh_adapter_has_zero_residual(model) -> None:
    mem = _memory(model, out_std=None)  # W_o = 0: the identity
    mem.probe = MALProbe()
    _stream(mem, _dialogues(1, 2))
    rows = by_position(mem.probe.sums())
    assert [r["residual_ratio"] for r in rows] == [0.0, 0.0] and all(0.2 < r["gate"] < 0.8 for r in rows)


def test_gradient_flows_out_of_the_identity_adapter(model) -> None:
    # W_o = 0 blocks every gradient but W_o's own on the first step; W_o's is non-zero because the
    # gate starts open (~0.5), so one step later the gradient reaches gate, query, memory and writes
    mem = _memory(model, out_std=None)
    mem.differentiable = True
    dialogues = _dialogues(2, 2)
    params = dict(mem.adapter.named_parameters())

    def backward() -> None:
        mem.adapter.zero_grad(set_to_none=True)
        state = mem.init(2)
        loss = torch.zeros(())
        for i in range(2):
            batch = dialogue_window_batch(dialogues, i, END, 0)
            state, _ = mem.write(state, batch)
            loss = loss + F.cross_entropy(mem.read(state, batch), torch.tensor([0, 1]))
        loss.backward()

    def grad_norm(name: str) -> float:
        g = params[name].grad
        return 0.0 if g is None else float(g.abs().sum())

    backward()
    assert grad_norm("to_out.weight") > 0
    later = ("to_gate.weight", "to_query.weight", "to_key.weight", "to_value.weight", "memory.mlp.weights.0")
    assert all(grad_norm(n) == 0 for n in later)
    torch.optim.AdamW(mem.adapter.parameters(), lr=1e-3).step()
    backward()
    assert all(grad_norm(n) > 0 for n in later), {n: grad_norm(n) for n in later}

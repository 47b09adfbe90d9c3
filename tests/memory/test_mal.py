"""MALMemory on a tiny random Llama: causality, exact backbone when disabled, reset/isolation, batching."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from convmem.errors import ConfigError
from convmem.memory.base import Memory
from convmem.memory.mal import MALConfig, MALMemory
from convmem.memory.mal_layer import MALAdapter, find_decoder_layers
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


def _memory(model, seed: int = 1, **overrides) -> MALMemory:
    """A MAL memory whose output projection is non-zero, so the memory visibly changes logits."""
    cfg = MALConfig(emotion_ids=EMOTIONS, audio_id_range=AUDIO, layer=1,
                    memory=NeuralMemoryConfig(dim=16, init_lr=0.5), **overrides)
    torch.manual_seed(seed)
    mem = MALMemory.build(model, cfg)
    torch.nn.init.normal_(mem.adapter.to_out.weight, std=1.0)
    return mem


def _dialogue(seed: int, n_utt: int = 5) -> list[UtteranceTokens]:
    g = torch.Generator().manual_seed(seed)
    return [UtteranceTokens(torch.randint(*AUDIO, (int(torch.randint(3, 9, (1,), generator=g)),), generator=g))
            for _ in range(n_utt)]


def _stream(mem: MALMemory, dialogues, state=None) -> tuple[list[torch.Tensor], object]:
    """Write then read every utterance index; returns per-index logits [B, n_emotions] and the state."""
    state = mem.init(len(dialogues)) if state is None else state
    reads = []
    with torch.no_grad():
        for i in range(max(len(d) for d in dialogues if d is not None)):
            batch = dialogue_window_batch(dialogues, i, END, mem.history_tokens or 0)
            state, _ = mem.write(state, batch)
            reads.append(mem.read(state, batch))
    return reads, state


def _backbone_emotion_logits(model, batch) -> torch.Tensor:
    with torch.no_grad():
        logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                       position_ids=batch.position_ids()).logits
    return logits[torch.arange(batch.batch_size), batch.end_pos][:, list(EMOTIONS)]


def test_implements_memory_protocol(model) -> None:
    mem = _memory(model)
    assert isinstance(mem, Memory) and mem.name == "mal" and mem.history_tokens == 0


def test_disabled_adapter_is_the_backbone_exactly(model) -> None:
    dialogues = [_dialogue(1), _dialogue(2)]
    batch = dialogue_window_batch(dialogues, 3, END, 0)
    expected = _backbone_emotion_logits(model, batch)
    off = _memory(model, enabled=False)
    reads, _ = _stream(off, dialogues)
    assert torch.equal(reads[3], expected)
    on_reads, _ = _stream(_memory(model), dialogues)
    assert not torch.allclose(on_reads[3], expected, atol=1e-3)  # the enabled adapter does act
    assert torch.equal(_backbone_emotion_logits(model, batch), expected)  # and its hook is gone


def test_fresh_adapter_starts_as_identity(model) -> None:
    dialogues = [_dialogue(1)]
    cfg = MALConfig(emotion_ids=EMOTIONS, audio_id_range=AUDIO, layer=1)
    reads, _ = _stream(MALMemory.build(model, cfg), dialogues)  # W_o = 0
    for i, logits in enumerate(reads):
        assert torch.equal(logits, _backbone_emotion_logits(model, dialogue_window_batch(dialogues, i, END, 0)))


def test_read_at_i_is_unchanged_when_later_utterances_change(model) -> None:
    mem = _memory(model)
    base = _dialogue(5, n_utt=6)
    changed = base[:3] + _dialogue(6, n_utt=3)  # utterances 3.. differ
    reads_a, _ = _stream(mem, [base])
    reads_b, _ = _stream(mem, [changed])
    for i in range(3):
        assert torch.equal(reads_a[i], reads_b[i])
    assert not torch.allclose(reads_a[3], reads_b[3])


def test_read_at_i_sees_earlier_utterances_but_not_its_own_write(model) -> None:
    mem = _memory(model)
    base = _dialogue(5, n_utt=4)
    earlier_changed = _dialogue(7, n_utt=1) + base[1:]
    reads_a, _ = _stream(mem, [base])
    reads_b, _ = _stream(mem, [earlier_changed])
    assert all(not torch.allclose(reads_a[i], reads_b[i], atol=1e-4) for i in range(1, 4))  # memory carries
    # Utterance 2 read after a write of some *other* utterance: same logits, so write(2) is invisible to read(2).
    with torch.no_grad():
        state = mem.init(1)
        for i in range(2):
            state, _ = mem.write(state, dialogue_window_batch([base], i, END, 0))
        state, _ = mem.write(state, dialogue_window_batch([_dialogue(9, n_utt=1)], 0, END, 0))
        assert torch.equal(mem.read(state, dialogue_window_batch([base], 2, END, 0)), reads_a[2])


def test_within_utterance_chunks_read_only_earlier_chunks(model) -> None:
    torch.manual_seed(0)
    adapter = MALAdapter(32, NeuralMemoryConfig(dim=8, init_lr=0.5))
    torch.nn.init.normal_(adapter.to_out.weight)
    weights, momentum = adapter.memory.initial_params(1)
    h = torch.randn(1, 9, 32)
    mask = torch.ones(1, 9, dtype=torch.bool)
    mask[0, 0] = False  # chunks of 3 over tokens 1..8: {1,2,3} {4,5,6} {7,8}
    with torch.no_grad():
        out = adapter.read(weights, momentum, h, mask, chunk_size=3, within_utterance=True)
        h2 = h.clone()
        h2[0, 5] += torch.randn(32)  # change a token of chunk 1
        out2 = adapter.read(weights, momentum, h2, mask, chunk_size=3, within_utterance=True)
        flat = adapter.read(weights, momentum, h, mask, chunk_size=3, within_utterance=False)
    assert torch.equal(out[0, :4], out2[0, :4])  # unwritten token and chunk 0 unchanged
    assert not torch.allclose(out[0, 7:], out2[0, 7:])  # chunk 2 read what chunk 1 wrote
    assert torch.allclose(out[0, :4], flat[0, :4]) and not torch.allclose(out[0, 4:], flat[0, 4:])


def test_batched_rows_equal_separate_runs(model) -> None:
    dialogues = [_dialogue(11, 5), _dialogue(12, 3), _dialogue(13, 4)]
    for kwargs in ({}, {"chunk_size": 2, "read_within_utterance": True}, {"history_tokens": 6}):
        mem = _memory(model, **kwargs)
        batched, _ = _stream(mem, dialogues)
        for row, dialogue in enumerate(dialogues):
            alone, _ = _stream(mem, [dialogue])
            for i in range(len(dialogue)):
                torch.testing.assert_close(batched[i][row], alone[i][0], rtol=0, atol=1e-5)


def test_reset_gives_x_y_x_identical_and_rows_are_isolated(model) -> None:
    mem = _memory(model)
    x, y, other = _dialogue(21, 4), _dialogue(22, 3), _dialogue(23, 12)
    state = mem.init(2)
    runs = []
    for segment in (x, y, x):
        state = mem.reset(state, [0])
        reads, state = _stream(mem, [segment, None], state)
        runs.append(torch.stack(reads)[:, 0])
    assert torch.equal(runs[0], runs[2])
    no_reset, _ = _stream(mem, [x, None], state)  # X again without reset: Y's memory leaks in
    assert not torch.allclose(torch.stack(no_reset)[:, 0], runs[0], atol=1e-4)
    # Row 1 streams another conversation next to row 0: row 0 unchanged.
    alone, _ = _stream(mem, [x])
    beside, _ = _stream(mem, [x, other])
    for i in range(len(x)):
        torch.testing.assert_close(beside[i][0], alone[i][0], rtol=0, atol=1e-6)


def test_reset_restores_initial_state_and_inactive_rows_keep_theirs(model) -> None:
    mem = _memory(model)
    _, state = _stream(mem, [_dialogue(31, 3), _dialogue(32, 3)])
    fresh = mem.init(2)
    reset = mem.reset(state, [1])
    for name in state.weights:
        assert torch.equal(reset.weights[name][1], fresh.weights[name][1])
        assert torch.equal(reset.read_momentum[name][1], fresh.read_momentum[name][1])
        assert torch.equal(reset.weights[name][0], state.weights[name][0])
    assert reset.n_writes.tolist() == [3, 0]
    with pytest.raises(IndexError, match="outside a batch of 2"):
        mem.reset(state, [2])
    # A step where row 1 is inactive leaves every tensor of row 1 untouched.
    with torch.no_grad():
        batch = dialogue_window_batch([_dialogue(33, 1), None], 0, END, 0)
        after, loss = mem.write(state, batch)
    assert math.isnan(float(loss[1])) and math.isfinite(float(loss[0]))
    for before_p, after_p in zip(state._params(), after._params()):
        for name in before_p:
            assert torch.equal(before_p[name][1], after_p[name][1])
            assert not torch.equal(before_p[name][0], after_p[name][0])


@pytest.mark.parametrize("history_tokens", [0, 8])
def test_conversation_engine_streaming_equals_per_sample_and_any_batch(model, history_tokens, dlg) -> None:
    from convmem.engine.conversation import ConversationEngine

    mem = _memory(model, history_tokens=history_tokens)
    engine = ConversationEngine(mem, audio_end_id=END, emotion_ids=EMOTIONS, n_limit=64)
    convs = [[u.audio_ids for u in _dialogue(s, n)] for s, n in ((61, 4), (62, 2), (63, 3))]
    for a in dlg.engine_runs_agree(engine, convs):
        assert np.isfinite(a.write_loss).all()  # MAL writes every utterance, the first included


def test_state_size_is_constant_in_dialogue_length(model) -> None:
    mem = _memory(model)
    _, short = _stream(mem, [_dialogue(41, 1)])
    _, long = _stream(mem, [_dialogue(42, 30)])
    assert short.nbytes() == long.nbytes() > 0
    assert long.n_writes.tolist() == [30]
    # Streamed with grad enabled (as an engine may), inference still builds no growing graph.
    state = mem.init(1)
    for i in range(3):
        state, _ = mem.write(state, dialogue_window_batch([_dialogue(43, 3)], i, END, 0))
    assert not any(t.requires_grad for p in state._params() for t in p.values())
    assert not mem.read(state, dialogue_window_batch([_dialogue(43, 3)], 2, END, 0)).requires_grad


@pytest.mark.parametrize("max_grad_norm", [10.0, None])
def test_200_utterance_stream_stays_finite_with_inner_clip(model, max_grad_norm) -> None:
    # Aggressive inner steps; the unclipped arm shows this setting really does blow up (NaN).
    cfg = MALConfig(emotion_ids=EMOTIONS, audio_id_range=AUDIO, layer=1,
                    memory=NeuralMemoryConfig(dim=16, max_lr=20.0, init_lr=10.0, init_momentum=0.95,
                                              init_forget=0.001, max_grad_norm=max_grad_norm))
    torch.manual_seed(3)
    mem = MALMemory.build(model, cfg)
    torch.nn.init.normal_(mem.adapter.to_out.weight)
    reads, state = _stream(mem, [_dialogue(51, 200)])
    finite = bool(torch.isfinite(torch.stack(reads)).all()) and all(
        bool(torch.isfinite(w).all()) for w in state.weights.values())
    assert finite == (max_grad_norm is not None)
    assert state.n_writes.tolist() == [200]


def test_config_from_dict_rejects_unknown_keys() -> None:
    # read as every config section is: convmem.config.from_dict (keys, types, ranges), then the
    # dataclass's own invariants (MALConfig.__post_init__)
    from convmem.config import from_dict

    def read(data):
        return from_dict(MALConfig, data, "mal")

    ok = read({"emotion_ids": [1, 2], "audio_id_range": [3, 9], "chunk_size": 4, "memory": {"dim": 8, "depth": 3}})
    assert ok.emotion_ids == (1, 2) and ok.memory.depth == 3 and ok.chunk_size == 4
    with pytest.raises(ConfigError, match="mal.lyer: unknown key"):
        read({"emotion_ids": [1], "audio_id_range": [3, 9], "lyer": 2})
    with pytest.raises(ConfigError, match="mal.memory.width: unknown key"):
        read({"emotion_ids": [1], "audio_id_range": [3, 9], "memory": {"width": 2}})
    with pytest.raises(ConfigError, match="emotion_ids"):
        read({"audio_id_range": [3, 9]})
    with pytest.raises(ConfigError, match="depth"):
        read({"emotion_ids": [1], "audio_id_range": [3, 9], "memory": {"depth": 1}})
    with pytest.raises(ConfigError, match="mal.layer: expected an integer, got 'two'"):
        read({"emotion_ids": [1], "audio_id_range": [3, 9], "layer": "two"})
    with pytest.raises(ConfigError, match="mal.emotion_ids: expected a list, got 5"):
        read({"emotion_ids": 5, "audio_id_range": [3, 9]})
    with pytest.raises(ConfigError, match="mal.memory.dim: expected an integer, got 8.5"):
        read({"emotion_ids": [1], "audio_id_range": [3, 9], "memory": {"dim": 8.5}})
    with pytest.raises(ConfigError, match="mal.emotion_ids must be a list of integers"):
        MALConfig(emotion_ids=5, audio_id_range=(3, 9))  # built in code: the invariants still hold
    with pytest.raises(ConfigError, match="read_within_utterance needs"):
        MALConfig(emotion_ids=(1,), audio_id_range=(3, 9), read_within_utterance=True)


def test_layer_out_of_range_is_a_config_error(model) -> None:
    with pytest.raises(ConfigError, match=r"mal.layer must be in \[0, 2\)"):
        MALMemory.build(model, MALConfig(emotion_ids=EMOTIONS, audio_id_range=AUDIO, layer=5))
    assert len(find_decoder_layers(model)) == 2


# ----------------------------------------------------------------- diagnostics and gradient flow
def _identity_memory(model) -> MALMemory:
    """A fresh adapter as `MALMemory.build` makes it: W_o = 0, the identity."""
    mem = _memory(model)
    torch.nn.init.zeros_(mem.adapter.to_out.weight)
    return mem


def test_probe_counts_reads_by_position_and_changes_nothing(model) -> None:
    from convmem.memory.mal_probe import MALProbe, by_position, merge

    mem = _memory(model)
    dialogues = [_dialogue(1, 5), _dialogue(2, 3)]  # rows of different lengths
    plain, _ = _stream(mem, dialogues)
    mem.probe = MALProbe()
    probed, _ = _stream(mem, dialogues)
    assert all(torch.equal(a, b) for a, b in zip(plain, probed))
    sums = mem.probe.sums()
    assert sums["n"][:6] == [2, 2, 2, 1, 1, 0]  # the short row stops reading after 3 utterances
    rows = by_position(sums)
    assert [r["positions"] for r in rows] == ["0", "1", "2-3", "4-7"]
    assert [r["n"] for r in rows] == [2, 2, 3, 1]
    assert all(0 < r["gate"] < 1 and r["residual_ratio"] > 0 for r in rows)
    assert merge(sums, sums)["n"][:3] == [4, 4, 4] and merge(None, sums) == sums


def test_identity_adapter_has_zero_residual_and_an_open_gate(model) -> None:
    from convmem.memory.mal_probe import MALProbe, by_position

    mem = _identity_memory(model)
    mem.probe = MALProbe()
    _stream(mem, [_dialogue(3, 2)])
    rows = by_position(mem.probe.sums())
    assert [r["residual_ratio"] for r in rows] == [0.0, 0.0] and all(0.2 < r["gate"] < 0.8 for r in rows)


def test_gradient_flows_out_of_the_identity_adapter(model) -> None:
    # W_o = 0 blocks every gradient but W_o's own on the first step; W_o's is non-zero because the
    # gate starts open (~0.5), so one step later the gradient reaches gate, query, memory and writes
    import torch.nn.functional as F

    mem = _identity_memory(model)
    mem.differentiable = True
    dialogues = [_dialogue(4, 2), _dialogue(5, 2)]
    params = dict(mem.adapter.named_parameters())

    def backward() -> None:
        mem.adapter.zero_grad(set_to_none=True)
        state, loss = mem.init(2), torch.zeros(())
        for i in range(2):
            batch = dialogue_window_batch(dialogues, i, END, 0)
            state, _ = mem.write(state, batch)
            loss = loss + F.cross_entropy(mem.read(state, batch), torch.tensor([0, 1]))
        loss.backward()

    def grad_size(name: str) -> float:
        g = params[name].grad
        return 0.0 if g is None else float(g.abs().sum())

    backward()
    assert grad_size("to_out.weight") > 0
    later = ("to_gate.weight", "to_query.weight", "to_key.weight", "to_value.weight", "memory.mlp.weights.0")
    assert all(grad_size(n) == 0 for n in later)
    torch.optim.AdamW(mem.adapter.parameters(), lr=1e-3).step()
    backward()
    assert all(grad_size(n) > 0 for n in later), {n: grad_size(n) for n in later}

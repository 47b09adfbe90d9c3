import copy
import math

import pytest
import torch

from convmem.errors import ConfigError
from convmem.memory.base import Memory
from convmem.memory.stepping import SteppingState, SurpriseStepping
from convmem.memory.temp_lora import DPMConfig, DPMMemory

N_LIMIT = 48
N_R = 16


def _memory(model, dlg, **overrides) -> DPMMemory:
    cfg = dict(rank=4, alpha=8.0, lr=1e-2, n_r=N_R, seed=3)
    cfg.update(overrides)
    return DPMMemory(model, dlg.EMOTION_IDS, N_LIMIT, DPMConfig(**cfg))


def _dialogues(dlg):
    d = {f"d{k}": dlg.random_dialogue(k, n) for k, n in enumerate([5, 3, 6, 4])}
    d["d2"][3] = dlg.random_dialogue(99, 1, lengths=(40, 40))[0]  # 41 targets + 16 prefix > 48
    return d


def _frozen_emotion_logits(model, batch, dlg, **kw):
    with torch.no_grad():
        out = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                    position_ids=batch.position_ids(), **kw).logits
    return out[:, -1, list(dlg.EMOTION_IDS)]


def _state_rows(state, row):
    tensors = [*state.lora_A.values(), *state.lora_B.values(), *state.opt.exp_avg,
               *state.opt.exp_avg_sq, state.opt.step]
    return [t[row].clone() for t in tensors]


def test_is_a_memory_with_paper_defaults(tiny_llama, dlg):
    mem = DPMMemory(tiny_llama(), dlg.EMOTION_IDS, 1024)
    assert isinstance(mem, Memory) and mem.name == "dpm"
    c = mem.config
    assert (c.rank, c.alpha, c.lr, c.optimizer, c.steps_per_write, c.stepping) == \
        (64, 64.0, 5e-5, "adamw", 1, "sentence")
    assert mem.n_r == 512 and mem.history_tokens == 512
    assert len(mem.lora.targets) == 14


def test_fresh_memory_reads_exactly_the_frozen_model(tiny_llama, dlg):
    model = tiny_llama()
    d = _dialogues(dlg)
    batch = dlg.make_batch([dlg.RowItem(d["d0"], 2), dlg.RowItem(d["d1"], 1),
                            dlg.RowItem(d["d3"], 3)], N_R)
    # read asks HF for the last position's logits only (logits_to_keep=1), as the frozen call here.
    frozen = _frozen_emotion_logits(model, batch, dlg, logits_to_keep=1)
    full = _frozen_emotion_logits(model, batch, dlg)
    mem = _memory(model, dlg)
    state = mem.reset(mem.init(3), [0, 2], keys=["x", "y"])
    read = mem.read(state, batch)
    assert torch.equal(read, frozen)
    torch.testing.assert_close(read, full, atol=1e-5, rtol=0)
    mem.close()
    assert torch.equal(_frozen_emotion_logits(model, batch, dlg, logits_to_keep=1), frozen)


def test_batched_rows_equal_separate_runs(tiny_llama, dlg):
    model = tiny_llama()
    d = _dialogues(dlg)
    mem = _memory(model, dlg)
    reads, losses, state = dlg.run_engine(mem, d, n_rows=2)   # rows reset mid-run, finish apart
    for key, dialogue in d.items():
        sep_reads, sep_losses, sep_state = dlg.run_engine(mem, {key: dialogue}, n_rows=1)
        torch.testing.assert_close(reads[key], sep_reads[key], atol=1e-5, rtol=0)
        assert torch.isnan(losses[key][0]) and torch.isfinite(losses[key][1:]).all()
        torch.testing.assert_close(losses[key], sep_losses[key], atol=1e-5, rtol=0, equal_nan=True)
    assert int(sep_state.writes[0]) == 3  # d3: 4 utterances, 3 writes
    # The memory really acted: later reads differ from the frozen model's.
    key, i = "d2", 5
    batch = dlg.make_batch([dlg.RowItem(d[key], i)], mem.history_tokens)
    assert (reads[key][i] - _frozen_emotion_logits(model, batch, dlg)[0]).abs().max() > 1e-2


def test_batched_gradients_equal_separate(tiny_llama, dlg):
    # Plain SGD with lr 1 turns one step's parameter change into minus the gradient.
    model = tiny_llama()
    mem = _memory(model, dlg, optimizer="sgd", lr=1.0)
    d = _dialogues(dlg)
    items = [dlg.RowItem(d["d0"], 3), dlg.RowItem(d["d2"], 1), dlg.RowItem(d["d1"], 2)]
    batched = mem.reset(mem.init(3), [0, 1, 2], keys=["a", "b", "c"])
    batched, _ = mem.write(batched, dlg.make_batch(items, N_R))
    for row, (item, key) in enumerate(zip(items, "abc")):
        single = mem.reset(mem.init(1), [0], keys=[key])
        single, _ = mem.write(single, dlg.make_batch([item], N_R))
        for name in single.lora_B:
            torch.testing.assert_close(batched.lora_B[name][row], single.lora_B[name][0],
                                       atol=1e-5, rtol=0)
            torch.testing.assert_close(batched.lora_A[name][row], single.lora_A[name][0],
                                       atol=1e-5, rtol=0)
    assert batched.lora_B["model.layers.0.mlp.down_proj"].abs().sum() > 0


def test_x_y_x_gives_identical_predictions(tiny_llama, dlg):
    # One row, one state: X, then Y, then X again on the same row.
    mem = _memory(tiny_llama(), dlg)
    d = _dialogues(dlg)
    (x1, y, x2), _, state = dlg.run_engine(mem, [("X", d["d0"]), ("Y", d["d2"]), ("X", d["d0"])],
                                           n_rows=1)
    assert torch.equal(x1, x2)
    assert int(state.conversations[0]) == 3
    (y_alone,), _, _ = dlg.run_engine(mem, [("Y", d["d2"])], n_rows=1)
    assert torch.equal(y, y_alone)


def test_first_utterance_and_inactive_rows_are_not_written(tiny_llama, dlg):
    mem = _memory(tiny_llama(), dlg)
    d = _dialogues(dlg)
    state = mem.reset(mem.init(3), [0, 1, 2], keys=["a", "b", "c"])
    before = [_state_rows(state, r) for r in range(3)]
    batch = dlg.make_batch([dlg.RowItem(d["d0"], 0), None, dlg.RowItem(d["d1"], 1)], N_R)
    state, loss = mem.write(state, batch)
    assert math.isnan(loss[0]) and math.isnan(loss[1]) and math.isfinite(loss[2])
    for r in (0, 1):
        for a, b in zip(before[r], _state_rows(state, r)):
            assert torch.equal(a, b)
    n_a = len(state.lora_A)
    changed = [not torch.equal(a, b) for a, b in zip(before[2], _state_rows(state, 2))]
    assert not any(changed[:n_a]) and all(changed[n_a:2 * n_a])  # step 1: dL/dA = 0 while B = 0
    assert state.writes.tolist() == [0, 0, 1] and state.opt.step.tolist() == [0, 0, 1]
    assert state.skipped_writes.tolist() == [0, 0, 0]


def test_long_utterance_is_written_in_counted_chunks(tiny_llama, dlg):
    mem = _memory(tiny_llama(), dlg)
    d = _dialogues(dlg)
    state = mem.reset(mem.init(2), [0, 1], keys=["a", "b"])
    batch = dlg.make_batch([dlg.RowItem(d["d2"], 3), dlg.RowItem(d["d0"], 3)], N_R)
    assert batch.target_mask[0].sum() == 41 and N_R + 41 > N_LIMIT
    state, loss = mem.write(state, batch)
    assert state.chunked_writes.tolist() == [1, 0]
    assert state.chunks_written.tolist() == [2, 1]          # ceil(41 / (48 - 16)) = 2
    assert state.opt.step.tolist() == [2, 1]
    assert torch.isfinite(loss).all()
    logits = mem.read(state, batch)
    assert torch.isfinite(logits).all()


def test_pre_update_loss_is_eq9_of_the_frozen_model(tiny_llama, dlg):
    model = tiny_llama()
    mem = _memory(model, dlg)
    d = _dialogues(dlg)
    toks, flags = dlg.utterance_window(d["d0"], 2, N_R)
    state, loss = mem.write(mem.init(1), dlg.make_batch([dlg.RowItem(d["d0"], 2)], N_R))
    ids = torch.tensor([toks])
    with torch.no_grad():
        logp = model(input_ids=ids).logits[0, :-1].log_softmax(-1)
    nll = -logp.gather(1, ids[0, 1:, None])[:, 0]
    want = nll[torch.tensor(flags[1:])].mean()
    assert len(toks) - sum(flags) == N_R
    torch.testing.assert_close(loss[0], want, atol=1e-5, rtol=0)


def test_base_weights_never_change_and_get_no_grad(tiny_llama, dlg):
    model = tiny_llama()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    mem = _memory(model, dlg, steps_per_write=2)
    dlg.run_engine(mem, _dialogues(dlg), n_rows=2)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(p.grad is None for p in model.parameters())


def test_stride_accumulates_then_writes_the_pending_span(tiny_llama, dlg):
    model = tiny_llama()
    mem = _memory(model, dlg, stepping="stride:20")
    assert mem.history_tokens == N_R + 20
    dialogue = dlg.random_dialogue(5, 5, lengths=(8, 8))        # 9 targets per utterance
    state = mem.reset(mem.init(1), [0], keys=["s"])
    losses = []
    for i in range(4):
        batch = dlg.make_batch([dlg.RowItem(dialogue, i)], mem.history_tokens)
        state, loss = mem.write(state, batch)
        losses.append(float(loss[0]))
    assert [math.isnan(x) for x in losses] == [True, True, True, False]
    assert state.writes.tolist() == [1] and state.skipped_writes.tolist() == [2]
    assert state.stepping.pending_tokens.tolist() == [0]
    # The written span = the 27 audio/<audio_end> tokens of utterances 2-4, frozen-model NLL.
    toks, _ = dlg.utterance_window(dialogue, 3, mem.history_tokens)
    ids = torch.tensor([toks])
    with torch.no_grad():
        logp = model(input_ids=ids).logits[0, :-1].log_softmax(-1)
    nll = -logp.gather(1, ids[0, 1:, None])[:, 0]
    is_target = torch.zeros(len(toks), dtype=torch.bool)
    is_target[-29:] = True                                       # 27 targets + 2 emotion tokens
    is_target &= ~torch.isin(ids[0], torch.tensor(dlg.EMOTION_IDS))
    assert is_target.sum() == 27
    torch.testing.assert_close(torch.tensor(losses[3]), nll[is_target[1:]].mean(), atol=1e-5, rtol=0)


def test_surprise_threshold_rule():
    s = SurpriseStepping(k=1.0, warmup=2)
    st = SteppingState.fresh(1)
    rows = torch.tensor([True])
    decisions = [bool(s.accept(st, torch.tensor([x], dtype=torch.float64), rows)[0])
                 for x in (1.0, 3.0, 2.5, 10.0)]
    # warmup writes 1.0 and 3.0; 2.5 < 2 + 1.41; 10 > mean(1, 3, 2.5) + std
    assert decisions == [True, True, False, True]
    assert st.loss_count.tolist() == [4]
    torch.testing.assert_close(st.loss_mean, torch.tensor([4.125], dtype=torch.float64))


def test_surprise_skips_low_loss_utterances_without_touching_the_row(tiny_llama, dlg):
    mem = _memory(tiny_llama(), dlg, stepping="surprise", surprise_k=0.0, lr=5e-2)
    dialogue = dlg.random_dialogue(7, 8)
    dialogue[5] = dialogue[4] = dialogue[3]          # repeats: learned, so low loss
    state = mem.reset(mem.init(1), [0], keys=["s"])
    skipped = 0
    for i in range(len(dialogue)):
        before = _state_rows(state, 0)
        state, loss = mem.write(state, dlg.make_batch([dlg.RowItem(dialogue, i)], N_R))
        if i > 0 and math.isnan(loss[0]):
            skipped += 1
            assert all(torch.equal(a, b) for a, b in zip(before, _state_rows(state, 0)))
    assert skipped >= 1
    assert int(state.writes[0]) + int(state.skipped_writes[0]) == len(dialogue) - 1
    assert int(state.skipped_writes[0]) == skipped
    assert int(state.stepping.loss_count[0]) == len(dialogue) - 1


def test_config_rejects_unknown_keys_and_bad_values(tiny_llama, dlg):
    # read as every config section is: convmem.config.from_dict (keys, types, ranges), then the
    # dataclass's own invariants
    from convmem.config import from_dict

    cfg = from_dict(DPMConfig, {"rank": 8, "lr": "5e-5", "betas": [0.9, 0.99], "stepping": "stride:1024"}, "dpm")
    assert cfg.lr == 5e-5 and cfg.betas == (0.9, 0.99)
    with pytest.raises(ConfigError, match="dpm.lrr: unknown key"):
        from_dict(DPMConfig, {"lrr": 1e-3, "stride": 4}, "dpm")
    with pytest.raises(ConfigError, match="stepping"):
        from_dict(DPMConfig, {"stepping": "every"}, "dpm")
    with pytest.raises(ConfigError, match="rank"):
        from_dict(DPMConfig, {"rank": 0}, "dpm")
    with pytest.raises(ConfigError, match="lr: expected a number, got 'fast'"):
        from_dict(DPMConfig, {"lr": "fast"}, "dpm")
    with pytest.raises(ConfigError, match="optimizer = 'adam'"):
        DPMConfig(optimizer="adam")  # built in code: the invariants still hold
    with pytest.raises(ConfigError, match="n_r = 48"):
        DPMMemory(tiny_llama(), dlg.EMOTION_IDS, N_LIMIT, DPMConfig(n_r=48))


def test_state_copy_is_independent(tiny_llama, dlg):
    mem = _memory(tiny_llama(), dlg)
    d = _dialogues(dlg)
    state = mem.init(1)
    snapshot = copy.deepcopy(state)
    mem.write(state, dlg.make_batch([dlg.RowItem(d["d0"], 1)], N_R))
    assert not torch.equal(snapshot.lora_B["model.layers.1.mlp.up_proj"],
                           state.lora_B["model.layers.1.mlp.up_proj"])


def test_lm_head_target_works_with_tail_only_logits(tiny_llama, dlg):
    mem = _memory(tiny_llama(), dlg, include_lm_head=True, target_modules=("q_proj",))
    assert [t.name for t in mem.lora.targets][-1] == "lm_head" and len(mem.lora.targets) == 3
    d = _dialogues(dlg)
    batch = dlg.make_batch([dlg.RowItem(d["d0"], 2), dlg.RowItem(d["d3"], 1)], N_R)
    state, loss = mem.write(mem.init(2), batch)
    assert torch.isfinite(loss).all() and state.lora_B["lm_head"].abs().sum(dim=(1, 2)).min() > 0
    assert torch.isfinite(mem.read(state, batch)).all()

"""Outer-loop MAL training: a toy task only memory can solve is learned; the backbone is untouched."""

from __future__ import annotations

import math

import pytest
import torch

from convmem.memory.mal import MALConfig, MALMemory
from convmem.train.mal_trainer import (
    MALTrainConfig,
    UtteranceTokens,
    check_dialogues,
    dialogue_window_batch,
    evaluate_mal,
    train_mal,
)

AUDIO = (4, 56)
END = 56
EMOTIONS = (60, 61)


def _tiny_llama(seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=4, attn_implementation="sdpa")
    return LlamaForCausalLM(cfg).eval()


def _hidden_offset_dialogues(n: int, seed: int, n_utt: int = 4, n_tok: int = 6) -> list[list[UtteranceTokens]]:
    """Dialogue d has a hidden class o = d % 2 (balanced). Utterance 0 (unscored) reveals o through its
    token range; utterances 1.. are drawn independently of o and all carry label o. Without memory
    the current utterance says nothing about o, so no memoryless model beats CE = ln 2 on average."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for d in range(n):
        o = d % 2
        utts = [UtteranceTokens(torch.randint(4 + 12 * o, 16 + 12 * o, (n_tok,), generator=g), None)]
        utts += [UtteranceTokens(torch.randint(28, 56, (n_tok,), generator=g), o) for _ in range(n_utt - 1)]
        out.append(utts)
    return out



def test_training_learns_what_only_memory_can_know_and_leaves_backbone_untouched(one_thread) -> None:
    model = _tiny_llama()
    before_weights = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = MALConfig(emotion_ids=EMOTIONS, audio_id_range=AUDIO, layer=1)
    torch.manual_seed(100)
    memory = MALMemory.build(model, cfg)
    test = _hidden_offset_dialogues(32, seed=20)
    ce_before, acc_before, n = evaluate_mal(memory, test, END)
    result = train_mal(model, memory.adapter, _hidden_offset_dialogues(32, seed=10),
                       MALTrainConfig(epochs=16, batch_size=16, tbptt=4, lr=3e-2), cfg, END, progress=False)
    ce_after, acc_after, _ = evaluate_mal(memory, test, END)
    assert n == 96 and len(result.losses) == 32
    assert ce_before > 0.68 and acc_before < 0.6  # starts at chance
    assert ce_after < 0.62 and acc_after > 0.85  # below ln 2: information carried by the memory
    assert all(torch.equal(before_weights[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
    assert all(p.requires_grad for p in model.parameters())  # flags restored as they were


def test_gradient_reaches_write_side_parameters(one_thread) -> None:
    # The keys/values/rate heads act only through the writes: a gradient there proves BPTT through them.
    model = _tiny_llama()
    cfg = MALConfig(emotion_ids=EMOTIONS, audio_id_range=AUDIO, layer=1)
    torch.manual_seed(1)
    memory = MALMemory.build(model, cfg)
    torch.nn.init.normal_(memory.adapter.to_out.weight)  # a zero W_o would block every gradient but its own
    result = train_mal(model, memory.adapter, _hidden_offset_dialogues(4, seed=1),
                       MALTrainConfig(epochs=1, batch_size=4, tbptt=4, lr=1e-3), cfg, END, progress=False)
    assert len(result.losses) == 1 and math.isfinite(result.losses[0])
    for name in ("to_key.weight", "to_value.weight", "memory.rate_heads.weight", "memory.mlp.weights.0"):
        grad = dict(memory.adapter.named_parameters())[name].grad
        assert grad is not None and float(grad.abs().sum()) > 0, name


def test_window_batch_layout() -> None:
    d = [UtteranceTokens(torch.tensor([5, 6]), None), UtteranceTokens(torch.tensor([7, 8, 9]), 1)]
    batch = dialogue_window_batch([d, d[:1], None], 1, END, history_tokens=2, pad_id=0)
    assert batch.input_ids.tolist() == [[6, END, 7, 8, 9, END], [0, 0, 0, 0, 0, END], [0, 0, 0, 0, 0, END]]
    assert batch.target_mask[0].tolist() == [False, False, True, True, True, True]
    assert not bool(batch.target_mask[1:].any())
    assert batch.active.tolist() == [True, False, False] and batch.first.tolist() == [False, False, False]
    assert batch.end_pos.tolist() == [5, 5, 5]
    first = dialogue_window_batch([d], 0, END, history_tokens=2)
    assert first.input_ids.tolist() == [[5, 6, END]] and first.first.tolist() == [True]


@pytest.mark.parametrize(
    "utt,match",
    [(UtteranceTokens(torch.tensor([2, 5]), 0), "dialogue 1, utterance 0: audio id outside"),
     (UtteranceTokens(torch.tensor([5]), 2), "dialogue 1, utterance 0: label 2"),
     (UtteranceTokens(torch.tensor([], dtype=torch.long), 0), "dialogue 1, utterance 0: audio_ids")],
)
def test_bad_dialogues_are_named(utt: UtteranceTokens, match: str) -> None:
    cfg = MALConfig(emotion_ids=EMOTIONS, audio_id_range=AUDIO)
    good = [UtteranceTokens(torch.tensor([5, 6]), 1)]
    with pytest.raises(ValueError, match=match):
        check_dialogues([good, [utt]], cfg)


def test_prosody_mark_ids_pass_only_when_the_model_has_them() -> None:
    cfg = MALConfig(emotion_ids=EMOTIONS, audio_id_range=AUDIO)
    marked = [[UtteranceTokens(torch.tensor([5, 6, 70, 75]), 1)]]
    check_dialogues(marked, cfg, mark_id_range=(70, 94))
    with pytest.raises(ValueError, match="outside audio_id_range"):
        check_dialogues(marked, cfg)
    with pytest.raises(ValueError, match="or the mark ids 70..71"):
        check_dialogues(marked, cfg, mark_id_range=(70, 72))


def test_train_config_is_validated() -> None:
    from convmem.errors import ConfigError

    with pytest.raises(ConfigError, match="mal_train.tbptt must be an integer >= 1"):
        MALTrainConfig(tbptt=0)
    with pytest.raises(ConfigError, match="mal_train.lr must be > 0"):
        MALTrainConfig(lr=0.0)


def test_dialogues_of_different_lengths_keep_the_adapter_finite() -> None:
    # A row whose dialogue has ended writes nothing: its inner gradient is exactly zero, and the
    # clip's norm must not turn that into NaN in the outer gradient (it did: d sqrt(x)/dx at 0).
    model = _tiny_llama()
    cfg = MALConfig(emotion_ids=EMOTIONS, audio_id_range=AUDIO, layer=1)
    torch.manual_seed(2)
    memory = MALMemory.build(model, cfg)
    torch.nn.init.normal_(memory.adapter.to_out.weight)
    short, long = _hidden_offset_dialogues(1, seed=3, n_utt=2), _hidden_offset_dialogues(1, seed=4, n_utt=6)
    result = train_mal(model, memory.adapter, short + long,
                       MALTrainConfig(epochs=2, batch_size=2, tbptt=4, lr=1e-3), cfg, END, progress=False)
    assert result.losses and all(math.isfinite(x) for x in result.losses)
    assert all(torch.isfinite(p).all() for p in memory.adapter.parameters())


def test_validation_keeps_the_best_epoch_and_stops_after_patience(one_thread) -> None:
    model = _tiny_llama()
    cfg = MALConfig(emotion_ids=EMOTIONS, audio_id_range=AUDIO, layer=1)
    torch.manual_seed(3)
    memory = MALMemory.build(model, cfg)
    val = _hidden_offset_dialogues(8, seed=30)
    # lr 0.3: validation loss soon stops improving, so patience ends the run before `epochs`
    result = train_mal(model, memory.adapter, _hidden_offset_dialogues(8, seed=31),
                       MALTrainConfig(epochs=12, batch_size=8, tbptt=4, lr=0.3, patience=2), cfg, END,
                       progress=False, val_dialogues=val)
    run = len(result.val_losses) - 1  # index 0 is the fresh adapter
    assert 1 <= result.best_epoch <= run and len(result.losses) == run  # one step per epoch here
    assert run < 12 and run - result.best_epoch == 2  # stopped by patience
    assert result.val_losses[result.best_epoch] == min(result.val_losses[1:])
    ce, acc, _ = evaluate_mal(memory, val, END)  # the kept adapter is the best epoch's
    assert ce == pytest.approx(result.val_losses[result.best_epoch], rel=1e-5)
    assert acc == pytest.approx(result.val_accuracies[result.best_epoch])


def test_without_validation_every_epoch_runs_and_the_last_is_kept() -> None:
    model = _tiny_llama()
    cfg = MALConfig(emotion_ids=EMOTIONS, audio_id_range=AUDIO, layer=1)
    torch.manual_seed(4)
    memory = MALMemory.build(model, cfg)
    result = train_mal(model, memory.adapter, _hidden_offset_dialogues(4, seed=5),
                       MALTrainConfig(epochs=3, batch_size=4, patience=1), cfg, END, progress=False)
    assert result.best_epoch == 3 and result.val_losses == [] and len(result.losses) == 3


def test_validation_session_is_the_last_training_session() -> None:
    from convmem.corpus.types import Dialogue
    from convmem.study.training import mal_validation_dialogues

    def dialogue(did: str, session: str) -> Dialogue:
        return Dialogue(dialogue_id=did, session=session, utterances=[])

    train = [dialogue("a1", "S01"), dialogue("c1", "S03"), dialogue("b1", "S02"), dialogue("c2", "S03")]
    assert mal_validation_dialogues(train, 1) == ["c1", "c2"]
    assert mal_validation_dialogues(train, 2) == ["c1", "b1", "c2"]
    assert mal_validation_dialogues(train, 0) == []
    assert mal_validation_dialogues(train, 3) == []  # nothing would be left to train on
    with pytest.raises(Exception, match="mal_train.val_sessions"):
        MALTrainConfig(val_sessions=-1)


def test_cross_fitted_training_reads_each_dialogue_through_its_own_backbone(one_thread, monkeypatch) -> None:
    """Cross-fitting (study/crossfit.py): with several backbones, every training and validation
    dialogue is streamed only through the backbone named for it (the one that never heard its
    speakers); one adapter learns from all, and no backbone gets a gradient."""
    import convmem.train.mal_trainer as trainer

    models = [_tiny_llama(0), _tiny_llama(1)]
    before = [{k: v.clone() for k, v in m.state_dict().items()} for m in models]
    cfg = MALConfig(emotion_ids=EMOTIONS, audio_id_range=AUDIO, layer=1)
    torch.manual_seed(100)
    adapter = MALMemory.build(models[0], cfg).adapter
    train = _hidden_offset_dialogues(12, seed=10)
    val = _hidden_offset_dialogues(4, seed=11)
    backbone_of = [d % 2 for d in range(12)]
    val_backbone_of = [1, 1, 0, 1]
    seen = {"train": [], "val": []}
    real_group, real_eval = trainer._train_group, trainer.evaluate_mal

    def spy_group(memory, group, *args):
        seen["train"] += [(id(memory.model), id(d)) for d in group]
        return real_group(memory, group, *args)

    def spy_eval(memory, dialogues, *args, **kw):
        seen["val"] += [(id(memory.model), id(d)) for d in dialogues]
        return real_eval(memory, dialogues, *args, **kw)

    monkeypatch.setattr(trainer, "_train_group", spy_group)
    monkeypatch.setattr(trainer, "evaluate_mal", spy_eval)
    result = train_mal(models, adapter, train, MALTrainConfig(epochs=2, batch_size=4, lr=3e-2, patience=5),
                       cfg, END, progress=False, val_dialogues=val, backbone_of=backbone_of,
                       val_backbone_of=val_backbone_of)
    want_train = {id(d): id(models[b]) for d, b in zip(train, backbone_of)}
    want_val = {id(d): id(models[b]) for d, b in zip(val, val_backbone_of)}
    assert len(seen["train"]) == 2 * 12 and all(want_train[d] == m for m, d in seen["train"])
    assert len(seen["val"]) == 3 * 4 and all(want_val[d] == m for m, d in seen["val"])
    assert len(result.val_losses) == 3 and result.best_epoch in (1, 2)
    for m, w in zip(models, before):
        assert all(torch.equal(w[k], v) for k, v in m.state_dict().items())
    with pytest.raises(Exception, match="index of its backbone"):
        train_mal(models, adapter, train, MALTrainConfig(epochs=1), cfg, END, progress=False,
                  backbone_of=[0] * 11)

"""Every memory with a model that reads continuous frames (slm.audio_input=frames): the engine carries
frames beside the ids; DPM's stream equals the per-sample protocol and any batch; MAL writes and
reads with frames; the codes path is the same protocol without them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from convmem.engine.conversation import ConversationEngine
from convmem.memory.context import ContextMemory
from convmem.memory.mal import MALConfig, MALMemory
from convmem.memory.neural_memory import NeuralMemoryConfig
from convmem.memory.temp_lora import DPMConfig, DPMMemory
from convmem.slm.audio_embedding import UtteranceInput
from convmem.slm.model import SLMConfig, build_model, make_vocab

LABELS = ("neu", "hap", "sad", "ang")
D = 8
N_LIMIT = 40


def _model(audio_input: str):
    cfg = SLMConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, n_limit=N_LIMIT,
                    audio_input=audio_input)
    vocab = make_vocab(cfg, 16, LABELS)
    model = build_model(cfg, vocab, D if audio_input == "frames" else None).eval().requires_grad_(False)
    return model, vocab


@pytest.fixture(scope="module", params=["codes", "frames"])
def setup(request):
    return request.param, *_model(request.param)


def _conv(vocab, seed: int, n_utts: int, frames: bool, lengths=(3, 9)) -> list:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_utts):
        n = int(torch.randint(lengths[0], lengths[1] + 1, (1,), generator=g))
        ids = vocab.audio_offset + torch.randint(0, vocab.codebook_size, (n,), generator=g)
        out.append(UtteranceInput(ids, torch.randn(n, D, generator=g)) if frames else ids)
    return out


def _convs(audio_input, vocab):
    lengths = [(1, 5), (2, 2), (3, 4), (4, 6)]
    convs = [_conv(vocab, s, n, audio_input == "frames") for s, n in lengths]
    if audio_input == "frames":  # one utterance longer than the window: DPM writes it in chunks
        convs[0][3] = _conv(vocab, 99, 1, True, lengths=(30, 30))[0]
    return convs


def _engine(memory, vocab):
    return ConversationEngine(memory, vocab.audio_end_id, vocab.emotion_ids, N_LIMIT)


def _dpm(model, vocab):
    return DPMMemory(model, vocab.emotion_ids, N_LIMIT, DPMConfig(rank=4, alpha=8.0, lr=1e-2, n_r=12, seed=3))


def test_dpm_stream_equals_per_sample_and_any_batch(setup, dlg):
    audio_input, model, vocab = setup
    mem = _dpm(model, vocab)
    try:
        convs = _convs(audio_input, vocab)
        one = dlg.engine_runs_agree(_engine(mem, vocab), convs, [f"c{i}" for i in range(len(convs))], 3)
        assert np.isfinite(np.concatenate([r.write_loss[1:] for r in one])).all()  # every later turn written
    finally:
        mem.close()


def test_frames_change_what_every_memory_reads():
    model, vocab = _model("frames")
    conv = _conv(vocab, 5, 3, True)
    moved = conv[:1] + [UtteranceInput(conv[1].ids, torch.randn(conv[1].frames.shape))] + conv[2:]
    recoded = conv[:1] + [UtteranceInput((conv[1].ids - vocab.audio_offset + 3) % 16 + vocab.audio_offset,
                                         conv[1].frames)] + conv[2:]
    for name, mem in [("none", ContextMemory.none(model, vocab.emotion_ids, N_LIMIT)),
                      ("window", ContextMemory.window(model, vocab.emotion_ids, N_LIMIT)),
                      ("dpm", _dpm(model, vocab))]:
        eng = _engine(mem, vocab)
        base, other, codes = (eng.run([c], keys=["k"])[0] for c in (conv, moved, recoded))
        np.testing.assert_array_equal(base.logits[0], other.logits[0])  # before the change
        assert not np.allclose(base.logits[1], other.logits[1]), name
        if name == "dpm":
            # new codes, same frames: the same input, but utterance 1's write has other targets (eq. 9)
            assert base.write_loss[1] != codes.write_loss[1]
            mem.close()
        else:
            np.testing.assert_array_equal(base.logits, codes.logits)  # codes are never read


def test_engine_refuses_a_batch_mixing_frames_and_ids():
    model, vocab = _model("frames")
    eng = _engine(ContextMemory.none(model, vocab.emotion_ids, N_LIMIT), vocab)
    with pytest.raises(ValueError, match="frames"):
        eng.run([_conv(vocab, 1, 2, True), _conv(vocab, 2, 2, False)], batch_size=2)


def test_live_conversation_with_frames_equals_the_streaming_run():
    model, vocab = _model("frames")
    eng = _engine(_dpm(model, vocab), vocab)
    conv = _conv(vocab, 7, 4, True)
    full = eng.run([conv], keys=["x"])[0]
    live = eng.open("x")
    got = np.stack([live.push(u)[0] for u in conv])
    np.testing.assert_allclose(got, full.logits, rtol=0, atol=1e-6)
    eng.memory.close()


def _mal(model, vocab, history_tokens=0):
    cfg = MALConfig(emotion_ids=vocab.emotion_ids, audio_id_range=(vocab.audio_offset, vocab.audio_end_id),
                    layer=1, history_tokens=history_tokens, memory=NeuralMemoryConfig(dim=16, init_lr=0.5))
    torch.manual_seed(1)
    mem = MALMemory.build(model, cfg)
    torch.nn.init.normal_(mem.adapter.to_out.weight, std=1.0)
    return mem


@pytest.mark.parametrize("history_tokens", [0, 8])
def test_mal_with_frames_streams_like_per_sample_and_reads_its_memory(history_tokens, dlg):
    model, vocab = _model("frames")
    mem = _mal(model, vocab, history_tokens)
    eng = _engine(mem, vocab)
    convs = [_conv(vocab, s, n, True) for s, n in ((61, 4), (62, 2), (63, 3))]
    one = dlg.engine_runs_agree(eng, convs)
    assert all(np.isfinite(a.write_loss).all() for a in one)
    # what utterance 0's frames wrote changes utterance 1's read (its own audio is the same)
    moved = [UtteranceInput(convs[0][0].ids, torch.randn(convs[0][0].frames.shape))] + convs[0][1:]
    again = eng.run([moved])[0]
    assert not np.allclose(again.logits[1], one[0].logits[1])


def test_mal_trainer_trains_on_frames():
    from convmem.train.mal_trainer import MALTrainConfig, UtteranceTokens, dialogue_window_batch, train_mal

    model, vocab = _model("frames")
    mem = _mal(model, vocab)
    dialogues = [[UtteranceTokens(u.ids, k % 4, u.frames) for k, u in enumerate(_conv(vocab, s, 3, True))]
                 for s in range(4)]
    batch = dialogue_window_batch(dialogues, 1, vocab.audio_end_id, history_tokens=4)
    assert batch.frames.shape == batch.input_ids.shape + (D,)
    own = batch.target_mask & (batch.input_ids != vocab.audio_end_id)
    assert torch.equal(batch.frames[0][own[0]], dialogues[0][1].frames)
    before = [p.clone() for p in mem.adapter.parameters()]
    res = train_mal(model, mem.adapter, dialogues, MALTrainConfig(epochs=1, batch_size=2, tbptt=2),
                    mem.cfg, vocab.audio_end_id, progress=False)
    assert res.losses and all(np.isfinite(res.losses))
    assert any(not torch.equal(a, b) for a, b in zip(before, mem.adapter.parameters()))


@pytest.mark.parametrize("write_emotion", ["token", "confidence"])
def test_dpm_writing_the_emotion_token_streams_like_per_sample(setup, write_emotion, dlg):
    """DPM's write also covers the emotion token written back after the previous utterance
    (`write_emotion`): still the per-sample protocol and any batch, and it changes what is written."""
    audio_input, model, vocab = setup
    cfg = lambda mode: DPMConfig(rank=4, alpha=8.0, lr=1e-2, n_r=12, seed=3, write_emotion=mode)  # noqa: E731
    convs = _convs(audio_input, vocab)
    keys = [f"c{i}" for i in range(len(convs))]
    with_token = DPMMemory(model, vocab.emotion_ids, N_LIMIT, cfg(write_emotion))
    plain = DPMMemory(model, vocab.emotion_ids, N_LIMIT, cfg("off"))
    try:
        one = dlg.engine_runs_agree(_engine(with_token, vocab), convs, keys, 3)
        off = _engine(plain, vocab).run(convs, keys=keys, batch_size=1)
    finally:
        with_token.close()
        plain.close()
    # utterance 0 is never written and is read by the fresh memory: the same either way
    for a, b in zip(one, off):
        np.testing.assert_array_equal(a.logits[0], b.logits[0])
    # utterance 1's write now also scores utterance 0's emotion token: another loss, other reads after
    assert all(a.write_loss[1] != b.write_loss[1] for a, b in zip(one, off))
    assert any(not np.allclose(a.logits[2:], b.logits[2:]) for a, b in zip(one, off) if len(a.logits) > 2)




def test_dpm_config_refuses_an_unknown_write_emotion():
    from convmem.errors import ConfigError

    with pytest.raises(ConfigError, match="write_emotion"):
        DPMConfig(write_emotion="gold")
    # stride stepping writes the last pending non-emotion tokens: it cannot carry the token
    with pytest.raises(ConfigError, match="needs stepping 'sentence' or 'surprise'"):
        DPMConfig(write_emotion="token", stepping="stride:64")


def test_dpm_write_emotion_off_is_eq9_whatever_weights_come_and_confidence_weights_the_token(setup):
    """`write_emotion: off` ignores the engine's emotion weights bit for bit; `confidence` and
    `token` weight the written-back token differently (so the loss differs)."""
    audio_input, model, vocab = setup
    from convmem.slm.audio_embedding import as_input

    eng = ConversationEngine(ContextMemory.window(model, vocab.emotion_ids, N_LIMIT), vocab.audio_end_id,
                             vocab.emotion_ids, N_LIMIT, "predicted")
    conv = _convs(audio_input, vocab)[3]
    cursor = eng.cursor()
    for u in conv[:2]:  # two turns read, their predicted tokens written back
        _, _ = eng.step(None, [cursor], [u])
    batch, _ = eng._make_batch([cursor], [as_input(conv[2])])
    assert float(batch.emotion_weight.max()) > 0  # the previous turn's token carries its confidence
    losses = {}
    for mode, weights in (("off", batch.emotion_weight), ("off", None), ("token", batch.emotion_weight),
                          ("confidence", batch.emotion_weight)):
        mem = DPMMemory(model, vocab.emotion_ids, N_LIMIT,
                        DPMConfig(rank=4, alpha=8.0, lr=1e-2, n_r=12, seed=3, write_emotion=mode))
        try:
            import dataclasses

            state = mem.init(1)
            state, loss = mem.write(state, dataclasses.replace(batch, emotion_weight=weights,
                                                               first=torch.zeros(1, dtype=torch.bool)))
            losses[(mode, weights is None)] = float(loss[0])
        finally:
            mem.close()
    assert losses[("off", False)] == losses[("off", True)]
    assert len({losses[("off", True)], losses[("token", False)], losses[("confidence", False)]}) == 3

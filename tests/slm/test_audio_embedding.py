"""slm.audio_input=frames: the SLM reads projected continuous frames at audio positions, codes stay
the L_a targets; the projector is saved and loaded with the model."""

import numpy as np
import pytest
import torch

from convmem.errors import ConfigError
from convmem.memory.batched_lora import find_lora_targets
from convmem.slm.audio_embedding import UtteranceInput, embed_inputs, model_inputs, projector_of
from convmem.slm.model import SLMConfig, build_model, load_model, make_vocab, save_model
from convmem.slm.stream import CodedDialogue, build_stream, dialogue_stream
from convmem.slm.windows import build_examples, collate, WindowConfig

LABELS = ("neu", "hap", "sad", "ang")
SMALL = dict(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, n_limit=64)
D = 8


def _frames_model(**kw):
    cfg = SLMConfig(**SMALL, audio_input="frames", **kw)
    vocab = make_vocab(cfg, 16, LABELS)
    return build_model(cfg, vocab, frame_dim=D).eval(), vocab


def _stream(vocab, seed=0, lengths=(5, 7, 4)):
    rng = np.random.default_rng(seed)
    codes = [rng.integers(0, 16, n) for n in lengths]
    frames = [rng.standard_normal((n, D)).astype(np.float32) for n in lengths]
    return codes, frames, build_stream(codes, vocab, ["neu", None, "ang"], frames=frames)


def _logits(model, stream):
    with torch.no_grad():
        return model(**model_inputs(model, stream.ids[None], stream.frames[None])).logits[0]


def test_config_and_build_refuse_inconsistent_settings():
    with pytest.raises(ConfigError, match="audio_input"):
        SLMConfig(audio_input="waves")
    cfg = SLMConfig(**SMALL, audio_input="frames")
    vocab = make_vocab(cfg, 16, LABELS)
    with pytest.raises(ConfigError, match="frame dim"):
        build_model(cfg, vocab)
    with pytest.raises(ConfigError, match="frame dim"):
        build_model(SLMConfig(**SMALL), vocab, frame_dim=D)
    codes_model = build_model(SLMConfig(**SMALL), vocab)
    assert projector_of(codes_model) is None
    ids = torch.tensor([[1, 2, 3]])
    assert set(model_inputs(codes_model, ids, None)) == {"input_ids"}
    with pytest.raises(ConfigError, match="reads audio codes"):
        model_inputs(codes_model, ids, torch.zeros(1, 3, D))
    model, _ = _frames_model()
    with pytest.raises(ConfigError, match="none were given"):
        model_inputs(model, ids, None)


def test_stream_carries_frames_aligned_with_ids():
    model, vocab = _frames_model()
    codes, frames, s = _stream(vocab)
    assert s.frames.shape == (len(s), D) and s.frames.dtype == torch.float32
    for u, f in enumerate(frames):
        start = int(s.utt_start[u])
        assert torch.equal(s.frames[start:start + len(f)], torch.from_numpy(f))
    audio = (s.ids >= vocab.audio_offset) & (s.ids < vocab.audio_end_id)
    assert (s.frames[~audio] == 0).all()
    # examples and batches slice the same frames as the ids
    ex = build_examples([s], vocab, "paper", WindowConfig(n_o=6, n_p=6, n_q=12), 64, history_free=True)
    assert all(e.frames.shape == (len(e.ids), D) for e in ex)
    batch = collate(ex, vocab.pad_id)
    assert batch.frames.shape == batch.input_ids.shape + (D,)
    assert (batch.frames[batch.attention_mask == 0] == 0).all()


def test_frames_decide_the_input_and_codes_the_targets():
    model, vocab = _frames_model()
    codes, frames, s = _stream(vocab)
    base = _logits(model, s)
    # other frames for utterance 1: its logits (and everything after it) change
    # (not a constant shift: the projector's LayerNorm removes that)
    moved = [f if i != 1 else np.random.default_rng(9).standard_normal(f.shape).astype(np.float32)
             for i, f in enumerate(frames)]
    s2 = build_stream(codes, vocab, ["neu", None, "ang"], frames=moved)
    changed = _logits(model, s2)
    first_of_1 = int(s.utt_start[1])
    assert torch.equal(base[:first_of_1], changed[:first_of_1])
    assert not torch.allclose(base[first_of_1:], changed[first_of_1:])
    # other codes, same frames: the input embeddings at audio positions are unchanged ...
    other = [(c + 5) % 16 for c in codes]
    s3 = build_stream(other, vocab, ["neu", None, "ang"], frames=frames)
    audio = (s.ids >= vocab.audio_offset) & (s.ids < vocab.audio_end_id)
    with torch.no_grad():
        e1 = embed_inputs(model, s.ids[None], s.frames[None])[0]
        e3 = embed_inputs(model, s3.ids[None], s3.frames[None])[0]
    assert torch.equal(e1, e3)  # non-audio ids are the same tokens too
    torch.testing.assert_close(_logits(model, s3), base, rtol=0, atol=0)
    # ... while the L_a targets are the new codes
    ex1 = collate(build_examples([s], vocab, "dense", WindowConfig(), 64), vocab.pad_id)
    ex3 = collate(build_examples([s3], vocab, "dense", WindowConfig(), 64), vocab.pad_id)
    assert not torch.equal(ex1.la_targets, ex3.la_targets)
    # a frames model's embedding at non-audio positions is embed(id)
    emb = model.get_input_embeddings()
    torch.testing.assert_close(e1[~audio], emb(s.ids[~audio]).detach())


def test_frames_model_save_load_round_trip(tmp_path):
    model, vocab = _frames_model()
    _, _, s = _stream(vocab, seed=3)
    out = save_model(model, tmp_path / "m")
    assert (out / "audio_projector.safetensors").is_file()
    loaded, v2, cfg2 = load_model(out)
    assert cfg2.audio_input == "frames" and v2 == vocab and projector_of(loaded) is not None
    assert torch.equal(_logits(loaded, s), _logits(model, s))
    # the HF weights file holds the LM only; the projector is not a DPM target
    from safetensors.torch import load_file

    assert not any(k.startswith("audio_projector") for k in load_file(str(out / "model.safetensors")))
    codes_model = build_model(SLMConfig(**SMALL), vocab)
    assert [t.name for t in find_lora_targets(loaded)] == [t.name for t in find_lora_targets(codes_model)]
    (out / "audio_projector.safetensors").unlink()
    with pytest.raises(ConfigError, match="audio_projector"):
        load_model(out)


def test_hf_backbone_frames_projector_trains_beside_lora_and_round_trips(tmp_path):
    from tests.slm.test_model import _hf_backbone

    backbone = _hf_backbone(tmp_path / "bb", tied=False, model_vocab=5)
    cfg = SLMConfig(backbone=str(backbone), n_limit=64, lora_r=4, lora_alpha=4, audio_input="frames")
    vocab = make_vocab(cfg, 16, LABELS)
    model = build_model(cfg, vocab, frame_dim=D)
    proj = projector_of(model)
    assert proj is not None and all(p.requires_grad for p in proj.parameters())
    assert not any("lora" in n for n, _ in proj.named_modules())  # never wrapped by PEFT
    _, _, s = _stream(vocab, seed=4)
    with torch.no_grad():
        proj.linear.weight.add_(0.1)  # a trained projector
    model.eval()
    expected = _logits(model, s)
    loaded, _, _ = load_model(save_model(model, tmp_path / "m"))
    torch.testing.assert_close(_logits(loaded, s), expected, rtol=0, atol=1e-5)


def test_utterance_input_aligns_frames_after_marks():
    cfg = SLMConfig(**SMALL, audio_input="frames", prosody_marks=True)
    vocab = make_vocab(cfg, 16, LABELS)
    f = np.ones((3, D), np.float32)
    x = vocab.utterance_input(np.array([1, 2, 3]), np.array([0, 1, 2, 3]), f)
    assert isinstance(x, UtteranceInput) and len(x) == 7 and x.frames.shape == (7, D)
    assert (x.frames[:3] == 1).all() and (x.frames[3:] == 0).all()
    with pytest.raises(ValueError, match="frames"):
        vocab.utterance_input(np.array([1, 2]), np.array([0, 1, 2, 3]), f)
    d = CodedDialogue("d", [(np.array([1, 2, 3]), "neu")], [np.array([0, 1, 2, 3])], [f])
    assert dialogue_stream(d, vocab).frames.shape == (d.n_tokens, D)


def test_utterance_summary_reads_each_utterances_frame_statistics_at_its_end():
    with pytest.raises(ConfigError, match="utterance_summary"):
        SLMConfig(utterance_summary=True)
    model, vocab = _frames_model(utterance_summary=True)
    codes, frames, s = _stream(vocab)
    proj = projector_of(model)
    ends = s.ids == vocab.audio_end_id
    audio = (s.ids >= vocab.audio_offset) & (s.ids < vocab.audio_end_id)
    with torch.no_grad():
        plain = torch.where(audio.unsqueeze(-1), proj(s.frames), model.get_input_embeddings()(s.ids))
        got = embed_inputs(model, s.ids[None], s.frames[None])[0]
        # by hand: mean and (population) std of each utterance's normalised frames
        want = plain.clone()
        for u, f in enumerate(frames):
            n = proj.norm(torch.from_numpy(f))
            stats = torch.cat([n.mean(0), (n.var(0, unbiased=False) + 1e-6).sqrt()])
            end = int(s.utt_start[u]) + len(f)
            assert bool(ends[end])
            want[end] += proj.summary(stats)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(got[ends], plain[ends])  # the summary is there ...
    assert torch.equal(got[~ends], plain[~ends])       # ... and only at <audio_end>
    # rows of a batch are summarised on their own, padding included
    longer = _stream(vocab, seed=5, lengths=(9, 3, 6))[2]
    t = max(len(s), len(longer))
    pad = lambda x, fill: torch.cat([x, x.new_full((t - len(x),) + x.shape[1:], fill)])  # noqa: E731
    ids = torch.stack([pad(s.ids, vocab.pad_id), pad(longer.ids, vocab.pad_id)])
    fr = torch.stack([pad(s.frames, 0.0), pad(longer.frames, 0.0)])
    with torch.no_grad():
        both = embed_inputs(model, ids, fr)
    torch.testing.assert_close(both[0, :len(s)], got, rtol=1e-5, atol=1e-5)


def test_utterance_summary_end_without_audio_reads_nothing_and_round_trips(tmp_path):
    model, vocab = _frames_model(utterance_summary=True)
    _, _, s = _stream(vocab, seed=2)
    first_end = int((s.ids == vocab.audio_end_id).nonzero()[0])
    cut_ids, cut_frames = s.ids[first_end:], s.frames[first_end:]  # a window that starts at an end
    with torch.no_grad():
        e = embed_inputs(model, cut_ids[None], cut_frames[None])[0]
    torch.testing.assert_close(e[0], model.get_input_embeddings()(cut_ids[:1])[0].detach())
    out = save_model(model, tmp_path / "m")
    loaded, _, cfg = load_model(out)
    assert cfg.utterance_summary and projector_of(loaded).summary is not None
    assert torch.equal(_logits(loaded, s), _logits(model, s))
    # a summary model's projector does not load as a plain one
    import json

    (out / "slm_config.json").write_text(json.dumps({**cfg.to_json(), "utterance_summary": False}))
    with pytest.raises(ConfigError, match="utterance_summary"):
        load_model(out)

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from convmem.errors import ConfigError
from convmem.slm.model import SLMConfig, build_model, make_vocab
from convmem.slm.stream import CodedDialogue, dialogue_stream
from convmem.slm.windows import Example, collate, build_examples
from convmem.train.checkpoint import latest_checkpoint
from convmem.train.loop import TrainConfig, epoch_batches, train_slm
from tests.train.tiny_data import LABELS, dialogues

SMALL = SLMConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, n_limit=64)


class Interrupt(Exception):
    pass


def _stop_at(k):
    def cb(step, losses):
        assert torch.isfinite(losses.total)
        if step == k:
            raise Interrupt
    return cb


@pytest.mark.parametrize("objective, code_noise", [("paper", 0.0), ("dense", 0.0), ("dense", 0.3)])
def test_interrupted_and_resumed_run_ends_with_the_same_weights(tmp_path, objective, code_noise):
    vocab = make_vocab(SMALL, 16, LABELS)
    data = dialogues()
    cfg = TrainConfig(lr=2e-3, epochs=2, batch_size=4, objective=objective, n_o=16, n_p=16, n_q=32,
                      checkpoint_every=3, log_every=1, seed=5, code_noise=code_noise)
    if objective == "dense":
        cfg.batch_size = 1  # few chunks: one per step so the run spans several checkpoints
    full = train_slm(build_model(SMALL, vocab), vocab, data, cfg, tmp_path / "a")
    steps = json.loads((tmp_path / "a" / "train_log.json").read_text())["history"][-1]["step"]
    assert steps >= 6
    with pytest.raises(Interrupt):
        train_slm(build_model(SMALL, vocab), vocab, data, cfg, tmp_path / "b", callback=_stop_at(steps - 2))
    ckpt = latest_checkpoint(tmp_path / "b")
    assert ckpt is not None and int(ckpt.name.split("-")[1]) < steps - 1  # resumes mid-run, re-does steps
    resumed = train_slm(build_model(SMALL, vocab), vocab, data, cfg, tmp_path / "b", resume=True)
    a, b = full.state_dict(), resumed.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-7, rtol=0), k
    start = build_model(SMALL, vocab).state_dict()
    assert any(not torch.equal(a[k], start[k]) for k in a)  # training did move the weights
    if code_noise:  # the noise reaches training: the same run without it ends elsewhere
        clean = train_slm(build_model(SMALL, vocab), vocab, data, replace(cfg, code_noise=0.0), tmp_path / "c")
        assert any(not torch.allclose(a[k], clean.state_dict()[k], atol=1e-5) for k in a)
    log = json.loads((tmp_path / "b" / "train_log.json").read_text())["history"]
    assert [h["step"] for h in log] == list(range(1, steps + 1))


def test_resume_refusals(tmp_path):
    vocab = make_vocab(SMALL, 16, LABELS)
    cfg = TrainConfig(lr=1e-3, epochs=1, batch_size=8, n_o=16, n_p=16, n_q=32, checkpoint_every=100)
    train_slm(build_model(SMALL, vocab), vocab, dialogues(), cfg, tmp_path)
    with pytest.raises(ConfigError, match="already holds training checkpoints"):
        train_slm(build_model(SMALL, vocab), vocab, dialogues(), cfg, tmp_path)
    fresh = build_model(SMALL, vocab)
    with pytest.raises(ConfigError, match="data or config changed.*examples"):
        train_slm(fresh, vocab, dialogues(seed=1), cfg, tmp_path, resume=True)
    untouched = build_model(SMALL, vocab).state_dict()
    assert all(torch.equal(v, untouched[k]) for k, v in fresh.state_dict().items())
    cfg.lr = 2e-3
    with pytest.raises(ConfigError, match=r"changed \(lr\)"):
        train_slm(build_model(SMALL, vocab), vocab, dialogues(), cfg, tmp_path, resume=True)
    cfg.lr, cfg.history_free = 1e-3, True  # more examples, and the flag itself is recorded
    with pytest.raises(ConfigError, match=r"changed \(examples, history_free, n_examples\)"):
        train_slm(build_model(SMALL, vocab), vocab, dialogues(), cfg, tmp_path, resume=True)
    cfg.history_free, cfg.code_noise = False, 0.1
    with pytest.raises(ConfigError, match=r"changed \(code_noise\)"):
        train_slm(build_model(SMALL, vocab), vocab, dialogues(), cfg, tmp_path, resume=True)
    with pytest.raises(ConfigError, match=r"code_noise must be in \[0, 1\)"):
        train_slm(build_model(SMALL, vocab), vocab, dialogues(), TrainConfig(code_noise=1.0), tmp_path / "z")
    with pytest.raises(ConfigError, match="objective 'mlm'"):
        train_slm(build_model(SMALL, vocab), vocab, dialogues(), TrainConfig(objective="mlm"), tmp_path / "x")
    with pytest.raises(ConfigError, match="no utterances"):
        train_slm(build_model(SMALL, vocab), vocab, [], cfg, tmp_path / "y")


def test_resume_is_refused_when_a_weight_setting_differs(tmp_path):
    """The fingerprint covers the architecture (init seed included) and every optimiser setting,
    not only the data and the schedule: each is named when it differs."""
    vocab = make_vocab(SMALL, 16, LABELS)
    cfg = TrainConfig(lr=1e-3, epochs=1, batch_size=8, n_o=16, n_p=16, n_q=32, checkpoint_every=100)
    train_slm(build_model(SMALL, vocab), vocab, dialogues(), cfg, tmp_path)
    for model_cfg, train_cfg, named in [
        (replace(SMALL, init_seed=7), cfg, "slm.init_seed"),
        (replace(SMALL, num_layers=1), cfg, "slm.num_layers"),
        (SMALL, replace(cfg, weight_decay=0.1), "weight_decay"),
        (SMALL, replace(cfg, grad_clip=0.5), "grad_clip"),
    ]:
        with pytest.raises(ConfigError, match=rf"changed \({named}\)"):
            train_slm(build_model(model_cfg, vocab), vocab, dialogues(), train_cfg, tmp_path, resume=True)
    train_slm(build_model(SMALL, vocab), vocab, dialogues(), cfg, tmp_path, resume=True)  # the same: resumes


def _emotion_accuracy(model, vocab, data):
    ex = build_examples((dialogue_stream(d, vocab) for d in data), vocab, "paper",
                        TrainConfig(n_o=16, n_p=16, n_q=32).windows, 64)
    ex = [e for e in ex if (e.le_labels != -100).any()]
    batch = collate(ex, vocab.pad_id)
    with torch.no_grad():
        out = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                    position_ids=batch.position_ids).logits[:, -1, list(vocab.emotion_ids)]
    return float((out.argmax(-1) == batch.le_labels[:, -1]).float().mean())


@pytest.mark.parametrize("objective", ["paper", "dense"])
def test_training_learns_emotions_and_audio(tmp_path, objective):
    torch.manual_seed(0)
    vocab = make_vocab(SMALL, 16, LABELS)
    data = dialogues(n_dialogues=6, n_utts=8, seed=2)
    model = build_model(SMALL, vocab)
    before = _emotion_accuracy(model.eval(), vocab, data)
    # dense packs a dialogue into ~2 chunks: smaller batches give it a comparable number of steps
    cfg = TrainConfig(lr=3e-3, epochs=12, batch_size=4 if objective == "paper" else 1, objective=objective,
                      n_o=16, n_p=16, n_q=32, checkpoint_every=1000, log_every=5, warmup_frac=0.0)
    model = train_slm(model, vocab, data, cfg, tmp_path)
    after = _emotion_accuracy(model, vocab, data)
    hist = json.loads((tmp_path / "train_log.json").read_text())["history"]
    assert after >= 0.9 and after > before + 0.3, (before, after)
    assert hist[-1]["L_a"] < hist[0]["L_a"] - 0.3  # codes of an utterance are predictable from its start
    assert hist[-1]["lr"] == pytest.approx(0.0, abs=1e-9)  # cosine schedule ran to its end


def test_epoch_batches_are_a_seeded_permutation_grouped_by_length():
    ex = [Example(torch.zeros(n, dtype=torch.long), torch.zeros(n), torch.zeros(n)) for n in range(1, 200)]
    b0 = epoch_batches(ex, epoch=0, batch_size=8, seed=1)
    assert sorted(i for b in b0 for i in b) == list(range(len(ex)))
    assert b0 == epoch_batches(ex, epoch=0, batch_size=8, seed=1)
    assert b0 != epoch_batches(ex, epoch=1, batch_size=8, seed=1)
    assert b0 != epoch_batches(ex, epoch=0, batch_size=8, seed=2)
    spread = np.mean([max(b) - min(b) for b in b0 if len(b) == 8])
    assert spread < 40  # random batches of 8 from 199 lengths would spread ~150


def test_train_config_check():
    with pytest.raises(ConfigError, match="batch_size must be >= 1"):
        TrainConfig(batch_size=0).check()
    with pytest.raises(ConfigError, match="schedule 'step'"):
        TrainConfig(schedule="step").check()


def test_lora_backbone_resume_matches_and_trains_only_adapters(tmp_path):
    from tests.slm.test_model import _hf_backbone

    cfg_slm = SLMConfig(backbone=str(_hf_backbone(tmp_path / "base", tied=False, model_vocab=8)),
                        lora_r=4, lora_alpha=4, n_limit=64)
    vocab = make_vocab(cfg_slm, 16, LABELS)
    data = dialogues(n_dialogues=2, n_utts=5)
    cfg = TrainConfig(lr=1e-2, epochs=2, batch_size=1, objective="dense", checkpoint_every=2, log_every=1)
    full = train_slm(build_model(cfg_slm, vocab), vocab, data, cfg, tmp_path / "a")
    with pytest.raises(Interrupt):
        train_slm(build_model(cfg_slm, vocab), vocab, data, cfg, tmp_path / "b", callback=_stop_at(3))
    resumed = train_slm(build_model(cfg_slm, vocab), vocab, data, cfg, tmp_path / "b", resume=True)
    start = build_model(cfg_slm, vocab)
    a, b, s = full.state_dict(), resumed.state_dict(), start.state_dict()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-7, rtol=0), k
        adapter = "lora_" in k or "trainable_tokens_delta" in k
        assert torch.equal(a[k], s[k]) == (not adapter), k  # adapters moved, the backbone did not


def _frames_dialogues(n_dialogues=6, n_utts=8, seed=2, dim=8):
    """Codes carry nothing; each emotion's frames lie around its own direction."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((4, dim)) * 2
    out = []
    for d in range(n_dialogues):
        utts, frames = [], []
        for _ in range(n_utts):
            k, n = int(rng.integers(0, 4)), int(rng.integers(3, 12))
            utts.append((rng.integers(0, 16, n).astype(np.int64), LABELS[k]))
            frames.append((centres[k] + 0.5 * rng.standard_normal((n, dim))).astype(np.float32))
        out.append(CodedDialogue(f"d{d}", utts, frames=frames))
    return out


def test_frames_model_learns_from_frames_and_resumes_exactly(tmp_path):
    from convmem.slm.audio_embedding import model_inputs

    cfg_slm = replace(SMALL, audio_input="frames")
    vocab = make_vocab(cfg_slm, 16, LABELS)
    data = _frames_dialogues()
    cfg = TrainConfig(lr=3e-3, epochs=8, batch_size=4, objective="paper", n_o=16, n_p=16, n_q=32,
                      checkpoint_every=5, log_every=1, warmup_frac=0.0, code_noise=0.2)
    model = train_slm(build_model(cfg_slm, vocab, 8), vocab, data, cfg, tmp_path / "a")
    ex = [e for e in build_examples((dialogue_stream(d, vocab) for d in data), vocab, "paper", cfg.windows, 64)
          if (e.le_labels != -100).any()]
    batch = collate(ex, vocab.pad_id)
    with torch.no_grad():
        out = model(**model_inputs(model, batch.input_ids, batch.frames), attention_mask=batch.attention_mask,
                    position_ids=batch.position_ids).logits[:, -1, list(vocab.emotion_ids)]
    assert float((out.argmax(-1) == batch.le_labels[:, -1]).float().mean()) >= 0.9
    with pytest.raises(Interrupt):
        train_slm(build_model(cfg_slm, vocab, 8), vocab, data, cfg, tmp_path / "b", callback=_stop_at(12))
    resumed = train_slm(build_model(cfg_slm, vocab, 8), vocab, data, cfg, tmp_path / "b", resume=True)
    for k, v in model.state_dict().items():
        assert torch.allclose(v, resumed.state_dict()[k], atol=1e-7, rtol=0), k
    with pytest.raises(ConfigError, match="lacks frames"):
        train_slm(build_model(cfg_slm, vocab, 8), vocab, dialogues(), cfg, tmp_path / "c")
    with pytest.raises(ConfigError, match="has frames"):
        train_slm(build_model(SMALL, vocab), vocab, data, cfg, tmp_path / "d")


@pytest.mark.parametrize("objective, batch_size, world", [("dense", 3, 2), ("paper", 5, 2), ("paper", 5, 3),
                                                          ("paper", 1, 2)])
def test_process_shares_add_up_to_the_whole_batch_loss(objective, batch_size, world):
    # what each process of `accelerate launch` computes, without launching: the shares' losses
    # (normalised by the whole batch) sum to the one-process loss, an empty share adds zero
    from convmem.train.loop import batch_norm, forward_losses, process_share

    vocab = make_vocab(SMALL, 16, LABELS)
    model = build_model(SMALL, vocab)
    cfg = TrainConfig(objective=objective, n_o=16, n_p=16, n_q=32)
    examples = build_examples((dialogue_stream(d, vocab, "gold") for d in dialogues()), vocab, objective,
                              cfg.windows, SMALL.n_limit)
    batch = collate(examples[:batch_size], vocab.pad_id)
    per_example = objective == "paper"
    whole = forward_losses(model, batch, vocab, per_example)
    norm = batch_norm(batch, per_example)
    parts = [forward_losses(model, process_share(batch, r, world), vocab, per_example, norm) for r in range(world)]
    for name in ("total", "audio", "emotion"):
        got = sum(float(getattr(p, name)) for p in parts)
        assert got == pytest.approx(float(getattr(whole, name)), rel=1e-5, abs=1e-7), name
    if batch_size < world:
        assert float(parts[-1].total) == 0.0

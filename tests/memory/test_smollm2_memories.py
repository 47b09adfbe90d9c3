"""The paper's SLLM on the packaged 30-layer SmolLM2-135M, end to end on a tiny slice: it trains
through the Accelerate loop, is saved and loaded, predicts, and DPM's streamed pass equals the
per-sample protocol with batched conversations independent; MAL attaches at a middle layer.

Lean on purpose (2 dialogues of 2-3 utterances of <= 6 codes, 2 training steps): every forward is
the full 30-layer model, and the suite must stay well inside CI's time."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from convmem.engine.conversation import ConversationEngine
from convmem.memory.mal import MALConfig, MALMemory
from convmem.memory.neural_memory import NeuralMemoryConfig
from convmem.memory.temp_lora import DPMConfig, DPMMemory
from convmem.slm.model import SLMConfig, build_model, load_model, make_vocab, save_model
from convmem.slm.stream import CodedDialogue
from convmem.train.loop import TrainConfig, train_slm

pytestmark = pytest.mark.slow

LABELS = ("neu", "hap", "sad", "ang")
D = 8
N_LIMIT = 24


def _slice(seed: int, n_utts: tuple[int, ...]) -> list[CodedDialogue]:
    """Dialogues of `n_utts` utterances, each 3..6 codes of a 16-code book with aligned frames."""
    rng = np.random.default_rng(seed)
    out = []
    for d, n in enumerate(n_utts):
        utts, frames = [], []
        for _ in range(n):
            k = int(rng.integers(0, 4))
            codes = rng.integers(0, 16, int(rng.integers(3, 7))).astype(np.int64)
            utts.append((codes, LABELS[k]))
            frames.append(rng.standard_normal((len(codes), D)).astype(np.float32))
        out.append(CodedDialogue(f"s{seed}d{d}", utts, frames=frames))
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the autouse one_thread fixture is per test; this builds before it
    try:
        yield _train_and_reload(tmp_path_factory)
    finally:
        torch.set_num_threads(threads)


def _train_and_reload(tmp_path_factory):
    cfg = SLMConfig(backbone="smollm2-135m", n_limit=N_LIMIT, audio_input="frames", utterance_summary=True)
    vocab = make_vocab(cfg, 16, LABELS)
    model = build_model(cfg, vocab, frame_dim=D)
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    out = tmp_path_factory.mktemp("smollm2")
    tc = TrainConfig(lr=1e-3, epochs=2, batch_size=2, objective="dense", max_steps=2, log_every=1,
                     warmup_frac=0.0)
    model = train_slm(model, vocab, _slice(0, (3, 2)), tc, out / "train")
    moved = {n for n, p in model.named_parameters() if not torch.equal(p, start[n])}
    saved = save_model(model, out / "slm")
    loaded, vocab2, _ = load_model(saved)
    return model, moved, loaded.requires_grad_(False), vocab2


def test_tiny_slice_trains_only_lora_new_rows_and_projector_and_predicts(trained):
    model, moved, loaded, vocab = trained
    assert moved and all(("lora_" in n or "trainable_tokens_delta" in n or "audio_projector" in n) for n in moved)
    assert any("lora_" in n for n in moved) and any("audio_projector" in n for n in moved)
    assert any("trainable_tokens_delta" in n for n in moved)
    convs = [d.inputs(vocab) for d in _slice(1, (2, 3))]
    # the saved (merged) model predicts what the trained PEFT model predicts
    from convmem.slm.audio_embedding import model_inputs

    utt = convs[0][0]
    ids = torch.cat([utt.ids, torch.tensor([vocab.audio_end_id])])[None]
    frames = torch.cat([utt.frames, utt.frames.new_zeros(1, D)])[None]
    with torch.no_grad():
        a = model(**model_inputs(model, ids, frames)).logits[0, -1, list(vocab.emotion_ids)]
        b = loaded(**model_inputs(loaded, ids, frames)).logits[0, -1, list(vocab.emotion_ids)]
    assert torch.allclose(a, b, atol=1e-4)


def test_dpm_streams_like_per_sample_with_independent_conversations(trained, dlg):
    _, _, model, vocab = trained
    # the paper's temporary LoRA (r 64 / alpha 64, every linear layer of all 30 blocks); a large lr
    # so that every write visibly moves the next read
    convs = [d.inputs(vocab) for d in _slice(2, (3, 2))]
    mem = DPMMemory(model, vocab.emotion_ids, N_LIMIT, DPMConfig(lr=1e-3, n_r=8, seed=1))
    try:
        assert len(mem.lora.targets) == 30 * 7
        eng = ConversationEngine(mem, vocab.audio_end_id, vocab.emotion_ids, N_LIMIT)
        one = dlg.engine_runs_agree(eng, convs, ["a", "b"], batch_size=2, atol=1e-4)
        assert all(np.isfinite(r.write_loss[1:]).all() for r in one)
    finally:
        mem.close()
    still = DPMMemory(model, vocab.emotion_ids, N_LIMIT, DPMConfig(lr=1e-12, n_r=8, seed=1))
    try:
        unwritten = ConversationEngine(still, vocab.audio_end_id, vocab.emotion_ids, N_LIMIT).run(convs[:1], ["a"])[0]
    finally:
        still.close()
    np.testing.assert_allclose(unwritten.logits[0], one[0].logits[0], atol=1e-5)  # nothing written before turn 1
    assert not np.allclose(unwritten.logits[2], one[0].logits[2], atol=1e-4)  # the writes changed turn 3's read


def test_mal_attaches_to_the_middle_of_30_layers_and_streams_like_per_sample(trained, dlg):
    _, _, model, vocab = trained
    cfg = MALConfig(emotion_ids=vocab.emotion_ids, audio_id_range=(vocab.audio_offset, vocab.audio_end_id),
                    memory=NeuralMemoryConfig(dim=16, init_lr=0.5))
    torch.manual_seed(1)
    mem = MALMemory.build(model, cfg)
    torch.nn.init.normal_(mem.adapter.to_out.weight, std=0.1)
    assert mem.layer_index == 15
    eng = ConversationEngine(mem, vocab.audio_end_id, vocab.emotion_ids, N_LIMIT)
    one = dlg.engine_runs_agree(eng, [d.inputs(vocab) for d in _slice(3, (3, 2))], atol=1e-4)
    assert all(np.isfinite(r.logits).all() and np.isfinite(r.write_loss).all() for r in one)

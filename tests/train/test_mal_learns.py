"""Issue 23 acceptance: on a corpus where the speaker's habit decides the label, a MAL trained with
the default outer-loop settings changes a clear fraction of `none`'s predictions and is more
accurate on held-out speakers.

The corpus (token ids only): audio ids 4..51 are 8 "levels" of 6 ids each, 52..55 filler. Every
dialogue is one speaker with a habitual level b (uniform in 1..6); each utterance sits one level
below or above that habit, and its label says which (0 = below, 1 = above). One utterance alone
is ambiguous whenever both b - 1 and b + 1 are possible habits (2/3 of the turns, so the Bayes
rule of the utterance alone is ~67 % correct); the speaker's earlier turns resolve it.

The backbone is a tiny Llama trained on single utterances of *other* speakers (so it is `none`:
the utterance alone, not fitted to the dialogues MAL trains on), then frozen.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from convmem.memory.mal import MALConfig, MALMemory
from convmem.memory.neural_memory import NeuralMemoryConfig
from convmem.train.mal_trainer import MALTrainConfig, UtteranceTokens, dialogue_window_batch, train_mal

AUDIO = (4, 56)
END = 56
EMOTIONS = (60, 61)
LEVELS, BUCKET, FILLER = 8, 6, (52, 56)
N_TRAIN, N_VAL, N_TEST = 48, 16, 96  # dialogues of 8 utterances
MIN_CHANGED, MIN_GAIN = 0.12, 0.06  # the acceptance: share of none's predictions changed, WA gain


def habit_corpus(n: int, seed: int, n_utt: int = 8, n_tok: int = 6) -> list[list[UtteranceTokens]]:
    """n one-speaker dialogues; a speaker = a habit level drawn afresh, so every seed is new speakers."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        habit = int(torch.randint(1, LEVELS - 1, (1,), generator=g))
        utts = []
        for _ in range(n_utt):
            above = int(torch.randint(0, 2, (1,), generator=g))
            level = habit + (1 if above else -1)
            ids = 4 + BUCKET * level + torch.randint(0, BUCKET, (n_tok,), generator=g)
            noisy = torch.rand(n_tok, generator=g) < 0.2
            ids = torch.where(noisy, torch.randint(*FILLER, (n_tok,), generator=g), ids)
            utts.append(UtteranceTokens(ids, above))
        out.append(utts)
    return out


def utterance_backbone(seed: int = 0, steps: int = 300):
    """A 2-layer Llama trained on single utterances (each batch fresh speakers), then frozen."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    model = LlamaForCausalLM(LlamaConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=4, attn_implementation="sdpa"))
    utts = [u for d in habit_corpus(400, seed=7) for u in d]
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        pick = torch.randint(0, len(utts), (32,), generator=g).tolist()
        ids = torch.stack([torch.cat([utts[i].audio_ids, torch.tensor([END])]) for i in pick])
        logits = model(input_ids=ids).logits[:, -1][:, list(EMOTIONS)]
        loss = F.cross_entropy(logits, torch.tensor([utts[i].label for i in pick]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.zero_grad(set_to_none=True)
    return model.eval().requires_grad_(False)


@torch.no_grad()
def stream_predictions(memory: MALMemory, dialogues) -> tuple[torch.Tensor, torch.Tensor]:
    """(predicted, gold) int64[n_dialogues, n_utt], every utterance written then read in order."""
    state = memory.init(len(dialogues))
    preds, gold = [], []
    for i in range(len(dialogues[0])):
        batch = dialogue_window_batch(dialogues, i, END, 0)
        state, _ = memory.write(state, batch)
        preds.append(memory.read(state, batch).argmax(-1))
        gold.append(torch.tensor([d[i].label for d in dialogues]))
    return torch.stack(preds, 1), torch.stack(gold, 1)


def _trained_mal(backbone, train_cfg: MALTrainConfig):
    cfg = MALConfig(emotion_ids=EMOTIONS, audio_id_range=AUDIO, layer=0, memory=NeuralMemoryConfig(dim=16))
    torch.manual_seed(5)
    memory = MALMemory.build(backbone, cfg)
    # training and validation speakers are disjoint from each other and from the test speakers
    result = train_mal(backbone, memory.adapter, habit_corpus(N_TRAIN, seed=1), train_cfg, cfg, END,
                       progress=False, val_dialogues=habit_corpus(N_VAL, seed=3))
    return memory, result


def test_mal_learns_the_speaker_habit_that_none_cannot_see(one_thread) -> None:
    backbone = utterance_backbone()
    test = habit_corpus(N_TEST, seed=2)  # held-out speakers
    none = MALMemory.build(backbone, MALConfig(emotion_ids=EMOTIONS, audio_id_range=AUDIO, enabled=False))
    none_pred, gold = stream_predictions(none, test)
    none_acc = float((none_pred == gold).float().mean())
    assert 0.6 < none_acc < 0.85  # near the utterance-alone Bayes rule: the task needs memory

    memory, result = _trained_mal(backbone, MALTrainConfig())
    mal_pred, _ = stream_predictions(memory, test)
    changed = float((mal_pred != none_pred).float().mean())
    mal_acc = float((mal_pred == gold).float().mean())
    assert result.best_epoch >= 1 and len(result.val_losses) >= 2
    # seeded, but the backbone's initialisation is transformers' own, so the figures move with its
    # version: 23.4 % changed, none 72.7 % -> MAL 80.0 % (old settings: 14.1 %, 77.1 %) with one,
    # 17.8 %, 67.8 % -> 81.0 % (old settings: 1.3 %, 68.4 %) with transformers 5.24
    assert changed >= MIN_CHANGED, f"MAL changed only {changed:.1%} of none's predictions"
    assert mal_acc >= none_acc + MIN_GAIN, f"MAL {mal_acc:.1%} vs none {none_acc:.1%} on held-out speakers"
    # the memory, not the utterance, is what helps: later turns (more history) gain more than the first
    first, later = (mal_pred == gold)[:, 0].float().mean(), (mal_pred == gold)[:, 4:].float().mean()
    assert later > first


def test_the_old_outer_loop_settings_leave_mal_inert(one_thread) -> None:
    # control: the settings MAL had before issue 23 (3 epochs at lr 1e-3) do not pass the thresholds
    # above, so the acceptance test measures training, not the corpus
    backbone = utterance_backbone()
    test = habit_corpus(N_TEST, seed=2)
    none = MALMemory.build(backbone, MALConfig(emotion_ids=EMOTIONS, audio_id_range=AUDIO, enabled=False))
    none_pred, gold = stream_predictions(none, test)
    memory, _ = _trained_mal(backbone, MALTrainConfig(epochs=3, lr=1e-3, val_sessions=0))
    mal_pred, _ = stream_predictions(memory, test)
    changed = float((mal_pred != none_pred).float().mean())
    gain = float((mal_pred == gold).float().mean() - (none_pred == gold).float().mean())
    assert not (changed >= MIN_CHANGED and gain >= MIN_GAIN), (changed, gain)

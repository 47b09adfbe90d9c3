"""Outer-loop training of the MAL adapter on training dialogues (the backbone stays frozen).

Projections, gate, the memory's initial weights M_0 and the theta/eta/alpha heads are learned with
the emotion cross-entropy of scored utterances, backpropagating through the memory writes across
K consecutive utterances of each dialogue (truncated backprop through time: the state is detached
every K utterances, and the optimizer steps once per K-utterance segment). Training streams
dialogues through the very `MALMemory.write/read` used at inference, so the trained adapter is the
one evaluated.

Length and selection: up to `epochs` passes, and, given validation dialogues (the study holds out
whole sessions from inside the training sessions, never the test fold), the adapter kept is the one
of the epoch with the lowest validation cross-entropy; `patience` epochs without improvement stop
the run. A backbone that has fit its own training dialogues leaves little training signal there,
so the validation pass is also what tells whether MAL helps beyond the utterance alone.

Input types are minimal on purpose: a dialogue is a list of `UtteranceTokens` (audio ids + label
index or None); the window of utterance i is [history prefix..., audio ids..., <audio_end>].
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from convmem.config import Count, Index, NonNegative, Positive, Range, Seed
from convmem.errors import ConfigError
from convmem.memory.base import WindowBatch
from convmem.memory.mal import MALConfig, MALMemory
from convmem.memory.mal_layer import MALAdapter


@dataclass
class UtteranceTokens:
    """One utterance of a tokenised dialogue.

    Attributes:
        audio_ids: int64[n] audio token ids (vocab ids, inside MALConfig.audio_id_range), then the
            utterance's prosody mark ids when the model reads marks (never written into the memory).
        label: index into MALConfig.emotion_ids, or None (context only, never scored).
        frames: float32[n, D] continuous frames aligned with audio_ids (zeros at marks) for a model
            that reads frames (slm/audio_embedding.py), else None.
    """

    audio_ids: torch.Tensor
    label: int | None = None
    frames: torch.Tensor | None = None


Dialogue = Sequence[UtteranceTokens]


@dataclass
class MALTrainConfig:
    """Outer-loop settings.

    Attributes:
        epochs: the most passes over the training dialogues (fewer when validation stops early).
        batch_size: dialogues streamed side by side (memory rows).
        tbptt: K, utterances per truncated-backprop segment (one optimizer step per segment).
        lr, weight_decay: AdamW on the adapter parameters only — MAL's own rate, not the SLM's:
            the adapter starts as the identity and must grow a residual that reaches the argmax.
        max_grad_norm: clip of the adapter gradient (outer loop; the inner one has its own).
        patience: epochs without a lower validation cross-entropy before stopping (with validation).
        val_sessions: whole training sessions the study holds out for that validation (0 = none:
            train every epoch and keep the last adapter).
        copies: speaker-perturbed copies of every training dialogue made for MAL alone (the study's
            `augment` perturbation drawn apart from the SLM's own copies, so their voices are
            mostly ones the SLM did not train on; a draw can land near the original voice). Why:
            the backbone has fit its own training speakers' habits, so on them it leaves MAL
            little to correct; on a copy's moved voices it misreads habits as it does on an unseen
            speaker, which is what MAL's memory of the speaker's earlier turns is there to fix.
            Validation then also reads the held-out sessions' copies. 0 = off (measured not to
            help: docs/experiments/mal-that-learns.md).
        seed: shuffling seed.
    """

    epochs: Count = 30
    batch_size: Count = 8
    tbptt: Count = 4
    lr: Positive = 3e-3
    weight_decay: NonNegative = 0.01
    max_grad_norm: Positive = 1.0
    patience: Count = 5
    val_sessions: Index = 1
    copies: Annotated[int, Range(0, 16)] = 0
    seed: Seed = 0

    def __post_init__(self) -> None:
        if not isinstance(self.val_sessions, int) or self.val_sessions < 0:
            raise ConfigError(f"mal_train.val_sessions must be an integer >= 0, got {self.val_sessions!r}")
        if isinstance(self.copies, bool) or not isinstance(self.copies, int) or not 0 <= self.copies <= 16:
            raise ConfigError(f"mal_train.copies must be an integer in [0, 16], got {self.copies!r}")
        for name in ("epochs", "batch_size", "tbptt", "patience"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ConfigError(f"mal_train.{name} must be an integer >= 1, got {getattr(self, name)!r}")
        for name in ("lr", "max_grad_norm"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"mal_train.{name} must be > 0, got {getattr(self, name)!r}")


@dataclass
class MALTrainResult:
    """What the outer loop did.

    Attributes:
        losses: mean emotion CE of every optimizer step, in order.
        val_losses, val_accuracies: validation CE and accuracy after each epoch, starting with the
            fresh adapter (index 0 = before training); empty without validation dialogues.
        best_epoch: the epoch whose adapter was kept (1-based; the last one without validation).
    """

    losses: list[float] = field(default_factory=list)
    val_losses: list[float] = field(default_factory=list)
    val_accuracies: list[float] = field(default_factory=list)
    best_epoch: int = 0


def dialogue_window_batch(
    dialogues: Sequence[Dialogue | None], index: int, audio_end_id: int, history_tokens: int, pad_id: int = 0
) -> WindowBatch:
    """Windows of utterance `index` of each dialogue, left-padded into a WindowBatch.

    A row whose dialogue is None or shorter than index+1 is inactive (its window is a lone
    `<audio_end>` that nothing writes or scores).
    """
    rows, row_frames, targets, active = [], [], [], []
    end = torch.tensor([audio_end_id], dtype=torch.long)
    dims = {u.frames.shape[1] if u.frames is not None else None for d in dialogues if d is not None for u in d}
    if len(dims) > 1:
        raise ValueError("dialogue_window_batch: some utterances carry frames and some do not")
    dim = dims.pop() if dims else None

    def with_end(u: UtteranceTokens) -> tuple[torch.Tensor, torch.Tensor | None]:
        ids = torch.cat([u.audio_ids.long().cpu(), end])
        return ids, None if dim is None else torch.cat([u.frames.float().cpu(), torch.zeros(1, dim)])

    for dialogue in dialogues:
        if dialogue is None or index >= len(dialogue):
            rows.append(end)
            row_frames.append(None if dim is None else torch.zeros(1, dim))
            targets.append(0)
            active.append(False)
            continue
        pieces = [with_end(u) for u in (dialogue[:index] if history_tokens > 0 else [])] + [with_end(dialogue[index])]
        keep = len(pieces[-1][0]) + (min(history_tokens, sum(len(p[0]) for p in pieces[:-1])) if index > 0 else 0)
        rows.append(torch.cat([p[0] for p in pieces])[-keep:])
        row_frames.append(None if dim is None else torch.cat([p[1] for p in pieces])[-keep:])
        targets.append(len(pieces[-1][0]))
        active.append(True)
    width = max(len(r) for r in rows)
    batch = len(rows)
    input_ids = torch.full((batch, width), pad_id, dtype=torch.long)
    attention = torch.zeros((batch, width), dtype=torch.long)
    target = torch.zeros((batch, width), dtype=torch.bool)
    frames = None if dim is None else torch.zeros((batch, width, dim), dtype=torch.float32)
    for b, (row, n_target) in enumerate(zip(rows, targets)):
        input_ids[b, width - len(row):] = row
        attention[b, width - len(row):] = 1
        target[b, width - n_target:] = n_target > 0
        if frames is not None:
            frames[b, width - len(row):] = row_frames[b]
    return WindowBatch(
        input_ids=input_ids,
        attention_mask=attention,
        target_mask=target,
        end_pos=torch.full((batch,), width - 1, dtype=torch.long),
        active=torch.tensor(active),
        first=torch.tensor([a and index == 0 for a in active]),
        frames=frames,
    )


def _labels(dialogues: Sequence[Dialogue], index: int) -> torch.Tensor:
    """int64[B]: label of utterance `index` per row, -100 where unscored or past the end."""
    out = []
    for d in dialogues:
        label = d[index].label if index < len(d) else None
        out.append(-100 if label is None else int(label))
    return torch.tensor(out, dtype=torch.long)


def check_dialogues(dialogues: Sequence[Dialogue], mal_cfg: MALConfig,
                    mark_id_range: tuple[int, int] | None = None) -> None:
    """Raise ValueError naming dialogue and utterance for ids outside the audio range (and outside
    `mark_id_range`, the prosody mark ids (first, last + 1) of a model that reads them) or bad labels."""
    first, stop = mal_cfg.audio_id_range
    m_first, m_stop = mark_id_range or (0, 0)
    n_emotions = len(mal_cfg.emotion_ids)
    for d, dialogue in enumerate(dialogues):
        if len(dialogue) == 0:
            raise ValueError(f"dialogue {d}: no utterances")
        for u, utt in enumerate(dialogue):
            ids = utt.audio_ids
            if ids.dim() != 1 or ids.numel() == 0:
                raise ValueError(f"dialogue {d}, utterance {u}: audio_ids must be a non-empty 1-D tensor")
            if bool((((ids < first) | (ids >= stop)) & ((ids < m_first) | (ids >= m_stop))).any()):
                marks = f" or the mark ids {m_first}..{m_stop - 1}" if mark_id_range else ""
                raise ValueError(f"dialogue {d}, utterance {u}: audio id outside audio_id_range {first}..{stop - 1}{marks}")
            if utt.label is not None and not 0 <= utt.label < n_emotions:
                raise ValueError(f"dialogue {d}, utterance {u}: label {utt.label} not in [0, {n_emotions})")


def _batches(items: Sequence, size: int) -> Iterable[Sequence]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def train_mal(
    model: nn.Module,
    adapter: MALAdapter,
    train_dialogues: Sequence[Dialogue],
    cfg: MALTrainConfig,
    mal_cfg: MALConfig,
    audio_end_id: int,
    progress: bool = True,
    mark_id_range: tuple[int, int] | None = None,
    val_dialogues: Sequence[Dialogue] | None = None,
    backbone_of: Sequence[int] | None = None,
    val_backbone_of: Sequence[int] | None = None,
) -> MALTrainResult:
    """Train `adapter` in place on `train_dialogues`; the backbone `model` is frozen and untouched.
    `mark_id_range`: (first, last + 1) ids of the prosody marks when the model reads them.
    `val_dialogues`: dialogues kept out of training whose cross-entropy picks the epoch kept (and
    stops the run after `cfg.patience` epochs without improvement); None or [] = keep the last.

    Cross-fitting (study/crossfit.py): `model` may be a sequence of frozen backbones, and then
    `backbone_of[i]` (`val_backbone_of[i]`) is the index of the one that reads training (validation)
    dialogue i: a backbone that never heard its speakers, so MAL learns from the errors it will meet
    on unseen ones. A batch streams dialogues of one backbone; one adapter learns from all.

    Returns the per-step losses and the validation curve. Raises RuntimeError if any backbone
    gradient appeared.
    """
    if not mal_cfg.enabled:
        raise ConfigError("mal.enabled is false: there is no adapter to train")
    check_dialogues(train_dialogues, mal_cfg, mark_id_range)
    val = list(val_dialogues or [])
    if val:
        check_dialogues(val, mal_cfg, mark_id_range)
    models = list(model) if isinstance(model, (list, tuple)) else [model]
    backbone_of = [0] * len(train_dialogues) if backbone_of is None else list(backbone_of)
    val_backbone_of = [0] * len(val) if val_backbone_of is None else list(val_backbone_of)
    if len(backbone_of) != len(train_dialogues) or len(val_backbone_of) != len(val) or not all(
            0 <= b < len(models) for b in backbone_of + val_backbone_of):
        raise ConfigError("train_mal: every training and validation dialogue needs the index of its backbone")
    memories = [MALMemory(m, adapter, mal_cfg, differentiable=True) for m in models]
    memory = memories[0]
    was_training = [m.training for m in models]
    flags = [[p.requires_grad for p in m.parameters()] for m in models]
    for m in models:
        m.eval().requires_grad_(False)
    opt = torch.optim.AdamW(adapter.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)
    device = next(adapter.parameters()).device
    result = MALTrainResult()
    best: dict[str, torch.Tensor] | None = None
    n_batches = -(-len(train_dialogues) // cfg.batch_size) * cfg.epochs
    bar = tqdm(total=n_batches, desc="train MAL", disable=not progress)
    try:
        if val:
            _validate(memories, val, val_backbone_of, audio_end_id, cfg.batch_size, result)
        for epoch in range(1, cfg.epochs + 1):
            adapter.train()
            order = torch.randperm(len(train_dialogues), generator=gen).tolist()
            if len(models) == 1:
                groups = [(memory, g) for g in _batches([train_dialogues[i] for i in order], cfg.batch_size)]
            else:  # batches of one backbone each, in a shuffled order
                groups = [(memories[b], g) for b in range(len(models))
                          for g in _batches([train_dialogues[i] for i in order if backbone_of[i] == b], cfg.batch_size)]
                groups = [groups[i] for i in torch.randperm(len(groups), generator=gen).tolist()]
            for mem, group in groups:
                _train_group(mem, group, cfg, audio_end_id, opt, device, result)
                bar.update(1)
                if result.losses:
                    bar.set_postfix(loss=f"{result.losses[-1]:.3f}")
            if not val:
                result.best_epoch = epoch
                continue
            _validate(memories, val, val_backbone_of, audio_end_id, cfg.batch_size, result)
            # epoch 0 (the identity adapter) is reported, never kept: the run exists to train MAL
            if best is None or result.val_losses[-1] < result.val_losses[result.best_epoch]:
                result.best_epoch = epoch
                best = {k: v.detach().clone() for k, v in adapter.state_dict().items()}
            elif epoch - result.best_epoch >= cfg.patience:
                break
    finally:
        bar.close()
        adapter.eval()
        for m, training, own in zip(models, was_training, flags):
            m.train(training)
            for p, flag in zip(m.parameters(), own):
                p.requires_grad_(flag)
    if best is not None:
        adapter.load_state_dict(best)
    if any(p.grad is not None for m in models for p in m.parameters()):
        raise RuntimeError("a backbone parameter received a gradient: MAL must leave the backbone frozen")
    return result


def _validate(memories: Sequence[MALMemory], val: Sequence[Dialogue], backbone_of: Sequence[int],
              audio_end_id: int, batch_size: int, result: MALTrainResult) -> None:
    """Validation CE and accuracy over every validation dialogue, each read by its own backbone."""
    memories[0].adapter.eval()
    if len(memories) == 1:
        ce, acc, _ = evaluate_mal(memories[0], val, audio_end_id, batch_size)
        result.val_losses.append(ce)
        result.val_accuracies.append(acc)
        return
    ce = acc = n = 0.0
    for b, memory in enumerate(memories):
        mine = [d for d, k in zip(val, backbone_of) if k == b]
        if mine:
            c, a, count = evaluate_mal(memory, mine, audio_end_id, batch_size)
            ce, acc, n = ce + c * count, acc + a * count, n + count
    result.val_losses.append(ce / n)
    result.val_accuracies.append(acc / n)


def _train_group(
    memory: MALMemory,
    group: Sequence[Dialogue],
    cfg: MALTrainConfig,
    audio_end_id: int,
    opt: torch.optim.Optimizer,
    device: torch.device,
    result: MALTrainResult,
) -> None:
    """Stream one batch of dialogues, stepping the optimizer every `cfg.tbptt` utterances."""
    state = memory.init(len(group))
    n_utt = max(len(d) for d in group)
    for start in range(0, n_utt, cfg.tbptt):
        total = torch.zeros((), device=device)
        count = 0
        for index in range(start, min(start + cfg.tbptt, n_utt)):
            batch = dialogue_window_batch(group, index, audio_end_id, memory.history_tokens or 0)
            state, _ = memory.write(state, batch)
            labels = _labels(group, index).to(device)
            if bool((labels >= 0).any()):
                logits = memory.read(state, batch)
                total = total + F.cross_entropy(logits, labels, ignore_index=-100, reduction="sum")
                count += int((labels >= 0).sum())
        if count:
            opt.zero_grad(set_to_none=True)
            (total / count).backward()
            nn.utils.clip_grad_norm_(memory.adapter.parameters(), cfg.max_grad_norm)
            opt.step()
            result.losses.append(float(total.detach()) / count)
        state = state.detach()


@torch.no_grad()
def evaluate_mal(
    memory: MALMemory, dialogues: Sequence[Dialogue], audio_end_id: int, batch_size: int = 8
) -> tuple[float, float, int]:
    """Streams dialogues (write then read) and scores labelled utterances.

    Returns: (mean emotion cross-entropy, accuracy, number of scored utterances).
    """
    device = next(memory.adapter.parameters()).device
    loss_sum, correct, count = 0.0, 0, 0
    for group in _batches(list(dialogues), batch_size):
        state = memory.init(len(group))
        for index in range(max(len(d) for d in group)):
            batch = dialogue_window_batch(group, index, audio_end_id, memory.history_tokens or 0)
            state, _ = memory.write(state, batch)
            labels = _labels(group, index).to(device)
            scored = labels >= 0
            if not bool(scored.any()):
                continue
            logits = memory.read(state, batch)
            loss_sum += float(F.cross_entropy(logits[scored], labels[scored], reduction="sum"))
            correct += int((logits[scored].argmax(-1) == labels[scored]).sum())
            count += int(scored.sum())
    if count == 0:
        raise ValueError("no labelled utterance to evaluate")
    return loss_sum / count, correct / count, count


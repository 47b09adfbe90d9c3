"""Training of the classifier baseline (slm/classifier.py) on the `window` memory's windows.

Windows ("same windows as `window`"): for each scored utterance of a training dialogue, the
dialogue's token stream — per utterance its audio ids, `<audio_end>` and, in training, its GOLD
emotion token (unscored turns get none, as in slm/stream.py) — cut to the last `n_limit` tokens
ending at the utterance's `<audio_end>`. That is exactly what ConversationEngine hands
ClassifierMemory at inference, except that there the earlier emotion tokens are the classifier's
own predictions (never gold).

Defaults (ClassifierTrainConfig): AdamW at lr 1e-4 (paper §4.2), 20 epochs and batch size 1 (the
paper's); set `epochs`/`batch_size` from the experiment config for shorter runs. Batches group
windows of similar length (train.loop.epoch_batches, as the SLM loop) so little compute goes to
padding.
The frozen embedding is not given to the optimizer. HF Accelerate places the model and runs the
backward pass and clipping, as in the SLM's training loop; unlike that loop this one does not
shard batches across processes, so run it as one process (`python`, not a multi-process launch).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from tqdm.auto import tqdm

from convmem.config import Count, NonNegative, Positive, Seed
from convmem.errors import ConfigError
from convmem.slm.classifier import EmotionClassifier
from convmem.slm.stream import Stream
from convmem.train.loop import epoch_batches


@dataclass
class ClassifierWindow:
    """One training example: ids int64[T] ending at the utterance's `<audio_end>`, label index."""

    ids: torch.Tensor
    label: int


@dataclass(frozen=True)
class ClassifierTrainConfig:
    """lr 1e-4, epochs 20 and batch size 1 are the paper's (§4.2); the rest are common defaults."""

    lr: Positive = 1e-4
    weight_decay: NonNegative = 0.01
    epochs: Count = 20
    batch_size: Count = 1
    grad_clip: NonNegative = 1.0  # max global grad norm; 0 = no clipping
    seed: Seed = 0
    progress: bool = True

    def __post_init__(self) -> None:
        if self.lr <= 0 or self.epochs < 1 or self.batch_size < 1 or self.grad_clip < 0 or self.weight_decay < 0:
            raise ConfigError(f"classifier training needs lr > 0, epochs >= 1, batch_size >= 1, "
                              f"grad_clip >= 0, weight_decay >= 0; got {self}")


def windows_from_stream(stream: Stream, n_limit: int) -> list[ClassifierWindow]:
    """The `window` memory's window of every scored utterance of a training stream.

    Args:
        stream: a dialogue's training stream (slm.stream.dialogue_stream: gold emotion tokens).
        n_limit: the model's context window in tokens.
    Returns: one ClassifierWindow per utterance with a label, ids int64[min(n_limit, end + 1)].
    """
    if n_limit < 1:
        raise ValueError(f"n_limit must be >= 1, got {n_limit}")
    out = []
    for i in range(stream.n_utterances):
        label = int(stream.labels[i])
        if label < 0:
            continue
        end = int(stream.audio_end_pos[i]) + 1
        out.append(ClassifierWindow(stream.ids[max(0, end - n_limit):end].clone(), label))
    return out


def windows_from_dialogue(utterance_ids: Sequence[torch.Tensor], labels: Sequence[int | None],
                          audio_end_id: int, emotion_ids: Sequence[int], n_limit: int) -> list[ClassifierWindow]:
    """Windows of the scored utterances of one dialogue given as vocabulary ids.

    Args:
        utterance_ids: per utterance int64[n_i] vocabulary ids of its audio codes.
        labels: per utterance its gold label index into `emotion_ids`, or None (context only).
        audio_end_id, emotion_ids: vocabulary ids of `<audio_end>` and the emotion tokens (label order).
        n_limit: the model's context window in tokens.
    Returns: one ClassifierWindow per labelled utterance, in order.
    """
    if len(utterance_ids) != len(labels):
        raise ValueError(f"{len(utterance_ids)} utterances but {len(labels)} labels")
    pieces, starts, ends, emo_pos, labs = [], [], [], [], []
    n = 0
    for i, (ids, lab) in enumerate(zip(utterance_ids, labels)):
        if lab is not None and not 0 <= lab < len(emotion_ids):
            raise ValueError(f"utterance {i}: label {lab} outside [0, {len(emotion_ids)})")
        audio = torch.as_tensor(ids, dtype=torch.long).flatten()
        tail = [audio_end_id] + ([emotion_ids[lab]] if lab is not None else [])
        pieces.append(torch.cat([audio, torch.tensor(tail, dtype=torch.long)]))
        starts.append(n)
        ends.append(n + audio.numel())
        emo_pos.append(n + audio.numel() + 1 if lab is not None else -1)
        labs.append(-1 if lab is None else int(lab))
        n += pieces[-1].numel()
    as_t = lambda xs: torch.tensor(xs, dtype=torch.long)  # noqa: E731
    stream = Stream(ids=torch.cat(pieces) if pieces else as_t([]), utt_start=as_t(starts),
                    audio_end_pos=as_t(ends), emotion_pos=as_t(emo_pos), labels=as_t(labs))
    return windows_from_stream(stream, n_limit)


def collate_windows(windows: Sequence[ClassifierWindow], pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Left-pad windows like the engine's WindowBatch.

    Returns: (input_ids int64[B, T], attention_mask int64[B, T], labels int64[B]).
    """
    T = max(w.ids.numel() for w in windows)
    ids = torch.full((len(windows), T), pad_id, dtype=torch.long)
    mask = torch.zeros((len(windows), T), dtype=torch.long)
    for b, w in enumerate(windows):
        ids[b, T - w.ids.numel():] = w.ids
        mask[b, T - w.ids.numel():] = 1
    return ids, mask, torch.tensor([w.label for w in windows], dtype=torch.long)


def _check_windows(windows: Sequence[ClassifierWindow], clf: EmotionClassifier) -> None:
    if not windows:
        raise ValueError("train_classifier: no training windows (no scored utterances?)")
    for i, w in enumerate(windows):
        if w.ids.dim() != 1 or w.ids.numel() == 0:
            raise ValueError(f"training window {i}: ids must be a non-empty 1-D tensor, got shape {tuple(w.ids.shape)}")
        if int(w.ids.min()) < 0 or int(w.ids.max()) >= clf.vocab_size:
            raise ValueError(f"training window {i}: ids outside the embedding's vocabulary [0, {clf.vocab_size})")
        if not 0 <= int(w.label) < clf.config.n_labels:
            raise ValueError(f"training window {i}: label {w.label} outside [0, {clf.config.n_labels})")


def train_classifier(clf: EmotionClassifier, windows_dataset: Sequence[ClassifierWindow],
                     cfg: ClassifierTrainConfig = ClassifierTrainConfig()) -> EmotionClassifier:
    """Train `clf`'s encoder and head with cross-entropy on the windows' labels.

    Seeded: the same classifier init, windows and cfg give the same weights.
    Returns: the trained classifier (the same module, unwrapped, in eval mode).
    """
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    _check_windows(windows_dataset, clf)
    set_seed(cfg.seed)  # dropout draws
    accelerator = Accelerator()
    optimizer = torch.optim.AdamW(clf.trainable_parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    model, optimizer = accelerator.prepare(clf, optimizer)
    n_batches = -(-len(windows_dataset) // cfg.batch_size)
    bar = tqdm(total=cfg.epochs * n_batches, desc="classifier", unit="batch", disable=not cfg.progress)
    model.train()
    for epoch in range(cfg.epochs):
        total, seen = 0.0, 0
        # the SLM loop's batching: a fresh shuffle per epoch, batches of similar-length windows
        for batch in epoch_batches(windows_dataset, epoch, cfg.batch_size, cfg.seed):
            ids, mask, labels = collate_windows([windows_dataset[i] for i in batch])
            ids, mask, labels = (t.to(accelerator.device) for t in (ids, mask, labels))
            loss = torch.nn.functional.cross_entropy(model(ids, mask), labels)
            optimizer.zero_grad(set_to_none=True)
            accelerator.backward(loss)
            if cfg.grad_clip > 0:
                accelerator.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            total += float(loss.detach()) * labels.numel()
            seen += labels.numel()
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{total / seen:.4f}")
    bar.close()
    clf = accelerator.unwrap_model(model)
    return clf.eval()

"""One explicit training loop for the emotion SLM, on HF Accelerate.

`Accelerator` owns device placement, `backward` and gradient clipping, so the same code runs
under `python` or `accelerate launch`. The data order is a pure function of (seed, epoch) and the
step counter, so a run resumed from a checkpoint sees exactly the batches the uninterrupted run
would have seen and ends with the same weights.

Several processes (`accelerate launch --num_processes P`): `TrainConfig.batch_size` is the
*global* batch, the same whatever P. Every process forms the step's whole batch (and its code
noise) as one process would, takes rows r, r+P, r+2P, ... of it, and divides its loss sums by the
whole batch's counts (`slm.loss.LossNorm`), so the processes' losses add up to the one-process
loss; DDP averages gradients over the processes, so each backpropagates P times its share. Steps,
learning rates, logged losses (summed over the processes) and weights are the one-process run's
up to float rounding (tests/train/test_distributed_training.py). Rank 0 alone writes the log and
each checkpoint, except that every process adds its RNG state (`random_states_<rank>.pkl`) to it.

Objectives (`slm.windows`): "paper" = eq. 3–7 windows, one per utterance; "dense" = packed
chunks of n_limit tokens, every token an L_a target and every scored `<audio_end>` an L_e target.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from convmem.config import Count, Index, NonNegative, Positive, Proportion, Seed
from convmem.errors import ConfigError
from convmem.fileio import atomic_write_json
from convmem.slm.audio_embedding import model_inputs
from convmem.slm.code_noise import corrupt_codes
from convmem.slm.loss import IGNORE, Losses, LossNorm, loss_norm, slm_loss
from convmem.slm.stream import TRAIN_EMOTION_TOKENS, CodedDialogue, dialogue_stream
from convmem.slm.vocab import EmotionVocab
from convmem.slm.windows import Batch, Example, WindowConfig, build_examples, collate
from convmem.train.checkpoint import (TrainProgress, latest_checkpoint, load_checkpoint, read_meta,
                                      save_checkpoint)

OBJECTIVES = ("paper", "dense")
SCHEDULES = ("constant", "linear", "cosine")
LOG_FILE = "train_log.json"
# Batches are formed among this many batches' worth of shuffled examples sorted by length, so
# a batch holds windows of similar length (little padding) while the order stays random.
BUCKET_BATCHES = 16


@dataclass
class TrainConfig:
    """Training settings.

    lr 5e-5 is the paper's (LoRA on a pretrained LLM); a from-scratch tiny backbone needs a larger
    one (1e-3 .. 3e-3). The default objective is "dense": it supervises every scored utterance
    once per epoch at a fraction of the paper windows' compute (each paper window re-reads up to
    n_q = 1024 tokens of history for one utterance; see benchmarks/bench_train.py), and its
    in-chunk history is the history the `window` baseline reads. "paper" is eq. 3–7 verbatim.
    n_o, n_p, n_q only apply to "paper" (defaults: `slm.windows.WindowConfig`).
    """

    lr: Positive = 5e-5
    epochs: Count = 20
    batch_size: Count = 8  # the global batch: split among the processes under accelerate launch
    grad_clip: NonNegative = 1.0
    weight_decay: NonNegative = 0.0
    schedule: str = "cosine"
    warmup_frac: Proportion = 0.03
    seed: Seed = 0
    objective: str = "dense"
    n_o: Count = 256
    n_p: Index = 768
    n_q: Count = 1024
    checkpoint_every: Count = 200
    keep_checkpoints: Count = 2
    log_every: Count = 10
    max_steps: Count | None = None  # stop early (the schedule still spans all epochs)
    # "gold": earlier utterances' gold emotion tokens in the stream (the paper); "none": no emotion
    # tokens, labels only as L_e targets. With strong emotional inertia "gold" teaches the model to
    # copy the previous token, which at inference is its own (possibly wrong) prediction.
    # "predicted": every turn's token is an out-of-fold prediction (CodedDialogue.tokens: inner
    # backbones that never trained on the session read the turn alone, study/crossfit.py), standing
    # in for the model's own at inference: it learns how far to trust them.
    emotion_tokens: str = "gold"
    # Also train on every scored utterance alone (no history), as the `none` baseline and every
    # dialogue's first turn are read; see slm.windows ("History-free examples"). Not in the paper.
    history_free: bool = False
    # Fraction of input audio codes replaced by random codes in each training batch (slm.code_noise:
    # stops the model memorising training utterances). Not in the paper; 0 = off.
    code_noise: Proportion = 0.0

    def check(self) -> None:
        if self.emotion_tokens not in TRAIN_EMOTION_TOKENS:
            raise ConfigError(f"train config: emotion_tokens {self.emotion_tokens!r} not one of {TRAIN_EMOTION_TOKENS}")
        if self.objective not in OBJECTIVES:
            raise ConfigError(f"train config: objective {self.objective!r} not one of {OBJECTIVES}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"train config: schedule {self.schedule!r} not one of {SCHEDULES}")
        for name in ("epochs", "batch_size", "checkpoint_every", "log_every", "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise ConfigError(f"train config: {name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.code_noise < 1.0:
            raise ConfigError(f"train config: code_noise must be in [0, 1), got {self.code_noise}")
        if not self.lr > 0 or self.grad_clip < 0 or not 0 <= self.warmup_frac < 1:
            raise ConfigError(f"train config: need lr > 0, grad_clip >= 0, 0 <= warmup_frac < 1; got "
                              f"{self.lr}, {self.grad_clip}, {self.warmup_frac}")

    @property
    def windows(self) -> WindowConfig:
        return WindowConfig(n_o=self.n_o, n_p=self.n_p, n_q=self.n_q)


def epoch_batches(examples: Sequence[Example], epoch: int, batch_size: int, seed: int) -> list[list[int]]:
    """Batches (lists of example indices) of one epoch: a pure function of its arguments.

    `examples` may be any sequence of objects with an `ids` tensor (only lengths are read).
    """
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(examples))
    lengths = np.array([len(e.ids) for e in examples])
    batches: list[list[int]] = []
    span = batch_size * BUCKET_BATCHES
    for g in range(0, len(order), span):
        group = order[g:g + span]
        group = group[np.argsort(-lengths[group], kind="stable")]
        batches.extend(group[i:i + batch_size].tolist() for i in range(0, len(group), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW over the trainable parameters."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ConfigError("model has no trainable parameters")
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def _fingerprint(examples: Sequence[Example], cfg: TrainConfig, world: int) -> dict:
    h = hashlib.sha256()
    for e in examples:
        h.update(e.ids.numpy().tobytes())
        h.update(e.la_targets.numpy().tobytes())
        h.update(e.le_labels.numpy().tobytes())
        if e.frames is not None:
            h.update(e.frames.numpy().tobytes())
    keys = ("objective", "n_o", "n_p", "n_q", "batch_size", "epochs", "seed", "lr", "schedule", "warmup_frac",
            "emotion_tokens", "history_free", "code_noise")
    return {"examples": h.hexdigest()[:16], "n_examples": len(examples), "world_size": world,
            **{k: getattr(cfg, k) for k in keys}}


def _weight_settings(cfg: TrainConfig, slm_cfg) -> dict:
    """The rest of what decides the weights: the optimiser's other settings and the whole
    architecture (init_seed included), as `slm.<field>`. Recorded beside `_fingerprint`'s keys;
    a checkpoint saved before they were recorded is compared on the keys it has."""
    from dataclasses import is_dataclass

    arch = asdict(slm_cfg) if is_dataclass(slm_cfg) else {}
    return {"grad_clip": cfg.grad_clip, "weight_decay": cfg.weight_decay,
            **{f"slm.{k}": v for k, v in arch.items()}}


def forward_losses(model: torch.nn.Module, batch, vocab: EmotionVocab, per_example: bool,
                   norm: LossNorm | None = None) -> Losses:
    """Eq. 7 losses of a collated `Batch` (already on the model's device); with `norm` (of the whole
    batch, `batch_norm`), this share's part of the whole batch's losses."""
    inner = getattr(model, "module", model)  # what a DDP wrapper (multi-process Accelerate) wraps
    out = model(**model_inputs(inner, batch.input_ids, batch.frames), attention_mask=batch.attention_mask,
                position_ids=batch.position_ids, logits_to_keep=batch.n_keep, use_cache=False)
    la, le = _kept_targets(batch)
    return slm_loss(out.logits, la, le, vocab, per_example=per_example, norm=norm)


def _kept_targets(batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """(L_a targets, L_e labels) int64[B, n_keep or T] where the logits are kept."""
    la, le = batch.la_targets, batch.le_labels
    if batch.n_keep:
        la, le = la[:, -batch.n_keep:], le[:, -batch.n_keep:]
    return la, le


def batch_norm(batch: Batch, per_example: bool) -> LossNorm:
    """What the whole `batch`'s eq. 7 means divide by (the counts every process's share uses)."""
    return loss_norm(*_kept_targets(batch), per_example)


def process_share(batch: Batch, rank: int, world: int) -> Batch:
    """Rows rank, rank + world, ... of `batch` (B rows, T columns kept: same padding as the whole).

    A process left without a row (B < world) gets row 0 with no targets: it still runs forward
    and backward, which DDP's gradient all-reduce needs from every process, and adds nothing."""
    rows = torch.arange(rank, batch.input_ids.shape[0], world)
    empty = rows.numel() == 0
    if empty:
        rows = torch.zeros(1, dtype=torch.long)
    pick = lambda t: None if t is None else t[rows]  # noqa: E731
    share = Batch(pick(batch.input_ids), pick(batch.attention_mask), pick(batch.position_ids),
                  pick(batch.la_targets), pick(batch.le_labels), batch.n_keep, pick(batch.frames))
    if empty:
        share.la_targets = torch.full_like(share.la_targets, IGNORE)
        share.le_labels = torch.full_like(share.le_labels, IGNORE)
    return share


def train_slm(model: torch.nn.Module, vocab: EmotionVocab, train_dialogues: Sequence[CodedDialogue],
              cfg: TrainConfig, out_dir: str | os.PathLike, resume: bool = False,
              callback: Callable[[int, Losses], None] | None = None) -> torch.nn.Module:
    """Train `model` (from `slm.model.build_model`) on coded dialogues; return the trained module.

    Checkpoints go to `out_dir/checkpoints` every `cfg.checkpoint_every` steps and at the end; the
    log (step, epoch, loss, L_a, L_e, lr, tokens/s) to `out_dir/train_log.json`.
    `resume=True` continues from the latest checkpoint (or starts fresh when there is none) and
    ends with the weights an uninterrupted run would have; `resume=False` refuses an `out_dir`
    that already holds checkpoints. `callback(step, losses)` runs after each step (after that
    step's checkpoint), e.g. to stop a run by raising.
    """
    from accelerate import Accelerator
    from tqdm.auto import tqdm
    from transformers import get_scheduler

    cfg.check()
    slm_cfg = getattr(model, "slm_config", None)
    if slm_cfg is None:
        raise ConfigError("train_slm: model lacks slm_config (its n_limit); build it with slm.model.build_model")
    n_limit = slm_cfg.n_limit
    wrong = [d.dialogue_id for d in train_dialogues if (d.frames is not None) != slm_cfg.reads_frames]
    if wrong:
        raise ConfigError(f"train_slm: the model reads {slm_cfg.audio_input} at audio positions, and dialogue "
                          f"{wrong[0]!r} {'lacks' if slm_cfg.reads_frames else 'has'} frames")
    examples = build_examples((dialogue_stream(d, vocab, cfg.emotion_tokens) for d in train_dialogues), vocab,
                              cfg.objective, cfg.windows, n_limit, history_free=cfg.history_free)
    if not examples:
        raise ConfigError("training data holds no utterances to train on")
    per_example = cfg.objective == "paper"

    accelerator = Accelerator()
    world, rank = accelerator.num_processes, accelerator.process_index
    # one step = one global batch of cfg.batch_size examples, split among the processes
    steps_per_epoch = math.ceil(len(examples) / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    stop = min(total, cfg.max_steps) if cfg.max_steps else total

    optimizer = make_optimizer(model, cfg)
    # Accelerate steps a prepared scheduler once per process per call: count steps the same way.
    scheduler = get_scheduler(cfg.schedule if cfg.schedule != "constant" else "constant_with_warmup",
                              optimizer, num_warmup_steps=int(cfg.warmup_frac * total) * world,
                              num_training_steps=total * world)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    progress = TrainProgress()
    expected = _fingerprint(examples, cfg, world)
    recorded = {**expected, **json.loads(json.dumps(_weight_settings(cfg, slm_cfg)))}
    accelerator.register_for_checkpointing(progress)

    ckpt = latest_checkpoint(out_dir)
    if ckpt is not None and not resume:
        raise ConfigError(f"{out_dir} already holds training checkpoints ({ckpt.name}); resume to "
                          f"continue, or choose another output dir")
    if ckpt is not None:
        # Checked before loading, so a refused resume leaves `model` untouched.
        saved = read_meta(ckpt).get("fingerprint", {})
        diff = sorted(k for k in recorded if saved.get(k) != recorded[k] and (k in expected or k in saved))
        if diff:
            raise ConfigError(f"cannot resume from {ckpt}: data or config changed ({', '.join(diff)})")
        load_checkpoint(accelerator, ckpt)

    params = [p for p in model.parameters() if p.requires_grad]
    model.train()
    batches, batches_epoch = None, -1
    tokens, t0 = 0, time.perf_counter()
    bar = tqdm(total=stop, initial=progress.step, desc=f"train {cfg.objective}", unit="step",
               disable=not accelerator.is_local_main_process, dynamic_ncols=True)
    try:
        while progress.step < stop:
            epoch, b = divmod(progress.step, steps_per_epoch)
            if epoch != batches_epoch:
                batches, batches_epoch = epoch_batches(examples, epoch, cfg.batch_size, cfg.seed), epoch
            batch = collate([examples[i] for i in batches[b]], vocab.pad_id)
            # drawn over the whole global batch (the trailing 0 kept so one-process runs draw
            # as they always did), so every process count corrupts the same codes
            batch = corrupt_codes(batch, vocab, cfg.code_noise, (cfg.seed, progress.step, 0))
            if world == 1:  # the batch means, exactly as one-process runs always computed them
                batch = batch.to(accelerator.device)
                losses = forward_losses(model, batch, vocab, per_example)
                accelerator.backward(losses.total)
            else:
                norm = batch_norm(batch, per_example)
                batch = process_share(batch, rank, world).to(accelerator.device)
                part = forward_losses(model, batch, vocab, per_example, norm)
                accelerator.backward(part.total * world)  # DDP averages the gradients: undo its 1/world
                # the whole batch's losses, for the log, the bar and the callback
                total, audio, emotion = accelerator.reduce(
                    torch.stack([part.total, part.audio, part.emotion]).detach(), "sum")
                losses = Losses(total=total, audio=audio, emotion=emotion)
            if cfg.grad_clip > 0:
                accelerator.clip_grad_norm_(params, cfg.grad_clip)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            progress.step += 1
            tokens += batch.n_tokens
            bar.update(1)
            bar.set_postfix(loss=f"{losses.total.item():.3f}", L_a=f"{losses.audio.item():.3f}",
                            L_e=f"{losses.emotion.item():.3f}", epoch=epoch)
            if progress.step % cfg.log_every == 0 or progress.step == stop:
                dt = time.perf_counter() - t0
                progress.history.append({
                    "step": progress.step, "epoch": epoch, "loss": losses.total.item(),
                    "L_a": losses.audio.item(), "L_e": losses.emotion.item(),
                    "lr": scheduler.get_last_lr()[0], "tokens_per_s": tokens / dt if dt > 0 else None})
                tokens, t0 = 0, time.perf_counter()
                if accelerator.is_main_process:
                    atomic_write_json(os.path.join(out_dir, LOG_FILE),
                                      {"config": asdict(cfg), "history": progress.history})
            if progress.step % cfg.checkpoint_every == 0 or progress.step == stop:
                save_checkpoint(accelerator, out_dir, progress.step, keep_last=cfg.keep_checkpoints,
                                meta={"fingerprint": recorded})
            if callback is not None:
                callback(progress.step, losses)
    finally:
        bar.close()
    model.eval()
    return accelerator.unwrap_model(model)

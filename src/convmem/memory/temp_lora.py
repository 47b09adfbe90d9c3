"""DPM (Dynamic Parameter Memory): a temporary LoRA per conversation, written at test time.

Mai et al., §3.2 and Algorithm 1. The emotion SLM is frozen. Each conversation row owns a
temporary LoRA (A seeded, B = 0, so a fresh memory changes nothing) and its own optimizer state.
For utterance i >= 2 the memory predicts utterance i's tokens (audio ids and `<audio_end>`) from
the n_r tokens before its start (eq. 8, 11), takes the mean next-token loss L_t (eq. 9), and steps
the temporary LoRA only. Utterance i's emotion is then read from the logits at its `<audio_end>`
restricted to the emotion ids, with the temporary LoRA active. Dropping the state discards the
memory; nothing is stored outside it.

Batched: B rows run in one forward/backward through `BatchedLoRA`; each row's adapter only
sees its own activations, so summing the per-row mean losses gives every row exactly its own
gradient, and `RowAdamW` steps each row with its own moments and step count.

eq. 10 (n_limit >= n_max + n_r): an utterance whose prefix + tokens exceed n_limit is written in
consecutive chunks of n_limit - n_r target positions, each preceded by the n_r tokens before it,
one optimizer step (x steps_per_write) per chunk; such writes are counted in
`DPMState.chunked_writes`. Reads use the last n_limit tokens ending at `<audio_end>`.

The state is explicit but updated in place for speed (a 7B model's adapters are large): `write`
returns the same object it was given. Keep a `copy.deepcopy` if you need the old one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
from dataclasses import dataclass
from typing import Annotated, ClassVar, Sequence

import torch
from torch import nn

from convmem.config import AnyNumber, Count, Index, NonNegative, Positive, Proportion, Range, Seed
from convmem.errors import ConfigError
from convmem.memory.base import WindowBatch
from convmem.memory.batched_lora import ALL_LINEAR, BatchedLoRA
from convmem.memory.row_adamw import RowOptState, make_row_optimizer
from convmem.memory.stepping import SteppingState, make_stepping
from convmem.slm.audio_embedding import model_inputs


@dataclass
class DPMConfig:
    """Hyper-parameters of the temporary LoRA memory; defaults are the paper's where it gives one.

    Attributes:
        rank, alpha: temporary LoRA rank and alpha (paper: 64, 64).
        target_modules: "all-linear" (paper: all linear layers, output head excluded) or a list of
            module short names, e.g. ["q_proj", "v_proj"].
        include_lm_head: also adapt the output head.
        optimizer: "adamw" (paper) or "sgd".
        lr: learning rate (paper: 5e-5).  weight_decay: decoupled decay (paper unspecified; 0).
        betas, eps: AdamW moments (torch defaults).  momentum: SGD only.
        steps_per_write: optimizer steps per written chunk (paper: 1).
        n_r: prefix tokens before the written span (eq. 8); None = n_limit // 2 (512 for 1024).
        stepping: "sentence" (paper), "stride:N" or "surprise" (see convmem.memory.stepping).
        surprise_k, surprise_warmup: threshold mean + k * std, and losses always written first.
        seed: base seed of the A init; a row's A depends only on (seed, conversation key).
        write_emotion: what a write learns of emotions (not in the paper's code; its text says the
            LoRA "encodes both the content and the emotional context"). "off": utterance i's
            codes and `<audio_end>` only (eq. 9). "token": also the emotion token the engine wrote
            back after utterance i-1 (the model's own prediction, read at i-1), from i-1's
            `<audio_end>`, with the softmax restricted to the emotion tokens (eq. 5) and weight 1,
            so later reads lean towards the conversation's emotions. "confidence": the same, weighted
            by the model's probability of that prediction. Lagging one utterance keeps the write
            causal: i's own emotion is read after i is written (Algorithm 1).
    """

    rank: Count = 64
    alpha: Positive = 64.0
    target_modules: str | tuple[str, ...] = ALL_LINEAR
    include_lm_head: bool = False
    optimizer: str = "adamw"
    lr: Positive = 5e-5
    weight_decay: NonNegative = 0.0
    betas: tuple[Proportion, Proportion] = (0.9, 0.999)
    eps: Positive = 1e-8
    momentum: Proportion = 0.0
    steps_per_write: Count = 1
    n_r: Index | None = None
    stepping: str = "sentence"
    surprise_k: AnyNumber = 0.0
    surprise_warmup: Annotated[int, Range(2)] = 2
    seed: Seed = 0
    write_emotion: str = "off"

    def __post_init__(self) -> None:
        # the invariants Range annotations cannot say; read from YAML, keys, types and ranges are
        # checked first by convmem.config.from_dict, the one loader of every config section
        self.validate()

    def validate(self, where: str = "dpm config") -> None:
        """Raise ConfigError naming the first field with a wrong type or value."""
        def num(x) -> bool:
            return isinstance(x, (int, float)) and not isinstance(x, bool)

        def whole(x) -> bool:
            return isinstance(x, int) and not isinstance(x, bool)

        checks = [
            ("rank", whole(self.rank) and self.rank >= 1, "an integer >= 1"),
            ("alpha", num(self.alpha) and self.alpha > 0, "a number > 0"),
            ("target_modules", self.target_modules == ALL_LINEAR or (
                isinstance(self.target_modules, (tuple, list)) and len(self.target_modules) > 0
                and all(isinstance(m, str) for m in self.target_modules)),
             f"{ALL_LINEAR!r} or a non-empty list of module names"),
            ("include_lm_head", isinstance(self.include_lm_head, bool), "true or false"),
            ("optimizer", self.optimizer in ("adamw", "sgd"), "'adamw' or 'sgd'"),
            ("lr", num(self.lr) and self.lr > 0, "a number > 0"),
            ("weight_decay", num(self.weight_decay) and self.weight_decay >= 0, "a number >= 0"),
            ("betas", isinstance(self.betas, (tuple, list)) and len(self.betas) == 2
             and all(num(b) and 0 <= b < 1 for b in self.betas), "two numbers in [0, 1)"),
            ("eps", num(self.eps) and self.eps > 0, "a number > 0"),
            ("momentum", num(self.momentum) and 0 <= self.momentum < 1, "a number in [0, 1)"),
            ("steps_per_write", whole(self.steps_per_write) and self.steps_per_write >= 1,
             "an integer >= 1"),
            ("n_r", self.n_r is None or (whole(self.n_r) and self.n_r >= 0),
             "null or an integer >= 0"),
            ("stepping", isinstance(self.stepping, str), "'sentence', 'stride:N' or 'surprise'"),
            ("surprise_k", num(self.surprise_k), "a number"),
            ("surprise_warmup", whole(self.surprise_warmup), "an integer >= 2"),
            ("seed", whole(self.seed), "an integer"),
            ("write_emotion", self.write_emotion in WRITE_EMOTION, " or ".join(map(repr, WRITE_EMOTION))),
        ]
        for name, ok, expected in checks:
            if not ok:
                raise ConfigError(f"{where}: {name} = {getattr(self, name)!r}, expected {expected}")
        try:
            make_stepping(self.stepping, self.surprise_k, self.surprise_warmup)
        except ValueError as e:
            raise ConfigError(f"{where}: {e}") from None
        if self.write_emotion != "off" and self.stepping.startswith("stride"):
            # stride stepping writes the last pending non-emotion tokens: it would drop the
            # emotion target and miscount the pending span
            raise ConfigError(f"{where}: write_emotion = {self.write_emotion!r} needs stepping 'sentence' or "
                              f"'surprise', not {self.stepping!r}")


WRITE_EMOTION = ("off", "token", "confidence")


def conversation_seed(base_seed: int, key: str) -> int:
    """63-bit seed of a conversation's A: a stable hash (not Python's salted hash) of seed and key."""
    digest = hashlib.blake2b(f"{base_seed}\x1f{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


@dataclass
class DPMState:
    """Everything DPM remembers about B conversation rows (drop it to discard the memories).

    Attributes:
        lora_A: {target: float32[B, r, in]}   per-row temporary LoRA A.
        lora_B: {target: float32[B, out, r]}  per-row temporary LoRA B (zero when fresh).
        opt: per-row optimizer moments and step counts (`RowOptState`, step: int64[B]).
        stepping: per-row stepping bookkeeping (`SteppingState`).
        seed: int64[B] seed each row's A was drawn from.
        conversations: int64[B] conversations started on each row (resets).
        writes: int64[B] write calls that stepped the row; skipped_writes: eligible calls
            (active, not first) that did not (stepping said no, or nothing predictable).
        chunked_writes: int64[B] writes that needed > 1 chunk (eq. 10); chunks_written: int64[B]
            chunks written in all.  truncated_tokens: int64[B] stride tokens lost from the window.
    """

    lora_A: dict[str, torch.Tensor]
    lora_B: dict[str, torch.Tensor]
    opt: RowOptState
    stepping: SteppingState
    seed: torch.Tensor
    conversations: torch.Tensor
    writes: torch.Tensor
    skipped_writes: torch.Tensor
    chunked_writes: torch.Tensor
    chunks_written: torch.Tensor
    truncated_tokens: torch.Tensor
    COUNTERS: ClassVar[tuple[str, ...]] = ("writes", "skipped_writes", "chunked_writes",
                                           "chunks_written", "truncated_tokens")

    @property
    def batch_size(self) -> int:
        return int(self.seed.shape[0])

    def params(self) -> list[torch.Tensor]:
        """The optimised tensors in a fixed order: every A, then every B."""
        return [*self.lora_A.values(), *self.lora_B.values()]


class DPMMemory:
    """DPM temporary-LoRA memory over B conversation rows (implements convmem.memory.base.Memory).

    Args:
        model: frozen HF causal LM, `model(input_ids, attention_mask, position_ids).logits`
            -> [B, T, V]; put in eval mode; its weights are never changed.
        emotion_ids: vocab ids of the emotion tokens, in output order.
        n_limit: the model's window limit in tokens.
        config: DPMConfig (defaults: the paper's).
    Call `close()` to take the LoRA hooks out of the model. Set `write_tally` to a
    `convmem.memory.dpm_writes.WriteTally` to count how often it writes across conversations.
    """

    name = "dpm"

    def __init__(self, model: nn.Module, emotion_ids: Sequence[int], n_limit: int,
                 config: DPMConfig | None = None):
        self.config = config or DPMConfig()
        self.config.validate()
        self.n_limit = int(n_limit)
        self.n_r = self.config.n_r if self.config.n_r is not None else self.n_limit // 2
        if not 0 <= self.n_r < self.n_limit:
            raise ConfigError(f"dpm config: n_r = {self.n_r} must be < n_limit = {self.n_limit} "
                              "(eq. 10 leaves n_limit - n_r tokens per written chunk)")
        if not emotion_ids:
            raise ValueError("emotion_ids is empty")
        self.model = model.eval()
        self.device = next(model.parameters()).device
        self.emotion_ids = torch.as_tensor(list(emotion_ids), dtype=torch.int64, device=self.device)
        self.stepping = make_stepping(self.config.stepping, self.config.surprise_k,
                                      self.config.surprise_warmup)
        self.history_tokens = self.stepping.history_tokens(self.n_r)
        self.lora = BatchedLoRA(model, self.config.rank, self.config.alpha,
                                self.config.target_modules, self.config.include_lm_head)
        c = self.config
        self.optimizer = make_row_optimizer(c.optimizer, c.lr, c.weight_decay, c.betas, c.eps,
                                            c.momentum)
        self._default_a = self.lora.fresh_a(conversation_seed(c.seed, ""))
        self._takes_logits_to_keep = "logits_to_keep" in inspect.signature(model.forward).parameters
        self.write_tally = None

    def close(self) -> None:
        """Remove the temporary-LoRA hooks; the model is exactly the frozen model again."""
        self.lora.remove()

    # -- state ---------------------------------------------------------------------------
    def init(self, batch_size: int) -> DPMState:
        """Fresh state for `batch_size` rows, all with the default conversation key ""."""
        a, b = self.lora.init_tensors(batch_size, self.device)
        z = lambda dt=torch.int64: torch.zeros(batch_size, dtype=dt, device=self.device)  # noqa: E731
        state = DPMState(lora_A=a, lora_B=b, opt=self.optimizer.init_state([*a.values(), *b.values()]),
                         stepping=SteppingState.fresh(batch_size, self.device), seed=z(),
                         conversations=z(), writes=z(), skipped_writes=z(), chunked_writes=z(),
                         chunks_written=z(), truncated_tokens=z())
        state = self.reset(state, range(batch_size))
        state.conversations.zero_()
        return state

    def reset(self, state: DPMState, rows: Sequence[int], keys: Sequence[str] | None = None
              ) -> DPMState:
        """Start a new conversation on `rows`: fresh A, B = 0, fresh optimizer and counters.

        keys: one conversation key per row (e.g. the dialogue id). A row's A is drawn from
            `conversation_seed(config.seed, key)`, so the same conversation gets the same A on
            any row, in any batch, in any order; without keys every conversation uses key "".
        """
        rows = list(rows)
        keys = [""] * len(rows) if keys is None else [str(k) for k in keys]
        if len(keys) != len(rows):
            raise ValueError(f"reset: {len(rows)} rows but {len(keys)} keys")
        for row, key in zip(rows, keys):
            seed = conversation_seed(self.config.seed, key)
            fresh = self._default_a if key == "" else self.lora.fresh_a(seed)
            for name, a in fresh.items():
                state.lora_A[name][row] = a.to(device=self.device, dtype=state.lora_A[name].dtype)
            state.seed[row] = seed
        idx = torch.as_tensor(rows, dtype=torch.int64, device=self.device)
        for b in state.lora_B.values():
            b[idx] = 0
        state.opt.reset_rows(idx)
        state.stepping.reset_rows(idx)
        for name in state.COUNTERS:
            getattr(state, name)[idx] = 0
        state.conversations[idx] += 1
        return state

    # -- forward pieces -------------------------------------------------------------------
    def _logits(self, lora_a: dict, lora_b: dict, sub: WindowBatch, keep: int) -> torch.Tensor:
        """logits [n, keep, V] of the last `keep` positions of n sub-windows, with those rows'
        adapters ([n, ...]) attached. HF models that take `logits_to_keep` skip the output head
        elsewhere (a 150k-token vocabulary over 1024 positions is 600 MB a row in fp32)."""
        mask = sub.attention_mask.bool()
        extra = {"logits_to_keep": keep} if self._takes_logits_to_keep else {}
        inputs = model_inputs(self.model, sub.input_ids, sub.frames)  # outside the hooks: no LoRA on it
        with self.lora.attached(lora_a, lora_b, mask):
            logits = self.model(**inputs, attention_mask=sub.attention_mask,
                                position_ids=sub.position_ids(), **extra).logits
        return logits[:, logits.shape[1] - keep:]

    @staticmethod
    def _slice(batch: WindowBatch, rows: torch.Tensor, start: torch.Tensor, end: torch.Tensor,
               targets: torch.Tensor | None = None) -> WindowBatch:
        """Left-padded sub-windows [start_b, end_b) of `rows` (int64[n] each) as a WindowBatch."""
        length = int((end - start).max())
        pos = end[:, None] - length + torch.arange(length, device=end.device)
        valid = pos >= start[:, None]
        pos = pos.clamp(min=0)
        ids = batch.input_ids[rows].gather(1, pos)
        tgt = valid if targets is None else targets[rows].gather(1, pos) & valid
        frames = None if batch.frames is None else batch.frames[rows[:, None], pos]
        weight = None
        if batch.emotion_weight is not None and targets is not None:  # a write's window: its weights
            weight = batch.emotion_weight[rows].gather(1, pos) * (tgt & valid)
        n = rows.shape[0]
        return WindowBatch(input_ids=ids, attention_mask=valid.long(), target_mask=tgt,
                           end_pos=torch.full((n,), length - 1, device=end.device),
                           active=torch.ones(n, dtype=torch.bool, device=end.device),
                           first=torch.zeros(n, dtype=torch.bool, device=end.device), frames=frames,
                           emotion_weight=weight)

    @staticmethod
    def _first_real(batch: WindowBatch) -> torch.Tensor:
        return batch.attention_mask.bool().long().argmax(-1)

    # -- Memory protocol ---------------------------------------------------------------------
    def write(self, state: DPMState, batch: WindowBatch) -> tuple[DPMState, torch.Tensor]:
        """Memorise utterance i of every active, non-first row the stepping strategy selects.

        Returns: (state, updated in place; float32[B] token-weighted mean L_t before each chunk's
        first step, NaN where no write happened).
        """
        batch = self._with_emotion_targets(batch.to(self.device))
        n_rows, width = batch.input_ids.shape
        if n_rows != state.batch_size:
            raise ValueError(f"write: batch has {n_rows} rows, state has {state.batch_size}")
        eligible = batch.active.bool() & ~batch.first.bool()
        plan = self.stepping.plan(state.stepping, batch, eligible, self.emotion_ids)
        first_real = self._first_real(batch)
        ar = torch.arange(width, device=self.device)
        # A target on a row's first real token has nothing to be predicted from (eq. 11, n = 0).
        targets = plan.targets & (ar[None, :] > first_real[:, None])
        rows_mask = plan.rows & targets.any(-1)
        s = torch.where(targets, ar, width).amin(-1)                      # first target
        e = torch.where(targets, ar + 1, 0).amax(-1)                      # last target + 1
        prefix = (s - first_real).clamp(max=self.n_r)
        chunk = self.n_limit - self.n_r
        n_chunks = torch.where(prefix + (e - s) <= self.n_limit, 1, -(-(e - s) // chunk))
        n_chunks = torch.where(rows_mask, n_chunks, 0)

        def chunk_window(rows: torch.Tensor, j: int) -> WindowBatch:
            c_start = s[rows] + j * chunk
            c_end = torch.where(n_chunks[rows] == 1, e[rows], torch.minimum(c_start + chunk, e[rows]))
            w_start = torch.maximum(c_start - self.n_r, first_real[rows])
            return self._slice(batch, rows, w_start, c_end,
                               targets & (ar[None, :] >= (s + j * chunk)[:, None]))

        nll_sum = torch.zeros(n_rows, dtype=torch.float64, device=self.device)
        nll_count = torch.zeros_like(nll_sum)
        accepted = rows_mask.clone()
        steps_taken = 0
        for j in range(int(n_chunks.max())):
            rows = (accepted & (n_chunks > j)).nonzero().squeeze(1)
            for step in range(self.config.steps_per_write):
                if rows.numel() == 0:
                    break
                loss, count, grads = self._loss_and_grads(state, rows, chunk_window(rows, j))
                if j == 0 and step == 0:
                    # The stepping strategy sees the pre-update loss of the whole plan at once.
                    observed = torch.full((n_rows,), float("nan"), dtype=torch.float64,
                                          device=self.device)
                    observed[rows] = loss.double()
                    accepted = self.stepping.accept(state.stepping, observed, rows_mask)
                    keep = accepted[rows]
                    rows, loss, count = rows[keep], loss[keep], count[keep]
                    grads = [g[keep] for g in grads]
                    if rows.numel() == 0:
                        break
                if step == 0:
                    nll_sum[rows] += loss.double() * count
                    nll_count[rows] += count
                self.optimizer.step(state.params(), grads, rows, state.opt)
                steps_taken += rows.numel()
        written = accepted
        self.stepping.commit(state.stepping, written)
        state.writes += written.long()
        state.skipped_writes += (eligible & ~written).long()
        state.chunked_writes += (written & (n_chunks > 1)).long()
        state.chunks_written += torch.where(written, n_chunks, 0)
        state.truncated_tokens += plan.truncated
        if self.write_tally is not None:
            # .item() syncs a GPU; only a pass that asked for the tally pays for it
            self.write_tally.add(int(batch.active.bool().sum().item()), int(eligible.sum().item()),
                                 int(written.sum().item()), steps_taken)
        out = torch.where(written & (nll_count > 0), nll_sum / nll_count.clamp(min=1), float("nan"))
        return state, out.float()

    def _with_emotion_targets(self, batch: WindowBatch) -> WindowBatch:
        """`batch` with the written-back emotion token before utterance i among the write's targets,
        weighted as `write_emotion` says (emotion_weight: 0 elsewhere); without emotion_weight when off
        or when no row has such a token, so those writes are eq. 9's plain mean, bit for bit."""
        mode = self.config.write_emotion
        if mode == "off" or batch.emotion_weight is None or not bool((batch.emotion_weight > 0).any()):
            return dataclasses.replace(batch, emotion_weight=None)
        w = batch.emotion_weight.to(self.device).float()
        w = (w > 0).float() if mode == "token" else w
        return dataclasses.replace(batch, target_mask=batch.target_mask | (w > 0), emotion_weight=w)

    def _emotion_nll(self, logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor,
                     nll: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(nll, weight) float[n] of n targets: emotion-token targets (weight > 0) scored with the
        softmax over the emotion tokens only (eq. 5), every other target as it was, weight 1."""
        is_emo = weights > 0
        classes = (targets[:, None] == self.emotion_ids[None, :]).float().argmax(-1)
        restricted = nn.functional.cross_entropy(logits[:, self.emotion_ids].float(), classes, reduction="none")
        return torch.where(is_emo, restricted, nll), torch.where(is_emo, weights, torch.ones_like(weights))

    def _loss_and_grads(self, state: DPMState, rows: torch.Tensor, sub: WindowBatch):
        """Per-row mean next-token NLL of sub's targets (eq. 9) and its gradient w.r.t. `rows`' LoRA.

        Returns: (loss float[n], target count float[n], grads: list of [n, ...] in state.params()
        order). Summing the per-row means gives each row exactly its own gradient.
        """
        lora_a = {k: _take_rows(v, rows).detach().requires_grad_() for k, v in state.lora_A.items()}
        lora_b = {k: _take_rows(v, rows).detach().requires_grad_() for k, v in state.lora_B.items()}
        width = sub.input_ids.shape[1]
        # Position p's logits predict token p + 1: targets at p + 1 need logits from min(p) on.
        tgt = sub.target_mask[:, 1:] & sub.attention_mask[:, :-1].bool()
        row_idx, pos_idx = tgt.nonzero(as_tuple=True)
        keep = width - int(pos_idx.min()) if pos_idx.numel() else 1
        with torch.enable_grad():
            logits = self._logits(lora_a, lora_b, sub, keep)
            picked = logits[row_idx, pos_idx - (width - keep)].float()
            targets = sub.input_ids[row_idx, pos_idx + 1]
            nll = nn.functional.cross_entropy(picked, targets, reduction="none")
            if sub.emotion_weight is None:
                count = tgt.sum(-1).double()
                total = torch.zeros(rows.numel(), dtype=nll.dtype, device=nll.device).index_add(0, row_idx, nll)
            else:  # write_emotion: a weighted mean over the targets (module doc of DPMConfig)
                nll, w = self._emotion_nll(picked, targets, sub.emotion_weight[row_idx, pos_idx + 1], nll)
                count = torch.zeros(rows.numel(), dtype=torch.float64, device=nll.device).index_add(0, row_idx, w.double())
                total = torch.zeros(rows.numel(), dtype=nll.dtype, device=nll.device).index_add(0, row_idx, nll * w)
            loss = total / count.clamp(min=1e-12).to(nll.dtype)
            grads = torch.autograd.grad(loss.sum(), [*lora_a.values(), *lora_b.values()],
                                        allow_unused=False)
        return loss.detach(), count, list(grads)

    @torch.no_grad()
    def read(self, state: DPMState, batch: WindowBatch) -> torch.Tensor:
        """Emotion logits float32[B, n_emotions] at `<audio_end>` (last n_limit tokens of the
        window) with each row's temporary LoRA active; NaN for inactive rows."""
        batch = batch.to(self.device)
        n_rows = batch.batch_size
        if n_rows != state.batch_size:
            raise ValueError(f"read: batch has {n_rows} rows, state has {state.batch_size}")
        out = torch.full((n_rows, self.emotion_ids.numel()), float("nan"), device=self.device)
        rows = batch.active.bool().nonzero().squeeze(1)
        if rows.numel() == 0:
            return out
        end = batch.end_pos[rows] + 1
        start = torch.maximum(end - self.n_limit, self._first_real(batch)[rows])
        sub = self._slice(batch, rows, start, end)
        lora_a = {k: _take_rows(v, rows) for k, v in state.lora_A.items()}
        lora_b = {k: _take_rows(v, rows) for k, v in state.lora_B.items()}
        logits = self._logits(lora_a, lora_b, sub, keep=1)
        out[rows] = logits[:, -1, self.emotion_ids].float()
        return out


def _take_rows(t: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """t[rows] for sorted distinct rows, without copying when they are all rows (the usual case)."""
    return t if rows.numel() == t.shape[0] else t[rows]


__all__ = ["DPMConfig", "DPMState", "DPMMemory", "conversation_seed"]

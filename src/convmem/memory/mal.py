"""MAL (Memory-as-a-Layer) behind the Memory protocol: per-conversation Titans memory on a frozen SLM.

Exact semantics per utterance i of a row (the engine calls write, then read, with the same window):

* `write(state, batch_i)`: runs the backbone up to layer L (no grad into it), takes the layer-L
  *input* hidden states at utterance i's audio tokens (target_mask ∩ audio_id_range; `<audio_end>`
  and any history prefix are not written) and writes them into the memory, one Titans step per
  utterance or per `chunk_size` tokens. Before writing, the state snapshots the memory it had —
  the memory after utterances < i — as `read_weights` / `read_momentum`.
* `read(state, batch_i)`: runs the full backbone with the residual at layer L computed from that
  snapshot, so utterance i reads exactly what utterances < i wrote (with `read_within_utterance`
  and `chunk_size`, chunk c of utterance i also reads chunks < c of i). The emotion logits are the
  logits at `<audio_end>` restricted to `emotion_ids`.

So write-then-read is causal: nothing from utterance i (or later) reaches its own read. Unlike DPM,
MAL's write needs no prefix, so the first utterance of a conversation *is* written (its read still
sees only the fresh memory); `WindowBatch.first` therefore changes nothing here. Inactive rows come
back unchanged. State size is fixed (2 snapshots of MLP weights + momentum per row), whatever the
dialogue length. `enabled=False` never hooks the backbone: outputs are the backbone's, bit for bit.

A frames model (`slm.audio_input=frames`) changes only what the backbone reads at audio positions
(slm/audio_embedding.py): which positions are written and read is still decided by their code ids
(audio_id_range), and the layer-L states written are those the projected frames produce.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import torch
from torch import nn

from convmem.config import Count, Index
from convmem.errors import ConfigError
from convmem.memory.base import WindowBatch
from convmem.memory.mal_layer import MALAdapter, capture_layer_input, find_decoder_layers, layer_input_hook
from convmem.memory.neural_memory import NeuralMemoryConfig, Params
from convmem.slm.audio_embedding import model_inputs


@dataclass
class MALConfig:
    """MAL settings.

    Attributes:
        emotion_ids: vocab ids of the emotion tokens, in label order.
        audio_id_range: (first, last + 1) vocab ids of audio tokens.
        layer: decoder layer L whose input receives the residual (None = the middle layer).
        history_tokens: prefix tokens the engine puts before utterance i (MAL needs none).
        chunk_size: write every `chunk_size` audio tokens (None = one write per utterance).
        read_within_utterance: chunk c of utterance i also reads chunks < c (needs chunk_size).
        enabled: False = the plain backbone (no hook at all), for ablations.
        memory: the neural memory's shape and update rule.
    """

    emotion_ids: tuple[Index, ...]
    audio_id_range: tuple[Index, Index]
    layer: Index | None = None
    history_tokens: Index = 0
    chunk_size: Count | None = None
    read_within_utterance: bool = False
    enabled: bool = True
    memory: NeuralMemoryConfig = field(default_factory=NeuralMemoryConfig)

    def __post_init__(self) -> None:
        for name in ("emotion_ids", "audio_id_range"):
            value = getattr(self, name)
            if isinstance(value, (str, bytes)) or not all(_is_int(i) for i in _iterable(value, name)):
                raise ConfigError(f"mal.{name} must be a list of integers, got {value!r}")
            setattr(self, name, tuple(int(i) for i in value))
        for name, optional in (("layer", True), ("history_tokens", False), ("chunk_size", True)):
            value = getattr(self, name)
            if not (_is_int(value) or (optional and value is None)):
                raise ConfigError(f"mal.{name} must be an integer{' or null' if optional else ''}, got {value!r}")
        for name in ("read_within_utterance", "enabled"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"mal.{name} must be true or false, got {getattr(self, name)!r}")
        if not self.emotion_ids:
            raise ConfigError("mal.emotion_ids must not be empty")
        if len(self.audio_id_range) != 2 or self.audio_id_range[0] >= self.audio_id_range[1]:
            raise ConfigError(f"mal.audio_id_range must be (first, last + 1), first <= last, got {self.audio_id_range}")
        if self.history_tokens < 0:
            raise ConfigError(f"mal.history_tokens must be >= 0, got {self.history_tokens}")
        if self.chunk_size is not None and self.chunk_size < 1:
            raise ConfigError(f"mal.chunk_size must be >= 1 or null, got {self.chunk_size}")
        if self.read_within_utterance and self.chunk_size is None:
            raise ConfigError("mal.read_within_utterance needs mal.chunk_size")
        try:
            self.memory.validate()
        except ValueError as err:
            raise ConfigError(f"mal.{err}") from err


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _iterable(value: Any, name: str) -> Iterable:
    try:
        return iter(value)
    except TypeError:
        raise ConfigError(f"mal.{name} must be a list of integers, got {value!r}") from None


@dataclass
class MALState:
    """Memory of B rows. Every tensor is [B, ...]; nothing grows with the dialogue.

    Attributes:
        weights, momentum: memory after every utterance written so far (M_t, S_t).
        read_weights, read_momentum: memory before the latest write — what that utterance reads.
        n_writes: int64[B] utterances written into each row.
    """

    weights: Params
    momentum: Params
    read_weights: Params
    read_momentum: Params
    n_writes: torch.Tensor

    def detach(self) -> "MALState":
        """Cut the graph (truncated backprop through the writes)."""
        return MALState(*(_map(lambda t: t.detach(), p) for p in self._params()), self.n_writes)

    def nbytes(self) -> int:
        """Bytes held by the state."""
        return sum(t.numel() * t.element_size() for p in self._params() for t in p.values()) + (
            self.n_writes.numel() * self.n_writes.element_size()
        )

    def _params(self) -> tuple[Params, Params, Params, Params]:
        return self.weights, self.momentum, self.read_weights, self.read_momentum


def _map(fn, params: Params) -> Params:
    return {name: fn(t) for name, t in params.items()}


def _where_rows(rows: torch.Tensor, new: Params, old: Params) -> Params:
    return {n: torch.where(rows.reshape((-1,) + (1,) * (t.dim() - 1)), new[n], t) for n, t in old.items()}


class MALMemory:
    """The Memory protocol over a frozen HF causal LM with a MAL adapter at layer L.

    Args:
        model: frozen causal LM, `model(input_ids, attention_mask, position_ids).logits -> [B, T, V]`.
        adapter: the trainable MALAdapter (see `MALMemory.build`); must be on the model's device.
        cfg: MAL settings.
        differentiable: keep the autograd graph through writes and reads (outer-loop training).
            Off by default so that streaming a long dialogue never grows a graph, whatever the
            caller's grad mode.

    Set `probe` to a `MALProbe` to record gate activation and residual norm by utterance position.
    """

    name = "mal"

    def __init__(self, model: nn.Module, adapter: MALAdapter, cfg: MALConfig, differentiable: bool = False) -> None:
        layers = find_decoder_layers(model)
        layer = len(layers) // 2 if cfg.layer is None else cfg.layer
        if not 0 <= layer < len(layers):
            raise ConfigError(f"mal.layer must be in [0, {len(layers)}) for this model, got {cfg.layer}")
        vocab = model.get_input_embeddings().num_embeddings
        bad = [i for i in cfg.emotion_ids if not 0 <= i < vocab]
        if bad or cfg.audio_id_range[1] > vocab:
            raise ConfigError(f"mal.emotion_ids / audio_id_range outside the model's vocab of {vocab}")
        self.model = model
        self.adapter = adapter
        self.cfg = cfg
        self.history_tokens: int | None = cfg.history_tokens
        self.layer_index = layer
        self._layer = layers[layer]
        self._emotion_ids = torch.tensor(cfg.emotion_ids, dtype=torch.long)
        self.differentiable = differentiable
        # a MALProbe (memory/mal_probe.py) to record gate and residual norms of every read, or None
        self.probe = None

    @classmethod
    def build(cls, model: nn.Module, cfg: MALConfig) -> "MALMemory":
        """A MALMemory with a fresh adapter sized to the model, on the model's device."""
        d_model = model.get_input_embeddings().embedding_dim
        device = next(model.parameters()).device
        return cls(model, MALAdapter(d_model, cfg.memory).to(device), cfg)

    # ----------------------------------------------------------------- protocol
    def _grad_mode(self) -> torch.set_grad_enabled:
        return torch.set_grad_enabled(self.differentiable and torch.is_grad_enabled())

    def init(self, batch_size: int) -> MALState:
        """Fresh state for `batch_size` rows (learned M_0, zero momentum)."""
        with self._grad_mode():
            return self._init(batch_size)

    def _init(self, batch_size: int) -> MALState:
        weights, momentum = self.adapter.memory.initial_params(batch_size)
        return MALState(
            weights, momentum, _map(torch.clone, weights), _map(torch.clone, momentum),
            torch.zeros(batch_size, dtype=torch.long, device=self._device()),
        )

    def reset(self, state: MALState, rows: Sequence[int], keys: Sequence[str] | None = None) -> MALState:
        """`state` with `rows` restored to the learned initial memory.

        `keys` are accepted for the protocol and unused: a fresh MAL memory has nothing random.
        """
        if keys is not None and len(keys) != len(rows):
            raise ValueError(f"reset got {len(keys)} keys for {len(rows)} rows")
        batch = state.n_writes.shape[0]
        bad = [r for r in rows if not 0 <= int(r) < batch]
        if bad:
            raise IndexError(f"reset rows {bad} outside a batch of {batch}")
        mask = torch.zeros(batch, dtype=torch.bool, device=state.n_writes.device)
        mask[list(rows)] = True
        fresh = self.init(batch)  # differentiable w.r.t. M_0 when training
        return MALState(
            *(_where_rows(mask, f, s) for f, s in zip(fresh._params(), state._params())),
            torch.where(mask, fresh.n_writes, state.n_writes),
        )

    def write(self, state: MALState, batch: WindowBatch) -> tuple[MALState, torch.Tensor]:
        """Snapshot each active row's memory for its read, then write utterance i's audio tokens.

        Returns: (new state, mean associative loss float32[B] before the update, NaN where nothing
        was written).
        """
        with self._grad_mode():
            return self._write(state, self._on_device(batch))

    def _write(self, state: MALState, batch: WindowBatch) -> tuple[MALState, torch.Tensor]:
        nan = torch.full((batch.batch_size,), float("nan"), device=self._device())
        mask = self._utterance_audio(batch) & batch.active.unsqueeze(-1)
        if not self.cfg.enabled:
            return state, nan
        weights, momentum, loss = state.weights, state.momentum, nan
        if bool(mask.any()):
            with torch.no_grad():  # the backbone (and a frames model's projector) is frozen
                hidden = capture_layer_input(self._layer, lambda: self._forward(batch))
            weights, momentum, loss = self.adapter.write(weights, momentum, hidden, mask, self.cfg.chunk_size)
        active = batch.active
        new = MALState(
            weights,
            momentum,
            _where_rows(active, state.weights, state.read_weights),
            _where_rows(active, state.momentum, state.read_momentum),
            state.n_writes + mask.any(-1).long(),
        )
        return new, loss

    def read(self, state: MALState, batch: WindowBatch) -> torch.Tensor:
        """Emotion logits float32[B, n_emotions] at each row's `<audio_end>`, memory < i added at layer L."""
        with self._grad_mode():
            return self._read(state, self._on_device(batch))

    def _read(self, state: MALState, batch: WindowBatch) -> torch.Tensor:
        if not self.cfg.enabled:
            logits = self._forward(batch).logits
        else:
            mask = self._utterance_audio(batch)

            probe = None
            if self.probe is not None:
                # the read follows the write, so the utterance's position is n_writes - 1
                positions = torch.where(batch.active, state.n_writes - 1, torch.full_like(state.n_writes, -1))
                probe = lambda g, r, h, m: self.probe(g, r, h, m, positions)  # noqa: E731

            def add_residual(h: torch.Tensor) -> torch.Tensor:
                return self.adapter.read(
                    state.read_weights, state.read_momentum, h, mask,
                    self.cfg.chunk_size, self.cfg.read_within_utterance, probe,
                )

            with layer_input_hook(self._layer, add_residual):
                logits = self._forward(batch).logits
        rows = torch.arange(batch.batch_size, device=logits.device)
        return logits[rows, batch.end_pos.to(logits.device)][:, self._emotion_ids.to(logits.device)].float()

    # ----------------------------------------------------------------- helpers
    def _forward(self, batch: WindowBatch) -> Any:
        return self.model(
            **model_inputs(self.model, batch.input_ids, batch.frames),
            attention_mask=batch.attention_mask, position_ids=batch.position_ids(),
        )

    def _utterance_audio(self, batch: WindowBatch) -> torch.Tensor:
        """bool[B, T]: utterance i's audio tokens (not `<audio_end>`, not the history prefix)."""
        first, stop = self.cfg.audio_id_range
        ids = batch.input_ids
        return batch.target_mask.bool() & batch.attention_mask.bool() & (ids >= first) & (ids < stop)

    def _device(self) -> torch.device:
        return next(self.adapter.parameters()).device

    def _on_device(self, batch: WindowBatch) -> WindowBatch:
        """The batch on the adapter's (= model's) device; the engine builds windows on the CPU."""
        return batch.to(self._device())

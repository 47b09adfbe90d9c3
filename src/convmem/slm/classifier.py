"""The classifier baseline of the DPM paper (Table 1, "Classifier"): no autoregressive SLM at all.

Paper, §4.2: the speech tokenizer's codes go through the emotion SLLM's tokenizer/embedding
(4096-d for Llama2-7B) into "a downstream network consisting of a trainable Transformer encoder
and classifier", trained at lr 1e-4 for 20 epochs with batch size 1. The paper gives no sizes for
that encoder, so ours are small and configurable:

    ids int64[B, T] ──► frozen copy of the SLM's input-embedding rows           [B, T, E]
                    ──► optional linear projection E → d_model (for 7B-size E = 4096)
                    ──► LayerNorm, + sinusoidal positions                         [B, T, d_model]
                    ──► nn.TransformerEncoder (pre-norm, batch_first, key padding mask)
                    ──► pool: the `<audio_end>` position (default) or masked mean
                    ──► linear over the labels                                    [B, n_labels]

Defaults (ClassifierConfig): d_model = the embedding dim E (the SLM's hidden size; 256 for the
tiny SLM), set `d_model` to project 7B-size embeddings down (e.g. 512); 2 encoder layers, 4 heads,
feed-forward 4 x d_model, dropout 0.1. Training defaults (lr 1e-4, 20 epochs, batch 1) live in
train/classifier_trainer.py.

Choices the paper leaves open, and why:
- Positions count back from the window's end (`<audio_end>` of the current utterance = 0).
  Windows are truncated from the start (the `window` memory), so an offset from the window's first
  token means something different as history grows; the distance to the utterance being classified
  does not. Computed from the attention mask, so left- and right-padded batches agree.
- The embedding is LayerNorm-ed before positions are added: SLM embedding rows are small
  (init std ~0.02) and unit-amplitude sinusoids would otherwise drown them.
- Pooling at `<audio_end>` mirrors where the SLM reads its emotion (eq. 5); the encoder's attention
  decides how much history to use. "mean" pools every real token of the window instead.

Saved as a directory: `classifier.safetensors` (all weights, the frozen embedding copy included, so
a saved classifier needs no SLM) + `classifier_config.json`.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated

import torch
from torch import nn

from convmem.config import Count, Proportion, Range, from_dict
from convmem.errors import ConfigError
from convmem.fileio import atomic_write_json

WEIGHTS_FILE = "classifier.safetensors"
CONFIG_FILE = "classifier_config.json"
POOLINGS = ("end", "mean")


@dataclass(frozen=True)
class ClassifierConfig:
    """Architecture of the downstream network (see module doc for the defaults' reasons).

    Attributes:
        n_labels: number of emotion classes (output width).
        d_model:  encoder width; None = the embedding dim (no projection).
        n_layers, n_heads, ff_mult, dropout: the Transformer encoder (feed-forward = ff_mult x d_model).
        pooling:  "end" (the `<audio_end>` = last real token) or "mean" (masked mean over the window).
    """

    n_labels: Annotated[int, Range(2)]
    d_model: Count | None = None
    n_layers: Count = 2
    n_heads: Count = 4
    ff_mult: Count = 4
    dropout: Proportion = 0.1
    pooling: str = "end"

    def check(self, embed_dim: int) -> None:
        d = self.width(embed_dim)
        if self.n_labels < 2:
            raise ConfigError(f"classifier n_labels must be >= 2, got {self.n_labels}")
        if self.pooling not in POOLINGS:
            raise ConfigError(f"classifier pooling must be one of {POOLINGS}, got {self.pooling!r}")
        if self.n_layers < 1 or self.n_heads < 1 or self.ff_mult < 1 or not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"classifier needs n_layers, n_heads, ff_mult >= 1 and 0 <= dropout < 1; got {self}")
        if d % 2 or d % self.n_heads:
            raise ConfigError(f"classifier d_model {d} must be even and divisible by n_heads {self.n_heads}")

    def width(self, embed_dim: int) -> int:
        return int(self.d_model) if self.d_model is not None else int(embed_dim)


def sinusoidal_positions(pos: torch.Tensor, dim: int) -> torch.Tensor:
    """Transformer sine/cosine encodings of integer positions int64[B, T] → float32[B, T, dim].

    Computed on the fly rather than from a table, so any window length works."""
    inv_freq = torch.exp(torch.arange(0, dim, 2, device=pos.device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    angles = pos.to(torch.float32).unsqueeze(-1) * inv_freq  # [B, T, dim/2]
    return torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(-2)


class EmotionClassifier(nn.Module):
    """Frozen SLM embedding rows → trainable Transformer encoder → emotion logits.

    Args:
        embedding_weight: float[V, E], the SLM's input-embedding matrix; copied and frozen.
        cfg: the architecture.
    """

    def __init__(self, embedding_weight: torch.Tensor, cfg: ClassifierConfig):
        super().__init__()
        if embedding_weight.dim() != 2:
            raise ValueError(f"embedding_weight must be [vocab, dim], got shape {tuple(embedding_weight.shape)}")
        vocab_size, embed_dim = embedding_weight.shape
        cfg.check(embed_dim)
        self.config = cfg
        self.vocab_size, self.embed_dim = int(vocab_size), int(embed_dim)
        d = cfg.width(embed_dim)
        self.d_model = d
        self.embedding = nn.Embedding.from_pretrained(embedding_weight.detach().clone().float(), freeze=True)
        self.project = nn.Linear(embed_dim, d, bias=False) if d != embed_dim else nn.Identity()
        self.in_norm = nn.LayerNorm(d)
        self.dropout = nn.Dropout(cfg.dropout)
        layer = nn.TransformerEncoderLayer(d, cfg.n_heads, dim_feedforward=cfg.ff_mult * d, dropout=cfg.dropout,
                                           activation="gelu", batch_first=True, norm_first=True)
        # a pre-norm stack needs a final norm; nested tensors are unsupported with norm_first anyway
        self.encoder = nn.TransformerEncoder(layer, cfg.n_layers, norm=nn.LayerNorm(d), enable_nested_tensor=False)
        for block in self.encoder.layers:
            # No dropout on the attention weights: it forces SDPA's unfused math path, which
            # materialises and samples a [B, heads, T, T] mask (measured ~9 s vs ~1 s per batch of
            # 8 x 1024 tokens on CPU). Dropout stays on the embeddings, residuals and feed-forward.
            block.self_attn.dropout = 0.0
        self.head = nn.Linear(d, cfg.n_labels)

    @classmethod
    def from_slm(cls, embedding: nn.Module, cfg: ClassifierConfig) -> "EmotionClassifier":
        """Build from the SLM's input embedding (an nn.Embedding, e.g. `model.get_input_embeddings()`
        of a merged model from slm.model.load_model) or from a model that has one."""
        if not isinstance(embedding, nn.Embedding) and hasattr(embedding, "get_input_embeddings"):
            embedding = embedding.get_input_embeddings()
        if not isinstance(embedding, nn.Embedding):
            raise TypeError(f"from_slm needs an nn.Embedding (use a merged SLM), got {type(embedding).__name__}")
        return cls(embedding.weight, cfg)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Emotion logits of each window.

        Args:
            input_ids:      int64[B, T], each row ending (before any right padding) at `<audio_end>`.
            attention_mask: int64/bool[B, T], 1 = real token; left or right padding; None = all real.
        Returns: float32[B, n_labels].
        """
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        real = attention_mask.bool()
        if not bool(real.any(-1).all()):
            raise ValueError("every window needs at least one real token (attention_mask row of zeros)")
        # distance to the window's last real token (its <audio_end>): padding-side independent
        pos = (real.flip(-1).long().cumsum(-1).flip(-1) - 1).clamp(min=0)
        x = self.in_norm(self.project(self.embedding(input_ids)))
        x = self.dropout(x + sinusoidal_positions(pos, self.d_model))
        h = self.encoder(x, src_key_padding_mask=~real)
        if self.config.pooling == "end":
            last = (real.long() * torch.arange(real.shape[1], device=real.device)).argmax(-1)
            pooled = h[torch.arange(h.shape[0], device=h.device), last]
        else:
            w = real.unsqueeze(-1).to(h.dtype)
            pooled = (h * w).sum(1) / w.sum(1)
        return self.head(pooled).float()

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    # -- persistence ---------------------------------------------------------------------------

    def save(self, out_dir: str | os.PathLike) -> Path:
        """Write `out_dir` atomically: it is either the complete new classifier or what it was."""
        from safetensors.torch import save_file

        out = Path(out_dir)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            tmp.mkdir()
            save_file({k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}, tmp / WEIGHTS_FILE)
            atomic_write_json(tmp / CONFIG_FILE, {"vocab_size": self.vocab_size, "embed_dim": self.embed_dim,
                                                  **asdict(self.config)})
            if out.exists():
                os.replace(out, old)
            os.replace(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        shutil.rmtree(old, ignore_errors=True)
        return out

    @classmethod
    def load(cls, model_dir: str | os.PathLike) -> "EmotionClassifier":
        """Load a dir written by `save` → classifier on the CPU in eval mode."""
        from safetensors.torch import load_file

        d = Path(model_dir)
        for name in (CONFIG_FILE, WEIGHTS_FILE):
            if not (d / name).is_file():
                raise ConfigError(f"{d}: not a classifier dir (missing {name})")
        try:
            raw = json.loads((d / CONFIG_FILE).read_text())
            shape = (int(raw.pop("vocab_size")), int(raw.pop("embed_dim")))
            cfg = from_dict(ClassifierConfig, raw, CONFIG_FILE)
        except (json.JSONDecodeError, KeyError, ValueError, TypeError) as exc:
            raise ConfigError(f"{d / CONFIG_FILE}: bad classifier config: {exc}") from None
        clf = cls(torch.zeros(shape), cfg)
        try:
            clf.load_state_dict(load_file(d / WEIGHTS_FILE))
        except RuntimeError as exc:
            raise ConfigError(f"{d / WEIGHTS_FILE}: weights do not match {CONFIG_FILE}: {exc}") from None
        return clf.eval()

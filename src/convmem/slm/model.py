"""Building, saving and loading the emotion SLM.

Two backbones:

- "tiny": a from-scratch `LlamaForCausalLM` (hidden 256, 4 layers, 4 heads, RoPE; ~4.7 M params
  with a 1 k codebook) whose vocabulary is exactly `EmotionVocab.tiny(...)`. All of it trains:
  LoRA on random weights would only restrict a model that knows nothing yet.
- a pretrained LM (slm/backbones.py: a packaged checkpoint such as "smollm2-135m", a local HF
  directory or a local .gguf file): `AutoModelForCausalLM` + its tokenizer, expanded with
  audio/end/emotion tokens (eq. 1–2), embeddings resized (new rows get HF's mean-resizing init),
  then PEFT LoRA (r 64, alpha 64, all linear layers, as the paper) and `trainable_token_indices` on
  the new ids of the input embedding and the LM head. `trainable_token_indices` (not `modules_to_save`) is chosen
  because it trains exactly the new rows — the pretrained text rows stay frozen — at the cost of
  |new ids| x d parameters instead of two full vocabulary matrices; PEFT keeps it tied when the
  backbone ties its embeddings.

Saved model dirs are self-contained and hold MERGED fp32 weights (HF `config.json` +
`model.safetensors`, the expanded tokenizer when there is one, `vocab.json`, `slm_config.json`):
the emotion SLM and its LoRA are frozen at inference (DPM Algorithm 1), so a merged model is what
every reader needs; the unmerged adapter lives only in training checkpoints.

With `audio_input: frames` (slm/audio_embedding.py) the model also has an `AudioProjector`
(continuous frames -> input embeddings), trained fully (also beside a LoRA'd HF backbone: it is new),
never a LoRA target, and saved beside the HF weights as `audio_projector.safetensors`.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import torch

from convmem.config import Count, Positive, Proportion, Seed, from_dict
from convmem.errors import ConfigError
from convmem.fileio import atomic_write_json
from convmem.slm.audio_embedding import AUDIO_INPUTS, PROJECTOR_ATTR, PROJECTOR_FILE, AudioProjector, projector_of
from convmem.slm.vocab import EmotionVocab, expand_tokenizer

TINY = "tiny"
SLM_CONFIG_FILE = "slm_config.json"
VOCAB_FILE = "vocab.json"


@dataclass
class SLMConfig:
    """The emotion SLM's architecture and adapter settings (tiny dims unused for an HF backbone)."""

    backbone: str = TINY
    n_limit: Count = 1024
    hidden_size: Count = 256
    num_layers: Count = 4
    num_heads: Count = 4
    intermediate_size: Count = 1024
    max_position_embeddings: Count = 8192
    rope_theta: Positive = 10000.0
    lora_r: Count = 64
    lora_alpha: Count = 64
    lora_dropout: Proportion = 0.0
    lora_targets: str | list[str] = "all-linear"
    dtype: str = "float32"
    attn_implementation: str = "sdpa"
    init_seed: Seed = 0
    # End each utterance's audio with its speaker-relative prosody marks (slm/vocab.py; not in
    # the paper, so off by default).
    prosody_marks: bool = False
    # What audio positions read: "codes" (code embeddings) or "frames" (projected continuous encoder
    # frames, slm/audio_embedding.py; needs a tokenizer that offers frames). Codes stay the targets.
    audio_input: str = "codes"
    # With frames: the <audio_end> position also reads a projection of its utterance's frame mean and
    # std (slm/audio_embedding.py, "utterance summary"). Not in the paper, so off by default.
    utterance_summary: bool = False

    def __post_init__(self) -> None:
        if self.audio_input not in AUDIO_INPUTS:
            raise ConfigError(f"slm config: audio_input {self.audio_input!r} not one of {AUDIO_INPUTS}")
        if self.utterance_summary and self.audio_input != "frames":
            raise ConfigError("slm config: utterance_summary summarises continuous frames and needs "
                              f"audio_input frames, not {self.audio_input!r}")

    def to_json(self) -> dict:
        return asdict(self)

    @property
    def reads_frames(self) -> bool:
        return self.audio_input == "frames"

    @property
    def is_tiny(self) -> bool:
        return self.backbone == TINY

    @property
    def torch_dtype(self) -> torch.dtype:
        dt = getattr(torch, self.dtype, None)
        if not isinstance(dt, torch.dtype):
            raise ConfigError(f"slm config: dtype {self.dtype!r} is not a torch dtype")
        return dt


def make_vocab(cfg: SLMConfig, codebook_size: int, labels: Sequence[str]) -> EmotionVocab:
    """The vocabulary `build_model(cfg, ...)` needs: tiny's own, or the HF tokenizer expanded."""
    if cfg.is_tiny:
        return EmotionVocab.tiny(codebook_size, labels, cfg.prosody_marks)
    return expand_tokenizer(_load_tokenizer(cfg.backbone), codebook_size, labels, cfg.prosody_marks)


def build_model(cfg: SLMConfig, vocab: EmotionVocab, frame_dim: int | None = None) -> torch.nn.Module:
    """A trainable emotion SLM for `vocab` (see module doc). Init is seeded by `cfg.init_seed`.

    The returned module maps input_ids int64[B, T] → logits float[B, T, V] with V >= vocab.size,
    and carries `slm_config`, `slm_vocab` (and `slm_tokenizer` for HF backbones) attributes
    that `save_model` uses. `frame_dim` (D of the tokenizer's frames) is required exactly when
    `cfg.audio_input == "frames"`: the model then has an `AudioProjector(D, hidden)`.
    """
    if cfg.reads_frames != (frame_dim is not None):
        raise ConfigError("slm.audio_input=frames needs the frame dim of the tokenizer's frames, "
                          "and only it takes one" if cfg.reads_frames else
                          f"slm.audio_input={cfg.audio_input}: a frame dim was given to a codes model")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.init_seed)
        model = _build_tiny(cfg, vocab) if cfg.is_tiny else _build_hf(cfg, vocab)
        if frame_dim is not None:
            _attach_projector(model, AudioProjector(frame_dim, model.get_input_embeddings().weight.shape[-1],
                                                    summary=cfg.utterance_summary))
        return model


def _attach_projector(model: torch.nn.Module, projector: AudioProjector) -> None:
    """Register `projector` on the innermost model, after any PEFT injection (so LoRA never wraps it
    and it stays fully trainable); dtype follows the input embedding."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    setattr(inner, PROJECTOR_ATTR, projector.to(model.get_input_embeddings().weight.dtype))


def _attach(model: torch.nn.Module, cfg: SLMConfig, vocab: EmotionVocab, tokenizer) -> None:
    # Plain attributes on the innermost model; PEFT wrappers forward attribute look-ups to it.
    model.slm_config = cfg
    model.slm_vocab = vocab
    model.slm_tokenizer = tokenizer


def _build_tiny(cfg: SLMConfig, vocab: EmotionVocab) -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    if cfg.hidden_size % cfg.num_heads:
        raise ConfigError(f"slm config: hidden_size {cfg.hidden_size} not divisible by num_heads {cfg.num_heads}")
    if cfg.n_limit > cfg.max_position_embeddings:
        raise ConfigError(f"slm config: n_limit {cfg.n_limit} > max_position_embeddings {cfg.max_position_embeddings}")
    hf_cfg = LlamaConfig(
        vocab_size=vocab.size, hidden_size=cfg.hidden_size, num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads, num_key_value_heads=cfg.num_heads,
        intermediate_size=cfg.intermediate_size, max_position_embeddings=cfg.max_position_embeddings,
        rope_theta=cfg.rope_theta, pad_token_id=vocab.pad_id, bos_token_id=None, eos_token_id=None,
        tie_word_embeddings=False, attention_dropout=0.0,
    )
    hf_cfg._attn_implementation = cfg.attn_implementation
    model = LlamaForCausalLM(hf_cfg).to(cfg.torch_dtype)
    _attach(model, cfg, vocab, None)
    return model


def _load_tokenizer(spec: str):
    from convmem.slm.backbones import load_tokenizer

    return load_tokenizer(spec)


def _build_hf(cfg: SLMConfig, vocab: EmotionVocab):
    from peft import LoraConfig, get_peft_model

    from convmem.slm.backbones import load_backbone

    model, tokenizer = load_backbone(cfg.backbone, cfg.torch_dtype, cfg.attn_implementation)
    expected = expand_tokenizer(tokenizer, vocab.codebook_size, vocab.labels, vocab.prosody_marks)
    if expected != vocab:
        raise ConfigError(f"vocab {vocab} does not match backbone {cfg.backbone!r} (expands to {expected}); "
                          f"build it with slm.model.make_vocab")
    old = model.get_input_embeddings().weight.shape[0]
    # Keep any padding rows a backbone has beyond its tokenizer: ids never shrink. New rows are
    # HF's mean resizing (Hewitt, 2021): each is drawn from N(mean, 1e-9 * covariance) of the
    # pretrained rows, i.e. the mean embedding plus a little noise, so a new token starts at an
    # average logit and the text distribution barely moves; a tied head gets the same rows. The
    # text rows are untouched, so every original token's logit is unchanged
    # (tests/slm/test_backbones.py).
    model.resize_token_embeddings(max(old, vocab.size), mean_resizing=True)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = vocab.pad_id
    _attach(model, cfg, vocab, tokenizer)
    new_ids = list(vocab.new_token_ids)
    token_layers = {_module_name(model, model.get_input_embeddings()): new_ids}
    head = model.get_output_embeddings()
    if head is not None:
        token_layers[_module_name(model, head)] = new_ids
    lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=cfg.lora_targets, trainable_token_indices=token_layers,
                      task_type="CAUSAL_LM")
    return get_peft_model(model, lora)


def _module_name(model: torch.nn.Module, module: torch.nn.Module) -> str:
    return next(n for n, m in model.named_modules() if m is module)


def count_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    ps = list(model.parameters())
    return sum(p.numel() for p in ps if p.requires_grad), sum(p.numel() for p in ps)


def merged(model: torch.nn.Module) -> torch.nn.Module:
    """A plain (non-PEFT) copy of `model` with its LoRA and trainable-token deltas merged in
    (fp32 arithmetic); `model` itself is left untouched. Non-PEFT models are returned as is."""
    from peft import PeftModel

    if not isinstance(model, PeftModel):
        return model
    return copy.deepcopy(model).merge_and_unload()


def save_model(model: torch.nn.Module, out_dir: str | os.PathLike) -> Path:
    """Write a self-contained model dir (merged weights; see module doc), atomically: the dir is
    either the complete new model or what it was before."""
    cfg: SLMConfig = getattr(model, "slm_config", None)
    vocab: EmotionVocab = getattr(model, "slm_vocab", None)
    if cfg is None or vocab is None:
        raise ValueError("save_model: model lacks slm_config/slm_vocab; build it with slm.model.build_model")
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        plain = merged(model)
        projector = projector_of(plain)
        if projector is None:
            plain.save_pretrained(tmp)
        else:
            from safetensors.torch import save_file

            own = {k: v for k, v in plain.state_dict().items() if not k.startswith(PROJECTOR_ATTR + ".")}
            plain.save_pretrained(tmp, state_dict=own)
            save_file({k: v.detach().contiguous().cpu() for k, v in projector.state_dict().items()},
                      str(tmp / PROJECTOR_FILE))
        tokenizer = getattr(model, "slm_tokenizer", None)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        atomic_write_json(tmp / VOCAB_FILE, vocab.to_json())
        atomic_write_json(tmp / SLM_CONFIG_FILE, cfg.to_json())
        _replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _replace_dir(src: Path, dst: Path) -> None:
    old = dst.with_name(f".{dst.name}.old-{os.getpid()}")
    if dst.exists():
        os.replace(dst, old)
    os.replace(src, dst)
    shutil.rmtree(old, ignore_errors=True)


def load_model(model_dir: str | os.PathLike, merge: bool = True) -> tuple[torch.nn.Module, EmotionVocab, SLMConfig]:
    """Load a dir written by `save_model` → (model in eval mode, vocab, cfg).

    The weights are already merged (LoRA folded in, fp32), so `merge=False` is refused rather than
    silently returning a merged model.
    """
    from transformers import AutoModelForCausalLM

    if not merge:
        raise ValueError("load_model: saved model dirs hold merged weights; the unmerged LoRA lives in "
                         "training checkpoints (train.checkpoint)")
    d = Path(model_dir)
    for name in (SLM_CONFIG_FILE, VOCAB_FILE, "config.json"):
        if not (d / name).is_file():
            raise ConfigError(f"{d}: not a convmem model dir (missing {name})")
    try:
        cfg = from_dict(SLMConfig, json.loads((d / SLM_CONFIG_FILE).read_text()), "slm config")
        vocab = EmotionVocab.from_json(json.loads((d / VOCAB_FILE).read_text()))
    except (json.JSONDecodeError, ValueError, TypeError) as exc:
        raise ConfigError(f"{d}: bad {SLM_CONFIG_FILE} or {VOCAB_FILE}: {exc}") from None
    model = AutoModelForCausalLM.from_pretrained(d, dtype=cfg.torch_dtype,
                                                 attn_implementation=cfg.attn_implementation)
    tokenizer = None
    if (d / "tokenizer_config.json").is_file():
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(d)
    _attach(model, cfg, vocab, tokenizer)
    if cfg.reads_frames:
        _attach_projector(model, _load_projector(d, model.get_input_embeddings().weight.shape[-1], cfg.utterance_summary))
    model.eval()
    return model, vocab, cfg


def _load_projector(d: Path, hidden_size: int, summary: bool) -> AudioProjector:
    from safetensors.torch import load_file

    if not (d / PROJECTOR_FILE).is_file():
        raise ConfigError(f"{d}: a frames model (slm.audio_input=frames) without its {PROJECTOR_FILE}")
    state = load_file(str(d / PROJECTOR_FILE))
    projector = AudioProjector(int(state["norm.weight"].shape[0]), hidden_size, summary=summary)
    try:
        projector.load_state_dict(state)
    except RuntimeError as exc:
        raise ConfigError(f"{d}: {PROJECTOR_FILE} does not match slm.utterance_summary={summary}: {exc}") from None
    return projector

"""What the emotion SLM reads at audio positions: code embeddings, or projected continuous frames.

`slm.audio_input` (SLMConfig) chooses:

- "codes" (default): every position reads `embed(id)`; the model is called with `input_ids`, as it
  always was.
- "frames": positions holding an audio id (`<a_k>`) read `proj(frame)` instead, where `frame` is
  the continuous encoder frame the code was assigned from (one per 25 Hz code, e.g. a Whisper
  layer's hidden state: `tokenizers.base.offers_frames`); every other position (`<audio_end>`,
  emotion tokens, prosody marks, padding) still reads `embed(id)`. The codes stay in the stream:
  they are the targets of L_a (next audio token, eq. 3) and of DPM's write (eq. 9), and the LM
  head and vocabulary are unchanged, so DPM and MAL keep their exact objectives.

Every model call goes through `model_inputs` (training loop, every memory's read and write, MAL's
layer capture), so "what the model reads" is decided here once. Frames travel beside the ids as
float32[B, T, D] aligned with input_ids (zeros where the id is not audio), or None.

With `slm.utterance_summary` the projector also has a summary head: the `<audio_end>` position
reads embed(<audio_end>) + Linear(LayerNorm([mean, std])) of the normalised frames of the audio
positions since the previous `<audio_end>` (its utterance). Why: the emotion is predicted at that
position (eq. 5), and utterance-level statistics of a pretrained encoder's frames are what a linear
probe reads emotion from (80% WA on RAVDESS, docs/experiments/whisper-front-end.md); through two
small attention layers trained on an hour of speech the SLM did not find them (66%). The summary is
a function of the utterance's own frames only, so it adds no context and every memory still reads
the same stream. Not in the paper; off by default.

An utterance's model input is `UtteranceInput` (ids + optional aligned frames): what the engine
receives per utterance, whatever the memory.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

import torch
from torch import nn

from convmem.errors import ConfigError

AUDIO_INPUTS = ("codes", "frames")
PROJECTOR_ATTR = "audio_projector"
PROJECTOR_FILE = "audio_projector.safetensors"


class AudioProjector(nn.Module):
    """LayerNorm(D) -> Linear(D, hidden): continuous frames float[..., D] -> input embeddings.

    Why this shape: the LLaVA / Qwen-Audio recipe (the hosts of the MAL paper read encoder
    features through a projector) reduced to its smallest trainable form. The LayerNorm puts frames
    of any encoder and layer on one scale (Whisper's hidden states are O(1..100) and differ by
    layer) and a single Linear maps them to the width of the LM's embeddings. A deeper MLP would
    add capacity that the small corpora here cannot train; the LM above it is the reader.
    """

    def __init__(self, frame_dim: int, hidden_size: int, summary: bool = False):
        super().__init__()
        if frame_dim < 1:
            raise ConfigError(f"audio projector: frame dim must be >= 1, got {frame_dim}")
        self.norm = nn.LayerNorm(frame_dim)
        self.linear = nn.Linear(frame_dim, hidden_size)
        # The utterance summary head (module doc); None keeps older projector files loadable as-is.
        self.summary = nn.Sequential(nn.LayerNorm(2 * frame_dim), nn.Linear(2 * frame_dim, hidden_size)) if summary else None

    @property
    def frame_dim(self) -> int:
        return int(self.norm.normalized_shape[0])

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.linear(self.norm(frames))

    def summaries(self, frames: torch.Tensor, audio: torch.Tensor, ends: torch.Tensor) -> torch.Tensor:
        """float[B, T, hidden]: at each `<audio_end>` position (ends bool[B, T]) the summary of the
        normalised frames float[B, T, D] at the audio positions (audio bool[B, T]) since the previous
        end of its row; zeros elsewhere and at an end with no audio before it (a window that starts
        after an utterance's audio)."""
        b, t, d = frames.shape
        normed = self.norm(frames) * audio.unsqueeze(-1)
        # segment of each position: how many ends come before it; an end closes its own segment
        seg = torch.cumsum(ends.long(), dim=1) - ends.long()
        index = seg.unsqueeze(-1).expand(b, t, d)
        total = normed.new_zeros(b, t + 1, d).scatter_add_(1, index, normed)
        square = normed.new_zeros(b, t + 1, d).scatter_add_(1, index, normed * normed)
        count = normed.new_zeros(b, t + 1).scatter_add_(1, seg, audio.to(normed.dtype))
        n = count.clamp(min=1.0).unsqueeze(-1)
        mean = total / n
        std = (square / n - mean * mean).clamp(min=0.0).add(1e-6).sqrt()
        stats = torch.cat([mean, std], dim=-1).gather(1, seg.unsqueeze(-1).expand(b, t, 2 * d))
        keep = ends & (count.gather(1, seg) > 0)
        return self.summary(stats) * keep.unsqueeze(-1)


@dataclass(frozen=True)
class UtteranceInput:
    """One utterance's model input before its `<audio_end>`.

    ids:     int64[n] vocabulary ids (audio ids, then prosody marks when the model reads them).
    frames:  float32[n, D] continuous frames aligned with `ids` (zeros where the id is not audio),
             or None for a codes model.
    speaker: who spoke it (the manifest's speaker, or the live diariser's label), or None (one
             shared speaker). The model never reads it; a memory that keeps state per speaker
             (memory/inertia.py) does, through `WindowBatch.speakers`.
    """

    ids: torch.Tensor
    frames: torch.Tensor | None = None
    speaker: Hashable | None = None

    def __post_init__(self) -> None:
        if self.frames is not None and (self.frames.dim() != 2 or self.frames.shape[0] != self.ids.shape[0]):
            raise ValueError(f"utterance frames {tuple(self.frames.shape)} are not aligned with its "
                             f"{self.ids.shape[0]} ids (expected [n, D])")

    def __len__(self) -> int:
        return int(self.ids.shape[0])


def as_input(utterance) -> UtteranceInput:
    """An UtteranceInput from an UtteranceInput or plain ids int64[n] (a codes model's input)."""
    return utterance if isinstance(utterance, UtteranceInput) else UtteranceInput(torch.as_tensor(utterance))


def aligned_frames(frames, n_ids: int) -> torch.Tensor:
    """float32[n_ids, D]: an utterance's code frames float32[n_codes, D] followed by zero rows for the
    ids after its audio (prosody marks)."""
    f = torch.as_tensor(frames, dtype=torch.float32)
    if f.dim() != 2 or f.shape[0] > n_ids:
        raise ValueError(f"frames of shape {tuple(f.shape)} do not fit an utterance of {n_ids} ids")
    if f.shape[0] == n_ids:
        return f
    return torch.cat([f, f.new_zeros(n_ids - f.shape[0], f.shape[1])])


def projector_of(model: nn.Module) -> AudioProjector | None:
    """The model's audio projector (a frames model), or None (a codes model)."""
    proj = getattr(model, PROJECTOR_ATTR, None)
    return proj if isinstance(proj, AudioProjector) else None


def model_inputs(model: nn.Module, input_ids: torch.Tensor, frames: torch.Tensor | None) -> dict:
    """The keyword the model is called with for input_ids int64[B, T] (+ frames float32[B, T, D]):
    {"input_ids": ...} for a codes model, {"inputs_embeds": ...} for a frames model (see module doc).

    A frames model refuses to be called without frames, and a codes model with them.
    """
    proj = projector_of(model)
    if proj is None:
        if frames is not None:
            raise ConfigError("continuous frames given to a model that reads audio codes (slm.audio_input=codes)")
        return {"input_ids": input_ids}
    if frames is None:
        raise ConfigError("this model reads continuous frames at audio positions (slm.audio_input=frames) "
                          "and none were given")
    return {"inputs_embeds": embed_inputs(model, input_ids, frames)}


def embed_inputs(model: nn.Module, input_ids: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
    """float[B, T, hidden]: embed(id) at non-audio positions, proj(frame) at audio positions."""
    proj = projector_of(model)
    vocab = model.slm_vocab
    if frames.shape[:2] != input_ids.shape or frames.shape[-1] != proj.frame_dim:
        raise ValueError(f"frames {tuple(frames.shape)} do not match input_ids {tuple(input_ids.shape)} "
                         f"and the projector's frame dim {proj.frame_dim}")
    embed = model.get_input_embeddings()
    tokens = embed(input_ids)
    lo = vocab.audio_offset
    audio = (input_ids >= lo) & (input_ids < lo + vocab.codebook_size)
    frames = frames.to(device=tokens.device, dtype=proj.linear.weight.dtype)
    out = torch.where(audio.unsqueeze(-1), proj(frames).to(tokens.dtype), tokens)
    if proj.summary is not None:
        out = out + proj.summaries(frames, audio, input_ids == vocab.audio_end_id).to(tokens.dtype)
    return out

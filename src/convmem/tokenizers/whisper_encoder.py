"""The Whisper encoder from packaged weights: fp32 on CPU, any layer, variable length, batched, 25 Hz.

The model is transformers' own `WhisperEncoder` with the CTranslate2 tensors of the packaged
`model.bin` mapped onto it (`whisper_package`): q/k/v come fused in CT2 and are split; CT2 stores a
zero key bias that Whisper does not have. Its submodules are driven by `WhisperAudioEncoder.forward`
rather than `WhisperEncoder.forward` for two reasons the library's forward cannot serve:

- **variable length.** `WhisperEncoder.forward` insists on 3000 mel frames (30 s): a 3 s
  utterance would pay for 30 s of attention. Here an utterance costs its own length; positions
  are the first T of Whisper's position table. The hidden states then differ from the padded
  computation (the model was trained attending over 30 s windows with trailing silence): the
  difference is measured by `padding_difference` and documented in docs/experiments/whisper-front-end.md; tests bound it.
- **batching.** Utterances of different lengths share a batch with a key-padding mask, and the
  padded tail of the conv stack is zeroed between the two convolutions, so a batched utterance gets
  exactly the hidden states it gets alone.

Framing: log-mel at 100 Hz (hop 160), convolutions to 50 Hz, pairs of frames averaged to the
project's 25 Hz (`tokenizers.base.n_frames`: 10 s -> 250 frames). Audio longer than Whisper's
30 s window is encoded in 30 s pieces. Log-mel comes from transformers' `WhisperFeatureExtractor`
on the audio followed by silence, so each frame's mel equals that of the 30 s padded input.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from convmem.errors import ConfigError
from convmem.tokenizers.base import HOP_SAMPLES, SAMPLE_RATE, fit_to_frames, n_frames
from convmem.tokenizers.whisper_package import model_bytes, read_ct2, whisper_package

MEL_HOP = 160  # samples per mel frame at 16 kHz (100 Hz)
MELS_PER_CODE = HOP_SAMPLES // MEL_HOP  # 4 mel frames -> 2 encoder frames -> 1 code
WINDOW_CODES = 750  # Whisper's 30 s window = 1500 encoder frames = 750 codes at 25 Hz
_STFT_TAIL = 400  # n_fft: silence after the audio, so the last frames see what 30 s padding gives


def _config_from_tensors(t: dict[str, np.ndarray]):
    from transformers import WhisperConfig

    layers = 1 + max(int(m.group(1)) for k in t if (m := re.match(r"encoder/layer_(\d+)/", k)))
    d_model = t["encoder/conv1/weight"].shape[0]
    cfg = WhisperConfig(
        num_mel_bins=t["encoder/conv1/weight"].shape[1], d_model=d_model, encoder_layers=layers,
        encoder_attention_heads=int(t["encoder/num_heads"]),
        encoder_ffn_dim=t["encoder/layer_0/ffn/linear_0/weight"].shape[0],
        max_source_positions=t["encoder/position_encodings/encodings"].shape[0],
        decoder_layers=1, dropout=0.0, attention_dropout=0.0, activation_dropout=0.0,
    )
    cfg._attn_implementation = "sdpa"
    return cfg


def _state_dict(t: dict[str, np.ndarray], layers: int) -> dict:
    import torch

    def f32(name: str) -> torch.Tensor:
        return torch.from_numpy(np.array(t[f"encoder/{name}"], dtype=np.float32))

    sd = {"conv1.weight": f32("conv1/weight"), "conv1.bias": f32("conv1/bias"),
          "conv2.weight": f32("conv2/weight"), "conv2.bias": f32("conv2/bias"),
          "embed_positions.weight": f32("position_encodings/encodings"),
          "layer_norm.weight": f32("layer_norm/gamma"), "layer_norm.bias": f32("layer_norm/beta")}
    for i in range(layers):
        src, dst = f"layer_{i}/", f"layers.{i}."
        q, k, v = f32(src + "self_attention/linear_0/weight").chunk(3)
        qb, kb, vb = f32(src + "self_attention/linear_0/bias").chunk(3)
        if kb.abs().max() > 0:
            raise ConfigError(f"Whisper layer {i}: non-zero key bias, not a Whisper checkpoint")
        sd.update({
            dst + "self_attn.q_proj.weight": q, dst + "self_attn.q_proj.bias": qb,
            dst + "self_attn.k_proj.weight": k,
            dst + "self_attn.v_proj.weight": v, dst + "self_attn.v_proj.bias": vb,
            dst + "self_attn.out_proj.weight": f32(src + "self_attention/linear_1/weight"),
            dst + "self_attn.out_proj.bias": f32(src + "self_attention/linear_1/bias"),
            dst + "self_attn_layer_norm.weight": f32(src + "self_attention/layer_norm/gamma"),
            dst + "self_attn_layer_norm.bias": f32(src + "self_attention/layer_norm/beta"),
            dst + "fc1.weight": f32(src + "ffn/linear_0/weight"), dst + "fc1.bias": f32(src + "ffn/linear_0/bias"),
            dst + "fc2.weight": f32(src + "ffn/linear_1/weight"), dst + "fc2.bias": f32(src + "ffn/linear_1/bias"),
            dst + "final_layer_norm.weight": f32(src + "ffn/layer_norm/gamma"),
            dst + "final_layer_norm.bias": f32(src + "ffn/layer_norm/beta"),
        })
    return sd


class WhisperAudioEncoder:
    """A frozen packaged Whisper encoder (`model`: "base" | "tiny.en") giving 25 Hz hidden states.

    `layer` indexes hidden states as transformers does: 0 = conv stem + positions, i = output of
    block i, and the last (= number of blocks) has the final layer norm, i.e. Whisper's encoder
    output. Negative values count from the end (-1 = encoder output).
    """

    def __init__(self, model: str = "base", layer: int = -1):
        import torch
        from transformers import WhisperFeatureExtractor
        from transformers.models.whisper.modeling_whisper import WhisperEncoder

        self.package = whisper_package(model)
        tensors = read_ct2(model_bytes(self.package), prefix="encoder/")
        cfg = _config_from_tensors(tensors)
        self.n_layers = cfg.encoder_layers
        if not -(self.n_layers + 1) <= layer <= self.n_layers:
            raise ConfigError(f"Whisper {model}: layer {layer} out of range (0..{self.n_layers}, or negative)")
        self.layer = layer % (self.n_layers + 1)
        self.hidden_size = cfg.d_model
        self.encoder = WhisperEncoder(cfg).eval()
        missing, unexpected = self.encoder.load_state_dict(_state_dict(tensors, self.n_layers), strict=False)
        if unexpected or [m for m in missing if not m.endswith("k_proj.bias")]:
            raise ConfigError(f"Whisper {model}: weights do not fit WhisperEncoder (missing {missing}, "
                              f"unexpected {unexpected})")
        self.encoder.requires_grad_(False)
        self.extractor = WhisperFeatureExtractor(feature_size=cfg.num_mel_bins)
        self._torch = torch

    def log_mel(self, wave: np.ndarray) -> np.ndarray:
        """float32[samples] at 16 kHz -> float32[n_mels, 4 * n_frames(samples)] Whisper log-mel."""
        frames = n_frames(wave.size)
        padded = np.pad(fit_to_frames(np.asarray(wave, dtype=np.float32), frames), (0, _STFT_TAIL))
        mel = self.extractor(padded, sampling_rate=SAMPLE_RATE, padding="longest", truncation=False,
                             return_tensors="np").input_features[0]
        return mel[:, : frames * MELS_PER_CODE].astype(np.float32)

    def forward(self, mels: Sequence[np.ndarray], layer: int | None = None) -> list[np.ndarray]:
        """Batch of log-mels float32[n_mels, 4 * F_i] (F_i <= 750) -> float32[F_i, hidden] each at 25 Hz."""
        layer = self.layer if layer is None else layer
        return self.forward_layers(mels, [layer])[layer % (self.n_layers + 1)]

    def forward_layers(self, mels: Sequence[np.ndarray], layers: Sequence[int]) -> dict[int, list[np.ndarray]]:
        """Like `forward` for several layers in one pass: {layer (non-negative): [float32[F_i, hidden]]}."""
        torch = self._torch
        enc = self.encoder
        wanted = sorted({lay % (self.n_layers + 1) for lay in layers})
        lengths = [m.shape[1] // MELS_PER_CODE for m in mels]
        if max(lengths) > WINDOW_CODES or min(lengths) < 1:
            raise ValueError(f"each piece must hold 1..{WINDOW_CODES} codes, got {lengths}")
        top = max(lengths)
        x = torch.zeros(len(mels), mels[0].shape[0], top * MELS_PER_CODE)
        for i, m in enumerate(mels):
            x[i, :, : m.shape[1]] = torch.from_numpy(m)
        keep = torch.arange(2 * top)[None, :] < 2 * torch.tensor(lengths)[:, None]  # [B, 2*top] at 50 Hz
        out: dict[int, list[np.ndarray]] = {}

        def emit(index: int, h) -> None:
            if index in wanted:
                pooled = h.reshape(len(mels), top, 2, -1).mean(dim=2)
                out[index] = [pooled[i, :n].numpy().copy() for i, n in enumerate(lengths)]

        with torch.inference_mode():
            h = torch.nn.functional.gelu(enc.conv1(x))
            # zero the padded tail as a lone utterance's conv2 padding would see it
            h = h * torch.repeat_interleave(keep, 2, dim=1)[:, None, :].to(h.dtype)
            h = torch.nn.functional.gelu(enc.conv2(h)).transpose(1, 2)
            h = h + enc.embed_positions.weight[: h.shape[1]]
            mask = None
            if min(lengths) != top:
                mask = torch.zeros(len(mels), 1, 1, h.shape[1]).masked_fill(~keep[:, None, None, :], float("-inf"))
            emit(0, h)
            for index, block in enumerate(enc.layers[: wanted[-1]], start=1):
                h = block(h, mask)
                emit(index, enc.layer_norm(h) if index == self.n_layers else h)
        return out

    def features(self, waves: Sequence[np.ndarray], layer: int | None = None,
                 batch_codes: int = 3000) -> list[np.ndarray]:
        """16 kHz float32[samples] each -> float32[n_frames(samples), hidden] each.

        Audio over 30 s goes in 30 s pieces, each encoded as a window of its own (a piece gets what
        it would get alone); pieces are batched longest-first up to about
        `batch_codes` codes of padded batch (memory stays bounded whatever the input).
        """
        pieces, owner = [], []
        window = WINDOW_CODES * HOP_SAMPLES
        for i, wave in enumerate(waves):
            frames = n_frames(wave.size)
            wave = fit_to_frames(np.asarray(wave, dtype=np.float32), frames)
            # each 30 s piece is a Whisper window of its own, log-mel and its normalisation included
            for a in range(0, wave.size, window):
                pieces.append(self.log_mel(wave[a: a + window]))
                owner.append(i)
        order = sorted(range(len(pieces)), key=lambda j: -pieces[j].shape[1])
        out: list[np.ndarray | None] = [None] * len(pieces)
        start = 0
        while start < len(order):
            longest = pieces[order[start]].shape[1] // MELS_PER_CODE
            size = max(1, batch_codes // longest)
            chunk = order[start: start + size]
            for j, h in zip(chunk, self.forward([pieces[j] for j in chunk], layer)):
                out[j] = h
            start += size
        result: list[list[np.ndarray]] = [[] for _ in waves]
        for j, i in enumerate(owner):
            result[i].append(out[j])
        return [np.concatenate(parts) for parts in result]

    def padded_output(self, wave: np.ndarray, layer: int | None = None) -> np.ndarray:
        """Whisper's own computation: the audio padded to 30 s, then its first n_frames codes.

        float32[samples] (<= 30 s) -> float32[n_frames(samples), hidden]. The reference for
        `padding_difference` and for tests; 30 s of compute whatever the length.
        """
        frames = n_frames(wave.size)
        if frames > WINDOW_CODES:
            raise ValueError("padded_output takes at most 30 s")
        mel = self.log_mel(np.pad(np.asarray(wave, np.float32), (0, (WINDOW_CODES - frames) * HOP_SAMPLES)))
        return self.forward([mel], layer)[0][:frames]


def padding_difference(encoder: WhisperAudioEncoder, wave: np.ndarray, layer: int | None = None) -> dict:
    """How far variable-length hidden states are from the 30 s padded ones, for one utterance.

    Returns {"cosine": mean per-frame cosine similarity, "relative_l2": ||var - pad|| / ||pad||}.
    """
    var = encoder.features([wave], layer)[0]
    pad = encoder.padded_output(wave, layer)
    cos = (var * pad).sum(1) / (np.linalg.norm(var, axis=1) * np.linalg.norm(pad, axis=1) + 1e-12)
    return {"cosine": float(cos.mean()), "relative_l2": float(np.linalg.norm(var - pad) / np.linalg.norm(pad))}

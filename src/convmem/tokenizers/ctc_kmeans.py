"""`ctc-kmeans`: supervised speech tokens learnt from transcripts, the S3 recipe at toy scale.

The paper's S3 tokenizer quantises the encoder of a speech recogniser, so its codes say which words
were spoken whoever spoke them. Without its weights (no downloads here) the unsupervised `kmeans`
codes mostly say *who* spoke: on the synthetic corpus a probe on them cannot find the sentence bank's
emotion sentences in unseen voices. This kind trains its own small recogniser on the training
sessions' transcripts (the manifest's `text`; IEMOCAP, MELD and the synthetic corpus have them),
then clusters its hidden states:

  log-mel (80 bins, 100 Hz, each utterance's mean removed) -> 2 convolutions (-> 50 Hz, or 25 Hz
  with `ctc_hz: 25`) -> 2-layer bidirectional GRU -> characters with CTC (training only);
  codes = k-means (the `kmeans` codebook) of the GRU's hidden states (at 50 Hz each pair of frames
  averaged, so codes are 25 Hz either way), or with
  `states: posteriors` of its log character posteriors (what was said, less of the voice).

Training perturbs tempo (the feature sequence resampled by a random factor) so the recogniser does
not learn one speaking rate. Own code rather than a library model because the recogniser is tiny
and trained per fold (minutes on 2 CPU cores, fitted on training sessions only, like every other
learned tokenizer here); any Hugging Face recogniser can already be quantised with `ssl-kmeans`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from convmem.config import from_dict
from convmem.errors import ConfigError
from convmem.tokenizers.base import (
    SAMPLE_RATE,
    config_hash,
    fit_to_frames,
    iter_waveforms,
    n_frames,
    prepare_waveform,
)
from convmem.tokenizers.kmeans import FittedKMeansMixin, KMeansCodebook

ENCODER_FILE = "encoder.pt"
ALPHABET = " abcdefghijklmnopqrstuvwxyz'"  # CTC targets; index 0 is the blank


def characters(text: str) -> list[int]:
    """Transcript -> CTC target ids in [1, len(ALPHABET)]: lower case, other symbols as spaces."""
    clean = re.sub(r"\s+", " ", re.sub(r"[^a-z' ]", " ", text.lower())).strip()
    return [ALPHABET.index(c) + 1 for c in clean]


@dataclass(frozen=True)
class CTCKMeansConfig:
    codebook_size: int = 256
    n_mels: int = 80
    hidden: int = 192  # convolution width; each GRU direction has 2/3 of it
    epochs: int = 8
    lr: float = 2e-3
    batch_size: int = 8
    tempo_perturb: float = 0.15  # tempo factor drawn from 1 +- this, per batch
    # the recogniser's CTC frame rate, 25 or 50: CTC needs a frame per character (two for a doubled
    # letter), and fast speech (~230 wpm, ~21 characters/s) hardly fits 25 Hz
    ctc_hz: int = 50
    seed: int = 0
    max_fit_frames: int = 100_000
    n_init: int = 1
    # what k-means clusters: "hidden" = the GRU's states (words, and some of the voice), or
    # "posteriors" = the recogniser's log character posteriors (which characters only)
    states: str = "hidden"

    def __post_init__(self):
        if self.ctc_hz not in (25, 50):
            raise ValueError(f"ctc-kmeans: ctc_hz must be 25 or 50, got {self.ctc_hz!r}")
        if self.states not in ("hidden", "posteriors"):
            raise ValueError(f"ctc-kmeans: states must be 'hidden' or 'posteriors', got {self.states!r}")
        if (self.codebook_size < 2 or self.n_mels < 8 or self.hidden < 8 or self.epochs < 1 or self.batch_size < 1
                or not 0 <= self.tempo_perturb < 0.5 or not self.lr > 0 or self.max_fit_frames < self.codebook_size):
            raise ValueError(f"invalid ctc-kmeans config: {self}")


def encoder(cfg: CTCKMeansConfig):
    """The recogniser: float32[B, T, n_mels] at 100 Hz -> (hidden [B, T', 2 * rnn], logits [B, T', 29]),
    T' = ceil(T / 4) at `ctc_hz` 25, ceil(T / 2) at 50."""
    import torch
    from torch import nn

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Sequential(nn.Conv1d(cfg.n_mels, cfg.hidden, 5, 2, 2), nn.GELU(),
                                      nn.Conv1d(cfg.hidden, cfg.hidden, 5, 100 // (2 * cfg.ctc_hz), 2), nn.GELU())
            self.rnn = nn.GRU(cfg.hidden, cfg.hidden * 2 // 3, 2, batch_first=True, bidirectional=True)
            self.out = nn.Linear(2 * (cfg.hidden * 2 // 3), len(ALPHABET) + 1)

        def forward(self, x: torch.Tensor):
            z = self.conv(x.transpose(1, 2)).transpose(1, 2)
            h, _ = self.rnn(z)
            return h, self.out(h)

    return Encoder()


class CTCKMeansTokenizer(FittedKMeansMixin):
    """`ctc-kmeans`: a CTC character recogniser trained on transcripts, its hidden states -> k-means."""

    kind = "ctc-kmeans"
    later_options = {"ctc_hz": 25}  # the recogniser's rate before `ctc_hz` existed
    needs_text = True  # fit_on_dialogues passes the transcripts

    def __init__(self, config: CTCKMeansConfig | None = None, codebook: KMeansCodebook | None = None, model=None):
        self.config = config or CTCKMeansConfig()
        self.codebook = codebook
        self.model = model

    @classmethod
    def from_config(cls, config: dict) -> CTCKMeansTokenizer:
        return cls(from_dict(CTCKMeansConfig, config, "ctc-kmeans tokenizer"))

    @classmethod
    def load(cls, directory: str | Path) -> CTCKMeansTokenizer:
        import torch

        from convmem.tokenizers.kmeans import CODEBOOK_FILE

        directory = Path(directory)
        config = cls._saved_config(CTCKMeansConfig, directory)
        path = directory / ENCODER_FILE
        if not path.is_file():
            raise ConfigError(f"{path}: recogniser weights not found")
        model = encoder(config)
        try:
            model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        except (RuntimeError, OSError, ValueError) as exc:
            raise ConfigError(f"{path}: not this tokenizer's recogniser ({exc})") from None
        return cls(config, KMeansCodebook.load(directory / CODEBOOK_FILE, config.codebook_size), model.eval())

    @property
    def is_fitted(self) -> bool:
        return self.codebook is not None and self.model is not None

    def _fingerprint_extra(self) -> tuple:
        return (config_hash({}, *(p.detach().numpy() for p in self.model.state_dict().values())),)

    def log_mel(self, wave: np.ndarray) -> np.ndarray:
        """float32[samples] at 16 kHz -> float32[4 * n_frames(samples), n_mels], utterance mean removed."""
        from convmem.tokenizers.logmel import mel_power

        fitted = fit_to_frames(wave, n_frames(wave.size))
        mel = np.log10(np.maximum(mel_power(fitted, self.config.n_mels), 1e-8)).T
        return (mel - mel.mean(axis=0, keepdims=True)).astype(np.float32)

    def _states(self, mel: np.ndarray) -> np.ndarray:
        """float32[100 Hz frames, n_mels] -> float32[25 Hz frames, D]: what k-means clusters (`states`)."""
        import torch

        with torch.no_grad():
            hidden, logits = self.model(torch.from_numpy(mel)[None])
        posteriors = self.config.states == "posteriors"
        out = torch.log_softmax(logits[0], dim=-1) if posteriors else hidden[0]
        if self.config.ctc_hz == 50:  # 4n mel frames -> 2n recogniser frames -> n codes
            pairs = out.reshape(-1, 2, out.shape[-1])
            # posteriors: the mean probability of the 40 ms, so each row stays a distribution
            out = torch.logsumexp(pairs, 1) - math.log(2) if posteriors else pairs.mean(1)
        return out.numpy()

    def features(self, wave: np.ndarray) -> np.ndarray:
        """float32[samples] -> float32[n_frames(samples), D]: the recogniser's states (`states`)."""
        self._fitted_codebook()  # the mixin's not-fitted check (recogniser and codebook)
        return self._states(self.log_mel(wave))

    def fit(self, waveforms: Iterable[np.ndarray], sample_rate: int = SAMPLE_RATE,
            texts: Sequence[str | None] | None = None, progress: bool = True):
        """Train the recogniser on (waveform, transcript) pairs, then the codebook; returns self.

        texts: one transcript per waveform (None or "" for none: that audio only feeds k-means).
        progress: show the recogniser's progress bar.
        """
        mels = [self.log_mel(w) for w in iter_waveforms(waveforms, sample_rate)]
        if texts is None or len(texts) != len(mels):
            raise ConfigError(f"ctc-kmeans: fit needs one transcript per waveform "
                              f"({len(mels)} waveforms, {'no' if texts is None else len(texts)} transcripts)")
        pairs = [(m, ids) for m, ids in zip(mels, (characters(t or "") for t in texts)) if ids]
        if not pairs:
            raise ConfigError("ctc-kmeans: no utterance has a transcript (the manifest's `text`); "
                              "this tokenizer learns from transcripts")
        self.model = self._train(pairs, progress)
        cfg = self.config
        self.codebook = KMeansCodebook.fit((self._states(m) for m in mels), cfg.codebook_size, cfg.seed,
                                           cfg.max_fit_frames, cfg.n_init)
        return self

    def _train(self, pairs: list[tuple[np.ndarray, list[int]]], progress: bool = True):
        import torch
        from torch import nn
        from tqdm import tqdm

        cfg = self.config
        torch.manual_seed(cfg.seed)
        rng = np.random.default_rng(cfg.seed)
        model = encoder(cfg)
        opt = torch.optim.AdamW(model.parameters(), cfg.lr)
        loss_fn = nn.CTCLoss(zero_infinity=True)  # a target longer than its audio is skipped, not NaN
        order = sorted(range(len(pairs)), key=lambda i: len(pairs[i][0]))  # similar lengths per batch
        batches = [order[i: i + cfg.batch_size] for i in range(0, len(order), cfg.batch_size)]
        model.train()
        bar = tqdm(total=cfg.epochs * len(batches), desc="fit ctc-kmeans recogniser", unit="batch",
                   disable=not progress)
        for _ in range(cfg.epochs):
            for k in rng.permutation(len(batches)):
                tempo = 1.0 + float(rng.uniform(-cfg.tempo_perturb, cfg.tempo_perturb))
                mels = [torch.from_numpy(_stretch(pairs[i][0], tempo)) for i in batches[k]]
                lengths = torch.tensor([len(m) for m in mels])
                targets = [torch.tensor(pairs[i][1]) for i in batches[k]]
                _, logits = model(nn.utils.rnn.pad_sequence(mels, batch_first=True))
                loss = loss_fn(logits.log_softmax(-1).transpose(0, 1), torch.cat(targets),
                               _ctc_frames(lengths, cfg.ctc_hz), torch.tensor([len(t) for t in targets]))
                opt.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(model.parameters(), 5.0)
                opt.step()
                bar.update(1)
                bar.set_postfix(ctc=f"{loss.item():.3f}")
        bar.close()
        return model.eval()

    def transcribe(self, waveform: np.ndarray, sample_rate: int = SAMPLE_RATE) -> str:
        """Greedy CTC reading of `waveform` (a check that the codes' recogniser reads words)."""
        import torch

        self._fitted_codebook()
        with torch.no_grad():
            _, logits = self.model(torch.from_numpy(self.log_mel(prepare_waveform(waveform, sample_rate)))[None])
        best = logits[0].argmax(-1).tolist()
        return "".join(ALPHABET[c - 1] for i, c in enumerate(best) if c and (i == 0 or c != best[i - 1]))

    def save(self, directory: str | Path) -> Path:
        import torch

        from convmem.fileio import atomic_open

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self._fitted_codebook()
        with atomic_open(directory / ENCODER_FILE, "wb") as fh:
            torch.save(self.model.state_dict(), fh)
        return super().save(directory)


def _ctc_frames(mel_lengths, ctc_hz: int):
    """Recogniser frames of 100 Hz feature sequences (the strided convolutions' ceil)."""
    step = 100 // ctc_hz
    return (mel_lengths + step - 1) // step


def _stretch(mel: np.ndarray, tempo: float) -> np.ndarray:
    """Resample a feature sequence in time by `tempo` (> 1: faster speech, fewer frames)."""
    if tempo == 1.0:
        return mel
    idx = np.minimum((np.arange(max(4, int(len(mel) / tempo))) * tempo).astype(np.int64), len(mel) - 1)
    return mel[idx]

"""MODEL_CARD.md for a trained model directory: what it was trained on, how it scored, what it is
for, and what it must not be used for."""

from __future__ import annotations

from collections import Counter

from convmem.corpus.types import Dialogue


def render_card(cfg, fold_info: dict, train: list[Dialogue], scores: dict | None = None) -> str:
    """Markdown card. `fold_info`: fold name, train/test sessions; `scores`: optional WA/UA/WF1."""
    utts = [u for d in train for u in d.utterances]
    counts = Counter(u.emotion for u in utts if u.emotion is not None)
    minutes = sum(d.duration for d in train) / 60
    lines = [
        f"# convmem model: {cfg.name} / {fold_info.get('fold', 'final')}",
        "",
        "## What it is",
        f"- Emotion SLM backbone `{cfg.slm.backbone}`, context window n_limit = {cfg.slm.n_limit} tokens "
        f"({cfg.slm.n_limit / 25:.0f} s of audio at 25 Hz); speech tokenizer `{cfg.tokenizer.kind}`.",
        *(["- Each utterance ends with speaker-relative prosody marks (pitch, range, level, tempo against the "
           "same speaker's earlier turns of the conversation): give speakers (segments, live `speaker`) "
           "where known; without them a conversation is one speaker."] if cfg.slm.prosody_marks else []),
        f"- Labels: {', '.join(cfg.corpus.labels)}. Test-time memories: none, window, DPM (temporary LoRA"
        f" r={cfg.dpm.rank}, lr={cfg.dpm.lr}), and, where present, the classifier baseline and MAL.",
        "",
        "## Training data",
        f"- Corpus: {cfg.corpus.title()}" + (f" — {cfg.corpus.caveat}" if cfg.corpus.caveat else ""),
        f"- Sessions: {', '.join(fold_info.get('train_sessions', sorted({d.session for d in train})))}"
        f" ({len(train)} dialogues, {len(utts)} utterances, {minutes:.1f} min).",
        f"- Held-out sessions: {', '.join(fold_info.get('test_sessions', [])) or 'none (final model)'}.",
        f"- Scored utterances per label: {', '.join(f'{k} {v}' for k, v in sorted(counts.items()))}.",
        *([f"- Plus {cfg.augment.copies} speaker-perturbed cop{'y' if cfg.augment.copies == 1 else 'ies'} of every "
           f"training dialogue (speed ×e^±{cfg.augment.speed:g}, gain ±{cfg.augment.gain_db:g} dB"
           + (f", tempo ×e^±{cfg.augment.tempo:g} at the same pitch" if cfg.augment.tempo else "")
           + (f", pauses ×e^±{cfg.augment.pause:g}" if cfg.augment.pause else "") + " per speaker; "
           "convmem.audio.augment)."] if cfg.augment.copies else []),
        "",
        "## Scores",
        *(["- " + ", ".join(f"{k} {v}" for k, v in scores.items())] if scores else
          ["- See the run's report.md (results.json) for this fold's held-out scores with confidence intervals."]),
        "",
        "## Intended use",
        "- Research on emotion recognition in long conversations; per-utterance emotion timelines of "
        "recordings whose speakers consented to the analysis.",
        "- Not validated on speakers, languages or recording conditions unlike its training data; "
        "synthetic or acted training data does not transfer to spontaneous speech without evaluation.",
        "",
        "## Privacy",
        "- Emotion inferred from a conversation's history is sensitive (the DPM paper's own concern): do not "
        "use for surveillance or emotional profiling, and never without the speakers' informed consent.",
        "- The test-time memory (temporary LoRA / neural memory) is built per conversation and discarded when "
        "it ends; `convmem serve` keeps neither audio nor memory after a session closes.",
        "",
    ]
    return "\n".join(lines)

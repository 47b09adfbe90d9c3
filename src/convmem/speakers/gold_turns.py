"""Auto-diarised speakers on gold turns: what a wrong speaker count costs the emotions.

A study normally reads each turn's speaker from the manifest (gold). With `eval.speakers: auto`,
each test dialogue keeps its gold turn times but its speakers come from diarisation: every turn is
embedded with the GE2E encoder (encoder.py) and the turns are clustered with the count estimated
(cluster.py), as `predict --speakers auto` would label them. Training dialogues keep gold speakers,
so the comparison isolates the labels a user's recording would get.

Labels are "<dialogue id>:spkK", so they never collide with another dialogue's or a training speaker's.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from convmem.corpus.types import Dialogue


def diarised_dialogue(dialogue: Dialogue) -> Dialogue:
    """`dialogue` with every utterance's speaker replaced by its estimated cluster (module doc).

    A turn too short to embed (< encoder.MIN_SECONDS) takes the previous turn's label (the first
    embedded turn's when it opens the dialogue)."""
    from convmem.speakers.cluster import cluster_embeddings, speaker_name
    from convmem.speakers.encoder import MIN_SECONDS, SAMPLE_RATE, embed_utterance
    from convmem.tokenizers.dialogue_audio import utterance_waveform

    embedded: list[int] = []
    emb, seconds = [], []
    for i, u in enumerate(dialogue.utterances):
        wave = utterance_waveform(u, dialogue)
        if wave.size >= MIN_SECONDS * SAMPLE_RATE:
            embedded.append(i)
            emb.append(embed_utterance(wave, SAMPLE_RATE))
            seconds.append(wave.size / SAMPLE_RATE)
    if not embedded:
        labels = [0] * len(dialogue.utterances)
    else:
        found = dict(zip(embedded, cluster_embeddings(np.stack(emb), durations=np.asarray(seconds)).tolist()))
        last = found[embedded[0]]
        labels = []
        for i in range(len(dialogue.utterances)):
            last = found.get(i, last)
            labels.append(last)
    utterances = [replace(u, speaker=f"{dialogue.dialogue_id}:{speaker_name(k)}")
                  for u, k in zip(dialogue.utterances, labels)]
    return replace(dialogue, utterances=utterances)


def diarised_dialogues(dialogues: list[Dialogue]) -> list[Dialogue]:
    """diarised_dialogue of each, in order."""
    return [diarised_dialogue(d) for d in dialogues]

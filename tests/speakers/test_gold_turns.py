"""Auto-diarised speakers on gold turns (eval.speakers: auto)."""

from __future__ import annotations

import pytest
import soundfile as sf

from convmem.config import from_dict
from convmem.corpus.types import Dialogue, Utterance
from convmem.errors import ConfigError
from convmem.run_config import RunConfig
from convmem.speakers.gold_turns import diarised_dialogues
from tests.speakers.voices import two_voices


def test_gold_turns_get_diarised_speakers_named_per_dialogue(tmp_path, one_thread):
    wave, gold = two_voices()
    sf.write(tmp_path / "d1.wav", wave, 16000, subtype="FLOAT")
    turns = [Utterance(f"u{i}", "AB"[v], a, b, "neu") for i, (a, b, v) in enumerate(gold)]
    # a blip too short to embed takes the previous turn's label
    turns.insert(2, Utterance("blip", "B", gold[1][1] + 0.01, gold[1][1] + 0.05, None))
    dialogue = Dialogue("d1", "s1", turns, audio=tmp_path / "d1.wav")
    (auto,) = diarised_dialogues([dialogue])
    assert [u.speaker for u in auto.utterances] == ["d1:spk1", "d1:spk2", "d1:spk2"] + ["d1:spk1", "d1:spk2"] * 2
    # only the speakers change: ids, times, emotions and the gold dialogue itself stay
    assert [(u.id, u.start, u.end, u.emotion) for u in auto.utterances] == [
        (u.id, u.start, u.end, u.emotion) for u in turns]
    assert dialogue.utterances[0].speaker == "A"


def test_eval_speakers_setting():
    assert from_dict(RunConfig, {"eval": {"speakers": "auto"}}).eval.speakers == "auto"
    assert from_dict(RunConfig, {}).eval.speakers == "gold"
    with pytest.raises(ConfigError, match="eval.speakers"):
        from_dict(RunConfig, {"eval": {"speakers": "diarised"}})

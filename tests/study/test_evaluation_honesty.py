"""Gold labels never reach inference: permuting a test dialogue's labels changes no prediction."""

from __future__ import annotations

import dataclasses

import pytest

from convmem.audio.augment import SpeakerAugmentConfig
from convmem.audio.io import write_wav
from convmem.bundle import load_bundle
from convmem.corpus.types import Dialogue, Utterance
from convmem.study.evaluation import evaluate_method
from convmem.run_config import RunConfig
from convmem.tokenizers.utterance_encoder import UtteranceEncoder
from tests.model_fixture import speech_recording, tiny_bundle


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("honesty")
    bundle = load_bundle(tiny_bundle(tmp))
    wave, spans = speech_recording(6, seed=4)
    wav = write_wav(tmp / "d.wav", wave)
    labels = ["neu", "ang", "ang", "sad", None, "hap"]
    utts = [Utterance(f"u{i}", "A" if i % 2 else "B", s, e, labels[i]) for i, (s, e) in enumerate(spans)]
    dialogue = Dialogue("d", "S1", utts, audio=wav)
    table = UtteranceEncoder.of(bundle).dialogues([dialogue], progress=False)
    return bundle, dialogue, table


@pytest.mark.parametrize("method", ["none", "window", "dpm"])
def test_permuted_gold_labels_change_no_prediction(setup, method):
    bundle, dialogue, table = setup
    cfg = RunConfig()
    cfg.dpm.rank, cfg.dpm.alpha, cfg.dpm.lr = 4, 4, 1e-2  # a memory that visibly moves
    rows, _ = evaluate_method(cfg, bundle, method, [dialogue], table, "f")
    permuted = ["hap", "neu", "sad", "ang", None, "ang"]
    other = dataclasses.replace(dialogue, utterances=[dataclasses.replace(u, emotion=e)
                                                     for u, e in zip(dialogue.utterances, permuted)])
    rows2, _ = evaluate_method(cfg, bundle, method, [other], table, "f")
    assert [r["probs"] for r in rows] == [r["probs"] for r in rows2]
    assert [r["predicted"] for r in rows] == [r["predicted"] for r in rows2]
    assert [r["gold"] for r in rows] != [r["gold"] for r in rows2]  # the labels did change


def test_perturbed_training_copies_keep_each_turns_label_and_add_new_audio(setup, tmp_path):
    from convmem.study.coding import encoder, training_dialogues

    bundle, dialogue, _ = setup
    cfg = RunConfig(augment=SpeakerAugmentConfig(copies=2))
    enc = encoder(bundle.tokenizer, tmp_path, prosody_marks=False, frames=False)
    original, *copies = training_dialogues(cfg, enc, [dialogue])
    assert [c.dialogue_id for c in copies] == ["d#aug1", "d#aug2"]
    for copy in copies:
        assert [e for _, e in copy.utterances] == [e for _, e in original.utterances]  # None stays None
        assert any(a.size != b.size or (a != b).any() for a, b in zip(copy.codes, original.codes))
    assert [c.dialogue_id for c in training_dialogues(RunConfig(), enc, [dialogue])] == ["d"]


def test_mal_copies_are_voices_the_slm_never_trained_on(setup, tmp_path):
    from convmem.errors import ConfigError
    from convmem.study.coding import encoder, mal_copies, training_dialogues
    from convmem.train.mal_trainer import MALTrainConfig

    bundle, dialogue, _ = setup
    cfg = RunConfig(augment=SpeakerAugmentConfig(copies=1), mal_train=MALTrainConfig(copies=2))
    enc = encoder(bundle.tokenizer, tmp_path, prosody_marks=True, frames=False)
    original, slm_copy = training_dialogues(cfg, enc, [dialogue])
    own = mal_copies(cfg, enc, [dialogue])
    assert [c.dialogue_id for c in own] == ["d#aug1", "d#aug2"]
    for copy in own:
        assert [e for _, e in copy.utterances] == [e for _, e in original.utterances]
        for seen in (original, slm_copy):  # neither the original voices nor the SLM's copy
            assert any(a.size != b.size or (a != b).any() for a, b in zip(copy.codes, seen.codes))
    assert mal_copies(RunConfig(augment=SpeakerAugmentConfig(copies=1)), enc, [dialogue]) == []
    for bad in (17, True):
        with pytest.raises(ConfigError, match=r"mal_train.copies must be an integer in \[0, 16\]"):
            MALTrainConfig(copies=bad)
    with pytest.raises(ConfigError, match="mal_train.copies: the copies need a voice change"):
        RunConfig(augment=SpeakerAugmentConfig(speed=0.0), mal_train=MALTrainConfig(copies=1))


def test_mal_never_fits_a_validation_dialogue_and_validates_on_voices_the_slm_did_not_fit():
    from types import SimpleNamespace as D

    from convmem.study.coding import mal_split

    slm = [D(dialogue_id=i) for i in ("a", "a#aug1", "v", "v#aug1")]  # originals + the SLM's copies
    own = [D(dialogue_id=i) for i in ("a#aug1", "a#aug2", "v#aug1", "v#aug2")]  # MAL's own copies
    fit, val = mal_split(slm, own, held={"v"})
    assert [d.dialogue_id for d in fit] == ["a", "a#aug1", "a#aug1", "a#aug2"]
    assert [d.dialogue_id for d in val] == ["v", "v#aug1", "v#aug2"]
    assert val[1] is own[2] and val[2] is own[3]  # MAL's copies, not the SLM's v#aug1
    fit, val = mal_split(slm, [], held=set())
    assert fit == slm and val == []

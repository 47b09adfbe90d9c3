"""Cross-fitting inside a fold's training sessions (study/crossfit.py): inner backbones never train
on the sessions they predict, and the predicted tokens reach the training streams."""

from __future__ import annotations

import types

import numpy as np
import pytest

from convmem.corpus.types import Dialogue, Utterance
from convmem.errors import ConfigError
from convmem.slm.stream import CodedDialogue
from convmem.study import crossfit

LABELS = ["neu", "hap", "sad", "ang"]


def _data(sessions=("s1", "s2", "s3", "s4", "s5"), per=2, turns=3):
    rng = np.random.default_rng(0)
    dialogues, coded = [], []
    for s in sessions:
        for k in range(per):
            did = f"{s}_d{k}"
            emos = [LABELS[int(rng.integers(4))] if t != 1 else None for t in range(turns)]
            dialogues.append(Dialogue(dialogue_id=did, session=s, utterances=[
                Utterance(id=f"{did}_{t}", speaker=f"{s}_A", start=t, end=t + 1, emotion=e) for t, e in enumerate(emos)]))
            coded.append(CodedDialogue(did, [(rng.integers(0, 8, 3), e) for e in emos]))
    # a perturbed copy of one dialogue: trains with its source, predicted as its source
    coded.append(CodedDialogue("s1_d0#aug0", coded[0].utterances))
    return dialogues, coded


def test_inner_groups_are_whole_sessions_dealt_round_robin():
    dialogues, _ = _data()
    assert crossfit.inner_groups(dialogues, 3) == [["s1", "s4"], ["s2", "s5"], ["s3"]]
    assert crossfit.inner_groups(dialogues, 9) == [["s1"], ["s2"], ["s3"], ["s4"], ["s5"]]
    with pytest.raises(ConfigError, match="at least 2 training sessions"):
        crossfit.inner_groups(dialogues[:2], 3)


def test_out_of_fold_tokens_never_come_from_a_backbone_that_heard_the_session(tmp_path, monkeypatch):
    import convmem.train.loop as loop
    from convmem.slm.model import SLMConfig, build_model, make_vocab
    from convmem.train.loop import TrainConfig

    dialogues, coded = _data()
    seen = []

    def fake_train(model, vocab, data, cfg, out_dir, resume=False):
        assert cfg.emotion_tokens == "none"  # inner backbones read no tokens
        seen.append({d.dialogue_id for d in data})
        return model

    monkeypatch.setattr(loop, "train_slm", fake_train)
    slm_cfg = SLMConfig(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32, n_limit=64)
    vocab = make_vocab(slm_cfg, 8, LABELS)
    cfg = types.SimpleNamespace(train=TrainConfig(emotion_tokens="predicted"), crossfit=types.SimpleNamespace(folds=2),
                                corpus=types.SimpleNamespace(labels=LABELS), slm=slm_cfg,
                                eval=types.SimpleNamespace(batch_size=4))
    tokens = crossfit.out_of_fold_tokens(cfg, dialogues, coded, lambda: build_model(slm_cfg, vocab), tmp_path / "cf")
    groups = crossfit.inner_groups(dialogues, 2)
    assert len(seen) == 2
    for fit, held in zip(seen, groups):
        sessions = {i.split("_")[0].split("#")[0] for i in fit}
        assert not sessions & set(held) and sessions | set(held) == {"s1", "s2", "s3", "s4", "s5"}
        assert ("s1_d0#aug0" in fit) == ("s1" not in held)  # a copy goes with its source's session
    assert set(tokens) == {d.dialogue_id for d in dialogues}  # every original, no copy
    assert all(len(tokens[d.dialogue_id]) == len(d.utterances) and set(tokens[d.dialogue_id]) <= set(LABELS)
               for d in dialogues)
    # saved: a rerun reads the table and trains nothing
    assert crossfit.out_of_fold_tokens(cfg, dialogues, coded, None, tmp_path / "cf") == tokens and len(seen) == 2
    attached = crossfit.attach_tokens(coded, tokens)
    assert attached[-1].tokens == tokens["s1_d0"] and attached[3].tokens == tokens[coded[3].dialogue_id]
    with pytest.raises(ConfigError, match="no out-of-fold tokens for dialogue 's9_d0'"):
        crossfit.attach_tokens([CodedDialogue("s9_d0", coded[0].utterances)], tokens)


def test_predicted_training_tokens_need_predicted_tokens_at_inference():
    from convmem.config import load_config
    from convmem.run_config import RunConfig

    with pytest.raises(ConfigError, match="eval.emotion_tokens: must be 'predicted'"):
        load_config(RunConfig, None, ["train.emotion_tokens=predicted", "eval.emotion_tokens=none"])
    with pytest.raises(ConfigError, match="crossfit.folds"):
        load_config(RunConfig, None, ["crossfit.folds=1"])
    # a DPM write of the emotion token needs tokens in the history
    with pytest.raises(ConfigError, match="eval.dpm_variants.de.write_emotion: needs eval.emotion_tokens"):
        load_config(RunConfig, None, ["train.emotion_tokens=none", "eval.emotion_tokens=none",
                                      "eval.dpm_variants={de: {write_emotion: token}}"])


def test_each_dialogue_is_read_by_the_backbone_that_held_out_its_session():
    """MAL cross-fitting: no training or validation dialogue (or copy) is read by a backbone
    trained on its session."""
    dialogues, coded = _data()
    groups = crossfit.inner_groups(dialogues, 2)
    backbones = [(held, object()) for held in groups]
    index = crossfit.backbone_index(dialogues, backbones, coded)
    session_of = {d.dialogue_id: d.session for d in dialogues}
    for cd, j in zip(coded, index):
        assert session_of[cd.dialogue_id.split("#")[0]] in groups[j]


def test_a_cross_fit_folder_is_reused_only_for_the_same_groups_data_and_settings(tmp_path):
    from convmem.slm.model import SLMConfig
    from convmem.train.loop import TrainConfig

    dialogues, coded = _data()
    cfg = types.SimpleNamespace(slm=SLMConfig(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32),
                                train=TrainConfig(), crossfit=types.SimpleNamespace(folds=2))
    groups = crossfit.inner_groups(dialogues, 2)
    crossfit.claim(tmp_path / "cf", cfg, cfg.train, groups, coded)
    crossfit.claim(tmp_path / "cf", cfg, cfg.train, groups, coded)  # the same: reused
    with pytest.raises(ConfigError, match="other groups"):
        crossfit.claim(tmp_path / "cf", cfg, cfg.train, crossfit.inner_groups(dialogues, 3), coded)
    with pytest.raises(ConfigError, match="other dialogues"):
        crossfit.claim(tmp_path / "cf", cfg, cfg.train, groups, coded[:-1])
    with pytest.raises(ConfigError, match="other train"):
        crossfit.claim(tmp_path / "cf", cfg, TrainConfig(lr=1e-3), groups, coded)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "k0").mkdir()
    with pytest.raises(ConfigError, match="unknown cross-fitting"):
        crossfit.claim(tmp_path / "other", cfg, cfg.train, groups, coded)

"""The contextual reference memory (memory/inertia.py): a per-conversation, per-speaker HMM filter over
any memory's posteriors, with transitions counted on training dialogues."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from convmem.corpus.types import Dialogue, Utterance
from convmem.engine.conversation import ConversationEngine
from convmem.memory.inertia import InertiaMemory, transition_counts, transition_matrix
from convmem.slm.audio_embedding import UtteranceInput

LABELS = ("neu", "hap", "sad", "ang")
AUDIO_END, EMOTION_IDS = 59, (60, 61, 62, 63)


class EchoMemory:
    """A stand-in reader: utterance i's logits are a fixed function of its first id (no context)."""

    name = "echo"
    history_tokens = 0

    def init(self, batch_size):
        return None

    def reset(self, state, rows, keys=None):
        return state

    def write(self, state, batch):
        return state, torch.full((batch.batch_size,), float("nan"))

    def read(self, state, batch):
        first = batch.input_ids.gather(1, batch.attention_mask.argmax(-1, keepdim=True)).squeeze(1)
        g = torch.Generator().manual_seed(0)
        table = torch.randn(64, 4, generator=g) * 2.0
        return table[first]


def _dialogue(did, spec):
    """spec: [(speaker, emotion)] -> a Dialogue (times are placeholders)."""
    return Dialogue(dialogue_id=did, session="s", utterances=[
        Utterance(id=f"{did}_{i}", speaker=s, start=float(i), end=i + 0.5, emotion=e) for i, (s, e) in enumerate(spec)])


def test_transition_counts_pair_each_speakers_consecutive_labelled_turns():
    d = _dialogue("d", [("A", "neu"), ("B", "sad"), ("A", "neu"), ("B", None), ("A", "hap"), ("B", "sad"), ("B", "ang")])
    counts = np.array(transition_counts([d], LABELS))
    want = np.zeros((4, 4), int)
    want[0, 0] += 1  # A neu -> neu
    want[0, 1] += 1  # A neu -> hap
    want[3 - 1, 3] += 1  # B sad -> ang (the unlabelled turn breaks sad -> sad; None -> sad not counted)
    np.testing.assert_array_equal(counts, want)
    a, pi = transition_matrix(counts, [2, 1, 2, 1])
    np.testing.assert_allclose(a.sum(1), 1.0)
    np.testing.assert_allclose(a[0], np.array([2, 2, 1, 1]) / 6)  # add-one smoothing
    np.testing.assert_allclose(pi, np.array([3, 2, 3, 2]) / 10)


def _conv(seed, speakers):
    g = torch.Generator().manual_seed(seed)
    return [UtteranceInput(torch.randint(0, 59, (3,), generator=g), speaker=s) for s in speakers]


def _filter_by_hand(logits, speakers, a, pi):
    out, alpha = [], {}
    for lg, s in zip(logits, speakers):
        p = torch.softmax(torch.as_tensor(lg, dtype=torch.float64), -1).numpy()
        if s in alpha:
            p = p / pi * (alpha[s] @ a)
            p = p / p.sum()
        alpha[s] = p
        out.append(np.log(p))
    return np.array(out)


def test_inertia_is_the_forward_filter_per_speaker_and_per_conversation(dlg):
    a = np.array([[0.7, 0.1, 0.1, 0.1], [0.1, 0.7, 0.1, 0.1], [0.1, 0.1, 0.7, 0.1], [0.2, 0.2, 0.2, 0.4]])
    pi = np.array([0.4, 0.2, 0.2, 0.2])
    mem = InertiaMemory(EchoMemory(), a, pi)
    engine = ConversationEngine(mem, AUDIO_END, EMOTION_IDS, 64, "predicted")
    plain = ConversationEngine(EchoMemory(), AUDIO_END, EMOTION_IDS, 64, "predicted")
    spk = [["A", "B", "A", "A", "B"], ["B", "B", "A"], ["A"] * 6]
    convs = [_conv(k, s) for k, s in enumerate(spk)]
    # interleaved conversations (3 rows side by side, rows restarting) equal each one alone
    alone = dlg.engine_runs_agree(engine, convs, batch_size=2, atol=1e-6)
    for conv, speakers, res in zip(convs, spk, alone):
        inner = plain.run([conv])[0].logits
        np.testing.assert_allclose(res.logits, _filter_by_hand(inner, speakers, a, pi), atol=1e-5)
        # a speaker's first turn reads exactly the inner posterior
        first = [speakers.index(s) for s in dict.fromkeys(speakers)]
        np.testing.assert_allclose(res.logits[first], torch.log_softmax(torch.tensor(inner[first]), -1).numpy(), atol=1e-5)
    # the filter really moved a later turn (the test can fail)
    assert not np.allclose(alone[2].logits[1:], torch.log_softmax(torch.tensor(plain.run([convs[2]])[0].logits[1:]), -1).numpy(), atol=1e-3)


def test_another_speaker_does_not_move_a_speakers_chain():
    a = np.full((4, 4), 0.1) + np.eye(4) * 0.6
    pi = np.full(4, 0.25)
    engine = ConversationEngine(InertiaMemory(EchoMemory(), a, pi), AUDIO_END, EMOTION_IDS, 64, "none")
    base = _conv(7, ["A", "B", "A"])
    other_b = [base[0], _conv(8, ["B"])[0], base[2]]
    x, y = (engine.run([c])[0].logits for c in (base, other_b))
    np.testing.assert_allclose(x[2], y[2], atol=1e-6)  # A's third turn reads A's chain only
    named_a = [base[0], UtteranceInput(other_b[1].ids, speaker="A"), base[2]]
    z = engine.run([named_a])[0].logits
    assert not np.allclose(x[2], z[2], atol=1e-4)  # the same turn said by A moves A's chain


def test_registry_offers_the_reference_and_refuses_a_model_without_transitions(tmp_path):
    from convmem.bundle import load_bundle
    from convmem.errors import ConvmemError
    from convmem.memory import registry
    from tests.model_fixture import tiny_bundle

    assert {"inertia", "dpm_inertia", "mal_inertia"} <= set(registry.names())
    bundle = load_bundle(tiny_bundle(tmp_path))
    with pytest.raises(ConvmemError, match="transitions"):
        bundle.memory("inertia")
    bundle.info["training"] = {"label_counts": {"neu": 3, "hap": 1, "sad": 1, "ang": 1},
                               "speaker_transitions": [[3, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]}
    mem = bundle.memory("inertia")
    assert mem.name == "inertia" and mem.history_tokens == 0
    np.testing.assert_allclose(mem.transitions.numpy()[0], [4 / 7, 1 / 7, 1 / 7, 1 / 7])

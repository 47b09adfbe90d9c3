"""Segmentation sensitivity: mapping VAD predictions back to gold utterances by time overlap."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from convmem.corpus.types import Dialogue, Utterance
from convmem.eval.segmentation import map_to_gold, run_vad_dialogue, segmentation_summary, vad_segments_for_dialogue
from tests.model_fixture import speech_recording, tiny_bundle


def test_largest_overlap_wins():
    vad = [(0.0, 2.0), (2.5, 6.0), (7.0, 8.0)]
    gold = [(1.5, 3.0),   # 0.5 s with seg 0, 0.5 s with seg 1 -> tie, earlier
            (1.0, 4.0),   # 1.0 vs 1.5 -> seg 1
            (6.0, 7.0),   # touches seg 1 and seg 2 only at points -> unmatched
            (5.9, 9.0),   # 0.1 vs 1.0 -> seg 2
            (-1.0, 0.5)]  # seg 0
    m = map_to_gold(vad, ["a", "b", "c"], gold)
    assert m.predictions == ["a", "b", None, "c", "a"]
    assert m.segment == [0, 1, -1, 2, 0]
    assert m.overlap == pytest.approx([0.5, 1.5, 0.0, 1.0, 0.5])
    assert m.unmatched == 1


def test_gold_order_free_and_no_vad():
    m = map_to_gold([(0, 1), (2, 3)], [10, 20], [(2.2, 2.4), (0.1, 0.2)])
    assert m.predictions == [20, 10]
    empty = map_to_gold([], [], [(0, 1), (1, 2)])
    assert empty.predictions == [None, None] and empty.unmatched == 2


@pytest.mark.parametrize("vad,preds,msg", [
    ([(0, 1)], [1, 2], "2 predictions"),
    ([(0, 2), (1, 3)], [1, 2], "must not overlap"),
])
def test_bad_vad_input(vad, preds, msg):
    with pytest.raises(ValueError, match=msg):
        map_to_gold(vad, preds, [(0, 1)])


@pytest.fixture(scope="module")
def dialogue(tmp_path_factory):
    wave, spans = speech_recording(4, seed=31)
    path = tmp_path_factory.mktemp("dlg") / "d1.wav"
    sf.write(path, wave, 16000)
    utts = [Utterance(f"d1_{i}", "AB"[i % 2], s + 0.9, e - 0.3, emotion="neu") for i, (s, e) in enumerate(spans)]
    # a gold turn inside a pause: no VAD segment can overlap it
    utts.append(Utterance("d1_gap", "A", spans[-1][1] + 0.05, spans[-1][1] + 0.25, emotion="sad"))
    return Dialogue("d1", "s1", utts, audio=path)


def test_vad_segments_match_gold_turns(dialogue):
    torch.set_num_threads(1)
    segs = vad_segments_for_dialogue(dialogue)
    assert len(segs) == 4
    m = map_to_gold(segs, list(range(len(segs))), [(u.start, u.end) for u in dialogue.utterances])
    assert m.segment == [0, 1, 2, 3, -1]


def test_run_vad_dialogue_maps_engine_output(dialogue, tmp_path):
    from convmem.bundle import load_bundle

    torch.set_num_threads(1)
    bundle = load_bundle(tiny_bundle(tmp_path))
    res = run_vad_dialogue(bundle, "window", dialogue)
    assert len(res.segments) == 4 and res.segment_logits.shape == (4, 4)
    assert res.matched.tolist() == [True, True, True, True, False]
    np.testing.assert_array_equal(res.logits[:4], res.segment_logits)
    assert np.isnan(res.logits[4]).all()
    summ = segmentation_summary([res, res])
    assert summ["gold_utterances"] == 10 and summ["vad_segments"] == 8 and summ["unmatched"] == 2
    assert summ["unmatched_rate"] == pytest.approx(0.2)
    # 4 of 5 turns matched; each gold turn (clip minus its leading second) is mostly speech
    assert 0.8 * 0.5 < summ["mean_gold_coverage"] <= 0.8 + 1e-9
    # the same engine over the same segments, run directly, gives the same logits
    from convmem.audio.io import load_audio

    ids = [bundle.vocab.audio_ids(bundle.tokenizer.encode(load_audio(dialogue.audio, 16000, s, e)))
           for s, e in res.segments]
    with torch.no_grad():
        direct = bundle.engine("window").run([ids], keys=["d1"])[0].logits
    np.testing.assert_allclose(res.segment_logits, direct, atol=1e-5)


def test_dialogue_without_audio_is_named():
    from convmem.errors import ManifestError

    with pytest.raises(ManifestError, match="d9"):
        vad_segments_for_dialogue(Dialogue("d9", "s", [Utterance("u", "A", 0, 1)]))

import numpy as np
import pytest

from convmem.slm.stream import CodedDialogue, build_stream, dialogue_stream
from convmem.slm.vocab import EmotionVocab

V = EmotionVocab.tiny(codebook_size=10, labels=("neu", "hap", "sad", "ang"))  # a_0=1, end=11, emo 12..15


def test_stream_layout_audio_end_then_emotion_when_present():
    codes = [np.array([0, 9]), np.array([4]), np.array([], dtype=np.int64), np.array([2, 2, 2])]
    s = build_stream(codes, V, ["hap", None, "neu", "ang"])
    assert s.ids.tolist() == [1, 10, 11, 13, 5, 11, 11, 12, 3, 3, 3, 11, 15]
    assert s.utt_start.tolist() == [0, 4, 6, 8]
    assert s.audio_end_pos.tolist() == [2, 5, 6, 11]
    assert s.emotion_pos.tolist() == [3, -1, 7, 12]
    assert s.labels.tolist() == [1, -1, 0, 3]
    assert [s.utterance_end(i) for i in range(4)] == [4, 6, 8, 13]
    assert all(s.ids[s.audio_end_pos] == V.audio_end_id)


def test_inference_stream_without_emotions_has_no_emotion_tokens():
    s = build_stream([np.array([1]), np.array([2, 3])], V, [None, None])
    assert s.ids.tolist() == [2, 11, 3, 4, 11]
    assert s.emotion_pos.tolist() == [-1, -1]


def test_coded_dialogue_stream_and_errors_name_utterance():
    d = CodedDialogue("dlg7", [(np.array([1, 2]), "sad"), (np.array([3]), None)])
    assert d.n_tokens == 3 + 1 + 2
    assert len(dialogue_stream(d, V)) == d.n_tokens
    bad = CodedDialogue("dlg7", [(np.array([1]), "sad"), (np.array([10]), None)])
    with pytest.raises(ValueError, match=r"dialogue 'dlg7', utterance 1: audio code 10"):
        dialogue_stream(bad, V)
    with pytest.raises(ValueError, match=r"utterance 0: emotion 'fru'"):
        build_stream([np.array([1])], V, ["fru"])
    with pytest.raises(ValueError, match="2 utterances of codes but 1 emotions"):
        build_stream([np.array([1]), np.array([1])], V, ["neu"])


def test_stream_without_emotion_tokens_keeps_labels_for_le():
    from convmem.slm.stream import CodedDialogue, dialogue_stream
    from convmem.slm.vocab import EmotionVocab

    vocab = EmotionVocab.tiny(8, ("neu", "hap", "sad", "ang"))
    d = CodedDialogue("d", [(np.array([1, 2, 3]), "ang"), (np.array([4]), None), (np.array([5, 6]), "sad")])
    gold = dialogue_stream(d, vocab)
    bare = dialogue_stream(d, vocab, emotion_tokens="none")
    assert len(gold) == 3 + 1 + 1 + 1 + 1 + 2 + 1 + 1 and len(bare) == len(gold) - 2
    assert not set(bare.ids.tolist()) & set(vocab.emotion_ids)
    assert bare.labels.tolist() == gold.labels.tolist() == [3, -1, 2]
    assert bare.audio_end_pos.tolist() == [3, 5, 8]


def test_prosody_marks_sit_between_the_audio_and_audio_end():
    vm = EmotionVocab.tiny(codebook_size=10, labels=("neu", "hap", "sad", "ang"), prosody_marks=True)
    marks = [np.array([2, 2, 2, 2]), np.array([5, 5, 5, 5])]
    d = CodedDialogue("dlg3", [(np.array([0, 9]), "hap"), (np.array([4]), None)], marks)
    s = dialogue_stream(d, vm)
    assert s.ids.tolist() == [1, 10, 18, 24, 30, 36, 11, 13, 5, 21, 27, 33, 39, 11]
    assert s.audio_end_pos.tolist() == [6, 13] and s.utt_start.tolist() == [0, 8]
    assert len(s) == d.n_tokens
    with pytest.raises(ValueError, match=r"dialogue 'dlg3', utterance 0: .*none were given"):
        dialogue_stream(CodedDialogue("dlg3", d.utterances), vm)
    with pytest.raises(ValueError, match="2 utterances of codes but 1 of prosody marks"):
        build_stream(d.codes, vm, d.emotions, marks=marks[:1])


def test_predicted_training_stream_writes_back_the_tokens_and_keeps_gold_as_labels():
    """`emotion_tokens: predicted`: every turn (labelled or not) carries its out-of-fold token; the
    L_e labels stay gold; a dialogue without tokens is refused."""
    codes = [(np.array([0]), "hap"), (np.array([4, 5]), None), (np.array([2]), "sad")]
    d = CodedDialogue("d", codes, tokens=["sad", "neu", None])
    s = dialogue_stream(d, V, "predicted")
    assert s.ids.tolist() == [1, 11, 14, 5, 6, 11, 12, 3, 11]
    assert s.labels.tolist() == [1, -1, 2]
    assert s.emotion_pos.tolist() == [2, 6, -1]
    gold = dialogue_stream(d, V, "gold")
    assert gold.ids.tolist() == [1, 11, 13, 5, 6, 11, 3, 11, 14]
    with pytest.raises(ValueError, match="out-of-fold"):
        dialogue_stream(CodedDialogue("d", codes), V, "predicted")
    with pytest.raises(ValueError, match="3 utterances of codes but 2 of emotion tokens"):
        dialogue_stream(CodedDialogue("d", codes, tokens=["sad", "neu"]), V, "predicted")

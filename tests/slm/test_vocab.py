import numpy as np
import pytest
import torch

from convmem.slm.vocab import EmotionVocab, expand_tokenizer

LABELS = ("neu", "hap", "sad", "ang")


def test_tiny_layout_follows_eq2():
    v = EmotionVocab.tiny(codebook_size=10, labels=LABELS)
    assert (v.base_size, v.pad_id, v.audio_offset) == (1, 0, 1)
    assert v.audio_end_id == 11
    assert v.emotion_ids == (12, 13, 14, 15)
    assert v.size == 1 + 10 + 1 + 4  # |V_text| + |<audio_i>| + 1 + 4
    assert v.emotion_id("sad") == 14 and v.label_index("ang") == 3
    assert v.new_token_ids == tuple(range(1, 16))
    assert v.token_strings()[:2] == ["<a_0>", "<a_1>"] and v.token_strings()[10:12] == ["<audio_end>", "<emo_neu>"]


def test_audio_ids_maps_numpy_and_torch_codes():
    v = EmotionVocab(base_size=5, codebook_size=8, labels=LABELS)
    got = v.audio_ids(np.array([0, 7, 3], dtype=np.int64))
    assert got.dtype == torch.long and got.tolist() == [5, 12, 8]
    assert v.audio_ids(torch.tensor([2])).tolist() == [7]
    assert v.audio_ids(np.zeros(0, dtype=np.int64)).tolist() == []


@pytest.mark.parametrize("codes, msg", [
    (np.array([1, 8]), "audio code 8 at index 1 outside"),
    (np.array([-1]), "audio code -1 at index 0"),
    (np.array([[1]]), "must be 1-D"),
    (np.array([0.5]), "must be integers"),
])
def test_audio_ids_rejects_bad_codes(codes, msg):
    with pytest.raises(ValueError, match=msg):
        EmotionVocab(base_size=0, codebook_size=8, labels=LABELS).audio_ids(codes)


def test_unknown_label_and_bad_fields_raise():
    v = EmotionVocab.tiny(4, LABELS)
    with pytest.raises(ValueError, match="'fru' is not one of"):
        v.emotion_id("fru")
    with pytest.raises(ValueError, match="distinct"):
        EmotionVocab(0, 4, ("neu", "neu"))
    with pytest.raises(ValueError, match="lacks field"):
        EmotionVocab.from_json({"base_size": 1})


def test_json_roundtrip():
    v = EmotionVocab(base_size=7, codebook_size=33, labels=("a", "b"), pad_id=3)
    assert EmotionVocab.from_json(v.to_json()) == v


def _word_level_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = {"<unk>": 0, "<pad>": 1, "</s>": 2, "hello": 3, "world": 4}
    tk = Tokenizer(models.WordLevel(vocab=words, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>", pad_token="<pad>", eos_token="</s>")


def test_expand_tokenizer_adds_contiguous_special_tokens():
    tok = _word_level_tokenizer()
    v = expand_tokenizer(tok, codebook_size=6, labels=LABELS)
    assert (v.base_size, v.pad_id, v.size, len(tok)) == (5, 1, 5 + 6 + 1 + 4, 16)
    ids = tok("hello <a_0><a_5> <audio_end> <emo_ang>", add_special_tokens=False)["input_ids"]
    assert ids == [3, v.audio_offset, v.audio_offset + 5, v.audio_end_id, v.emotion_id("ang")]
    with pytest.raises(ValueError, match="expanded before"):
        expand_tokenizer(tok, codebook_size=6, labels=LABELS)


def test_prosody_marks_follow_the_emotions_and_end_each_utterance():
    v = EmotionVocab.tiny(codebook_size=10, labels=LABELS, prosody_marks=True)
    plain = EmotionVocab.tiny(codebook_size=10, labels=LABELS)
    assert v.emotion_ids == plain.emotion_ids and v.audio_end_id == plain.audio_end_id  # ids kept
    assert v.mark_offset == plain.size == 16 and v.size == 16 + 4 * 6
    assert v.new_token_ids == tuple(range(1, v.size))
    assert v.token_strings()[15:17] == ["<pm_pitch_-2>", "<pm_pitch_-1>"] and len(v.token_strings()) == v.size - 1
    # marks (bins 0..5 per feature, 5 = unknown) go after the audio ids, one block of 6 per feature
    assert v.utterance_ids(np.array([0, 9]), np.array([2, 5, 0, 4])).tolist() == [1, 10, 18, 27, 28, 38]
    assert plain.utterance_ids(np.array([3])).tolist() == [4]
    with pytest.raises(ValueError, match="none were given"):
        v.utterance_ids(np.array([1]))
    with pytest.raises(ValueError, match="no mark tokens"):
        plain.utterance_ids(np.array([1]), np.array([2, 2, 2, 2]))
    for bad in (np.array([2, 2, 2]), np.array([2, 2, 2, 6]), np.array([0.5, 2, 2, 2])):
        with pytest.raises(ValueError, match="4 integer bins"):
            v.utterance_ids(np.array([1]), bad)
    assert EmotionVocab.from_json(v.to_json()) == v
    old = {k: x for k, x in plain.to_json().items() if k != "prosody_marks"}  # saved before marks existed
    assert EmotionVocab.from_json(old) == plain


def test_expand_tokenizer_with_prosody_marks():
    tok = _word_level_tokenizer()
    v = expand_tokenizer(tok, codebook_size=6, labels=LABELS, prosody_marks=True)
    assert len(tok) == v.size == 5 + 6 + 1 + 4 + 24
    assert tok.convert_tokens_to_ids(["<pm_level_2>"]) == [v.mark_offset + 2 * 6 + 4]

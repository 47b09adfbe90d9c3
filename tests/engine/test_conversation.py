import numpy as np
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from convmem.engine.conversation import ConversationEngine
from convmem.memory.context import ContextMemory

AUDIO_END = 40
EMO = (41, 42, 43, 44)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=48, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512,
                      attn_implementation="sdpa")
    return LlamaForCausalLM(cfg).eval()


def _dialogue(seed, n_utts, lo=3, hi=12):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 40, (int(torch.randint(lo, hi, (1,), generator=g)),), generator=g) for _ in range(n_utts)]


def _engine(model, kind="window", n_limit=48, **kw):
    mem = getattr(ContextMemory, kind)(model, EMO, n_limit)
    return ConversationEngine(mem, AUDIO_END, EMO, n_limit, **kw)


def test_window_matches_direct_forward_of_truncated_stream(model):
    conv = _dialogue(1, 8)
    res = _engine(model, n_limit=48).run([conv])[0]
    stream = []
    for k, utt in enumerate(conv):
        window = torch.tensor(stream + utt.tolist() + [AUDIO_END])[-48:]
        logits = model(input_ids=window[None]).logits[0, -1, list(EMO)]
        np.testing.assert_allclose(res.logits[k], logits.detach().numpy(), atol=1e-5)
        stream += utt.tolist() + [AUDIO_END, EMO[int(logits.argmax())]]  # the model's own prediction
        assert res.history_tokens[k] == len(stream) - (utt.numel() + 2)
    assert res.window_tokens.max() <= 48


def test_none_ignores_history(model):
    a, b = _dialogue(2, 5), _dialogue(3, 5)
    b[-1] = a[-1].clone()
    ra, rb = _engine(model, "none").run([a, b])
    np.testing.assert_allclose(ra.logits[-1], rb.logits[-1], atol=1e-6)
    assert not np.allclose(ra.logits[:-1], rb.logits[:-1])


def test_emotion_token_mode_changes_context(model):
    conv = _dialogue(4, 6)
    pred = _engine(model).run([conv])[0]
    none = _engine(model, emotion_tokens="none").run([conv])[0]
    np.testing.assert_allclose(pred.logits[0], none.logits[0], atol=1e-6)  # nothing before utt 0
    assert not np.allclose(pred.logits[1:], none.logits[1:])
    assert pred.history_tokens[-1] - none.history_tokens[-1] == 5  # one emotion token per earlier utt


def test_oracle_only_with_labels(model):
    with pytest.raises(ValueError, match="oracle"):
        _engine(model, emotion_tokens="oracle").run([_dialogue(5, 3)])
    with pytest.raises(ValueError, match="oracle"):
        _engine(model).run([_dialogue(5, 3)], oracle_labels=[[0, 1, 2]])


def test_batched_rows_start_and_end_independently(model):
    convs = [_dialogue(s, n) for s, n in [(10, 7), (11, 2), (12, 5), (13, 9), (14, 1), (15, 4)]]
    eng = _engine(model)
    alone = [eng.run([c])[0] for c in convs]
    batched = eng.run(convs, batch_size=3)
    for a, b in zip(alone, batched):
        np.testing.assert_allclose(a.logits, b.logits, atol=1e-5)
        np.testing.assert_array_equal(a.predictions, b.predictions)
        np.testing.assert_array_equal(a.history_tokens, b.history_tokens)


def test_streaming_equals_per_sample(model):
    conv = _dialogue(20, 6)
    eng = _engine(model)
    s = eng.run([conv])[0]
    p = eng.run_per_sample([conv])[0]
    np.testing.assert_allclose(s.logits, p.logits, atol=1e-5)


def test_overlong_utterance_truncated_and_counted(model):
    conv = [torch.randint(0, 40, (5,)), torch.randint(0, 40, (60,))]
    res = _engine(model, n_limit=32).run([conv])[0]
    assert res.truncated.tolist() == [False, True]
    assert res.window_tokens[1] == 32


def test_on_utterance_reports_every_utterance_in_order(model):
    eng = _engine(model, n_limit=32)
    seen = []
    eng.run([_dialogue(30, 40)], on_utterance=lambda c, u, lg: seen.append(u))
    assert seen == list(range(40))


def test_live_conversation_equals_streaming_run(model):
    conv = _dialogue(40, 6)
    eng = _engine(model)
    full = eng.run([conv], keys=["x"])[0]
    live = eng.open("x")
    got = np.stack([live.push(u)[0] for u in conv])
    np.testing.assert_allclose(got, full.logits, atol=1e-6)
    live.close()
    with pytest.raises(RuntimeError, match="closed"):
        live.push(conv[0])

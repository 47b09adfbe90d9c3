import numpy as np
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from convmem.corpus.types import Dialogue, Utterance
from convmem.engine.conversation import ConversationEngine
from convmem.engine.history import history_counts, long_context
from convmem.eval.majority import majority_rows
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


def test_live_push_reports_what_the_run_reports(model):
    # the live path is the engine's step: every per-utterance figure, not only the logits
    conv = [torch.randint(0, 40, (5,)), torch.randint(0, 40, (60,)), torch.randint(0, 40, (7,))]
    eng = _engine(model, n_limit=32)
    full = eng.run([conv], keys=["x"])[0]
    live = eng.open("x")
    steps = [live.push(u) for u in conv]
    np.testing.assert_array_equal(np.stack([s.logits for s in steps]), full.logits)
    assert [s.history_tokens for s in steps] == full.history_tokens.tolist()
    assert [s.window_tokens for s in steps] == full.window_tokens.tolist()
    assert [s.truncated for s in steps] == full.truncated.tolist() == [False, True, False]
    assert live.history_tokens == full.history_tokens[-1] + conv[-1].numel() + 2


def test_step_by_hand_equals_run_with_rows_idle_and_refilled(model):
    # drive the public step directly: row 1 idles after its conversation ends, row 0 keeps going
    a, b = _dialogue(50, 4), _dialogue(51, 2)
    eng = _engine(model)
    want = eng.run([a, b], keys=["a", "b"], batch_size=2)
    state = eng.memory.reset(eng.memory.init(2), [0, 1], ["a", "b"])
    cursors = [eng.cursor(), eng.cursor()]
    got = [[], []]
    for k in range(4):
        rows = [cursors[0], cursors[1] if k < 2 else None]
        state, steps = eng.step(state, rows, [a[k], b[k] if k < 2 else None])
        assert (steps[1] is None) == (k >= 2)
        for r, s in enumerate(steps):
            if s is not None:
                got[r].append(s)
    for res, steps in zip(want, got):
        np.testing.assert_array_equal(np.stack([s.logits for s in steps]), res.logits)
        assert [s.history_tokens for s in steps] == res.history_tokens.tolist()
    assert [c.pos for c in cursors] == [4, 2]


def test_step_refuses_labels_unless_oracle(model):
    eng = _engine(model)
    state = eng.memory.init(1)
    with pytest.raises(ValueError, match="oracle"):
        eng.step(state, [eng.cursor()], [_dialogue(52, 1)[0]], labels=[0])


@pytest.mark.parametrize("mode", ["predicted", "none"])
def test_history_counts_is_the_engines_count(model, mode):
    # callers without an engine (majority row, gold rows of a VAD run) get the engine's figure
    conv = _dialogue(60, 9)
    res = _engine(model, n_limit=24, emotion_tokens=mode).run([conv])[0]  # history far beyond the window
    np.testing.assert_array_equal(history_counts([u.numel() for u in conv], mode == "predicted"),
                                  res.history_tokens)
    assert history_counts([], True).shape == (0,)


def test_majority_rows_count_history_like_the_engine(model):
    conv = _dialogue(61, 5)
    res = _engine(model, n_limit=24).run([conv])[0]
    utts = [Utterance(f"d_T{i}", "S_A", float(i), i + 0.5, None if i == 1 else "neu") for i in range(5)]
    rows = majority_rows([Dialogue("t", "S", [Utterance("t_T0", "S_A", 0.0, 1.0, "hap")])],
                         [Dialogue("d", "S", utts)], {u.id: c.numel() for u, c in zip(utts, conv)},
                         ("neu", "hap", "sad", "ang"), "f", 24, emotion_token=True)
    assert [r["history_tokens"] for r in rows] == [int(res.history_tokens[i]) for i in (0, 2, 3, 4)]
    assert [r["long_context"] for r in rows] == [
        bool(long_context(res.history_tokens[i], conv[i].numel(), 24)) for i in (0, 2, 3, 4)]

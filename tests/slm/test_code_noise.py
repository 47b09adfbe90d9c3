import pytest
import torch

from convmem.slm.code_noise import corrupt_codes
from convmem.slm.vocab import EmotionVocab
from convmem.slm.windows import Example, collate

V = EmotionVocab.tiny(codebook_size=10, labels=("neu", "hap", "sad", "ang"))  # a_k = k+1, end 11, emo 12..15


def batch(n=64):
    gen = torch.Generator().manual_seed(0)
    exs = []
    for i in range(n):
        codes = torch.randint(1, 11, (int(torch.randint(5, 40, (1,), generator=gen)),), generator=gen)
        ids = torch.cat([codes, torch.tensor([11, 12 + i % 4])])
        exs.append(Example(ids, torch.roll(ids, -1), torch.full_like(ids, -100)))
    return collate(exs, V.pad_id)


def test_only_codes_change_at_about_the_rate_and_targets_stay_clean():
    b = batch()
    noisy = corrupt_codes(b, V, 0.3, (0, 7))
    is_code = (b.input_ids >= 1) & (b.input_ids <= 10)
    changed = noisy.input_ids != b.input_ids
    assert not changed[~is_code].any()  # <audio_end>, emotion tokens and padding untouched
    assert ((noisy.input_ids[is_code] >= 1) & (noisy.input_ids[is_code] <= 10)).all()  # still codes
    # a replaced code is redrawn from all 10 codes, so 9/10 of the replacements show: 0.3 * 0.9 = 0.27
    frac = changed[is_code].float().mean().item()
    assert 0.22 < frac < 0.32, frac
    for name in ("attention_mask", "position_ids", "la_targets", "le_labels"):
        assert torch.equal(getattr(noisy, name), getattr(b, name)), name
    assert torch.equal(b.input_ids, batch().input_ids)  # the input batch is not modified in place


def test_draw_is_a_function_of_the_seed_and_rate_zero_is_identity():
    b = batch()
    assert torch.equal(corrupt_codes(b, V, 0.2, (3, 5)).input_ids, corrupt_codes(b, V, 0.2, (3, 5)).input_ids)
    assert not torch.equal(corrupt_codes(b, V, 0.2, (3, 5)).input_ids, corrupt_codes(b, V, 0.2, (3, 6)).input_ids)
    assert corrupt_codes(b, V, 0.0, (3, 5)) is b
    with pytest.raises(ValueError, match="code noise rate"):
        corrupt_codes(b, V, 1.0, (0,))


def test_frames_of_corrupted_positions_come_from_audio_positions_of_the_batch():
    b = batch()
    gen = torch.Generator().manual_seed(1)
    is_code = (b.input_ids >= 1) & (b.input_ids <= 10)
    frames = torch.randn(b.input_ids.shape + (3,), generator=gen) * is_code.unsqueeze(-1)
    fb = type(b)(**{**b.__dict__, "frames": frames})
    noisy = corrupt_codes(fb, V, 0.3, (0, 7))
    # the ids are drawn exactly as without frames (a codes batch sees the same noise)
    assert torch.equal(noisy.input_ids, corrupt_codes(b, V, 0.3, (0, 7)).input_ids)
    moved = (noisy.frames != frames).any(-1)
    assert not moved[~is_code].any() and 0.2 < moved[is_code].float().mean().item() < 0.32
    pool = {tuple(f.tolist()) for f in frames[is_code]}
    assert all(tuple(f.tolist()) in pool for f in noisy.frames[moved])
    assert torch.equal(fb.frames, frames)  # not modified in place

import math

import pytest
import torch
from torch import nn

from convmem.memory.batched_lora import BatchedLoRA, find_lora_targets


class TwoLinear(nn.Module):
    def __init__(self):
        super().__init__()
        self.up = nn.Linear(6, 8)
        self.down = nn.Linear(8, 6, bias=False)

    def forward(self, x):
        return self.down(torch.relu(self.up(x)))


def _random_adapters(lora: BatchedLoRA, rows: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    a, b = lora.init_tensors(rows)
    for k in a:
        a[k].normal_(generator=g)
        b[k].normal_(generator=g)
    return a, b


def test_targets_all_linear_exclude_head_unless_asked(tiny_llama):
    model = tiny_llama()
    names = [t.name for t in find_lora_targets(model)]
    assert len(names) == 14 and "lm_head" not in names
    assert names[0] == "model.layers.0.self_attn.q_proj"
    assert [t.name for t in find_lora_targets(model, include_lm_head=True)][-1] == "lm_head"
    qv = [t.name for t in find_lora_targets(model, ["q_proj", "v_proj"])]
    assert qv == [f"model.layers.{i}.self_attn.{p}_proj" for i in range(2) for p in "qv"]
    with pytest.raises(ValueError, match="matches target_modules"):
        find_lora_targets(model, ["nonexistent"])


def test_delta_equals_per_row_formula():
    torch.manual_seed(0)
    net = TwoLinear()
    lora = BatchedLoRA(net, rank=3, alpha=6.0)
    a, b = _random_adapters(lora, rows=2)
    x = torch.randn(2, 4, 6)
    with lora.attached(a, b):
        got = net(x)
    for r in range(2):
        h = net.up(x[r]) + 2.0 * x[r] @ a["up"][r].T @ b["up"][r].T
        want = net.down(torch.relu(h)) + 2.0 * torch.relu(h) @ a["down"][r].T @ b["down"][r].T
        torch.testing.assert_close(got[r], want, atol=1e-5, rtol=1e-5)


def test_no_adapter_or_zero_b_is_exactly_the_frozen_model(tiny_llama):
    model = tiny_llama()
    ids = torch.randint(0, 64, (3, 9), generator=torch.Generator().manual_seed(1))
    frozen = model(input_ids=ids).logits
    lora = BatchedLoRA(model, rank=4, alpha=4.0)
    assert torch.equal(model(input_ids=ids).logits, frozen)   # hooks in, nothing attached
    a, b = lora.init_tensors(3)
    for k, v in lora.fresh_a(seed=7).items():
        a[k][:] = v
    with lora.attached(a, b):
        assert torch.equal(model(input_ids=ids).logits, frozen)  # B = 0
    a2, b2 = _random_adapters(lora, 3)
    with lora.attached(a2, b2):
        assert not torch.allclose(model(input_ids=ids).logits, frozen, atol=1e-3)
    assert torch.equal(model(input_ids=ids).logits, frozen)   # detached again after the block
    lora.remove()
    assert torch.equal(model(input_ids=ids).logits, frozen)
    assert list(model.state_dict()) == list(tiny_llama().state_dict())  # module tree unchanged


def test_fresh_a_is_seeded_and_peft_scaled():
    net = TwoLinear()
    lora = BatchedLoRA(net, rank=5, alpha=5.0)
    a1, a2, a3 = lora.fresh_a(3), lora.fresh_a(3), lora.fresh_a(4)
    assert torch.equal(a1["up"], a2["up"]) and not torch.equal(a1["up"], a3["up"])
    assert a1["up"].shape == (5, 6) and a1["down"].shape == (5, 8)
    assert a1["up"].abs().max() <= 1 / math.sqrt(6)


def test_token_mask_blocks_padding_and_its_nan():
    net = TwoLinear()
    lora = BatchedLoRA(net, rank=2, alpha=2.0, target_modules=["up"])
    a, b = _random_adapters(lora, rows=1)
    a = {k: v.requires_grad_() for k, v in a.items()}
    x = torch.randn(1, 3, 6)
    mask = torch.tensor([[False, True, True]])
    with lora.attached(a, b, mask):
        delta = lora.layers["up"].delta(x)
        x_nan = x.clone()
        x_nan[0, 0] = float("nan")
        out = net(x_nan)[:, 1:].sum()
    assert torch.equal(delta[0, 0], torch.zeros(8))
    (grad,) = torch.autograd.grad(out, [a["up"]])
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_row_count_mismatch_is_named():
    net = TwoLinear()
    lora = BatchedLoRA(net, rank=2, alpha=2.0)
    a, b = lora.init_tensors(2)
    with lora.attached(a, b), pytest.raises(RuntimeError, match="up: input"):
        net(torch.randn(3, 4, 6))

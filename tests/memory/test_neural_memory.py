"""The torch.func Titans write against a plain per-row autograd computation of the same rule."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from convmem.memory.neural_memory import MemoryMLP, NeuralMemory, NeuralMemoryConfig


def _mlp(weights: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Hand-written memory MLP: GELU between bias-free layers."""
    for i, w in enumerate(weights):
        x = x @ w
        if i < len(weights) - 1:
            x = F.gelu(x)
    return x


def _reference_update(mem: NeuralMemory, weights, momentum, keys, values, summary, mask, create_graph=False):
    """Titans rule row by row with torch.autograd.grad: S = eta S - theta clip(g); M = (1-alpha) M + S."""
    cfg = mem.cfg
    names = list(weights)
    out_w = {n: [] for n in names}
    out_s = {n: [] for n in names}
    losses = []
    for b in range(keys.shape[0]):
        w_b = [weights[n][b] for n in names]
        if not create_graph:
            w_b = [w.detach().requires_grad_(True) for w in w_b]
        m = mask[b].float()
        err = (_mlp(w_b, keys[b]) - values[b]).pow(2).sum(-1)
        loss = (err * m).sum() / m.sum()
        grads = torch.autograd.grad(loss, w_b, create_graph=create_graph)
        norm = torch.sqrt(sum(g.pow(2).sum() for g in grads))
        scale = min(1.0, cfg.max_grad_norm / (float(norm.detach()) + 1e-6))
        raw = summary[b] @ mem.rate_heads.weight.T + mem.rate_heads.bias
        theta = cfg.max_lr * torch.sigmoid(raw[0])
        eta, alpha = torch.sigmoid(raw[1]), torch.sigmoid(raw[2])
        for n, w, g in zip(names, w_b, grads):
            s = eta * momentum[n][b] - theta * g * scale
            out_s[n].append(s)
            out_w[n].append((1 - alpha) * w + s)
        losses.append(loss)
    stack = lambda d: {n: torch.stack(v) for n, v in d.items()}  # noqa: E731
    return stack(out_w), stack(out_s), torch.stack(losses)


def _tiny_memory(seed: int = 0, max_grad_norm: float = 0.5, depth: int = 2) -> NeuralMemory:
    torch.manual_seed(seed)
    mem = NeuralMemory(NeuralMemoryConfig(dim=4, expansion=2, depth=depth, max_grad_norm=max_grad_norm), gate_dim=6)
    torch.nn.init.normal_(mem.rate_heads.weight, std=0.5)  # make the rates really data-dependent
    return mem


def _inputs(batch: int = 3, tokens: int = 5, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    keys = F.normalize(torch.randn(batch, tokens, 4, generator=g), dim=-1)
    values = torch.randn(batch, tokens, 4, generator=g) * 2
    summary = torch.randn(batch, 6, generator=g)
    mask = torch.ones(batch, tokens, dtype=torch.bool)
    mask[1, 3:] = False  # rows write different numbers of tokens
    return keys, values, summary, mask


@pytest.mark.parametrize("depth", [2, 3])
def test_update_matches_autograd_reference(depth: int) -> None:
    mem = _tiny_memory(depth=depth)
    keys, values, summary, mask = _inputs()
    weights, momentum = mem.initial_params(3)
    g = torch.Generator().manual_seed(2)
    momentum = {n: torch.randn(s.shape, generator=g) * 0.1 for n, s in momentum.items()}
    with torch.no_grad():
        got_w, got_s, got_loss = mem.update(weights, momentum, keys, values, summary, mask)
    ref_w, ref_s, ref_loss = _reference_update(mem, weights, momentum, keys, values, summary, mask)
    torch.testing.assert_close(got_loss, ref_loss.detach(), rtol=1e-5, atol=1e-6)
    for n in weights:
        torch.testing.assert_close(got_s[n], ref_s[n].detach(), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(got_w[n], ref_w[n].detach(), rtol=1e-5, atol=1e-6)
        assert not torch.allclose(got_w[n], weights[n])  # the write did something


def test_clipping_is_active_in_the_reference_example() -> None:
    # Guards the test above: with max_grad_norm=0.5 at least one row is clipped, one is not needed.
    mem = _tiny_memory()
    keys, values, _, mask = _inputs()
    weights, _ = mem.initial_params(3)
    with torch.no_grad():
        grads, _ = mem.surprise(weights, keys, values, mask.float())
    norms = torch.sqrt(sum(g.pow(2).flatten(1).sum(-1) for g in grads.values()))
    assert bool((norms > 0.5).any())
    clipped = mem.clip(grads)
    clipped_norms = torch.sqrt(sum(g.pow(2).flatten(1).sum(-1) for g in clipped.values()))
    assert bool((clipped_norms <= 0.5 + 1e-5).all())


def test_outer_gradient_through_the_write_matches_reference() -> None:
    """Backprop through the write (outer-loop training) equals autograd with create_graph."""
    mem = _tiny_memory(max_grad_norm=100.0)  # no clipping: its scale is treated as data in the reference
    keys, values, summary, mask = _inputs()
    probe = torch.randn(3, 5, 4, generator=torch.Generator().manual_seed(3))

    def outer(update_fn):
        mem.zero_grad(set_to_none=True)
        weights, momentum = mem.initial_params(3)
        w, _, _ = update_fn(mem, weights, momentum, keys, values, summary, mask)
        read = torch.stack([_mlp([w[n][b] for n in w], probe[b]) for b in range(3)])
        read.pow(2).sum().backward()
        return {n: p.grad.clone() for n, p in mem.named_parameters()}

    got = outer(lambda m, *a: m.update(*a))
    ref = outer(lambda m, *a: _reference_update(m, *a, create_graph=True))
    assert set(got) == {"mlp.weights.0", "mlp.weights.1", "rate_heads.weight", "rate_heads.bias"}
    for n in got:
        torch.testing.assert_close(got[n], ref[n], rtol=1e-4, atol=1e-6)
        assert float(got[n].abs().sum()) > 0


def test_row_without_tokens_is_unchanged_with_nan_loss() -> None:
    mem = _tiny_memory()
    keys, values, summary, mask = _inputs()
    mask[2] = False
    weights, momentum = mem.initial_params(3)
    momentum = {n: torch.ones_like(s) for n, s in momentum.items()}
    with torch.no_grad():
        new_w, new_s, loss = mem.update(weights, momentum, keys, values, summary, mask)
    assert math.isnan(float(loss[2])) and bool(torch.isfinite(loss[:2]).all())
    for n in weights:
        assert torch.equal(new_w[n][2], weights[n][2])  # no forgetting, no momentum on an empty chunk
        assert torch.equal(new_s[n][2], momentum[n][2])


def test_rates_start_at_configured_values() -> None:
    cfg = NeuralMemoryConfig(dim=4, max_lr=2.0, init_lr=0.3, init_momentum=0.8, init_forget=0.05)
    mem = NeuralMemory(cfg, gate_dim=6)
    theta, eta, alpha = mem.rates(torch.randn(2, 6))
    torch.testing.assert_close(theta, torch.full((2,), 0.3))
    torch.testing.assert_close(eta, torch.full((2,), 0.8))
    torch.testing.assert_close(alpha, torch.full((2,), 0.05))


def test_recall_per_row_uses_that_rows_weights() -> None:
    mem = _tiny_memory()
    weights, _ = mem.initial_params(2)
    weights = {n: w.clone() for n, w in weights.items()}
    weights["weights.1"][1] *= 2.0  # last layer is linear: row 1 reads exactly twice row 0
    q = torch.randn(1, 3, 4).expand(2, 3, 4)
    with torch.no_grad():
        out = mem.recall(weights, q)
        expected = _mlp([p for p in mem.mlp.parameters()], q[0])
    torch.testing.assert_close(out[0], expected)
    torch.testing.assert_close(out[1], 2 * expected)


@pytest.mark.parametrize(
    "field,value,match",
    [("depth", 1, "depth"), ("max_lr", 0.0, "max_lr"), ("init_momentum", 1.0, "init_momentum"),
     ("max_grad_norm", -1.0, "max_grad_norm"), ("init_lr", 5.0, "init_lr")],
)
def test_config_validation_names_the_field(field: str, value: float, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        NeuralMemoryConfig(**{field: value}).validate()


def test_memory_mlp_shapes() -> None:
    mlp = MemoryMLP(dim=4, expansion=3, depth=3)
    assert [tuple(w.shape) for w in mlp.weights] == [(4, 12), (12, 12), (12, 4)]
    assert mlp(torch.randn(2, 5, 4)).shape == (2, 5, 4)

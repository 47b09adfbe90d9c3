import pytest
import torch

from convmem.memory.row_adamw import RowAdamW, RowSGD, make_row_optimizer


def _grads(step: int, shape) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(100 + step))


@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_each_row_matches_torch_adamw_stepping_at_its_own_times(weight_decay):
    torch.manual_seed(0)
    init = [torch.randn(3, 4, 5), torch.randn(3, 2)]
    params = [p.clone() for p in init]
    opt = RowAdamW(lr=1e-2, betas=(0.8, 0.95), eps=1e-6, weight_decay=weight_decay)
    state = opt.init_state(params)
    # Row r's reference: its own torch AdamW over its own slices.
    refs = [[p[r].clone().requires_grad_() for p in init] for r in range(3)]
    ref_opts = [torch.optim.AdamW(ref, lr=1e-2, betas=(0.8, 0.95), eps=1e-6,
                                  weight_decay=weight_decay) for ref in refs]
    schedule = [[0, 1, 2], [1], [0, 2], [1, 2], [0], [0, 1, 2]]
    for t, active in enumerate(schedule):
        full = [_grads(t * 10 + i, p.shape) for i, p in enumerate(params)]
        rows = torch.tensor(active)
        opt.step(params, [g[rows] for g in full], rows, state)
        for r in active:
            for ref, g in zip(refs[r], full):
                ref.grad = g[r].clone()
            ref_opts[r].step()
    for r in range(3):
        for p, ref in zip(params, refs[r]):
            torch.testing.assert_close(p[r], ref.detach(), atol=1e-6, rtol=0)
    assert state.step.tolist() == [4, 4, 4]
    assert not torch.equal(params[0], init[0])


def test_rows_not_stepped_keep_params_and_state_exactly():
    params = [torch.randn(4, 3, 3)]
    opt = RowAdamW(lr=0.1)
    state = opt.init_state(params)
    opt.step(params, [torch.randn(4, 3, 3)], torch.arange(4), state)
    before = (params[0].clone(), state.exp_avg[0].clone(), state.exp_avg_sq[0].clone(), state.step.clone())
    opt.step(params, [torch.randn(2, 3, 3)], torch.tensor([0, 3]), state)
    for idx in (1, 2):
        assert torch.equal(params[0][idx], before[0][idx])
        assert torch.equal(state.exp_avg[0][idx], before[1][idx])
        assert torch.equal(state.exp_avg_sq[0][idx], before[2][idx])
    assert state.step.tolist() == [2, 1, 1, 2]
    assert not torch.equal(params[0][0], before[0][0])


def test_reset_rows_makes_a_row_step_like_a_fresh_optimizer():
    params = [torch.ones(2, 3)]
    opt = RowAdamW(lr=0.1)
    state = opt.init_state(params)
    for t in range(3):
        opt.step(params, [torch.full((2, 3), float(t + 1))], torch.arange(2), state)
    state.reset_rows(torch.tensor([1]))
    params[0][1] = 1.0
    assert state.step.tolist() == [3, 0]
    opt.step(params, [torch.full((1, 3), 5.0)], torch.tensor([1]), state)
    # The first Adam step moves every coordinate by exactly lr (m_hat / sqrt(v_hat) = sign(g)).
    torch.testing.assert_close(params[0][1], torch.full((3,), 0.9), atol=1e-6, rtol=0)


def test_row_sgd_with_momentum_matches_torch_sgd():
    init = torch.randn(2, 5)
    params = [init.clone()]
    opt = RowSGD(lr=0.05, momentum=0.9, weight_decay=0.01)
    state = opt.init_state(params)
    ref = init[1].clone().requires_grad_()
    ref_opt = torch.optim.SGD([ref], lr=0.05, momentum=0.9, weight_decay=0.01)
    for t in range(4):
        g = _grads(t, (2, 5))
        opt.step(params, [g[1:]], torch.tensor([1]), state)
        ref.grad = g[1].clone()
        ref_opt.step()
    torch.testing.assert_close(params[0][1], ref.detach(), atol=1e-6, rtol=0)
    assert torch.equal(params[0][0], init[0])


def test_bad_optimizer_settings_are_named():
    with pytest.raises(ValueError, match="unknown optimizer 'adam'"):
        make_row_optimizer("adam", lr=1e-3)
    with pytest.raises(ValueError, match="lr=0"):
        RowAdamW(lr=0)

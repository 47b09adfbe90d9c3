import pytest
import torch

from convmem.train.checkpoint import TrainProgress, latest_checkpoint, load_checkpoint, read_meta, save_checkpoint


@pytest.fixture
def setup():
    from accelerate import Accelerator

    torch.manual_seed(0)
    acc = Accelerator(cpu=True)
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    model, opt = acc.prepare(model, opt)
    progress = TrainProgress(step=0)
    acc.register_for_checkpointing(progress)
    return acc, model, opt, progress


def _step(model, opt):
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    opt.zero_grad()


def test_save_prunes_points_latest_and_restores_everything(tmp_path, setup):
    acc, model, opt, progress = setup
    assert latest_checkpoint(tmp_path) is None
    saved = {}
    for step in (1, 2, 3):
        _step(model, opt)
        progress.step = step
        progress.history.append({"step": step})
        save_checkpoint(acc, tmp_path, step, keep_last=2, meta={"fingerprint": {"n": step}})
        saved[step] = model.weight.detach().clone()
    root = tmp_path / "checkpoints"
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step-00000002", "step-00000003"]
    assert latest_checkpoint(tmp_path) == root / "step-00000003"
    assert read_meta(root / "step-00000002") == {"step": 2, "fingerprint": {"n": 2}}
    after3_rng = torch.rand(3)

    (root / ".tmp-step-00000004").mkdir()  # a save that died half-way is never "latest"
    assert latest_checkpoint(tmp_path) == root / "step-00000003"

    _step(model, opt)
    progress.step, progress.history = 99, []
    load_checkpoint(acc, root / "step-00000003")
    assert torch.equal(model.weight, saved[3])
    assert progress.step == 3 and progress.history[-1] == {"step": 3}
    assert torch.equal(torch.rand(3), after3_rng)  # torch RNG restored to its state at save time
    _step(model, opt)  # optimizer moments restored too: same next step as from an uninterrupted state
    w_resumed = model.weight.detach().clone()
    load_checkpoint(acc, root / "step-00000003")
    _step(model, opt)
    assert torch.equal(model.weight, w_resumed)


def test_pointer_to_missing_dir_means_no_checkpoint(tmp_path):
    root = tmp_path / "checkpoints"
    root.mkdir()
    (root / "latest").write_text("step-00000007\n")
    assert latest_checkpoint(tmp_path) is None

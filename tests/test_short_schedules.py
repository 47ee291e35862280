"""Short runs keep a sensible piecewise schedule: default milestones never fall on epoch 0, so a one-epoch run
trains at the base lr (it used to train at lr·γ² = 0.001 and end at chance level)."""
import pytest
import torch

from bench.config import RunConfig
from bench.schedules import build_schedule, milestones


def _epoch_lrs(cfg: RunConfig, steps_per_epoch: int = 2) -> list[float]:
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=cfg.lr)
    sched = build_schedule(opt, cfg, steps_per_epoch)
    out = []
    for step in range(cfg.epochs * steps_per_epoch):
        if step % steps_per_epoch == 0:
            out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


@pytest.mark.parametrize("epochs, marks", [(1, (1,)), (2, (1,)), (3, (1, 2)), (4, (2, 3)), (10, (5, 7))])
def test_default_milestones_never_fall_on_epoch_zero(epochs, marks):
    assert milestones(RunConfig(epochs=epochs)) == marks


def test_one_epoch_run_trains_at_the_base_lr():
    assert _epoch_lrs(RunConfig(epochs=1, lr=0.1)) == pytest.approx([0.1])
    assert _epoch_lrs(RunConfig(epochs=2, lr=0.1)) == pytest.approx([0.1, 0.01])


def test_explicit_milestone_at_epoch_zero_is_refused():
    with pytest.raises(ValueError, match=r"milestones=\(0, 3\) is not allowed; allowed: epochs ≥ 1"):
        RunConfig(epochs=4, milestones=(0, 3))

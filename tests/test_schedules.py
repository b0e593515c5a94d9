"""Learning-rate schedules and backtracking, in fit and stepped by hand."""

from __future__ import annotations

import numpy as np
import pytest

import portnn as pn
from portnn.layers import Linear, Tanh
from portnn.optim import schedules

CE = pn.losses.CrossEntropy


def quadrants(n: int = 200, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    x = np.random.default_rng(seed).normal(size=(n, 2))
    return x, (x[:, 0] * x[:, 1] > 0).astype(np.int64)


def net(seed: int = 0) -> pn.Sequential:
    return pn.Sequential([Linear(2, 16), Tanh(), Linear(16, 2)], seed=seed)


def test_step_exponential_and_cosine_schedules() -> None:
    opt = pn.optim.SGD(net().parameters(), lr=1.0)
    assert [schedules.StepLR(opt, step_size=2, gamma=0.5).step() for _ in range(1)] == [1.0]
    opt.lr = 1.0
    exp = schedules.ExponentialLR(opt, gamma=0.5)
    assert [exp.step() for _ in range(4)] == [1.0, 0.5, 0.25, 0.125]
    opt.lr = 1.0
    cos = schedules.CosineAnnealingLR(opt, T_max=4, warmup_epochs=1, eta_min=0.0)
    lrs = [cos.step() for _ in range(6)]
    assert lrs == pytest.approx([0.5, 1.0, 0.75, 0.25, 0.0, 0.0])
    with pytest.raises(ValueError, match="warmup_epochs < T_max"):
        schedules.CosineAnnealingLR(T_max=2, warmup_epochs=2)


def test_schedules_in_fit_log_the_learning_rate() -> None:
    x, y = quadrants(40)
    history = net().fit(
        x,
        y,
        loss=CE(),
        optimizer=pn.optim.SGD(lr=0.4),
        epochs=5,
        batch_size=10,
        callbacks=[schedules.StepLR(step_size=2, gamma=0.5)],
        verbose=0,
    )
    assert history["lr"] == pytest.approx([0.4, 0.4, 0.2, 0.2, 0.1])


def test_cosine_matches_torch() -> None:
    torch = pytest.importorskip("torch", reason="the schedule oracle needs torch==2.13.0")
    topt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.3)
    tsched = torch.optim.lr_scheduler.CosineAnnealingLR(topt, T_max=7, eta_min=0.01)
    opt = pn.optim.SGD(net().parameters(), lr=0.3)
    sched = schedules.CosineAnnealingLR(opt, T_max=7, eta_min=0.01)
    for _ in range(7):
        assert sched.step() == pytest.approx(topt.param_groups[0]["lr"], rel=1e-12)
        topt.step()
        tsched.step()


def test_reduce_on_plateau() -> None:
    opt = pn.optim.SGD(net().parameters(), lr=1.0)
    plateau = schedules.ReduceLROnPlateau(opt, monitor="loss", factor=0.5, patience=1, min_delta=0.0)
    lrs = [plateau.step(v) for v in (1.0, 0.9, 0.9, 0.9, 0.9, 0.8)]
    assert lrs == [1.0, 1.0, 1.0, 0.5, 0.5, 0.5]


def test_backtracking_recovers_from_a_learning_rate_of_ten() -> None:
    """The write-ups' trick: lr=10 diverges; backtracking rolls back and divides by 5 until it converges."""
    x, y = quadrants()
    bt = schedules.Backtracking(factor=5)
    with np.errstate(all="ignore"):
        history = net().fit(x, y, loss=CE(), optimizer=pn.optim.SGD(lr=10.0), epochs=40, batch_size=10, callbacks=[bt], verbose=0)
    assert bt.rollbacks and bt.rollbacks[0][2] == 2.0
    assert history["lr"][-1] < 10.0
    assert history["loss"][-1] < 0.3 and history["accuracy"][-1] > 0.9
    # and without it, the same run stops with an error that names the epoch and step
    with np.errstate(all="ignore"):
        with pytest.raises(FloatingPointError, match=r"became (nan|inf) in epoch \d+, step \d+ \(batch \d+:\d+\).*Backtracking"):
            pn.Sequential([Linear(2, 8), pn.layers.ReLU(), Linear(8, 2)]).fit(
                x * 1e3, y, loss=CE(), optimizer=pn.optim.SGD(lr=1e30), batch_size=2, verbose=0
            )

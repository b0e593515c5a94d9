"""Learning-rate schedules: value for value against torch.optim.lr_scheduler, in fit per epoch and per step, on resume;
Keras's ReduceLROnPlateau counting; Backtracking's rollbacks and its exact resume."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import portnn as pn
from portnn.datasets import toy
from portnn.layers import Linear, Tanh
from portnn.optim import schedules

CE = pn.losses.CrossEntropy
STEPS = 20  # torch comparisons of the epoch schedules: construction, then 20 steps


def quadrants(n: int = 200, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    x = np.random.default_rng(seed).normal(size=(n, 2))
    return x, (x[:, 0] * x[:, 1] > 0).astype(np.int64)


def net(seed: int = 0) -> pn.Sequential:
    return pn.Sequential([Linear(2, 16), Tanh(), Linear(16, 2)], seed=seed)


def portnn_optimizer(kind: str = "sgd", lr: float = 0.3, **kwargs: Any) -> pn.optim.Optimizer:
    cls = {"sgd": pn.optim.SGD, "adam": pn.optim.Adam, "rmsprop": pn.optim.RMSprop, "adagrad": pn.optim.Adagrad}[kind]
    return cls(net().parameters(), lr=lr, **kwargs)


def momentum_of(opt: Any) -> float:
    """SGD/RMSprop's momentum or Adam's first beta, of a portnn or a torch optimizer."""
    if hasattr(opt, "param_groups"):
        group = opt.param_groups[0]
        return group["betas"][0] if "betas" in group else group["momentum"]
    return opt.betas[0] if hasattr(opt, "betas") else opt.momentum


def torch_sequence(build: Any, steps: int, kind: str = "sgd", lr: float = 0.3, **kwargs: Any) -> list[tuple[float, float]]:
    """(lr, momentum) after construction and after each of ``steps`` ``scheduler.step()`` calls, in PyTorch (float64)."""
    torch = pytest.importorskip("torch", reason="the schedule oracle needs torch==2.13.0")
    param = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    cls = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "rmsprop": torch.optim.RMSprop}[kind]
    opt = cls([param], lr=lr, **kwargs)
    sched = build(torch.optim.lr_scheduler, opt)
    group = opt.param_groups[0]
    out = [(group["lr"], momentum_of(opt) if "betas" in group or "momentum" in group else 0.0)]
    for _ in range(steps):
        opt.step()  # no gradient: nothing moves, but PyTorch wants the optimizer stepped first
        sched.step()
        out.append((group["lr"], momentum_of(opt) if "betas" in group or "momentum" in group else 0.0))
        assert sched.get_last_lr() == [group["lr"]]
    return out


def portnn_sequence(build: Any, steps: int, kind: str = "sgd", lr: float = 0.3, **kwargs: Any) -> list[tuple[float, float]]:
    opt = portnn_optimizer(kind, lr, **kwargs)
    sched = build(schedules, opt)
    momentum = (lambda: momentum_of(opt)) if hasattr(opt, "betas") or hasattr(opt, "momentum") else (lambda: 0.0)
    out = [(opt.lr, momentum())]
    for _ in range(steps):
        assert sched.step() == opt.lr
        out.append((opt.lr, momentum()))
        assert sched.get_last_lr() == [opt.lr]
    return out


def assert_sequences_equal(ours: list[tuple[float, float]], theirs: list[tuple[float, float]]) -> None:
    assert len(ours) == len(theirs)
    assert all(isinstance(v, float) for pair in ours for v in pair)
    np.testing.assert_allclose(np.array(ours, dtype=np.float64), np.array(theirs, dtype=np.float64), rtol=1e-12, atol=0)


# -- epoch schedules stepped by hand: PyTorch's sequence ------------------------------------------
EPOCH_SCHEDULES = {
    "StepLR": lambda m, o: m.StepLR(o, step_size=3, gamma=0.5),
    "StepLR-1": lambda m, o: m.StepLR(o, step_size=1, gamma=0.9),
    "ExponentialLR": lambda m, o: m.ExponentialLR(o, gamma=0.8),
    "ExponentialLR-growing": lambda m, o: m.ExponentialLR(o, gamma=1.25),
    "CosineAnnealingLR": lambda m, o: m.CosineAnnealingLR(o, T_max=20, eta_min=0.01),
    "CosineAnnealingLR-past-T_max": lambda m, o: m.CosineAnnealingLR(o, T_max=7, eta_min=0.02),
    "LinearLR": lambda m, o: m.LinearLR(o),
    "LinearLR-down": lambda m, o: m.LinearLR(o, start_factor=1.0, end_factor=0.1, total_iters=12),
    "LinearLR-to-zero": lambda m, o: m.LinearLR(o, start_factor=0.5, end_factor=0.0, total_iters=20),
}


@pytest.mark.parametrize("build", EPOCH_SCHEDULES.values(), ids=EPOCH_SCHEDULES.keys())
def test_epoch_schedules_step_as_torch(build: Any) -> None:
    """The rate is set at construction (last_epoch 0) and each step() moves on: PyTorch's sequence, to 1e-12."""
    assert_sequences_equal(portnn_sequence(build, STEPS), torch_sequence(build, STEPS))


def test_construction_sets_the_rate_of_epoch_zero() -> None:
    opt = portnn_optimizer(lr=1.0)
    sched = schedules.CosineAnnealingLR(opt, T_max=4, warmup_epochs=1)
    assert sched.last_epoch == 0 and opt.lr == 0.5 and sched.get_last_lr() == [0.5] and sched.base_lr == 1.0
    opt = portnn_optimizer(lr=1.0)
    before = schedules.LinearLR(opt, start_factor=0.25, total_iters=3)
    assert opt.lr == 0.25 and before.get_last_lr() == [0.25]
    with pytest.raises(RuntimeError, match=r"StepLR has no optimizer: build it as StepLR\(optimizer, ...\)"):
        schedules.StepLR(step_size=2).step()


def test_cosine_with_warm_up_follows_its_formula() -> None:
    opt = portnn_optimizer(lr=0.8)
    sched = schedules.CosineAnnealingLR(opt, T_max=12, eta_min=0.05, warmup_epochs=3)
    rates = [opt.lr] + [sched.step() for _ in range(STEPS)]
    expected = [
        0.8 * (t + 1) / 4 if t < 3 else 0.05 + (0.8 - 0.05) * (1 + math.cos(math.pi * (t - 3) / 9)) / 2 for t in range(STEPS + 1)
    ]
    np.testing.assert_allclose(rates, expected, rtol=1e-12, atol=0)
    assert rates[:4] == pytest.approx([0.2, 0.4, 0.6, 0.8]) and rates[12] == pytest.approx(0.05)
    with pytest.raises(ValueError, match=r"CosineAnnealingLR: need warmup_epochs < T_max; got T_max=2, warmup_epochs=2"):
        schedules.CosineAnnealingLR(T_max=2, warmup_epochs=2)


# -- OneCycleLR: every argument against PyTorch ---------------------------------------------------
ONE_CYCLE = {
    "defaults": dict(max_lr=1.0, total_steps=100),
    "epochs-steps": dict(max_lr=0.5, epochs=7, steps_per_epoch=13),
    "linear": dict(max_lr=2.0, total_steps=57, anneal_strategy="linear", pct_start=0.45),
    "factors": dict(max_lr=0.1, total_steps=80, div_factor=10.0, final_div_factor=100.0, pct_start=0.2),
    "three-phase": dict(max_lr=1.5, total_steps=90, three_phase=True, pct_start=0.25),
    "three-phase-linear": dict(max_lr=1.5, total_steps=61, three_phase=True, anneal_strategy="linear"),
    "momenta": dict(max_lr=0.3, total_steps=40, base_momentum=0.7, max_momentum=0.99),
    "no-momentum": dict(max_lr=0.3, total_steps=40, cycle_momentum=False),
}
OPTIMIZERS = {"SGD-momentum": ("sgd", {"momentum": 0.9}), "Adam": ("adam", {}), "RMSprop": ("rmsprop", {"momentum": 0.5})}


@pytest.mark.parametrize("optimizer", OPTIMIZERS.values(), ids=OPTIMIZERS.keys())
@pytest.mark.parametrize("kwargs", ONE_CYCLE.values(), ids=ONE_CYCLE.keys())
def test_one_cycle_steps_as_torch(kwargs: dict[str, Any], optimizer: tuple[str, dict[str, Any]]) -> None:
    """Rate and momentum (SGD's and RMSprop's momentum, Adam's first beta) at every step, then the error past the end."""
    torch = pytest.importorskip("torch", reason="the schedule oracle needs torch==2.13.0")
    kind, opt_kwargs = optimizer
    total = kwargs.get("total_steps") or kwargs["epochs"] * kwargs["steps_per_epoch"]

    def build(module: Any, opt: Any) -> Any:
        return module.OneCycleLR(opt, **kwargs)

    ours, theirs = portnn_sequence(build, total, kind, **opt_kwargs), torch_sequence(build, total, kind, **opt_kwargs)
    assert_sequences_equal(ours, theirs)
    if kwargs.get("cycle_momentum", True):
        assert len({m for _, m in ours}) > 2  # the momentum did move
    # one step past total_steps: both refuse
    opt = portnn_optimizer(kind, **opt_kwargs)
    sched = schedules.OneCycleLR(opt, **kwargs)
    for _ in range(total):
        sched.step()
    with pytest.raises(ValueError, match=rf"OneCycleLR: asked for the rate of step {total + 1}, past total_steps={total}"):
        sched.step()
    param = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    topt = torch.optim.SGD([param], lr=0.1, momentum=0.9)
    tsched = torch.optim.lr_scheduler.OneCycleLR(topt, **kwargs)
    with pytest.raises(ValueError, match="total steps"):
        for _ in range(total + 1):
            topt.step()
            tsched.step()


def test_one_cycle_refuses_what_torch_cannot_run() -> None:
    with pytest.raises(
        ValueError, match=r"OneCycleLR: cycle_momentum=True needs an optimizer with a momentum.*AdaGrad has neither"
    ):
        schedules.OneCycleLR(portnn_optimizer("adagrad"), max_lr=1.0, total_steps=10)
    sched = schedules.OneCycleLR(portnn_optimizer("adagrad"), max_lr=1.0, total_steps=10, cycle_momentum=False)
    assert sched.get_last_lr() == [pytest.approx(0.04)]
    with pytest.raises(ValueError, match=r"give total_steps, or epochs and steps_per_epoch"):
        schedules.OneCycleLR(max_lr=1.0, epochs=3)
    # PyTorch divides by zero here (a phase of length 0); portnn says why
    with pytest.raises(ValueError, match=r"pct_start=0.1 with total_steps=10 leaves a phase without steps"):
        schedules.OneCycleLR(max_lr=1.0, total_steps=10, pct_start=0.1)
    with pytest.raises(ValueError, match=r"and three_phase leaves a phase without steps"):
        schedules.OneCycleLR(max_lr=1.0, total_steps=10, pct_start=0.6, three_phase=True)


# -- per-step schedules in fit --------------------------------------------------------------------
class RateLog(pn.callbacks.Callback):
    """Keeps the rate (and momentum) each batch trains with: listed after the schedule, it sees what the schedule set."""

    def __init__(self) -> None:
        self.rates: list[tuple[float, float]] = []

    def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self.rates.append((self.optimizer.lr, momentum_of(self.optimizer)))


def per_step(module: Any) -> dict[str, str]:
    """``interval="step"`` for portnn's schedules; PyTorch's have no such argument (stepping is up to the loop)."""
    return {"interval": "step"} if module is schedules else {}


STEP_SCHEDULES = {
    "OneCycleLR": lambda m, o, total: m.OneCycleLR(o, max_lr=0.8, total_steps=total, pct_start=0.25),
    "OneCycleLR-epochs": lambda m, o, total: m.OneCycleLR(o, max_lr=0.8, epochs=3, steps_per_epoch=total // 3, three_phase=True),
    "LinearLR": lambda m, o, total: m.LinearLR(o, start_factor=0.01, total_iters=7, **per_step(m)),
    "CosineAnnealingLR": lambda m, o, total: m.CosineAnnealingLR(o, T_max=total, eta_min=0.001, **per_step(m)),
}


@pytest.mark.parametrize("build", STEP_SCHEDULES.values(), ids=STEP_SCHEDULES.keys())
def test_step_schedules_set_the_rate_before_every_batch_of_fit(build: Any) -> None:
    """fit(callbacks=[schedule(interval="step")]) trains batch t with PyTorch's rate after t scheduler.step() calls."""
    x, y = quadrants(90)
    total = 3 * 9  # 3 epochs of 9 batches of 10
    log = RateLog()
    sched = build(schedules, None, total)
    assert sched.interval == "step"
    history = net().fit(x, y, loss=CE(), optimizer=pn.optim.SGD(lr=0.3, momentum=0.9), epochs=3, batch_size=10,
                        callbacks=[sched, log], verbose=0)  # fmt: skip
    theirs = torch_sequence(lambda m, o: build(m, o, total), total - 1, momentum=0.9)
    if not isinstance(sched, schedules.OneCycleLR):
        theirs = [(lr, 0.9) for lr, _ in theirs]  # the other schedules leave the momentum alone
    assert_sequences_equal(log.rates, theirs)
    assert history["lr"] == [log.rates[8][0], log.rates[17][0], log.rates[26][0]]  # each epoch logs its last batch's rate
    assert sched.last_epoch == total and sched.get_last_lr() == [log.rates[-1][0]]


def test_a_second_fit_starts_the_step_schedule_again() -> None:
    x, y = quadrants(40)
    sched, log = schedules.LinearLR(start_factor=0.5, total_iters=4, interval="step"), RateLog()
    model, opt = net(), pn.optim.SGD(lr=0.2)
    for _ in range(2):
        model.fit(x, y, loss=CE(), optimizer=opt, epochs=1, batch_size=10, callbacks=[sched, log], verbose=0)
    assert [r for r, _ in log.rates] == pytest.approx([0.1, 0.125, 0.15, 0.175] * 2)


def test_one_cycle_in_fit_refuses_to_run_past_its_cycle() -> None:
    x, y = quadrants(40)
    sched = schedules.OneCycleLR(max_lr=1.0, total_steps=10)
    with pytest.raises(ValueError, match=r"OneCycleLR: fit reached batch 11 of a cycle of total_steps=10"):
        net().fit(x, y, loss=CE(), optimizer=pn.optim.SGD(lr=0.1, momentum=0.9), epochs=3, batch_size=10,
                  callbacks=[sched], verbose=0)  # fmt: skip
    assert sched.last_epoch == 10  # it refused the 11th batch before training it
    with pytest.raises(ValueError, match=r"cycle_momentum=True needs an optimizer with a momentum.*AdaGrad"):
        net().fit(x, y, loss=CE(), optimizer=pn.optim.Adagrad(lr=0.1), callbacks=[schedules.OneCycleLR(max_lr=1.0,
                  total_steps=10)], verbose=0)  # fmt: skip


class Interrupt(pn.callbacks.Callback):
    """Raises after ``after`` batches: an interrupted run."""

    def __init__(self, after: int) -> None:
        self.after, self.seen = after, 0

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self.seen += 1
        if self.seen == self.after:
            raise KeyboardInterrupt


def host_state(model: pn.Sequential) -> dict[str, np.ndarray]:
    return {k: pn.to_numpy(v).copy() for k, v in model.state_dict().items()}


def assert_bit_identical(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
        assert a[k].tobytes() == b[k].tobytes(), f"{k} differs"


def interrupted_and_resumed(
    case: Any, tmp_path: Path, make: Any, *, x: Any, y: Any, interrupt: int, every: int, optimizer: Any, **fit: Any
) -> tuple[tuple[Any, Any, Any], tuple[Any, Any, Any]]:
    """(model, history, callbacks) of an uninterrupted fit and of the same fit interrupted after ``interrupt`` batches and
    resumed; ``make`` and ``optimizer`` build fresh callbacks and a fresh optimizer for each run, as a new process would."""

    def build() -> pn.Sequential:
        model = pn.Sequential([Linear(2, 16), Tanh(), Linear(16, 3)], seed=0)
        return model.to(case.name, case.device)

    fit = dict(loss=CE(), verbose=0, **fit)
    reference, ref_callbacks = build(), make()
    ref_history = reference.fit(x, y, optimizer=optimizer(), callbacks=ref_callbacks, **fit)
    with pytest.raises(KeyboardInterrupt):
        build().fit(x, y, optimizer=optimizer(), callbacks=[*make(), Interrupt(interrupt)], checkpoint=tmp_path,
                    checkpoint_every=every, **fit)  # fmt: skip
    resumed, callbacks = build(), make()
    history = resumed.fit(x, y, optimizer=optimizer(), callbacks=callbacks, checkpoint=tmp_path, checkpoint_every=every,
                          resume=tmp_path, **fit)  # fmt: skip
    return (reference, ref_history, ref_callbacks), (resumed, history, callbacks)


@pytest.mark.parametrize("interrupt", [5, 13, 22])  # 9 batches an epoch, a checkpoint every 4: mid-epoch each time
def test_a_step_schedule_resumes_mid_epoch_exactly(case: Any, tmp_path: Path, interrupt: int) -> None:
    x, y = toy.spirals(30, n_classes=3)

    def make() -> list[Any]:
        return [schedules.OneCycleLR(max_lr=0.5, epochs=3, steps_per_epoch=9), RateLog()]

    (reference, ref_history, ref_cbs), (resumed, history, cbs) = interrupted_and_resumed(
        case, tmp_path, make, x=x, y=y, interrupt=interrupt, every=4, epochs=3, batch_size=10,
        optimizer=lambda: pn.optim.SGD(lr=0.1, momentum=0.9),
    )  # fmt: skip
    assert_bit_identical(host_state(reference), host_state(resumed))
    assert history.history["lr"] == ref_history.history["lr"] and history.history["loss"] == ref_history.history["loss"]
    first = len(ref_cbs[1].rates) - len(cbs[1].rates)  # the resumed run trained the batches after the checkpoint
    assert 0 < first < interrupt and cbs[1].rates == ref_cbs[1].rates[first:]
    assert cbs[0].state_dict() == ref_cbs[0].state_dict()


# -- epoch schedules in fit -----------------------------------------------------------------------
def test_epoch_schedules_in_fit_log_the_learning_rate() -> None:
    x, y = quadrants(40)
    history = net().fit(x, y, loss=CE(), optimizer=pn.optim.SGD(lr=0.4), epochs=5, batch_size=10,
                        callbacks=[schedules.StepLR(step_size=2, gamma=0.5)], verbose=0)  # fmt: skip
    assert history["lr"] == pytest.approx([0.4, 0.4, 0.2, 0.2, 0.1])


def test_an_epoch_schedule_built_with_the_optimizer_works_in_fit() -> None:
    x, y = quadrants(40)
    opt = pn.optim.SGD(lr=0.4)
    model = net()
    opt.bind(model.parameters())
    sched = schedules.ExponentialLR(opt, gamma=0.5)
    history = model.fit(x, y, loss=CE(), optimizer=opt, epochs=3, batch_size=10, callbacks=[sched], verbose=0)
    assert history["lr"] == pytest.approx([0.4, 0.2, 0.1]) and sched.get_last_lr() == [0.1]


# -- ReduceLROnPlateau: Keras's counting ----------------------------------------------------------
def test_reduce_on_plateau_counts_as_keras() -> None:
    """Hand-traced from keras.callbacks.ReduceLROnPlateau.on_epoch_end: the cooldown counter drops first, then an epoch
    that does not improve adds to wait unless still cooling down; wait >= patience reduces (unless at min_lr)."""
    opt = portnn_optimizer(lr=1.0)
    plateau = schedules.ReduceLROnPlateau(opt, monitor="loss", factor=0.5, patience=2, cooldown=2, min_delta=0.0, min_lr=0.2)
    values = [1.0, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.8, 0.9, 0.9, 0.9, 0.9, 0.9]
    rates = [plateau.step(v) for v in values]
    # epoch: 0 best 1.0 | 1 best .9 | 2 wait 1 | 3 wait 2: lr .5, cooldown 2 | 4 cooldown 1 | 5 cooldown 0, wait 1 |
    # 6 wait 2: lr .25, cooldown 2 | 7 cooldown 1 | 8 cooldown 0, best .8 | 9 wait 1 | 10 wait 2: lr .2 (min_lr), cooldown 2 |
    # 11 cooldown 1 | 12 cooldown 0, wait 1 | 13 wait 2, but lr is at min_lr: no change
    assert rates == [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.25, 0.2, 0.2, 0.2, 0.2]
    assert (plateau.wait, plateau.cooldown_counter, plateau.best) == (2, 0, 0.8)


def test_reduce_on_plateau_patience_one_reduces_after_the_first_flat_epoch() -> None:
    """Keras reduces when wait >= patience; PyTorch (which portnn followed before) one epoch later, when wait > patience."""
    opt = portnn_optimizer(lr=1.0)
    plateau = schedules.ReduceLROnPlateau(opt, factor=0.5, patience=1, min_delta=0.0)
    assert [plateau.step(v) for v in (1.0, 0.9, 0.9, 0.9, 0.9, 0.8)] == [1.0, 1.0, 0.5, 0.25, 0.125, 0.125]
    acc = schedules.ReduceLROnPlateau(portnn_optimizer(lr=1.0), monitor="val_accuracy", factor=0.5, patience=1, min_delta=0.0)
    assert acc.mode == "max" and [acc.step(v) for v in (0.5, 0.6, 0.6)] == [1.0, 1.0, 0.5]


def test_reduce_on_plateau_in_fit() -> None:
    x, y = quadrants(40)
    plateau = schedules.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=1, min_delta=10.0)  # no epoch improves
    history = net().fit(x, y, loss=CE(), optimizer=pn.optim.SGD(lr=0.4), epochs=4, batch_size=10, callbacks=[plateau], verbose=0)
    # the logs' lr is the rate the epoch trained with; the reduction after epoch 1 shows from epoch 2 on
    assert history["lr"] == pytest.approx([0.4, 0.4, 0.2, 0.1])


# -- Backtracking ---------------------------------------------------------------------------------
def spiral_net() -> pn.Sequential:
    return pn.Sequential([Linear(2, 32), Tanh(), Linear(32, 3)], seed=0)


def test_backtracking_restores_weights_whose_loss_was_good() -> None:
    """Full-batch SGD at lr=10 on 3 spirals: the second step's loss jumps. A rollback must return to the weights that had
    the good loss (those at the start of the bad period), so the rate is divided a few times and training goes on."""
    x, y = toy.spirals(30, n_classes=3)
    bt = schedules.Backtracking(factor=5)
    with np.errstate(all="ignore"):
        # shuffle=False: the full batch in one order, so the same weights give the same bits (a sum taken in
        # another order may round differently in the last bit)
        history = spiral_net().fit(x, y, loss=CE(), optimizer=pn.optim.SGD(lr=10.0), epochs=40, batch_size=len(x),
                                   callbacks=[bt], verbose=0, shuffle=False)  # fmt: skip
    losses = history["loss"]
    first_bad = losses[1]
    assert first_bad > 3 * losses[0]  # lr=10 overshoots at once
    assert losses[2] == losses[0]  # the rollback put back the weights of epoch 0, whose loss (full batch) was good
    assert 1 <= len(bt.rollbacks) <= 4 and bt.rollbacks[0] == (1, None, 2.0)
    assert len(losses) == 40 and not np.isclose(losses[-1], first_bad)
    assert losses[-1] < first_bad / 5 and losses[-1] < losses[0]


def test_backtracking_recovers_from_a_learning_rate_of_ten() -> None:
    """The write-ups' trick with mini-batches: lr=10 diverges; backtracking rolls back and divides by 5 until it converges."""
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


def test_backtracking_every_few_batches_judges_windows() -> None:
    x, y = quadrants()
    bt = schedules.Backtracking(factor=5, every=4)
    with np.errstate(all="ignore"):
        history = net().fit(x, y, loss=CE(), optimizer=pn.optim.SGD(lr=10.0), epochs=10, batch_size=10, callbacks=[bt], verbose=0)
    assert bt.rollbacks and all(batch is not None for _, batch, _ in bt.rollbacks)
    assert history["loss"][-1] < history["loss"][0]


def test_a_nonfinite_loss_rolls_back_and_its_epoch_is_not_judged() -> None:
    """Full batch, lr=1e37: the second step's loss overflows. The rollback must not make that epoch, which has no finite
    loss at all, the new good period: training goes on from the first weights at lr 1e37 / 1e37 = 1."""
    x, y = toy.spirals(30, n_classes=3)
    bt = schedules.Backtracking(factor=1e37)
    model = spiral_net()
    with np.errstate(all="ignore"):  # shuffle=False: one order, so the same weights give the same bits
        history = model.fit(x, y, loss=CE(), optimizer=pn.optim.SGD(lr=1e37), epochs=8, batch_size=len(x), callbacks=[bt],
                            verbose=0, shuffle=False)  # fmt: skip
    assert bt.rollbacks == [(1, 0, 1.0)] and not model.stop_training
    assert len(history["loss"]) == 8 and history["loss"][2] == history["loss"][0]  # epoch 2 starts from epoch 0's weights
    assert history["loss"][-1] < 0.6 * history["loss"][0]
    assert all(np.isfinite(v).all() for v in host_state(model).values())


def test_backtracking_refuses_bad_arguments() -> None:
    with pytest.raises(ValueError, match=r"Backtracking: factor must be a number > 1; got 1"):
        schedules.Backtracking(factor=1)
    with pytest.raises(ValueError, match=r"Backtracking: every must be an integer >= 1; got 0"):
        schedules.Backtracking(every=0)


@pytest.mark.parametrize(
    ("every", "interrupt"),
    [(None, 10), (None, 17), (3, 10), (3, 17)],  # 6 batches an epoch, a checkpoint every 4 steps
    ids=["epochs-a", "epochs-b", "every-3-a", "every-3-b"],
)
def test_backtracking_resumes_bit_identically_mid_epoch(case: Any, tmp_path: Path, every: int | None, interrupt: int) -> None:
    """The last good snapshot and the period's candidate are in the checkpoint: the resumed run rolls back to the same weights."""
    x, y = toy.spirals(30, n_classes=3)

    def make() -> list[Any]:
        return [schedules.Backtracking(factor=5, every=every)]

    with np.errstate(all="ignore"):
        (reference, ref_history, ref_cbs), (resumed, history, cbs) = interrupted_and_resumed(
            case, tmp_path, make, x=x, y=y, interrupt=interrupt, every=4, epochs=5, batch_size=15,
            optimizer=lambda: pn.optim.SGD(lr=6.0, momentum=0.5),
        )  # fmt: skip
    assert ref_cbs[0].rollbacks, "the run should roll back, or the test shows nothing"
    assert_bit_identical(host_state(reference), host_state(resumed))
    assert history.history["loss"] == ref_history.history["loss"] and history.history["lr"] == ref_history.history["lr"]
    assert cbs[0].rollbacks == ref_cbs[0].rollbacks


def test_cosine_in_fit_holds_at_eta_min_after_t_max_as_it_always_did() -> None:
    """Stepped by hand it climbs back as PyTorch's does; inside fit (epoch interval) it keeps its old clamp."""
    x, y = np.random.default_rng(0).normal(size=(20, 2)), np.arange(20) % 2
    model = pn.Sequential([pn.layers.Linear(2, 2)], seed=0)
    history = model.fit(x, y, loss=pn.losses.CrossEntropy(), optimizer=pn.optim.SGD(lr=0.1), epochs=5, verbose=0,
                        callbacks=[pn.optim.schedules.CosineAnnealingLR(T_max=2)])  # fmt: skip
    assert history["lr"] == pytest.approx([0.1, 0.05, 0.0, 0.0, 0.0], abs=1e-15)


def test_a_schedule_given_to_evaluate_or_predict_of_a_model_never_compiled_is_harmless() -> None:
    x, y = np.random.default_rng(0).normal(size=(8, 2)), np.arange(8) % 2
    model = pn.Sequential([pn.layers.Linear(2, 2)], seed=0)
    for schedule in (pn.optim.schedules.StepLR(step_size=1), pn.optim.schedules.OneCycleLR(max_lr=0.1, total_steps=10)):
        model.evaluate(x, y, loss=pn.losses.CrossEntropy(), callbacks=[schedule])
        assert model.predict(x, callbacks=[schedule], to_numpy=True).shape == (8, 2)

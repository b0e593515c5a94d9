"""Learning-rate schedules, as :class:`~portnn.callbacks.Callback`\\ s: PyTorch's, and Keras's ``ReduceLROnPlateau``.

Every class names its origin and follows it: the closed-form schedules (:class:`StepLR`,
:class:`ExponentialLR`, :class:`CosineAnnealingLR`, :class:`LinearLR`, :class:`OneCycleLR`)
are ``torch.optim.lr_scheduler``'s, value for value; :class:`ReduceLROnPlateau` is Keras's;
:class:`Backtracking` is the from-scratch write-ups' trick.

**In a loop of your own**, as in PyTorch: build the schedule with the optimizer, which sets
the rate of epoch 0 (``last_epoch = 0``); call :meth:`LRScheduler.step` after each epoch (or
each batch, for a per-step schedule such as :class:`OneCycleLR`) to move to the next one.
:meth:`LRScheduler.get_last_lr` returns the rate in force, as a list (one optimizer, one rate).

**In** ``fit``, hand it to ``callbacks=[...]`` (with or without the optimizer): with
``interval="epoch"`` (the default but for :class:`OneCycleLR`) it sets ``optimizer.lr``
before every epoch from the epoch's index; with ``interval="step"`` before every batch, from
the number of batches this fit has trained, which it keeps in its state, so a fit resumed
from a mid-epoch checkpoint continues exactly.

Examples
--------
>>> import portnn as pn
>>> model = pn.Sequential([pn.layers.Linear(2, 2)], seed=0)
>>> opt = pn.optim.SGD(model.parameters(), lr=0.1)
>>> sched = pn.optim.schedules.StepLR(opt, step_size=2, gamma=0.5)  # sets the rate of epoch 0
>>> rates = []
>>> for epoch in range(5):
...     rates.append(round(opt.lr, 4))  # ... train one epoch with it ...
...     _ = sched.step()
>>> rates
[0.1, 0.1, 0.05, 0.05, 0.025]
>>> sched.get_last_lr()  # the rate of epoch 5
[0.025]
"""

from __future__ import annotations

import math
from typing import Any

from .._checks import check_flag, check_int, check_number
from ..callbacks import Callback, Logs, Snapshot, _logs, _Monitor
from .optimizer import Optimizer

__all__ = [
    "Backtracking",
    "CosineAnnealingLR",
    "ExponentialLR",
    "LRScheduler",
    "LinearLR",
    "OneCycleLR",
    "ReduceLROnPlateau",
    "StepLR",
]


def _check_optimizer(name: str, optimizer: Any) -> None:
    if optimizer is not None and not isinstance(optimizer, Optimizer):
        raise TypeError(
            f"{name}: optimizer must be a portnn optimizer such as pn.optim.SGD(model.parameters(), lr=0.1); "
            f"got {type(optimizer).__name__}; in fit, leave it out: {name}(...) takes fit's optimizer"
        )


class LRScheduler(Callback):
    """Base class of the closed-form schedules (PyTorch's ``LRScheduler``): subclasses define :meth:`lr_at`.

    A subclass sets its own attributes, then calls ``super().__init__(optimizer, interval=...)``,
    which, given an optimizer, takes its rate as ``base_lr`` and sets the rate of step 0.

    Parameters
    ----------
    optimizer
        The optimizer whose ``lr`` to set; None when the schedule goes to ``fit``, which gives it one.
    interval
        ``"epoch"``: in ``fit``, a new rate before every epoch; ``"step"``: before every batch.

    Attributes
    ----------
    last_epoch
        The index of the epoch (or step) whose rate is in force, as PyTorch counts: 0 after
        construction, +1 per :meth:`step`.
    base_lr
        The optimizer's rate when the schedule met it (PyTorch's ``initial_lr``).
    """

    #: The batch hooks count steps only: the losses may stay on the device between reads.
    needs_batch_logs = False

    def __init__(self, optimizer: Optimizer | None = None, *, interval: str = "epoch") -> None:
        name = type(self).__name__
        if interval not in ("epoch", "step"):
            raise ValueError(
                f"{name}: interval must be 'epoch' (a rate per epoch) or 'step' (a rate per batch); got {interval!r}"
            )
        _check_optimizer(name, optimizer)
        self.interval = interval
        self.optimizer = optimizer
        self.base_lr: float | None = None
        self.last_epoch = -1
        self._last_lr: list[float] = []
        if optimizer is not None:
            self._attach(optimizer)
            self.last_epoch = 0
            self._apply(0)

    def lr_at(self, epoch: int) -> float:
        """The learning rate of epoch (or step) ``epoch``, counted from 0."""
        raise NotImplementedError

    def _attach(self, optimizer: Optimizer) -> None:
        self.optimizer = optimizer
        if self.base_lr is None:
            self.base_lr = optimizer.lr

    def _apply(self, epoch: int, *, in_fit: bool = False) -> None:
        """Set the rate of ``epoch`` (``in_fit``: asked for by ``fit``'s hooks rather than by :meth:`step`)."""
        self.optimizer.lr = self.lr_at(epoch)
        self._last_lr = [self.optimizer.lr]

    def step(self) -> float:
        """Move to the next epoch (or step), as PyTorch's ``scheduler.step()``; return the rate now in force."""
        if self.optimizer is None:
            name = type(self).__name__
            raise RuntimeError(f"{name} has no optimizer: build it as {name}(optimizer, ...) to step it by hand")
        self.last_epoch += 1
        self._apply(self.last_epoch)
        return self.optimizer.lr

    def get_last_lr(self) -> list[float]:
        """The rate in force, as PyTorch returns it: a list with one rate per parameter group (here one)."""
        return list(self._last_lr)

    # -- fit ------------------------------------------------------------------------------
    def set_context(self, model: Any, optimizer: Any, *, is_root: bool = True) -> None:
        super().set_context(model, optimizer, is_root=is_root)
        if optimizer is not None:  # evaluate/predict of a model never compiled have none: nothing to schedule
            self._attach(optimizer)

    def on_train_begin(self, logs: Logs | None = None) -> None:
        if self.interval == "step":
            self.last_epoch = 0  # the steps of this fit (a resume restores the count afterwards)

    def on_epoch_begin(self, epoch: int, logs: Logs | None = None) -> None:
        if self.interval == "epoch":
            self.last_epoch = epoch
            self._apply(epoch, in_fit=True)

    def on_train_batch_begin(self, batch: int, logs: Logs | None = None) -> None:
        super().on_train_batch_begin(batch, logs)
        if self.interval == "step":
            self._apply(self.last_epoch, in_fit=True)

    def on_train_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        super().on_train_batch_end(batch, logs)
        if self.interval == "step":
            self.last_epoch += 1

    def state_dict(self) -> dict[str, Any]:
        return {"base_lr": self.base_lr, "last_epoch": self.last_epoch, "last_lr": list(self._last_lr)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.base_lr, self.last_epoch = state["base_lr"], state["last_epoch"]
        self._last_lr = list(state.get("last_lr", []))


class StepLR(LRScheduler):
    """``lr = base_lr * gamma ** (epoch // step_size)``: PyTorch's ``StepLR``.

    Parameters
    ----------
    optimizer
        The optimizer, or None in ``fit``.
    step_size
        Epochs (or steps) between two decays.
    gamma
        The factor of each decay.
    interval
        ``"epoch"`` or ``"step"`` (see :class:`LRScheduler`).

    Examples
    --------
    >>> import portnn as pn
    >>> opt = pn.optim.SGD(pn.Sequential([pn.layers.Linear(2, 2)]).parameters(), lr=1.0)
    >>> sched = pn.optim.schedules.StepLR(opt, step_size=2, gamma=0.1)
    >>> [opt.lr] + [sched.step() for _ in range(4)]
    [1.0, 1.0, 0.1, 0.1, 0.010000000000000002]
    """

    def __init__(
        self, optimizer: Optimizer | None = None, *, step_size: int, gamma: float = 0.1, interval: str = "epoch"
    ) -> None:
        self.step_size = check_int("StepLR", "step_size", step_size)
        self.gamma = check_number("StepLR", "gamma", gamma, lambda g: g > 0, "a positive number")
        super().__init__(optimizer, interval=interval)

    def lr_at(self, epoch: int) -> float:
        return self.base_lr * self.gamma ** (epoch // self.step_size)


class ExponentialLR(LRScheduler):
    """``lr = base_lr * gamma ** epoch``: PyTorch's ``ExponentialLR`` (``gamma > 1`` grows the rate, as in a range test).

    Parameters
    ----------
    optimizer
        The optimizer, or None in ``fit``.
    gamma
        The factor per epoch (or step).
    interval
        ``"epoch"`` or ``"step"`` (see :class:`LRScheduler`).

    Examples
    --------
    >>> import portnn as pn
    >>> opt = pn.optim.SGD(pn.Sequential([pn.layers.Linear(2, 2)]).parameters(), lr=1.0)
    >>> sched = pn.optim.schedules.ExponentialLR(opt, gamma=0.5)
    >>> [opt.lr] + [sched.step() for _ in range(3)]
    [1.0, 0.5, 0.25, 0.125]
    """

    def __init__(self, optimizer: Optimizer | None = None, *, gamma: float, interval: str = "epoch") -> None:
        self.gamma = check_number("ExponentialLR", "gamma", gamma, lambda g: g > 0, "a positive number")
        super().__init__(optimizer, interval=interval)

    def lr_at(self, epoch: int) -> float:
        return self.base_lr * self.gamma**epoch


class CosineAnnealingLR(LRScheduler):
    r"""A half cosine from ``base_lr`` to ``eta_min`` over ``T_max``: PyTorch's ``CosineAnnealingLR``, with an optional warm-up.

    .. math:: \eta_t = \eta_{min} + \tfrac12(\eta_{base} - \eta_{min})\,\bigl(1 + \cos(\pi\,\tfrac{t - w}{T_{max} - w})\bigr)

    Without warm-up (:math:`w = 0`) this is PyTorch's schedule, value for value, also past
    ``T_max``, where PyTorch's cosine goes on and climbs back to ``base_lr`` at ``2 T_max``:
    set ``T_max`` to the length of the run. Inside ``fit`` the rate holds at ``eta_min`` after
    ``T_max`` instead (as it always did there). During a warm-up of ``warmup_epochs`` (portnn's
    addition) the rate climbs linearly, :math:`\eta_t = \eta_{base}\,(t + 1)/(w + 1)`.

    Parameters
    ----------
    optimizer
        The optimizer, or None in ``fit``.
    T_max
        Epochs (or steps, with ``interval="step"``) from the start to the bottom of the cosine.
    eta_min
        The rate at the bottom.
    warmup_epochs
        Epochs (or steps) of linear warm-up before the cosine, fewer than ``T_max``.
    interval
        ``"epoch"`` or ``"step"`` (see :class:`LRScheduler`).

    Examples
    --------
    >>> import portnn as pn
    >>> opt = pn.optim.SGD(pn.Sequential([pn.layers.Linear(2, 2)]).parameters(), lr=1.0)
    >>> sched = pn.optim.schedules.CosineAnnealingLR(opt, T_max=4)
    >>> [round(r, 4) for r in [opt.lr] + [sched.step() for _ in range(4)]]
    [1.0, 0.8536, 0.5, 0.1464, 0.0]
    """

    def __init__(
        self,
        optimizer: Optimizer | None = None,
        *,
        T_max: int,  # noqa: N803
        eta_min: float = 0.0,
        warmup_epochs: int = 0,
        interval: str = "epoch",
    ) -> None:
        self.T_max = check_int("CosineAnnealingLR", "T_max", T_max)
        self.eta_min = check_number("CosineAnnealingLR", "eta_min", eta_min, lambda v: v >= 0, "a finite number >= 0")
        self.warmup_epochs = check_int("CosineAnnealingLR", "warmup_epochs", warmup_epochs, minimum=0)
        if self.warmup_epochs >= self.T_max:
            raise ValueError(
                f"CosineAnnealingLR: need warmup_epochs < T_max; got T_max={T_max}, warmup_epochs={warmup_epochs}: "
                "the warm-up must end before the cosine does"
            )
        super().__init__(optimizer, interval=interval)

    def _apply(self, epoch: int, *, in_fit: bool = False) -> None:
        # in fit the rate holds at eta_min after T_max, as it always did there; step() follows PyTorch's cosine
        super()._apply(min(epoch, self.T_max) if in_fit else epoch, in_fit=in_fit)

    def lr_at(self, epoch: int) -> float:
        w = self.warmup_epochs
        if epoch < w:
            return self.base_lr * (epoch + 1) / (w + 1)
        return self.eta_min + (self.base_lr - self.eta_min) * (1 + math.cos(math.pi * (epoch - w) / (self.T_max - w))) / 2


class LinearLR(LRScheduler):
    """A linear ramp of the rate's factor from ``start_factor`` to ``end_factor`` over ``total_iters``: PyTorch's ``LinearLR``.

    ``lr = base_lr * (start_factor + (end_factor - start_factor) * min(t, total_iters) / total_iters)``.
    With ``interval="step"`` it is a per-batch warm-up; once it ends the rate stays at
    ``base_lr * end_factor``.

    Parameters
    ----------
    optimizer
        The optimizer, or None in ``fit``.
    start_factor
        The factor of the first epoch (or step), in (0, 1].
    end_factor
        The factor from ``total_iters`` on, in [0, 1].
    total_iters
        Epochs (or steps) the ramp takes.
    interval
        ``"epoch"`` or ``"step"`` (see :class:`LRScheduler`).

    Examples
    --------
    >>> import portnn as pn
    >>> opt = pn.optim.SGD(pn.Sequential([pn.layers.Linear(2, 2)]).parameters(), lr=1.0)
    >>> sched = pn.optim.schedules.LinearLR(opt, start_factor=0.25, total_iters=3, interval="step")
    >>> [opt.lr] + [sched.step() for _ in range(4)]
    [0.25, 0.5, 0.75, 1.0, 1.0]
    """

    def __init__(
        self,
        optimizer: Optimizer | None = None,
        *,
        start_factor: float = 1.0 / 3,
        end_factor: float = 1.0,
        total_iters: int = 5,
        interval: str = "epoch",
    ) -> None:
        self.start_factor = check_number("LinearLR", "start_factor", start_factor, lambda v: 0 < v <= 1, "a number in (0, 1]")
        self.end_factor = check_number("LinearLR", "end_factor", end_factor, lambda v: 0 <= v <= 1, "a number in [0, 1]")
        self.total_iters = check_int("LinearLR", "total_iters", total_iters)
        super().__init__(optimizer, interval=interval)

    def lr_at(self, epoch: int) -> float:
        ramp = (self.end_factor - self.start_factor) * min(self.total_iters, epoch) / self.total_iters
        return self.base_lr * (self.start_factor + ramp)


class OneCycleLR(LRScheduler):
    """The 1cycle policy, per batch: PyTorch's ``OneCycleLR``, its arguments, phases and momentum cycling.

    The rate climbs from ``max_lr / div_factor`` to ``max_lr`` over the first ``pct_start`` of
    ``total_steps``, then falls to ``max_lr / div_factor / final_div_factor`` (with
    ``three_phase``: back to the start over as many steps, then down to the minimum). With
    ``cycle_momentum`` the momentum (SGD's and RMSprop's ``momentum``, Adam's first beta) moves
    the other way, between ``max_momentum`` and ``base_momentum``.

    In ``fit`` the rate is set before every batch (``interval="step"``); asking for a step
    past ``total_steps`` raises, as PyTorch does: give ``total_steps`` (or ``epochs`` and
    ``steps_per_epoch``) covering the whole fit.

    Parameters
    ----------
    optimizer
        The optimizer, or None in ``fit``. Its own ``lr`` is not used.
    max_lr
        The peak rate.
    total_steps
        Steps in the cycle; or give ``epochs`` and ``steps_per_epoch``.
    epochs, steps_per_epoch
        ``total_steps = epochs * steps_per_epoch`` when ``total_steps`` is None.
    pct_start
        The fraction of the cycle spent climbing.
    anneal_strategy
        ``"cos"`` or ``"linear"``.
    cycle_momentum
        Cycle the momentum too (needs an optimizer with ``momentum`` or ``betas``).
    base_momentum, max_momentum
        The momentum at the peak rate and at the ends.
    div_factor
        ``initial_lr = max_lr / div_factor``.
    final_div_factor
        ``min_lr = initial_lr / final_div_factor``.
    three_phase
        The original paper's three phases instead of fastai's two.
    interval
        ``"step"`` (default) or ``"epoch"``.

    Examples
    --------
    >>> import portnn as pn
    >>> opt = pn.optim.SGD(pn.Sequential([pn.layers.Linear(2, 2)]).parameters(), lr=0.1, momentum=0.9)
    >>> sched = pn.optim.schedules.OneCycleLR(opt, max_lr=1.0, total_steps=6, pct_start=0.5, anneal_strategy="linear")
    >>> [(round(opt.lr, 4), round(opt.momentum, 3))] + [(round(sched.step(), 4), round(opt.momentum, 3)) for _ in range(5)]
    [(0.04, 0.95), (0.52, 0.9), (1.0, 0.85), (0.6667, 0.883), (0.3333, 0.917), (0.0, 0.95)]
    >>> _ = sched.step()  # last_epoch = total_steps: PyTorch allows this one
    >>> sched.step()
    Traceback (most recent call last):
    ...
    ValueError: OneCycleLR: asked for the rate of step 7, past total_steps=6 (the cycle is over); ...
    """

    def __init__(
        self,
        optimizer: Optimizer | None = None,
        *,
        max_lr: float,
        total_steps: int | None = None,
        epochs: int | None = None,
        steps_per_epoch: int | None = None,
        pct_start: float = 0.3,
        anneal_strategy: str = "cos",
        cycle_momentum: bool = True,
        base_momentum: float = 0.85,
        max_momentum: float = 0.95,
        div_factor: float = 25.0,
        final_div_factor: float = 1e4,
        three_phase: bool = False,
        interval: str = "step",
    ) -> None:
        name = "OneCycleLR"
        total_steps = check_int(name, "total_steps", total_steps, allow_none=True)
        epochs = check_int(name, "epochs", epochs, allow_none=True)  # checked also where total_steps wins (and they are ignored)
        steps_per_epoch = check_int(name, "steps_per_epoch", steps_per_epoch, allow_none=True)
        if total_steps is not None:
            self.total_steps = total_steps
        elif epochs is not None and steps_per_epoch is not None:
            self.total_steps = epochs * steps_per_epoch
        else:
            got = f"total_steps={total_steps}, epochs={epochs}, steps_per_epoch={steps_per_epoch}"
            raise ValueError(f"{name}: give total_steps, or epochs and steps_per_epoch; got {got}")
        self.max_lr = check_number(name, "max_lr", max_lr, lambda v: v > 0, "a positive number")
        self.pct_start = check_number(name, "pct_start", pct_start, lambda v: 0 <= v <= 1, "a number in [0, 1]")
        if anneal_strategy not in ("cos", "linear"):
            raise ValueError(f"{name}: anneal_strategy must be 'cos' or 'linear'; got {anneal_strategy!r}")
        self.anneal_strategy = anneal_strategy
        self.div_factor = check_number(name, "div_factor", div_factor, lambda v: v > 0, "a positive number")
        self.final_div_factor = check_number(name, "final_div_factor", final_div_factor, lambda v: v > 0, "a positive number")
        self.cycle_momentum = check_flag(name, "cycle_momentum", cycle_momentum)
        self.base_momentum = check_number(name, "base_momentum", base_momentum, lambda v: 0 <= v < 1, "a number in [0, 1)")
        self.max_momentum = check_number(name, "max_momentum", max_momentum, lambda v: 0 <= v < 1, "a number in [0, 1)")
        self.three_phase = check_flag(name, "three_phase", three_phase)
        self.initial_lr = self.max_lr / self.div_factor
        self.min_lr = self.initial_lr / self.final_div_factor
        # (last step of the phase, rate and momentum at its start and end), as PyTorch lays them out
        peak, low, top, bottom = self.max_lr, self.initial_lr, self.max_momentum, self.base_momentum
        steps, pct = self.total_steps, self.pct_start
        if self.three_phase:
            self._phases = [
                (float(pct * steps) - 1, low, peak, top, bottom),
                (float(2 * pct * steps) - 2, peak, low, bottom, top),
                (steps - 1, low, self.min_lr, top, top),
            ]
        else:
            self._phases = [(float(pct * steps) - 1, low, peak, top, bottom), (steps - 1, peak, self.min_lr, bottom, top)]
        ends = [0.0] + [phase[0] for phase in self._phases]
        if any(b <= a for a, b in zip(ends, ends[1:])):
            raise ValueError(
                f"{name}: pct_start={pct_start} with total_steps={steps}{' and three_phase' if self.three_phase else ''} "
                f"leaves a phase without steps (phases end at steps {ends[1:]}); give more steps, or a pct_start above "
                f"1 / total_steps = {1 / steps:.3g} and below {'about 0.5' if self.three_phase else 1}"
            )
        super().__init__(optimizer, interval=interval)

    def _attach(self, optimizer: Optimizer) -> None:
        if self.cycle_momentum and not (hasattr(optimizer, "betas") or hasattr(optimizer, "momentum")):
            raise ValueError(
                f"OneCycleLR: cycle_momentum=True needs an optimizer with a momentum (SGD, RMSprop) or betas (Adam, AdamW); "
                f"{type(optimizer).__name__} has neither: pass cycle_momentum=False"
            )
        super()._attach(optimizer)

    def _phase(self, step: int) -> tuple[float, float, float, float, float]:
        """The phase of ``step`` and how far into it: ``(pct, start_lr, end_lr, start_momentum, end_momentum)``."""
        if step > self.total_steps:
            raise ValueError(
                f"OneCycleLR: asked for the rate of step {step}, past total_steps={self.total_steps} (the cycle is over); "
                "give a total_steps (or epochs and steps_per_epoch) that covers every batch of the run"
            )
        start = 0.0
        for i, (end, *values) in enumerate(self._phases):
            if step <= end or i == len(self._phases) - 1:
                return ((step - start) / (end - start), *values)
            start = end
        raise AssertionError("unreachable")

    def _anneal(self, start: float, end: float, pct: float) -> float:
        if self.anneal_strategy == "cos":
            return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
        return (end - start) * pct + start

    def lr_at(self, epoch: int) -> float:
        pct, start, end, _, _ = self._phase(epoch)
        return self._anneal(start, end, pct)

    def momentum_at(self, epoch: int) -> float:
        """The momentum (or first beta) of step ``epoch``."""
        pct, _, _, start, end = self._phase(epoch)
        return self._anneal(start, end, pct)

    def _apply(self, epoch: int, *, in_fit: bool = False) -> None:
        if in_fit and epoch >= self.total_steps:
            what = "batch" if self.interval == "step" else "epoch"
            raise ValueError(
                f"OneCycleLR: fit reached {what} {epoch + 1} of a cycle of total_steps={self.total_steps}; "
                f"give a total_steps (or epochs and steps_per_epoch) that covers every {what} of the fit"
            )
        super()._apply(epoch)
        if self.cycle_momentum:
            momentum = self.momentum_at(epoch)
            if hasattr(self.optimizer, "betas"):
                self.optimizer.betas = (momentum, *tuple(self.optimizer.betas)[1:])
            else:
                self.optimizer.momentum = momentum


class ReduceLROnPlateau(_Monitor):
    """Multiply the learning rate by ``factor`` when ``monitor`` stops improving: Keras 3's ``ReduceLROnPlateau``.

    Keras's names and counting: after each epoch that does not improve the best value by more
    than ``min_delta``, ``wait`` goes up by one; when ``wait >= patience`` the rate becomes
    ``max(lr * factor, min_lr)`` (if above ``min_lr``) and ``cooldown`` epochs follow in which
    ``wait`` stays 0. So ``patience=1`` reduces after the first epoch without improvement.
    (PyTorch's class of the same name counts one more: it reduces when ``wait > patience``.)

    In ``fit`` it watches the epoch logs; in a loop of your own call :meth:`step` with the
    epoch's value (PyTorch's way of calling it, Keras's counting).

    Parameters
    ----------
    optimizer
        The optimizer, or None in ``fit``.
    monitor
        A key of the epoch logs (default ``"val_loss"``).
    factor
        The factor of each reduction, in (0, 1).
    patience
        Epochs without improvement before a reduction.
    mode
        ``"min"``, ``"max"`` or ``"auto"`` (max for accuracies, min otherwise).
    min_delta
        The smallest change that counts as an improvement.
    cooldown
        Epochs after a reduction during which no epoch counts as one without improvement.
    min_lr
        The lowest rate.

    Examples
    --------
    >>> import portnn as pn
    >>> opt = pn.optim.SGD(pn.Sequential([pn.layers.Linear(2, 2)]).parameters(), lr=1.0)
    >>> plateau = pn.optim.schedules.ReduceLROnPlateau(opt, factor=0.5, patience=2, min_delta=0.0)
    >>> [plateau.step(loss) for loss in (1.0, 0.9, 0.9, 0.9, 0.9, 0.9)]
    [1.0, 1.0, 1.0, 0.5, 0.5, 0.25]
    """

    def __init__(
        self,
        optimizer: Optimizer | None = None,
        *,
        monitor: str = "val_loss",
        factor: float = 0.1,
        patience: int = 10,
        mode: str = "auto",
        min_delta: float = 1e-4,
        cooldown: int = 0,
        min_lr: float = 0.0,
    ) -> None:
        name = "ReduceLROnPlateau"
        _check_optimizer(name, optimizer)
        self.factor = check_number(name, "factor", factor, lambda v: 0 < v < 1, "a number in (0, 1)")
        self.patience = check_int(name, "patience", patience, minimum=0)
        self.cooldown = check_int(name, "cooldown", cooldown, minimum=0)
        self.min_lr = check_number(name, "min_lr", min_lr, lambda v: v >= 0, "a finite number >= 0")
        super().__init__(monitor, mode, min_delta)
        self.optimizer = optimizer
        self.wait = self.cooldown_counter = 0

    _state = ("best", "wait", "cooldown_counter")

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "cooldown_left" in state:  # a checkpoint written before the Keras names
            state = {**state, "cooldown_counter": state["cooldown_left"]}
        super().load_state_dict(state)

    def on_train_begin(self, logs: Logs | None = None) -> None:
        self.best, self.wait, self.cooldown_counter = self._worst(), 0, 0

    def step(self, value: float) -> float:
        """Record one epoch's value of the monitored quantity; return the learning rate now in force."""
        if self.optimizer is None:
            raise RuntimeError(
                "ReduceLROnPlateau has no optimizer: build it as ReduceLROnPlateau(optimizer, ...) to step it by hand"
            )
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if self._improved(value):
            self.best, self.wait = value, 0
        elif self.cooldown_counter == 0:
            self.wait += 1
            if self.wait >= self.patience and self.optimizer.lr > self.min_lr:
                self.optimizer.lr = max(self.optimizer.lr * self.factor, self.min_lr)
                self.cooldown_counter, self.wait = self.cooldown, 0
        return self.optimizer.lr

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        self.step(self._value(_logs(logs)))


class Backtracking(Callback):
    """Roll back when the loss rises: the from-scratch write-ups' trick (neither PyTorch's nor Keras's).

    Training is cut into periods: epochs, or ``every`` batches. The weights and optimizer
    state at the start of a period are kept as a candidate, since the period's loss is measured
    on them (exactly so with full-batch training). When the period ends, its mean training loss
    is compared with the last good period's: if it rose by more than ``tolerance`` (relative),
    the weights and optimizer state go back to the last good ones and the learning rate is
    divided by ``factor``; otherwise the candidate becomes the last good one. A batch whose
    loss is NaN or infinite rolls back at once (and its period is not judged).

    Parameters
    ----------
    factor
        Divide the learning rate by this on each rollback (the write-ups used 5).
    every
        Batches per period; None (default) judges whole epochs, whose mean loss is far less
        noisy than a few mini-batches'.
    tolerance
        Relative rise allowed before rolling back, above -1 (a negative one rolls back unless the loss falls by that much).
    min_lr
        Stop training (``model.stop_training``) rather than go below this learning rate.

    Attributes
    ----------
    rollbacks
        ``(epoch, batch or None, new lr)`` of each rollback in the last fit.

    Notes
    -----
    Do not combine it with a closed-form schedule: both would set the learning rate. Its
    state, both snapshots included, is part of a training checkpoint, so a resumed fit goes
    on exactly as the uninterrupted one.

    With mini-batches a rollback returns to the start of the last good period, so that
    period's progress is given up too (the loss of weights met mid-period was never measured
    alone); the rule is exact for full-batch training, as in the write-ups. It holds up to two
    copies of the weights and optimizer state (the last good one and the candidate), and takes
    one copy per period: with ``every=1`` that is a copy every step.

    Examples
    --------
    >>> import numpy as np
    >>> import portnn as pn
    >>> from portnn.datasets import toy
    >>> x, y = toy.spirals(30, n_classes=3)
    >>> model = pn.Sequential([pn.layers.Linear(2, 32), pn.layers.Tanh(), pn.layers.Linear(32, 3)], seed=0)
    >>> bt = pn.optim.schedules.Backtracking(factor=5)
    >>> with np.errstate(all="ignore"):
    ...     h = model.fit(x, y, loss=pn.losses.CrossEntropy(), optimizer=pn.optim.SGD(lr=10.0), epochs=30,
    ...                   batch_size=len(x), callbacks=[bt], verbose=0)
    >>> [round(lr, 2) for _, _, lr in bt.rollbacks][:2], h["loss"][-1] < h["loss"][0]
    ([2.0, 0.4], True)
    """

    def __init__(self, *, factor: float = 5.0, every: int | None = None, tolerance: float = 0.0, min_lr: float = 1e-8) -> None:
        self.factor = check_number("Backtracking", "factor", factor, lambda v: v > 1, "a number > 1")
        self.every = None if every is None else check_int("Backtracking", "every", every)
        self.tolerance = check_number("Backtracking", "tolerance", tolerance, lambda v: v > -1, "a finite number > -1")
        self.min_lr = check_number("Backtracking", "min_lr", min_lr, lambda v: v >= 0, "a finite number >= 0")
        self.rollbacks: list[tuple[int, int | None, float]] = []
        self._reset()

    def _reset(self) -> None:
        self._good: Snapshot | None = None  # the weights and optimizer state of the last period judged good
        self._candidate: Snapshot | None = None  # those at the start of the current period
        self._previous: float | None = None  # the last good period's loss
        self._window: list[float] = []
        self._spoiled = False  # a NaN rolled the epoch back: it is not judged
        self._epoch = 0
        self._snapshots: dict[str, Any] = {}

    def on_train_begin(self, logs: Logs | None = None) -> None:
        self._reset()
        self.rollbacks = []
        self._good = Snapshot(self.model, self.optimizer)

    def on_epoch_begin(self, epoch: int, logs: Logs | None = None) -> None:
        self._epoch = epoch
        if self.every is None and self._candidate is None:  # kept when a resume re-enters the epoch
            self._candidate = Snapshot(self.model, self.optimizer)

    def on_train_batch_begin(self, batch: int, logs: Logs | None = None) -> None:
        super().on_train_batch_begin(batch, logs)
        if self.every is not None and self._candidate is None:
            self._candidate = Snapshot(self.model, self.optimizer)

    def on_train_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        super().on_train_batch_end(batch, logs)
        if self.every is None:
            return
        self._window.append(float(_logs(logs)["loss"]))
        if len(self._window) == self.every:
            self._judge(sum(self._window) / self.every, batch)

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        if self.every is not None:
            return
        if self._spoiled:
            self._spoiled, self._candidate = False, None
        else:
            self._judge(float(_logs(logs)["loss"]), None)

    def on_nonfinite_loss(self, epoch: int, batch: int, loss: float) -> bool:
        self._window, self._candidate = [], None
        self._spoiled = self.every is None
        self._roll_back(batch)
        return True

    def _judge(self, mean: float, batch: int | None) -> None:
        if self._previous is not None and mean > self._previous * (1 + self.tolerance):
            self._roll_back(batch)
        else:
            self._previous, self._good = mean, self._candidate
        self._window, self._candidate = [], None

    def _roll_back(self, batch: int | None) -> None:
        self._good.restore(self.model, self.optimizer)
        lr = self.optimizer.lr / self.factor
        if lr < self.min_lr:
            self.model.stop_training = True
            return
        self.optimizer.lr = lr
        self.rollbacks.append((self._epoch, batch, lr))

    # -- training checkpoints ---------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The loss to beat, the period so far and the snapshots' non-array state (their arrays: :meth:`state_tensors`)."""
        snapshots = {name: snap.to_state(name)[0] for name, snap in self._named_snapshots().items()}
        return {
            "previous": self._previous,
            "window": list(self._window),
            "spoiled": self._spoiled,
            "epoch": self._epoch,
            "rollbacks": [list(r) for r in self.rollbacks],
            "snapshots": snapshots,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._previous, self._window = state["previous"], list(state["window"])
        self._spoiled, self._epoch = state.get("spoiled", False), state.get("epoch", 0)
        self.rollbacks = [tuple(r) for r in state["rollbacks"]]
        self._snapshots = state.get("snapshots", {})  # rebuilt with their arrays by load_state_tensors

    def state_tensors(self) -> dict[str, Any]:
        """The arrays of the last good snapshot and of the current period's candidate."""
        tensors: dict[str, Any] = {}
        for name, snap in self._named_snapshots().items():
            tensors.update(snap.to_state(name)[1])
        return tensors

    def load_state_tensors(self, tensors: dict[str, Any]) -> None:
        snaps = {name: Snapshot.from_state(name, meta, tensors) for name, meta in self._snapshots.items()}
        if "good" in snaps:  # a checkpoint written before the snapshots were saved keeps the one on_train_begin took
            self._good = snaps["good"]
        self._candidate = snaps.get("candidate")
        self._snapshots = {}

    def _named_snapshots(self) -> dict[str, Snapshot]:
        named = {"good": self._good, "candidate": self._candidate}
        return {name: snap for name, snap in named.items() if snap is not None}

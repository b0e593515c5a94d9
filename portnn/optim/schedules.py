"""Learning-rate schedules, PyTorch's names, as :class:`~portnn.callbacks.Callback`\\ s.

Hand a schedule to ``fit(callbacks=[...])``; it sets ``optimizer.lr`` before every epoch.
In a loop of your own, build it with the optimizer and call :meth:`LRScheduler.step` once per
epoch, as in PyTorch. Either way the same object does the work: one mechanism.

:class:`Backtracking` is the from-scratch write-ups' trick: when the loss rises, restore the
previous weights and divide the learning rate by a factor.

Examples
--------
>>> import portnn as pn
>>> model = pn.Sequential([pn.layers.Linear(2, 2)], seed=0)
>>> opt = pn.optim.SGD(model.parameters(), lr=0.1)
>>> sched = pn.optim.schedules.StepLR(opt, step_size=2, gamma=0.5)
>>> [round(sched.step(), 3) for _ in range(5)]
[0.1, 0.1, 0.05, 0.05, 0.025]
"""

from __future__ import annotations

import math
from typing import Any

from ..callbacks import Callback, Snapshot, _Monitor
from .optimizer import Optimizer

__all__ = ["Backtracking", "CosineAnnealingLR", "ExponentialLR", "LRScheduler", "ReduceLROnPlateau", "StepLR"]


class LRScheduler(Callback):
    """Base class of closed-form schedules: subclasses implement :meth:`lr_at` (epoch -> lr)."""

    def __init__(self, optimizer: Optimizer | None = None) -> None:
        self.optimizer = optimizer
        self.base_lr: float | None = optimizer.lr if optimizer is not None else None
        self.last_epoch = -1

    def set_context(self, model: Any, optimizer: Any, *, is_root: bool = True) -> None:
        super().set_context(model, optimizer, is_root=is_root)
        if self.base_lr is None:
            self.base_lr = optimizer.lr

    def lr_at(self, epoch: int) -> float:
        raise NotImplementedError

    def step(self) -> float:
        """Advance one epoch (for loops of your own) and return the learning rate now in force."""
        if self.optimizer is None:
            raise RuntimeError(f"{type(self).__name__} has no optimizer: build it as {type(self).__name__}(optimizer, ...)")
        self.last_epoch += 1
        self.optimizer.lr = self.lr_at(self.last_epoch)
        return self.optimizer.lr

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any]) -> None:
        self.last_epoch = epoch
        self.optimizer.lr = self.lr_at(epoch)

    def state_dict(self) -> dict[str, Any]:
        return {"base_lr": self.base_lr, "last_epoch": self.last_epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.base_lr, self.last_epoch = state["base_lr"], state["last_epoch"]


class StepLR(LRScheduler):
    """``lr = base_lr * gamma ** (epoch // step_size)``."""

    def __init__(self, optimizer: Optimizer | None = None, *, step_size: int, gamma: float = 0.1) -> None:
        if step_size < 1:
            raise ValueError(f"StepLR: step_size must be >= 1; got {step_size}")
        super().__init__(optimizer)
        self.step_size, self.gamma = step_size, gamma

    def lr_at(self, epoch: int) -> float:
        return self.base_lr * self.gamma ** (epoch // self.step_size)


class ExponentialLR(LRScheduler):
    """``lr = base_lr * gamma ** epoch``."""

    def __init__(self, optimizer: Optimizer | None = None, *, gamma: float) -> None:
        if not 0 < gamma <= 1:
            raise ValueError(f"ExponentialLR: gamma must be in (0, 1]; got {gamma}")
        super().__init__(optimizer)
        self.gamma = gamma

    def lr_at(self, epoch: int) -> float:
        return self.base_lr * self.gamma**epoch


class CosineAnnealingLR(LRScheduler):
    r"""Linear warm-up for ``warmup_epochs``, then a half cosine from ``base_lr`` down to ``eta_min`` at ``T_max``.

    .. math:: \eta_t = \eta_{min} + \tfrac12(\eta_{base} - \eta_{min})\,(1 + \cos(\pi\,\tfrac{t - w}{T_{max} - w}))

    Without warm-up this is PyTorch's ``CosineAnnealingLR`` (held at ``eta_min`` after ``T_max``).
    During warm-up, :math:`\eta_t = \eta_{base}\,(t + 1)/(w + 1)`.
    """

    def __init__(self, optimizer: Optimizer | None = None, *, T_max: int, eta_min: float = 0.0, warmup_epochs: int = 0) -> None:  # noqa: N803
        if T_max < 1 or not 0 <= warmup_epochs < T_max:
            raise ValueError(f"CosineAnnealingLR: need T_max >= 1 and 0 <= warmup_epochs < T_max; got {T_max}, {warmup_epochs}")
        super().__init__(optimizer)
        self.T_max, self.eta_min, self.warmup_epochs = T_max, eta_min, warmup_epochs

    def lr_at(self, epoch: int) -> float:
        w = self.warmup_epochs
        if epoch < w:
            return self.base_lr * (epoch + 1) / (w + 1)
        t = min(epoch, self.T_max) - w
        return self.eta_min + 0.5 * (self.base_lr - self.eta_min) * (1 + math.cos(math.pi * t / (self.T_max - w)))


class ReduceLROnPlateau(_Monitor):
    """Multiply the learning rate by ``factor`` when ``monitor`` has not improved for ``patience`` epochs.

    In ``fit`` it watches the epoch logs (default ``"val_loss"``); in a loop of your own call
    ``step(value)`` once per epoch, as in PyTorch.
    """

    def __init__(
        self,
        optimizer: Optimizer | None = None,
        *,
        monitor: str = "val_loss",
        mode: str = "auto",
        factor: float = 0.1,
        patience: int = 10,
        min_delta: float = 1e-4,
        cooldown: int = 0,
        min_lr: float = 0.0,
    ) -> None:
        if not 0 < factor < 1:
            raise ValueError(f"ReduceLROnPlateau: factor must be in (0, 1); got {factor}")
        super().__init__(monitor, mode, min_delta)
        self.optimizer = optimizer
        self.factor, self.patience, self.cooldown, self.min_lr = factor, patience, cooldown, min_lr
        self.wait = self.cooldown_left = 0

    _state = ("best", "wait", "cooldown_left")

    def step(self, value: float) -> float:
        """Record one epoch's value of the monitored quantity; return the learning rate now in force."""
        if self._improved(value):
            self.best, self.wait = value, 0
        elif self.cooldown_left > 0:
            self.cooldown_left -= 1
        else:
            self.wait += 1
            if self.wait > self.patience:
                self.optimizer.lr = max(self.optimizer.lr * self.factor, self.min_lr)
                self.wait, self.cooldown_left = 0, self.cooldown
        return self.optimizer.lr

    def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> None:
        self.step(self._value(logs))


class Backtracking(Callback):
    """Roll back when the loss rises: restore the last good weights and divide the learning rate.

    After every epoch (or every ``every`` batches) it compares the mean training loss with
    that of the previous period. If it rose by more than ``tolerance`` (relative), or a batch's
    loss became NaN or infinite, the weights and optimizer state go back to the last good
    snapshot and the learning rate is divided by ``factor``. Otherwise a new snapshot is taken.

    Parameters
    ----------
    factor
        Divide the learning rate by this on each rollback (the write-ups used 5).
    every
        Batches per period; None (default) compares whole epochs, whose mean loss is far less
        noisy than a few mini-batches'.
    tolerance
        Relative rise allowed before rolling back.
    min_lr
        Stop training (``model.stop_training``) rather than go below this learning rate.

    Do not combine it with a closed-form schedule: both would set the learning rate.
    """

    def __init__(self, *, factor: float = 5.0, every: int | None = None, tolerance: float = 0.0, min_lr: float = 1e-8) -> None:
        if factor <= 1:
            raise ValueError(f"Backtracking: factor must be > 1; got {factor}")
        if every is not None and every < 1:
            raise ValueError(f"Backtracking: every must be None (per epoch) or >= 1 batches; got {every}")
        self.factor, self.every, self.tolerance, self.min_lr = factor, every, tolerance, min_lr
        self.rollbacks: list[tuple[int, int | None, float]] = []  # (epoch, batch or None, new lr)

    def on_train_begin(self, logs: dict[str, Any]) -> None:
        self._snapshot = Snapshot(self.model, self.optimizer)
        self._previous: float | None = None
        self._window: list[float] = []
        self._epoch = 0

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any]) -> None:
        self._epoch = epoch

    def state_dict(self) -> dict[str, Any]:
        """The loss to beat and the current window (the last good weights are the ones a resume starts from)."""
        return {"previous": self._previous, "window": list(self._window), "rollbacks": [list(r) for r in self.rollbacks]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._previous, self._window = state["previous"], list(state["window"])
        self.rollbacks = [tuple(r) for r in state["rollbacks"]]

    def on_batch_end(self, batch: int, logs: dict[str, Any]) -> None:
        if self.every is None:
            return
        self._window.append(logs["loss"])
        if len(self._window) == self.every:
            self._judge(sum(self._window) / self.every, batch)
            self._window = []

    def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> None:
        if self.every is None:
            self._judge(logs["loss"], None)

    def on_nonfinite_loss(self, epoch: int, batch: int, loss: float) -> bool:
        self._window = []
        self._roll_back(batch)
        return True

    def _judge(self, mean: float, batch: int | None) -> None:
        if self._previous is not None and mean > self._previous * (1 + self.tolerance):
            self._roll_back(batch)
        else:
            self._previous = mean
            self._snapshot = Snapshot(self.model, self.optimizer)

    def _roll_back(self, batch: int | None) -> None:
        self._snapshot.restore(self.model, self.optimizer)
        lr = self.optimizer.lr / self.factor
        if lr < self.min_lr:
            self.model.stop_training = True
            return
        self.optimizer.lr = lr
        self.rollbacks.append((self._epoch, batch, lr))

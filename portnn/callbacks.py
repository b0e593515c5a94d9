"""Callbacks for :meth:`portnn.Sequential.fit`, Keras's protocol.

A callback overrides any of the hooks below; ``fit`` calls them in order with the model and
optimizer available as ``self.model`` and ``self.optimizer``. Setting
``self.model.stop_training = True`` ends training after the current batch. Learning-rate
schedules (:mod:`portnn.optim.schedules`) are callbacks too: one mechanism.

Examples
--------
>>> import numpy as np
>>> import portnn as pn
>>> class StopAtLoss(pn.callbacks.Callback):
...     def on_epoch_end(self, epoch, logs):
...         if logs["loss"] < 0.5:
...             self.model.stop_training = True
>>> x, y = np.random.default_rng(0).normal(size=(64, 2)), np.arange(64) % 2
>>> model = pn.Sequential([pn.layers.Linear(2, 2)], seed=0)
>>> h = model.fit(x, y, loss=pn.losses.CrossEntropy(), optimizer=pn.optim.SGD(lr=0.1), epochs=50,
...               callbacks=[StopAtLoss()], verbose=0)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

from array_api_compat import array_namespace

__all__ = ["Callback", "CallbackList", "EarlyStopping", "LambdaCallback", "ModelCheckpoint", "Snapshot"]


class Callback:
    """Base class: every hook does nothing. ``model`` and ``optimizer`` are set by ``fit``."""

    model: Any = None
    optimizer: Any = None
    #: False on the ranks of a distributed fit other than rank 0: callbacks that write files skip the write.
    is_root: bool = True

    def set_context(self, model: Any, optimizer: Any, *, is_root: bool = True) -> None:
        self.model, self.optimizer, self.is_root = model, optimizer, is_root

    def on_train_begin(self, logs: dict[str, Any]) -> None: ...

    def on_train_end(self, logs: dict[str, Any]) -> None: ...

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any]) -> None: ...

    def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> None:
        """``logs`` holds the epoch's ``loss``, ``accuracy``, ``val_*`` and ``lr``; a callback may add entries."""

    def on_batch_begin(self, batch: int, logs: dict[str, Any]) -> None: ...

    def on_batch_end(self, batch: int, logs: dict[str, Any]) -> None:
        """``logs`` holds the batch's ``loss`` (a float) and ``size``."""

    def on_train_batch_begin(self, batch: int, logs: dict[str, Any]) -> None:
        """Keras 3's name; calls :meth:`on_batch_begin` (its backward-compatible alias), so either may be overridden."""
        self.on_batch_begin(batch, logs)

    def on_train_batch_end(self, batch: int, logs: dict[str, Any]) -> None:
        """Keras 3's name; calls :meth:`on_batch_end` (its backward-compatible alias), so either may be overridden."""
        self.on_batch_end(batch, logs)

    def on_test_begin(self, logs: dict[str, Any]) -> None: ...

    def on_test_end(self, logs: dict[str, Any]) -> None: ...

    def on_test_batch_begin(self, batch: int, logs: dict[str, Any]) -> None: ...

    def on_test_batch_end(self, batch: int, logs: dict[str, Any]) -> None: ...

    def on_predict_begin(self, logs: dict[str, Any]) -> None: ...

    def on_predict_end(self, logs: dict[str, Any]) -> None: ...

    def on_predict_batch_begin(self, batch: int, logs: dict[str, Any]) -> None: ...

    def on_predict_batch_end(self, batch: int, logs: dict[str, Any]) -> None: ...

    def on_nonfinite_loss(self, epoch: int, batch: int, loss: float) -> bool:
        """Called when a batch's loss is NaN or infinite; return True if the callback repaired training (rolled back)."""
        return False


class CallbackList(Callback):
    """Several callbacks called in order."""

    def __init__(self, callbacks: Iterable[Callback] | None = None) -> None:
        if isinstance(callbacks, Callback) or (callbacks is not None and not hasattr(callbacks, "__iter__")):
            raise TypeError(
                f"callbacks must be a list of portnn.callbacks.Callback instances; got a single {type(callbacks).__name__}: "
                "pass callbacks=[...]"
            )
        self.callbacks = list(callbacks or [])
        for i, cb in enumerate(self.callbacks):
            if not isinstance(cb, Callback):
                hint = (
                    "wrap a function in pn.callbacks.LambdaCallback(on_epoch_end=fn)"
                    if callable(cb) and not isinstance(cb, type)
                    else "pass an instance, e.g. EarlyStopping() rather than EarlyStopping"
                    if isinstance(cb, type) and issubclass(cb, Callback)
                    else "subclass pn.callbacks.Callback"
                )
                raise TypeError(
                    f"callbacks must be portnn.callbacks.Callback instances; got {type(cb).__name__} ({cb!r}) "
                    f"at position {i}: {hint}"
                )

    def set_context(self, model: Any, optimizer: Any, *, is_root: bool = True) -> None:
        for cb in self.callbacks:
            cb.set_context(model, optimizer, is_root=is_root)

    def __getattribute__(self, name: str) -> Any:
        # every other hook: call it on each callback in order
        if name.startswith("on_") and name != "on_nonfinite_loss":

            def hook(*args: Any) -> None:
                for cb in object.__getattribute__(self, "callbacks"):
                    getattr(cb, name)(*args)

            return hook
        return object.__getattribute__(self, name)

    def on_nonfinite_loss(self, epoch: int, batch: int, loss: float) -> bool:
        return any(cb.on_nonfinite_loss(epoch, batch, loss) for cb in self.callbacks)


class LambdaCallback(Callback):
    """A callback from plain functions, e.g. ``LambdaCallback(on_epoch_end=lambda epoch, logs: print(logs))``."""

    def __init__(self, **hooks: Callable[..., Any]) -> None:
        allowed = {n for n in dir(Callback) if n.startswith("on_")}
        unknown = set(hooks) - allowed
        if unknown:
            raise TypeError(f"LambdaCallback: unknown hooks {sorted(unknown)}; choose from {sorted(allowed)}")
        for name, fn in hooks.items():
            setattr(self, name, fn)


class Snapshot:
    """A copy of a model's parameters and an optimizer's state, on their devices, to roll back to."""

    def __init__(self, model: Any, optimizer: Any = None) -> None:
        self.weights = {k: _copy(v) for k, v in model.state_dict().items()}
        self.optimizer_state = None
        if optimizer is not None:
            state = optimizer.state_dict()
            state["state"] = {i: {k: _copy(v) for k, v in s.items()} for i, s in state["state"].items()}
            self.optimizer_state = state

    @classmethod
    def of_weights(cls, weights: dict[str, Any]) -> Snapshot:
        """A snapshot of the given state dict (arrays of any backend; restored onto the model's device)."""
        snapshot = cls.__new__(cls)
        snapshot.weights, snapshot.optimizer_state = dict(weights), None
        return snapshot

    def restore(self, model: Any, optimizer: Any = None) -> None:
        model.load_state_dict(self.weights)
        if optimizer is not None and self.optimizer_state is not None:
            lr = optimizer.lr  # the learning rate is the schedule's business, not the snapshot's
            optimizer.load_state_dict(self.optimizer_state)
            optimizer.lr = lr


def _copy(v: Any) -> Any:
    if hasattr(v, "shape"):
        return array_namespace(v).asarray(v, copy=True)
    return v


def _mode(monitor: str, mode: str) -> str:
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"mode must be 'auto', 'min' or 'max'; got {mode!r}")
    if mode == "auto":
        return "max" if "acc" in monitor else "min"
    return mode


class _Monitor(Callback):
    """Shared logic: watch ``logs[monitor]`` and tell whether it improved."""

    def __init__(self, monitor: str, mode: str, min_delta: float) -> None:
        self.monitor = monitor
        self.mode = _mode(monitor, mode)
        self.min_delta = abs(min_delta)
        self.best = math.inf if self.mode == "min" else -math.inf

    def _value(self, logs: dict[str, Any]) -> float:
        if self.monitor not in logs:
            hint = " (pass validation_data to fit)" if self.monitor.startswith("val_") else ""
            raise KeyError(f"{type(self).__name__}: monitored {self.monitor!r} is not in the logs {sorted(logs)}{hint}")
        return float(logs[self.monitor])

    def _improved(self, value: float) -> bool:
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    #: Attributes saved in a training checkpoint, so that a resumed ``fit`` judges as the run would have.
    _state: tuple[str, ...] = ("best",)

    def state_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self._state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name in self._state:
            setattr(self, name, state[name])


class EarlyStopping(_Monitor):
    """Stop when ``monitor`` has not improved for ``patience`` epochs; optionally restore the best weights.

    Parameters
    ----------
    monitor
        A key of the epoch logs: ``"val_loss"`` (default), ``"val_accuracy"``, ``"loss"``…
    patience
        Epochs without improvement to tolerate.
    min_delta
        The smallest change that counts as an improvement.
    mode
        ``"min"``, ``"max"`` or ``"auto"`` (max for accuracies, min otherwise).
    restore_best_weights
        Put back the weights of the best epoch when training stops.
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        *,
        patience: int = 0,
        min_delta: float = 0.0,
        mode: str = "auto",
        restore_best_weights: bool = False,
    ) -> None:
        super().__init__(monitor, mode, min_delta)
        self.patience = patience
        self.restore_best_weights = restore_best_weights
        self.wait = 0
        self.stopped_epoch: int | None = None
        self.best_epoch: int | None = None
        self._best: Snapshot | None = None

    _state = ("best", "wait", "stopped_epoch", "best_epoch")

    def state_tensors(self) -> dict[str, Any]:
        """The best epoch's weights (with ``restore_best_weights``), for a training checkpoint."""
        return dict(self._best.weights) if self._best is not None else {}

    def load_state_tensors(self, tensors: dict[str, Any]) -> None:
        self._best = Snapshot.of_weights(tensors) if tensors else None

    def on_train_begin(self, logs: dict[str, Any]) -> None:
        self.wait, self.stopped_epoch, self.best_epoch, self._best = 0, None, None, None
        self.best = math.inf if self.mode == "min" else -math.inf

    def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> None:
        value = self._value(logs)
        if self._improved(value):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best_weights:
                self._best = Snapshot(self.model)
            return
        self.wait += 1
        if self.wait > self.patience:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs: dict[str, Any]) -> None:
        if self.restore_best_weights and self._best is not None:
            self._best.restore(self.model)


class ModelCheckpoint(_Monitor):
    """Save the weights to ``filepath`` (a ``.safetensors`` file of the state dict) after epochs that improve ``monitor``.

    The write is atomic (a temporary file in the same folder, then a rename): an interrupted
    save never leaves a half-written checkpoint. ``save_best_only=False`` saves every epoch.
    ``filepath`` may contain ``{epoch}``. Load with ``model.load_weights(filepath)``.

    In a distributed fit, give it on every rank (as every callback with state): only rank 0
    writes, the others keep the same ``best``.
    """

    def __init__(
        self, filepath: str, *, monitor: str = "val_loss", save_best_only: bool = True, mode: str = "auto", min_delta: float = 0.0
    ) -> None:
        super().__init__(monitor, mode, min_delta)
        self.filepath = str(filepath)
        self.save_best_only = save_best_only
        self.saved: list[str] = []

    def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> None:
        if self.save_best_only:
            value = self._value(logs)
            if not self._improved(value):
                return
            self.best = value
        if not self.is_root:
            return  # every rank holds the same weights: rank 0 writes them
        path = self.filepath.format(epoch=epoch + 1)
        self.model.save_weights(path)
        self.saved.append(path)

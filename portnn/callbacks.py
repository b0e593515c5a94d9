"""Callbacks for :meth:`portnn.Sequential.fit`: Keras 3's protocol.

A callback overrides any of the hooks of :class:`Callback`; ``fit`` calls them in order with
the model and optimizer available as ``self.model`` and ``self.optimizer``. Setting
``self.model.stop_training = True`` ends training after the current batch. Learning-rate
schedules (:mod:`portnn.optim.schedules`) are callbacks too: one mechanism.

Every class here names its origin. The hooks, :class:`EarlyStopping`, :class:`ModelCheckpoint`,
:class:`CSVLogger` and :class:`LambdaCallback` follow Keras 3 (names, defaults and counting);
``state_dict``/``load_state_dict`` (what a training checkpoint keeps of a callback) are
portnn's, for ``fit(checkpoint=, resume=)``.

Examples
--------
>>> import numpy as np
>>> import portnn as pn
>>> class StopAtLoss(pn.callbacks.Callback):
...     def on_epoch_end(self, epoch, logs=None):
...         if logs["loss"] < 0.5:
...             self.model.stop_training = True
>>> x, y = np.random.default_rng(0).normal(size=(64, 2)), np.arange(64) % 2
>>> model = pn.Sequential([pn.layers.Linear(2, 2)], seed=0)
>>> h = model.fit(x, y, loss=pn.losses.CrossEntropy(), optimizer=pn.optim.SGD(lr=0.1), epochs=50,
...               callbacks=[StopAtLoss()], verbose=0)
"""

from __future__ import annotations

import csv
import io
import math
import os
import string
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from array_api_compat import array_namespace

from . import serialization
from ._checks import check_flag, check_int, check_number

__all__ = ["CSVLogger", "Callback", "CallbackList", "EarlyStopping", "LambdaCallback", "ModelCheckpoint", "Snapshot"]

Logs = dict[str, Any]


class Callback:
    """Base class of ``fit``'s callbacks (Keras 3's ``keras.callbacks.Callback``): every hook does nothing.

    ``fit`` sets ``model``, ``optimizer`` and ``is_root`` through :meth:`set_context` before
    :meth:`on_train_begin`. The hooks are Keras 3's: ``on_train_begin/end``,
    ``on_epoch_begin/end``, ``on_train_batch_begin/end``, ``on_test_begin/end`` and
    ``on_test_batch_begin/end`` (evaluation and validation), ``on_predict_begin/end`` and
    ``on_predict_batch_begin/end``. As in Keras, ``on_batch_begin``/``on_batch_end`` are
    backward-compatible aliases: the base ``on_train_batch_begin`` calls ``on_batch_begin``
    (and ``_end`` likewise), so overriding either name works. ``on_nonfinite_loss`` is
    portnn's own (see :class:`~portnn.optim.schedules.Backtracking`).

    A callback with state that a resumed ``fit`` needs defines ``state_dict()`` /
    ``load_state_dict(state)`` (JSON-able values) and, for arrays, ``state_tensors()`` /
    ``load_state_tensors(tensors)``: a training checkpoint saves them.

    Examples
    --------
    >>> import portnn as pn
    >>> class CountBatches(pn.callbacks.Callback):
    ...     def __init__(self):
    ...         self.seen = 0
    ...     def on_train_batch_end(self, batch, logs=None):
    ...         self.seen += 1
    >>> counter = CountBatches()
    >>> model = pn.Sequential([pn.layers.Linear(2, 2)], seed=0)
    >>> _ = model.fit([[0.0, 1.0]] * 8, [0, 1] * 4, loss=pn.losses.CrossEntropy(), optimizer=pn.optim.SGD(lr=0.1),
    ...               epochs=2, batch_size=4, callbacks=[counter], verbose=0)
    >>> counter.seen
    4
    """

    model: Any = None
    optimizer: Any = None
    #: Whether this process writes files (rank 0 of a distributed fit; True in one process).
    is_root: bool = True

    @property
    def needs_batch_logs(self) -> bool:
        """Whether this callback reads each batch's ``logs`` (its ``loss``) or repairs a non-finite loss at its step.

        ``fit`` keeps the batch losses on the device and reads them every
        ``steps_per_execution`` steps; a callback that needs them at every batch makes it read
        them at every step (one device-to-host wait per step on a GPU). By default this is True
        when the callback overrides ``on_train_batch_end``, ``on_batch_end`` or
        ``on_nonfinite_loss`` (Keras 3 likewise skips batch hooks nobody overrides); a callback
        that overrides them without reading the loss sets the class attribute
        ``needs_batch_logs = False`` (the learning-rate schedules do).
        """
        names = ("on_train_batch_end", "on_batch_end", "on_nonfinite_loss")
        cls = type(self)
        return any(name in vars(self) or getattr(cls, name) is not getattr(Callback, name) for name in names)

    def set_context(self, model: Any, optimizer: Any, *, is_root: bool = True) -> None:
        """Called by ``fit`` before :meth:`on_train_begin`."""
        self.model, self.optimizer, self.is_root = model, optimizer, bool(is_root)

    def on_train_begin(self, logs: Logs | None = None) -> None:
        """At the start of ``fit``."""

    def on_train_end(self, logs: Logs | None = None) -> None:
        """At the end of ``fit`` (not when it raised)."""

    def on_epoch_begin(self, epoch: int, logs: Logs | None = None) -> None:
        """At the start of epoch ``epoch`` (from 0)."""

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        """``logs`` holds the epoch's ``loss``, ``accuracy``, ``val_*`` and ``lr``; a callback may add entries."""

    def on_train_batch_begin(self, batch: int, logs: Logs | None = None) -> None:
        """Before training batch ``batch`` (its index in the epoch). Calls the alias :meth:`on_batch_begin`."""
        self.on_batch_begin(batch, logs)

    def on_train_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        """After training batch ``batch``: ``logs`` holds its ``loss`` (a float) and ``size``. Calls :meth:`on_batch_end`.

        The ``loss`` is this batch's own (Keras 3 passes the epoch's running mean instead); the
        epoch's mean comes to :meth:`on_epoch_end`. A callback that overrides this hook gets
        the loss at every batch (see :attr:`needs_batch_logs`); when no callback needs it,
        ``fit`` reads the losses every ``steps_per_execution`` steps and ``logs`` holds
        ``loss`` only at those steps (the last batch's), ``size`` always.
        """
        self.on_batch_end(batch, logs)

    def on_batch_begin(self, batch: int, logs: Logs | None = None) -> None:
        """Keras's backward-compatible alias of :meth:`on_train_batch_begin`."""

    def on_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        """Keras's backward-compatible alias of :meth:`on_train_batch_end`."""

    def on_test_begin(self, logs: Logs | None = None) -> None:
        """At the start of an evaluation (``evaluate``, or the validation in ``fit``)."""

    def on_test_end(self, logs: Logs | None = None) -> None:
        """At the end of an evaluation; ``logs`` holds its results."""

    def on_test_batch_begin(self, batch: int, logs: Logs | None = None) -> None:
        """Before an evaluation batch."""

    def on_test_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        """After an evaluation batch."""

    def on_predict_begin(self, logs: Logs | None = None) -> None:
        """At the start of ``predict``."""

    def on_predict_end(self, logs: Logs | None = None) -> None:
        """At the end of ``predict``."""

    def on_predict_batch_begin(self, batch: int, logs: Logs | None = None) -> None:
        """Before a ``predict`` batch."""

    def on_predict_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        """After a ``predict`` batch."""

    def on_nonfinite_loss(self, epoch: int, batch: int, loss: float) -> bool:
        """Called when a batch's loss is NaN or infinite; return True if the callback repaired training (rolled back)."""
        return False


#: Every hook a callback may define (LambdaCallback accepts these names).
HOOKS = tuple(sorted(name for name in vars(Callback) if name.startswith("on_")))


class CallbackList(Callback):
    """Several callbacks called in order (Keras's ``CallbackList``): every hook is forwarded to each.

    ``on_batch_begin``/``on_batch_end`` forward to the callbacks' ``on_train_batch_begin``/``_end``,
    so a loop may call either name.

    Examples
    --------
    >>> import portnn as pn
    >>> seen = []
    >>> callbacks = pn.callbacks.CallbackList([pn.callbacks.LambdaCallback(on_train_batch_end=lambda b, logs: seen.append(b))])
    >>> callbacks.on_batch_end(0, {"loss": 0.5, "size": 4})
    >>> seen
    [0]
    """

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
        super().set_context(model, optimizer, is_root=is_root)
        for cb in self.callbacks:
            cb.set_context(model, optimizer, is_root=is_root)

    def _each(self, hook: str, *args: Any) -> None:
        for cb in self.callbacks:
            getattr(cb, hook)(*args)

    def on_train_begin(self, logs: Logs | None = None) -> None:
        self._each("on_train_begin", _logs(logs))

    def on_train_end(self, logs: Logs | None = None) -> None:
        self._each("on_train_end", _logs(logs))

    def on_epoch_begin(self, epoch: int, logs: Logs | None = None) -> None:
        self._each("on_epoch_begin", epoch, _logs(logs))

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        self._each("on_epoch_end", epoch, _logs(logs))

    def on_train_batch_begin(self, batch: int, logs: Logs | None = None) -> None:
        self._each("on_train_batch_begin", batch, _logs(logs))

    def on_train_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        self._each("on_train_batch_end", batch, _logs(logs))

    def on_batch_begin(self, batch: int, logs: Logs | None = None) -> None:
        self.on_train_batch_begin(batch, logs)

    def on_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        self.on_train_batch_end(batch, logs)

    def on_test_begin(self, logs: Logs | None = None) -> None:
        self._each("on_test_begin", _logs(logs))

    def on_test_end(self, logs: Logs | None = None) -> None:
        self._each("on_test_end", _logs(logs))

    def on_test_batch_begin(self, batch: int, logs: Logs | None = None) -> None:
        self._each("on_test_batch_begin", batch, _logs(logs))

    def on_test_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        self._each("on_test_batch_end", batch, _logs(logs))

    def on_predict_begin(self, logs: Logs | None = None) -> None:
        self._each("on_predict_begin", _logs(logs))

    def on_predict_end(self, logs: Logs | None = None) -> None:
        self._each("on_predict_end", _logs(logs))

    def on_predict_batch_begin(self, batch: int, logs: Logs | None = None) -> None:
        self._each("on_predict_batch_begin", batch, _logs(logs))

    def on_predict_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        self._each("on_predict_batch_end", batch, _logs(logs))

    def on_nonfinite_loss(self, epoch: int, batch: int, loss: float) -> bool:
        return any(cb.on_nonfinite_loss(epoch, batch, loss) for cb in self.callbacks)

    @property
    def needs_batch_logs(self) -> bool:
        return any(cb.needs_batch_logs for cb in self.callbacks)


def _logs(logs: Logs | None) -> Logs:
    return {} if logs is None else logs


class LambdaCallback(Callback):
    """A callback from plain functions (Keras's ``LambdaCallback``), one per hook name.

    Any hook of :class:`Callback` may be given, e.g. ``on_train_batch_end=lambda batch, logs: ...``;
    the functions are called with the hook's positional arguments.

    Examples
    --------
    >>> import portnn as pn
    >>> show = pn.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: print(epoch, round(logs["loss"], 2)))
    >>> pn.callbacks.LambdaCallback(on_epoch_ending=print)
    Traceback (most recent call last):
    ...
    TypeError: LambdaCallback: unknown hooks ['on_epoch_ending']; choose from [...]
    """

    def __init__(self, **hooks: Callable[..., Any]) -> None:
        unknown = sorted(set(hooks) - set(HOOKS))
        if unknown:
            raise TypeError(f"LambdaCallback: unknown hooks {unknown}; choose from {list(HOOKS)}")
        for name, fn in hooks.items():
            if not callable(fn):
                raise TypeError(f"LambdaCallback: {name} must be a function; got {type(fn).__name__} ({fn!r})")
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
    def of_weights(cls, weights: dict[str, Any], optimizer_state: dict[str, Any] | None = None) -> Snapshot:
        """A snapshot of the given state dicts (arrays of any backend; restored onto the model's device)."""
        snapshot = cls.__new__(cls)
        snapshot.weights, snapshot.optimizer_state = dict(weights), optimizer_state
        return snapshot

    def restore(self, model: Any, optimizer: Any = None) -> None:
        model.load_state_dict(self.weights)
        if optimizer is not None and self.optimizer_state is not None:
            lr = optimizer.lr  # the learning rate is the schedule's business, not the snapshot's
            optimizer.load_state_dict(self.optimizer_state)
            optimizer.lr = lr

    def to_state(self, prefix: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """``(JSON-able state, arrays)`` for a training checkpoint; arrays named ``prefix.model.*``, ``prefix.optimizer.*``."""
        tensors = {f"{prefix}.model.{k}": v for k, v in self.weights.items()}
        meta: dict[str, Any] = {"optimizer": None}
        if self.optimizer_state is not None:
            scalars = {}
            for i, entries in self.optimizer_state["state"].items():
                for k, v in entries.items():
                    if hasattr(v, "shape"):
                        tensors[f"{prefix}.optimizer.{i}.{k}"] = v
                    else:
                        scalars[f"{i}.{k}"] = v
            meta["optimizer"] = {
                "hyperparameters": dict(self.optimizer_state["hyperparameters"]),
                "step_count": self.optimizer_state["step_count"],
                "scalars": scalars,
            }
        return meta, tensors

    @classmethod
    def from_state(cls, prefix: str, meta: dict[str, Any], tensors: dict[str, Any]) -> Snapshot:
        """The inverse of :meth:`to_state`."""
        weights = {k[len(prefix) + 7 :]: v for k, v in tensors.items() if k.startswith(f"{prefix}.model.")}
        optimizer_state = None
        if meta["optimizer"] is not None:
            per_param: dict[int, dict[str, Any]] = {}
            for key, value in tensors.items():
                if key.startswith(f"{prefix}.optimizer."):
                    i, k = key[len(prefix) + 11 :].split(".", 1)
                    per_param.setdefault(int(i), {})[k] = value
            for key, value in meta["optimizer"]["scalars"].items():
                i, k = key.split(".", 1)
                per_param.setdefault(int(i), {})[k] = value
            optimizer_state = {**meta["optimizer"], "state": per_param}
            del optimizer_state["scalars"]
        return cls.of_weights(weights, optimizer_state)


def _copy(v: Any) -> Any:
    if hasattr(v, "shape"):
        return array_namespace(v).asarray(v, copy=True)
    return v


def _mode(owner: str, monitor: str, mode: str) -> str:
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"{owner}: mode must be 'auto', 'min' or 'max'; got {mode!r}")
    if mode == "auto":
        return "max" if "acc" in monitor else "min"
    return mode


class _Monitor(Callback):
    """Shared logic: watch ``logs[monitor]`` and tell whether it improved (Keras's rule: by more than ``min_delta``)."""

    def __init__(self, monitor: str, mode: str, min_delta: float) -> None:
        name = type(self).__name__
        if not isinstance(monitor, str):
            raise TypeError(f"{name}: monitor must be the name of a log entry such as 'val_loss'; got {monitor!r}")
        min_delta = check_number(name, "min_delta", min_delta)
        self.monitor = monitor
        self.mode = _mode(name, monitor, mode)
        self.min_delta = abs(min_delta)
        self.best = self._worst()

    def _worst(self) -> float:
        return math.inf if self.mode == "min" else -math.inf

    def _value(self, logs: Logs) -> float:
        if self.monitor not in logs:
            hint = " (pass validation_data to fit)" if self.monitor.startswith("val_") else ""
            raise KeyError(f"{type(self).__name__}: monitored {self.monitor!r} is not in the logs {sorted(logs)}{hint}")
        return float(logs[self.monitor])

    def _improved(self, value: float, reference: float | None = None) -> bool:
        """Whether ``value`` beats ``reference`` (default: the best so far) by more than ``min_delta``."""
        reference = self.best if reference is None else reference
        if self.mode == "min":
            return value < reference - self.min_delta
        return value > reference + self.min_delta

    #: Attributes saved in a training checkpoint, so that a resumed ``fit`` judges as the run would have.
    _state: tuple[str, ...] = ("best",)

    def state_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self._state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name in self._state:
            setattr(self, name, state[name])


class EarlyStopping(_Monitor):
    """Stop when ``monitor`` has stopped improving: Keras 3's ``EarlyStopping``, its arguments and its counting.

    After each epoch from ``start_from_epoch`` on, a counter ``wait`` goes up by one; an
    improvement (by more than ``min_delta`` on the best so far, and on ``baseline`` if given)
    resets it to 0. Training stops when ``wait >= patience`` after an epoch that did not
    improve (never after the first epoch). So on a flat loss, ``patience=2`` runs 3 epochs.

    Parameters
    ----------
    monitor
        A key of the epoch logs: ``"val_loss"`` (default), ``"val_accuracy"``, ``"loss"``…
    min_delta
        The smallest change that counts as an improvement.
    patience
        Epochs without improvement after which training stops.
    mode
        ``"min"``, ``"max"`` or ``"auto"`` (max for accuracies, min otherwise).
    baseline
        A value to beat: until an epoch beats it, ``wait`` is not reset, so a run that never
        reaches it stops after ``patience`` epochs.
    restore_best_weights
        Put back the weights of the best epoch when training ends (those of the first
        monitored epoch if none improved).
    start_from_epoch
        Epochs to train before watching (a warm-up in which no improvement is expected).

    Attributes
    ----------
    stopped_epoch, best_epoch
        The epoch (from 0) training stopped after, and the best one; None until known.

    Examples
    --------
    >>> import numpy as np
    >>> import portnn as pn
    >>> x, y = np.zeros((8, 2)), np.arange(8) % 2  # nothing to learn: the loss stays flat
    >>> stop = pn.callbacks.EarlyStopping(monitor="loss", patience=2, min_delta=0.1)
    >>> model = pn.Sequential([pn.layers.Linear(2, 2)], seed=0)
    >>> history = model.fit(x, y, loss=pn.losses.CrossEntropy(), optimizer=pn.optim.SGD(lr=0.1), epochs=10,
    ...                     callbacks=[stop], verbose=0)
    >>> len(history["loss"]), stop.stopped_epoch
    (3, 2)
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        *,
        min_delta: float = 0.0,
        patience: int = 0,
        mode: str = "auto",
        baseline: float | None = None,
        restore_best_weights: bool = False,
        start_from_epoch: int = 0,
    ) -> None:
        super().__init__(monitor, mode, min_delta)
        self.patience = check_int("EarlyStopping", "patience", patience, minimum=0)
        self.start_from_epoch = check_int("EarlyStopping", "start_from_epoch", start_from_epoch, minimum=0)
        self.baseline = check_number("EarlyStopping", "baseline", baseline, expected="a finite number or None", allow_none=True)
        self.restore_best_weights = check_flag("EarlyStopping", "restore_best_weights", restore_best_weights)
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

    def on_train_begin(self, logs: Logs | None = None) -> None:
        self.wait, self.stopped_epoch, self.best_epoch, self._best = 0, None, None, None
        self.best = self._worst()

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        value = self._value(_logs(logs))
        if epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self._best is None:
            self._best, self.best_epoch = Snapshot(self.model), epoch
        self.wait += 1
        if self._improved(value):
            self.best, self.best_epoch = value, epoch
            if self.restore_best_weights:
                self._best = Snapshot(self.model)
            if self.baseline is None or self._improved(value, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs: Logs | None = None) -> None:
        if self.restore_best_weights and self._best is not None:
            self._best.restore(self.model)


class ModelCheckpoint(_Monitor):
    """Save the model after each epoch (or each that improves ``monitor``): Keras 3's ``ModelCheckpoint``.

    ``filepath`` is formatted as Keras does, with ``epoch`` (from 1) and the epoch's logs:
    ``"w-{epoch:02d}-{val_loss:.2f}.safetensors"``. Its syntax is checked when the callback is
    built; a placeholder that the logs lack is refused at the end of the first epoch, before
    anything is saved, with the keys the logs have. The write is atomic (a temporary file in
    the same folder, then a rename): an interrupted save never leaves a half-written file.

    Parameters
    ----------
    filepath
        Where to save (a ``.safetensors`` file), with ``{epoch}`` and log keys as placeholders.
    monitor
        The log entry ``save_best_only`` compares (default ``"val_loss"``).
    save_best_only
        Save only after epochs that improve ``monitor`` (Keras's default, False, saves every epoch).
    save_weights_only
        False (default, as Keras): the whole model with ``model.save`` (``pn.load`` rebuilds it,
        ``model.load_weights`` reads its weights); True: the weights with ``model.save_weights``
        (``model.load_weights``).
    mode
        ``"min"``, ``"max"`` or ``"auto"`` (max for accuracies, min otherwise).
    save_freq
        ``"epoch"``, the only one supported (Keras's integer, every N batches, is not).
    min_delta
        With ``save_best_only``: the smallest change that counts as an improvement (portnn's; Keras has none).

    Notes
    -----
    In a distributed fit give it on every rank (as every callback with state): only the root
    process writes (``is_root``); the others keep the same ``best``.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> import portnn as pn
    >>> folder = tempfile.mkdtemp()
    >>> saver = pn.callbacks.ModelCheckpoint(os.path.join(folder, "m-{epoch:02d}-{loss:.2f}.safetensors"))
    >>> model = pn.Sequential([pn.layers.Linear(2, 2)], seed=0)
    >>> x, y = np.random.default_rng(0).normal(size=(16, 2)), np.arange(16) % 2
    >>> _ = model.fit(x, y, loss=pn.losses.CrossEntropy(), optimizer=pn.optim.SGD(lr=0.1), epochs=2,
    ...               callbacks=[saver], verbose=0)
    >>> [os.path.basename(p) for p in saver.saved]
    ['m-01-0.86.safetensors', 'm-02-0.84.safetensors']
    >>> pn.load(saver.saved[-1]).get_config() == model.get_config()
    True
    """

    def __init__(
        self,
        filepath: str | os.PathLike[str],
        *,
        monitor: str = "val_loss",
        save_best_only: bool = False,
        save_weights_only: bool = False,
        mode: str = "auto",
        save_freq: str = "epoch",
        min_delta: float = 0.0,
    ) -> None:
        super().__init__(monitor, mode, min_delta)
        if not isinstance(filepath, (str, os.PathLike)):
            raise TypeError(f"ModelCheckpoint: filepath must be a path (str or os.PathLike); got {type(filepath).__name__}")
        if save_freq != "epoch":
            raise ValueError(
                f"ModelCheckpoint: save_freq must be 'epoch' (saving every N batches is not supported); got {save_freq!r}; "
                "for mid-epoch training checkpoints use fit(checkpoint=DIR, checkpoint_every=N)"
            )
        self.filepath = os.fspath(filepath)
        self._keys = _template_keys("ModelCheckpoint", "filepath", self.filepath)
        self.save_best_only = check_flag("ModelCheckpoint", "save_best_only", save_best_only)
        self.save_weights_only = check_flag("ModelCheckpoint", "save_weights_only", save_weights_only)
        self.save_freq = save_freq
        self.saved: list[str] = []

    def on_train_begin(self, logs: Logs | None = None) -> None:
        kind = type(self.model).__name__
        if not hasattr(self.model, "save_weights" if self.save_weights_only else "save"):
            raise TypeError(
                f"ModelCheckpoint({self.filepath!r}): a {kind} has no {'save_weights' if self.save_weights_only else 'save'} "
                "method; give the model one (a Sequential has both) or use fit(checkpoint=DIR) for training checkpoints"
            )
        why = None if self.save_weights_only else serialization.unsaveable(self.model)
        if why is not None:
            raise TypeError(
                f"ModelCheckpoint({self.filepath!r}) saves the whole model (model.save), but {why}; "
                "or pass save_weights_only=True and build the model in code to load the weights"
            )

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        logs = _logs(logs)
        missing = [k for k in self._keys if k != "epoch" and k not in logs]
        if missing:
            hint = " (pass validation_data to fit)" if any(k.startswith("val_") for k in missing) else ""
            raise KeyError(
                f"ModelCheckpoint: filepath {self.filepath!r} names {missing}, which the epoch's logs lack; "
                f"they hold {sorted(logs)} and 'epoch'{hint}"
            )
        if self.save_best_only:
            value = self._value(logs)
            if not self._improved(value):
                return
            self.best = value
        if not self.is_root:
            return  # every rank holds the same weights: the root writes them
        path = self.filepath.format_map({**logs, "epoch": epoch + 1})
        if self.save_weights_only:
            self.model.save_weights(path)
        else:
            self.model.save(path)
        self.saved.append(path)


def _template_keys(owner: str, name: str, template: str) -> tuple[str, ...]:
    """The names a ``str.format`` template uses; refuses positional fields and formats that cannot take a number."""
    try:
        fields = [f for f in string.Formatter().parse(template) if f[1] is not None]
    except ValueError as exc:
        hint = "double a literal brace: {{"
        raise ValueError(f"{owner}: {name} {template!r} is not a valid format string ({exc}); {hint}") from None
    keys = []
    for _, field, _, _ in fields:
        key = field.split(".")[0].split("[")[0]
        if not key.isidentifier():
            raise ValueError(
                f"{owner}: {name} {template!r} has a positional field {{{field}}}; name what goes there, "
                "e.g. {epoch:02d} or {val_loss:.2f}"
            )
        keys.append(key)
    try:  # every log value is a number, the epoch an int
        template.format_map({k: 1 if k == "epoch" else 0.5 for k in keys})
    except (ValueError, TypeError, AttributeError, IndexError, KeyError) as exc:
        raise ValueError(f"{owner}: {name} {template!r} cannot be formatted with numbers: {exc}") from None
    return tuple(dict.fromkeys(keys))


class CSVLogger(Callback):
    """Append one row per epoch to a CSV file: Keras 3's ``CSVLogger``, its arguments and its file.

    The header is ``epoch`` then the first epoch's log keys, sorted (Keras's order); each row
    holds the epoch (from 0, as Keras) and the values, ``NA`` for a key an epoch lacks. Lines
    end with ``"\\n"``. Each row is written with one call, flushed and synced to disk before
    training goes on. Only the root process writes (``is_root``).

    With ``append=True`` an existing file is continued: its header must be the one this run
    writes (else a ``ValueError`` when the first row is due), and a last line cut short by a
    crash is dropped. The logger is resumable: a training checkpoint records how many bytes
    of the file belong to the run, and a resumed ``fit`` cuts the file back to them before
    its first row, so rows written after the checkpoint by the interrupted run do not appear
    twice; the file then equals an uninterrupted run's (up to values that differ between
    runs, such as timings).

    Parameters
    ----------
    filename
        The CSV file; missing folders are made. A folder, or a path that cannot be written, is
        refused before training starts.
    separator
        One character between fields.
    append
        Continue an existing file rather than overwrite it.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> import portnn as pn
    >>> path = os.path.join(tempfile.mkdtemp(), "log.csv")
    >>> model = pn.Sequential([pn.layers.Linear(2, 2)], seed=0)
    >>> x, y = np.random.default_rng(0).normal(size=(16, 2)), np.arange(16) % 2
    >>> _ = model.fit(x, y, loss=pn.losses.CrossEntropy(), optimizer=pn.optim.SGD(lr=0.1), epochs=2,
    ...               callbacks=[pn.callbacks.CSVLogger(path)], verbose=0)
    >>> print(open(path).read().splitlines()[0])
    epoch,accuracy,loss,lr
    """

    def __init__(self, filename: str | os.PathLike[str], separator: str = ",", append: bool = False) -> None:
        if not isinstance(filename, (str, os.PathLike)):
            raise TypeError(f"CSVLogger: filename must be a path (str or os.PathLike); got {type(filename).__name__}")
        if not (isinstance(separator, str) and len(separator) == 1 and separator not in '\r\n"'):
            raise ValueError(f"CSVLogger: separator must be one character (not a quote or a line break); got {separator!r}")
        self.filename = os.fspath(filename)
        self.sep = separator
        self.append = check_flag("CSVLogger", "append", append)
        _check_writable(Path(self.filename))
        self._bytes = 0  # bytes of the file that belong to this run
        self.rows = 0
        self.keys: list[str] | None = None
        self._active = False

    def on_train_begin(self, logs: Logs | None = None) -> None:
        self._active = self.is_root
        self.rows, self.keys, self._bytes = 0, None, 0
        if not self._active:
            return
        path = Path(self.filename)
        _check_writable(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "ab"):  # creates the file, changes nothing in one that exists
                pass
        except OSError as exc:
            message = f"CSVLogger: cannot write {self.filename!r}: {exc.strerror}; choose a writable path"
            raise type(exc)(exc.errno, message) from None
        if self.append:
            data = path.read_bytes()
            kept = data[: data.rfind(b"\n") + 1]
            if len(kept) < len(data):
                warnings.warn(
                    f"CSVLogger: the last line of {self.filename!r} was cut short ({data[len(kept) :][:40]!r}…); it is dropped",
                    RuntimeWarning,
                    stacklevel=2,
                )
            self._bytes = len(kept)

    def state_dict(self) -> dict[str, Any]:
        """The rows and bytes this run has written, and the header's keys: a resume cuts the file back to them."""
        return {"rows": self.rows, "bytes": self._bytes, "keys": self.keys}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rows, self._bytes, self.keys = state["rows"], state["bytes"], state["keys"]

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        if not self._active:
            return
        logs = _logs(logs)
        lines = []
        if self.keys is None:
            self.keys = sorted(logs)
            header = self._line(["epoch", *self.keys])
            with open(self.filename, "rb") as f:  # what the file holds of this run's bytes (a resume cuts the rest)
                kept = f.read(self._bytes)
            existing = kept[: kept.find(b"\n")].decode("utf-8").rstrip("\r") if kept else None
            if existing is None:
                lines.append(header)
            elif existing != header.rstrip("\n"):
                raise ValueError(
                    f"CSVLogger(append=True): {self.filename!r} has the header {existing!r}, this run writes "
                    f"{header.rstrip()!r}; log to another file or pass append=False to overwrite it"
                )
        lines.append(self._line([epoch, *(_cell(logs.get(k, "NA")) for k in self.keys)]))
        self._write("".join(lines).encode("utf-8"))
        self.rows += 1

    def on_train_end(self, logs: Logs | None = None) -> None:
        if self._active:
            self._write(b"")  # a fit that wrote no row still leaves the file as its run had it

    def _line(self, values: list[Any]) -> str:
        out = io.StringIO()
        csv.writer(out, delimiter=self.sep, lineterminator="\n").writerow(values)
        return out.getvalue()

    def _write(self, data: bytes) -> None:
        """Cut the file back to this run's bytes, then append ``data`` in one write, flushed and synced."""
        with open(self.filename, "r+b") as f:
            size = f.seek(0, os.SEEK_END)
            if size < self._bytes:
                raise RuntimeError(
                    f"CSVLogger: {self.filename!r} holds {size} bytes, fewer than the {self._bytes} this run wrote: "
                    "something else changed it; log to a new file"
                )
            f.seek(self._bytes)
            f.truncate()
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        self._bytes += len(data)


def _cell(value: Any) -> Any:
    """A log value as Keras's CSVLogger writes it: a sequence as ``[a, b]``, anything else as is."""
    if isinstance(value, str) or not hasattr(value, "__iter__") or getattr(value, "ndim", 1) == 0:
        return value
    return f"[{', '.join(map(str, value))}]"


def _check_writable(path: Path) -> None:
    """Refuse a folder, or a path below a file, before anything is trained."""
    if path.is_dir():
        raise ValueError(f"CSVLogger: filename {str(path)!r} is a folder; give a file in it, e.g. {str(path / 'log.csv')!r}")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ValueError(f"CSVLogger: cannot write {str(path)!r}: {str(parent)!r} is a file, not a folder")
            where, what = (path, "file") if path.exists() else (parent, "folder")
            if not os.access(where, os.W_OK):
                raise ValueError(f"CSVLogger: cannot write {str(path)!r}: the {what} {str(where)!r} is not writable")
            break

"""The training loop, apart from the model: :class:`Trainer` gives a model ``compile``, ``fit``, ``evaluate``, ``predict``.

Keras 3 writes ``class Model(Trainer, Layer)``; portnn does the same: :class:`~portnn.Sequential`
only builds and runs layers, and inherits the loop from :class:`Trainer`. Any model that has
parameters and a forward pass trains with it (see :class:`Trainer` for what it needs).

The loop itself (:meth:`Trainer.fit`) is a short sequence of hooks. What cuts across it plugs into
them instead of branching inside: the callbacks (Keras's protocol), the records of
``fit(record=True)``, training checkpoints, the progress bar and the per-epoch line, and the
*strategy* that says how this process takes part in training: :class:`LocalStrategy` alone, or
:class:`portnn.distributed.DataParallel` across MPI ranks, with the same methods.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from array_api_compat import array_namespace

from . import _records, _resume, _threads, backends, data
from ._array import dtype_name
from ._checks import check_flag, check_int, check_number
from ._inputs import batches, count_nonfinite, detached, model_input
from ._progress import progress_bar, resolve_verbose
from .callbacks import Callback, CallbackList
from .losses import MSE, BinaryCrossEntropy, CrossEntropy, Loss
from .optim import SGD, AdaGrad, Adam, AdamW, Optimizer, RMSprop

__all__ = ["Evaluation", "History", "LocalStrategy", "Trainer"]


class History:
    """Per-epoch logs of :meth:`Trainer.fit`, as Keras keeps them.

    ``history.history`` maps ``"loss"``, ``"accuracy"``, ``"val_loss"``, ``"val_accuracy"``
    and ``"epoch_time"`` (seconds) to one value per epoch; ``history["loss"]`` is a shortcut.
    """

    def __init__(self) -> None:
        self.history: dict[str, list[float]] = {}
        self.epoch: list[int] = []
        #: What ``fit(record=True)`` kept (see :class:`portnn._records.Recorder`): ``"step"``,
        #: ``"grad_norm"`` and ``"active_fraction"``; empty otherwise.
        self.records: dict[str, Any] = {}

    def append(self, epoch: int, logs: dict[str, float]) -> None:
        self.epoch.append(epoch)
        for key, value in logs.items():
            self.history.setdefault(key, []).append(value)

    def __getitem__(self, key: str) -> list[float]:
        return self.history[key]

    def __repr__(self) -> str:
        last = {k: round(v[-1], 4) for k, v in self.history.items()}
        return f"History(epochs={len(self.epoch)}, last={last})"


class Evaluation(tuple):
    """What :meth:`Trainer.evaluate` returns: the loss, then the metrics — a tuple that also answers to names.

    As in Keras, ``loss, accuracy = model.evaluate(x, y)`` unpacks the values in that order;
    ``result["accuracy"]``, ``result.keys()``, ``result.items()`` and ``dict(result)`` read them
    by name; ``"accuracy" in result`` asks for a name. Iterating gives the values (it is a tuple),
    not the names as a dict would. A result that holds only the loss (a regression) also reads as
    that number: ``float(result)``, ``f"{result:.3f}"``.

    Examples
    --------
    >>> result = Evaluation({"loss": 0.25, "accuracy": 0.875})
    >>> loss, accuracy = result
    >>> result["accuracy"], dict(result)
    (0.875, {'loss': 0.25, 'accuracy': 0.875})
    """

    _names: tuple[str, ...]

    def __new__(cls, logs: dict[str, float]) -> Evaluation:
        self = super().__new__(cls, logs.values())
        self._names = tuple(logs)
        return self

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            if key not in self._names:
                raise KeyError(f"evaluate's result has {list(self._names)}; got {key!r}")
            return tuple.__getitem__(self, self._names.index(key))
        return tuple.__getitem__(self, key)

    def keys(self) -> tuple[str, ...]:
        return self._names

    def values(self) -> tuple[float, ...]:
        return tuple(self)

    def items(self) -> list[tuple[str, float]]:
        return list(zip(self._names, self))

    def get(self, key: str, default: Any = None) -> Any:
        return self[key] if key in self._names else default

    def __contains__(self, key: object) -> bool:
        """``"accuracy" in result`` asks for a name, as a dict would."""
        return key in self._names

    def __getnewargs__(self) -> tuple[dict[str, float]]:  # pickle and copy rebuild it from the names and values
        return (dict(self.items()),)

    def __float__(self) -> float:
        """The value of a result that holds only the loss (Keras returns a bare number then)."""
        if len(self) != 1:
            raise TypeError(f"float() of evaluate's result needs one value; it has {list(self._names)}: pick one by name")
        return float(tuple.__getitem__(self, 0))

    def __format__(self, spec: str) -> str:
        return format(float(self), spec) if spec and len(self) == 1 else super().__format__(spec)

    def __repr__(self) -> str:
        return "Evaluation(" + ", ".join(f"{k}={v!r}" for k, v in self.items()) + ")"


class LocalStrategy:
    """Training in this process alone: every collective of a data-parallel strategy is the identity.

    :class:`portnn.distributed.DataParallel` has the same methods for MPI ranks; :meth:`Trainer.fit`
    calls only these, so the loop has no branch for distributed training.
    """

    size = 1
    rank = 0
    is_root = True

    def check_same_run(self, run: dict[str, Any], notes: dict[str, str] | None = None) -> None:
        """Before anything is changed: make sure every process was given the same run (here: it is the only one).

        ``run`` maps each argument that the processes must share (data size, batch size,
        epochs, dtype, architecture, optimizer, the position a resume starts from...) to a
        comparable value; ``notes`` adds words to an error about a key (where a checkpoint was
        looked for).
        """

    def setup(self, model: Any, rng: Any) -> None:
        """Before the first step: the same weights and shuffling everywhere (nothing to do here); BLAS threads for the load."""
        self._threads = contextlib.ExitStack()
        self._threads.enter_context(_threads.limit_threads())  # portnn.limit_threads: restored by teardown

    def teardown(self, model: Any) -> None:
        """After the last step (also after an error): undo what :meth:`setup` changed."""
        if getattr(self, "_threads", None) is not None:
            self._threads.close()

    def shard(self, start: int, stop: int) -> tuple[int, int]:
        """This process's part of the global batch ``[start, stop)``: all of it."""
        return start, stop

    def reduce_gradients(self, model: Any, local_batch: int, *, mean: bool) -> None:
        """Make every trainable parameter's ``grad`` the gradient of the global batch (here: it is already)."""

    def reduce_step(self, value: float, correct: Any, stop: bool) -> tuple[float, Any, bool]:
        """The global batch's summed loss, correct count and stop flag (here: this process's, unchanged, on the device)."""
        return value, correct, stop

    def agree(self, stop: bool) -> bool:
        """Whether any process asked to stop (here: this one)."""
        return stop

    def sync_buffers(self, model: Any) -> None:
        """Make the buffers (BatchNorm running statistics) the same everywhere (here: nothing to do)."""

    def sum_arrays(self, arrays: list[Any]) -> list[Any]:
        """Host arrays summed over the processes (here: as given)."""
        return arrays

    def evaluate(self, evaluate: Any, X: Any, Y: Any, loss: Loss) -> dict[str, float]:
        """``evaluate(X, Y)`` over the whole data (a data-parallel strategy splits it and sums)."""
        return evaluate(X, Y)

    def abort(self, exc: BaseException) -> None:
        """A failure in this process: nothing else to end (several ranks end the job instead of hanging)."""


@dataclass
class _Fit:
    """Everything one call of :meth:`Trainer.fit` works with, checked and resolved."""

    loss: Loss
    optimizer: Optimizer
    X: Any
    Y: Any
    val: tuple[Any, Any] | None
    epochs: int
    batch_size: int
    shuffle: bool
    drop_last: bool
    l2: float
    verbose: int
    rng: Any
    strategy: Any
    callbacks: CallbackList
    recorder: Any
    checkpoint: Any = None  # the directory of the loop's training checkpoints (None: none written)
    checkpoint_every: int | None = None
    resume: Any = None  # the directory (or file) fit was asked to resume from
    history: History = field(default_factory=History)
    resumed: dict[str, Any] | None = None  # what the checkpoint resumed from holds (callbacks' states)
    parts: list[_Part] = field(default_factory=list)  # the loop's own parts: records, progress, checkpoints
    loader: Any = None  # a DataLoader the batches stream from (X and Y are then None)
    per_example: int = 1  # predictions counted per example (the accuracy's denominator), from a streamed batch
    steps_per_sync: int = 1  # read the losses to the host every this many steps (1: every step)
    pending: list[_Pending] = field(default_factory=list)  # steps whose losses are still on the device
    out_shape: tuple[int, ...] | None = None  # one example's output shape: a memory-mapped X's targets checked with it

    def must_sync(self, position: _Position) -> bool:
        """Whether the step just taken needs the losses on the host now: before a checkpoint is written."""
        every = self.checkpoint_every
        return every is not None and (position.global_step + 1) % every == 0

    def emit(self, event: str, position: _Position, logs: dict[str, Any] | None = None) -> None:
        """Tell the loop's own parts, in order, that ``event`` happened (see :class:`_Part`)."""
        for part in self.parts:
            getattr(part, event)(self, position, logs)

    @property
    def n(self) -> int | None:
        """Examples per epoch (None for a loader over an iterable of batches)."""
        return self.loader.n if self.loader is not None else int(self.X.shape[0])

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.strategy.size

    @property
    def steps_per_epoch(self) -> int | None:
        """Steps per epoch (None for a loader that does not know its length)."""
        if self.loader is not None:
            return self.loader.steps
        return self.n // self.global_batch if self.drop_last else math.ceil(self.n / self.global_batch)

    @property
    def run(self) -> dict[str, Any]:
        """What a resume must find unchanged (saved in every checkpoint)."""
        run = {
            "n": self.n,
            "batch_size": self.batch_size,
            "shuffle": self.shuffle,
            "drop_last": self.drop_last,
            "ranks": self.strategy.size,
        }
        if self.loader is not None:
            run.update(batch_size=self.loader.batch_size, shuffle=self.loader.shuffle, drop_last=self.loader.drop_last)
            if run["n"] is None:
                del run["n"]
        return run


@dataclass
class _Position:
    """Where the loop is: the epoch, the next step, the running sums of the epoch, the shuffling state at its start."""

    epoch: int = 0
    step: int = 0
    global_step: int = 0
    loss_sum: float = 0.0
    seen: int = 0
    correct: Any = 0
    rng: Any = None
    stopped: bool = False

    def saved(self, run: dict[str, Any]) -> dict[str, Any]:
        """The checkpoint's ``progress`` entry (the format :mod:`portnn._resume` reads back)."""
        out = {
            "epoch": self.epoch,
            "step": self.step,
            "global_step": self.global_step,
            "loss_sum": self.loss_sum,
            "seen": self.seen,
            "correct": int(self.correct),
            "rng": self.rng,
        }
        if self.step == 0:
            out["stopped"] = self.stopped
        return {**out, **run}


class _Part:
    """One of the loop's own parts. Its events, in the order the loop emits them (each a no-op here):

    ``epoch_begin``; per step ``batch_begin`` (before the step), ``step_done`` (after the update,
    before the callbacks see the batch) and ``batch_end`` (after them); ``epoch_logs`` (before the
    callbacks see the epoch's logs) and ``epoch_end`` (after them and the history).
    """

    def epoch_begin(self, fit: _Fit, position: _Position, logs: Any) -> None: ...

    def batch_begin(self, fit: _Fit, position: _Position, logs: Any) -> None: ...

    def step_done(self, fit: _Fit, position: _Position, logs: Any) -> None: ...

    def batch_end(self, fit: _Fit, position: _Position, logs: Any) -> None: ...

    def epoch_logs(self, fit: _Fit, position: _Position, logs: Any) -> None: ...

    def epoch_end(self, fit: _Fit, position: _Position, logs: Any) -> None: ...


class _Records(_Part):
    """``fit(record=True)``: gradient norms after recorded steps, unit activity closed per epoch (all ranks')."""

    def __init__(self, recorder: Any) -> None:
        self.recorder = recorder

    def batch_begin(self, fit: _Fit, position: _Position, logs: Any) -> None:
        self.recorder.before_step(position.global_step)

    def step_done(self, fit: _Fit, position: _Position, logs: Any) -> None:
        self.recorder.after_step(position.global_step)

    def epoch_logs(self, fit: _Fit, position: _Position, logs: Any) -> None:
        self.recorder.end_epoch(fit.strategy)


class _Progress(_Part):
    """``verbose``: a progress bar over the epoch's steps (1) and a line per epoch (1 and 2)."""

    def __init__(self, verbose: int) -> None:
        self.verbose, self.bar = verbose, None

    def epoch_begin(self, fit: _Fit, position: _Position, logs: Any) -> None:
        title = f"Epoch {position.epoch + 1}/{fit.epochs}"
        self.bar = progress_bar(fit.steps_per_epoch, title, self.verbose == 1, initial=position.step)

    def batch_end(self, fit: _Fit, position: _Position, logs: Any) -> None:
        self.bar.update(1)
        shown = "loss" in logs and (fit.steps_per_sync > 1 or (position.step - 1) % 50 == 0)  # at each read
        if self.verbose == 1 and shown:
            self.bar.set_postfix_str(f"loss {logs['loss']:.4f}")

    def epoch_end(self, fit: _Fit, position: _Position, logs: Any) -> None:
        self.bar.close()
        shown = " - ".join(f"{k}: {v:{'.4g' if k == 'lr' else '.4f'}}" for k, v in logs.items() if k != "epoch_time")
        print(f"Epoch {position.epoch + 1}/{fit.epochs} - {logs['epoch_time']:.1f}s - {shown}", flush=True)


class _Checkpoints(_Part):
    """``fit(checkpoint=DIR, checkpoint_every=N)``: a training checkpoint every N steps and at every epoch's end."""

    def __init__(self, model: Any, directory: Any, every: int | None) -> None:
        self.model, self.directory, self.every = model, directory, every

    def batch_end(self, fit: _Fit, position: _Position, logs: Any) -> None:
        last = fit.steps_per_epoch
        if self.every is not None and position.global_step % self.every == 0 and (last is None or position.step < last):
            # every rank takes part: the state saved is the global one (the epoch's end writes its own)
            fit.strategy.sync_buffers(self.model)
            if fit.recorder is not None:
                fit.recorder.reduce(fit.strategy, keep=fit.strategy.is_root)
            self.write(fit, position)

    def epoch_end(self, fit: _Fit, position: _Position, logs: Any) -> None:
        stopped = self.model.stop_training
        self.write(
            fit,
            _Position(
                epoch=position.epoch + 1, global_step=position.global_step, rng=fit.rng.bit_generator.state, stopped=stopped
            ),
        )

    def write(self, fit: _Fit, position: _Position) -> None:
        """Write (rank 0), unless a parameter is no longer finite: the last good checkpoint stays."""
        if not fit.strategy.is_root:
            return
        model = self.model
        xp = model.backend.xp
        bad = [name for name, p in model.named_parameters() if not bool(xp.all(xp.isfinite(p.data)))]
        if bad:
            warnings.warn(
                f"fit: parameters {bad} hold NaN or infinite values after step {position.global_step}; "
                f"the checkpoint in {self.directory} was not overwritten",
                RuntimeWarning,
                stacklevel=2,
            )
            return
        progress = position.saved(fit.run)
        if fit.loader is not None:  # where the loader is: the epoch's order and the transforms' draws follow from it
            progress["loader"] = fit.loader.state_dict()
        _resume.save(self.directory, model, fit.optimizer, fit.callbacks.callbacks, progress, fit.history, fit.recorder)


#: How often ``fit(steps_per_execution="auto")`` reads the losses when nothing needs them at every step.
_AUTO_STEPS_PER_EXECUTION = 50


@dataclass
class _Pending:
    """A step whose loss is still on the device: where it was, the 0-d loss and its factor to a batch sum."""

    epoch: int
    step: int
    start: int
    stop: int
    value: Any
    scale: int


def _nonfinite(fit: _Fit, epoch: int, step: int, start: int, stop: int, value: float) -> FloatingPointError:
    return FloatingPointError(
        f"fit: the training loss became {value} in epoch {epoch + 1}, step {step + 1} "
        f"(batch {start}:{stop}); "
        f"the learning rate ({fit.optimizer.lr:g}) is probably too large, or the inputs are unscaled. "
        "pn.optim.schedules.Backtracking() rolls back and lowers it instead"
    )


class _Streamed:
    """One epoch of a loader's batches as the loop takes them: ``(step, start, stop, xb, yb)`` on the model's device.

    The loader's own thread reads, converts (:meth:`Trainer._host_batch`) and transforms each
    batch; here the count is checked: a loader that knows its length must give exactly that many
    batches (one that ends early, or gives more, is an error naming the batch).
    """

    def __init__(self, model: Any, fit: _Fit, position: _Position) -> None:
        self.loader, self.epoch = fit.loader, position.epoch
        self.steps, self.step, self.start = fit.loader.steps, position.step, position.seen
        home = (model.backend, model.dtype, set())  # once per epoch: each walks the parameters; the shapes accepted

        def convert(host: tuple[Any, ...]) -> tuple[Any, Any]:
            if len(host) < 2:
                raise data.BatchError(f"{type(model).__name__}.fit: the loader's batches hold x only; fit needs (x, y) batches")
            return model._host_batch(host[0], host[1], fit.loss, "fit", home=home)

        self.batches = fit.loader.batches(convert, device_stream=model.backend)

    def __iter__(self) -> _Streamed:
        return self

    def __next__(self) -> tuple[int, int, int, Any, Any]:
        if self.steps is not None and self.step >= self.steps:
            try:
                next(self.batches)  # the end of the epoch, which the loader must reach here
            except StopIteration:
                raise StopIteration from None
            raise data.BatchError(
                f"batch {self.step}: the source gave more batches than its length ({self.steps}) in epoch {self.epoch + 1}"
            )
        try:
            xb, yb = next(self.batches)
        except StopIteration:
            if self.steps is not None:
                raise data.BatchError(
                    f"batch {self.step}: the source ended after {self.step} of its {self.steps} batches in epoch "
                    f"{self.epoch + 1}; a source must give len(loader) batches every epoch"
                ) from None
            raise
        step, start = self.step, self.start
        self.step, self.start = step + 1, start + int(xb.shape[0])
        return step, start, self.start, xb, yb

    def close(self) -> None:
        self.batches.close()


class Trainer:
    """The training loop of a model: :meth:`compile`, :meth:`fit`, :meth:`evaluate`, :meth:`predict`, :meth:`train_step`.

    A model class inherits it (``class Sequential(Trainer)``) and provides:

    - ``forward(x, *, training=False, input_grad=...) -> (y, backward)``, where ``backward(dy)``
      fills each parameter's ``grad``;
    - ``parameters()`` and ``named_parameters()`` (and, for checkpoints and distributed training,
      ``named_buffers()``, ``state_dict()`` and ``load_state_dict(state)``).

    It may also provide ``layers`` (per-layer rules such as ``min_batch_size``, the random
    generators saved in checkpoints, the records; the loss checks the last one), and
    ``check_input_shape(shape, where)``, which raises a :class:`~portnn.layers.ShapeError` when
    examples of that shape do not fit, before any computation. A model's ``forward`` that calls
    ``self._observer(i, layer, output)`` with each layer's training output, when it is set, feeds
    the activity records of ``fit(record=True)``.

    Examples
    --------
    A model that is not a stack, written by hand, trains with the same loop:

    >>> import numpy as np
    >>> import portnn as pn
    >>> class Wide(pn.training.Trainer):
    ...     def __init__(self):
    ...         self.a, self.b = pn.layers.Linear(2, 3), pn.layers.Linear(2, 3)
    ...     def parameters(self):
    ...         return [*self.a.parameters(), *self.b.parameters()]
    ...     def named_parameters(self):
    ...         yield from self.a.named_parameters("a.")
    ...         yield from self.b.named_parameters("b.")
    ...     def forward(self, x, *, training=False, input_grad=False):
    ...         ya, back_a = self.a.forward(x, training=training, input_grad=input_grad)
    ...         yb, back_b = self.b.forward(x, training=training, input_grad=input_grad)
    ...         return ya + yb, lambda dy: (back_a(dy), back_b(dy))[0]
    >>> x, y = np.random.default_rng(0).normal(size=(64, 2)), np.arange(64) % 3
    >>> history = Wide().fit(x, y, loss=pn.losses.CrossEntropy(), optimizer=pn.optim.SGD(lr=0.1), verbose=0)
    """

    stop_training: bool = False
    layers: Any = ()
    _loss: Loss | None = None
    _optimizer: Optimizer | None = None
    _observer: Any = None
    _strategy: Any = LocalStrategy()

    @property
    def backend(self) -> backends.Backend:
        """Where the parameters live (the global backend for a model without parameters)."""
        for p in self.parameters():
            return backends.Backend(backends.adapter_for(p.data), p.device)
        return backends.get_backend()

    @property
    def dtype(self) -> str:
        """The parameters' dtype (``"float32"`` for a model without parameters)."""
        for p in self.parameters():
            return dtype_name(p.dtype)
        return "float32"

    def check_input_shape(self, shape: tuple[int, ...], where: str) -> None:
        """Raise a ShapeError when examples of ``shape`` do not fit; a model that cannot tell beforehand accepts all."""

    @property
    def _shuffle_rng(self) -> Any:
        """The generator ``fit`` shuffles with when no ``seed`` is given (``Sequential(seed=)`` seeds it)."""
        if getattr(self, "_rng", None) is None:
            self._rng = backends.host_rng(None)
        return self._rng

    # -- configuration ----------------------------------------------------------------
    def compile(self, *, loss: Loss | str | None, optimizer: Optimizer | str | None, metrics: Iterable[str] | None = None) -> Any:
        """Keep a loss and an optimizer for :meth:`fit` and :meth:`evaluate` (Keras style). Returns self.

        Both are checked here. Keras's names are taken as well, each meaning a portnn class
        with its own defaults: ``optimizer="sgd"``, ``"adam"``, ``"adamw"``, ``"rmsprop"``,
        ``"adagrad"``; ``loss="sparse_categorical_crossentropy"`` and
        ``"categorical_crossentropy"`` (:class:`~portnn.losses.CrossEntropy`, which takes
        integer labels and one-hot targets alike, from logits), ``"binary_crossentropy"``
        (:class:`~portnn.losses.BinaryCrossEntropy` of probabilities, after a final Sigmoid),
        ``"mse"``/``"mean_squared_error"``. None leaves that part for :meth:`fit` to be given.
        :meth:`save` keeps both (class and arguments), so a model from :func:`portnn.load`
        evaluates without being compiled again. ``metrics`` takes Keras's ``["accuracy"]``:
        fit and evaluate report accuracy for every classification loss anyway; other metrics
        are refused (compute them from :meth:`predict` with :mod:`portnn.metrics`).

        Examples
        --------
        >>> import numpy as np
        >>> import portnn as pn
        >>> model = pn.Sequential([pn.layers.Linear(4, 3)], seed=0)
        >>> model = model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        >>> x, y = np.random.default_rng(0).normal(size=(32, 4)), np.arange(32) % 3
        >>> history = model.fit(x, y, epochs=2, verbose=0)
        >>> sorted(model.evaluate(x, y).keys())
        ['accuracy', 'loss']
        """
        where = f"{type(self).__name__}.compile"
        loss = None if loss is None else self._check_loss(loss, where)
        optimizer = None if optimizer is None else _resolve_optimizer(optimizer, where)
        if metrics is not None:
            if isinstance(metrics, str) or not isinstance(metrics, (list, tuple)):
                raise TypeError(f"{where}: metrics must be a list such as ['accuracy']; got {metrics!r:.80}")
            other = [m for m in metrics if m not in ("accuracy", "acc")]
            if other:
                raise ValueError(
                    f"{where}: metrics {other!r:.100} are not computed during fit; fit and evaluate report the loss and, for "
                    "classification losses, accuracy: compute others from predict() with pn.metrics"
                )
            if metrics and loss is not None and not loss.classification:
                raise ValueError(f"{where}: metrics=['accuracy'] needs a classification loss; {loss!r} is a regression loss")
        self._loss, self._optimizer = loss, optimizer
        return self

    def _check_loss(self, loss: Any, where: str = "compile") -> Loss:
        if isinstance(loss, str):
            loss = _resolve_name(loss, _LOSS_NAMES, where, "loss")
        if not isinstance(loss, Loss):
            raise TypeError(
                f"{where} needs a loss such as pn.losses.CrossEntropy() or 'sparse_categorical_crossentropy' "
                f"(got {loss!r:.100}); pass loss= or call compile()"
            )
        loss.check_output_layer(self.layers[-1] if self.layers else None)
        return loss

    # -- one step ---------------------------------------------------------------------
    def train_step(
        self, x: Any, y: Any, loss: Loss, optimizer: Optimizer, *, validate: bool = True, l2: float = 0.0
    ) -> tuple[Any, Any]:
        """One step on a batch already on the model's device: returns ``(loss value, predictions)`` as arrays.

        ``l2 > 0`` adds the penalty ``0.5 * l2 * sum(W**2)`` over the regularised parameters
        (weights, not biases) to the loss and ``l2 * W`` to their gradients. With plain SGD
        this equals ``SGD(weight_decay=l2)`` except that weight decay also shrinks biases;
        with adaptive optimizers (Adam) a penalty in the loss is rescaled per parameter,
        while AdamW's decoupled decay is not.
        """
        l2 = l2 if type(l2) is float and l2 == 0.0 else _check_l2(l2)  # fit's own 0.0 (checked there): no check per step
        x, y = detached(x), detached(y)
        if x.shape[0] == 0:
            raise ValueError(
                f"{type(self).__name__}.train_step: got an empty batch (x of shape {tuple(x.shape)}); pass at least one example"
            )
        optimizer.zero_grad()
        y_pred, backward = self.forward(x, training=True, input_grad=False)
        value, loss_backward = loss.forward(y_pred, y, validate=validate)
        backward(loss_backward())
        return self._finish_step(optimizer, x.shape[0], l2, loss, value), y_pred

    def _finish_step(self, optimizer: Optimizer, batch: int, l2: float, loss: Loss, value: Any = None) -> Any:
        """After the backward pass: the gradients of the global batch, the L2 term, the update.

        Returns ``value`` (the batch loss) with the L2 penalty added; a rank with an empty share
        of the batch calls it with ``batch=0`` and no value.
        """
        self._strategy.reduce_gradients(self, batch, mean=loss.reduction == "mean")  # before the L2 term
        if l2:
            for p in self.parameters():
                if p.regularize and p.trainable:
                    if value is not None:
                        value = value + (0.5 * l2) * array_namespace(p.data).sum(p.data * p.data)
                    p.accumulate(l2 * p.data)
        optimizer.step()
        return value

    # -- the loop ---------------------------------------------------------------------
    def fit(
        self,
        x: Any,
        y: Any = None,
        *,
        loss: Loss | None = None,
        optimizer: Optimizer | None = None,
        epochs: int = 1,
        batch_size: int | None = None,
        shuffle: bool | None = None,
        drop_last: bool | None = None,
        validation_data: tuple[Any, Any] | None = None,
        verbose: int | str = "auto",
        seed: int | None = None,
        callbacks: Iterable[Callback] | None = None,
        l2: float = 0.0,
        record: bool = False,
        record_every: int = 1,
        checkpoint: str | os.PathLike[str] | None = None,
        checkpoint_every: int | None = None,
        resume: str | os.PathLike[str] | None = None,
        distributed: Any = None,
        steps_per_execution: int | str = "auto",
    ) -> History:
        """Train with mini-batch gradient descent.

        Parameters
        ----------
        x, y
            Training inputs and targets: NumPy (or anything NumPy can read) or arrays already
            on the model's backend and device. Host data is copied onto the model's device
            once; float inputs are cast to the model's dtype, integer and boolean inputs
            converted to it (values unchanged: scale pixels yourself). Integer class labels
            become int64. Non-finite inputs are refused. A memory-mapped ``x``
            (``np.load(path, mmap_mode="r")``, with ``y`` a NumPy array) is read batch by batch
            in a background thread, each batch's targets checked on the host as in-memory ones
            are, and copied to the device alone: the same steps, bit for bit, as the array in
            memory. ``x`` may also be a
            :class:`portnn.data.DataLoader` or a generator of ``(x, y)`` batches, without ``y``:
            then ``batch_size``, ``shuffle`` and ``drop_last`` are the loader's own (passing
            them to fit is an error: set them on the loader), a loader resumes
            exactly from a checkpoint (its state is saved in it) and a generator trains one epoch
            and cannot be checkpointed (it has no state). With ``distributed``, pass arrays
            (memory-mapped ones stream): a loader is refused.
        loss, optimizer
            Default to those given to :meth:`compile` or the last ``fit``. The optimizer is
            bound to this model's parameters. Keras's names (``"adam"``, ``"mse"``...) are
            taken as :meth:`compile` takes them (a name makes a new optimizer each call).
        epochs, batch_size
            Passes over the data and examples per step (the last batch may be smaller);
            ``batch_size`` defaults to 32 (None: the default, or the loader's own).
        shuffle
            Reshuffle every epoch, from the model's seeded generator (or ``seed``). Default True.
        drop_last
            Skip the last batch of every epoch when it is smaller than ``batch_size`` (PyTorch's
            ``DataLoader`` option): BatchNorm cannot train on a last batch of one example.
            Default False.
        validation_data
            ``(x_val, y_val)`` (``x_val`` may be memory-mapped, then read batch by batch) or a
            :class:`portnn.data.DataLoader` (in its own batches), evaluated after every epoch.
            Arrays are evaluated in batches of ``max(batch_size, 256)``.
        verbose
            0 silent; 1 a progress bar and a line per epoch; 2 a line per epoch; ``"auto"``
            is 1 on a terminal or in a notebook, else 2.
        seed
            Seed of the shuffling (default: the model's generator, seeded by ``Sequential(seed=)``).
        callbacks
            Callbacks (:class:`~portnn.callbacks.Callback`): early stopping, checkpoints, learning-rate
            schedules (:mod:`portnn.optim.schedules`), your own.
        l2
            L2 penalty ``0.5 * l2 * sum(W**2)`` over the weights (not biases) added to the loss;
            see :meth:`train_step`.
        record, record_every
            Keep, every ``record_every`` steps, per-layer gradient norms and, per epoch, how
            often each unit of each activation layer was active, in ``History.records`` (for
            :func:`portnn.plot.grad_norms` and :func:`portnn.plot.activation_stats`). Off by default;
            when on, a few reductions per layer and recorded step, brought to the host once per
            epoch: about 10% of an MNIST MLP epoch at ``record_every=1``, 1% at 10.
        checkpoint, checkpoint_every
            A directory to write a training checkpoint to (``checkpoint.safetensors``, replaced
            atomically): every ``checkpoint_every`` steps, and at the end of every epoch. It holds
            the model, the optimizer's state, the states of the random generators (shuffling,
            dropout), of the schedules, the position and the history: all that ``resume`` needs.
            Parameters that are not finite are never written over the last good checkpoint. A
            path that could never be written (a file, a folder below a file, a place this process
            may not write to) is refused before the first step; nothing is created until then.
        resume
            A checkpoint directory (or file) of an interrupted run: restores it and goes on from
            the step after the one saved. Build the model, optimizer and callbacks as for the
            first run and pass the same arguments; on NumPy, PyTorch CPU and array-api-strict the
            resumed run ends bit-identical to one never interrupted (CuPy's generators expose no
            state: there a resumed Dropout draws fresh masks, re-seeded from the step). A directory
            without a checkpoint yet starts from the beginning, so the same command serves the
            first run and the restarts. The whole checkpoint is checked against this run before
            anything is written (a CheckpointError names the first misfit and leaves the model,
            the optimizer and the history as they were). A checkpoint from another backend
            resumes here: dropout generators whose state this backend cannot take start again
            from their seeds and the step, with a RuntimeWarning.
        distributed
            None (default) or False: this process alone (or a :class:`LocalStrategy`). True
            (``pn.distributed.world()``), a :class:`portnn.distributed.Communicator` or a
            :class:`portnn.distributed.DataParallel` strategy: data-parallel training across MPI ranks
            (launch with ``mpiexec -n N``). Every rank passes the same data and arguments; rank 0's
            weights and shuffling state are broadcast, each step's global batch of
            ``N * batch_size`` examples is split between the ranks, and the gradients are summed
            so that the update is the one a single process takes with batch ``N * batch_size``.
            Before anything else the ranks compare, in one collective, what they were given (data
            shape and dtype, batch size, epochs, architecture, optimizer, loss, checkpointing,
            recording, the position a resume starts from: a checkpoint only some ranks see
            differs); a difference raises the same :class:`portnn.distributed.RunMismatchError`
            on every rank, naming it, instead of a hang. Only rank 0 prints and writes
            checkpoints; a rank that fails ends the job. BatchNorm
            uses each rank's own batch statistics (running statistics averaged over the ranks at
            each epoch's end and before a checkpoint). See :mod:`portnn.distributed`.
        steps_per_execution
            How often the batch losses are read back to the host (Keras's name): the loss of
            every step stays on the device, and every ``steps_per_execution`` steps, before a
            checkpoint and at each epoch's end the losses since the last read come over in one
            transfer. A step itself then waits for nothing: on a GPU the host queues the next
            steps while the device works. ``"auto"`` (default) reads every 50 steps, or at every
            step when a callback needs each batch's loss (it overrides ``on_train_batch_end`` or
            ``on_nonfinite_loss``: see :attr:`portnn.callbacks.Callback.needs_batch_logs`) or the
            training is distributed; 1 reads every step. Between reads, ``on_train_batch_end``
            gets ``logs`` with ``size`` only. The epoch's loss is the same to the last bit either way.

        A batch whose loss is NaN or infinite stops training with an error that names the
        epoch and step, unless a callback rolls back (:class:`~portnn.optim.schedules.Backtracking`).
        With the losses read every ``steps_per_execution`` steps, the error comes at the read and
        names the first bad step (the steps after it ran on non-finite weights, as on a GPU the
        steps queued before a read do; no checkpoint holds them).

        Returns
        -------
        History
            Per-epoch ``loss``, ``accuracy`` (classification losses), ``val_loss``,
            ``val_accuracy``, ``lr`` (the learning rate used) and ``epoch_time``. Training accuracy is accumulated during the
            epoch, as Keras does (no second pass over the data). ``records`` holds what ``record`` asked for.
        """
        strategy = _strategy_for(distributed)
        try:  # everything, checks and resume included, under the abort guard: a rank that fails ends the job
            fit = self._plan_fit(
                x, y, loss=loss, optimizer=optimizer, epochs=epochs, batch_size=batch_size, shuffle=shuffle,
                drop_last=drop_last, validation_data=validation_data, verbose=verbose, seed=seed, callbacks=callbacks,
                l2=l2, record=record, record_every=record_every, checkpoint=checkpoint,
                checkpoint_every=checkpoint_every, resume=resume, strategy=strategy,
                steps_per_execution=steps_per_execution,
            )  # fmt: skip
            restore = self._plan_resume(fit)  # the whole checkpoint read and checked; nothing changed yet
            if strategy.size > 1:  # one collective: the ranks agree on the run before any other
                strategy.check_same_run(*self._same_run(fit, restore))
            self._loss, self._optimizer = fit.loss, fit.optimizer  # only once everything given was found good
            params = self.parameters()
            if fit.optimizer.params != params:
                fit.optimizer.bind(params)
            self._run(fit, self._resume(fit, restore))
            return fit.history
        except BaseException as exc:
            strategy.abort(exc)  # with more than one rank: report and end the job (the others would hang)
            raise

    def _plan_fit(
        self, x: Any, y: Any, *, loss: Any, optimizer: Any, epochs: int, batch_size: int | None, shuffle: bool | None,
        drop_last: bool | None,
        validation_data: Any, verbose: int | str, seed: int | None, callbacks: Any, l2: float, record: bool,
        record_every: int, checkpoint: Any, checkpoint_every: int | None, resume: Any, strategy: Any,
        steps_per_execution: int | str = "auto",
    ) -> _Fit:  # fmt: skip
        """Check every argument and bring the data to the model's device; nothing is changed here."""
        where = f"{type(self).__name__}.fit"
        loss = self._check_loss(loss if loss is not None else self._loss, "fit")
        optimizer = _resolve_optimizer(optimizer if optimizer is not None else self._optimizer, "fit")
        epochs = check_int(where, "epochs", epochs, minimum=0)
        if batch_size is not None:
            batch_size = check_int(where, "batch_size", batch_size)
        record_every = check_int(where, "record_every", record_every)
        if not (isinstance(steps_per_execution, str) and steps_per_execution == "auto"):
            steps_per_execution = check_int(where, "steps_per_execution", steps_per_execution)
        shuffle = None if shuffle is None else check_flag(where, "shuffle", shuffle)
        drop_last = None if drop_last is None else check_flag(where, "drop_last", drop_last)
        record = check_flag(where, "record", record)
        if seed is not None:
            seed = check_int(where, "seed", seed, minimum=0)
        if checkpoint_every is not None:
            checkpoint_every = check_int(where, "checkpoint_every", checkpoint_every)
            if checkpoint is None:
                raise ValueError("fit: checkpoint_every needs checkpoint=DIR, the directory to write the checkpoints to")
        if checkpoint is not None:
            _resume.check_path(where, "checkpoint", checkpoint)
            if strategy.is_root:  # the rank that writes: a path it could never write is refused before the first step
                _resume.check_writable(where, checkpoint)
        if resume is not None:
            _resume.check_resume_path(where, resume)
        l2 = _check_l2(l2)
        verbose = resolve_verbose(verbose)
        callback_list = CallbackList(callbacks)
        loader = _as_loader(x, y, where)
        out_shape = None
        if loader is not None:
            _check_loader_options(where, batch_size, shuffle, drop_last)
            _check_loader(where, loader, epochs, strategy, checkpoint, resume)
            X = Y = None
        elif data.is_memmap(x):  # read batch by batch: every batch's targets checked on the host, never copied whole
            X, Y = x, _host_targets(where, x, y)
            out_shape = self._ingest_shaped(data.in_memory(X[:2]), data.in_memory(Y[:2]), loss, "fit")[2]
        else:
            X, Y = self._ingest(x, _needs_y(where, y), loss, "fit")
        batch_size = 32 if batch_size is None else batch_size
        shuffle = True if shuffle is None else shuffle
        drop_last = False if drop_last is None else drop_last
        val = self._ingest_validation(where, validation_data, loss)
        if loader is None:
            _check_batches(self, X.shape[0], batch_size, strategy.size, drop_last)
        fit = _Fit(
            loss=loss, optimizer=optimizer, X=X, Y=Y, val=val, epochs=epochs, batch_size=batch_size, shuffle=shuffle,
            drop_last=drop_last, l2=l2, verbose=verbose if strategy.is_root else 0,  # only rank 0 prints
            rng=backends.host_rng(seed) if seed is not None else self._shuffle_rng, strategy=strategy, callbacks=callback_list,
            recorder=_records.Recorder(self, record_every) if record else None, checkpoint=checkpoint,
            checkpoint_every=checkpoint_every, resume=resume, loader=loader, out_shape=out_shape,
            steps_per_sync=1 if strategy.size > 1 or callback_list.needs_batch_logs
            else _AUTO_STEPS_PER_EXECUTION if steps_per_execution == "auto" else steps_per_execution,
        )  # fmt: skip
        if fit.recorder is not None:
            fit.parts.append(_Records(fit.recorder))
        if fit.verbose:
            fit.parts.append(_Progress(fit.verbose))
        if checkpoint is not None:
            fit.parts.append(_Checkpoints(self, checkpoint, checkpoint_every))
        return fit

    def _plan_resume(self, fit: _Fit) -> _resume.Restore | None:
        """The checkpoint ``fit.resume`` names, read and checked against this run (None: start from the beginning)."""
        if fit.resume is None or not _resume.checkpoint_file(fit.resume).exists():
            return None
        restore = _resume.plan(
            fit.resume, self, fit.optimizer, fit.callbacks.callbacks, fit.recorder, fit.run,
            steps_per_epoch=fit.steps_per_epoch, shuffle_rng=fit.rng,
        )  # fmt: skip
        _resume.check_loader_state(restore, fit.loader)
        return restore

    def _same_run(self, fit: _Fit, restore: _resume.Restore | None) -> tuple[dict[str, Any], dict[str, str]]:
        """What every rank of a distributed fit must share, as comparable values, and notes for the error about them."""

        def arrays(*pairs: tuple[str, Any]) -> str:
            return ", ".join(f"{name} {tuple(a.shape)} {dtype_name(a.dtype)}" for name, a in pairs)

        named = [*self.named_parameters(), *(self.named_buffers() if hasattr(self, "named_buffers") else ())]
        every = f"every {fit.checkpoint_every} steps and " if fit.checkpoint_every is not None else ""
        run = {
            "data": arrays(("x", fit.X), ("y", fit.Y)),
            "validation_data": None
            if fit.val is None
            else arrays(*zip(("x", "y"), fit.val._arrays)) + f" in batches of {fit.val.batch_size}"
            if isinstance(fit.val, data.DataLoader)
            else arrays(("x", fit.val[0]), ("y", fit.val[1])),
            "epochs": fit.epochs,
            "batch_size": fit.batch_size,
            "shuffle": fit.shuffle,
            "drop_last": fit.drop_last,
            "l2": fit.l2,
            "record": f"every {fit.recorder.every} steps" if fit.recorder is not None else "off",
            "checkpoint": f"{every}at each epoch's end" if fit.checkpoint is not None else "off",
            "layers": [repr(layer) for layer in self.layers],
            "parameters and buffers": [
                f"{name} {tuple(b.shape)} {dtype_name(b.dtype)}{'' if getattr(b, 'trainable', True) else ' frozen'}"
                for name, b in named
            ],
            "loss": f"{fit.loss!r} with reduction={fit.loss.reduction!r}",
            "optimizer": repr(fit.optimizer),
            "resume": "no resume"
            if fit.resume is None
            else "the beginning"
            if restore is None
            else f"{restore.position} (global step {restore.progress['global_step']})",
        }
        notes = {}
        if fit.resume is not None:
            path = _resume.checkpoint_file(fit.resume)
            notes["resume"] = f"read from {path}" if restore is not None else f"no checkpoint at {path} on its disk"
        return run, notes

    def _resume(self, fit: _Fit, restore: _resume.Restore | None) -> _Position:
        """The position to start from: the beginning, or where ``restore``'s checkpoint left the run (written now)."""
        if fit.recorder is not None:
            fit.history.records = fit.recorder.records
        if restore is None:
            return _Position()
        saved = _resume.apply(restore, self, fit.optimizer, fit.history, fit.recorder)
        fit.rng.bit_generator.state = saved["rng"]  # as it was at the start of the saved epoch
        if fit.loader is not None:
            fit.loader.load_state_dict(saved["loader"])  # its epoch and batch: the order and draws follow
        fit.resumed = saved  # the callbacks' states go back after on_train_begin, which resets them
        stopped = bool(saved.get("stopped", False))
        if fit.verbose:
            if stopped or saved["epoch"] >= fit.epochs:
                why = " (stopped early)" if stopped else ""
                print(
                    f"Resuming from {restore.path}: the run already ended after {saved['epoch']} epochs{why}; "
                    f"nothing is left to train for epochs={fit.epochs}"
                )
            else:
                print(f"Resuming from {restore.path}: {restore.position}")
        if not fit.strategy.is_root and fit.recorder is not None:
            fit.recorder.clear_partial()  # the checkpoint's partial counts are the sum over the ranks: rank 0 keeps them
        fields = ("epoch", "step", "global_step", "loss_sum", "seen", "correct", "rng")
        return _Position(**{k: saved[k] for k in fields}, stopped=stopped)

    def _run(self, fit: _Fit, position: _Position) -> None:
        """The epochs, between ``on_train_begin`` and ``on_train_end``."""
        strategy, callbacks = fit.strategy, fit.callbacks
        strategy.setup(self, fit.rng)
        callbacks.set_context(self, fit.optimizer, is_root=strategy.is_root)
        self.stop_training = False
        self._observer = fit.recorder.observe if fit.recorder is not None else None
        self._strategy = strategy
        try:
            callbacks.on_train_begin({})
            if fit.resumed is not None:  # after on_train_begin, which resets them
                _resume.restore_callbacks(callbacks.callbacks, fit.resumed)
            first_epoch = fit.epochs if position.stopped else position.epoch
            for epoch in range(first_epoch, fit.epochs):
                start_time = time.perf_counter()
                callbacks.on_epoch_begin(epoch, {})
                if epoch != position.epoch or position.step == 0:  # a fresh epoch (not the one resumed mid-way)
                    position = _Position(epoch=epoch, global_step=position.global_step)
                position.rng = fit.rng.bit_generator.state
                fit.emit("epoch_begin", position)
                self._train_epoch(fit, position)
                self._end_epoch(fit, position, start_time)
                if self.stop_training:
                    break
            callbacks.on_train_end({})
        finally:
            self._observer = None
            self._strategy = LocalStrategy()
            strategy.teardown(self)

    def _train_epoch(self, fit: _Fit, position: _Position) -> None:
        """The steps of one epoch from ``position.step`` on; the sums accumulate in ``position``."""
        batches = self._epoch_batches(fit, position)
        try:
            self._train_steps(fit, position, batches)
        finally:
            batches.close()  # a streamed epoch's background thread ends here, also on an error or Ctrl-C

    def _epoch_batches(self, fit: _Fit, position: _Position) -> Any:
        """This process's batches of the epoch from ``position.step`` on: ``(step, start, stop, xb, yb)``, on the device.

        ``[start, stop)`` is the global batch's place in the epoch; ``xb`` is None for a rank with
        no share of a short last batch. In-memory data is sliced on the device; a memory-mapped
        array is gathered on the host and copied batch by batch, a loader streams (both in a
        background thread, :func:`portnn.data.prefetch`).
        """
        strategy, backend = fit.strategy, self.backend
        xp, n, size = backend.xp, fit.n, fit.global_batch
        if fit.loader is not None:
            return _Streamed(self, fit, position)
        order = fit.rng.permutation(n) if fit.shuffle else None  # drawn on the host: the same order on every backend
        mapped = data.is_memmap(fit.X)
        if order is not None and not mapped:
            order = backend.adapter.from_numpy(order, backend.device)

        first = position.step
        bounds = [(step * size, min((step + 1) * size, n)) for step in range(first, fit.steps_per_epoch)]
        shards = [strategy.shard(start, stop) for start, stop in bounds]  # this process's slices, cut in this thread

        def steps() -> Any:
            if mapped:  # rows read from the file, checked and copied to the device alone (the one memory-mapped path)
                rows = (None if hi <= lo else slice(lo, hi) if order is None else order[lo:hi] for lo, hi in shards)
                read = self._read_rows((fit.X, fit.Y), rows, fit.loss, "fit", fit.out_shape)
                for step, (start, stop), batch in zip(range(first, fit.steps_per_epoch), bounds, read):
                    yield (step, start, stop, None, None) if batch is None else (step, start, stop, *batch)
                return
            for step, (start, stop), (lo, hi) in zip(range(first, fit.steps_per_epoch), bounds, shards):
                if hi <= lo:
                    yield step, start, stop, None, None
                elif order is None:
                    yield step, start, stop, fit.X[lo:hi, ...], fit.Y[lo:hi, ...]
                else:
                    idx = order[lo:hi]
                    yield step, start, stop, xp.take(fit.X, idx, axis=0), xp.take(fit.Y, idx, axis=0)

        return data.prefetch(steps(), 2 if mapped else 0, first=position.step, device_stream=backend if mapped else None)

    def _host_batch(
        self,
        x: Any,
        y: Any,
        loss: Loss,
        where: str,
        out_shape: tuple[int, ...] | None = None,
        home: tuple[Any, ...] | None = None,
    ) -> tuple[Any, Any]:
        """A batch read on the host, on the model's device as :meth:`_ingest` brings whole arrays.

        With ``out_shape`` (one example's output shape) the targets are checked as :meth:`_ingest`
        checks them (class indices in range...): a NumPy ``y`` on the host before the copy, no
        device read; a ``y`` already on the device there. ``home``: ``(self.backend, self.dtype, shapes accepted)``,
        asked once by a loop over batches.
        """
        host_y = data.is_host_array(y)
        x = data.in_memory(x) if data.is_host_array(x) else x
        y = data.in_memory(y) if host_y else y
        name = f"{type(self).__name__}.{where}"
        if out_shape is not None and host_y and y.dtype.kind in "iuf":  # on the host, before the copy
            loss.check_target((int(x.shape[0]), *out_shape), y, values=True)
        X = self._ingest_x(x, where, home)
        Y = self._ingest_y(y, X, loss, name, home)
        if out_shape is not None and not (host_y and y.dtype.kind in "iuf"):
            loss.check_target((int(X.shape[0]), *out_shape), Y, values=True)
        return X, Y

    def _read_rows(
        self, arrays: tuple[Any, ...], rows: Any, loss: Loss | None, where: str, out_shape: tuple[int, ...] | None
    ) -> Any:
        """The rows ``rows`` (each a slice, NumPy indices, or None for none) of host arrays ``(x, y)`` or ``(x,)``.

        The one path of memory-mapped data (fit, evaluate, predict, validation): each batch read
        from the file, its targets checked on the host (:meth:`_host_batch`), then copied to the
        device alone. A generator, run in :func:`portnn.data.prefetch`'s background thread.
        """
        home = (self.backend, self.dtype, set())  # once per pass: each walks the parameters; the shapes accepted
        for idx in rows:
            if idx is None:
                yield None
            elif len(arrays) == 1:
                yield (self._ingest_x(data._take(arrays[0], idx), where, home),)
            else:
                yield self._host_batch(data._take(arrays[0], idx), data._take(arrays[1], idx), loss, where, out_shape, home)

    def _batches_of(self, arrays: tuple[Any, ...], batch_size: int, loss: Loss | None = None, where: str = "evaluate") -> Any:
        """Inference batches of ``(x, y)`` or ``(x,)`` on the device, prefetched: device arrays sliced, host ones read."""
        n = int(arrays[0].shape[0])
        if not data.is_memmap(arrays[0]):
            return data.prefetch((tuple(a[lo:hi, ...] for a in arrays) for lo, hi in batches(n, batch_size)), 0)
        out_shape = None
        if len(arrays) > 1:  # one example's output shape, once: every batch's targets are checked against it
            out_shape = self._output_shape(self._ingest_x(data.in_memory(arrays[0][:2]), where))
        rows = (slice(lo, hi) for lo, hi in batches(n, batch_size))
        return data.prefetch(self._read_rows(arrays, rows, loss, where, out_shape), 2, device_stream=self.backend)

    def _train_steps(self, fit: _Fit, position: _Position, batches: Any) -> None:
        strategy, callbacks, loss, optimizer = fit.strategy, fit.callbacks, fit.loss, fit.optimizer
        # what every step asks, asked once: these do not change during an epoch
        streamed, classification, mean = fit.loader is not None, loss.classification, loss.reduction == "mean"
        local = isinstance(strategy, LocalStrategy) and type(strategy).shard is LocalStrategy.shard
        parts, l2, sync_every = fit.parts, fit.l2, fit.steps_per_sync
        completed = False
        try:
            for step, start, stop, xb, yb in batches:
                if not (streamed or local):  # a strategy keeps the global batch's size from its last shard() for the step
                    strategy.shard(start, stop)
                if callbacks.callbacks:
                    callbacks.on_train_batch_begin(step, {})
                if parts:
                    fit.emit("batch_begin", position)
                if xb is not None:
                    value, y_pred = self.train_step(xb, yb, loss, optimizer, validate=streamed, l2=l2)
                    correct = loss.correct(y_pred, yb) if classification else 0
                    if streamed and classification:
                        fit.per_example = max(loss.count(yb) // max(int(yb.shape[0]), 1), 1)
                    scale = xb.shape[0] if mean else 1  # the loss summed over the batch
                else:  # a rank with nothing left in a short last batch still joins the gradient sum
                    optimizer.zero_grad()
                    self._finish_step(optimizer, 0, l2, loss)
                    value, correct, scale = None, 0, 1
                stopped = self.stop_training
                if sync_every > 1:  # the loss stays on the device until the next read
                    fit.pending.append(_Pending(position.epoch, step, start, stop, value, scale))
                    logs = {"size": stop - start}
                    if len(fit.pending) >= sync_every or (fit.checkpoint_every is not None and fit.must_sync(position)):
                        logs = {"loss": self._read_losses(fit, position), **logs}
                else:
                    value = 0.0 if value is None else float(value) * scale
                    value, correct, stopped = strategy.reduce_step(value, correct, self.stop_training)  # the global batch
                    self.stop_training = stopped
                    if not math.isfinite(value):
                        if callbacks.on_nonfinite_loss(position.epoch, step, value):
                            continue  # a callback rolled back
                        raise _nonfinite(fit, position.epoch, step, start, stop, value)
                    position.loss_sum += value
                    logs = {"loss": value / (stop - start), "size": stop - start}
                if parts:
                    fit.emit("step_done", position)
                position.global_step += 1
                position.step = step + 1
                position.seen += stop - start
                if classification:
                    position.correct = position.correct + correct
                if callbacks.callbacks:
                    callbacks.on_train_batch_end(step, logs)
                if parts:
                    fit.emit("batch_end", position, logs)
                if stopped if strategy.size > 1 else self.stop_training:  # with ranks: the flag agreed at this step
                    break
            completed = True
        finally:
            if not completed:
                fit.pending.clear()  # an error or Ctrl-C: nothing to add up
        if fit.pending:
            self._read_losses(fit, position)  # the epoch's last losses (a non-finite one raises here)

    def _read_losses(self, fit: _Fit, position: _Position) -> float:
        """Read the losses kept on the device since the last read (one transfer); returns the last batch's mean loss.

        They are added to the epoch's sum in order (the same float sums as a read at every
        step); the first that is NaN or infinite raises the error naming its step, unless a
        callback rolls back.
        """
        pending, fit.pending = fit.pending, []
        values = [p.value for p in pending if p.value is not None]
        if len(values) > 1 and all(hasattr(v, "shape") for v in values):
            host = backends.to_numpy(self.backend.xp.stack(values)).tolist()
        else:
            host = [float(v) for v in values]
        last = 0.0
        for p in pending:
            value = 0.0 if p.value is None else host.pop(0) * p.scale
            if not math.isfinite(value):
                if fit.callbacks.on_nonfinite_loss(p.epoch, p.step, value):
                    return last
                raise _nonfinite(fit, p.epoch, p.step, p.start, p.stop, value)
            position.loss_sum += value
            last = value / (p.stop - p.start)
        return last

    def _end_epoch(self, fit: _Fit, position: _Position, start_time: float) -> None:
        """The epoch's logs (validation included) to the callbacks and the history."""
        strategy, loss = fit.strategy, fit.loss
        logs = {"loss": position.loss_sum / max(position.seen, 1)}
        if loss.classification:
            per_example = fit.per_example if fit.loader is not None else loss.count(fit.Y) // fit.n
            logs["accuracy"] = float(position.correct) / max(position.seen * per_example, 1)
        strategy.sync_buffers(self)  # BatchNorm running statistics: the mean over the ranks
        if isinstance(fit.val, data.DataLoader):  # every rank reads the whole of it
            logs.update({f"val_{k}": v for k, v in self._evaluate_loader(fit.val, loss, fit.callbacks, "fit").items()})
        elif fit.val is not None:
            batch_size = _validation_batch_size(fit.batch_size)
            evaluate = lambda X, Y: self._evaluate_arrays(X, Y, loss, batch_size, fit.callbacks, "fit validation_data")  # noqa: E731
            logs.update({f"val_{k}": v for k, v in strategy.evaluate(evaluate, *fit.val, loss).items()})
        logs["lr"] = fit.optimizer.lr
        fit.emit("epoch_logs", position, logs)
        fit.callbacks.on_epoch_end(position.epoch, logs)
        self.stop_training = strategy.agree(self.stop_training)  # a stop asked for on one rank stops every rank
        self.backend.adapter.synchronize(self.backend.device)
        logs["epoch_time"] = time.perf_counter() - start_time
        fit.history.append(position.epoch, logs)
        fit.emit("epoch_end", position, logs)

    # -- inference --------------------------------------------------------------------
    @_threads.around_inference
    def evaluate(
        self,
        x: Any,
        y: Any = None,
        *,
        loss: Loss | None = None,
        batch_size: int = 256,
        callbacks: Iterable[Callback] | None = None,
        return_dict: bool = False,
    ) -> Evaluation | dict[str, float]:
        """Loss (and accuracy, for classification losses) over ``(x, y)`` in inference mode.

        Uses ``loss`` (a loss or one of Keras's names), else the one from :meth:`compile`, the
        last :meth:`fit` or the file :func:`portnn.load` read. Returns an
        :class:`Evaluation`: ``loss, accuracy = model.evaluate(x, y)`` as in Keras, or
        ``model.evaluate(x, y)["accuracy"]``; ``return_dict=True`` gives a plain dict (Keras's
        option). ``callbacks`` get Keras's ``on_test_*`` hooks. A last batch of one example
        joins the one before it (BatchNorm without running statistics needs two). ``x`` may be
        a memory-mapped array (read batch by batch) or a :class:`portnn.data.DataLoader` (no
        ``y``: it gives the targets; one pass from its epoch's start, the loader not moved).
        """
        where = f"{type(self).__name__}.evaluate"
        loss = self._check_loss(loss if loss is not None else self._loss, "evaluate")
        batch_size = check_int(where, "batch_size", batch_size)
        return_dict = check_flag(where, "return_dict", return_dict)
        callback_list = CallbackList(callbacks)
        loader = _as_loader(x, y, where)
        if loader is not None:
            callback_list.set_context(self, self._optimizer)
            logs = self._evaluate_loader(loader, loss, callback_list, "evaluate")
        elif data.is_memmap(x):  # read batch by batch (:meth:`_batches_of`), every batch's targets checked
            Y = _host_targets(where, x, y)
            self._ingest(data.in_memory(x[:2]), data.in_memory(Y[:2]), loss, "evaluate")
            callback_list.set_context(self, self._optimizer)
            logs = self._evaluate_arrays(x, Y, loss, batch_size, callback_list)
        else:
            X, Y = self._ingest(x, _needs_y(where, y), loss, "evaluate")
            callback_list.set_context(self, self._optimizer)
            logs = self._evaluate_arrays(X, Y, loss, batch_size, callback_list)
        return dict(logs) if return_dict else Evaluation(logs)

    def _evaluate_arrays(
        self, X: Any, Y: Any, loss: Loss, batch_size: int, callbacks: CallbackList, where: str = "evaluate"
    ) -> dict[str, float]:
        """Loss (and accuracy) over arrays on the device, or memory-mapped ones (read batch by batch)."""
        return self._evaluate_stream(self._batches_of((X, Y), batch_size, loss, where), loss, callbacks)

    def _evaluate_loader(self, loader: Any, loss: Loss, callbacks: CallbackList, where: str) -> dict[str, float]:
        """One pass over ``loader`` from its epoch's start (the loader not moved), targets checked batch by batch."""

        shape: list[tuple[int, ...]] = []  # one example's output shape: one forward pass, on the first batch
        home = (self.backend, self.dtype, set())  # once per pass: each walks the parameters; the shapes accepted

        def convert(host: tuple[Any, ...]) -> tuple[Any, Any]:
            if len(host) < 2:
                raise data.BatchError(f"{type(self).__name__}.{where}: the loader's batches hold x only; evaluating needs (x, y)")
            if not shape:
                shape.append(self._output_shape(self._ingest_x(host[0][:2], where)))
            return self._host_batch(host[0], host[1], loss, where, shape[0], home)

        return self._evaluate_stream(loader.batches(convert, advance=False), loss, callbacks)

    def _output_shape(self, xb: Any) -> tuple[int, ...]:
        """The shape of one example's output (from a forward pass over two examples at most)."""
        return tuple(self.forward(xb[: min(2, xb.shape[0]), ...], input_grad=False)[0].shape[1:])

    def _evaluate_stream(self, pairs: Any, loss: Loss, callbacks: CallbackList) -> dict[str, float]:
        """Loss (and accuracy) over device batches ``(xb, yb)``; ``pairs`` is closed at the end, also on an error."""
        callbacks.on_test_begin({})
        loss_sum = correct_sum = 0
        n = counted = 0
        try:
            for batch, (xb, yb) in enumerate(pairs):
                callbacks.on_test_batch_begin(batch, {})
                y_pred = self.forward(xb, input_grad=False)[0]
                value, _ = loss.forward(y_pred, yb, validate=False)
                loss_sum = loss_sum + (value * xb.shape[0] if loss.reduction == "mean" else value)
                n += int(xb.shape[0])
                if loss.classification:
                    correct_sum = correct_sum + loss.correct(y_pred, yb)
                    counted += loss.count(yb)
                callbacks.on_test_batch_end(batch, {"size": int(xb.shape[0])})
        finally:
            pairs.close()
        logs = {"loss": float(loss_sum) / max(n, 1)}
        if loss.classification:
            logs["accuracy"] = float(correct_sum) / max(counted, 1)
        callbacks.on_test_end(dict(logs))
        return logs

    @_threads.around_inference
    def predict(
        self, x: Any, *, batch_size: int = 256, to_numpy: bool = False, callbacks: Iterable[Callback] | None = None
    ) -> Any:
        """Model outputs for ``x`` in inference mode, in batches.

        An array on the model's backend and device (PyTorch's habit: a CuPy array on a GPU, a
        torch tensor on the torch backend), so ``xp.argmax(model.predict(x), axis=1)`` stays on
        the device. ``to_numpy=True`` returns a NumPy array on the host instead (Keras's habit),
        in one call. ``callbacks`` get Keras's ``on_predict_*`` hooks. A last batch of one
        example joins the one before it (BatchNorm without running statistics needs two).
        ``x`` may be a memory-mapped array (read batch by batch) or a
        :class:`portnn.data.DataLoader` (its ``x``; one pass from its epoch's start, in its order).
        """
        where = f"{type(self).__name__}.predict"
        batch_size = check_int(where, "batch_size", batch_size)
        to_numpy = check_flag(where, "to_numpy", to_numpy)
        callback_list = CallbackList(callbacks)
        if isinstance(x, data.DataLoader) or hasattr(x, "__next__"):
            loader = _as_loader(x, None, where, needs_y=False)
            stream = loader.batches(lambda host: (self._ingest_x(host[0], "predict"),), advance=False)
        else:  # arrays on the device sliced, memory-mapped ones read batch by batch (:meth:`_batches_of`)
            X = x if data.is_memmap(x) else self._ingest_x(x, "predict")
            if data.is_memmap(x):
                self._ingest_x(data.in_memory(x[:2]), "predict")
            stream = self._batches_of((X,), batch_size, where="predict")
        callback_list.set_context(self, self._optimizer)
        callback_list.on_predict_begin({})
        outs = []
        try:
            for batch, (xb, *_) in enumerate(stream):
                callback_list.on_predict_batch_begin(batch, {})
                outs.append(self.forward(xb, input_grad=False)[0])
                callback_list.on_predict_batch_end(batch, {"outputs": outs[-1]})
        finally:
            stream.close()
        callback_list.on_predict_end({})
        out = self.backend.xp.concat(outs, axis=0) if len(outs) != 1 else outs[0]
        return backends.to_numpy(out) if to_numpy else out

    # -- bringing data to the model ----------------------------------------------------
    def _ingest_x(self, x: Any, where: str, home: tuple[Any, ...] | None = None) -> Any:
        """``x`` on the model's device, checked; ``home``: ``(backend, dtype, shapes accepted)`` of a pass over batches."""
        X = model_input(self, x, f"{type(self).__name__}.{where}", None if home is None else home[:2])
        shape = tuple(X.shape)
        if home is not None and len(home) > 2:
            if shape not in home[2]:  # one check per batch shape in a pass: the model does not change meanwhile
                self._checked_x(X, where)
                home[2].add(shape)
            return X
        return self._checked_x(X, where)

    def _checked_x(self, X: Any, where: str) -> Any:
        self.check_input_shape(tuple(X.shape), where)
        return X

    def _ingest_y(self, y: Any, X: Any, loss: Loss, name: str, home: tuple[Any, ...] | None = None) -> Any:
        """``y`` on the model's device for inputs ``X``: class indices as int64, other targets in the model's dtype."""
        backend, dtype = home[:2] if home is not None else (self.backend, self.dtype)
        xp = backend.xp
        Y = detached(backends.as_backend_array(y, backend, what="y", where=f"{name}: "))
        if Y.ndim == 0 or Y.shape[0] != X.shape[0]:
            raise ValueError(f"{name}: x has {X.shape[0]} examples but y has shape {tuple(Y.shape)}; they must match")
        if not (xp.isdtype(Y.dtype, "real floating") or xp.isdtype(Y.dtype, "integral") or Y.dtype == xp.bool):
            raise TypeError(f"{name}: y has dtype {dtype_name(Y.dtype)}; pass integer labels or real targets")
        if isinstance(loss, CrossEntropy) and not xp.isdtype(Y.dtype, "real floating"):
            Y = xp.astype(Y, xp.int64)  # class indices
        else:
            Y = xp.astype(Y, getattr(xp, dtype))
        bad = count_nonfinite(xp, Y) if xp.isdtype(Y.dtype, "real floating") else 0
        if bad:
            raise ValueError(f"{name}: y holds {bad} NaN or infinite values; drop those examples or fix the targets")
        return Y

    def _ingest_validation(self, where: str, validation_data: Any, loss: Loss) -> Any:
        """``validation_data`` checked: a loader (or a memory-mapped pair, streamed through one), else a pair on the device."""
        if validation_data is None:
            return None
        if isinstance(validation_data, data.DataLoader):
            return validation_data
        xv, yv = _pair(where, validation_data)
        if data.is_memmap(xv):  # kept on the host: read batch by batch as evaluate reads it (:meth:`_batches_of`)
            yv = _host_targets(f"{where} validation_data", xv, yv)
            self._ingest(data.in_memory(xv[:2]), data.in_memory(yv[:2]), loss, "fit validation_data")
            return xv, yv
        return self._ingest(xv, yv, loss, "fit validation_data")

    def _ingest(self, x: Any, y: Any, loss: Loss, where: str) -> tuple[Any, Any]:
        return self._ingest_shaped(x, y, loss, where)[:2]

    def _ingest_shaped(self, x: Any, y: Any, loss: Loss, where: str) -> tuple[Any, Any, tuple[int, ...]]:
        """``x`` and ``y`` on the device, checked, and one example's output shape (from a forward pass over two)."""
        name = f"{type(self).__name__}.{where}"
        X = self._ingest_x(x, where)
        Y = self._ingest_y(y, X, loss, name)
        # two examples where there are two: BatchNorm without running statistics needs them even in evaluation
        try:
            probe = self.forward(X[: min(2, X.shape[0]), ...], input_grad=False)[0]
        except ValueError as exc:
            if X.shape[0] != 1:
                raise
            raise ValueError(
                f"{name}: x holds a single example, on which the model cannot run even in inference ({exc}); "
                "pass 2 or more examples"
            ) from None
        pred_shape = (X.shape[0], *tuple(probe.shape[1:]))
        loss.check_target(pred_shape, Y, values=True)
        return X, Y, pred_shape[1:]


#: Keras's names for losses and optimizers, as compile() takes them: each one of portnn's classes with its defaults.
_LOSS_NAMES: dict[str, Any] = {
    "sparse_categorical_crossentropy": CrossEntropy,
    "categorical_crossentropy": CrossEntropy,
    "binary_crossentropy": BinaryCrossEntropy,
    "mse": MSE,
    "mean_squared_error": MSE,
}
_OPTIMIZER_NAMES: dict[str, Any] = {"sgd": SGD, "adam": Adam, "adamw": AdamW, "rmsprop": RMSprop, "adagrad": AdaGrad}


def _resolve_name(name: str, table: dict[str, Any], where: str, what: str) -> Any:
    """A new object of the class Keras's ``name`` stands for (case-insensitive); a ValueError listing the names otherwise."""
    cls = table.get(name.lower())
    if cls is None:
        raise ValueError(f"{where}: unknown {what} {name!r}; Keras's names portnn takes are {', '.join(map(repr, table))}")
    return cls()


def _resolve_optimizer(optimizer: Any, where: str) -> Optimizer:
    """``optimizer`` as an Optimizer instance (a Keras name becomes one); a TypeError naming ``where`` otherwise."""
    if isinstance(optimizer, str):
        optimizer = _resolve_name(optimizer, _OPTIMIZER_NAMES, where, "optimizer")
    if not isinstance(optimizer, Optimizer):
        is_class = isinstance(optimizer, type) and issubclass(optimizer, Optimizer)
        hint = f" (a class? build it: {optimizer.__name__}())" if is_class else ""
        raise TypeError(
            f"{where} needs an optimizer such as pn.optim.SGD(lr=0.1) or 'adam' (got {optimizer!r:.100}){hint}; "
            "pass optimizer= or call compile()"
        )
    return optimizer


def _strategy_for(distributed: Any) -> Any:
    """``fit``'s ``distributed`` argument as a strategy; no collective yet."""
    if distributed is None or distributed is False:
        return LocalStrategy()
    if isinstance(distributed, LocalStrategy):
        return distributed
    from . import distributed as _distributed

    if isinstance(distributed, _distributed.DataParallel):
        return distributed
    return _distributed.DataParallel(_distributed.resolve(distributed))


def _check_batches(model: Any, n: int, batch_size: int, ranks: int, drop_last: bool) -> None:
    """Refuse a fit that takes no step, or whose last batch gives a layer fewer examples than its ``min_batch_size``."""
    where = f"{type(model).__name__}.fit"
    step = batch_size * ranks  # a global batch
    over = f" over {ranks} ranks ({step} examples per step)" if ranks > 1 else ""
    if drop_last and n < step:
        raise ValueError(
            f"{where}: drop_last=True with {n} examples and batch_size={batch_size}{over} leaves no batch; "
            "use a smaller batch_size or drop_last=False"
        )
    last = n % step if n % step and not drop_last else step  # the size of the last global batch
    shards = [last * (r + 1) // ranks - last * r // ranks for r in range(ranks)]  # as the strategy's shard splits it
    needy = max(model.layers, key=lambda layer: layer.min_batch_size, default=None)
    smallest = min(size for size in shards if size)  # an empty share is fine: that rank joins with zeros
    if n > 1 and needy is not None and smallest < needy.min_batch_size:
        share = f"; split over {ranks} ranks, rank {shards.index(smallest)} gets {smallest}" if ranks > 1 else ""
        fix = (
            "pass drop_last=True, which skips a short last batch, or another batch_size"
            if last < step
            else "use a larger batch_size"
        )
        raise ValueError(
            f"{where}: {n} examples in batches of {batch_size}{over} leave a last batch of {last}{share}, "
            f"on which {needy!r} cannot train (it needs batches of {needy.min_batch_size} or more); {fix}"
        )


def _pair(where: str, data: Any) -> tuple[Any, Any]:
    if not (isinstance(data, (tuple, list)) and len(data) == 2):
        got = f"a {type(data).__name__} of length {len(data)}" if isinstance(data, (tuple, list)) else f"a {type(data).__name__}"
        raise TypeError(f"{where}: validation_data must be a pair (x_val, y_val); got {got}")
    return data[0], data[1]


def _validation_batch_size(batch_size: int) -> int:
    """The batches ``validation_data`` arrays (in memory or memory-mapped) are evaluated in: ``max(batch_size, 256)``."""
    return max(batch_size, 256)


def _check_loader_options(where: str, batch_size: Any, shuffle: Any, drop_last: Any) -> None:
    """Refuse ``batch_size``/``shuffle``/``drop_last`` given with a loader: they are the loader's own, not fit's."""
    options = (("batch_size", batch_size), ("shuffle", shuffle), ("drop_last", drop_last))
    given = [f"{k}={v!r}" for k, v in options if v is not None]
    if given:
        raise ValueError(
            f"{where}: {', '.join(given)} cannot apply to a loader, whose batches are its own; set them on the DataLoader "
            "(DataLoader(dataset, batch_size, shuffle=..., drop_last=...)) and call fit(loader) without them"
        )


def _check_l2(l2: Any) -> float:
    return check_number("Sequential.fit/train_step", "l2", l2, lambda v: v >= 0, "a finite number >= 0")


def _as_loader(x: Any, y: Any, where: str, *, needs_y: bool = True) -> Any:
    """``x`` as a :class:`portnn.data.DataLoader` when it streams (a loader, a generator); None for arrays."""
    if isinstance(x, data.DataLoader):
        loader = x
    elif hasattr(x, "__next__"):  # a generator or another one-pass iterator of (x, y) batches
        loader = data.DataLoader(x, None)
    else:
        return None
    if y is not None:
        raise ValueError(
            f"{where}: x is a {type(x).__name__}, which gives the targets with the inputs; pass it alone (no y), as fit(loader)"
        )
    return loader


def _check_loader(where: str, loader: Any, epochs: int, strategy: Any, checkpoint: Any, resume: Any) -> None:
    """Refuse what a loader cannot do here, before anything is changed."""
    if strategy.size > 1:
        raise ValueError(
            f"{where}: distributed training with a DataLoader is not supported: every rank would read the same batches. "
            "Pass the arrays themselves (memory-mapped ones stream batch by batch: np.load(path, mmap_mode='r')); "
            "each rank then reads its own share of every global batch"
        )
    if not loader.resumable:
        if checkpoint is not None or resume is not None:
            raise ValueError(
                f"{where}: checkpoint=/resume= need a source that can start again mid-epoch; a generator cannot "
                "(it has no state). Pass arrays, memory-mapped arrays, a DataLoader over a Dataset, or an object whose "
                "__iter__ starts a new pass each time"
            )
        if epochs > 1:
            raise ValueError(
                f"{where}: a generator gives one pass over its batches, so epochs={epochs} cannot be trained; pass "
                "epochs=1, or an object whose __iter__ starts a new pass each time (or arrays)"
            )


def _needs_y(where: str, y: Any) -> Any:
    if y is None:
        raise TypeError(
            f"{where}: y is missing; pass the targets (fit(x, y)), or a pn.data.DataLoader that gives (x, y) batches "
            "(fit(loader))"
        )
    return y


def _host_targets(where: str, x: Any, y: Any) -> Any:
    """The targets of a memory-mapped ``x``: an array on the host (NumPy, memory-mapped or not), as long as ``x``."""
    _needs_y(where, y)
    if not data.is_host_array(y):
        raise TypeError(
            f"{where}: x is memory-mapped, so y is read batch by batch on the host with it; pass y as a NumPy array "
            f"(or memory-mapped), not a {type(y).__name__}"
        )
    if y.ndim == 0 or y.shape[0] != x.shape[0]:
        raise ValueError(f"{where}: x has {x.shape[0]} examples but y has shape {tuple(y.shape)}; they must match")
    return y

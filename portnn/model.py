"""The Sequential model: a stack of layers, its training loop and its state."""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from array_api_compat import array_namespace

from . import _records, _resume, backends
from ._array import check_int, dtype_name
from ._progress import progress_bar, resolve_verbose
from .callbacks import Callback, CallbackList
from .layers.activations import Sigmoid, Softmax
from .layers.base import Buffer, Layer, Parameter, Shape, ShapeError
from .losses import BinaryCrossEntropy, CrossEntropy, Loss
from .optim import Optimizer
from .serialization import register_model

__all__ = ["History", "Sequential"]


class History:
    """Per-epoch logs of :meth:`Sequential.fit`, as Keras keeps them.

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


@register_model
class Sequential:
    """Layers applied one after the other.

    Parameters
    ----------
    layers
        The layers, in order. Each one's input shape is checked against the previous one's
        output; a mismatch raises a :class:`~portnn.layers.ShapeError` naming both layers.
    seed
        Seed of the initial weights of every layer (drawn on the host, so the same on every
        backend) and of the shuffling in :meth:`fit`. None leaves each layer's own weights.
    input_shape
        Shape of one example, e.g. ``(28, 28)``, for shape checks and :meth:`summary` of
        models that do not start with a Linear layer.

    Examples
    --------
    >>> import numpy as np
    >>> import portnn as pn
    >>> model = pn.Sequential([pn.layers.Linear(4, 8), pn.layers.ReLU(), pn.layers.Linear(8, 3)], seed=0)
    >>> x, y = np.random.default_rng(0).normal(size=(32, 4)), np.arange(32) % 3
    >>> history = model.fit(x, y, loss=pn.losses.CrossEntropy(), optimizer=pn.optim.SGD(lr=0.1), epochs=2, verbose=0)
    >>> sorted(model.evaluate(x, y))
    ['accuracy', 'loss']

    The seed style, one layer at a time with shape checks:

    >>> model = pn.Sequential().build([pn.layers.Linear(4, 8), pn.layers.ReLU(), pn.layers.Linear(8, 3)])
    """

    def __init__(
        self, layers: Iterable[Layer] | None = None, *, seed: int | None = None, input_shape: tuple[int, ...] | None = None
    ) -> None:
        self.layers: list[Layer] = []
        self.input_shape: Shape | None = None if input_shape is None else (None, *input_shape)
        self._shapes: list[Shape | None] = []
        self.seed = seed
        init_rng, self._rng = backends.host_rng(seed).spawn(2)
        self._loss: Loss | None = None
        self._optimizer: Optimizer | None = None
        #: Set to True (by a callback) to end :meth:`fit` after the current batch.
        self.stop_training = False
        self._observer: Callable[[int, Layer, Any], None] | None = None  # sees each layer's training output (records)
        self._grad_hook: Callable[[int], None] | None = None  # combines gradients across ranks (distributed fit)
        self._distributed: Any = None  # the communicator of a distributed fit, while it runs (ModelCheckpoint asks)
        if layers is not None:
            self.build(layers)
        if seed is not None:
            for layer in self.layers:
                layer.reset_parameters(init_rng)

    # -- building ---------------------------------------------------------------------
    def build(self, layers: Iterable[Layer]) -> Sequential:
        """Append ``layers`` one by one, checking that each fits the output of the one before. Returns self."""
        if isinstance(layers, Layer) or not hasattr(layers, "__iter__"):
            raise TypeError(
                f"Sequential takes a list of layers; got a single {type(layers).__name__}: pass Sequential([layer, ...])"
            )
        for layer in layers:
            self.add(layer)
        return self

    def add(self, layer: Layer) -> Sequential:
        """Append one layer after checking that its input fits the current output shape. Returns self."""
        if not isinstance(layer, Layer):
            raise TypeError(
                f"Sequential takes portnn layers; got {type(layer).__name__} ({layer!r}) at position {len(self.layers)}: "
                "pass layer objects such as pn.layers.ReLU(), or subclass pn.layers.Layer"
                + (" (a layer class? call it: ReLU())" if isinstance(layer, type) and issubclass(layer, Layer) else "")
            )
        shape = self._shapes[-1] if self._shapes else self.input_shape
        if shape is None and hasattr(layer, "in_features"):
            shape = (None, layer.in_features)
        if shape is not None:
            try:
                shape = layer.output_shape(shape)
            except ShapeError as exc:
                where = f"layer {len(self.layers)} ({layer!r})"
                after = f"layer {len(self.layers) - 1} ({self.layers[-1]!r})" if self.layers else "the model's input"
                raise ShapeError(f"{where} does not fit after {after}, which outputs {_fmt(shape)}: {exc}") from None
        if layer.name is None:
            layer.name = self._unique_name(type(layer).__name__.lower())
        elif any(other.name == layer.name for other in self.layers):
            raise ValueError(f"Sequential.add: a layer named {layer.name!r} is already in the model; give {layer!r} another name")
        self.layers.append(layer)
        self._shapes.append(shape)
        return self

    def _unique_name(self, base: str) -> str:
        taken = {layer.name for layer in self.layers}
        name, k = base, 0
        while name in taken:
            k += 1
            name = f"{base}_{k}"
        return name

    def get_layer(self, key: str | int) -> Layer:
        """The layer named ``key`` (a str) or at position ``key`` (an int, negative counts from the end)."""
        if isinstance(key, int) and not isinstance(key, bool):
            if not -len(self.layers) <= key < len(self.layers):
                raise IndexError(f"Sequential.get_layer: index {key} is out of range for a model of {len(self.layers)} layers")
            return self.layers[key]
        for layer in self.layers:
            if layer.name == key:
                return layer
        names = [layer.name for layer in self.layers]
        raise KeyError(f"Sequential.get_layer: no layer named {key!r}; the model has {names}")

    @property
    def output_shape(self) -> Shape | None:
        return self._shapes[-1] if self._shapes else self.input_shape

    def pop(self) -> Layer:
        """Remove and return the last layer (Keras's ``pop``): replace a head with ``pop()`` then ``add(new_head)``."""
        if not self.layers:
            raise IndexError("Sequential.pop: the model has no layers")
        self._shapes.pop()
        return self.layers.pop()

    # -- transfer learning -------------------------------------------------------------
    def load_layers(self, source: Any, layers: Any = None) -> Any:
        """Copy chosen layers' weights from a saved model, a checkpoint or a model: :func:`portnn.transfer.load_layers`."""
        from .transfer import load_layers

        return load_layers(self, source, layers)

    def freeze(self, *keys: str | int) -> Sequential:
        """Freeze the layers named (or at the indices) given, all layers without arguments. Returns self.

        Frozen layers keep their weights in :meth:`fit` (a frozen BatchNorm also its running
        statistics: it normalises with them); a frozen start of the model is not back-propagated
        at all, and a frozen Linear, Conv2d or BatchNorm after a trainable layer computes only
        its input gradient.
        ``layer.trainable = True`` (or :meth:`unfreeze`) undoes it.
        """
        for layer in [self.get_layer(k) for k in keys] if keys else self.layers:
            layer.trainable = False
        return self

    def unfreeze(self, *keys: str | int) -> Sequential:
        """Make the layers given (all without arguments) trainable again. Returns self."""
        for layer in [self.get_layer(k) for k in keys] if keys else self.layers:
            layer.trainable = True
        return self

    # -- the pass ---------------------------------------------------------------------
    def forward(self, x: Any, *, training: bool = False, input_grad: bool = False) -> tuple[Any, Callable[[Any], Any]]:
        """Run every layer; return the output and ``backward(dy)``, which fills each parameter's ``grad``.

        ``backward`` returns the gradient of the model's input when ``input_grad=True`` (for
        saliency maps, say); by default it returns None: the first layer skips that gradient, as
        PyTorch does for inputs that do not require one, and frozen layers at the start of the
        model (``layer.trainable = False``, transfer learning) are not back-propagated at all.

        This is the low-level path for a loop of your own::

            optimizer.zero_grad()
            y_pred, backward = model.forward(xb, training=True)
            loss, loss_backward = loss_fn.forward(y_pred, yb)
            backward(loss_backward())
            optimizer.step()

        :meth:`train_step` does exactly this.
        """
        # Layers before the first trainable one (a frozen feature extractor) need no backward
        # at all, and that one needs no input gradient: backward stops there.
        first = 0 if input_grad else next((i for i, layer in enumerate(self.layers) if layer.trainable), len(self.layers))
        observer = self._observer if training else None
        backwards = []
        for i, layer in enumerate(self.layers):
            x, backward = layer.forward(x, training=training, input_grad=input_grad or i > first)
            backwards.append(backward)
            if observer is not None:
                observer(i, layer, x)

        def backward(dy: Any) -> Any:
            for back in reversed(backwards[first:]):
                dy = back(dy)
            return dy if input_grad else None

        return x, backward

    def __call__(self, x: Any) -> Any:
        return self.forward(x)[0]

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
        _check_l2(l2)
        if x.shape[0] == 0:
            raise ValueError(
                f"Sequential.train_step: got an empty batch (x of shape {tuple(x.shape)}); pass at least one example"
            )
        optimizer.zero_grad()
        y_pred, backward = self.forward(x, training=True)
        value, loss_backward = loss.forward(y_pred, y, validate=validate)
        backward(loss_backward())
        return self._finish_step(optimizer, x.shape[0], l2, value), y_pred

    def _finish_step(self, optimizer: Optimizer, batch: int, l2: float, value: Any = None) -> Any:
        """After the backward pass: the gradients of the global batch (distributed), the L2 term, the update.

        Returns ``value`` (the batch loss) with the L2 penalty added; a rank with an empty share
        of the batch calls it with ``batch=0`` and no value.
        """
        if self._grad_hook is not None:
            self._grad_hook(batch)  # the gradients of the global batch, before the L2 term each rank adds
        if l2:
            for p in self.parameters():
                if p.regularize and p.trainable:
                    if value is not None:
                        value = value + (0.5 * l2) * array_namespace(p.data).sum(p.data * p.data)
                    p.accumulate(l2 * p.data)
        optimizer.step()
        return value

    # -- parameters and state ---------------------------------------------------------
    def named_parameters(self) -> Iterator[tuple[str, Parameter]]:
        for i, layer in enumerate(self.layers):
            yield from layer.named_parameters(f"{i}.")

    def parameters(self) -> list[Parameter]:
        return [p for _, p in self.named_parameters()]

    def named_buffers(self) -> Iterator[tuple[str, Buffer]]:
        for i, layer in enumerate(self.layers):
            yield from layer.named_buffers(f"{i}.")

    def state_dict(self) -> dict[str, Any]:
        """Parameter and buffer arrays by name (``"0.weight"``, ``"2.running_mean"``…), on their device: PyTorch's naming."""
        return {name: b.data for name, b in (*self.named_parameters(), *self.named_buffers())}

    def load_state_dict(self, state: dict[str, Any], *, strict: bool = True) -> None:
        """Copy arrays (of any backend) into the parameters and buffers, on their backend, device and dtype.

        Everything is checked before anything is written: missing or unexpected names (with
        ``strict``) or a wrong shape raise and leave the model as it was.
        """
        if not isinstance(state, dict):
            raise TypeError(f"load_state_dict takes a dict of name -> array (model.state_dict()); got {type(state).__name__}")
        targets: dict[str, Buffer] = dict((*self.named_parameters(), *self.named_buffers()))
        missing = [k for k in targets if k not in state]
        unexpected = [k for k in state if k not in targets]
        if strict and (missing or unexpected):
            raise KeyError(
                f"load_state_dict: missing {missing or 'nothing'}, unexpected {unexpected or 'nothing'}; "
                "is the state from another architecture? strict=False loads the names that match"
            )
        staged = {}
        for name, value in state.items():
            if name not in targets:
                continue
            host = backends.to_numpy(value)
            b = targets[name]
            if tuple(host.shape) != b.shape:
                raise ValueError(f"load_state_dict: {name} has shape {tuple(host.shape)} in the state but {b.shape} in the model")
            adapter = backends.adapter_for(b.data)
            staged[name] = adapter.from_numpy(host.astype(dtype_name(b.dtype), copy=True), b.device)
        for name, data in staged.items():
            targets[name].data = data
            if isinstance(targets[name], Parameter):
                targets[name].grad = None

    def save_weights(self, path: str | os.PathLike[str]) -> None:
        """Write :meth:`state_dict` to ``path``: a portnn ``.safetensors`` file, atomically, from the host.

        See :mod:`portnn.serialization` for the format; :meth:`save` adds the architecture.
        """
        from .serialization import save_weights

        save_weights(self, path)

    def load_weights(self, path: str | os.PathLike[str]) -> None:
        """Read weights written by :meth:`save_weights` or :meth:`save` into this model, bit for bit.

        The file is verified (checksum, format) and every name and shape is checked before
        anything is written: a :class:`~portnn.serialization.CheckpointError` names the file
        and lists the misfits, and leaves the model as it was. Values take this model's dtype.
        """
        from .serialization import load_weights

        load_weights(self, path)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the architecture (:meth:`get_config`) and the state dict to one ``.safetensors`` file.

        :func:`portnn.load` rebuilds the model from it on any backend. The write is atomic.

        Examples
        --------
        >>> import os, tempfile
        >>> import portnn as pn
        >>> model = pn.Sequential([pn.layers.Linear(4, 3)], seed=0)
        >>> path = os.path.join(tempfile.mkdtemp(), "model.safetensors")
        >>> model.save(path)
        >>> pn.load(path).get_config() == model.get_config()
        True
        """
        from .serialization import save_model

        save_model(self, path)

    def get_config(self) -> dict[str, Any]:
        """The architecture as JSON-able values: each layer's class name and config, the seed and input shape.

        Examples
        --------
        >>> import portnn as pn
        >>> config = pn.Sequential([pn.layers.Linear(4, 3), pn.layers.ReLU()]).get_config()
        >>> [(layer["class_name"], layer["config"]["name"]) for layer in config["layers"]]
        [('Linear', 'linear'), ('ReLU', 'relu')]
        """
        return {
            "layers": [{"class_name": type(layer).__name__, "config": layer.get_config()} for layer in self.layers],
            "seed": self.seed,
            "input_shape": None if self.input_shape is None else list(self.input_shape[1:]),
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Sequential:
        """Build a model from :meth:`get_config`'s dict, on the global backend, with fresh weights.

        Layers are portnn's own classes, looked up by name (never imported from the config).
        ``seed`` seeds the shuffling of :meth:`fit` as it did; the layers keep the seeds and
        arguments of their configs, so the initial weights are not drawn again from it.
        """
        from .serialization import layer_from_config

        if not isinstance(config, dict) or not isinstance(config.get("layers"), list):
            raise ValueError(f"Sequential.from_config: expected a dict with a 'layers' list; got {config!r:.200}")
        layers = []
        for i, entry in enumerate(config["layers"]):
            if not isinstance(entry, dict) or not isinstance(entry.get("class_name"), str):
                raise ValueError(
                    f"Sequential.from_config: layer {i} must be a dict with 'class_name' and 'config'; got {entry!r:.200}"
                )
            layers.append(layer_from_config(entry["class_name"], entry.get("config", {})))
        input_shape = config.get("input_shape")
        model = cls(layers, input_shape=None if input_shape is None else tuple(input_shape))
        seed = config.get("seed")
        if seed is not None:
            model.seed = seed
            _, model._rng = backends.host_rng(seed).spawn(2)  # as __init__ does, without re-drawing the weights
        return model

    @property
    def backend(self) -> backends.Backend:
        """Where the parameters live (the global backend for a model without parameters)."""
        for p in self.parameters():
            return backends.Backend(backends.adapter_for(p.data), p.device)
        return backends.get_backend()

    @property
    def dtype(self) -> str:
        for p in self.parameters():
            return dtype_name(p.dtype)
        return "float32"

    def to(self, backend: str, device: Any = None) -> Sequential:
        """Move every parameter to ``backend``/``device`` (through the host). Returns self.

        Build optimizers after moving, or pass them to :meth:`fit`, which rebinds them.
        """
        for layer in self.layers:
            layer.to(backend, device)
        if self._optimizer is not None:
            self._optimizer.bind(self.parameters())
        return self

    def summary(self, print_fn: Callable[[str], Any] | None = print) -> str | None:
        """Layers, output shapes and parameter counts, Keras style. Printed; returned instead when ``print_fn`` is None."""
        rows = [("#", "Layer", "Output shape", "Params")]
        for i, (layer, shape) in enumerate(zip(self.layers, self._shapes)):
            rows.append((str(i), repr(layer), _fmt(shape), f"{sum(p.size for p in layer.parameters()):,}"))
        widths = [max(len(r[c]) for r in rows) for c in range(4)]
        lines = [f"Sequential on {self.backend}, {self.dtype}"]
        lines += [
            "  ".join(cell.ljust(w) if c < 3 else cell.rjust(w) for c, (cell, w) in enumerate(zip(r, widths))) for r in rows
        ]
        total = sum(p.size for p in self.parameters())
        trainable = sum(p.size for p in self.parameters() if p.trainable)
        lines.append(f"Total params: {total:,} (trainable: {trainable:,})")
        text = "\n".join(lines)
        if print_fn is None:
            return text
        print_fn(text)
        return None

    def __repr__(self) -> str:
        inner = "".join(f"\n  ({i}): {layer!r}" for i, layer in enumerate(self.layers))
        return f"Sequential({inner}\n)"

    # -- training ---------------------------------------------------------------------
    def compile(self, *, loss: Loss, optimizer: Optimizer) -> Sequential:
        """Keep a loss and an optimizer for :meth:`fit` and :meth:`evaluate` (Keras style). Returns self."""
        self._loss, self._optimizer = self._check_loss(loss), optimizer
        return self

    def fit(
        self,
        x: Any,
        y: Any,
        *,
        loss: Loss | None = None,
        optimizer: Optimizer | None = None,
        epochs: int = 1,
        batch_size: int = 32,
        shuffle: bool = True,
        drop_last: bool = False,
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
    ) -> History:
        """Train with mini-batch gradient descent.

        Parameters
        ----------
        x, y
            Training inputs and targets: NumPy (or anything NumPy can read) or arrays already
            on the model's backend and device. Host data is copied onto the model's device
            once; float inputs are cast to the model's dtype, integer and boolean inputs
            converted to it (values unchanged: scale pixels yourself). Integer class labels
            become int64. Non-finite inputs are refused.
        loss, optimizer
            Default to those given to :meth:`compile` or the last ``fit``. The optimizer is
            bound to this model's parameters.
        epochs, batch_size
            Passes over the data and examples per step (the last batch may be smaller).
        shuffle
            Reshuffle every epoch, from the model's seeded generator (or ``seed``).
        drop_last
            Skip the last batch of every epoch when it is smaller than ``batch_size`` (PyTorch's
            ``DataLoader`` option): BatchNorm cannot train on a last batch of one example.
        validation_data
            ``(x_val, y_val)`` evaluated after every epoch.
        verbose
            0 silent; 1 a progress bar and a line per epoch; 2 a line per epoch; ``"auto"``
            is 1 on a terminal, else 2.
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
            Parameters that are not finite are never written over the last good checkpoint.
        resume
            A checkpoint directory (or file) of an interrupted run: restores it and goes on from
            the step after the one saved. Build the model, optimizer and callbacks as for the
            first run and pass the same arguments; on NumPy, PyTorch CPU and array-api-strict the
            resumed run ends bit-identical to one never interrupted (CuPy's generators expose no
            state: there a resumed Dropout draws fresh masks, re-seeded from the step). A directory
            without a checkpoint yet starts from the beginning, so the same command serves the
            first run and the restarts.

        distributed
            None (default) or False: this process alone. True (``pn.distributed.world()``) or a
            :class:`portnn.distributed.Communicator`: data-parallel training across MPI ranks
            (launch with ``mpiexec -n N``). Every rank passes the same data and arguments; rank 0's
            weights and shuffling state are broadcast, each step's global batch of
            ``N * batch_size`` examples is split between the ranks, and the gradients are summed
            so that the update is the one a single process takes with batch ``N * batch_size``.
            Only rank 0 prints and writes checkpoints; a rank that fails ends the job. BatchNorm
            uses each rank's own batch statistics (running statistics averaged over the ranks at
            each epoch's end and before a checkpoint). See :mod:`portnn.distributed`.

        A batch whose loss is NaN or infinite stops training with an error that names the
        epoch and step, unless a callback rolls back (:class:`~portnn.optim.schedules.Backtracking`).

        Returns
        -------
        History
            Per-epoch ``loss``, ``accuracy`` (classification losses), ``val_loss``,
            ``val_accuracy``, ``lr`` (the learning rate used) and ``epoch_time``. Training accuracy is accumulated during the
            epoch, as Keras does (no second pass over the data). ``records`` holds what ``record`` asked for.
        """
        dist = _resolve_distributed(distributed)
        try:  # everything, checks and resume included, under the abort guard: a rank that fails ends the job
            return self._fit(
                x, y, loss=loss, optimizer=optimizer, epochs=epochs, batch_size=batch_size, shuffle=shuffle,
                drop_last=drop_last, validation_data=validation_data, verbose=verbose, seed=seed, callbacks=callbacks,
                l2=l2, record=record, record_every=record_every, checkpoint=checkpoint,
                checkpoint_every=checkpoint_every, resume=resume, dist=dist,
            )  # fmt: skip
        except BaseException as exc:
            if dist is not None:
                dist.abort(exc)  # with more than one rank: report and end the job (the others would hang)
            raise

    def _fit(
        self, x: Any, y: Any, *, loss: Any, optimizer: Any, epochs: int, batch_size: int, shuffle: bool, drop_last: bool,
        validation_data: Any, verbose: int | str, seed: int | None, callbacks: Any, l2: float, record: bool,
        record_every: int, checkpoint: Any, checkpoint_every: int | None, resume: Any, dist: Any,
    ) -> History:  # fmt: skip
        """The body of :meth:`fit`, with ``distributed`` resolved to a communicator (or None)."""
        loss = self._check_loss(loss if loss is not None else self._loss, "fit")
        optimizer = optimizer if optimizer is not None else self._optimizer
        if not isinstance(optimizer, Optimizer):
            raise TypeError(
                f"fit needs an optimizer such as pn.optim.SGD(lr=0.1) (got {optimizer!r}); pass optimizer= or call compile()"
            )
        check_int("Sequential.fit", "epochs", epochs, minimum=0)
        check_int("Sequential.fit", "batch_size", batch_size)
        check_int("Sequential.fit", "record_every", record_every)
        if checkpoint_every is not None:
            check_int("Sequential.fit", "checkpoint_every", checkpoint_every)
            if checkpoint is None:
                raise ValueError("fit: checkpoint_every needs checkpoint=DIR, the directory to write the checkpoints to")
        _check_l2(l2)
        verbose = resolve_verbose(verbose)
        X, Y = self._ingest(x, y, loss, "fit")
        val = self._ingest(*_pair(validation_data), loss, "fit validation_data") if validation_data is not None else None
        self._loss, self._optimizer = loss, optimizer  # only once everything given was found good
        params = self.parameters()
        if optimizer.params != params:
            optimizer.bind(params)
        backend = self.backend
        xp, n = backend.xp, X.shape[0]
        rng = backends.host_rng(seed) if seed is not None else self._rng
        history = History()
        callbacks = CallbackList(callbacks)
        recorder = _records.Recorder(self, record_every) if record else None
        if recorder is not None:
            history.records = recorder.records
        ranks = dist.size if dist is not None else 1
        _check_batches(self, n, batch_size, ranks, drop_last)
        run = {"n": n, "batch_size": batch_size, "shuffle": bool(shuffle), "drop_last": bool(drop_last), "ranks": ranks}
        position = {"epoch": 0, "step": 0, "global_step": 0, "loss_sum": 0.0, "seen": 0, "correct": 0, "rng": None, **run}
        resumed = resume is not None and _resume.checkpoint_file(resume).exists()
        if resumed:
            position = _resume.load(resume, self, optimizer, callbacks.callbacks, history, recorder, run)
            rng.bit_generator.state = position["rng"]  # as it was at the start of the saved epoch
            if verbose:
                print(f"Resuming from {_resume.checkpoint_file(resume)}: epoch {position['epoch'] + 1}, step {position['step']}")
        seeds = _distributed_setup(self, dist, rng, loss)
        if dist is not None and not dist.is_root:
            verbose = 0  # only rank 0 prints and writes checkpoints
            if resumed and recorder is not None:
                recorder.clear_partial()  # the checkpoint's partial counts are the sum over the ranks: rank 0 keeps them
        agree = dist is not None and dist.size > 1  # stop_training is agreed between the ranks
        callbacks.set_context(self, optimizer)
        self.stop_training = False
        self._observer = recorder.observe if recorder is not None else None
        self._distributed = dist
        step_size = batch_size * ranks  # a global batch
        steps_per_epoch = n // step_size if drop_last else math.ceil(n / step_size)
        global_step = position["global_step"]
        try:
            callbacks.on_train_begin({})
            if resumed:  # after on_train_begin, which resets them
                _resume.restore_callbacks(callbacks.callbacks, position)
            for epoch in range(epochs if position.get("stopped") else position["epoch"], epochs):
                start_time = time.perf_counter()
                callbacks.on_epoch_begin(epoch, {})
                epoch_rng = rng.bit_generator.state
                order = backend.adapter.from_numpy(rng.permutation(n), backend.device) if shuffle else None
                first_step = position["step"] if epoch == position["epoch"] else 0
                if first_step:
                    loss_sum, seen, correct_sum = position["loss_sum"], position["seen"], position["correct"]
                else:
                    loss_sum, seen, correct_sum = 0.0, 0, 0
                bar = progress_bar(steps_per_epoch, f"Epoch {epoch + 1}/{epochs}", verbose == 1, initial=first_step)
                stopped = False
                for step in range(first_step, steps_per_epoch):
                    start, stop = step * step_size, min((step + 1) * step_size, n)
                    lo, hi = (start, stop) if dist is None else dist.shard(start, stop)  # this rank's slice
                    if order is None:
                        xb, yb = X[lo:hi, ...], Y[lo:hi, ...]
                    else:
                        idx = order[lo:hi]
                        xb, yb = xp.take(X, idx, axis=0), xp.take(Y, idx, axis=0)
                    callbacks.on_batch_begin(step, {})
                    if recorder is not None:
                        recorder.before_step(global_step)
                    if hi > lo:
                        value, y_pred = self.train_step(xb, yb, loss, optimizer, validate=False, l2=l2)
                        value = float(value) * ((hi - lo) if loss.reduction == "mean" else 1)  # summed over the batch
                        correct = loss.correct(y_pred, yb) if loss.classification else 0
                    else:  # a rank with nothing left in a short last batch still joins the gradient sum
                        dist.idle_step(self, optimizer, l2)
                        value, correct = 0.0, 0
                    if dist is not None:  # over the global batch; a stop asked for on any rank stops them all
                        value, correct, stops = dist.allreduce_sums([value, float(correct), float(self.stop_training)])
                        self.stop_training = stopped = stops > 0
                    if not math.isfinite(value):
                        if callbacks.on_nonfinite_loss(epoch, step, value):
                            continue  # a callback rolled back
                        raise FloatingPointError(
                            f"fit: the training loss became {value} in epoch {epoch + 1}, step {step + 1} "
                            f"(batch {start}:{stop}); "
                            f"the learning rate ({optimizer.lr:g}) is probably too large, or the inputs are unscaled. "
                            "pn.optim.schedules.Backtracking() rolls back and lowers it instead"
                        )
                    if recorder is not None:
                        recorder.after_step(global_step)
                    global_step += 1
                    loss_sum += value
                    seen += stop - start
                    if loss.classification:
                        correct_sum = correct_sum + (correct if dist is None else int(correct))
                    callbacks.on_batch_end(step, {"loss": value / (stop - start), "size": stop - start})
                    bar.update(1)
                    if verbose == 1 and step % 50 == 0:
                        bar.set_postfix_str(f"loss {value / (stop - start):.4f}")
                    if checkpoint_every is not None and global_step % checkpoint_every == 0 and step + 1 < steps_per_epoch:
                        if dist is not None:  # every rank takes part: the state saved is the global one
                            dist.average_buffers(self)
                            if recorder is not None:
                                recorder.reduce(dist, keep=dist.is_root)
                        if dist is None or dist.is_root:
                            self._save_checkpoint(
                                checkpoint, optimizer, callbacks, history, recorder,
                                {"epoch": epoch, "step": step + 1, "global_step": global_step, "loss_sum": loss_sum,
                                 "seen": seen, "correct": int(correct_sum), "rng": epoch_rng, **run},
                            )  # fmt: skip
                    if stopped if agree else self.stop_training:  # with ranks: the flag agreed at this step
                        break
                bar.close()
                logs = {"loss": loss_sum / max(seen, 1)}
                if loss.classification:
                    logs["accuracy"] = float(correct_sum) / max(seen * loss.count(Y) // n, 1)
                if dist is not None:
                    dist.average_buffers(self)  # BatchNorm running statistics: the mean over the ranks
                if val is not None:
                    val_logs = (
                        self._evaluate_arrays(*val, loss, max(batch_size, 256))
                        if dist is None
                        else dist.evaluate(self, *val, loss, max(batch_size, 256))
                    )
                    logs.update({f"val_{k}": v for k, v in val_logs.items()})
                logs["lr"] = optimizer.lr
                if recorder is not None:
                    recorder.end_epoch(dist)
                callbacks.on_epoch_end(epoch, logs)
                if agree:  # a stop asked for on one rank (here or after the last step) stops every rank
                    self.stop_training = dist.allreduce_sums([float(self.stop_training)])[0] > 0
                backend.adapter.synchronize(backend.device)
                logs["epoch_time"] = time.perf_counter() - start_time
                history.append(epoch, logs)
                if verbose:
                    shown = " - ".join(f"{k}: {v:{'.4g' if k == 'lr' else '.4f'}}" for k, v in logs.items() if k != "epoch_time")
                    print(f"Epoch {epoch + 1}/{epochs} - {logs['epoch_time']:.1f}s - {shown}", flush=True)
                if checkpoint is not None and (dist is None or dist.is_root):
                    self._save_checkpoint(
                        checkpoint, optimizer, callbacks, history, recorder,
                        {"epoch": epoch + 1, "step": 0, "global_step": global_step, "loss_sum": 0.0, "seen": 0, "correct": 0,
                         "rng": rng.bit_generator.state, "stopped": self.stop_training, **run},
                    )  # fmt: skip
                if self.stop_training:
                    break
            callbacks.on_train_end({})
        finally:
            self._observer = None
            self._grad_hook = None
            self._distributed = None
            if seeds:
                from . import distributed as _distributed

                _distributed.restore_seeds(seeds)
        return history

    def _save_checkpoint(
        self, directory: Any, optimizer: Optimizer, callbacks: CallbackList, history: History, recorder: Any, position: dict
    ) -> None:
        """Write a training checkpoint, unless a parameter is no longer finite (the last good one stays)."""
        xp = self.backend.xp
        bad = [name for name, p in self.named_parameters() if not bool(xp.all(xp.isfinite(p.data)))]
        if bad:
            warnings.warn(
                f"fit: parameters {bad} hold NaN or infinite values after step {position['global_step']}; "
                f"the checkpoint in {directory} was not overwritten",
                RuntimeWarning,
                stacklevel=3,
            )
            return
        _resume.save(directory, self, optimizer, callbacks.callbacks, position, history, recorder)

    def evaluate(self, x: Any, y: Any, *, loss: Loss | None = None, batch_size: int = 256) -> dict[str, float]:
        """Loss (and accuracy, for classification losses) over ``(x, y)`` in inference mode.

        Uses ``loss``, else the one from :meth:`compile` or the last :meth:`fit`.
        """
        loss = self._check_loss(loss if loss is not None else self._loss, "evaluate")
        check_int("Sequential.evaluate", "batch_size", batch_size)
        X, Y = self._ingest(x, y, loss, "evaluate")
        return self._evaluate_arrays(X, Y, loss, batch_size)

    def predict(self, x: Any, *, batch_size: int = 256) -> Any:
        """Model outputs for ``x`` in inference mode, in batches, as an array on the model's backend.

        ``portnn.backends.to_numpy(model.predict(x))`` brings them to the host.
        """
        check_int("Sequential.predict", "batch_size", batch_size)
        X = self._ingest_x(x, "predict")
        xp = self.backend.xp
        n = X.shape[0]
        outs = [self.forward(X[i : min(i + batch_size, n), ...])[0] for i in range(0, n, batch_size)]
        return xp.concat(outs, axis=0) if len(outs) != 1 else outs[0]

    # -- helpers ----------------------------------------------------------------------
    def _evaluate_arrays(self, X: Any, Y: Any, loss: Loss, batch_size: int) -> dict[str, float]:
        n = X.shape[0]
        loss_sum = correct_sum = 0
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)  # out-of-range slice ends are not standard
            xb, yb = X[start:stop, ...], Y[start:stop, ...]
            y_pred = self.forward(xb)[0]
            value, _ = loss.forward(y_pred, yb, validate=False)
            loss_sum = loss_sum + (value * xb.shape[0] if loss.reduction == "mean" else value)
            if loss.classification:
                correct_sum = correct_sum + loss.correct(y_pred, yb)
        logs = {"loss": float(loss_sum) / n}
        if loss.classification:
            logs["accuracy"] = float(correct_sum) / loss.count(Y)
        return logs

    def _check_loss(self, loss: Any, where: str = "compile") -> Loss:
        if not isinstance(loss, Loss):
            raise TypeError(f"{where} needs a loss such as pn.losses.CrossEntropy() (got {loss!r}); pass loss= or call compile()")
        last = self.layers[-1] if self.layers else None
        if isinstance(loss, CrossEntropy) and isinstance(last, Softmax):
            raise ValueError(
                "CrossEntropy takes logits, but the model ends with Softmax, which would apply softmax twice; "
                "remove the final Softmax layer (apply it to predict()'s output if you need probabilities)"
            )
        if isinstance(loss, BinaryCrossEntropy) and isinstance(last, Sigmoid):
            raise ValueError("BinaryCrossEntropy takes logits, but the model ends with Sigmoid; remove the final Sigmoid layer")
        return loss

    def _ingest_x(self, x: Any, where: str) -> Any:
        backend = self.backend
        xp = backend.xp
        X = backends.as_backend_array(x, backend, what="x", where=f"Sequential.{where}: ")
        if X.ndim == 0:
            raise ValueError(f"Sequential.{where}: x is a scalar (shape ()); pass an array of examples, shape (n, ...)")
        if X.shape[0] == 0:
            raise ValueError(f"Sequential.{where}: x is empty (shape {tuple(X.shape)}); pass at least one example")
        if any(d == 0 for d in X.shape[1:]):
            raise ValueError(
                f"Sequential.{where}: x has shape {tuple(X.shape)}: its examples hold no values (a 0-sized axis); "
                "check how the features were selected"
            )
        target = getattr(xp, self.dtype)
        if X.dtype != target:
            if not (xp.isdtype(X.dtype, "real floating") or xp.isdtype(X.dtype, "integral") or X.dtype == xp.bool):
                raise TypeError(f"Sequential.{where}: x has dtype {dtype_name(X.dtype)}; pass real numbers")
            X = xp.astype(X, target)
        bad = _count_nonfinite(xp, X)
        if bad:
            raise ValueError(f"Sequential.{where}: x holds {bad} NaN or infinite values; clean or impute them first")
        if self.input_shape is not None and tuple(X.shape[1:]) != tuple(self.input_shape[1:]):
            raise ShapeError(
                f"Sequential.{where}: x has examples of shape {tuple(X.shape[1:])}; the model takes {tuple(self.input_shape[1:])}"
            )
        self._check_fits(tuple(X.shape), where)
        return X

    def _check_fits(self, shape: tuple[int, ...], where: str) -> None:
        """Raise a ShapeError naming ``where``, ``shape`` and the first layer that does not take it (no computation)."""
        current: Shape = (None, *shape[1:])
        for i, layer in enumerate(self.layers):
            try:
                current = layer.output_shape(current)
            except ShapeError as exc:
                hint = " (add pn.layers.Flatten() before it)" if hasattr(layer, "in_features") and len(current) > 2 else ""
                raise ShapeError(
                    f"Sequential.{where}: x has shape {shape}, which does not fit layer {i} ({layer!r}): {exc}{hint}"
                ) from None

    def _ingest(self, x: Any, y: Any, loss: Loss, where: str) -> tuple[Any, Any]:
        X = self._ingest_x(x, where)
        backend = self.backend
        xp = backend.xp
        Y = backends.as_backend_array(y, backend, what="y", where=f"Sequential.{where}: ")
        if Y.ndim == 0 or Y.shape[0] != X.shape[0]:
            raise ValueError(f"Sequential.{where}: x has {X.shape[0]} examples but y has shape {tuple(Y.shape)}; they must match")
        if not (xp.isdtype(Y.dtype, "real floating") or xp.isdtype(Y.dtype, "integral") or Y.dtype == xp.bool):
            raise TypeError(f"Sequential.{where}: y has dtype {dtype_name(Y.dtype)}; pass integer labels or real targets")
        if isinstance(loss, CrossEntropy) and not xp.isdtype(Y.dtype, "real floating"):
            Y = xp.astype(Y, xp.int64)  # class indices
        else:
            Y = xp.astype(Y, getattr(xp, self.dtype))
        bad = _count_nonfinite(xp, Y) if xp.isdtype(Y.dtype, "real floating") else 0
        if bad:
            raise ValueError(f"Sequential.{where}: y holds {bad} NaN or infinite values; drop those examples or fix the targets")
        # two examples where there are two: BatchNorm without running statistics needs them even in evaluation
        pred_shape = (X.shape[0], *tuple(self.forward(X[: min(2, X.shape[0]), ...])[0].shape[1:]))
        loss.check_target(pred_shape, Y, values=True)
        return X, Y


def _resolve_distributed(distributed: Any) -> Any:
    """``fit``'s ``distributed`` argument as a communicator, or None; no collective yet."""
    if distributed is None or distributed is False:
        return None
    from . import distributed as _distributed

    return _distributed.resolve(distributed)


def _distributed_setup(model: Sequential, comm: Any, rng: Any, loss: Loss) -> dict[Any, int] | None:
    """Broadcast rank 0's model and shuffling to every rank and hook the gradient sum in; returns the seeds to restore."""
    if comm is None:
        return None
    from . import distributed as _distributed

    comm.broadcast_model(model, rng)
    seeds = _distributed.reseed_random_layers(model, comm.rank)
    mean = loss.reduction == "mean"

    def hook(local_batch: int) -> None:
        comm.allreduce_gradients([p for p in model.parameters() if p.trainable], local_batch, mean=mean)

    model._grad_hook = hook
    return seeds


def _check_batches(model: Sequential, n: int, batch_size: int, ranks: int, drop_last: bool) -> None:
    """Refuse a fit that takes no step, or whose last batch gives a layer fewer examples than its ``min_batch_size``."""
    step = batch_size * ranks  # a global batch
    over = f" over {ranks} ranks ({step} examples per step)" if ranks > 1 else ""
    if drop_last and n < step:
        raise ValueError(
            f"Sequential.fit: drop_last=True with {n} examples and batch_size={batch_size}{over} leaves no batch; "
            "use a smaller batch_size or drop_last=False"
        )
    last = n % step if n % step and not drop_last else step  # the size of the last global batch
    shards = [last * (r + 1) // ranks - last * r // ranks for r in range(ranks)]  # as Communicator.shard splits it
    needy = max(model.layers, key=lambda layer: layer.min_batch_size, default=None)
    smallest = min(size for size in shards if size)  # an empty share is fine: that rank joins with zeros
    if n > 1 and needy is not None and smallest < needy.min_batch_size:
        where = f"; split over {ranks} ranks, rank {shards.index(smallest)} gets {smallest}" if ranks > 1 else ""
        fix = (
            "pass drop_last=True, which skips a short last batch, or another batch_size"
            if last < step
            else "use a larger batch_size"
        )
        raise ValueError(
            f"Sequential.fit: {n} examples in batches of {batch_size}{over} leave a last batch of {last}{where}, "
            f"on which {needy!r} cannot train (it needs batches of {needy.min_batch_size} or more); {fix}"
        )


def _count_nonfinite(xp: Any, a: Any) -> int:
    """How many NaN/inf values ``a`` holds. One sum (NaN and inf propagate) settles the usual case in one pass."""
    if bool(xp.isfinite(xp.sum(a))):
        return 0
    return int(xp.count_nonzero(~xp.isfinite(a)))  # also 0 when only the sum overflowed


def _pair(data: Any) -> tuple[Any, Any]:
    if not (isinstance(data, (tuple, list)) and len(data) == 2):
        got = f"a {type(data).__name__} of length {len(data)}" if isinstance(data, (tuple, list)) else f"a {type(data).__name__}"
        raise TypeError(f"Sequential.fit: validation_data must be a pair (x_val, y_val); got {got}")
    return data[0], data[1]


def _check_l2(l2: Any) -> None:
    if isinstance(l2, bool) or not isinstance(l2, (int, float)) or not 0 <= l2 < math.inf:
        raise ValueError(f"Sequential.fit/train_step: l2 must be a finite number >= 0; got {l2!r}")


def _fmt(shape: Shape | None) -> str:
    if shape is None:
        return "?"
    return "(" + ", ".join("batch" if d is None else str(d) for d in shape) + ")"

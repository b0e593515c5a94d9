"""The Sequential model: a stack of layers and its state; the training loop is :class:`portnn.training.Trainer`."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from . import backends
from ._checks import check_seed
from .layers import base as _layers_base
from .layers.base import InputSpec, Layer, Shape, ShapeError, class_hint, format_shape, layer_entry
from .serialization import register_model
from .training import History, Trainer

__all__ = ["History", "Sequential"]


class OutputShape(tuple):
    """A :class:`Sequential`'s ``output_shape``: the built shape (a tuple; equal to None while unknown), callable as a layer's.

    It is callable so that a composite asks a child Sequential for its output shape as it asks
    any layer. Being an object, it is never ``is None``: test ``model.output_shape == None``
    (or ``not model.output_shape.known``). A copy or pickle is the plain value: the tuple, or
    None while unknown.

    Examples
    --------
    >>> import portnn as pn
    >>> model = pn.Sequential([pn.layers.Linear(4, 3)], input_shape=(4,))
    >>> model.output_shape == (None, 3), model.output_shape((None, 5, 4))
    (True, (None, 5, 3))
    >>> pn.Sequential([pn.layers.Linear(4, 3)]).output_shape == None  # a Linear takes (batch, ..., 4): unknown
    True
    """

    known: bool

    def __new__(cls, shape: Shape | None, walk: Callable[[Shape], Shape]) -> OutputShape:
        self = super().__new__(cls, () if shape is None else tuple(shape))
        self.known, self._walk = shape is not None, walk
        return self

    def __call__(self, input_shape: Shape) -> Shape:
        """The output shape for ``input_shape``, as :meth:`portnn.layers.Layer.output_shape`."""
        return self._walk(input_shape)

    def __eq__(self, other: object) -> bool:
        if not self.known:
            return other is None or (isinstance(other, OutputShape) and not other.known)
        return tuple.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        return not self == other

    def __hash__(self) -> int:
        return hash(tuple(self)) if self.known else hash(None)

    def __repr__(self) -> str:
        return tuple.__repr__(self) if self.known else "None"

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        # copy, deepcopy and pickle give the plain value (the walk belongs to the model)
        return (tuple, (tuple(self),)) if self.known else (_unknown, ())


def _unknown() -> None:
    """What a copy or pickle of an unknown :class:`OutputShape` is: None."""
    return None


def _fixed_input(layer: Layer) -> Shape | None:
    """The example shape a model's first layer fixes, or None: its spec must accept one shape, every size after the batch fixed,
    and the layer no other rank (Linear takes ``(batch, ..., in_features)``: it fixes no shape)."""
    spec = layer.input_spec.shapes
    if len(spec) != 1 or not all(isinstance(d, int) for d in spec[0][1:]):
        return None
    if layer._shape_refusal((None, None, *spec[0][1:]), walk=True) is None:
        return None
    return (None, *spec[0][1:])


def _probe_inputs(layer: Layer) -> list[Shape | None]:
    """Two input shapes to walk a model whose first layer states its feature sizes but not its rank (Linear): the
    2-D one and one with an extra axis, ``(None, 8)`` and ``(None, None, 8)``; ``[None, None]`` for other layers."""
    spec = layer.input_spec.shapes
    if len(spec) == 1 and all(isinstance(d, int) for d in spec[0][1:]):
        return [(None, *spec[0][1:]), (None, None, *spec[0][1:])]
    return [None, None]


def _shown(built: Shape | None, probes: list[Shape | None]) -> str:
    """A layer's output shape as :meth:`Sequential.summary` prints it.

    A built shape prints as is (``(batch, 10)``). Without one, where the two probe walks
    (:func:`_probe_inputs`) give the same sizes, the free axes print as ``...``
    (``(batch, ..., 10)``); where they disagree, or there are none, the shape is ``?``.
    """
    if built is not None:
        return format_shape(built)
    short, long = probes
    if short is not None and long is not None and tuple(long) == (short[0], None, *short[1:]):
        return format_shape(short).replace("(batch", "(batch, ...", 1)
    return "?"


def _short(layer: Layer) -> str:
    """A one-line name for ``layer`` in tables and errors: its repr, or ``Sequential(3 layers)`` for a nested Sequential."""
    if isinstance(layer, Sequential):
        n = len(layer.layers)
        return f"Sequential({n} layer{'' if n == 1 else 's'})"
    return repr(layer)


@register_model
class Sequential(Trainer, Layer):
    """Layers applied one after the other: a model (it trains) and a layer (it nests, Keras's ``Model(Trainer, Layer)``).

    Inside another layer (a :class:`~portnn.layers.Residual`'s block, a composite of your own)
    it runs as any layer: ``forward(x, training=, input_grad=)`` and the ``backward`` it
    returns compose, its parameters are named ``"0.weight"``… under the parent's prefix, and
    ``output_shape(input_shape)`` walks its layers.

    Parameters
    ----------
    layers
        The layers, in order. Each one's input shape is checked against the previous one's
        output; a mismatch raises a :class:`~portnn.layers.ShapeError` naming both layers.
    seed
        Seed of the initial weights of every layer (drawn on the host, so the same on every
        backend) and of the shuffling in :meth:`fit`. None leaves each layer's own weights.
    input_shape
        Shape of one example, e.g. ``(28, 28)`` or ``(784,)``, for shape checks,
        :attr:`output_shape` and :meth:`summary`. Without it the shapes are known only when the
        first layer fixes them (a Linear takes ``(batch, ..., in_features)``, so it does not:
        :meth:`summary` then prints ``(batch, ..., 10)``).

    Examples
    --------
    >>> import numpy as np
    >>> import portnn as pn
    >>> model = pn.Sequential([pn.layers.Linear(4, 8), pn.layers.ReLU(), pn.layers.Linear(8, 3)], seed=0)
    >>> x, y = np.random.default_rng(0).normal(size=(32, 4)), np.arange(32) % 3
    >>> history = model.fit(x, y, loss=pn.losses.CrossEntropy(), optimizer=pn.optim.SGD(lr=0.1), epochs=2, verbose=0)
    >>> loss, accuracy = model.evaluate(x, y)
    >>> sorted(model.evaluate(x, y).keys())
    ['accuracy', 'loss']

    The seed style, one layer at a time with shape checks:

    >>> model = pn.Sequential().build([pn.layers.Linear(4, 8), pn.layers.ReLU(), pn.layers.Linear(8, 3)])
    """

    def __init__(
        self, layers: Iterable[Layer] | None = None, *, seed: int | None = None, input_shape: tuple[int, ...] | None = None
    ) -> None:
        Layer.__init__(self)
        self.layers: list[Layer] = []
        self.input_shape: Shape | None = None if input_shape is None else (None, *input_shape)
        self._shapes: list[Shape | None] = []
        self._probes: list[list[Shape | None]] = []  # without a known shape: the walks of _probe_inputs, per layer
        self.seed = seed = check_seed("Sequential", "seed", seed)
        init_rng, self._rng = backends.host_rng(seed).spawn(2)
        #: Set to True (by a callback) to end :meth:`fit` after the current batch.
        self.stop_training = False
        self._observer: Callable[[int, Layer, Any], None] | None = None  # sees each layer's training output (records)
        if layers is not None:
            self.build(layers)
        if seed is not None:
            self.reset_parameters(init_rng)  # each layer once, a shared one too

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
                f"pass layer objects such as pn.layers.ReLU(), or subclass pn.layers.Layer{class_hint(layer)}"
            )
        shape = self._shapes[-1] if self._shapes else self.input_shape
        probes = list(self._probes[-1]) if self._probes else [None, None]
        if shape is None and not self.layers:
            shape = _fixed_input(layer)
            probes = [None, None] if shape is not None else _probe_inputs(layer)
        # a known shape is walked; else the probes are (a Linear's 2-D input and one with an extra axis), and a layer
        # that takes neither is refused, naming the first (a 256-feature output before Linear(100, 10))
        walks = [shape] if shape is not None else [p for p in probes if p is not None]
        refused: tuple[Shape, ShapeError] | None = None
        outs = []
        for current in walks:
            try:
                outs.append(layer.output_shape(current))
            except ShapeError as exc:
                outs.append(None)
                refused = refused or (current, exc)
        if walks and all(out is None for out in outs) and refused is not None:
            where = f"layer {len(self.layers)} ({layer!r})"
            after = f"layer {len(self.layers) - 1} ({self.layers[-1]!r})" if self.layers else "the model's input"
            raise ShapeError(f"{where} does not fit after {after}, which outputs {format_shape(refused[0])}: {refused[1]}")
        if shape is not None:
            shape = outs[0]
        else:
            probes = [None if p is None else outs.pop(0) for p in probes]
        if layer.name is None:
            layer.name = self._unique_name(type(layer).__name__.lower())
        elif any(other.name == layer.name for other in self.layers):
            raise ValueError(f"Sequential.add: a layer named {layer.name!r} is already in the model; give {layer!r} another name")
        self.layers.append(layer)
        self._shapes.append(shape)
        self._probes.append(probes)
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
    def output_shape(self) -> OutputShape:  # type: ignore[override]
        """The built output shape (``(None, 10)``; equal to None while the input is unknown), callable as a layer's.

        ``model.output_shape == (None, 10)`` reads the shape of the built model; as every layer's,
        ``model.output_shape((None, 3, 8, 8))`` walks the layers from that input shape.
        """
        return OutputShape(self._shapes[-1] if self._shapes else self.input_shape, self._walk_shapes)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        """The shape after every layer, for ``input_shape``; a ShapeError naming the layer that does not take it."""
        return self._walk_shapes(input_shape)

    def _walk_shapes(self, input_shape: Shape) -> Shape:
        current = tuple(input_shape)
        for i, layer in enumerate(self.layers):
            try:
                current = layer.output_shape(current)
            except ShapeError as exc:
                raise ShapeError(f"Sequential layer {i} ({_short(layer)}) does not take {format_shape(current)}: {exc}") from None
        return current

    @property
    def input_spec(self) -> InputSpec:  # type: ignore[override]
        """What the first layer takes (a Sequential nested in another takes what its first layer takes)."""
        return self.layers[0].input_spec if self.layers else InputSpec()

    def named_children(self) -> Iterator[tuple[str, Layer]]:
        """The layers, named by position: ``("0", layer)``, ``("1", layer)``… (PyTorch's ``nn.Sequential``)."""
        for i, layer in enumerate(self.layers):
            yield str(i), layer

    def pop(self) -> Layer:
        """Remove and return the last layer (Keras's ``pop``): replace a head with ``pop()`` then ``add(new_head)``."""
        if not self.layers:
            raise IndexError("Sequential.pop: the model has no layers")
        self._shapes.pop()
        self._probes.pop()
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
    def forward(self, x: Any, *, training: bool = False, input_grad: bool = True) -> tuple[Any, Callable[[Any], Any]]:
        """Run every layer; return the output and ``backward(dy)``, which fills each parameter's ``grad``.

        As every layer's, ``backward`` returns the gradient of the input by default, so a
        Sequential nested in a layer of your own composes like any layer. With
        ``input_grad=False`` (what :meth:`train_step` passes: the input is data) it returns None:
        the first layer skips that gradient, as PyTorch does for inputs that do not require one,
        and frozen layers at the start of the model (``layer.trainable = False``, transfer
        learning) are not back-propagated at all.

        This is the low-level path for a loop of your own::

            optimizer.zero_grad()
            y_pred, backward = model.forward(xb, training=True, input_grad=False)
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

    # -- parameters and state ---------------------------------------------------------
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

    def export_onnx(
        self,
        path: str | os.PathLike[str],
        input_shape: tuple[int, ...] | None = None,
        *,
        input_name: str = "input",
        output_name: str = "output",
    ) -> Any:
        """Write the evaluation-mode forward as an ONNX model to ``path``, for batches of any size; returns the ``ModelProto``.

        The model's own forward runs on `ndonnx <https://github.com/Quantco/ndonnx>`_ arrays, which
        record an ONNX graph (no layer has an exporter of its own): see :mod:`portnn.onnx`.
        ``input_shape`` is the shape of one example, ``(1, 28, 28)``; None takes the model's
        ``input_shape`` or the first Linear's ``in_features``. A layer that cannot be exported
        raises :class:`portnn.onnx.OnnxExportError` naming it and why. Needs ``portnn[onnx]``.

        Examples
        --------
        >>> import os, tempfile
        >>> import numpy as np
        >>> import onnxruntime
        >>> import portnn as pn
        >>> model = pn.Sequential([pn.layers.Linear(4, 8), pn.layers.ReLU(), pn.layers.Linear(8, 3)], seed=0)
        >>> path = os.path.join(tempfile.mkdtemp(), "model.onnx")
        >>> _ = model.export_onnx(path)
        >>> x = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
        >>> (y,) = onnxruntime.InferenceSession(path).run(None, {"input": x})
        >>> bool(np.abs(y - model.predict(x, to_numpy=True)).max() <= 1e-5)
        True
        """
        from .onnx import export

        return export(self, path, input_shape, input_name=input_name, output_name=output_name)

    def get_config(self) -> dict[str, Any]:
        """The architecture as JSON-able values: each layer's class name and config, the seed and input shape.

        Examples
        --------
        >>> import portnn as pn
        >>> config = pn.Sequential([pn.layers.Linear(4, 3), pn.layers.ReLU()]).get_config()
        >>> [(layer["class_name"], layer["config"]["name"]) for layer in config["layers"]]
        [('Linear', 'linear'), ('ReLU', 'relu')]
        """
        config = {
            "layers": [layer_entry(layer) for layer in self.layers],
            "seed": self.seed,
            "input_shape": None if self.input_shape is None else list(self.input_shape[1:]),
        }
        if self.name is not None:  # a Sequential inside another layer keeps its name
            config["name"] = self.name
        return config

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
            if isinstance(entry, Layer):  # built already (a Sequential nested in a composite: layer_from_config)
                layers.append(entry)
                continue
            if not isinstance(entry, dict) or not isinstance(entry.get("class_name"), str):
                raise ValueError(
                    f"Sequential.from_config: layer {i} must be a dict with 'class_name' and 'config'; got {entry!r:.200}"
                )
            layers.append(layer_from_config(entry["class_name"], entry.get("config", {})))
        input_shape = config.get("input_shape")
        model = cls(layers, input_shape=None if input_shape is None else tuple(input_shape))
        model.name = config.get("name")
        seed = config.get("seed")
        if seed is not None:
            model.seed = seed
            _, model._rng = backends.host_rng(seed).spawn(2)  # as __init__ does, without re-drawing the weights
        return model

    def to(self, backend: str, device: Any = None) -> Sequential:
        """Move every parameter to ``backend``/``device`` (through the host). Returns self.

        Build optimizers after moving, or pass them to :meth:`fit`, which rebinds them.
        """
        Layer.to(self, backend, device)  # each layer once, a shared one too
        if self._optimizer is not None:
            self._optimizer.bind(self.parameters())
        return self

    def summary(self, print_fn: Callable[[str], Any] | None = print) -> str | None:
        """Layers, output shapes and parameter counts, Keras style. Printed; returned instead when ``print_fn`` is None."""
        rows = [("#", "Layer", "Output shape", "Params")]
        for i, (layer, shape, probes) in enumerate(zip(self.layers, self._shapes, self._probes)):
            rows.append((str(i), _short(layer), _shown(shape, probes), f"{sum(p.size for p in layer.parameters()):,}"))
            # a composite's children, indented under it by depth, named by their path (PyTorch's names)
            for path, child in layer.named_modules(str(i)):
                if child is not layer:
                    depth = path.count(".")
                    label = "  " * depth + f"{path.rpartition('.')[2]}: {_short(child)}"
                    rows.append(("", label, "", f"{sum(p.size for p in child.parameters()):,}"))
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
        inner = "".join(f"\n  ({i}): " + repr(layer).replace("\n", "\n  ") for i, layer in enumerate(self.layers))
        return f"Sequential({inner}\n)"

    def check_input_shape(self, shape: tuple[int, ...], where: str) -> None:
        """Raise a ShapeError naming ``where``, ``shape`` and the first layer that does not take it (no computation)."""
        if self.input_shape is not None and tuple(shape[1:]) != tuple(self.input_shape[1:]):
            raise ShapeError(
                f"Sequential.{where}: x has examples of shape {tuple(shape[1:])}; the model takes {tuple(self.input_shape[1:])}"
            )
        current: Shape = (None, *shape[1:])
        for i, layer in enumerate(self.layers):
            try:
                current = layer.output_shape(current)
            except ShapeError as exc:
                raise ShapeError(
                    f"Sequential.{where}: x has shape {shape}, which does not fit layer {i} ({layer!r}): {exc}"
                ) from None


_layers_base._chain_class = Sequential  # a list of layers in a composite (Residual([...])) becomes a Sequential

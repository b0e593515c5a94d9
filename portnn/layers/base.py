"""Parameters and the layer protocol."""

from __future__ import annotations

import inspect
import math
import numbers
import re
from collections.abc import Callable, Iterator
from typing import Any

from array_api_compat import device as device_of

from .. import backends
from .. import init as initializers
from .._array import dtype_name, resolve_dtype

__all__ = ["Buffer", "Layer", "Parameter", "RandomLayer", "ShapeError", "WeightedLayer"]

Shape = tuple[int | None, ...]


class ShapeError(ValueError):
    """An input or a layer stack whose shapes do not fit. The message names the layer."""


class Buffer:
    """An array that is part of a layer's state but not trained (BatchNorm's running statistics).

    Saved and loaded with the model and moved by ``to()``, never seen by an optimizer: layers
    list buffers in :meth:`Layer.named_buffers`. A layer replaces ``data`` as it updates it.
    """

    __slots__ = ("data", "name")

    def __init__(self, data: Any, name: str = "") -> None:
        self.data = data
        self.name = name

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    @property
    def dtype(self) -> Any:
        return self.data.dtype

    @property
    def device(self) -> Any:
        return device_of(self.data)

    @property
    def size(self) -> int:
        n = 1
        for d in self.data.shape:
            n *= d
        return n

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, shape={self.shape}, dtype={dtype_name(self.dtype)})"


class Parameter(Buffer):
    """A trainable array and the gradient accumulated for it by the last backward pass.

    ``grad`` is None until a backward pass writes it; :meth:`portnn.optim.Optimizer.zero_grad`
    sets it back to None. ``trainable = False`` freezes it: backward skips its gradient.
    ``regularize`` says whether an L2 penalty in the loss applies (weights yes, biases no).
    """

    __slots__ = ("grad", "regularize", "trainable")

    def __init__(self, data: Any, name: str = "", *, trainable: bool = True, regularize: bool | None = None) -> None:
        super().__init__(data, name)
        self.grad: Any = None
        self.trainable = trainable
        self.regularize = name == "weight" if regularize is None else regularize

    def accumulate(self, g: Any) -> None:
        """Add ``g`` to ``grad`` (gradients of a parameter used twice add up)."""
        if self.trainable:
            self.grad = g if self.grad is None else self.grad + g


class Layer:
    """Base class of every layer.

    A layer implements :meth:`forward`, returning its output and a ``backward`` closure:
    ``backward(dy)`` adds the gradients of the layer's parameters to their ``grad`` and
    returns the gradient of the input. ``layer(x)`` is ``layer.forward(x)[0]`` (inference).
    ``training`` switches train-time behaviour (dropout, batch statistics); with
    ``input_grad=False`` a layer may skip the input gradient and return None (the first layer
    of a model, whose input is data, saves a whole matrix product that way).

    Layers with parameters implement :meth:`reset_parameters`; layers that change shapes
    implement :meth:`output_shape`.

    ``name`` identifies the layer in a model (reports, records, transfer learning): set it
    yourself, or :class:`portnn.Sequential` gives it a unique one, Keras style (``"linear"``,
    ``"relu"``, ``"linear_1"``…).
    """

    def __init__(self) -> None:
        self._params: dict[str, Parameter] = {}
        self._buffers: dict[str, Buffer] = {}
        self.name: str | None = None

    # -- the pass ---------------------------------------------------------------------
    def forward(self, x: Any, *, training: bool = False, input_grad: bool = True) -> tuple[Any, Callable[[Any], Any]]:
        raise NotImplementedError

    def __call__(self, x: Any) -> Any:
        return self.forward(x)[0]

    def output_shape(self, input_shape: Shape) -> Shape:
        """The output shape for ``input_shape`` (None for unknown sizes); raise ShapeError if it does not fit."""
        return input_shape

    # -- parameters -------------------------------------------------------------------
    def add_parameter(self, name: str, data: Any, *, regularize: bool | None = None) -> Parameter:
        p = Parameter(data, name, regularize=regularize)
        self._params[name] = p
        return p

    def parameters(self) -> list[Parameter]:
        return list(self._params.values())

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        for name, p in self._params.items():
            yield prefix + name, p

    def add_buffer(self, name: str, data: Any) -> Buffer:
        b = Buffer(data, name)
        self._buffers[name] = b
        return b

    def named_buffers(self, prefix: str = "") -> Iterator[tuple[str, Buffer]]:
        for name, b in self._buffers.items():
            yield prefix + name, b

    def buffers(self) -> list[Buffer]:
        return list(self._buffers.values())

    def reset_parameters(self, rng: Any = None) -> None:
        """Draw fresh parameters from the host generator ``rng`` (None: fresh entropy)."""

    def new_parameter_home(self, dtype: Any) -> backends.Backend:
        """Where a new layer's parameters are born: the global backend (its float64 support checked for ``dtype``)."""
        backend = backends.get_backend()
        if dtype_name(resolve_dtype(backend.xp, dtype)) == "float64" and not backend.adapter.supports_float64(backend.device):
            raise ValueError(f"{self!r}: backend {backend} has no float64; use dtype='float32'")
        return backend

    @property
    def min_batch_size(self) -> int:
        """The fewest examples a training batch may hold (BatchNorm needs 2); :meth:`portnn.Sequential.fit` checks it."""
        return 1

    @property
    def trainable(self) -> bool:
        return any(p.trainable for p in self._params.values())

    @trainable.setter
    def trainable(self, value: bool) -> None:
        for p in self._params.values():
            p.trainable = bool(value)

    def to(self, backend: str, device: Any = None) -> Layer:
        """Move the parameters and buffers to another backend/device (through the host). Returns self."""
        target = backends._resolve(backend, device)
        for b in (*self._params.values(), *self._buffers.values()):
            b.data = target.adapter.from_numpy(backends.to_numpy(b.data).copy(), target.device)
        for p in self._params.values():
            p.grad = None
        return self

    # -- configuration ----------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        """The constructor arguments that rebuild this layer, as JSON-able values, plus its ``name``.

        The default reads, for each argument of ``__init__``, the attribute of the same name
        (tuples become lists). Layers that store an argument differently override this and
        pass the values through :meth:`config_from_signature`. A layer that cannot be
        described raises a TypeError naming it. :meth:`from_config` is the inverse.

        Examples
        --------
        >>> import portnn as pn
        >>> pn.layers.LeakyReLU(0.2).get_config()
        {'negative_slope': 0.2, 'name': None}
        >>> pn.layers.MaxPool2d(2).get_config()
        {'kernel_size': 2, 'stride': 2, 'padding': 0, 'name': None}
        """
        return self.config_from_signature()

    def config_from_signature(self, **known: Any) -> dict[str, Any]:
        """:meth:`get_config`'s default: ``known`` values, else the attribute named like each ``__init__`` argument."""
        where = f"{type(self).__name__}.get_config ({self!r}, name={self.name!r})"
        config: dict[str, Any] = {}
        params = list(inspect.signature(type(self).__init__).parameters.values())[1:]
        for param in params:
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                raise TypeError(f"{where}: __init__ takes *{param.name}, which a config cannot describe; override get_config")
            if param.name in known:
                value = known[param.name]
            elif hasattr(self, param.name):
                value = getattr(self, param.name)
            else:
                raise TypeError(
                    f"{where}: __init__ takes {param.name!r} but the layer keeps no attribute of that name; "
                    "override get_config to say how to rebuild it"
                )
            config[param.name] = _jsonable(value, f"{where}: argument {param.name!r}")
        config["name"] = self.name
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Layer:
        """Build a layer from :meth:`get_config`'s dict (lists back to tuples; ``name`` set after construction).

        Examples
        --------
        >>> import portnn as pn
        >>> layer = pn.layers.Dropout(0.3, seed=1)
        >>> pn.layers.Dropout.from_config(layer.get_config()).get_config() == layer.get_config()
        True
        """
        if not isinstance(config, dict):
            raise TypeError(f"{cls.__name__}.from_config: expected a dict of constructor arguments; got {type(config).__name__}")
        kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in config.items() if k != "name"}
        layer = cls(**kwargs)
        layer.name = config.get("name")
        return layer

    # -- text -------------------------------------------------------------------------
    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"


class RandomLayer(Layer):
    """A layer that draws random numbers at training time (Dropout, RandomTranslation).

    The numbers come from a generator the backend's adapter makes
    (:meth:`portnn.backends.Adapter.make_generator`) on the input's device, seeded by ``seed``
    (None: fresh entropy). It is made for the backend and device of the first training input
    and made again, from the same seed, if they change. :class:`portnn.Sequential` with
    ``seed=`` re-seeds it through :meth:`reset_parameters`. One seed gives the same draws on one
    backend; different backends draw different streams.
    """

    def __init__(self, *, seed: int | None = None) -> None:
        super().__init__()
        self.seed = int(backends.host_rng().integers(2**63)) if seed is None else int(seed)
        self._generator: Any = None
        self._generator_for: tuple[str, Any] | None = None

    def reset_parameters(self, rng: Any = None) -> None:
        """Re-seed the generator with an int drawn from the host generator ``rng`` (None: fresh entropy)."""
        self.seed = int((backends.host_rng() if rng is None else rng).integers(2**63))
        self._generator = self._generator_for = None

    def get_rng_state(self) -> Any:
        """The generator's state as a NumPy uint8 array; None before the first training draw or where the backend cannot say."""
        if self._generator is None or self._generator_for is None:
            return None
        return backends.get_adapter(self._generator_for[0]).generator_state(self._generator)

    def set_rng_state(self, state: Any, backend: backends.Backend, *, reseed: int | None = None) -> None:
        """Make the generator for ``backend`` and restore ``state`` into it (from :meth:`get_rng_state`).

        Where no state was saved, ``reseed`` (if given) seeds it from ``seed + reseed`` instead:
        fresh draws that do not repeat the interrupted run's.
        """
        seed = self.seed if state is not None or reseed is None else (self.seed + reseed) % 2**63
        self._generator = backend.adapter.make_generator(seed, backend.device)
        self._generator_for = (backend.adapter.name, backend.device)
        if state is not None:
            backend.adapter.set_generator_state(self._generator, state)

    def uniform(self, x: Any, shape: tuple[int, ...]) -> Any:
        """U[0, 1) draws of ``shape`` on ``x``'s device, in ``x``'s dtype."""
        adapter, dev = backends.adapter_for(x), device_of(x)
        if self._generator is None or self._generator_for != (adapter.name, dev):
            self._generator = adapter.make_generator(self.seed, dev)
            self._generator_for = (adapter.name, dev)
        return adapter.random_uniform(self._generator, shape, x.dtype, dev)


class WeightedLayer(Layer):
    """A layer with a ``weight`` drawn by its initialiser ``self.init`` and an optional zero ``bias`` (Linear, Conv2d).

    Subclasses give :meth:`weight_spec` and call :meth:`build_weights` at the end of ``__init__``.
    """

    init: Any

    def weight_spec(self) -> tuple[tuple[int, ...], int, int]:
        """``(weight shape, fan_in, fan_out)``; the bias has ``weight shape[0]`` elements."""
        raise NotImplementedError

    def build_weights(self, *, bias: bool, dtype: Any, seed: int | None) -> None:
        """Create ``weight`` (and ``bias``) on the global backend, drawn from a generator seeded with ``seed``."""
        backend = self.new_parameter_home(dtype)
        self.weight = self.add_parameter("weight", None)
        self.bias = self.add_parameter("bias", None) if bias else None
        name = dtype_name(resolve_dtype(backend.xp, dtype))
        self._materialize(backends.host_rng(seed), backend.adapter, backend.device, name)

    def get_config(self) -> dict[str, Any]:
        """:meth:`Layer.get_config` with ``bias``, ``init`` (by name) and ``dtype`` (the weight's) as given to the constructor.

        ``seed`` is None: the weights are state, saved with the state dict. An ``init`` that is
        a callable of your own has no name to store and raises a TypeError.
        """
        where = f"{type(self).__name__}.get_config ({self!r}, name={self.name!r})"
        return self.config_from_signature(
            bias=self.bias is not None, init=_init_name(self.init, where), dtype=dtype_name(self.weight.dtype), seed=None
        )

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Layer:
        """:meth:`Layer.from_config`, reading ``init`` back from its name (a factory's too: ``"normal(0.2)"``)."""
        if isinstance(config, dict) and isinstance(config.get("init"), str):
            config = {**config, "init": _init_from_name(config["init"], f"{cls.__name__}.from_config")}
        return super().from_config(config)

    def reset_parameters(self, rng: Any = None) -> None:
        w = self.weight.data
        rng = backends.host_rng() if rng is None else rng
        self._materialize(rng, backends.adapter_for(w), self.weight.device, dtype_name(w.dtype))

    def _materialize(self, rng: Any, adapter: Any, device: Any, dtype: str) -> None:
        shape, fan_in, fan_out = self.weight_spec()
        w = self.init(rng, shape, fan_in, fan_out)
        self.weight.data, self.weight.grad = adapter.from_numpy(w.astype(dtype), device), None
        if self.bias is not None:
            b = rng.uniform(0.0, 0.0, (shape[0],))  # zeros, without naming numpy here
            self.bias.data, self.bias.grad = adapter.from_numpy(b.astype(dtype), device), None


def _jsonable(value: Any, where: str) -> Any:
    """``value`` as JSON types (tuples to lists, NumPy-like scalars to int/float); a TypeError naming ``where`` otherwise."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        if not math.isfinite(float(value)):
            raise TypeError(f"{where} is {value!r}, which JSON cannot hold")
        return float(value)
    if isinstance(value, (tuple, list)):
        return [_jsonable(v, where) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: _jsonable(v, where) for k, v in value.items()}
    raise TypeError(f"{where} is a {type(value).__name__} ({value!r}), which a JSON config cannot hold; override get_config")


# initialisers made by a factory are named after their call: "normal(0.2)", "uniform(-0.05, 0.05)"
_FACTORIES = {"normal": initializers.normal, "uniform": initializers.uniform, "constant": initializers.constant}
_FACTORIES["orthogonal"] = initializers.orthogonal
_CALL = re.compile(r"^(\w+)\((.*)\)$")


def _init_name(init: Any, where: str) -> str:
    """The name that :func:`_init_from_name` turns back into ``init``; a TypeError for a callable of the user's."""
    for name, known in initializers.INITIALIZERS.items():
        if known is init:
            return name
    name = getattr(init, "__name__", "")
    try:
        if _CALL.match(name) and _init_from_name(name, where).__name__ == name:
            return name  # made by a portnn.init factory
    except ValueError:
        pass
    raise TypeError(
        f"{where}: init is {init!r}, a callable of your own, which a saved architecture cannot name; "
        f"use a name from portnn.init.INITIALIZERS or a portnn.init factory, or save only the weights (save_weights)"
    )


def _init_from_name(name: str, where: str) -> Any:
    """The initialiser called ``name``: a key of ``INITIALIZERS`` or a factory call with numbers (never evaluated)."""
    if name in initializers.INITIALIZERS:
        return initializers.INITIALIZERS[name]
    match = _CALL.match(name)
    if match and match.group(1) in _FACTORIES:
        try:
            args = [float(a) for a in match.group(2).split(",")] if match.group(2).strip() else []
            return _FACTORIES[match.group(1)](*args)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{where}: cannot rebuild init {name!r}: {exc}") from None
    raise ValueError(f"{where}: unknown init {name!r}; expected a name from portnn.init.INITIALIZERS or a factory call")

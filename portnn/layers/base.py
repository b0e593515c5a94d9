"""Parameters and the layer protocol."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from array_api_compat import device as device_of

from .. import backends
from .._array import dtype_name

__all__ = ["Buffer", "Layer", "Parameter", "ShapeError"]

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
    """

    def __init__(self) -> None:
        self._params: dict[str, Parameter] = {}
        self._buffers: dict[str, Buffer] = {}

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

    # -- text -------------------------------------------------------------------------
    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"

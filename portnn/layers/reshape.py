"""Reshaping layers."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from array_api_compat import array_namespace

from .._checks import check_int
from .base import InputSpec, Layer, Shape

__all__ = ["Flatten", "Permute"]


class Flatten(Layer):
    """Flatten every axis from ``start_dim`` on: (N, 28, 28) -> (N, 784). A view where possible."""

    def __init__(self, start_dim: int = 1) -> None:
        super().__init__()
        self.start_dim = check_int("Flatten", "start_dim", start_dim, expected="an integer >= 1 (axis 0 is the batch)")
        self.input_spec = InputSpec(min_ndim=self.start_dim + 1)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        rest = input_shape[self.start_dim :]
        flat: int | None = 1
        for d in rest:
            flat = None if d is None or flat is None else flat * d
        return (*input_shape[: self.start_dim], flat)

    def call(self, x: Any, *, training: bool = False, input_grad: bool = True) -> tuple[Any, Callable[[Any], Any]]:
        xp = array_namespace(x)
        in_shape = tuple(x.shape)
        lead = in_shape[: self.start_dim]
        if None in lead:  # a batch of unknown size (an ONNX export): it takes the -1, the flattened size is a number
            y = xp.reshape(x, (*(-1 if d is None else d for d in lead), math.prod(in_shape[self.start_dim :])))
        else:
            y = xp.reshape(x, (*lead, -1))

        def backward(dy: Any) -> Any:
            return xp.reshape(dy, in_shape)

        return y, backward

    def extra_repr(self) -> str:
        return "" if self.start_dim == 1 else f"start_dim={self.start_dim}"


class Permute(Layer):
    """Reorder the axes after the batch, Keras's ``Permute``: ``dims`` numbers them from 1.

    ``Permute((2, 1))`` turns (batch, C, L) into (batch, L, C): the channels of a convolution
    become the features of a sequence of steps (a vision transformer's patch tokens), and
    back. PyTorch writes it ``x.permute(0, 2, 1)``. The output is a view where the library
    makes one; the backward pass applies the inverse order.

    Parameters
    ----------
    dims
        A permutation of ``1..k`` for inputs of ``k + 1`` axes (the batch stays axis 0).

    Examples
    --------
    >>> import numpy as np
    >>> import portnn as pn
    >>> pn.layers.Permute((2, 1))(np.zeros((4, 8, 49))).shape
    (4, 49, 8)
    >>> pn.layers.Permute((2, 1)).output_shape((None, 8, 49))
    (None, 49, 8)
    """

    def __init__(self, dims: tuple[int, ...]) -> None:
        super().__init__()
        if isinstance(dims, (str, bytes)) or not hasattr(dims, "__iter__"):
            raise TypeError(
                f"Permute: dims must be a tuple of axis numbers after the batch, counted from 1 (e.g. (2, 1)); got {dims!r}"
            )
        dims = tuple(
            check_int("Permute", "dims", d, minimum=None, expected="a tuple of ints counted from 1 (e.g. (2, 1))") for d in dims
        )
        if sorted(dims) != list(range(1, len(dims) + 1)):
            raise ValueError(
                f"Permute: dims must be a permutation of 1..{len(dims)} (the axes after the batch, counted from 1, "
                f"as in Keras); got {dims}" + (" (0 is the batch axis, which stays first)" if 0 in dims else "")
            )
        self.dims = dims
        self.input_spec = InputSpec(("batch", *(f"d{i}" for i in range(1, len(dims) + 1))))

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return (input_shape[0], *(input_shape[d] for d in self.dims))

    def call(self, x: Any, *, training: bool = False, input_grad: bool = True) -> tuple[Any, Callable[[Any], Any]]:
        xp = array_namespace(x)
        order = (0, *self.dims)
        inverse = tuple(order.index(axis) for axis in range(len(order)))
        y = xp.permute_dims(x, order)

        def backward(dy: Any) -> Any:
            return xp.permute_dims(dy, inverse) if input_grad else None

        return y, backward

    def extra_repr(self) -> str:
        return repr(self.dims)

"""Reshaping layers."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from array_api_compat import array_namespace

from .._checks import check_int
from .base import InputSpec, Layer, Shape

__all__ = ["Flatten"]


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

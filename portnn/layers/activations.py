"""Activation layers: stateless wrappers of :mod:`portnn.functional`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import functional as F
from .._checks import check_int, check_number
from .base import Layer

__all__ = ["LeakyReLU", "ReLU", "Sigmoid", "Softmax", "Tanh"]


class ReLU(Layer):
    """``max(x, 0)``."""

    def call(self, x: Any, *, training: bool = False, input_grad: bool = True) -> tuple[Any, Callable[[Any], Any]]:
        return F.relu(x)


class LeakyReLU(Layer):
    """``x`` where positive, ``negative_slope * x`` elsewhere (PyTorch's default slope 0.01)."""

    def __init__(self, negative_slope: float = 0.01) -> None:
        super().__init__()
        self.negative_slope = check_number("LeakyReLU", "negative_slope", negative_slope)

    def call(self, x: Any, *, training: bool = False, input_grad: bool = True) -> tuple[Any, Callable[[Any], Any]]:
        return F.leaky_relu(x, self.negative_slope)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}"


class Sigmoid(Layer):
    """Logistic sigmoid, computed as ``(1 + tanh(x/2)) / 2`` so it never overflows."""

    def call(self, x: Any, *, training: bool = False, input_grad: bool = True) -> tuple[Any, Callable[[Any], Any]]:
        return F.sigmoid(x)


class Tanh(Layer):
    """Hyperbolic tangent."""

    def call(self, x: Any, *, training: bool = False, input_grad: bool = True) -> tuple[Any, Callable[[Any], Any]]:
        return F.tanh(x)


class Softmax(Layer):
    """Softmax over the last axis.

    For training a classifier, end the model with logits (no Softmax) and use
    :class:`portnn.losses.CrossEntropy`, which fuses a stable log-softmax; ``model.fit``
    refuses a Softmax followed by CrossEntropy, which would apply softmax twice.
    """

    def __init__(self, axis: int = -1) -> None:
        super().__init__()
        self.axis = check_int("Softmax", "axis", axis, minimum=None, expected="an int (the axis to normalise over)")

    def call(self, x: Any, *, training: bool = False, input_grad: bool = True) -> tuple[Any, Callable[[Any], Any]]:
        return F.softmax(x, self.axis)

    def extra_repr(self) -> str:
        return "" if self.axis == -1 else f"axis={self.axis}"

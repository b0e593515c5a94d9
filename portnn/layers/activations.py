"""Activation layers: stateless wrappers of :mod:`portnn.functional`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import functional as F
from .._checks import check_int, check_number
from .base import Layer

__all__ = ["GELU", "LeakyReLU", "ReLU", "SiLU", "Sigmoid", "Softmax", "Tanh"]


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


class GELU(Layer):
    """The Gaussian error linear unit ``x * Phi(x)``, PyTorch's ``nn.GELU`` (the math is :func:`portnn.functional.gelu`).

    Parameters
    ----------
    approximate
        ``"none"`` (the default): the exact form, through the error function: the array
        library's own ``erf`` where it has one (PyTorch, CuPy, NumPy with SciPy), else W. J.
        Cody's rational approximation written with array-API operations
        (:func:`portnn.functional.erf`), equal to it to float64 rounding, so every backend
        computes the exact form. ``"tanh"``: ``0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x**3)))``,
        as in BERT and GPT-2.

    Examples
    --------
    >>> import numpy as np
    >>> import portnn as pn
    >>> pn.layers.GELU()(np.array([[-1.0, 0.0, 1.0]], dtype=np.float32))
    array([[-0.15865526,  0.        ,  0.8413447 ]], dtype=float32)
    >>> pn.layers.GELU(approximate="tanh")
    GELU(approximate='tanh')
    """

    def __init__(self, approximate: str = "none") -> None:
        super().__init__()
        if approximate not in ("none", "tanh"):
            error = ValueError if isinstance(approximate, str) else TypeError
            raise error(f"GELU: approximate must be 'none' (the exact form) or 'tanh'; got approximate={approximate!r}")
        self.approximate = approximate

    def call(self, x: Any, *, training: bool = False, input_grad: bool = True) -> tuple[Any, Callable[[Any], Any]]:
        return F.gelu(x, self.approximate)

    def extra_repr(self) -> str:
        return "" if self.approximate == "none" else f"approximate={self.approximate!r}"


class SiLU(Layer):
    """``x * sigmoid(x)`` (swish), PyTorch's ``nn.SiLU``: finite for every finite input (:func:`portnn.functional.silu`).

    Examples
    --------
    >>> import numpy as np
    >>> import portnn as pn
    >>> pn.layers.SiLU()(np.array([[-100.0, 0.0, 100.0]], dtype=np.float32))
    array([[ -0.,   0., 100.]], dtype=float32)
    """

    def call(self, x: Any, *, training: bool = False, input_grad: bool = True) -> tuple[Any, Callable[[Any], Any]]:
        return F.silu(x)

"""Elementwise activations and softmax. Each returns ``(y, backward)`` with ``backward(dy) -> dx``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from array_api_compat import array_namespace

from .._array import scalar

Backward = Callable[[Any], Any]


def relu(x: Any) -> tuple[Any, Backward]:
    r"""``max(x, 0)``; backward: :math:`dx = dy \cdot [x > 0]`.

    Examples
    --------
    >>> import numpy as np
    >>> from portnn.functional import relu
    >>> relu(np.array([-1.0, 2.0]))[0]
    array([0., 2.])
    """
    xp = array_namespace(x)
    y = xp.maximum(x, scalar(xp, 0.0, x))

    def backward(dy: Any) -> Any:
        return dy * xp.astype(y > 0, dy.dtype)

    return y, backward


def leaky_relu(x: Any, negative_slope: float = 0.01) -> tuple[Any, Backward]:
    r"""``x`` where positive, ``negative_slope * x`` elsewhere; backward: :math:`dx = dy \cdot (s + (1-s)[x > 0])`."""
    xp = array_namespace(x)
    slope = xp.astype(x > 0, x.dtype) * (1.0 - negative_slope) + negative_slope
    y = x * slope

    def backward(dy: Any) -> Any:
        return dy * slope

    return y, backward


def sigmoid(x: Any) -> tuple[Any, Backward]:
    r""":math:`\sigma(x) = (1 + \tanh(x/2)) / 2`, which never overflows; backward: :math:`dx = dy\,\sigma(1-\sigma)`."""
    xp = array_namespace(x)
    y = 0.5 * xp.tanh(0.5 * x) + 0.5

    def backward(dy: Any) -> Any:
        return dy * y * (1.0 - y)

    return y, backward


def tanh(x: Any) -> tuple[Any, Backward]:
    r""":math:`\tanh x`; backward: :math:`dx = dy\,(1 - y^2)`."""
    xp = array_namespace(x)
    y = xp.tanh(x)

    def backward(dy: Any) -> Any:
        return dy * (1.0 - y * y)

    return y, backward


def softmax(x: Any, axis: int = -1) -> tuple[Any, Backward]:
    r"""Softmax along ``axis`` (max-shifted, so extreme inputs do not overflow).

    Backward: :math:`dx = y \odot (dy - \sum_j dy_j y_j)`.
    """
    xp = array_namespace(x)
    e = xp.exp(x - xp.max(x, axis=axis, keepdims=True))
    y = e / xp.sum(e, axis=axis, keepdims=True)

    def backward(dy: Any) -> Any:
        return y * (dy - xp.sum(dy * y, axis=axis, keepdims=True))

    return y, backward

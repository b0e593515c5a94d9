"""Affine map."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from array_api_compat import array_namespace

Backward = Callable[[Any], tuple[Any, Any, Any]]


def linear(x: Any, weight: Any, bias: Any = None, *, input_grad: bool = True, param_grad: bool = True) -> tuple[Any, Backward]:
    r"""``y = x @ weight.T + bias`` for ``x`` of shape (N, in), ``weight`` of shape (out, in).

    Backward, for upstream gradient ``dy`` of shape (N, out):

    .. math:: dx = dy\,W, \qquad dW = dy^\top x, \qquad db = \textstyle\sum_n dy_n

    Returns
    -------
    y, backward
        ``backward(dy)`` returns ``(dx, dweight, dbias)``: ``dbias`` is None without a bias,
        ``dx`` None with ``input_grad=False`` (that skips one of the three matrix products),
        ``dweight`` and ``dbias`` None with ``param_grad=False`` (a frozen layer).

    Examples
    --------
    >>> import numpy as np
    >>> from portnn.functional import linear
    >>> y, backward = linear(np.ones((2, 3)), np.ones((4, 3)), np.zeros(4))
    >>> y.shape, backward(np.ones((2, 4)))[1].shape
    ((2, 4), (4, 3))
    """
    xp = array_namespace(x, weight)
    y = x @ weight.T
    if bias is not None:
        y += bias  # y is fresh: add in place, no second (N, out) buffer

    def backward(dy: Any) -> tuple[Any, Any, Any]:
        dx = dy @ weight if input_grad else None
        dw = dy.T @ x if param_grad else None
        db = xp.sum(dy, axis=0) if bias is not None and param_grad else None
        return dx, dw, db

    return y, backward

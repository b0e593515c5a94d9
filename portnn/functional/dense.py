"""Affine map."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from array_api_compat import array_namespace

Backward = Callable[[Any], tuple[Any, Any, Any]]


def linear(x: Any, weight: Any, bias: Any = None, *, input_grad: bool = True, param_grad: bool = True) -> tuple[Any, Backward]:
    r"""``y = x @ weight.T + bias`` for ``x`` of shape (N, in) or (N, ..., in), ``weight`` of shape (out, in).

    An input of more axes is mapped along its last one, as PyTorch's ``F.linear``: the math
    below runs on its (N * ..., in) view. Backward, for upstream gradient ``dy`` of shape (N, out):

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
    if x.ndim != 2:
        return _linear_nd(xp, x, weight, bias, input_grad=input_grad, param_grad=param_grad)
    y = x @ weight.T
    if bias is not None:
        y += bias  # y is fresh: add in place, no second (N, out) buffer

    def backward(dy: Any) -> tuple[Any, Any, Any]:
        dx = dy @ weight if input_grad else None
        dw = dy.T @ x if param_grad else None
        db = xp.sum(dy, axis=0) if bias is not None and param_grad else None
        return dx, dw, db

    return y, backward


def _linear_nd(xp: Any, x: Any, weight: Any, bias: Any, *, input_grad: bool, param_grad: bool) -> tuple[Any, Backward]:
    """:func:`linear` on (N, ..., in): the 2-D pass on the (N * ..., in) view, reshaped back (views for contiguous arrays)."""
    in_shape = tuple(x.shape)
    # a batch of unknown size (an ONNX export) takes the -1; the other sizes are numbers
    lead = tuple(-1 if d is None else d for d in in_shape[:-1])
    y2, backward_2d = linear(xp.reshape(x, (-1, in_shape[-1])), weight, bias, input_grad=input_grad, param_grad=param_grad)
    y = xp.reshape(y2, (*lead, int(weight.shape[0])))

    def backward(dy: Any) -> tuple[Any, Any, Any]:
        dx, dw, db = backward_2d(xp.reshape(dy, (-1, int(weight.shape[0]))))
        return (None if dx is None else xp.reshape(dx, in_shape)), dw, db

    return y, backward

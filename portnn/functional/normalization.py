"""Batch normalisation over the batch (and length) axes, per channel (axis 1); layer normalisation over the trailing axes."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from array_api_compat import array_namespace

from .. import backends
from .._array import dtype_name
from .conv import _as_int

__all__ = ["batch_moments", "batch_norm", "layer_norm"]

Backward = Callable[[Any], tuple[Any, Any, Any]]


def _axes(x: Any) -> tuple[int, ...]:
    """The axes reduced for per-channel statistics: every axis but the channel axis 1."""
    if x.ndim not in (2, 3):
        raise ValueError(f"batch_norm takes input of shape (N, C) or (N, C, L); got shape {tuple(x.shape)}")
    return (0,) if x.ndim == 2 else (0, 2)


def _per_channel(xp: Any, v: Any, x: Any) -> Any:
    """A (C,) array shaped to broadcast against ``x``: (C,) for (N, C), (C, 1) for (N, C, L)."""
    return v if x.ndim == 2 else xp.reshape(v, (v.shape[0], 1))


def batch_moments(x: Any) -> tuple[Any, Any]:
    """Per-channel mean and biased variance of ``x`` (N, C) or (N, C, L), each of shape (C,).

    The variance divides by the number of values per channel ``m``; multiply it by
    ``m / (m - 1)`` for the unbiased estimate that running statistics track.

    Examples
    --------
    >>> import numpy as np
    >>> from portnn.functional import batch_moments
    >>> batch_moments(np.array([[1.0, 0.0], [3.0, 0.0]]))
    (array([2., 0.]), array([1., 0.]))
    """
    xp = array_namespace(x)
    axes = _axes(x)
    fast = backends.adapter_for(x).batch_moments(x)  # Adapter.batch_moments, or None
    if fast is not None:
        return fast
    mean = xp.mean(x, axis=axes)
    xc = x - _per_channel(xp, mean, x)
    return mean, xp.mean(xc * xc, axis=axes)


def batch_norm(
    x: Any,
    weight: Any = None,
    bias: Any = None,
    *,
    mean: Any = None,
    var: Any = None,
    training: bool = True,
    eps: float = 1e-5,
    input_grad: bool = True,
    param_grad: bool = True,
) -> tuple[Any, Backward]:
    r"""Normalise each channel of ``x`` (N, C) or (N, C, L), then scale by ``weight`` and shift by ``bias``.

    .. math:: \hat x = (x - \mu)\,/\,\sqrt{\sigma^2 + \varepsilon}, \qquad y = \gamma\,\hat x + \beta

    In training mode :math:`\mu, \sigma^2` are the batch mean and biased variance of each
    channel over its :math:`m` values (``N`` or ``N * L``), so they depend on ``x`` and the
    input gradient flows through them; with sums over those :math:`m` values,

    .. math:: d\beta = \textstyle\sum dy, \qquad d\gamma = \textstyle\sum dy\,\hat x, \qquad
              dx = \frac{\gamma}{\sqrt{\sigma^2 + \varepsilon}}
                   \Big(dy - \frac{d\beta}{m} - \hat x\,\frac{d\gamma}{m}\Big).

    In evaluation mode :math:`\mu, \sigma^2` are given constants (the running statistics) and
    :math:`dx = \gamma\,dy / \sqrt{\sigma^2 + \varepsilon}`, with the same :math:`d\gamma, d\beta`.

    Parameters
    ----------
    x
        Input (N, C) or (N, C, L).
    weight, bias
        Per-channel scale :math:`\gamma` and shift :math:`\beta`, shape (C,), or None (1 and 0).
    mean, var
        Training mode: the batch moments of ``x``, computed when None; pass those of
        :func:`batch_moments` (x) to share them with a running-statistics update.
        Evaluation mode: the running mean and variance, required.
    training
        Batch statistics (True) or the given ``mean``/``var`` (False).
    eps
        Added to the variance before the square root.
    input_grad
        With False, ``backward`` skips ``dx`` and returns None in its place.
    param_grad
        With False (a frozen layer), ``backward`` returns None for ``dweight`` and ``dbias``
        and, in evaluation mode, skips their sums.

    Returns
    -------
    y, backward
        ``backward(dy)`` returns ``(dx, dweight, dbias)``; ``dweight``/``dbias`` are None
        without ``weight``/``bias``.

    Examples
    --------
    >>> import numpy as np
    >>> from portnn.functional import batch_norm
    >>> y, backward = batch_norm(np.array([[1.0], [3.0]]), eps=0.0)
    >>> y
    array([[-1.],
           [ 1.]])
    """
    xp = array_namespace(x)
    if training:
        if mean is None or var is None:
            mean, var = batch_moments(x)
    elif mean is None or var is None:
        raise ValueError("batch_norm(training=False) normalises with given statistics: pass mean= and var= (running stats)")
    fast = backends.adapter_for(x).batch_norm(
        x, weight, bias, mean=mean, var=var, training=training, eps=eps, input_grad=input_grad, param_grad=param_grad
    )
    if fast is not None:  # Adapter.batch_norm: the same operations with the library's own buffers
        return fast
    return _batch_norm_generic(xp, x, weight, bias, mean, var, None, training, eps, input_grad, param_grad)


def batch_norm_training(
    x: Any, weight: Any = None, bias: Any = None, *, eps: float = 1e-5, input_grad: bool = True, param_grad: bool = True
) -> tuple[Any, Backward, Any, Any]:
    """:func:`batch_norm` in training mode with the batch moments it computes: ``(y, backward, mean, var)``.

    The same values as :func:`batch_moments` followed by :func:`batch_norm` with them; the
    generic path computes ``x - mean`` once for both (one operation fewer).
    """
    xp = array_namespace(x)
    adapter = backends.adapter_for(x)
    moments = adapter.batch_moments(x)  # Adapter.batch_moments, or None
    if moments is not None:
        mean, var = moments
        y, backward = batch_norm(
            x, weight, bias, mean=mean, var=var, training=True, eps=eps, input_grad=input_grad, param_grad=param_grad
        )
        return y, backward, mean, var
    axes = _axes(x)
    mean = xp.mean(x, axis=axes)
    centred = x - _per_channel(xp, mean, x)
    var = xp.mean(centred * centred, axis=axes)
    fast = adapter.batch_norm(
        x, weight, bias, mean=mean, var=var, training=True, eps=eps, input_grad=input_grad, param_grad=param_grad
    )
    if fast is None:
        fast = _batch_norm_generic(xp, x, weight, bias, mean, var, centred, True, eps, input_grad, param_grad)
    return (*fast, mean, var)


def _batch_norm_generic(
    xp: Any,
    x: Any,
    weight: Any,
    bias: Any,
    mean: Any,
    var: Any,
    centred: Any,
    training: bool,
    eps: float,
    input_grad: bool,
    param_grad: bool,
) -> tuple[Any, Backward]:
    """:func:`batch_norm`'s array-API path; ``centred`` is ``x - mean`` when the caller has it (else None)."""
    axes = _axes(x)
    inv_std = (var + eps) ** -0.5  # (C,): one power, not a square root and a division
    if centred is None:
        centred = x - _per_channel(xp, mean, x)
    xhat = centred * _per_channel(xp, inv_std, x)
    del centred
    scale = inv_std if weight is None else weight * inv_std  # dy -> dx factor, per channel
    y = xhat if weight is None else xhat * _per_channel(xp, weight, x)
    if bias is not None:
        y = y + _per_channel(xp, bias, x)
    # values per channel, for the training-mode dx; evaluation never needs the batch size (unknown in an ONNX export)
    m = x.shape[0] * (x.shape[2] if x.ndim == 3 else 1) if training else None

    def backward(dy: Any) -> tuple[Any, Any, Any]:
        sums = param_grad or (input_grad and training)  # training-mode dx needs them too
        db = xp.sum(dy, axis=axes) if sums else None
        dw = xp.sum(dy * xhat, axis=axes) if sums else None
        dx = None
        if input_grad:
            if training:
                centred = dy - _per_channel(xp, db * (1.0 / m), x) - xhat * _per_channel(xp, dw * (1.0 / m), x)
                dx = centred * _per_channel(xp, scale, x)
            else:
                dx = dy * _per_channel(xp, scale, x)
        return dx, (dw if weight is not None and param_grad else None), (db if bias is not None and param_grad else None)

    return y, backward


def normalized_shape_tuple(value: Any, where: str = "layer_norm") -> tuple[int, ...]:
    """``normalized_shape`` (a positive int or a sequence of them) as a tuple; a TypeError or ValueError naming ``where``.

    Examples
    --------
    >>> from portnn.functional.normalization import normalized_shape_tuple
    >>> normalized_shape_tuple(64), normalized_shape_tuple([4, 5])
    ((64,), (4, 5))
    """
    items = list(value) if isinstance(value, (tuple, list)) else [value]
    sizes = [_as_int(v) for v in items]
    if any(n is None for n in sizes):
        raise TypeError(
            f"{where}: normalized_shape must be a positive int or a tuple of them (the trailing axes to normalise); "
            f"got normalized_shape={value!r}"
        )
    if not sizes or any(n < 1 for n in sizes):
        raise ValueError(
            f"{where}: normalized_shape must be a positive int or a non-empty tuple of positive ints; "
            f"got normalized_shape={value!r}"
        )
    return tuple(sizes)  # type: ignore[arg-type]


def layer_norm(
    x: Any,
    normalized_shape: Any,
    weight: Any = None,
    bias: Any = None,
    *,
    eps: float = 1e-5,
    input_grad: bool = True,
    param_grad: bool = True,
) -> tuple[Any, Backward]:
    r"""Normalise ``x`` over its trailing ``normalized_shape`` axes, then scale and shift elementwise: PyTorch's ``layer_norm``.

    Each of the :math:`M` slices ``x[i, ...]`` of :math:`D = \prod` ``normalized_shape`` values
    is normalised with its own mean and biased variance:

    .. math:: \hat x = (x - \mu)\,/\,\sqrt{\sigma^2 + \varepsilon}, \qquad y = \gamma \odot \hat x + \beta

    with :math:`\gamma, \beta` of shape ``normalized_shape``. Backward, with :math:`g = dy \odot \gamma`
    and :math:`\langle\cdot\rangle` the mean over a slice's :math:`D` values,

    .. math:: d\beta = \textstyle\sum_i dy_i, \qquad d\gamma = \textstyle\sum_i dy_i \odot \hat x_i, \qquad
              dx = \frac{1}{\sqrt{\sigma^2 + \varepsilon}}\big(g - \langle g\rangle - \hat x\,\langle g \odot \hat x\rangle\big).

    The statistics are taken in two passes (mean, then the mean square of ``x - mean``), as
    stable as PyTorch's; the backward keeps :math:`\hat x` and the per-slice :math:`1/\sqrt{\sigma^2+\varepsilon}`.

    Parameters
    ----------
    x
        Input whose last axes are ``normalized_shape``: (..., \*normalized_shape).
    normalized_shape
        An int or a tuple of ints.
    weight, bias
        :math:`\gamma` and :math:`\beta`, of shape ``normalized_shape``, or None (1 and 0).
    eps
        Added to the variance before the square root.
    input_grad
        With False, ``backward`` skips ``dx`` and returns None in its place.
    param_grad
        With False (a frozen layer), ``backward`` returns None for ``dweight`` and ``dbias``.

    Returns
    -------
    y, backward
        ``backward(dy)`` returns ``(dx, dweight, dbias)``; ``dweight``/``dbias`` are None
        without ``weight``/``bias``.

    Examples
    --------
    >>> import numpy as np
    >>> from portnn.functional import layer_norm
    >>> y, backward = layer_norm(np.array([[1.0, 3.0], [0.0, 4.0]]), 2, eps=0.0)
    >>> y
    array([[-1.,  1.],
           [-1.,  1.]])
    >>> backward(np.array([[1.0, 0.0], [0.0, 0.0]]))[0]
    array([[0., 0.],
           [0., 0.]])
    """
    shape = normalized_shape_tuple(normalized_shape)
    arrays = [a for a in (x, weight, bias) if a is not None]
    xp = array_namespace(*arrays)
    k, full = len(shape), tuple(x.shape)
    if x.ndim < k or any(d is not None and d != n for d, n in zip(full[x.ndim - k :], shape)):
        raise ValueError(
            f"layer_norm: input of shape {full} does not end in normalized_shape {shape}; "
            "pass the sizes of the input's last axes as normalized_shape"
        )
    for name, a in (("weight", weight), ("bias", bias)):
        if a is not None and tuple(a.shape) != shape:
            raise ValueError(f"layer_norm: {name} of shape {tuple(a.shape)} does not fit normalized_shape {shape}")
        if a is not None and a.dtype != x.dtype:
            raise TypeError(f"layer_norm: input is {dtype_name(x.dtype)} but {name} is {dtype_name(a.dtype)}; cast one of them")
    d = math.prod(shape)
    flat = xp.reshape(x, (-1, d))  # (M, D); -1: the batch, whose size may be unknown (an ONNX export)
    inplace = backends.adapter_for(x).inplace  # fresh arrays are updated in place where the library allows it
    xhat = flat - xp.mean(flat, axis=1, keepdims=True)
    # row dot products (vecdot: one pass, no temporary; 6x a product and a mean on NumPy)
    inv_std = 1.0 / xp.sqrt(xp.vecdot(xhat, xhat, axis=-1)[:, None] * (1.0 / d) + eps)  # (M, 1)
    if inplace:
        xhat *= inv_std
    else:
        xhat = xhat * inv_std
    w = None if weight is None else xp.reshape(weight, (d,))
    y = xhat if w is None else xhat * w
    if bias is not None:
        if inplace and w is not None:
            y += xp.reshape(bias, (d,))
        else:
            y = y + xp.reshape(bias, (d,))
    y = xp.reshape(y, (-1, *full[1:]) if x.ndim > k else full)

    def backward(dy: Any) -> tuple[Any, Any, Any]:
        dy2 = xp.reshape(dy, (-1, d))
        dw = xp.reshape(xp.sum(dy2 * xhat, axis=0), shape) if weight is not None and param_grad else None
        db = xp.reshape(xp.sum(dy2, axis=0), shape) if bias is not None and param_grad else None
        if not input_grad:
            return None, dw, db
        g = dy2 if w is None else dy2 * w
        # dx = inv_std (g - <g> - xhat <g xhat>), the per-row factors folded first: three full passes
        mean_g = xp.mean(g, axis=1, keepdims=True) * inv_std
        mean_gx = xp.vecdot(g, xhat, axis=-1)[:, None] * (1.0 / d) * inv_std
        dx = g * inv_std
        if inplace:
            dx -= mean_g
            dx -= xhat * mean_gx
        else:
            dx = dx - mean_g - xhat * mean_gx
        return xp.reshape(dx, full), dw, db

    return y, backward

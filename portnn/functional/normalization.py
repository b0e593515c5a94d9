"""Batch normalisation over the batch (and length) axes, per channel (axis 1)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from array_api_compat import array_namespace

__all__ = ["batch_moments", "batch_norm"]

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
    axes = _axes(x)
    if training:
        if mean is None or var is None:
            mean, var = batch_moments(x)
    elif mean is None or var is None:
        raise ValueError("batch_norm(training=False) normalises with given statistics: pass mean= and var= (running stats)")
    inv_std = 1.0 / xp.sqrt(var + eps)  # (C,)
    xhat = (x - _per_channel(xp, mean, x)) * _per_channel(xp, inv_std, x)
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

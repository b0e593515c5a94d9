"""Losses. Each returns ``(loss, backward)``: ``loss`` is a 0-d array, ``backward()`` the gradient of the input.

Reductions follow PyTorch: ``"mean"`` divides by the number of examples (CrossEntropy) or
elements (MSE, BCE), so the gradient a model sees is already averaged over the batch and a
learning rate means the same thing at every batch size.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from array_api_compat import array_namespace, device, size

Backward = Callable[[], Any]

#: How far from 0 and 1 :func:`binary_cross_entropy` clips probabilities (Keras's ``epsilon()``).
EPSILON = 1e-7


def log_softmax(z: Any, axis: int = -1) -> Any:
    r"""Numerically stable :math:`z - \log\sum e^{z}` (max-shifted).

    The shift keeps every :math:`e^{z - \max z}` in (0, 1]. A log-probability below the
    dtype's range (float32 logits of opposite signs near ±3e38) is ``-inf``, its correctly
    rounded value, as in PyTorch; :func:`cross_entropy` gives such a class weight only where
    the target does.

    Examples
    --------
    >>> import numpy as np
    >>> from portnn.functional import log_softmax
    >>> log_softmax(np.array([[0.0, 0.0]])).round(4).tolist()
    [[-0.6931, -0.6931]]
    """
    xp = array_namespace(z)
    shifted = z - xp.max(z, axis=axis, keepdims=True)
    return shifted - xp.log(xp.sum(xp.exp(shifted), axis=axis, keepdims=True))


def one_hot(labels: Any, num_classes: int, dtype: Any) -> Any:
    """``labels`` (N,) of integers as (N, num_classes) rows of ``dtype`` (a comparison, no scatter)."""
    xp = array_namespace(labels)
    classes = xp.arange(num_classes, device=device(labels))
    return xp.astype(labels[:, None] == classes[None, :], dtype)


def _reduce(xp: Any, per_item: Any, count: int, reduction: str) -> tuple[Any, float]:
    if reduction == "mean":
        return xp.sum(per_item) / count, 1.0 / count
    if reduction == "sum":
        return xp.sum(per_item), 1.0
    raise ValueError(f"reduction must be 'mean' or 'sum'; got {reduction!r}")


def cross_entropy(logits: Any, target: Any, *, label_smoothing: float = 0.0, reduction: str = "mean") -> tuple[Any, Backward]:
    r"""Softmax cross-entropy fused with log-softmax, from logits.

    ``target`` holds integer class indices (N,) or probabilities (N, C). Logits of a sequence,
    (N, T, C) (any (N, ..., C), classes last as in Keras), take targets (N, T) or (N, T, C):
    every position is one example, so ``"mean"`` averages over all N * T of them, as PyTorch's
    ``cross_entropy`` on the flattened (N * T, C). With label smoothing
    :math:`\varepsilon`, the target becomes :math:`(1-\varepsilon)\,t + \varepsilon / C`. A term of
    target weight 0 counts as 0 (:math:`0 \log 0 = 0`), so finite logits as far apart as ±3e38 in
    float32 give PyTorch's loss, 0 when the label's logit is the largest (no NaN).

    .. math:: L = -\frac{1}{N}\sum_n \sum_c t_{nc} \log p_{nc}, \qquad
              \frac{\partial L}{\partial z_{nc}} = \frac{1}{N}\,\big(p_{nc} \textstyle\sum_k t_{nk} - t_{nc}\big)

    Examples
    --------
    >>> import numpy as np
    >>> from portnn.functional import cross_entropy
    >>> loss, backward = cross_entropy(np.array([[0.0, 0.0]]), np.array([1]))
    >>> round(float(loss), 4)
    0.6931
    >>> loss, backward = cross_entropy(np.zeros((2, 5, 3)), np.zeros((2, 5), dtype=int))  # 2 sequences of 5 steps
    >>> round(float(loss), 4), backward().shape
    (1.0986, (2, 5, 3))
    """
    xp = array_namespace(logits, target)
    if logits.ndim > 2:  # (N, ..., C), classes last: every position is an example
        shape = tuple(logits.shape)
        c = shape[-1]
        flat_target = xp.reshape(target, (-1,) if xp.isdtype(target.dtype, "integral") else (-1, c))
        loss, backward_2d = cross_entropy(
            xp.reshape(logits, (-1, c)), flat_target, label_smoothing=label_smoothing, reduction=reduction
        )
        return loss, lambda: xp.reshape(backward_2d(), shape)
    n, c = logits.shape
    if xp.isdtype(target.dtype, "integral") and not label_smoothing:
        return _cross_entropy_labels(xp, logits, target, reduction)
    if xp.isdtype(target.dtype, "integral"):
        t = one_hot(target, c, logits.dtype)
        row_sum = None  # rows sum to one
    else:
        t = target
        row_sum = xp.sum(t, axis=1, keepdims=True)
    if label_smoothing:
        t = t * (1.0 - label_smoothing) + label_smoothing / c
        if row_sum is not None:
            row_sum = xp.sum(t, axis=1, keepdims=True)
    logp = log_softmax(logits)
    # 0 log 0 = 0: a class without target weight adds nothing, even where its log-probability is -inf (0 * -inf is NaN)
    zero = xp.zeros((), dtype=logp.dtype, device=device(logp))
    loss, scale = _reduce(xp, -(t * xp.where(t == 0, zero, logp)), n, reduction)

    def backward() -> Any:
        p = xp.exp(logp)
        if row_sum is not None:
            p = p * row_sum
        return (p - t) * scale

    return loss, backward


def _cross_entropy_labels(xp: Any, logits: Any, target: Any, reduction: str) -> tuple[Any, Backward]:
    r""":func:`cross_entropy` for class indices (N,) without smoothing: the label's log-probability picked, no one-hot.

    :math:`L_n = \log\sum_c e^{z_{nc} - m_n} - (z_{n y_n} - m_n)`: nine array operations
    forward and five backward (a launch each on a GPU), where the one-hot form took sixteen
    and three. Only the label's log-probability enters, so a log-probability of ``-inf``
    elsewhere adds nothing.
    """
    n, c = logits.shape
    shifted = logits - xp.max(logits, axis=1, keepdims=True)
    exp = xp.exp(shifted)
    total = xp.sum(exp, axis=1, keepdims=True)
    picked = xp.take_along_axis(shifted, xp.reshape(target, (n, 1)), axis=1)
    per_item = xp.log(total) - picked
    loss, scale = _reduce(xp, per_item, n, reduction)

    def backward() -> Any:
        p = exp / total
        is_label = xp.reshape(target, (n, 1)) == _classes(xp, c, device(logits))
        return xp.where(is_label, p - 1.0, p) * scale

    return loss, backward


#: ``arange(C)`` per (namespace, device, C): made on the device once, not at every step.
_CLASSES: dict[tuple[str, str, int], Any] = {}


def _classes(xp: Any, c: int, dev: Any) -> Any:
    key = (xp.__name__, repr(dev), c)
    classes = _CLASSES.get(key)
    if classes is None:
        classes = _CLASSES[key] = xp.reshape(xp.arange(c, device=dev), (1, c))
    return classes


def mse(y: Any, target: Any, *, reduction: str = "mean") -> tuple[Any, Backward]:
    r"""Mean squared error over all elements; :math:`\partial L / \partial y = 2 (y - t) / n`."""
    xp = array_namespace(y, target)
    diff = y - target
    loss, scale = _reduce(xp, diff * diff, size(diff), reduction)

    def backward() -> Any:
        return diff * (2.0 * scale)

    return loss, backward


def binary_cross_entropy_with_logits(z: Any, target: Any, *, reduction: str = "mean") -> tuple[Any, Backward]:
    r"""Binary cross-entropy from logits, stable for any :math:`z`.

    .. math:: L = \max(z, 0) - z t + \log(1 + e^{-|z|}), \qquad \partial L / \partial z = \sigma(z) - t
    """
    xp = array_namespace(z, target)
    zero = xp.zeros((), dtype=z.dtype, device=device(z))
    per_item = xp.maximum(z, zero) - z * target + xp.log1p(xp.exp(-xp.abs(z)))
    loss, scale = _reduce(xp, per_item, size(z), reduction)

    def backward() -> Any:
        return ((0.5 * xp.tanh(0.5 * z) + 0.5) - target) * scale

    return loss, backward


def binary_cross_entropy(p: Any, target: Any, *, epsilon: float = EPSILON, reduction: str = "mean") -> tuple[Any, Backward]:
    r"""Binary cross-entropy from probabilities (PyTorch's ``binary_cross_entropy``, Keras's ``from_logits=False``).

    ``p`` is clipped to :math:`[\varepsilon, 1 - \varepsilon]` first (as Keras does), so that a
    saturated probability of exactly 0 or 1 gives a large, finite loss instead of ``inf``:

    .. math:: \hat p = \mathrm{clip}(p, \varepsilon, 1 - \varepsilon), \qquad
              L = -\big(t \log \hat p + (1 - t) \log(1 - \hat p)\big), \qquad
              \frac{\partial L}{\partial p} = \frac{\hat p - t}{\hat p\,(1 - \hat p)}\,[\varepsilon \le p \le 1 - \varepsilon]

    The gradient is that of the clipped function: zero where ``p`` was clipped. From logits,
    :func:`binary_cross_entropy_with_logits` is exact and stable everywhere: prefer it when the
    model can output logits.

    Examples
    --------
    >>> import numpy as np
    >>> from portnn.functional.losses import binary_cross_entropy
    >>> loss, backward = binary_cross_entropy(np.array([[0.8], [0.4]]), np.array([[1.0], [0.0]]))
    >>> round(float(loss), 4)  # (-log 0.8 - log 0.6) / 2
    0.367
    >>> backward().round(4).tolist()  # (p - t) / (p (1 - p)) / 2
    [[-0.625], [0.8333]]
    """
    xp = array_namespace(p, target)
    clipped = xp.clip(p, epsilon, 1.0 - epsilon)
    per_item = -(target * xp.log(clipped) + (1.0 - target) * xp.log(1.0 - clipped))
    loss, scale = _reduce(xp, per_item, size(p), reduction)

    def backward() -> Any:
        inside = xp.astype(clipped == p, p.dtype)  # the clip's derivative: 1 where p was kept, 0 where it was clipped
        return (clipped - target) / (clipped * (1.0 - clipped)) * (inside * scale)

    return loss, backward

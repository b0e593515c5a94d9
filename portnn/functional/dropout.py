"""Inverted dropout, from uniform draws handed in (so it is deterministic and testable)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from array_api_compat import array_namespace

__all__ = ["check_dropout_p", "dropout"]

Backward = Callable[[Any], Any]


def check_dropout_p(p: Any, *, where: str = "dropout") -> float:
    """Return ``p`` as a float after checking ``0 <= p <= 1``; raise a ValueError naming ``where`` otherwise."""
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
        raise ValueError(f"{where}: p is the probability of zeroing an element, so 0 <= p <= 1; got p={p!r}")
    return float(p)


def dropout(x: Any, u: Any, *, p: float = 0.5, input_grad: bool = True) -> tuple[Any, Backward]:
    r"""Zero each element of ``x`` where its uniform draw ``u < p``; scale the survivors by :math:`1/(1-p)`.

    PyTorch's inverted dropout: the expected output equals the input, so nothing needs
    rescaling at evaluation time (where dropout is the identity and this is not called).

    .. math:: m = [u \ge p] / (1 - p), \qquad y = x \odot m, \qquad dx = dy \odot m

    Parameters
    ----------
    x
        Input of any shape.
    u
        Uniform draws in [0, 1) of ``x``'s shape, device and dtype (a layer draws them with
        its adapter's ``random_uniform``). Ignored, and may be None, when ``p`` is 0 or 1.
    p
        Probability of zeroing an element. ``p = 0`` is the identity; ``p = 1`` gives zeros
        (no division by zero).
    input_grad
        With False, ``backward`` returns None.

    Returns
    -------
    y, backward
        ``backward(dy)`` returns ``dx = dy * mask``; the mask is the only array it keeps.

    Examples
    --------
    >>> import numpy as np
    >>> from portnn.functional import dropout
    >>> y, backward = dropout(np.ones(4), np.array([0.1, 0.6, 0.4, 0.9]), p=0.5)
    >>> y
    array([0., 2., 0., 2.])
    """
    p = check_dropout_p(p)
    if p == 0.0:
        return x, (lambda dy: dy) if input_grad else (lambda dy: None)
    xp = array_namespace(x)
    if p == 1.0:
        mask = xp.zeros_like(x)  # x * 0 keeps NaN as NaN, as PyTorch does
    else:
        if tuple(u.shape) != tuple(x.shape):
            raise ValueError(f"dropout: the uniform draws have shape {tuple(u.shape)} but x has {tuple(x.shape)}")
        mask = xp.astype(u >= p, x.dtype) * (1.0 / (1.0 - p))
    y = x * mask

    def backward(dy: Any) -> Any:
        return dy * mask if input_grad else None

    return y, backward

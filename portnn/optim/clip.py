"""Gradient clipping, as ``torch.nn.utils.clip_grad_norm_`` and ``clip_grad_value_``."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from array_api_compat import array_namespace, device

from .. import backends
from .._checks import check_number
from ..layers.base import Parameter
from .optimizer import assign, scale_add

__all__ = ["clip_grad_norm_", "clip_grad_value_"]


def _as_list(parameters: Parameter | Iterable[Parameter], where: str) -> list[Parameter]:
    params = [parameters] if isinstance(parameters, Parameter) else list(parameters)
    for p in params:
        if not isinstance(p, Parameter):
            raise TypeError(f"{where} takes portnn Parameters (model.parameters()); got {type(p).__name__}")
    return params


def _vector_norm(xp: Any, x: Any, ord: float) -> Any:
    """The ``ord``-norm of ``x`` flattened, through ``xp.linalg`` where the namespace has it."""
    if hasattr(xp, "linalg"):
        return xp.asarray(xp.linalg.vector_norm(x, ord=ord))
    a = xp.abs(x)
    if ord == math.inf:
        return xp.max(a)
    return xp.sum(a**ord) ** (1 / ord)


def clip_grad_norm_(parameters: Parameter | Iterable[Parameter], max_norm: float, norm_type: float = 2.0) -> Any:
    r"""Scale all gradients together so that their global norm is at most ``max_norm``, in place.

    With :math:`N = \|(\|g_1\|_p, \dots, \|g_k\|_p)\|_p` the norm of all gradients seen as one
    vector, every gradient is multiplied by :math:`\min(1, \text{max\_norm} / (N + 10^{-6}))`,
    as PyTorch does (the factor is applied even when it is 1, so the device never waits on
    the host for a comparison). Parameters whose ``grad`` is None are skipped.

    Parameters
    ----------
    parameters
        A Parameter or an iterable of them (``model.parameters()``).
    max_norm
        Largest allowed global norm (>= 0); ``math.inf`` measures the norm and clips nothing.
    norm_type
        :math:`p` of the norm (> 0), ``math.inf`` for the largest absolute value.

    Returns
    -------
    array
        The global norm before clipping: a 0-d array of the gradients' dtype on their device
        (0 when no parameter has a gradient).

    Examples
    --------
    >>> import numpy as np
    >>> import portnn as pn
    >>> w = pn.layers.Parameter(np.zeros(2))
    >>> w.grad = np.array([3.0, 4.0])
    >>> float(pn.optim.clip_grad_norm_([w], max_norm=1.0))
    5.0
    >>> w.grad.round(6)
    array([0.6, 0.8])
    """
    params = _as_list(parameters, "clip_grad_norm_")
    no_clip = "math.inf measures the norm without clipping"
    max_norm = check_number("clip_grad_norm_", "max_norm", max_norm, lambda v: v >= 0, "a number >= 0", fix=no_clip, finite=False)
    norm_type = check_number(
        "clip_grad_norm_", "norm_type", norm_type, lambda v: v > 0, "a number > 0 (math.inf for the max norm)", finite=False
    )
    with_grad = [p for p in params if p.grad is not None]
    if not with_grad:
        # No array to follow: the first parameter decides where the zero lives, else the current backend.
        if params:
            xp = array_namespace(params[0].data)
            return xp.zeros((), dtype=params[0].data.dtype, device=device(params[0].data))
        backend = backends.get_backend()
        return backend.xp.zeros((), dtype=backend.xp.float32, device=backend.device)

    xp = array_namespace(*(p.grad for p in with_grad))
    norms = [_vector_norm(xp, p.grad, norm_type) for p in with_grad]
    total = _vector_norm(xp, xp.stack(norms), norm_type)
    coef = xp.clip(max_norm / (total + 1e-6), max=1.0)
    for p in with_grad:
        p.grad = scale_add(p.grad, scale=coef if coef.dtype == p.grad.dtype else xp.astype(coef, p.grad.dtype))
    return total


def clip_grad_value_(parameters: Parameter | Iterable[Parameter], clip_value: float) -> None:
    """Clip every gradient elementwise into ``[-clip_value, clip_value]``, in place.

    Parameters whose ``grad`` is None are skipped.

    Parameters
    ----------
    parameters
        A Parameter or an iterable of them (``model.parameters()``).
    clip_value
        Largest allowed absolute value (>= 0; ``math.inf`` clips nothing).

    Examples
    --------
    >>> import numpy as np
    >>> import portnn as pn
    >>> w = pn.layers.Parameter(np.zeros(3))
    >>> w.grad = np.array([-2.0, 0.5, 3.0])
    >>> pn.optim.clip_grad_value_([w], clip_value=1.0)
    >>> w.grad
    array([-1. ,  0.5,  1. ])
    """
    params = _as_list(parameters, "clip_grad_value_")
    v = check_number("clip_grad_value_", "clip_value", clip_value, lambda c: c >= 0, "a number >= 0", finite=False)
    for p in params:
        if p.grad is None:
            continue
        xp = array_namespace(p.grad)
        p.grad = assign(p.grad, xp.clip(p.grad, min=-v, max=v))

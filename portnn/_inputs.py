"""Data handed to a model: brought to its backend and device as its first layer takes it, cut into inference batches."""

from __future__ import annotations

from typing import Any

from . import backends
from ._array import dtype_name

__all__ = ["batches", "count_nonfinite", "detached", "model_input"]


def model_input(model: Any, x: Any, name: str, home: tuple[Any, str] | None = None) -> Any:
    """``x`` on ``model``'s backend and device: integers for a first layer that takes indices, else the model's dtype.

    Refuses, naming ``name`` (``"Sequential.predict"``), a scalar, no examples, examples with
    a 0-sized axis, a dtype that is not real numbers, and NaN or infinite values. A tensor that
    requires grad is detached. The shape is the model's to check (``check_input_shape``).
    ``home`` is ``(model.backend, model.dtype)`` when the caller has them already (a loop over
    batches asks once, not per batch: both walk the model's parameters).
    """
    backend, dtype = home if home is not None else (model.backend, model.dtype)
    xp = backend.xp
    X = detached(backends.as_backend_array(x, backend, what="x", where=f"{name}: "))
    if X.ndim == 0:
        raise ValueError(f"{name}: x is a scalar (shape ()); pass an array of examples, shape (n, ...)")
    if X.shape[0] == 0:
        raise ValueError(f"{name}: x is empty (shape {tuple(X.shape)}); pass at least one example")
    if any(d == 0 for d in X.shape[1:]):
        raise ValueError(
            f"{name}: x has shape {tuple(X.shape)}: its examples hold no values (a 0-sized axis); "
            "check how the features were selected"
        )
    layers = getattr(model, "layers", ())
    first = layers[0] if layers else None
    if getattr(getattr(first, "input_spec", None), "dtype", None) == "integral":  # indices (an embedding)
        if not xp.isdtype(X.dtype, "integral"):
            raise TypeError(
                f"{name}: x has dtype {dtype_name(X.dtype)}, but the first layer ({first!r}) takes integer "
                "indices; pass x as integers (e.g. x.astype('int64'))"
            )
        return X
    target = getattr(xp, dtype) if isinstance(dtype, str) else dtype
    if X.dtype != target:
        if not (xp.isdtype(X.dtype, "real floating") or xp.isdtype(X.dtype, "integral") or X.dtype == xp.bool):
            raise TypeError(f"{name}: x has dtype {dtype_name(X.dtype)}; pass real numbers")
        X = xp.astype(X, target)
    bad = count_nonfinite(xp, X)
    if bad:
        raise ValueError(f"{name}: x holds {bad} NaN or infinite values; clean or impute them first")
    return X


def detached(a: Any) -> Any:
    """``a`` cut from any autograd graph: a tensor that requires grad (PyTorch's) handed to a model is data, not a graph input.

    Left attached, every step would extend one graph through the weights' updates (memory
    that grows with every step); portnn computes its own gradients.
    """
    return a.detach() if getattr(a, "requires_grad", False) is True and callable(getattr(a, "detach", None)) else a


def count_nonfinite(xp: Any, a: Any) -> int:
    """How many NaN/inf values ``a`` holds. One sum (NaN and inf propagate) settles the usual case in one pass.

    The sum runs over the first axis, then over what is left: the same pass over memory as one
    sum, the rows added in their layout (MNIST's 60000 x 784 float32: 8.6 ms instead of 14 ms).
    Any order settles it alike: a finite total means no NaN or inf; one that is not (also when
    finite values overflowed) is counted exactly.
    """
    total = xp.sum(a, axis=0) if a.ndim > 1 else a
    if bool(xp.isfinite(xp.sum(total))):
        return 0
    return int(xp.count_nonzero(~xp.isfinite(a)))  # also 0 when only the sum overflowed


def batches(n: int, batch_size: int) -> list[tuple[int, int]]:
    """``[start, stop)`` of each inference batch: a last batch of one example joins the one before it.

    BatchNorm without running statistics normalises with the batch's own even in inference,
    which one example cannot give; every other layer computes each example alone, so the
    larger last batch changes no value.
    """
    bounds = [(start, min(start + batch_size, n)) for start in range(0, n, batch_size)]
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] == 1:
        bounds[-2:] = [(bounds[-2][0], n)]
    return bounds

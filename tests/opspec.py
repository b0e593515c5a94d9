"""The op-spec format shared by tests/test_ops.py and the spec tables of other op families.

A :class:`Spec` builds float64 NumPy inputs and names an op as ``f(*arrays) -> (y, vjp)``;
``tests/test_ops.py`` runs every spec through central differences, the PyTorch autograd
oracle and parity on every backend. Add an op family by writing a ``SPECS`` dict of its own
and merging it in ``tests/test_ops.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from portnn import losses as L


@dataclass
class Spec:
    make: Callable[[np.random.Generator], list[np.ndarray]]  # float64 inputs; the first n_diff are differentiable
    op: Callable[..., tuple[Any, Callable[[Any], tuple[Any, ...]]]]
    oracle: Callable[..., Any] | None  # the same op on torch tensors
    n_diff: int = 1
    extra: Callable[[np.random.Generator], list[np.ndarray]] | None = None  # non-differentiable inputs (targets)


def layer_op(fn: Callable[..., tuple[Any, Callable[[Any], Any]]]) -> Callable[..., Any]:
    def op(*args: Any) -> Any:
        y, back = fn(*args)

        def vjp(dy: Any) -> tuple[Any, ...]:
            g = back(dy)
            return tuple(x for x in g if x is not None) if isinstance(g, tuple) else (g,)

        return y, vjp

    return op


def loss_op(loss: L.Loss) -> Callable[..., Any]:
    def op(y_pred: Any, target: Any) -> Any:
        value, back = loss.forward(y_pred, target)
        return value, lambda dy: (back() * dy,)

    return op


def away_from_zero(r: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    # kinks (relu at 0) break central differences; keep |x| >= 0.1
    x = r.normal(size=shape)
    return np.where(np.abs(x) < 0.1, 0.1 * np.sign(x) + 0.1 * (x == 0), x)

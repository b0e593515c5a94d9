"""Argument checks shared by the optimizers: errors name the optimizer and the value received."""

from __future__ import annotations

import math
from typing import Any

__all__ = ["check_betas", "check_lr", "check_nonnegative", "check_unit_interval"]


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_lr(owner: str, value: Any) -> float:
    """``value`` as a float; ValueError unless it is a finite number > 0."""
    if not (_is_real(value) and value > 0):
        raise ValueError(f"{owner}: lr must be a positive number; got {value!r} (pass a finite step size such as lr=0.01)")
    return float(value)


def check_nonnegative(owner: str, name: str, value: Any) -> float:
    """``value`` as a float; ValueError unless it is a finite number >= 0."""
    if not (_is_real(value) and value >= 0):
        raise ValueError(f"{owner}: {name} must be a finite number >= 0; got {value!r}")
    return float(value)


def check_unit_interval(owner: str, name: str, value: Any, *, closed: bool = False) -> float:
    """``value`` as a float; ValueError unless it lies in [0, 1) (or [0, 1] when ``closed``)."""
    if not (_is_real(value) and 0 <= value and (value <= 1 if closed else value < 1)):
        raise ValueError(f"{owner}: {name} must be a number in [0, 1{']' if closed else ')'}; got {value!r}")
    return float(value)


def check_betas(owner: str, betas: Any) -> tuple[float, float]:
    """``betas`` as a pair of floats; ValueError unless both lie in [0, 1)."""
    try:
        ok = len(betas) == 2 and all(_is_real(b) and 0 <= b < 1 for b in betas)
    except TypeError:
        ok = False
    if not ok:
        raise ValueError(f"{owner}: betas must be two numbers in [0, 1); got {betas!r}")
    return float(betas[0]), float(betas[1])

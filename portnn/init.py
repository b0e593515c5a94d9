"""Weight initialisers.

Each initialiser draws on the host from a seeded NumPy generator (see
:func:`portnn.backends.host_rng`) in float64, so that one seed gives the same initial model
on every backend; the layer then casts and moves the result to its device once.

An initialiser is ``f(rng, shape, fan_in, fan_out) -> host array``; pass a name from
:data:`INITIALIZERS` or such a callable as ``Linear(..., init=...)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

__all__ = [
    "INITIALIZERS",
    "get_initializer",
    "glorot_normal",
    "glorot_uniform",
    "he_normal",
    "he_uniform",
    "lecun_normal",
    "normal",
    "torch_default",
    "zeros",
]

Initializer = Callable[[Any, tuple[int, ...], int, int], Any]


def normal(std: float = 0.01) -> Initializer:
    """Normal(0, std²) — the from-scratch write-ups' ``c * randn`` (e.g. ``normal(0.2)``)."""

    def init(rng: Any, shape: tuple[int, ...], fan_in: int, fan_out: int) -> Any:
        return rng.normal(0.0, std, shape)

    return init


def he_normal(rng: Any, shape: tuple[int, ...], fan_in: int, fan_out: int) -> Any:
    """He/Kaiming normal: std = sqrt(2 / fan_in). Suits ReLU nets."""
    return rng.normal(0.0, math.sqrt(2.0 / fan_in), shape)


def he_uniform(rng: Any, shape: tuple[int, ...], fan_in: int, fan_out: int) -> Any:
    """He/Kaiming uniform: U(-a, a), a = sqrt(6 / fan_in)."""
    a = math.sqrt(6.0 / fan_in)
    return rng.uniform(-a, a, shape)


def glorot_normal(rng: Any, shape: tuple[int, ...], fan_in: int, fan_out: int) -> Any:
    """Glorot/Xavier normal: std = sqrt(2 / (fan_in + fan_out)). Suits tanh and sigmoid nets."""
    return rng.normal(0.0, math.sqrt(2.0 / (fan_in + fan_out)), shape)


def glorot_uniform(rng: Any, shape: tuple[int, ...], fan_in: int, fan_out: int) -> Any:
    """Glorot/Xavier uniform: U(-a, a), a = sqrt(6 / (fan_in + fan_out)) (Keras's default)."""
    a = math.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-a, a, shape)


def lecun_normal(rng: Any, shape: tuple[int, ...], fan_in: int, fan_out: int) -> Any:
    """LeCun normal: std = sqrt(1 / fan_in)."""
    return rng.normal(0.0, math.sqrt(1.0 / fan_in), shape)


def torch_default(rng: Any, shape: tuple[int, ...], fan_in: int, fan_out: int) -> Any:
    """PyTorch's ``nn.Linear`` default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias."""
    a = 1.0 / math.sqrt(fan_in)
    return rng.uniform(-a, a, shape)


def zeros(rng: Any, shape: tuple[int, ...], fan_in: int, fan_out: int) -> Any:
    """All zeros (biases by default)."""
    return rng.uniform(0.0, 0.0, shape)


INITIALIZERS: dict[str, Initializer] = {
    "he_normal": he_normal,
    "he_uniform": he_uniform,
    "kaiming_normal": he_normal,
    "kaiming_uniform": he_uniform,
    "glorot_normal": glorot_normal,
    "glorot_uniform": glorot_uniform,
    "xavier_normal": glorot_normal,
    "xavier_uniform": glorot_uniform,
    "lecun_normal": lecun_normal,
    "normal": normal(0.01),
    "torch": torch_default,
    "zeros": zeros,
}


def get_initializer(init: str | Initializer, *, where: str = "") -> Initializer:
    """Return the initialiser called ``init``, or ``init`` itself when it is callable."""
    if callable(init):
        return init
    if init not in INITIALIZERS:
        raise ValueError(f"{where}unknown init {init!r}; choose one of {', '.join(sorted(INITIALIZERS))} or pass a callable")
    return INITIALIZERS[init]

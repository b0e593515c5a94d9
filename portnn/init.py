"""Weight initialisers.

Each initialiser draws on the host from a seeded NumPy generator (see
:func:`portnn.backends.host_rng`) in float64, so that one seed gives the same initial model
on every backend; the layer then casts and moves the result to its device once.

An initialiser is ``f(rng, shape, fan_in, fan_out) -> host array``; pass a name from
:data:`INITIALIZERS` or such a callable as ``Linear(..., init=...)``. The factories
:func:`normal`, :func:`uniform`, :func:`constant` and :func:`orthogonal` build one from their
parameters: ``Linear(784, 128, init=normal(0.2))`` is the from-scratch write-ups' ``0.2 * randn``.

This module names no array library: it calls the generator's methods, and the NumPy namespace
it needs for QR comes from the drawn array itself (:func:`array_api_compat.array_namespace`).

Examples
--------
>>> import portnn as pn
>>> rng = pn.backends.host_rng(0)
>>> w = pn.init.get_initializer("orthogonal")(rng, (3, 5), 5, 3)
>>> bool(abs(w @ w.T - [[1, 0, 0], [0, 1, 0], [0, 0, 1]]).max() < 1e-12)
True
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from array_api_compat import array_namespace

from ._checks import check_number

__all__ = [
    "INITIALIZERS",
    "constant",
    "get_initializer",
    "glorot_normal",
    "glorot_uniform",
    "he_normal",
    "he_uniform",
    "lecun_normal",
    "lecun_uniform",
    "normal",
    "ones",
    "orthogonal",
    "torch_default",
    "uniform",
    "zeros",
]

Initializer = Callable[[Any, tuple[int, ...], int, int], Any]


def _named(init: Initializer, name: str) -> Initializer:
    init.__name__ = init.__qualname__ = name
    return init


def normal(std: float = 0.01) -> Initializer:
    """Normal(0, std²) — the from-scratch write-ups' ``c * randn`` (e.g. ``normal(0.2)``).

    Examples
    --------
    >>> import portnn as pn
    >>> layer = pn.layers.Linear(784, 128, init=pn.init.normal(0.2), seed=0)
    """
    std = check_number("normal", "std", std, lambda v: v >= 0, ">= 0")

    def init(rng: Any, shape: tuple[int, ...], fan_in: int, fan_out: int) -> Any:
        return rng.normal(0.0, std, shape)

    return _named(init, f"normal({std!r})")


def uniform(low: float = -0.05, high: float = 0.05) -> Initializer:
    """U(low, high) (Keras's ``RandomUniform`` defaults)."""
    low, high = check_number("uniform", "low", low), check_number("uniform", "high", high)
    if low > high:
        raise ValueError(f"uniform: low must not exceed high; got low={low!r}, high={high!r}")

    def init(rng: Any, shape: tuple[int, ...], fan_in: int, fan_out: int) -> Any:
        return rng.uniform(low, high, shape)

    return _named(init, f"uniform({low!r}, {high!r})")


def constant(value: float) -> Initializer:
    """Every entry equal to ``value`` (drawn as U(value, value), so no array library is named)."""
    value = check_number("constant", "value", value)

    def init(rng: Any, shape: tuple[int, ...], fan_in: int, fan_out: int) -> Any:
        return rng.uniform(value, value, shape)

    return _named(init, f"constant({value!r})")


def orthogonal(gain: float = 1.0) -> Initializer:
    """A (semi-)orthogonal matrix times ``gain`` (Saxe et al. 2014; ``torch.nn.init.orthogonal_``).

    The weight is viewed as ``(rows, cols) = (shape[0], prod(shape[1:]))``. A standard normal
    matrix of that shape (transposed when ``rows < cols``) is factored as ``QR``, and ``Q``'s
    columns are multiplied by the signs of ``R``'s diagonal, which makes ``Q`` uniformly
    (Haar) distributed. The result has orthonormal rows when ``rows <= cols``
    (``W @ W.T = gain² I``), orthonormal columns otherwise (``W.T @ W = gain² I``).
    """
    gain = check_number("orthogonal", "gain", gain)

    def init(rng: Any, shape: tuple[int, ...], fan_in: int, fan_out: int) -> Any:
        shape = tuple(shape)
        if len(shape) < 2:
            raise ValueError(
                f"orthogonal: needs a weight of 2 or more dimensions; got shape {shape} (use zeros or constant(...) for biases)"
            )
        rows, cols = shape[0], math.prod(shape[1:])
        a = rng.standard_normal((rows, cols))
        if rows < cols:
            a = a.T
        xp = array_namespace(a)  # NumPy's, without naming it
        q, r = xp.linalg.qr(a)
        q = q * xp.where(xp.linalg.diagonal(r) < 0, -1.0, 1.0)
        if rows < cols:
            q = q.T
        return (gain * q).reshape(shape).copy()  # C order

    return _named(init, f"orthogonal({gain!r})")


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


def lecun_uniform(rng: Any, shape: tuple[int, ...], fan_in: int, fan_out: int) -> Any:
    """LeCun uniform: U(-a, a), a = sqrt(3 / fan_in) (std sqrt(1 / fan_in)). Suits SELU nets."""
    a = math.sqrt(3.0 / fan_in)
    return rng.uniform(-a, a, shape)


def torch_default(rng: Any, shape: tuple[int, ...], fan_in: int, fan_out: int) -> Any:
    """PyTorch's ``nn.Linear`` default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias."""
    a = 1.0 / math.sqrt(fan_in)
    return rng.uniform(-a, a, shape)


def zeros(rng: Any, shape: tuple[int, ...], fan_in: int, fan_out: int) -> Any:
    """All zeros (biases by default)."""
    return rng.uniform(0.0, 0.0, shape)


def ones(rng: Any, shape: tuple[int, ...], fan_in: int, fan_out: int) -> Any:
    """All ones (e.g. the scale of a normalisation layer)."""
    return rng.uniform(1.0, 1.0, shape)


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
    "lecun_uniform": lecun_uniform,
    "normal": normal(0.01),
    "ones": ones,
    "orthogonal": orthogonal(1.0),
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

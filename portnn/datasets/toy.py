"""Toy datasets: the small 2-D classification sets people train their first nets on.

Every 2-D set returns NumPy ``(x, y)``: ``x`` float32 of shape ``(n_classes * n_per_class, 2)``,
centred and scaled into ``[-1, 1]**2`` (the per-axis mean subtracted, then divided by the per-axis
largest absolute value, so each axis reaches +1 or -1), and ``y`` int64 class labels ``0..n_classes-1``,
class by class (``fit`` shuffles). The same ``seed`` gives the same arrays. :data:`DATASETS` names
them; :func:`load` picks one by name. :func:`sine` (regression) and :func:`parity_bits` (bit
patterns) are the two tasks that are not 2-D.

Examples
--------
>>> from portnn.datasets import toy
>>> x, y = toy.load("spirals", n_per_class=100)
>>> x.shape, x.dtype.name, y.dtype.name, sorted(set(y.tolist()))
((200, 2), 'float32', 'int64', [0, 1])
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np

from .._checks import check_int, check_number, check_seed

__all__ = [
    "DATASETS",
    "ball_and_cup",
    "bullseye",
    "load",
    "moons",
    "parity_bits",
    "shifted_cubics",
    "shifted_sinusoids",
    "sine",
    "spirals",
    "two_gaussians",
]

Dataset = tuple[np.ndarray, np.ndarray]

#: Largest ``n_bits`` of :func:`parity_bits` (2**20 rows of 20 float32 bits is 80 MB).
MAX_BITS = 20


def _start(fn: str, n: object, noise: object, seed: object, name: str = "n_per_class") -> tuple[int, float, np.random.Generator]:
    """The checked count, noise and seed of generator ``fn``, and its random generator seeded with ``seed``."""
    n = check_int(fn, name, n)
    noise = check_number(fn, "noise", noise, lambda v: v >= 0, "a finite number >= 0", fix="pass e.g. noise=0.1, or 0 for none")
    return n, noise, np.random.default_rng(check_seed(fn, "seed", seed))


def _check_classes(fn: str, n_classes: object, allowed: str, ok: Callable[[int], bool]) -> int:
    k = check_int(fn, "n_classes", n_classes, minimum=None, expected=allowed)
    if not ok(k):
        raise ValueError(f"{fn}: n_classes must be {allowed}; got {n_classes!r}")
    return k


def _finish(parts: list[np.ndarray]) -> Dataset:
    """Stack per-class point arrays, centre and scale into [-1, 1]**2, label class by class."""
    x = np.concatenate(parts, axis=0)
    x = x - x.mean(axis=0)
    x = x / np.abs(x).max(axis=0)
    y = np.repeat(np.arange(len(parts), dtype=np.int64), [len(p) for p in parts])
    return x.astype(np.float32), y


def _jitter(rng: np.random.Generator, points: np.ndarray, noise: float) -> np.ndarray:
    return points + rng.normal(0.0, noise, size=points.shape) if noise > 0 else points


def two_gaussians(n_per_class: int = 200, *, noise: float = 0.6, seed: int | None = 0) -> Dataset:
    """Two round Gaussian blobs centred at (-1, -1) and (1, 1), before scaling.

    Parameters
    ----------
    n_per_class
        Points per class.
    noise
        Standard deviation of each blob (0.6 overlaps them a little; 1.0 a lot).
    seed
        Seed of ``numpy.random.default_rng``.

    Returns
    -------
    x, y
        float32 points of shape ``(2 * n_per_class, 2)`` in ``[-1, 1]**2`` and int64 labels.

    Examples
    --------
    >>> x, y = two_gaussians(50)
    >>> x.shape, y.tolist().count(1)
    ((100, 2), 50)
    """
    n, noise, rng = _start("two_gaussians", n_per_class, noise, seed)
    return _finish([_jitter(rng, np.full((n, 2), c), noise) for c in (-1.0, 1.0)])


def ball_and_cup(n_per_class: int = 200, *, noise: float = 0.05, seed: int | None = 0) -> Dataset:
    """A ball (class 0) resting inside a cup (class 1): a disc above the bottom of a parabola arc.

    Before scaling the cup is ``(t, 2 t**2)`` for ``t`` in [-1, 1] and the ball a uniform disc of
    radius 0.35 centred at (0, 0.9); no straight line separates them.

    Parameters
    ----------
    n_per_class
        Points per class.
    noise
        Standard deviation of Gaussian jitter added to every point.
    seed
        Seed of ``numpy.random.default_rng``.

    Returns
    -------
    x, y
        float32 points of shape ``(2 * n_per_class, 2)`` in ``[-1, 1]**2`` and int64 labels.

    Examples
    --------
    >>> x, y = ball_and_cup(50)
    >>> x.shape, float(abs(x).max())
    ((100, 2), 1.0)
    """
    n, noise, rng = _start("ball_and_cup", n_per_class, noise, seed)
    radius, angle = 0.35 * np.sqrt(rng.uniform(size=n)), rng.uniform(0, 2 * np.pi, size=n)
    ball = np.stack([radius * np.cos(angle), 0.9 + radius * np.sin(angle)], axis=1)
    t = rng.uniform(-1, 1, size=n)
    cup = np.stack([t, 2 * t**2], axis=1)
    return _finish([_jitter(rng, ball, noise), _jitter(rng, cup, noise)])


def shifted_cubics(n_per_class: int = 200, *, noise: float = 0.05, seed: int | None = 0) -> Dataset:
    """Two copies of the cubic ``2 t**3 - 1.5 t`` on [-1, 1], one shifted up by 0.5, one down by 0.5.

    Parameters
    ----------
    n_per_class
        Points per class.
    noise
        Standard deviation of Gaussian jitter added to every point (the curves are 1.0 apart
        vertically, about 0.2 apart where they are steepest).
    seed
        Seed of ``numpy.random.default_rng``.

    Returns
    -------
    x, y
        float32 points of shape ``(2 * n_per_class, 2)`` in ``[-1, 1]**2``; label 0 is the upper curve.

    Examples
    --------
    >>> x, y = shifted_cubics(50)
    >>> bool(x[y == 0, 1].mean() > x[y == 1, 1].mean())
    True
    """
    n, noise, rng = _start("shifted_cubics", n_per_class, noise, seed)
    parts = []
    for shift in (0.5, -0.5):
        t = rng.uniform(-1, 1, size=n)
        parts.append(_jitter(rng, np.stack([t, 2 * t**3 - 1.5 * t + shift], axis=1), noise))
    return _finish(parts)


def bullseye(n_per_class: int = 200, *, n_classes: int = 2, noise: float = 0.15, seed: int | None = 0) -> Dataset:
    """Concentric rings: class ``k`` lies on the circle of radius ``k`` (class 0 is the centre blob).

    Parameters
    ----------
    n_per_class
        Points per class.
    n_classes
        2 (a blob inside a ring) or 3 (a blob inside two rings).
    noise
        Standard deviation of Gaussian jitter added to every point (the rings are 1.0 apart).
    seed
        Seed of ``numpy.random.default_rng``.

    Returns
    -------
    x, y
        float32 points of shape ``(n_classes * n_per_class, 2)`` in ``[-1, 1]**2`` and int64 labels.

    Examples
    --------
    >>> x, y = bullseye(50, n_classes=3)
    >>> x.shape, sorted(set(y.tolist()))
    ((150, 2), [0, 1, 2])
    """
    n, noise, rng = _start("bullseye", n_per_class, noise, seed)
    k = _check_classes("bullseye", n_classes, "2 or 3", lambda k: k in (2, 3))
    parts = []
    for radius in range(k):
        angle = rng.uniform(0, 2 * np.pi, size=n)
        parts.append(_jitter(rng, radius * np.stack([np.cos(angle), np.sin(angle)], axis=1), noise))
    return _finish(parts)


def moons(n_per_class: int = 200, *, noise: float = 0.1, seed: int | None = 0) -> Dataset:
    """Two interleaved crescent moons (the upper and the lower half of two shifted unit circles).

    Before scaling class 0 is ``(cos t, sin t)`` and class 1 ``(1 - cos t, 0.5 - sin t)``
    for ``t`` uniform in [0, pi], as in scikit-learn's ``make_moons``.

    Parameters
    ----------
    n_per_class
        Points per class.
    noise
        Standard deviation of Gaussian jitter added to every point.
    seed
        Seed of ``numpy.random.default_rng``.

    Returns
    -------
    x, y
        float32 points of shape ``(2 * n_per_class, 2)`` in ``[-1, 1]**2`` and int64 labels.

    Examples
    --------
    >>> x, y = moons(50, noise=0.0)
    >>> x.shape, y.shape
    ((100, 2), (100,))
    """
    n, noise, rng = _start("moons", n_per_class, noise, seed)
    t0, t1 = rng.uniform(0, np.pi, size=n), rng.uniform(0, np.pi, size=n)
    upper = np.stack([np.cos(t0), np.sin(t0)], axis=1)
    lower = np.stack([1 - np.cos(t1), 0.5 - np.sin(t1)], axis=1)
    return _finish([_jitter(rng, upper, noise), _jitter(rng, lower, noise)])


def shifted_sinusoids(n_per_class: int = 200, *, n_classes: int = 2, noise: float = 0.1, seed: int | None = 0) -> Dataset:
    """Two periods of ``sin(t)``, one copy per class, stacked 1.0 apart vertically (class 0 lowest).

    Parameters
    ----------
    n_per_class
        Points per class.
    n_classes
        2 or 3 curves.
    noise
        Standard deviation of Gaussian jitter added to every point.
    seed
        Seed of ``numpy.random.default_rng``.

    Returns
    -------
    x, y
        float32 points of shape ``(n_classes * n_per_class, 2)`` in ``[-1, 1]**2`` and int64 labels.

    Examples
    --------
    >>> x, y = shifted_sinusoids(50, n_classes=3)
    >>> x.shape, sorted(set(y.tolist()))
    ((150, 2), [0, 1, 2])
    """
    n, noise, rng = _start("shifted_sinusoids", n_per_class, noise, seed)
    k = _check_classes("shifted_sinusoids", n_classes, "2 or 3", lambda k: k in (2, 3))
    parts = []
    for shift in range(k):
        t = rng.uniform(-2 * np.pi, 2 * np.pi, size=n)
        parts.append(_jitter(rng, np.stack([t, np.sin(t) + shift], axis=1), noise))
    return _finish(parts)


def spirals(n_per_class: int = 200, *, n_classes: int = 2, noise: float = 0.03, seed: int | None = 0) -> Dataset:
    """Interleaved spiral arms, one per class, each winding 1.25 turns out from the centre.

    Arm ``k`` is ``r (cos a, sin a)`` with ``r`` uniform in [0.05, 1] and
    ``a = 2 pi (k / n_classes + 1.25 r)``.

    Parameters
    ----------
    n_per_class
        Points per class.
    n_classes
        Number of arms, 2 or more.
    noise
        Standard deviation of Gaussian jitter added to every point (the arms of two classes are
        about 0.4 apart; more classes crowd them).
    seed
        Seed of ``numpy.random.default_rng``.

    Returns
    -------
    x, y
        float32 points of shape ``(n_classes * n_per_class, 2)`` in ``[-1, 1]**2`` and int64 labels.

    Examples
    --------
    >>> x, y = spirals(50, n_classes=4)
    >>> x.shape, int(y.max())
    ((200, 2), 3)
    """
    n, noise, rng = _start("spirals", n_per_class, noise, seed)
    k = _check_classes("spirals", n_classes, "an int >= 2", lambda k: k >= 2)
    parts = []
    for arm in range(k):
        r = rng.uniform(0.05, 1.0, size=n)
        a = 2 * np.pi * (arm / k + 1.25 * r)
        parts.append(_jitter(rng, r[:, None] * np.stack([np.cos(a), np.sin(a)], axis=1), noise))
    return _finish(parts)


def sine(n: int = 256, *, noise: float = 0.0, seed: int | None = 0) -> Dataset:
    """Regression: ``y = sin(pi x)`` (one period) at ``n`` points ``x`` uniform in [-1, 1].

    Parameters
    ----------
    n
        Number of points.
    noise
        Standard deviation of Gaussian noise added to ``y`` (``x`` is drawn first, so it does
        not change with ``noise``).
    seed
        Seed of ``numpy.random.default_rng``.

    Returns
    -------
    x, y
        float32 arrays of shape ``(n, 1)``.

    Examples
    --------
    >>> x, y = sine(100)
    >>> x.shape, y.dtype.name, bool(abs(y - np.sin(np.pi * x)).max() < 1e-6)
    ((100, 1), 'float32', True)
    """
    n, noise, rng = _start("sine", n, noise, seed, name="n")
    x = rng.uniform(-1.0, 1.0, size=(n, 1)).astype(np.float32)
    y = _jitter(rng, np.sin(np.pi * x.astype(np.float64)), noise)
    return x, y.astype(np.float32)


def parity_bits(n_bits: int = 8, *, rule: str = "odd") -> Dataset:
    """All ``2**n_bits`` bit patterns and a parity label for each: the even/odd bit task.

    Row ``i`` of ``x`` is the binary code of the integer ``i``, most significant bit first.

    Parameters
    ----------
    n_bits
        Bits per pattern, 1 to 20.
    rule
        ``"odd"``: the label is 1 when the number is odd, i.e. its last bit (the net must learn
        to ignore the other bits). ``"xor"``: the label is 1 when the pattern has an odd number
        of ones (the classic n-bit parity problem; ``n_bits=2`` is XOR).

    Returns
    -------
    x, y
        float32 bits of shape ``(2**n_bits, n_bits)`` and int64 labels of shape ``(2**n_bits,)``.

    Examples
    --------
    >>> x, y = parity_bits(2, rule="xor")
    >>> x.tolist(), y.tolist()
    ([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]], [0, 1, 1, 0])
    >>> parity_bits(3)[1].tolist()
    [0, 1, 0, 1, 0, 1, 0, 1]
    """
    n_bits = check_int("parity_bits", "n_bits", n_bits, maximum=MAX_BITS, expected=f"an int from 1 to {MAX_BITS} (e.g. n_bits=8)")
    if rule not in ("odd", "xor"):
        raise ValueError(f"parity_bits: rule must be 'odd' (the last bit) or 'xor' (odd number of ones), got {rule!r}")
    ints = np.arange(2**n_bits, dtype=np.int64)
    bits = (ints[:, None] >> np.arange(n_bits - 1, -1, -1)) & 1
    y = bits[:, -1] if rule == "odd" else bits.sum(axis=1) % 2
    return bits.astype(np.float32), y.astype(np.int64)


def _fixed_classes(fn: Callable[..., Dataset], n_classes: int, name: str) -> Callable[..., Dataset]:
    """``fn`` with ``n_classes`` fixed (the registry's 3-class variants)."""

    @functools.wraps(fn)
    def variant(n_per_class: int = 200, **kwargs: object) -> Dataset:
        if "n_classes" in kwargs:
            raise ValueError(f"{name} has {n_classes} classes (got n_classes={kwargs['n_classes']!r}); use {fn.__name__} instead")
        return fn(n_per_class, n_classes=n_classes, **kwargs)

    variant.__name__ = variant.__qualname__ = name
    return variant


#: The 2-D classification sets by name (``bullseye3`` and ``sinusoids3`` are the 3-class variants).
DATASETS: dict[str, Callable[..., Dataset]] = {
    "two_gaussians": two_gaussians,
    "ball_and_cup": ball_and_cup,
    "shifted_cubics": shifted_cubics,
    "bullseye": bullseye,
    "bullseye3": _fixed_classes(bullseye, 3, "bullseye3"),
    "moons": moons,
    "sinusoids": shifted_sinusoids,
    "sinusoids3": _fixed_classes(shifted_sinusoids, 3, "sinusoids3"),
    "spirals": spirals,
}


def load(name: str, **kwargs: object) -> Dataset:
    """The 2-D classification set called ``name`` in :data:`DATASETS`, made with ``kwargs``.

    Parameters
    ----------
    name
        One of the keys of :data:`DATASETS`.
    **kwargs
        Passed on (``n_per_class``, ``noise``, ``seed``, ``n_classes`` where the set has it).

    Returns
    -------
    x, y
        float32 points of shape ``(n, 2)`` in ``[-1, 1]**2`` and int64 labels.

    Examples
    --------
    >>> x, y = load("bullseye3", n_per_class=10, seed=1)
    >>> x.shape, int(y.max())
    ((30, 2), 2)
    """
    if not isinstance(name, str) or name not in DATASETS:
        raise ValueError(f"load: unknown toy dataset {name!r}; pass one of {', '.join(DATASETS)}")
    return DATASETS[name](**kwargs)

"""Augmentation layers: random at training time, the identity at evaluation time."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from array_api_compat import array_namespace

from .._checks import check_int
from ..functional.augment import translate
from .base import InputSpec, RandomLayer

__all__ = ["RandomTranslation"]


class RandomTranslation(RandomLayer):
    """Shift each training image by a random whole number of pixels in ``[-max_shift, max_shift]`` (zero fill).

    Keras's ``RandomTranslation`` with integer pixels: active only in training (``fit``,
    ``forward(..., training=True)``), the identity in ``predict``/``evaluate``. Put it first in
    an image model; every epoch then sees slightly moved digits, which curbs overfitting.
    Shifts are drawn per image (rows and columns independently) on the input's device.

    Examples
    --------
    >>> import numpy as np
    >>> import portnn as pn
    >>> layer = pn.layers.RandomTranslation(2, seed=0)
    >>> x = np.ones((4, 1, 8, 8), dtype=np.float32)
    >>> bool((layer(x) == x).all()), float(layer.forward(x, training=True)[0].sum()) < float(x.sum())
    (True, True)
    """

    input_spec = InputSpec(("batch", "C", "H", "W"))

    def __init__(self, max_shift: int = 2, *, seed: int | None = None) -> None:
        self.max_shift = check_int("RandomTranslation", "max_shift", max_shift, minimum=0, expected="an int >= 0")
        super().__init__(seed=seed)

    def call(self, x: Any, *, training: bool = False, input_grad: bool = True) -> tuple[Any, Callable[[Any], Any]]:
        if not training or self.max_shift == 0:
            return x, (lambda dy: dy) if input_grad else (lambda dy: None)
        xp = array_namespace(x)
        span = 2 * self.max_shift + 1
        u = self.uniform(x, (2, x.shape[0]))
        shifts = xp.astype(xp.floor(u * span), xp.int64) - self.max_shift
        shifts = xp.clip(shifts, -self.max_shift, self.max_shift)  # u < 1, but float rounding could give span
        return translate(x, shifts[0, ...], shifts[1, ...], input_grad=input_grad)

    def extra_repr(self) -> str:
        return f"max_shift={self.max_shift}"

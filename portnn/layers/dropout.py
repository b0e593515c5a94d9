"""Dropout: random zeroing at training time, the identity at evaluation time."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import functional as F
from .._checks import ArgumentTypeError, as_real
from ..functional.dropout import check_dropout_p
from .base import RandomLayer

__all__ = ["Dropout"]


class Dropout(RandomLayer):
    """Inverted dropout, as PyTorch's ``nn.Dropout``.

    In training (``model.fit``, ``forward(..., training=True)``) each element is zeroed with
    probability ``p`` and the survivors are scaled by ``1 / (1 - p)``, so the expected output
    is the input; at evaluation (``predict``, ``evaluate``, ``layer(x)``) it is the identity.

    Parameters
    ----------
    p
        Probability of zeroing an element, ``0 <= p <= 1``. ``p = 1`` gives zeros.
    seed
        Seed of the layer's mask generator; None takes fresh entropy. :class:`portnn.Sequential`
        with ``seed=`` re-seeds it (through :meth:`reset_parameters`) from the model's seed.

    Notes
    -----
    Masks are drawn on the input's device, in its dtype, by a generator the backend's adapter
    makes (:meth:`portnn.backends.Adapter.make_generator`). It is made for the backend and
    device of the first training input and made again, from the same seed, if they change.
    One seed gives the same masks on one backend; different backends draw different streams.

    Examples
    --------
    >>> import numpy as np
    >>> import portnn as pn
    >>> layer = pn.layers.Dropout(0.5, seed=0)
    >>> x = np.ones((2, 4), dtype=np.float32)
    >>> bool((layer(x) == x).all())  # evaluation: the identity
    True
    >>> sorted(set(layer.forward(x, training=True)[0].ravel().tolist()))
    [0.0, 2.0]
    """

    def __init__(self, p: float = 0.5, *, seed: int | None = None) -> None:
        if as_real(p) is None:  # not a number (NumPy's count): a TypeError in check_dropout_p's words; it checks the range
            raise ArgumentTypeError(
                f"Dropout: p is the probability of zeroing an element, so 0 <= p <= 1; got p={p!r} (a {type(p).__name__})"
            )
        self.p = check_dropout_p(as_real(p), where="Dropout")
        super().__init__(seed=seed)

    def call(self, x: Any, *, training: bool = False, input_grad: bool = True) -> tuple[Any, Callable[[Any], Any]]:
        if not training or self.p == 0.0:
            return x, (lambda dy: dy) if input_grad else (lambda dy: None)
        u = self.uniform(x, tuple(x.shape)) if self.p < 1.0 else None
        return F.dropout(x, u, p=self.p, input_grad=input_grad)

    def extra_repr(self) -> str:
        return f"p={self.p}"

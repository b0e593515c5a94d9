"""Data augmentation ops, written against the array API like every other op."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from array_api_compat import array_namespace, device


def translate(x: Any, shift_y: Any, shift_x: Any, *, input_grad: bool = True) -> tuple[Any, Callable[[Any], Any]]:
    r"""Shift each image of ``x`` (N, C, H, W) by its own whole number of pixels, filling with zeros.

    ``shift_y``, ``shift_x`` are integer arrays of shape (N,): image ``n`` moves down by
    ``shift_y[n]`` and right by ``shift_x[n]``. One gather (``take``) over the flattened batch,
    with an index computed from ``arange``s, and a mask for the pixels shifted in — no loop
    over images, no scatter.

    Backward: a shift with zero fill is a partial permutation, so its adjoint is the opposite
    shift, :math:`dx = \mathrm{translate}(dy, -s_y, -s_x)`.
    """
    xp = array_namespace(x, shift_y, shift_x)
    n, c, h, w = x.shape
    dev = device(x)
    rows = xp.arange(h, device=dev)[None, :] - shift_y[:, None]  # source row of each output row, (N, H)
    cols = xp.arange(w, device=dev)[None, :] - shift_x[:, None]  # (N, W)
    row_ok = xp.astype((rows >= 0) & (rows < h), x.dtype)
    col_ok = xp.astype((cols >= 0) & (cols < w), x.dtype)
    rows = xp.clip(rows, 0, h - 1)
    cols = xp.clip(cols, 0, w - 1)
    image = xp.arange(n * c, device=dev)
    index = (image[:, None, None] * h + xp.reshape(xp.broadcast_to(rows[:, None, :], (n, c, h)), (n * c, h))[:, :, None]) * w
    index = index + xp.reshape(xp.broadcast_to(cols[:, None, :], (n, c, w)), (n * c, w))[:, None, :]
    mask = row_ok[:, None, :, None] * col_ok[:, None, None, :]
    y = xp.reshape(xp.take(xp.reshape(x, (-1,)), xp.reshape(index, (-1,))), (n, c, h, w)) * mask

    def backward(dy: Any) -> Any:
        return translate(dy, -shift_y, -shift_x, input_grad=False)[0] if input_grad else None

    return y, backward

"""Pooling layers over NCHW batches: max, average and global average, as in PyTorch."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .._array import check_float
from ..functional.pooling import avg_pool2d, check_pool2d_args, global_avg_pool2d, max_pool2d, pool2d_output_size
from .base import Layer, Shape, ShapeError

__all__ = ["AvgPool2d", "GlobalAvgPool2d", "MaxPool2d"]


class _Pool2d(Layer):
    """A window pooling layer: checked ``kernel_size``, ``stride`` and ``padding``, shapes and errors."""

    def __init__(self, kernel_size: Any, stride: Any = None, padding: Any = 0) -> None:
        super().__init__()
        self._k, self._s, self._p = check_pool2d_args(kernel_size, stride, padding, where=type(self).__name__)
        # as PyTorch: an int where both axes agree, else a pair; stride defaults to kernel_size
        self.kernel_size, self.stride, self.padding = (_compact(v) for v in (self._k, self._s, self._p))

    def _problem(self, shape: Shape) -> str | None:
        """Why input ``shape`` does not fit (None if it does)."""
        if len(shape) != 4:
            return "expected (batch, C, H, W)"
        h, w = shape[2], shape[3]
        out = pool2d_output_size((h or 0, w or 0), self._k, self._s, self._p)
        if (h is not None and out[0] < 1) or (w is not None and out[1] < 1):
            ph, pw = (None if d is None else d + 2 * p for d, p in zip((h, w), self._p))
            return (
                f"the {self._k[0]}x{self._k[1]} window does not fit in the padded input ({_dim(ph)}x{_dim(pw)}); "
                "use a smaller kernel_size or a larger input"
            )
        return None

    def output_shape(self, input_shape: Shape) -> Shape:
        problem = self._problem(input_shape)
        if problem is not None:
            raise ShapeError(f"{self!r} does not take input of shape {_fmt(input_shape)}: {problem}")
        h, w = input_shape[2], input_shape[3]
        out = pool2d_output_size((h or 0, w or 0), self._k, self._s, self._p)
        return (*input_shape[:2], None if h is None else out[0], None if w is None else out[1])

    def _check(self, x: Any) -> None:
        check_float(repr(self), x)
        problem = self._problem(tuple(int(d) for d in x.shape))
        if problem is not None:
            raise ShapeError(f"{self!r} got input of shape {_fmt(x.shape)}: {problem}{_hint(x)}")

    def extra_repr(self) -> str:
        extra = [f"kernel_size={self.kernel_size}"]
        if self._s != self._k:
            extra.append(f"stride={self.stride}")
        if self._p != (0, 0):
            extra.append(f"padding={self.padding}")
        return ", ".join(extra)


class MaxPool2d(_Pool2d):
    """The maximum of each ``kernel_size`` window of (N, C, H, W) inputs: PyTorch's ``nn.MaxPool2d``.

    Output (N, C, Ho, Wo) with ``Ho = (H + 2 * padding - kernel) // stride + 1`` (likewise
    ``Wo``; floor, no ``ceil_mode``, no ``dilation``). Padding is with -inf. The gradient of
    each window goes to exactly one element, its first maximum in row-major order, as
    PyTorch's CPU kernel picks it; see :func:`portnn.functional.pooling.max_pool2d`.

    Parameters
    ----------
    kernel_size
        Window size: an int or an ``(along H, along W)`` pair.
    stride
        Step between windows; None (default) means ``kernel_size``.
    padding
        Implicit -inf on each side, at most half the kernel.

    Examples
    --------
    >>> import numpy as np
    >>> from portnn.layers.pooling import MaxPool2d
    >>> pool = MaxPool2d(2)
    >>> pool(np.arange(16.0).reshape(1, 1, 4, 4))
    array([[[[ 5.,  7.],
             [13., 15.]]]])
    >>> pool.output_shape((None, 8, 28, 28))
    (None, 8, 14, 14)
    """

    def forward(self, x: Any, *, training: bool = False, input_grad: bool = True) -> tuple[Any, Callable[[Any], Any]]:
        self._check(x)
        return max_pool2d(x, self._k, stride=self._s, padding=self._p, input_grad=input_grad)


class AvgPool2d(_Pool2d):
    """The mean of each ``kernel_size`` window of (N, C, H, W) inputs: PyTorch's ``nn.AvgPool2d``.

    Output (N, C, Ho, Wo) with ``Ho = (H + 2 * padding - kernel) // stride + 1`` (likewise
    ``Wo``; floor, no ``ceil_mode``). Padding is with zeros that count in the mean (PyTorch's
    default ``count_include_pad=True``): every window divides by ``kh * kw``. See
    :func:`portnn.functional.pooling.avg_pool2d`.

    Parameters
    ----------
    kernel_size
        Window size: an int or an ``(along H, along W)`` pair.
    stride
        Step between windows; None (default) means ``kernel_size``.
    padding
        Implicit zeros on each side, at most half the kernel.

    Examples
    --------
    >>> import numpy as np
    >>> from portnn.layers.pooling import AvgPool2d
    >>> AvgPool2d(2)(np.arange(16.0).reshape(1, 1, 4, 4))
    array([[[[ 2.5,  4.5],
             [10.5, 12.5]]]])
    """

    def forward(self, x: Any, *, training: bool = False, input_grad: bool = True) -> tuple[Any, Callable[[Any], Any]]:
        self._check(x)
        return avg_pool2d(x, self._k, stride=self._s, padding=self._p, input_grad=input_grad)


class GlobalAvgPool2d(Layer):
    """The mean of each channel over H and W: (N, C, H, W) -> (N, C).

    Keras' ``GlobalAveragePooling2D``; in PyTorch, ``nn.AdaptiveAvgPool2d(1)`` followed by
    ``nn.Flatten()``. A classifier head after the last convolution needs no Flatten then,
    and takes any image size. See :func:`portnn.functional.pooling.global_avg_pool2d`.

    Examples
    --------
    >>> import numpy as np
    >>> from portnn.layers.pooling import GlobalAvgPool2d
    >>> GlobalAvgPool2d()(np.arange(8.0).reshape(1, 2, 2, 2))
    array([[1.5, 5.5]])
    >>> GlobalAvgPool2d().output_shape((None, 64, 7, 7))
    (None, 64)
    """

    def output_shape(self, input_shape: Shape) -> Shape:
        if len(input_shape) != 4 or any(d is not None and d < 1 for d in input_shape[2:]):
            raise ShapeError(f"{self!r} does not take input of shape {_fmt(input_shape)}: expected (batch, C, H, W)")
        return tuple(input_shape[:2])

    def forward(self, x: Any, *, training: bool = False, input_grad: bool = True) -> tuple[Any, Callable[[Any], Any]]:
        check_float(repr(self), x)
        if x.ndim != 4 or x.shape[2] < 1 or x.shape[3] < 1:
            raise ShapeError(f"{self!r} got input of shape {_fmt(x.shape)}: expected (batch, C, H, W){_hint(x)}")
        return global_avg_pool2d(x, input_grad=input_grad)


def _compact(v: tuple[int, int]) -> int | tuple[int, int]:
    return v[0] if v[0] == v[1] else v


def _dim(d: int | None) -> str:
    return "?" if d is None else str(d)


def _hint(x: Any) -> str:
    return " (a single image? use x.reshape(1, *x.shape))" if x.ndim == 3 else ""


def _fmt(shape: Any) -> str:
    dims = tuple(("batch" if a == 0 else "?") if d is None else int(d) for a, d in enumerate(shape))
    return "(" + ", ".join(map(str, dims)) + ("," if len(dims) == 1 else "") + ")"

"""Pooling layers over NCHW batches: max, average and global average, as in PyTorch."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .._checks import check_int_pair
from ..functional.pooling import (
    avg_pool2d,
    check_pool2d_args,
    global_avg_pool1d,
    global_avg_pool2d,
    max_pool2d,
    pool2d_output_size,
    window_problem,
)
from .base import InputSpec, Layer, Shape

__all__ = ["AvgPool2d", "GlobalAvgPool1d", "GlobalAvgPool2d", "MaxPool2d"]


class _Pooling(Layer):
    """A layer over (N, C, H, W) batches, with the hint for a single image."""

    input_spec = InputSpec(("batch", "C", "H", "W"))

    def input_hint(self, shape: Shape) -> str:
        return " (a single image? use x.reshape(1, *x.shape))" if len(shape) == 3 and shape[0] is not None else ""


class _Pool2d(_Pooling):
    """A window pooling layer: checked ``kernel_size``, ``stride`` and ``padding``, the output shape."""

    def __init__(self, kernel_size: Any, stride: Any = None, padding: Any = 0) -> None:
        super().__init__()
        where = type(self).__name__
        # the kinds (ints, NumPy's too; a TypeError otherwise) here, the ranges and PyTorch's rules by the function
        check_int_pair(where, "kernel_size", kernel_size)
        if stride is not None and not (isinstance(stride, (tuple, list)) and len(stride) == 0):
            check_int_pair(where, "stride", stride)
        check_int_pair(where, "padding", padding, minimum=0)
        self._k, self._s, self._p = check_pool2d_args(kernel_size, stride, padding, where=where)
        # as PyTorch: an int where both axes agree, else a pair; stride defaults to kernel_size
        self.kernel_size, self.stride, self.padding = (_compact(v) for v in (self._k, self._s, self._p))

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        h, w = input_shape[2], input_shape[3]
        out = pool2d_output_size((h or 0, w or 0), self._k, self._s, self._p)
        return (*input_shape[:2], None if h is None else out[0], None if w is None else out[1])

    def shape_problem(self, shape: Shape) -> str | None:
        return window_problem(shape[2:], self._k, self._s, self._p)

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

    def call(self, x: Any, *, training: bool = False, input_grad: bool = True) -> tuple[Any, Callable[[Any], Any]]:
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

    def call(self, x: Any, *, training: bool = False, input_grad: bool = True) -> tuple[Any, Callable[[Any], Any]]:
        return avg_pool2d(x, self._k, stride=self._s, padding=self._p, input_grad=input_grad)


class GlobalAvgPool2d(_Pooling):
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

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return tuple(input_shape[:2])

    def shape_problem(self, shape: Shape) -> str | None:
        if any(d is not None and d < 1 for d in shape[2:]):
            return "H and W must be at least 1 (an empty image has no mean)"
        return None

    def call(self, x: Any, *, training: bool = False, input_grad: bool = True) -> tuple[Any, Callable[[Any], Any]]:
        return global_avg_pool2d(x, input_grad=input_grad)


def _compact(v: tuple[int, int]) -> int | tuple[int, int]:
    return v[0] if v[0] == v[1] else v


class GlobalAvgPool1d(Layer):
    """The mean of each channel over the length: (N, C, L) -> (N, C), PyTorch's layout.

    Keras' ``GlobalAveragePooling1D`` (with ``data_format="channels_first"``); in PyTorch,
    ``nn.AdaptiveAvgPool1d(1)`` followed by ``nn.Flatten()``. To average a sequence of tokens
    (N, T, D) over its steps, as a transformer's classifier head does, put
    ``Permute((2, 1))`` first. See :func:`portnn.functional.pooling.global_avg_pool1d`.

    Examples
    --------
    >>> import numpy as np
    >>> from portnn.layers.pooling import GlobalAvgPool1d
    >>> GlobalAvgPool1d()(np.arange(6.0).reshape(1, 2, 3))
    array([[1., 4.]])
    >>> GlobalAvgPool1d().output_shape((None, 64, 49))
    (None, 64)
    """

    input_spec = InputSpec(("batch", "C", "L"))

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return tuple(input_shape[:2])

    def shape_problem(self, shape: Shape) -> str | None:
        if shape[2] is not None and shape[2] < 1:
            return "L must be at least 1 (an empty sequence has no mean)"
        return None

    def input_hint(self, shape: Shape) -> str:
        return " (a single sequence? use x.reshape(1, *x.shape))" if len(shape) == 2 and shape[0] is not None else ""

    def call(self, x: Any, *, training: bool = False, input_grad: bool = True) -> tuple[Any, Callable[[Any], Any]]:
        return global_avg_pool1d(x, input_grad=input_grad)

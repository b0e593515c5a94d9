"""2-D pooling over NCHW batches (max, average, global average), as in PyTorch.

Written once against the array API standard: windows are strided slices of the (padded)
input, one slice per kernel offset ``(i, j)``, with exact stops (array-api-strict refuses
out-of-range ones). Backward passes are slice-adds, one per kernel offset: each slice write
touches distinct elements, so overlapping windows (stride < kernel) accumulate correctly
with no duplicate-index scatter. For max-pooling the adapter of the input's library may take
over (:meth:`portnn.backends.Adapter.max_pool2d`; NumPy's runs these same operations with
``out=`` into reused buffers for windows that do not overlap), with the same results.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from array_api_compat import array_namespace, device

from .. import backends
from .conv import Pair, _dims, _filled, pair

__all__ = [
    "avg_pool2d",
    "check_pool2d_args",
    "global_avg_pool1d",
    "global_avg_pool2d",
    "max_pool2d",
    "pool2d_output_size",
    "window_problem",
]

Backward = Callable[[Any], Any]


def check_pool2d_args(
    kernel_size: Any, stride: Any = None, padding: Any = 0, *, where: str = "pool2d"
) -> tuple[Pair, Pair, Pair]:
    """``(kernel, stride, padding)`` as ``(along H, along W)`` pairs, checked as PyTorch does.

    ``stride`` None (or ``()``) means ``kernel_size``. Padding may be at most half the kernel
    (PyTorch's rule: every window then holds at least one element of the input). Errors are
    ValueErrors that name ``where``.

    Examples
    --------
    >>> from portnn.functional.pooling import check_pool2d_args
    >>> check_pool2d_args(3, 2, 1)
    ((3, 3), (2, 2), (1, 1))
    >>> check_pool2d_args((2, 3))
    ((2, 3), (2, 3), (0, 0))
    """
    k = pair(kernel_size, "kernel_size", minimum=1, where=where)
    no_stride = stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0)
    s = k if no_stride else pair(stride, "stride", minimum=1, where=where)
    p = pair(padding, "padding", minimum=0, where=where)
    if 2 * p[0] > k[0] or 2 * p[1] > k[1]:
        raise ValueError(
            f"{where}: padding must be at most half of kernel_size (PyTorch's rule); "
            f"got padding={padding!r} with kernel_size={kernel_size!r}"
        )
    return k, s, p


def pool2d_output_size(size: Pair, kernel_size: Pair, stride: Pair, padding: Pair = (0, 0)) -> Pair:
    """Output height and width, ``(size + 2 * padding - kernel) // stride + 1`` per axis (floor, no ceil_mode).

    Below 1 when the window does not fit in the padded input (the caller raises).

    Examples
    --------
    >>> from portnn.functional.pooling import pool2d_output_size
    >>> pool2d_output_size((28, 28), (2, 2), (2, 2)), pool2d_output_size((7, 7), (3, 3), (2, 2), (1, 1))
    ((14, 14), (4, 4))
    """
    return (
        (size[0] + 2 * padding[0] - kernel_size[0]) // stride[0] + 1,
        (size[1] + 2 * padding[1] - kernel_size[1]) // stride[1] + 1,
    )


def window_problem(size: tuple[int | None, int | None], kernel_size: Pair, stride: Pair, padding: Pair = (0, 0)) -> str | None:
    """Why a ``kernel_size`` window does not fit an input of ``size`` (H, W) with ``padding``; None if it fits.

    A size of None (unknown) fits any window.

    Examples
    --------
    >>> from portnn.functional.pooling import window_problem
    >>> window_problem((2, 5), (3, 3), (3, 3))
    'the 3x3 window does not fit in the padded input (2x5); use a smaller kernel_size or a larger input'
    >>> window_problem((None, 4), (2, 2), (2, 2)) is None
    True
    """
    h, w = size
    out = pool2d_output_size((h or 0, w or 0), kernel_size, stride, padding)
    if (h is None or out[0] >= 1) and (w is None or out[1] >= 1):
        return None
    padded = ("?" if d is None else str(int(d) + 2 * q) for d, q in zip(size, padding))
    return (
        f"the {kernel_size[0]}x{kernel_size[1]} window does not fit in the padded input ({'x'.join(padded)}); "
        "use a smaller kernel_size or a larger input"
    )


def _check_input(x: Any, k: Pair, s: Pair, p: Pair, where: str) -> Pair:
    if x.ndim != 4:
        raise ValueError(f"{where}: got input of shape {tuple(x.shape)}: expected (batch, C, H, W)")
    size = (int(x.shape[2]), int(x.shape[3]))
    problem = window_problem(size, k, s, p)
    if problem is not None:
        raise ValueError(f"{where}: got input of shape {tuple(x.shape)}: {problem}")
    return pool2d_output_size(size, k, s, p)


def _window(i: int, j: int, out: Pair, s: Pair) -> tuple[slice, slice, slice, slice]:
    """The strided slice of the padded input that kernel offset ``(i, j)`` sees at every output position (exact stops)."""
    return (
        slice(None),
        slice(None),
        slice(i, i + s[0] * (out[0] - 1) + 1, s[0]),
        slice(j, j + s[1] * (out[1] - 1) + 1, s[1]),
    )


def _pad(xp: Any, x: Any, p: Pair, value: float) -> Any:
    """``x`` with ``p`` rows/columns of ``value`` on each side of H and W (``x`` itself without padding)."""
    if p == (0, 0):
        return x
    n, c, h, w = _dims(x)  # n None: a batch of unknown size (an ONNX export)
    xpad = _filled(xp, x, (n, c, h + 2 * p[0], w + 2 * p[1]), value)
    xpad[:, :, p[0] : p[0] + h, p[1] : p[1] + w] = x
    return xpad


def _index_dtype(xp: Any, count: int) -> Any:
    """The smallest signed integer dtype that holds kernel offsets ``0 .. count - 1``."""
    return xp.int8 if count <= 2**7 else xp.int16 if count <= 2**15 else xp.int32


def _first_valid_offset(xp: Any, k: Pair, s: Pair, p: Pair, out: Pair, dtype: Any, dev: Any) -> Any:
    """Per output position (Ho, Wo), the row-major index of the first window offset inside the unpadded input."""
    rows = [max(0, p[0] - a * s[0]) * k[1] for a in range(out[0])]
    cols = [max(0, p[1] - b * s[1]) for b in range(out[1])]
    r = xp.asarray(rows, dtype=dtype, device=dev)
    c = xp.asarray(cols, dtype=dtype, device=dev)
    return xp.reshape(r, (out[0], 1)) + xp.reshape(c, (1, out[1]))


def max_pool2d(
    x: Any, kernel_size: Any, *, stride: Any = None, padding: Any = 0, input_grad: bool = True
) -> tuple[Any, Backward]:
    r"""Maximum of each ``kernel_size`` window of ``x`` (N, C, H, W): PyTorch's ``max_pool2d``.

    With ``x`` padded by ``padding`` with :math:`-\infty` on each side, and output size
    ``Ho = (H + 2 ph - kh) // sh + 1`` (likewise ``Wo``; floor, no ``ceil_mode``):

    .. math:: y_{n,c,a,b} = \max_{0 \le i < k_h,\ 0 \le j < k_w} x_{n,c,\,a s_h + i,\,b s_w + j}

    Backward gives each window's gradient to exactly one element, the window's argmax
    :math:`(i^*, j^*)`: :math:`dx_{n,c,\,a s_h + i^*,\,b s_w + j^*} \mathrel{+}= dy_{n,c,a,b}`
    (an element that is the argmax of several overlapping windows receives their sum).

    Ties go where PyTorch's CPU kernel sends them: to the *first* maximum in row-major order
    of the window (smallest ``i``, then smallest ``j``), counting only elements of the input,
    never padding; a window whose elements are all :math:`-\infty` sends its gradient to its
    first element inside the input. A NaN in a window makes its output NaN, as in PyTorch;
    which element then gets the gradient differs (PyTorch picks the last NaN; matching it
    would cost an ``isnan`` pass per kernel offset): for windows that do not overlap, without
    padding, it is the first NaN.

    Parameters
    ----------
    x
        Input (N, C, H, W).
    kernel_size
        Window size: an int or an ``(along H, along W)`` pair.
    stride
        Step between windows; None (default) means ``kernel_size``.
    padding
        Implicit :math:`-\infty` on each side, at most half the kernel.
    input_grad
        With False, ``backward`` returns None and no argmax is kept.

    Returns
    -------
    y, backward
        ``y`` of shape (N, C, Ho, Wo); ``backward(dy)`` returns ``dx`` of ``x``'s shape.
        ``backward`` keeps only the argmax offset of each window, as an (N, C, Ho, Wo) array of
        the smallest integer dtype that holds ``kh * kw`` offsets (int8 up to 128 offsets); for
        windows that do not overlap, without padding, the generic path keeps ``argmax``'s int64
        (one operation per pass instead of one per kernel offset; NumPy's kernel keeps int8).

    Examples
    --------
    >>> import numpy as np
    >>> from portnn.functional.pooling import max_pool2d
    >>> x = np.array([[[[1.0, 2.0, 0.0, 0.0], [3.0, 3.0, 0.0, 0.0]]]])
    >>> y, backward = max_pool2d(x, 2)
    >>> y
    array([[[[3., 0.]]]])
    >>> backward(np.ones_like(y))[0, 0]  # ties: the first maximum in row-major order
    array([[0., 0., 1., 0.],
           [1., 0., 0., 0.]])
    """
    k, s, p = check_pool2d_args(kernel_size, stride, padding, where="max_pool2d")
    out = _check_input(x, k, s, p, "max_pool2d")
    return _max_pool2d(x, k, s, p, out, input_grad)


def _max_pool2d(x: Any, k: Pair, s: Pair, p: Pair, out: Pair, input_grad: bool) -> tuple[Any, Backward]:
    """:func:`max_pool2d` for checked arguments; ``out`` is the output (Ho, Wo)."""
    fast = backends.adapter_for(x).max_pool2d(x, k, s, p, out, input_grad)  # Adapter.max_pool2d, or None
    if fast is not None:
        return fast
    xp = array_namespace(x)
    shape = _dims(x)  # shape[0] None: a batch of unknown size (an ONNX export, input_grad=False)
    count = k[0] * k[1]
    if input_grad and p == (0, 0) and s[0] >= k[0] and s[1] >= k[1] and count > 1:
        return _max_pool2d_disjoint(xp, x, k, s, out)
    xpad = _pad(xp, x, p, -float("inf"))
    if p == (0, 0):  # start from offset (0, 0), which is inside the input
        y, first = xpad[_window(0, 0, out, s)], 1
        if count == 1:  # a 1x1 window: copy, so that y is never a view of x
            y = xp.asarray(y, copy=True)
    else:  # start below everything, so that padding is never picked
        y, first = _filled(xp, x, (*shape[:2], *out), -float("inf")), 0
    if not input_grad:
        for o in range(first, count):
            y = xp.maximum(y, xpad[_window(o // k[1], o % k[1], out, s)])
        return y, lambda dy: None
    idt = _index_dtype(xp, count)
    idx = xp.zeros((), dtype=idt, device=device(x)) if p == (0, 0) else _first_valid_offset(xp, k, s, p, out, idt, device(x))
    for o in range(first, count):
        window = xpad[_window(o // k[1], o % k[1], out, s)]
        greater = xp.astype(window > y, idt)  # strictly greater: the first maximum wins ties
        idx = idx + greater * (o - idx)  # where(greater, o, idx), without a masked write
        y = xp.maximum(y, window)
    del xpad
    idx = xp.broadcast_to(idx, tuple(y.shape)) if idx.ndim < 4 else idx  # kernel_size 1: every offset is 0
    disjoint = s[0] >= k[0] and s[1] >= k[1]  # windows do not overlap: each slice is written once

    def backward(dy: Any) -> Any:
        padded = (*shape[:2], shape[2] + 2 * p[0], shape[3] + 2 * p[1])
        dxp = xp.zeros(padded, dtype=dy.dtype, device=device(dy))
        for o in range(count):
            window = _window(o // k[1], o % k[1], out, s)
            part = dy * xp.astype(idx == o, dy.dtype)
            dxp[window] = part if disjoint else dxp[window] + part
        return dxp[:, :, p[0] : p[0] + shape[2], p[1] : p[1] + shape[3]] if p != (0, 0) else dxp

    return y, backward


#: The window offsets ``0 .. count - 1`` (int64, argmax's dtype) per namespace, device and count: made once.
_OFFSETS: dict[tuple[str, str, int], Any] = {}


def _offsets(xp: Any, dev: Any, count: int) -> Any:
    key = (xp.__name__, str(dev), count)
    if key not in _OFFSETS:
        _OFFSETS[key] = xp.arange(count, dtype=xp.int64, device=dev)
    return _OFFSETS[key]


def _max_pool2d_disjoint(xp: Any, x: Any, k: Pair, s: Pair, out: Pair) -> tuple[Any, Backward]:
    """Windows that do not overlap, no padding: each window's elements along a last axis, one argmax.

    Forward: the (N, C, Ho, Wo, kh * kw) windows (a reshape when they tile a crop of the input,
    one ``stack`` of the offsets' slices when there are gaps), their ``argmax`` (the first
    maximum in row-major order, as PyTorch; the first NaN where there is one) and the element
    there. Backward: ``dy`` times the one-hot of the argmax (three operations), laid back.
    """
    (kh, kw), (ho, wo), count = k, out, k[0] * k[1]
    n, c, h, w = (int(d) for d in x.shape)
    tiles = s == k
    if tiles:  # (N, C, Ho, kh, Wo, kw) -> (N, C, Ho, Wo, kh * kw)
        blocks = xp.reshape(x[:, :, : ho * kh, : wo * kw], (n, c, ho, kh, wo, kw))
        windows = xp.reshape(xp.permute_dims(blocks, (0, 1, 2, 4, 3, 5)), (n, c, ho, wo, count))
    else:
        windows = xp.stack([x[_window(o // kw, o % kw, out, s)] for o in range(count)], axis=-1)
    idx = xp.argmax(windows, axis=-1)
    y = xp.take_along_axis(windows, idx[..., None], axis=-1)[..., 0]
    del windows
    dev = device(x)

    def backward(dy: Any) -> Any:
        onehot = xp.astype(idx[..., None] == _offsets(xp, dev, count), dy.dtype)
        parts = dy[..., None] * onehot  # dy times a 0/1 mask, as the other paths (a -0.0 stays -0.0)
        if tiles:
            blocks = xp.permute_dims(xp.reshape(parts, (n, c, ho, wo, kh, kw)), (0, 1, 2, 4, 3, 5))
            dx = xp.reshape(blocks, (n, c, ho * kh, wo * kw))
            if (ho * kh, wo * kw) == (h, w):
                return dx
            full = xp.zeros((n, c, h, w), dtype=dy.dtype, device=device(dy))
            full[:, :, : ho * kh, : wo * kw] = dx
            return full
        full = xp.zeros((n, c, h, w), dtype=dy.dtype, device=device(dy))
        for o in range(count):
            full[_window(o // kw, o % kw, out, s)] = parts[..., o]
        return full

    return y, backward


def avg_pool2d(
    x: Any, kernel_size: Any, *, stride: Any = None, padding: Any = 0, input_grad: bool = True
) -> tuple[Any, Backward]:
    r"""Mean of each ``kernel_size`` window of ``x`` (N, C, H, W): PyTorch's ``avg_pool2d`` (``count_include_pad=True``).

    With ``x`` zero-padded by ``padding`` on each side, and output size
    ``Ho = (H + 2 ph - kh) // sh + 1`` (likewise ``Wo``; floor, no ``ceil_mode``), every
    window divides by ``kh * kw``, padding included:

    .. math:: y_{n,c,a,b} = \frac{1}{k_h k_w} \sum_{i,j} x_{n,c,\,a s_h + i,\,b s_w + j}, \qquad
              dx_{n,c,\,a s_h + i,\,b s_w + j} \mathrel{+}= \frac{dy_{n,c,a,b}}{k_h k_w}

    Parameters
    ----------
    x
        Input (N, C, H, W).
    kernel_size
        Window size: an int or an ``(along H, along W)`` pair.
    stride
        Step between windows; None (default) means ``kernel_size``.
    padding
        Implicit zeros on each side, at most half the kernel.
    input_grad
        With False, ``backward`` returns None.

    Returns
    -------
    y, backward
        ``y`` of shape (N, C, Ho, Wo); ``backward(dy)`` returns ``dx`` of ``x``'s shape.
        ``backward`` keeps no array.

    Examples
    --------
    >>> import numpy as np
    >>> from portnn.functional.pooling import avg_pool2d
    >>> y, backward = avg_pool2d(np.arange(8.0).reshape(1, 1, 2, 4), 2)
    >>> y
    array([[[[2.5, 4.5]]]])
    >>> backward(np.ones_like(y))[0, 0]
    array([[0.25, 0.25, 0.25, 0.25],
           [0.25, 0.25, 0.25, 0.25]])
    """
    k, s, p = check_pool2d_args(kernel_size, stride, padding, where="avg_pool2d")
    out = _check_input(x, k, s, p, "avg_pool2d")
    return _avg_pool2d(x, k, s, p, out, input_grad)


def _avg_pool2d(x: Any, k: Pair, s: Pair, p: Pair, out: Pair, input_grad: bool) -> tuple[Any, Backward]:
    """:func:`avg_pool2d` for checked arguments; ``out`` is the output (Ho, Wo)."""
    xp = array_namespace(x)
    shape = _dims(x)  # shape[0] None: a batch of unknown size (an ONNX export)
    xpad = _pad(xp, x, p, 0.0)
    count = k[0] * k[1]
    total = xpad[_window(0, 0, out, s)]
    for o in range(1, count):
        total = total + xpad[_window(o // k[1], o % k[1], out, s)]
    del xpad
    y = total * (1.0 / count) if count > 1 else total * 1.0  # a new array even for a 1x1 window
    disjoint = s[0] >= k[0] and s[1] >= k[1]  # windows do not overlap: each slice is written once

    def backward(dy: Any) -> Any:
        if not input_grad:
            return None
        share = dy * (1.0 / count)
        padded = (*shape[:2], shape[2] + 2 * p[0], shape[3] + 2 * p[1])
        dxp = xp.zeros(padded, dtype=dy.dtype, device=device(dy))
        for o in range(count):
            window = _window(o // k[1], o % k[1], out, s)
            dxp[window] = share if disjoint else dxp[window] + share
        return dxp[:, :, p[0] : p[0] + shape[2], p[1] : p[1] + shape[3]] if p != (0, 0) else dxp

    return y, backward


def global_avg_pool2d(x: Any, *, input_grad: bool = True) -> tuple[Any, Backward]:
    r"""Mean of each channel of ``x`` (N, C, H, W) over H and W: an (N, C) output.

    Keras' ``GlobalAveragePooling2D``; PyTorch's ``adaptive_avg_pool2d(x, 1)`` followed by
    ``flatten(1)`` (or ``x.mean((2, 3))``).

    .. math:: y_{n,c} = \frac{1}{HW} \sum_{h,w} x_{n,c,h,w}, \qquad dx_{n,c,h,w} = \frac{dy_{n,c}}{HW}

    Parameters
    ----------
    x
        Input (N, C, H, W) with H, W >= 1.
    input_grad
        With False, ``backward`` returns None.

    Returns
    -------
    y, backward
        ``y`` of shape (N, C); ``backward(dy)`` returns ``dx`` of ``x``'s shape (a new array)
        and keeps no array.

    Examples
    --------
    >>> import numpy as np
    >>> from portnn.functional.pooling import global_avg_pool2d
    >>> y, backward = global_avg_pool2d(np.arange(8.0).reshape(1, 2, 2, 2))
    >>> y
    array([[1.5, 5.5]])
    >>> backward(np.ones_like(y))[0, 1]
    array([[0.25, 0.25],
           [0.25, 0.25]])
    """
    xp = array_namespace(x)
    if x.ndim != 4 or x.shape[2] < 1 or x.shape[3] < 1:
        raise ValueError(f"global_avg_pool2d: got input of shape {tuple(x.shape)}: expected (batch, C, H, W) with H, W >= 1")
    shape = _dims(x)
    y = xp.mean(x, axis=(2, 3))

    def backward(dy: Any) -> Any:
        if not input_grad:
            return None
        share = xp.reshape(dy * (1.0 / (shape[2] * shape[3])), (*shape[:2], 1, 1))
        return xp.zeros(shape, dtype=dy.dtype, device=device(dy)) + share

    return y, backward


def global_avg_pool1d(x: Any, *, input_grad: bool = True) -> tuple[Any, Backward]:
    r"""Mean of each channel of ``x`` (N, C, L) over its length L: an (N, C) output.

    PyTorch's layout and ``adaptive_avg_pool1d(x, 1)`` followed by ``flatten(1)`` (or
    ``x.mean(2)``); Keras' ``GlobalAveragePooling1D(data_format="channels_first")``. Pool a
    sequence (N, T, D) over its steps with a ``Permute((2, 1))`` first.

    .. math:: y_{n,c} = \frac{1}{L} \sum_{l} x_{n,c,l}, \qquad dx_{n,c,l} = \frac{dy_{n,c}}{L}

    Parameters
    ----------
    x
        Input (N, C, L) with L >= 1.
    input_grad
        With False, ``backward`` returns None.

    Returns
    -------
    y, backward
        ``y`` of shape (N, C); ``backward(dy)`` returns ``dx`` of ``x``'s shape (a new array)
        and keeps no array.

    Examples
    --------
    >>> import numpy as np
    >>> from portnn.functional.pooling import global_avg_pool1d
    >>> y, backward = global_avg_pool1d(np.arange(6.0).reshape(1, 2, 3))
    >>> y
    array([[1., 4.]])
    >>> backward(np.ones_like(y))
    array([[[0.33333333, 0.33333333, 0.33333333],
            [0.33333333, 0.33333333, 0.33333333]]])
    """
    xp = array_namespace(x)
    if x.ndim != 3 or x.shape[2] < 1:
        raise ValueError(f"global_avg_pool1d: got input of shape {tuple(x.shape)}: expected (batch, C, L) with L >= 1")
    shape = tuple(x.shape)  # the batch may be unknown (None) in an ONNX export, which runs no backward
    y = xp.mean(x, axis=2)

    def backward(dy: Any) -> Any:
        if not input_grad:
            return None
        share = xp.reshape(dy * (1.0 / shape[2]), (*shape[:2], 1))
        return xp.zeros(shape, dtype=dy.dtype, device=device(dy)) + share

    return y, backward

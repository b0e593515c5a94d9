"""2-D convolution (cross-correlation, as in PyTorch) over NCHW batches, by im2col and one matrix product.

The generic path is written once against the array API standard: zero padding by slice
assignment, windows by strided slices (one per kernel offset), stacked into one im2col
buffer; the input gradient is the reverse, a sum of slice-adds per kernel offset (each slice
write touches distinct elements, so no duplicate-index scatter is needed). The adapter of
the input's library may take over with a faster kernel
(:meth:`portnn.backends.Adapter.conv2d`; NumPy's puts the batch axis last where that pays, and
runs windows that tile the input without overlap as one GEMM)
and returns None where it has none; then :meth:`~portnn.backends.Adapter.conv2d_im2col` may run
this generic path in the library's own terms (NumPy's: ``out=`` into reused buffers), and
where that is None too, the generic path runs.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

from array_api_compat import array_namespace, device

from .. import backends
from .._array import dtype_name

__all__ = ["col2im", "conv1d", "conv2d", "conv2d_output_size", "im2col", "pair"]

Backward = Callable[[Any], tuple[Any, Any, Any]]
Pair = tuple[int, int]


def pair(value: Any, name: str, *, minimum: int = 1, where: str = "conv2d") -> Pair:
    """``value`` (an int or a pair of ints) as a pair ``(along H, along W)``; raise a ValueError naming ``where``.

    Examples
    --------
    >>> from portnn.functional.conv import pair
    >>> pair(3, "kernel_size"), pair((1, 2), "padding", minimum=0)
    ((3, 3), (1, 2))
    """
    items = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    result = tuple(_as_int(v) for v in items)
    if len(result) != 2 or any(v is None or v < minimum for v in result):
        kind = "positive ints" if minimum >= 1 else "ints >= 0"
        raise ValueError(f"{where}: {name} must be an int or a pair of {kind}; got {name}={value!r}")
    return result  # type: ignore[return-value]


def _as_int(v: Any) -> int | None:
    """``v`` as an int when it is one (NumPy ints included, bools not), else None."""
    if isinstance(v, bool):
        return None
    try:
        return operator.index(v)
    except TypeError:
        return None


def _dims(x: Any) -> tuple[int | None, ...]:
    """The shape of ``x`` as Python ints, with None where a size is unknown.

    The standard lets a lazy array leave a size unknown: ndonnx's arrays, which record an ONNX
    graph for batches of any size (:mod:`portnn.onnx`), say ``x.shape[0] is None``.
    """
    return tuple(None if v is None else int(v) for v in x.shape)


def _filled(xp: Any, like: Any, shape: tuple[int | None, ...], value: float) -> Any:
    """A new array of ``shape`` holding ``value``, in the dtype and on the device of ``like`` (an array of the same rank).

    ``shape[0]`` None (a batch of unknown size, as ``_dims(like)[0]``) takes ``like``'s batch
    axis by broadcasting, since no size can be written for it; a known batch size is one
    ``xp.zeros`` or ``xp.full``, as ever.
    """
    dtype, dev = like.dtype, device(like)
    if shape[0] is not None:
        return xp.zeros(shape, dtype=dtype, device=dev) if value == 0 else xp.full(shape, value, dtype=dtype, device=dev)
    batch = xp.zeros_like(like[(slice(None),) + (slice(0, 1),) * (like.ndim - 1)])  # (N, 1, ..., 1)
    return batch + xp.full((1, *shape[1:]), value, dtype=dtype, device=dev)


def conv2d_output_size(
    size: Pair, kernel_size: Pair, stride: Pair = (1, 1), padding: Pair = (0, 0), dilation: Pair = (1, 1)
) -> Pair:
    """Output height and width: ``(size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1`` per axis.

    Below 1 when the padded input is smaller than the dilated kernel (the caller raises).

    Examples
    --------
    >>> from portnn.functional.conv import conv2d_output_size
    >>> conv2d_output_size((28, 28), (3, 3)), conv2d_output_size((28, 28), (5, 5), (2, 2), (2, 2))
    ((26, 26), (14, 14))
    """
    return tuple(  # type: ignore[return-value]
        (size[a] + 2 * padding[a] - dilation[a] * (kernel_size[a] - 1) - 1) // stride[a] + 1 for a in range(2)
    )


def _window(i: int, j: int, out: Pair, stride: Pair, dilation: Pair) -> tuple[slice, slice, slice, slice]:
    """The strided slice of a (padded) input that kernel offset ``(i, j)`` sees at every output position.

    Stops are exact (the last element read plus one), never past the end: array-api-strict
    refuses out-of-range stops.
    """
    top, left = i * dilation[0], j * dilation[1]
    rows = slice(top, top + stride[0] * (out[0] - 1) + 1, stride[0])
    cols = slice(left, left + stride[1] * (out[1] - 1) + 1, stride[1])
    return slice(None), slice(None), rows, cols


def _windows_size(shape: tuple[int, ...], kernel_size: Pair, stride: Pair, dilation: Pair, where: str) -> Pair:
    out = conv2d_output_size(tuple(shape[2:]), kernel_size, stride, (0, 0), dilation)
    if out[0] < 1 or out[1] < 1:
        reach = tuple(dilation[a] * (kernel_size[a] - 1) + 1 for a in range(2))
        raise ValueError(f"{where}: input of shape {tuple(shape)} is smaller than the (dilated) kernel, which spans {reach}")
    return out


def im2col(x: Any, kernel_size: Any, *, stride: Any = 1, dilation: Any = 1) -> Any:
    """Every ``kernel_size`` window of ``x`` (N, C, H, W), as columns: an array of shape (N, C·kh·kw, Ho·Wo).

    ``cols[n, (c, i, j), (p, q)] = x[n, c, p * sh + i * dh, q * sw + j * dw]``, with ``(c, i, j)``
    in C order, so that ``weight.reshape(out, -1) @ cols`` is the convolution. No padding
    here: pad ``x`` first. One strided slice per kernel offset, stacked into one new buffer.

    Examples
    --------
    >>> import numpy as np
    >>> from portnn.functional.conv import im2col
    >>> im2col(np.arange(9.0).reshape(1, 1, 3, 3), 2)[0]
    array([[0., 1., 3., 4.],
           [1., 2., 4., 5.],
           [3., 4., 6., 7.],
           [4., 5., 7., 8.]])
    """
    k, s, d = (
        pair(kernel_size, "kernel_size", where="im2col"),
        pair(stride, "stride", where="im2col"),
        pair(dilation, "dilation", where="im2col"),
    )
    out = _windows_size(tuple(x.shape), k, s, d, "im2col")
    return _im2col(x, k, s, d, out)


def col2im(cols: Any, shape: Any, kernel_size: Any, *, stride: Any = 1, dilation: Any = 1) -> Any:
    """The adjoint of :func:`im2col`: add every column back onto the window it came from.

    Returns an array of ``shape`` (N, C, H, W): each element is the sum of the entries of
    ``cols`` (N, C·kh·kw, Ho·Wo) that :func:`im2col` copied from it (zero where no window
    reaches). The sum runs over kernel offsets ``(i, j)`` in C order, one slice-add each.

    Examples
    --------
    >>> import numpy as np
    >>> from portnn.functional.conv import col2im
    >>> col2im(np.ones((1, 4, 4)), (1, 1, 3, 3), 2)[0, 0]
    array([[1., 2., 1.],
           [2., 4., 2.],
           [1., 2., 1.]])
    """
    k, s, d = (
        pair(kernel_size, "kernel_size", where="col2im"),
        pair(stride, "stride", where="col2im"),
        pair(dilation, "dilation", where="col2im"),
    )
    shape = tuple(int(v) for v in shape)
    out = _windows_size(shape, k, s, d, "col2im")
    n, c = shape[:2]
    if tuple(cols.shape) != (n, c * k[0] * k[1], out[0] * out[1]):
        raise ValueError(f"col2im: cols of shape {tuple(cols.shape)} do not fit input shape {shape} and kernel {k}")
    return _col2im(cols, shape, k, s, d, out)


def _im2col(x: Any, k: Pair, s: Pair, d: Pair, out: Pair) -> Any:
    xp = array_namespace(x)
    c = x.shape[1]
    # slices are views; stacking them is the one copy
    cols = xp.stack([x[_window(i, j, out, s, d)] for i in range(k[0]) for j in range(k[1])], axis=2)
    return xp.reshape(cols, (-1, c * k[0] * k[1], out[0] * out[1]))  # -1: the batch, whose size may be unknown


def _col2im(cols: Any, shape: tuple[int, ...], k: Pair, s: Pair, d: Pair, out: Pair) -> Any:
    xp = array_namespace(cols)
    n, c = shape[:2]
    parts = xp.reshape(cols, (n, c, k[0] * k[1], out[0], out[1]))
    dx = xp.zeros(shape, dtype=cols.dtype, device=device(cols))
    inplace = backends.adapter_for(cols).inplace
    for i in range(k[0]):
        for j in range(k[1]):
            window = _window(i, j, out, s, d)
            if inplace:  # one in-place add into the window's view (one operation, not an add and a write)
                view = dx[window]
                view += parts[:, :, i * k[1] + j, ...]
            else:
                dx[window] = dx[window] + parts[:, :, i * k[1] + j, ...]
    return dx


def _weight_grad(xp: Any, dy: Any, cols: Any) -> Any:
    """``sum_n dy[n] @ cols[n].T`` for ``dy`` (N, O, L) and ``cols`` (N, CK, L): shape (O, CK).

    Batched products summed over the batch, in chunks of the batch small enough that the
    (chunk, O, CK) products take no more memory than ``cols`` (one chunk unless O > L).
    """
    n, o, length = dy.shape
    chunk = max(1, (n * length) // o)
    dw = None
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        part = xp.sum(xp.matmul(dy[start:stop, ...], xp.matrix_transpose(cols[start:stop, ...])), axis=0)
        dw = part if dw is None else dw + part
    return dw


def conv2d(
    x: Any,
    weight: Any,
    bias: Any = None,
    *,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
    input_grad: bool = True,
    param_grad: bool = True,
) -> tuple[Any, Backward]:
    r"""2-D cross-correlation of ``x`` (N, C, H, W) with ``weight`` (O, C, kh, kw), plus ``bias`` (O,): PyTorch's ``conv2d``.

    With ``xp`` the input zero-padded by ``padding``, and output size
    ``Ho = (H + 2 ph - dh (kh - 1) - 1) // sh + 1`` (likewise ``Wo``):

    .. math:: y_{n,o,p,q} = b_o + \sum_{c,i,j} W_{o,c,i,j}\; xp_{n,c,\,p s_h + i d_h,\,q s_w + j d_w}

    computed as ``y[n] = W.reshape(O, C kh kw) @ cols[n]`` with ``cols = im2col(xp)`` of shape
    (N, C·kh·kw, Ho·Wo). Backward, for upstream gradient ``dy`` viewed as (N, O, Ho·Wo):

    .. math:: dW = \sum_n dy_n\, \mathrm{cols}_n^\top, \qquad db_o = \sum_{n,p,q} dy_{n,o,p,q},
              \qquad dx = \mathrm{crop}\big(\mathrm{col2im}(W^\top dy_n)\big)

    where ``col2im`` adds each column back onto its window and ``crop`` drops the padding.

    Parameters
    ----------
    x, weight, bias
        Arrays of one library, device and float dtype. ``bias`` may be None.
    stride, padding, dilation
        Ints or ``(along H, along W)`` pairs; padding is with zeros, on both sides.
    input_grad
        With False, ``backward`` skips ``dx`` (returns None): no ``W.T @ dy`` product, no col2im.
    param_grad
        With False (a frozen layer), ``backward`` skips ``dweight`` and ``dbias`` (returns None
        for them).

    Returns
    -------
    y, backward
        ``y`` of shape (N, O, Ho, Wo); ``backward(dy)`` returns ``(dx, dweight, dbias)``
        (``dbias`` None without a bias).

    Notes
    -----
    Memory of the generic path: the forward materialises one im2col buffer
    (N, C·kh·kw, Ho·Wo) (plus, with padding, one padded copy of ``x``) and the output;
    ``backward`` keeps the im2col buffer and ``weight``, nothing else. A backward call
    allocates ``W.T @ dy`` (one more buffer of the im2col size; not with
    ``input_grad=False``), the batched products of ``dW`` (no larger than the im2col buffer)
    and the padded ``dx``. An adapter's kernel documents its own (NumPy's
    :func:`portnn.backends.numpy.conv2d_batch_last` also holds the output twice for a moment).

    Examples
    --------
    >>> import numpy as np
    >>> from portnn.functional.conv import conv2d
    >>> x = np.arange(16.0).reshape(1, 1, 4, 4)
    >>> y, backward = conv2d(x, np.ones((2, 1, 3, 3)), np.array([0.0, 1.0]), padding=1)
    >>> y.shape, y[0, 1, 0]
    ((1, 2, 4, 4), array([11., 19., 25., 19.]))
    >>> dx, dw, db = backward(np.ones_like(y))
    >>> dx.shape, dw.shape, db
    ((1, 1, 4, 4), (2, 1, 3, 3), array([16., 16.]))
    """
    xp = array_namespace(x, weight) if bias is None else array_namespace(x, weight, bias)
    if x.ndim != 4 or weight.ndim != 4 or x.shape[1] != weight.shape[1]:
        raise ValueError(
            f"conv2d: input of shape {tuple(x.shape)} does not fit weight of shape {tuple(weight.shape)}: "
            "expected input (N, C, H, W) and weight (out_channels, C, kh, kw)"
        )
    o = weight.shape[0]
    if bias is not None and tuple(bias.shape) != (o,):
        raise ValueError(
            f"conv2d: bias of shape {tuple(bias.shape)} does not fit weight of shape {tuple(weight.shape)}: expected ({o},)"
        )
    for a in (weight, bias):
        if a is not None and a.dtype != x.dtype:
            raise TypeError(f"conv2d: input is {dtype_name(x.dtype)} but weight/bias are {dtype_name(a.dtype)}; cast one of them")
    s, p, d = pair(stride, "stride"), pair(padding, "padding", minimum=0), pair(dilation, "dilation")
    k = (int(weight.shape[2]), int(weight.shape[3]))
    out = conv2d_output_size((int(x.shape[2]), int(x.shape[3])), k, s, p, d)
    if out[0] < 1 or out[1] < 1:
        raise ValueError(
            f"conv2d: input of shape {tuple(x.shape)} with padding {p} is smaller than the kernel {k} "
            f"(dilation {d} makes it span {tuple(d[a] * (k[a] - 1) + 1 for a in range(2))})"
        )
    adapter = backends.adapter_for(x)
    kwargs = {"stride": s, "padding": p, "dilation": d, "input_grad": input_grad, "param_grad": param_grad}
    fast = adapter.conv2d(x, weight, bias, **kwargs)
    if fast is None:
        fast = adapter.conv2d_im2col(x, weight, bias, **kwargs)
    if fast is not None:
        return fast
    return _conv2d(xp, x, weight, bias, s, p, d, out, input_grad, param_grad)


def _conv2d(
    xp: Any, x: Any, weight: Any, bias: Any, s: Pair, p: Pair, d: Pair, out: Pair, input_grad: bool, param_grad: bool = True
) -> tuple[Any, Backward]:
    """The generic path of :func:`conv2d`, for checked arguments."""
    n, c, h, w = _dims(x)  # n None: a batch of unknown size (an ONNX export), which the forward never needs
    o, k = int(weight.shape[0]), (int(weight.shape[2]), int(weight.shape[3]))
    padded = (n, c, h + 2 * p[0], w + 2 * p[1])
    if p != (0, 0):
        xpad = _filled(xp, x, padded, 0.0)
        xpad[:, :, p[0] : p[0] + h, p[1] : p[1] + w] = x
    else:
        xpad = x
    cols = _im2col(xpad, k, s, d, out)  # (N, C*kh*kw, Ho*Wo): the one im2col buffer
    del xpad
    w2 = xp.reshape(weight, (o, c * k[0] * k[1]))
    y = xp.matmul(w2, cols)  # (N, O, Ho*Wo), NCHW order
    if bias is not None:
        y += xp.reshape(bias, (o, 1))  # y is fresh: add in place
    y = xp.reshape(y, (-1, o, out[0], out[1]))

    def backward(dy: Any) -> tuple[Any, Any, Any]:
        dy2 = xp.reshape(dy, (n, o, out[0] * out[1]))
        dw = xp.reshape(_weight_grad(xp, dy2, cols), tuple(weight.shape)) if param_grad else None
        db = xp.sum(dy2, axis=(0, 2)) if bias is not None and param_grad else None
        if not input_grad:
            return None, dw, db
        dxp = _col2im(xp.matmul(xp.matrix_transpose(w2), dy2), padded, k, s, d, out)
        dx = dxp[:, :, p[0] : p[0] + h, p[1] : p[1] + w] if p != (0, 0) else dxp
        return dx, dw, db

    return y, backward


def _single(value: Any, name: str, *, minimum: int = 1) -> int:
    """``value`` (an int, or PyTorch's one-int tuple) as an int; a ValueError naming conv1d otherwise."""
    items = tuple(value) if isinstance(value, (tuple, list)) else (value,)
    v = _as_int(items[0]) if len(items) == 1 else None
    if v is None or v < minimum:
        kind = "a positive int" if minimum >= 1 else "an int >= 0"
        raise ValueError(f"conv1d: {name} must be {kind}; got {name}={value!r}")
    return v


def conv1d(
    x: Any,
    weight: Any,
    bias: Any = None,
    *,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
    input_grad: bool = True,
    param_grad: bool = True,
) -> tuple[Any, Backward]:
    r"""1-D cross-correlation of ``x`` (N, C, L) with ``weight`` (O, C, k), plus ``bias`` (O,): PyTorch's ``conv1d``.

    .. math:: y_{n,o,p} = b_o + \sum_{c,i} W_{o,c,i}\; xp_{n,c,\,p s + i d}, \qquad
              L_o = (L + 2 \cdot padding - d (k - 1) - 1) // s + 1

    with ``xp`` the input zero-padded by ``padding`` on both ends. It is :func:`conv2d` on the
    height-1 views (N, C, 1, L) and (O, C, 1, k) (reshapes, no copies), so its backward
    (:math:`dW = \sum_n dy_n \mathrm{cols}_n^\top`, :math:`db_o = \sum_{n,p} dy_{n,o,p}`,
    :math:`dx` = the windows of :math:`W^\top dy` added back) and an adapter's fast kernel are conv2d's.

    Parameters
    ----------
    x, weight, bias
        Arrays of one library, device and float dtype. ``bias`` may be None.
    stride, padding, dilation
        Ints (or PyTorch's one-int tuples); padding is with zeros, on both ends.
    input_grad, param_grad
        As for :func:`conv2d`: False skips ``dx``, or ``dweight`` and ``dbias`` (None in their place).

    Returns
    -------
    y, backward
        ``y`` of shape (N, O, Lo); ``backward(dy)`` returns ``(dx, dweight, dbias)``.

    Examples
    --------
    >>> import numpy as np
    >>> from portnn.functional import conv1d
    >>> y, backward = conv1d(np.arange(5.0).reshape(1, 1, 5), np.ones((1, 1, 3)), padding=1)
    >>> y
    array([[[1., 3., 6., 9., 7.]]])
    >>> [g.shape for g in backward(np.ones_like(y))[:2]]
    [(1, 1, 5), (1, 1, 3)]
    """
    if x.ndim != 3 or weight.ndim != 3 or x.shape[1] != weight.shape[1]:
        raise ValueError(
            f"conv1d: input of shape {tuple(x.shape)} does not fit weight of shape {tuple(weight.shape)}: "
            "expected input (N, C, L) and weight (out_channels, C, k)"
        )
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        raise ValueError(f"conv1d: bias of shape {tuple(bias.shape)} does not fit weight of shape {tuple(weight.shape)}")
    for a in (weight, bias):
        if a is not None and a.dtype != x.dtype:
            raise TypeError(f"conv1d: input is {dtype_name(x.dtype)} but weight/bias are {dtype_name(a.dtype)}; cast one of them")
    s, p, d = _single(stride, "stride"), _single(padding, "padding", minimum=0), _single(dilation, "dilation")
    (_, c, length), (o, _, k) = _dims(x), tuple(int(v) for v in weight.shape)
    if (length + 2 * p - d * (k - 1) - 1) // s + 1 < 1:
        raise ValueError(
            f"conv1d: input of shape {tuple(x.shape)} with padding {p} is shorter than the kernel {k} "
            f"(dilation {d} makes it span {d * (k - 1) + 1})"
        )
    xp = array_namespace(x, weight)
    y4, backward4 = conv2d(
        xp.reshape(x, (-1, c, 1, length)), xp.reshape(weight, (o, c, 1, k)), bias,
        stride=(1, s), padding=(0, p), dilation=(1, d), input_grad=input_grad, param_grad=param_grad,
    )  # fmt: skip
    y = xp.reshape(y4, (-1, o, y4.shape[3]))

    def backward(dy: Any) -> tuple[Any, Any, Any]:
        dx, dw, db = backward4(xp.reshape(dy, (-1, o, 1, dy.shape[2])))
        return (
            None if dx is None else xp.reshape(dx, (-1, c, length)),
            None if dw is None else xp.reshape(dw, (o, c, k)),
            db,
        )

    return y, backward

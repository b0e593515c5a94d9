"""NumPy adapter: the CPU backend and the host format every other backend converts through."""

from __future__ import annotations

import functools
import sys
import threading
from collections import OrderedDict
from typing import Any

import array_api_compat.numpy as xp_numpy
import numpy as np

from ._base import Adapter


class NumpyAdapter(Adapter):
    name = "numpy"
    inplace = True

    def launch_bound(self, device: Any = None) -> bool:
        return False  # a CPU: an operation costs its memory traffic, not a launch

    @property
    def xp(self) -> Any:
        return xp_numpy

    def default_device(self) -> Any:
        return "cpu"

    def device(self, name: Any = None) -> Any:
        if name not in (None, "cpu"):
            raise ValueError(f"the numpy backend has one device, 'cpu'; got device={name!r}")
        return "cpu"

    def owns(self, x: Any) -> bool:
        return isinstance(x, (np.ndarray, np.generic))

    def from_numpy(self, a: Any, device: Any = None) -> Any:
        self.device(device)
        return np.asarray(a)

    def to_numpy(self, x: Any) -> Any:
        return np.asarray(x)

    def dlpack_device(self, device: Any) -> tuple[int, int] | None:
        self.device(device)
        return (1, 0)  # kDLCPU

    def from_dlpack(self, x: Any, device: Any = None) -> Any:
        self.device(device)
        return np.from_dlpack(x)

    def make_generator(self, seed: int, device: Any = None) -> Any:
        self.device(device)
        return np.random.Generator(np.random.PCG64(seed))

    def random_uniform(self, generator: Any, shape: tuple[int, ...], dtype: Any, device: Any = None) -> Any:
        return generator.random(tuple(shape), dtype=dtype)  # float32 draws stay float32

    def erf(self, x: Any) -> Any:
        """SciPy's ``erf`` where SciPy is installed (it is no dependency of portnn); None otherwise."""
        special = _scipy_special()
        return None if special is None else special.erf(x, out=np.empty_like(x))  # out=: a 0-d input stays an array

    # -- fast kernels (see Adapter.conv2d) ------------------------------------------------
    def conv2d(
        self,
        x: Any,
        weight: Any,
        bias: Any,
        *,
        stride: tuple[int, int],
        padding: tuple[int, int],
        dilation: tuple[int, int],
        input_grad: bool,
        param_grad: bool = True,
    ) -> tuple[Any, Any] | None:
        (n, c), (o, _, kh, kw) = x.shape[:2], weight.shape
        disjoint = tuple(stride) == (kh, kw) and tuple(padding) == (0, 0) and tuple(dilation) == (1, 1)
        if disjoint and kh * kw > 1 and c >= 8 and x.dtype in _FLOATS:
            # windows that tile the input without overlap (a 2x2 stride-2 conv): no im2col gather,
            # and each product is one GEMM. Measured, float32, 1 thread, im2col/batch-last/this ms:
            # 32->32 2x2/2 on 14x14 at N=128 3.6/3.0/2.4, N=8 0.24/0.34/0.16, N=1 .057/.15/.040;
            # a 1x1 conv loses here (16->16 on 13x13: 0.8/1.3/1.8), 3->48 4x4/4 on 32x32 ties (2.2/4.5/2.2)
            return conv2d_disjoint(x, weight, bias, input_grad=input_grad, param_grad=param_grad)
        # Batch-last pays where the im2col buffer is large next to the input and output it
        # transposes, and col2im runs. Measured, float32, 1 thread, generic/batch-last time:
        # 8->16 3x3 on 13x13 at N=128 1.7 (16: 1.2), 6->16 5x5 1.7, 8->32 3x3 1.3;
        # 4->32 3x3 0.75, 16->16 1x1 0.74, 1->8 3x3 on 28x28 0.9 (0.6 without dx), N=1 0.4.
        if not input_grad and bias is not None and param_grad and x.dtype in _FLOATS:
            # a first layer: the im2col kernel with the bias folded into its products (np.sum over
            # axes (0, 2) measured 0.41 ms for dy of (128, 32, 14, 14), the GEMV 0.03)
            return conv2d_im2col(
                x, weight, bias, stride=stride, padding=padding, dilation=dilation, input_grad=False, exact=False
            )
        if not input_grad or n < 16 or 5 * c * kh * kw < 8 * (o + c):
            return None
        return conv2d_batch_last(
            x, weight, bias, stride=stride, padding=padding, dilation=dilation, input_grad=input_grad, param_grad=param_grad
        )

    @property
    def workspace(self) -> Workspace:
        """The scratch arrays the fast kernels reuse from step to step (:class:`Workspace`)."""
        return _WORKSPACE

    def relu(self, x: Any) -> tuple[Any, Any] | None:
        # np.maximum against a broadcast 0 runs a scalar loop (measured 3x slower than against
        # a zero array of x's shape); the zero array is calloc'd and never written, so its pages
        # stay the kernel's one shared zero page: reading it costs no memory traffic.
        if not isinstance(x, np.ndarray) or x.dtype not in _FLOATS or x.ndim == 0:
            return None
        y = np.maximum(x, _WORKSPACE.zeros(x.shape, x.dtype), out=_WORKSPACE.empty("relu.y", x.shape, x.dtype))

        def backward(dy: Any) -> Any:
            mask = np.greater(y, 0, out=_WORKSPACE.empty("relu.mask", y.shape, np.bool_))
            return np.multiply(dy, mask, out=_WORKSPACE.empty("relu.dx", dy.shape, dy.dtype))

        return y, backward

    def max_pool2d(
        self,
        x: Any,
        kernel_size: tuple[int, int],
        stride: tuple[int, int],
        padding: tuple[int, int],
        out: tuple[int, int],
        input_grad: bool = True,
    ) -> tuple[Any, Any] | None:
        # Windows that do not overlap and no padding (MaxPool2d(2) and the like): the generic
        # comparisons with out= into reused buffers, the argmax offset kept as int8.
        (kh, kw), (sh, sw) = kernel_size, stride
        if padding != (0, 0) or sh < kh or sw < kw or x.dtype not in _FLOATS or kh * kw > 127:
            return None
        return max_pool2d_disjoint(x, kernel_size, stride, out, input_grad=input_grad)

    def conv2d_im2col(
        self,
        x: Any,
        weight: Any,
        bias: Any,
        *,
        stride: tuple[int, int],
        padding: tuple[int, int],
        dilation: tuple[int, int],
        input_grad: bool,
        param_grad: bool = True,
    ) -> tuple[Any, Any] | None:
        if x.dtype not in _FLOATS:
            return None
        return conv2d_im2col(
            x, weight, bias, stride=stride, padding=padding, dilation=dilation, input_grad=input_grad, param_grad=param_grad
        )

    def batch_moments(self, x: Any) -> tuple[Any, Any] | None:
        if not isinstance(x, np.ndarray) or x.dtype not in _FLOATS:
            return None
        axes = (0,) if x.ndim == 2 else (0, 2)
        mean = np.mean(x, axis=axes)
        squares = np.subtract(x, _per_channel(mean, x), out=_WORKSPACE.empty("bn.squares", x.shape, x.dtype))
        np.multiply(squares, squares, out=squares)
        return mean, np.mean(squares, axis=axes)

    def batch_norm(
        self,
        x: Any,
        weight: Any,
        bias: Any,
        *,
        mean: Any,
        var: Any,
        training: bool,
        eps: float,
        input_grad: bool,
        param_grad: bool,
    ) -> tuple[Any, Any] | None:
        if not isinstance(x, np.ndarray) or x.dtype not in _FLOATS:
            return None
        return batch_norm_out(
            x, weight, bias, mean=mean, var=var, training=training, eps=eps, input_grad=input_grad, param_grad=param_grad
        )

    def concat_into(self, arrays: list[Any], out: Any) -> bool:
        if not isinstance(out, np.ndarray) or any(a.dtype != out.dtype for a in arrays):
            return False
        np.concatenate([np.reshape(a, (-1,)) for a in arrays], out=out)
        return True

    def index_add_rows(self, n_rows: int, indices: Any, values: Any) -> Any:
        # Sort, then one segment sum per distinct index (np.add.reduceat) written to distinct rows:
        # measured 2-4x faster than np.add.at (float32, M = 4096 rows of 32-128 into 10 to 30000).
        out = np.zeros((n_rows, values.shape[1]), dtype=values.dtype)
        if indices.shape[0] == 0:
            return out
        order = np.argsort(indices, kind="stable")
        ordered = indices[order]
        starts = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1])))
        out[ordered[starts]] = np.add.reduceat(values[order], starts, axis=0)
        return out

    def lstm(
        self,
        x: Any,
        weight_ih: Any,
        weight_hh: Any,
        bias_ih: Any,
        bias_hh: Any,
        *,
        return_sequences: bool,
        input_grad: bool,
        param_grad: bool,
    ) -> tuple[Any, Any] | None:
        arrays = [a for a in (x, weight_ih, weight_hh, bias_ih, bias_hh) if a is not None]
        if not all(isinstance(a, np.ndarray) and a.dtype == x.dtype for a in arrays) or x.dtype not in _FLOATS:
            return None
        return lstm_out(
            x, weight_ih, weight_hh, bias_ih, bias_hh,
            return_sequences=return_sequences, input_grad=input_grad, param_grad=param_grad,
        )  # fmt: skip


def conv2d_batch_last(
    x: Any,
    weight: Any,
    bias: Any,
    *,
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
    input_grad: bool = True,
    param_grad: bool = True,
) -> tuple[Any, Any]:
    """:func:`portnn.functional.conv.conv2d` on NumPy with the batch axis last (the formulas are there).

    The generic path's im2col buffer is (N, C*kh*kw, Ho*Wo): NumPy then copies and adds in
    runs of Wo elements (11 for a 13x13 input), and each product is N small matrix products.
    Here the input is transposed once to (C, Hp, Wp, N), so the buffer is (C*kh*kw, Ho*Wo*N)
    and every window copy and col2im slice-add runs over Wo*N contiguous elements (N with
    a horizontal stride), and every product is one GEMM. The price: transposing input,
    output, upstream gradient and input gradient (one pass each).

    Memory: one im2col buffer, kept for the backward with ``weight``; the forward also holds
    the transposed padded input until the buffer is built, and the output twice (the GEMM's
    (O, Ho*Wo*N) and its NCHW copy). The backward allocates the transposed ``dy``, the
    padded input gradient and ``W.T @ dy`` (the size of the im2col buffer, as the generic path's).
    Every one of these comes from the :class:`Workspace` (the arrays of the previous step,
    once released), so a training step allocates none of them afresh: the workspace keeps
    about one step's worth of them per layer shape.
    """
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    n, c, h, w = x.shape
    o, _, kh, kw = weight.shape
    hp, wp = h + 2 * ph, w + 2 * pw
    ho, wo = (hp - dh * (kh - 1) - 1) // sh + 1, (wp - dw * (kw - 1) - 1) // sw + 1
    dt = x.dtype

    def window(i: int, j: int) -> tuple[slice, slice]:
        return (
            slice(i * dh, i * dh + sh * (ho - 1) + 1, sh),
            slice(j * dw, j * dw + sw * (wo - 1) + 1, sw),
        )

    ws = _WORKSPACE
    xt = ws.empty("conv.xt", (c, hp, wp, n), dt)
    if ph or pw:
        xt.fill(0)
    xt[:, ph : ph + h, pw : pw + w] = x.transpose(1, 2, 3, 0)
    cols = ws.empty("conv.cols", (c, kh, kw, ho, wo, n), dt)
    for i in range(kh):
        for j in range(kw):
            cols[:, i, j] = xt[(slice(None), *window(i, j))]
    del xt
    cols = cols.reshape(c * kh * kw, ho * wo * n)
    w2 = weight.reshape(o, c * kh * kw)
    yt = np.matmul(w2, cols, out=ws.empty("conv.yt", (o, ho * wo * n), dt))  # (O, Ho*Wo*N)
    if bias is not None:
        yt += bias[:, None]
    y = ws.empty("conv.y", (n, o, ho, wo), dt)
    _batch_first(yt.reshape(o, ho, wo, n), y)
    del yt

    def backward(dy: Any) -> tuple[Any, Any, Any]:
        dyt = ws.empty("conv.dyt", (o, ho, wo, n), dt)
        dyt[...] = dy.transpose(1, 2, 3, 0)
        dyt = dyt.reshape(o, ho * wo * n)
        dweight = (dyt @ cols.T).reshape(weight.shape) if param_grad else None
        dbias = _row_sums(dyt) if bias is not None and param_grad else None
        if not input_grad:
            return None, dweight, dbias
        # col2im of W.T @ dy: the product in one GEMM (measured 1.2x faster than kh*kw GEMMs of C
        # rows each), then each kernel offset's rows added onto their window (distinct elements)
        dcols = np.matmul(w2.T, dyt, out=ws.empty("conv.dcols", (c * kh * kw, ho * wo * n), dt))
        dcols = dcols.reshape(c, kh, kw, ho, wo, n)
        dxt = ws.empty("conv.dxt", (c, hp, wp, n), dt)
        dxt.fill(0)
        for i in range(kh):
            for j in range(kw):
                dxt[(slice(None), *window(i, j))] += dcols[:, i, j]
        del dcols
        dx = ws.empty("conv.dx", (n, c, h, w), dt)
        _batch_first(dxt[:, ph : ph + h, pw : pw + w], dx)
        return dx, dweight, dbias

    return y, backward


def conv2d_disjoint(x: Any, weight: Any, bias: Any, *, input_grad: bool = True, param_grad: bool = True) -> tuple[Any, Any]:
    """:func:`portnn.functional.conv.conv2d` on NumPy for windows that tile without overlap: stride
    equal to the kernel, no padding, no dilation (the formulas are there).

    Each output position (n, p, q) reads its own kh x kw block of every channel, so the im2col
    matrix (N*Ho*Wo, kh*kw*C) is ``x`` copied to NHWC and then through a reshaped, transposed
    view (no overlap: no element copied twice), and the forward is one GEMM ``cols @ W.T`` written
    (N*Ho*Wo, O), copied once to NCHW. The backward copies ``dy`` once to (N*Ho*Wo, O); then
    ``dW = dy.T @ cols`` and ``dcols = dy @ W`` are one GEMM each, and ``dx`` is ``dcols``
    copied back through the same view (distinct elements: no adds; rows and columns past the
    last whole window are zero). Summation order differs from the generic path's (one sum
    over N*Ho*Wo for ``dW`` where it sums per sample): equal up to rounding.

    Memory, all from the :class:`Workspace`: the im2col matrix (the size of ``x``), kept for
    the backward with ``weight``; an NHWC copy of ``x`` for a moment; the output twice for a
    moment; in the backward ``dy``'s (N*Ho*Wo, O) copy, ``dcols`` and an NHWC ``dx`` (each
    the size of ``x``) and ``dx``.
    """
    n, c, h, w = x.shape
    o, _, kh, kw = weight.shape
    ho, wo = h // kh, w // kw
    rows, ck, dt, ws = n * ho * wo, c * kh * kw, x.dtype, _WORKSPACE
    # NCHW -> NHWC, then the blocks in (kernel row, kernel column, channel) order: two copies
    # whose inner runs are long (measured 6x faster than one copy through the 6-axis transpose)
    nhwc = ws.empty("tile.nhwc", (n, ho * kh, wo * kw, c), dt)
    np.copyto(nhwc, x[:, :, : ho * kh, : wo * kw].transpose(0, 2, 3, 1))
    cols = ws.empty("tile.cols", (n, ho, wo, kh, kw, c), dt)
    np.copyto(cols, nhwc.reshape(n, ho, kh, wo, kw, c).transpose(0, 1, 3, 2, 4, 5))
    del nhwc
    cols = cols.reshape(rows, ck)
    w2 = np.ascontiguousarray(weight.transpose(0, 2, 3, 1)).reshape(o, ck)  # columns in the same order
    yt = np.matmul(cols, w2.T, out=ws.empty("tile.yt", (rows, o), dt))  # (N*Ho*Wo, O)
    if bias is not None:
        yt += bias
    y = ws.empty("tile.y", (n, o, ho, wo), dt)
    np.copyto(y.reshape(n, o, ho * wo), yt.reshape(n, ho * wo, o).transpose(0, 2, 1))
    del yt

    def backward(dy: Any) -> tuple[Any, Any, Any]:
        dyt = ws.empty("tile.dyt", (n, ho * wo, o), dt)
        np.copyto(dyt, dy.reshape(n, o, ho * wo).transpose(0, 2, 1))
        dyt = dyt.reshape(rows, o)
        dweight = None
        if param_grad:
            dweight = np.ascontiguousarray(np.matmul(dyt.T, cols).reshape(o, kh, kw, c).transpose(0, 3, 1, 2))
        dbias = _row_sums(dyt.T) if bias is not None and param_grad else None
        if not input_grad:
            return None, dweight, dbias
        dcols = np.matmul(dyt, w2, out=ws.empty("tile.dcols", (rows, ck), dt))
        dx = ws.empty("tile.dx", (n, c, h, w), dt)
        if (ho * kh, wo * kw) != (h, w):
            dx.fill(0)
        nhwc = ws.empty("tile.nhwc", (n, ho * kh, wo * kw, c), dt)
        np.copyto(nhwc.reshape(n, ho, kh, wo, kw, c), dcols.reshape(n, ho, wo, kh, kw, c).transpose(0, 1, 3, 2, 4, 5))
        np.copyto(dx[:, :, : ho * kh, : wo * kw], nhwc.transpose(0, 3, 1, 2))
        return dx, dweight, dbias

    return y, backward


def conv2d_im2col(
    x: Any,
    weight: Any,
    bias: Any,
    *,
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
    input_grad: bool = True,
    param_grad: bool = True,
    exact: bool = True,
) -> tuple[Any, Any]:
    """The generic path of :func:`portnn.functional.conv.conv2d`, written for NumPy: bit for bit its results.

    With ``exact=False`` (and a bias) the im2col buffer gets a last row of ones and the weight
    the bias as a last column: the forward adds the bias inside its products, and the weight
    gradient's products give the bias gradient as their last column (``np.sum`` over axes
    (0, 2) is a slow strided reduction, and ``y += bias`` one more pass over the output):
    equal up to rounding.

    The same layout (im2col buffer (N, C*kh*kw, Ho*Wo)), the same products and sums in the
    same order, so the same values; what differs is memory traffic. The buffer is filled
    by one strided copy from a ``sliding_window_view`` of the padded input (measured 2x
    faster than a ``stack`` of kh*kw window slices), and the arrays the step needs (buffer,
    output, ``W.T @ dy``, the weight gradient's per-sample products, the padded input gradient)
    come from the :class:`Workspace` with ``out=``, not from fresh allocations.
    """
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    n, c, h, w = x.shape
    o, _, kh, kw = weight.shape
    hp, wp = h + 2 * ph, w + 2 * pw
    ho, wo = (hp - dh * (kh - 1) - 1) // sh + 1, (wp - dw * (kw - 1) - 1) // sw + 1
    ck, length, dt, ws = c * kh * kw, ho * wo, x.dtype, _WORKSPACE
    if ph or pw:  # a fresh array, freed once the buffer is filled (input-sized, unlike the buffer)
        xpad = np.zeros((n, c, hp, wp), dt)
        xpad[:, :, ph : ph + h, pw : pw + w] = x
    else:
        xpad = x
    span = (dh * (kh - 1) + 1, dw * (kw - 1) + 1)
    view = np.lib.stride_tricks.sliding_window_view(xpad, span, axis=(2, 3))  # (N, C, Hp', Wp', span)
    view = view[:, :, : sh * (ho - 1) + 1 : sh, : sw * (wo - 1) + 1 : sw, ::dh, ::dw]  # (N, C, Ho, Wo, kh, kw)
    ones = not exact and bias is not None  # the bias as a last column of the weight, against a row of ones
    cols = ws.empty("im2col.cols", (n, ck + ones, length), dt)
    np.copyto(cols[:, :ck].reshape(n, c, kh, kw, ho, wo), view.transpose(0, 1, 4, 5, 2, 3))
    del view, xpad
    w2 = weight.reshape(o, ck)
    if ones:
        cols[:, ck] = 1
        y = np.matmul(np.concatenate((w2, bias.reshape(o, 1)), axis=1), cols, out=ws.empty("im2col.y", (n, o, length), dt))
    else:
        y = np.matmul(w2, cols, out=ws.empty("im2col.y", (n, o, length), dt))
        if bias is not None:
            y += bias.reshape(o, 1)
    y = y.reshape(n, o, ho, wo)

    def backward(dy: Any) -> tuple[Any, Any, Any]:
        dy2 = dy.reshape(n, o, length)
        dweight = dbias = None
        if param_grad:
            chunk = max(1, (n * length) // o)  # as the generic path's _weight_grad: the same sums
            products = ws.empty("im2col.dw", (min(n, chunk), o, ck + ones), dt)
            for start in range(0, n, chunk):
                stop = min(n, start + chunk)
                product = np.matmul(dy2[start:stop], cols[start:stop].transpose(0, 2, 1), out=products[: stop - start])
                part = np.sum(product, axis=0)
                dweight = part if dweight is None else dweight + part
            if ones:  # the ones row's products are the bias gradient
                dweight, dbias = np.ascontiguousarray(dweight[:, :ck]), np.ascontiguousarray(dweight[:, ck])
            elif bias is not None:
                dbias = np.sum(dy2, axis=(0, 2))
            dweight = dweight.reshape(weight.shape)
        if not input_grad:
            return None, dweight, dbias
        dcols = np.matmul(w2.T, dy2, out=ws.empty("im2col.dcols", (n, ck, length), dt)).reshape(n, c, kh * kw, ho, wo)
        dxp = ws.empty("im2col.dxp", (n, c, hp, wp), dt)
        dxp.fill(0)
        for i in range(kh):
            for j in range(kw):
                window = (
                    slice(None),
                    slice(None),
                    slice(i * dh, i * dh + sh * (ho - 1) + 1, sh),
                    slice(j * dw, j * dw + sw * (wo - 1) + 1, sw),
                )
                dxp[window] += dcols[:, :, i * kw + j]
        return (dxp[:, :, ph : ph + h, pw : pw + w] if ph or pw else dxp), dweight, dbias

    return y, backward


def _per_channel(v: Any, x: Any) -> Any:
    """A (C,) array shaped to broadcast against ``x``: (C,) for (N, C), (C, 1) for (N, C, L)."""
    return v if x.ndim == 2 else v.reshape(v.shape[0], 1)


def batch_norm_out(
    x: Any,
    weight: Any,
    bias: Any,
    *,
    mean: Any,
    var: Any,
    training: bool,
    eps: float,
    input_grad: bool,
    param_grad: bool,
) -> tuple[Any, Any]:
    """:func:`portnn.functional.batch_norm` (the formulas are there) with ``out=`` into workspace arrays.

    The generic path's elementwise operations in its order, so its values bit for bit; what
    goes is the fresh (N, C[, L]) temporaries: the forward writes ``x - mean`` once and scales
    it in place into ``xhat`` (kept for the backward), then ``y`` in one more array; the
    backward builds ``dx`` in one array and needs one more for ``dy * xhat``.
    """
    axes = (0,) if x.ndim == 2 else (0, 2)
    ws = _WORKSPACE
    inv_std = (var + eps) ** -0.5  # (C,), as the generic path
    xhat = np.subtract(x, _per_channel(mean, x), out=ws.empty("bn.xhat", x.shape, x.dtype))
    np.multiply(xhat, _per_channel(inv_std, x), out=xhat)
    scale = inv_std if weight is None else weight * inv_std
    if weight is None and bias is None:
        y = xhat
    elif weight is None:
        y = np.add(xhat, _per_channel(bias, x), out=ws.empty("bn.y", x.shape, x.dtype))
    else:
        y = np.multiply(xhat, _per_channel(weight, x), out=ws.empty("bn.y", x.shape, x.dtype))
        if bias is not None:
            np.add(y, _per_channel(bias, x), out=y)
    m = x.shape[0] * (x.shape[2] if x.ndim == 3 else 1) if training else None

    def backward(dy: Any) -> tuple[Any, Any, Any]:
        sums = param_grad or (input_grad and training)
        db = np.sum(dy, axis=axes) if sums else None
        dw = None
        if sums:
            product = np.multiply(dy, xhat, out=ws.empty("bn.product", xhat.shape, xhat.dtype))
            dw = np.sum(product, axis=axes)
            del product
        dx = None
        if input_grad:
            dx = ws.empty("bn.dx", dy.shape, dy.dtype)
            if training:
                np.subtract(dy, _per_channel(db * (1.0 / m), x), out=dx)
                shifted = np.multiply(xhat, _per_channel(dw * (1.0 / m), x), out=ws.empty("bn.product", xhat.shape, xhat.dtype))
                np.subtract(dx, shifted, out=dx)
                del shifted
                np.multiply(dx, _per_channel(scale, x), out=dx)
            else:
                np.multiply(dy, _per_channel(scale, x), out=dx)
        return dx, (dw if weight is not None and param_grad else None), (db if bias is not None and param_grad else None)

    return y, backward


def _row_sums(a: Any) -> Any:
    """The sums of the rows of the 2-D ``a``, as ``a @ ones``: one GEMV (measured 9x faster than
    ``np.sum(axis=...)`` over a (6272, 32) array's rows or columns)."""
    return np.matmul(a, np.ones(a.shape[1], a.dtype))


def _batch_first(src: Any, out: Any, rows: int = 64) -> None:
    """``out[n, a, b, c] = src[a, b, c, n]``, copied in blocks of about ``rows`` rows of ``src``.

    NumPy's copy through a transposed view is not cache-blocked; blocks of ~64 rows of N
    make it 2-3x faster (measured for N = 128 on 11x11 to 26x26 maps).
    """
    step = max(1, rows // src.shape[2])
    for a in range(src.shape[0]):
        for b in range(0, src.shape[1], step):
            out[:, a, b : b + step] = src[a, b : b + step].transpose(2, 0, 1)


_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


class Workspace:
    """Scratch arrays reused from call to call, so that a training step's big temporaries
    do not page-fault afresh each step.

    glibc hands large freed blocks back to the kernel, and a fresh block of the same size
    then costs one page fault per 4 KiB on first touch (about 2,000 per LeNet step at batch 128).
    :meth:`empty` returns a kept array of the asked shape and dtype that nothing else
    references any more (its reference count says so: a backward closure, a caller's result
    or a view still holding it keeps it out), else a new one, which it keeps. Reuse is
    therefore never visible: an array handed out is not handed out again while anyone can
    read it. Memory stays bounded: at most ``per_key`` arrays per shape and dtype, ``max_keys``
    shapes (least recently used dropped) and ``max_bytes`` in all (beyond it, new arrays are
    handed out and not kept). A lock makes it safe to call from several threads.
    """

    def __init__(self, per_key: int = 3, max_keys: int = 64, max_bytes: int = 512 * 2**20) -> None:
        self.per_key, self.max_keys, self.max_bytes = per_key, max_keys, max_bytes
        self._kept: OrderedDict[tuple[Any, ...], list[Any]] = OrderedDict()
        self._zeros: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
        self._lock = threading.Lock()

    def empty(self, tag: str, shape: tuple[int, ...], dtype: Any) -> Any:
        """An uninitialised array of ``shape`` and ``dtype`` that no one else holds.

        ``tag`` names the use, for the reader; arrays of one shape and dtype are shared
        between uses whose lifetimes do not overlap.
        """
        key = (tuple(shape), np.dtype(dtype))
        with self._lock:
            kept = self._kept.get(key)
            if kept is None:
                kept = self._kept[key] = []
                if len(self._kept) > self.max_keys:
                    self._kept.popitem(last=False)
            else:
                self._kept.move_to_end(key)
            for i in range(len(kept)):
                if sys.getrefcount(kept[i]) <= _FREE_REFS:  # held by the list alone
                    return kept[i]
            a = np.empty(key[0], key[1])
            if len(kept) < self.per_key and self.nbytes + a.nbytes <= self.max_bytes:
                kept.append(a)
            return a

    def zeros(self, shape: tuple[int, ...], dtype: Any) -> Any:
        """A read-only array of zeros of ``shape`` and ``dtype``, shared by every caller."""
        key = (tuple(shape), np.dtype(dtype))
        with self._lock:
            z = self._zeros.get(key)
            if z is None:
                z = np.zeros(key[0], key[1])
                z.flags.writeable = False
                self._zeros[key] = z
                if len(self._zeros) > self.max_keys:
                    self._zeros.popitem(last=False)
            return z

    @property
    def nbytes(self) -> int:
        """Bytes of the arrays kept for reuse (not counting the zeros, whose large ones the
        kernel maps to its one zero page as long as nothing writes them)."""
        return sum(a.nbytes for kept in self._kept.values() for a in kept)

    def clear(self) -> None:
        """Drop every kept array."""
        with self._lock:
            self._kept.clear()
            self._zeros.clear()


def _free_refs() -> int:
    """``sys.getrefcount(kept[i])`` of an array that only the list ``kept`` holds: the list's
    reference and the call's argument (measured, not assumed, as interpreters differ)."""
    kept = [np.empty(0)]
    return sys.getrefcount(kept[0])


_FREE_REFS = _free_refs()
_WORKSPACE = Workspace()


def max_pool2d_disjoint(
    x: Any, kernel_size: tuple[int, int], stride: tuple[int, int], out: tuple[int, int], *, input_grad: bool = True
) -> tuple[Any, Any]:
    """:func:`portnn.functional.pooling.max_pool2d` for windows that do not overlap, without padding.

    The generic path's values bit for bit (first maximum wins ties, a NaN propagates and is
    the argmax of its window, as the generic path's ``argmax``; only the sign of a zero maximum
    tied between +0 and -0 may differ), with ``out=`` into reused workspace arrays: per kernel
    offset one ``greater`` into a bool mask, two int8 passes that set the argmax offset where
    it is greater, and one ``maximum``. The backward writes each offset's
    ``dy * [argmax == offset]`` into its window of ``dx`` (zeroed first only where the
    windows do not tile the input).
    """
    (kh, kw), (sh, sw), (ho, wo) = kernel_size, stride, out
    n, c, h, w = x.shape
    dt, count = x.dtype, kh * kw

    def window(a: Any, o: int) -> Any:
        i, j = divmod(o, kw)
        return a[:, :, i : i + sh * (ho - 1) + 1 : sh, j : j + sw * (wo - 1) + 1 : sw]

    y = _WORKSPACE.empty("pool.y", (n, c, ho, wo), dt)
    np.copyto(y, window(x, 0))
    if not input_grad:
        for o in range(1, count):
            np.maximum(y, window(x, o), out=y)
        return y, lambda dy: None
    idx = _WORKSPACE.empty("pool.idx", (n, c, ho, wo), np.int8)
    if count == 1:
        idx.fill(0)
    greater = _WORKSPACE.empty("pool.mask", (n, c, ho, wo), np.bool_)
    step = _WORKSPACE.empty("pool.step", (n, c, ho, wo), np.int8) if count > 2 else None
    for o in range(1, count):
        win = window(x, o)
        np.greater(win, y, out=greater)
        if o == 1:  # the argmax so far is offset 0 or 1
            np.copyto(idx, greater.view(np.int8))
        else:
            # where(greater, o, idx) is max(idx, greater * o): every earlier offset is below o
            # (a masked copyto measured 20x slower than these two int8 passes)
            np.multiply(greater.view(np.int8), np.int8(o), out=step)
            np.maximum(idx, step, out=idx)
        np.maximum(y, win, out=y)
    del greater, step
    nan = np.isnan(y)
    if nan.any():  # a window with a NaN: its first NaN is the argmax (the generic path's argmax), rare
        for o in range(count - 1, -1, -1):  # the smallest offset written last
            np.copyto(idx, np.int8(o), where=nan & np.isnan(window(x, o)))
    tiles = sh == kh and sw == kw and h == ho * kh and w == wo * kw

    def backward(dy: Any) -> Any:
        dx = _WORKSPACE.empty("pool.dx", (n, c, h, w), dy.dtype)
        if not tiles:
            dx.fill(0)
        mask = _WORKSPACE.empty("pool.mask", (n, c, ho, wo), np.bool_)
        for o in range(count):
            np.multiply(dy, np.equal(idx, o, out=mask), out=window(dx, o))
        return dx

    return y, backward


@functools.cache
def _scipy_special() -> Any:
    try:
        import scipy.special
    except Exception:  # not installed, or a broken install: the portable erf serves
        return None
    return scipy.special


# -- LSTM (NumpyAdapter.lstm) ----------------------------------------------------------------
def _ifog(a: Any, h: int, sig: float) -> Any:
    """PyTorch's (i, f, g, o) blocks along axis 0 as (i, f, o, g), the sigmoid blocks times ``sig``."""
    return np.concatenate([sig * a[: 2 * h], sig * a[3 * h :], a[2 * h : 3 * h]], axis=0)


def _ifgo(a: Any, h: int, sig: float) -> Any:
    """The inverse of :func:`_ifog`: (i, f, o, g) blocks back to (i, f, g, o), sigmoid blocks times ``sig``."""
    return np.concatenate([sig * a[: 2 * h], a[3 * h :], sig * a[2 * h : 3 * h]], axis=0)


def lstm_out(
    x: Any,
    weight_ih: Any,
    weight_hh: Any,
    bias_ih: Any,
    bias_hh: Any,
    *,
    return_sequences: bool,
    input_grad: bool,
    param_grad: bool,
) -> tuple[Any, Any]:
    """:func:`portnn.functional.lstm`'s generic path with the batch as the last axis, into reused arrays.

    The generic path's elementwise operations in its order, but every step's arrays are
    (features, N), so each gate is one contiguous (H, N) block (a column block of the generic
    (N, 4H) layout costs NumPy a loop over rows: 3-4x slower at N = H = 128, measured), and
    the products are fused: step t's inputs ``s_t = [1; x_t; h_{t-1}]`` (the 1 only with
    biases), (1 + in + H, N), are slice t of one (T + 1, 1 + in + H, N) array, the hidden
    states written straight into it, so a step's pre-activations are one product
    ``[b, W_ih, W_hh] @ s_t``, and the backward adds each step's ``u_t s_t^T`` (its gate
    gradients u_t, (4H, N), still in cache; measured 0.8 ms faster than one product over all
    steps, which needs transposed copies) to one (4H, 1 + in + H) gradient whose first column
    is the biases'. Every step's u_t is kept only for ``dx`` (one product after the loop).
    Everything lives in :class:`Workspace` arrays written with ``out=``. Equal to the generic
    path up to the rounding of the different summation order of the fused products (the
    elementwise operations are the generic ones, but for sigma' = sigma (1 - sigma), which the
    generic path computes as (1 - tanh^2) / 4).
    """
    n, steps, features = x.shape
    h = weight_hh.shape[1]
    dt, ws = x.dtype, _WORKSPACE
    one = 0 if bias_ih is None else 1  # the row of ones that carries the bias
    hx = one + features  # where h_{t-1} starts in s_t
    k = hx + h
    w = ws.empty("lstm.w", (4 * h, k), dt)  # [b, W_ih, W_hh], halved sigmoid rows, (i, f, o, g)
    if one:
        w[:, 0] = _ifog(bias_ih + bias_hh, h, 0.5)
    w[:, one:hx] = _ifog(weight_ih, h, 0.5)
    w[:, hx:] = _ifog(weight_hh, h, 0.5)
    inputs = ws.empty("lstm.inputs", (steps + 1, k, n), dt)  # s_t; s_T holds only h_{T-1}
    if one:
        inputs[:, 0] = 1
    np.copyto(inputs[:steps, one:hx], np.transpose(x, (1, 2, 0)))
    hiddens = inputs[1:, hx:]  # (T, H, N): h_t is s_{t+1}'s tail
    gates = ws.empty("lstm.gates", (steps, 4 * h, n), dt)  # pre-activations, then i, f, o, g in place
    cells = ws.empty("lstm.cells", (steps, h, n), dt)
    tanh_cells = ws.empty("lstm.tanh_cells", (steps, h, n), dt)
    ig = ws.empty("lstm.ig", (h, n), dt)
    for t in range(steps):
        a = gates[t]
        if t == 0:  # h_{-1} = 0
            inputs[0, hx:] = 0
            np.matmul(w[:, :hx], inputs[0, :hx], out=a)
        else:
            np.matmul(w, inputs[t], out=a)
        np.tanh(a, out=a)
        sig = a[: 3 * h]
        np.multiply(sig, 0.5, out=sig)
        sig += 0.5
        i, f, o, g = a[:h], a[h : 2 * h], a[2 * h : 3 * h], a[3 * h :]
        cell = cells[t]
        if t == 0:
            np.multiply(i, g, out=cell)
        else:
            np.multiply(f, cells[t - 1], out=cell)
            np.multiply(i, g, out=ig)
            cell += ig
        np.tanh(cell, out=tanh_cells[t])
        np.multiply(o, tanh_cells[t], out=hiddens[t])
    del ig
    y = np.transpose(hiddens, (2, 0, 1)) if return_sequences else hiddens[steps - 1].T

    def backward(dy: Any) -> tuple[Any, Any, Any, Any, Any]:
        if not (input_grad or param_grad):
            return None, None, None, None, None
        w_back_t = _ifog(weight_hh, h, 1.0).T  # (H, 4H), (i, f, o, g)
        us = ws.empty("lstm.us", (steps if input_grad else 1, 4 * h, n), dt)  # every step's only for dx
        dh = ws.empty("lstm.dh", (h, n), dt)
        dct = ws.empty("lstm.dct", (h, n), dt)
        dc = ws.empty("lstm.dc", (h, n), dt)
        tmp = ws.empty("lstm.tmp", (4 * h, n), dt)
        dw = np.empty((4 * h, k), dt) if param_grad else None  # [db, dW_ih, dW_hh], summed step by step
        part = ws.empty("lstm.part", (4 * h, k), dt)
        dys = None
        if return_sequences:
            dys = ws.empty("lstm.dys", (steps, h, n), dt)
            np.copyto(dys, np.transpose(dy, (1, 2, 0)))
            np.copyto(dh, dys[steps - 1])
        else:
            np.copyto(dh, dy.T)
        for t in range(steps - 1, -1, -1):
            if dys is not None and t < steps - 1:
                np.add(dys[t], dh, out=dh)
            a, tc = gates[t], tanh_cells[t]
            i, f, o, g = a[:h], a[h : 2 * h], a[2 * h : 3 * h], a[3 * h :]
            np.multiply(dh, o, out=dct)
            th = tmp[:h]
            np.multiply(tc, tc, out=th)
            np.subtract(1.0, th, out=th)
            dct *= th
            if t < steps - 1:
                dct += dc
            u = us[t if input_grad else 0]
            np.multiply(dct, g, out=u[:h])
            if t > 0:
                np.multiply(dct, cells[t - 1], out=u[h : 2 * h])
            else:
                u[h : 2 * h] = 0
            np.multiply(dh, tc, out=u[2 * h : 3 * h])
            np.multiply(dct, i, out=u[3 * h :])
            np.subtract(1.0, a[: 3 * h], out=tmp[: 3 * h])
            tmp[: 3 * h] *= a[: 3 * h]  # sigma' = sigma (1 - sigma)
            np.multiply(g, g, out=tmp[3 * h :])
            np.subtract(1.0, tmp[3 * h :], out=tmp[3 * h :])  # tanh' = 1 - g^2
            u *= tmp
            if dw is not None:  # dw += u s_t^T while u is in cache; s_0's h_{-1} = 0 adds nothing
                cols = k if t > 0 else hx
                if t == steps - 1:
                    np.matmul(u, inputs[t, :cols].T, out=dw[:, :cols])
                    if cols < k:
                        dw[:, cols:] = 0
                else:
                    dw[:, :cols] += np.matmul(u, inputs[t, :cols].T, out=part[:, :cols])
            if t > 0:
                np.matmul(w_back_t, u, out=dh)
                np.multiply(dct, f, out=dc)
        del tmp, dh, dct, dc, part
        dx = None
        if input_grad:  # (T, N, in) -> (N, T, in), a view as the generic path's
            w_ih = _ifog(weight_ih, h, 1.0)
            dx = np.transpose(np.matmul(np.transpose(us, (0, 2, 1)), w_ih), (1, 0, 2))
        if dw is None:
            return dx, None, None, None, None
        dw = _ifgo(dw, h, 1.0)  # (4H, 1 + in + H)
        db = np.ascontiguousarray(dw[:, 0]) if one else None
        return (
            dx,
            np.ascontiguousarray(dw[:, one:hx]),
            np.ascontiguousarray(dw[:, hx:]),
            db,
            None if db is None else db.copy(),
        )

    return y, backward

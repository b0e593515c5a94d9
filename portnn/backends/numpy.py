"""NumPy adapter: the CPU backend and the host format every other backend converts through."""

from __future__ import annotations

import functools
from typing import Any

import array_api_compat.numpy as xp_numpy
import numpy as np

from ._base import Adapter


class NumpyAdapter(Adapter):
    name = "numpy"
    inplace = True

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
        # Batch-last pays where the im2col buffer is large next to the input and output it
        # transposes, and col2im runs. Measured, float32, 1 thread, generic/batch-last time:
        # 8->16 3x3 on 13x13 at N=128 1.7 (16: 1.2), 6->16 5x5 1.7, 8->32 3x3 1.3;
        # 4->32 3x3 0.75, 16->16 1x1 0.74, 1->8 3x3 on 28x28 0.9 (0.6 without dx), N=1 0.4.
        if not input_grad or n < 16 or 5 * c * kh * kw < 8 * (o + c):
            return None
        return conv2d_batch_last(
            x, weight, bias, stride=stride, padding=padding, dilation=dilation, input_grad=input_grad, param_grad=param_grad
        )

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
    padded input gradient and one (C, Ho*Wo*N) buffer (a kernel offset's share of
    ``W.T @ dy``, reused for each offset: 1/(kh*kw) of the generic path's im2col-sized one).
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

    xt = np.zeros((c, hp, wp, n), dt) if ph or pw else np.empty((c, hp, wp, n), dt)
    xt[:, ph : ph + h, pw : pw + w] = x.transpose(1, 2, 3, 0)
    cols = np.empty((c, kh, kw, ho, wo, n), dt)
    for i in range(kh):
        for j in range(kw):
            cols[:, i, j] = xt[(slice(None), *window(i, j))]
    del xt
    cols = cols.reshape(c * kh * kw, ho * wo * n)
    w2 = weight.reshape(o, c * kh * kw)
    yt = w2 @ cols  # (O, Ho*Wo*N)
    if bias is not None:
        yt += bias[:, None]
    y = np.empty((n, o, ho, wo), dt)
    _batch_first(yt.reshape(o, ho, wo, n), y)
    del yt

    def backward(dy: Any) -> tuple[Any, Any, Any]:
        dyt = np.empty((o, ho, wo, n), dt)
        dyt[...] = dy.transpose(1, 2, 3, 0)
        dyt = dyt.reshape(o, ho * wo * n)
        dweight = (dyt @ cols.T).reshape(weight.shape) if param_grad else None
        dbias = np.sum(dy.reshape(n, o, ho * wo), axis=(0, 2)) if bias is not None and param_grad else None
        if not input_grad:
            return None, dweight, dbias
        # col2im of W.T @ dy, one kernel offset at a time: its (C, Ho*Wo*N) rows of the
        # product are made in one reused buffer, then added onto their window (distinct elements)
        wt = np.ascontiguousarray(weight.transpose(2, 3, 1, 0))  # (kh, kw, C, O)
        part = np.empty((c, ho * wo * n), dt)
        dxt = np.zeros((c, hp, wp, n), dt)
        for i in range(kh):
            for j in range(kw):
                np.matmul(wt[i, j], dyt, out=part)
                dxt[(slice(None), *window(i, j))] += part.reshape(c, ho, wo, n)
        dx = np.empty((n, c, h, w), dt)
        _batch_first(dxt[:, ph : ph + h, pw : pw + w], dx)
        return dx, dweight, dbias

    return y, backward


def _batch_first(src: Any, out: Any, rows: int = 64) -> None:
    """``out[n, a, b, c] = src[a, b, c, n]``, copied in blocks of about ``rows`` rows of ``src``.

    NumPy's copy through a transposed view is not cache-blocked; blocks of ~64 rows of N
    make it 2-3x faster (measured for N = 128 on 11x11 to 26x26 maps).
    """
    step = max(1, rows // src.shape[2])
    for a in range(src.shape[0]):
        for b in range(0, src.shape[1], step):
            out[:, a, b : b + step] = src[a, b : b + step].transpose(2, 0, 1)


@functools.cache
def _scipy_special() -> Any:
    try:
        import scipy.special
    except Exception:  # not installed, or a broken install: the portable erf serves
        return None
    return scipy.special

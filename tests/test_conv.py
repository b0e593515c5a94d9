"""Conv2d and conv2d: NumPy's batch-last kernel against the generic path, the layer on every backend, errors, memory.

The op itself (every stride/padding/dilation combination against finite differences, PyTorch
and every backend) is checked by the specs in ``tests/specs_conv.py``.
"""

from __future__ import annotations

import tracemalloc
from typing import Any

import array_api_compat.numpy as xp_numpy
import numpy as np
import pytest
from array_api_compat import device

import portnn as pn
from portnn import backends
from portnn._array import dtype_name
from portnn.backends.numpy import NumpyAdapter, conv2d_batch_last
from portnn.functional.conv import _conv2d, col2im, conv2d, conv2d_output_size, im2col, pair
from portnn.layers import Flatten, Linear, ReLU, ShapeError
from portnn.layers.conv import Conv2d


def _generic(x: Any, w: Any, b: Any, *, stride: Any = 1, padding: Any = 0, dilation: Any = 1, input_grad: bool = True) -> Any:
    """conv2d by the generic array-API path, whatever the adapter would choose."""
    s, p, d = pair(stride, "stride"), pair(padding, "padding", minimum=0), pair(dilation, "dilation")
    out = conv2d_output_size(tuple(x.shape[2:]), tuple(w.shape[2:]), s, p, d)
    return _conv2d(xp_numpy, x, w, b, s, p, d, out, input_grad)


# -- NumPy's fast path --------------------------------------------------------------------
# (batch, in, H, W), (out, kh, kw), stride, padding, dilation: sizes odd and even, square
# and not, batch 1, strides past the kernel, 1 x 1 kernels, kernels as large as the input
GEOMETRIES = [
    ((2, 3, 6, 5), (4, 3, 3), 1, 0, 1),
    ((1, 1, 7, 7), (2, 2, 2), 1, 0, 1),
    ((3, 2, 9, 8), (4, 3, 3), 2, 1, 1),
    ((2, 2, 10, 11), (3, 2, 3), (2, 3), (1, 2), (2, 1)),
    ((2, 4, 7, 7), (5, 1, 1), 1, 0, 1),
    ((2, 4, 7, 7), (3, 1, 1), 2, 1, 1),
    ((2, 2, 5, 6), (3, 5, 6), 1, 0, 1),
    ((2, 2, 5, 6), (3, 5, 6), 1, 2, 1),
    ((1, 2, 8, 7), (2, 2, 2), 3, 0, 1),
    ((2, 3, 9, 9), (2, 3, 3), 1, 0, 3),
    ((2, 3, 9, 9), (2, 3, 3), (1, 2), (3, 0), (2, 1)),
    ((4, 8, 13, 13), (16, 3, 3), 1, 0, 1),
    ((2, 5, 6, 4), (3, 2, 3), (3, 1), (0, 1), (1, 1)),
]


@pytest.mark.parametrize(("bias", "input_grad"), [(True, True), (False, True), (True, False)])
@pytest.mark.parametrize("geometry", GEOMETRIES, ids=[str(i) for i in range(len(GEOMETRIES))])
def test_batch_last_equals_generic(geometry: Any, bias: bool, input_grad: bool) -> None:
    """Forward and every gradient, float64: equal up to the rounding of another summation order.

    Not bit for bit: dW is one product over (Ho*Wo*N) here and per-sample products summed
    there, and BLAS may tile the other products differently.
    """
    x_shape, (o, kh, kw), s, p, d = geometry
    r = np.random.default_rng(0)
    x, w = r.normal(size=x_shape), r.normal(size=(o, x_shape[1], kh, kw))
    b = r.normal(size=o) if bias else None
    y_ref, back_ref = _generic(x, w, b, stride=s, padding=p, dilation=d, input_grad=input_grad)
    y, back = conv2d_batch_last(
        x, w, b, stride=pair(s, "s"), padding=pair(p, "p", minimum=0), dilation=pair(d, "d"), input_grad=input_grad
    )
    np.testing.assert_allclose(y, y_ref, rtol=1e-12, atol=1e-12)
    dy = r.normal(size=y.shape)
    for got, want, what in zip(back(dy), back_ref(dy), ("dx", "dw", "db")):
        if want is None:
            assert got is None, what
            continue
        assert got.dtype == want.dtype and got.shape == want.shape, what
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12, err_msg=what)


def test_batch_last_stays_float32() -> None:
    r = np.random.default_rng(1)
    x, w, b = (r.normal(size=s).astype(np.float32) for s in ((16, 8, 9, 9), (16, 8, 3, 3), (16,)))
    y, back = conv2d(x, w, b, padding=1)
    y64, back64 = _generic(*(a.astype(np.float64) for a in (x, w, b)), padding=1)
    dy = r.normal(size=y.shape)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, y64, rtol=2e-4, atol=2e-5)
    for got, want in zip(back(dy.astype(np.float32)), back64(dy)):
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=2e-4, atol=1e-4)


def test_numpy_adapter_takes_over_only_where_batch_last_pays() -> None:
    a = NumpyAdapter()
    kw = {"stride": (1, 1), "padding": (0, 0), "dilation": (1, 1)}

    def picks(x_shape: tuple[int, ...], w_shape: tuple[int, ...], input_grad: bool = True) -> bool:
        x, w = np.zeros(x_shape, np.float32), np.zeros(w_shape, np.float32)
        return a.conv2d(x, w, None, input_grad=input_grad, **kw) is not None

    assert picks((128, 8, 13, 13), (16, 8, 3, 3))  # LeNet's second convolution
    assert not picks((128, 8, 13, 13), (16, 8, 3, 3), input_grad=False)
    assert not picks((128, 1, 28, 28), (8, 1, 3, 3))  # one input channel: a small buffer
    assert not picks((128, 16, 10, 10), (16, 16, 1, 1))  # 1 x 1: im2col is the input itself
    assert not picks((1, 8, 13, 13), (16, 8, 3, 3))  # batch 1: nothing to put last


@pytest.mark.parametrize("geometry", GEOMETRIES[:6], ids=[str(i) for i in range(6)])
def test_im2col_and_col2im_are_adjoint(case: Any, geometry: Any) -> None:
    """<im2col(x), c> = <x, col2im(c)>, on every backend; and im2col's column layout."""
    x_shape, (_, kh, kw), s, _, d = geometry
    r = np.random.default_rng(2)
    x = r.normal(size=x_shape)
    cols_ref = im2col(x, (kh, kw), stride=s, dilation=d)
    c = r.normal(size=cols_ref.shape)
    np.testing.assert_allclose(np.sum(cols_ref * c), np.sum(x * col2im(c, x_shape, (kh, kw), stride=s, dilation=d)), rtol=1e-12)
    # cols[n, (ch, i, j), (p, q)] = x[n, ch, p * sh + i * dh, q * sw + j * dw]
    (sh, sw), (dh, dw) = pair(s, "s"), pair(d, "d")
    ho, wo = conv2d_output_size(x_shape[2:], (kh, kw), (sh, sw), (0, 0), (dh, dw))
    n, ch, i, j, p, q = (v - 1 for v in (x_shape[0], x_shape[1], kh, kw, ho, wo))
    assert cols_ref[n, (ch * kh + i) * kw + j, p * wo + q] == x[n, ch, p * sh + i * dh, q * sw + j * dw]
    dtype = "float64" if case.supports("float64") else "float32"
    got = im2col(case.asarray(x, dtype), (kh, kw), stride=s, dilation=d)
    case.assert_close(got, cols_ref, dtype=dtype)
    case.assert_close(
        col2im(case.asarray(c, dtype), x_shape, (kh, kw), stride=s, dilation=d),
        col2im(c, x_shape, (kh, kw), stride=s, dilation=d),
        dtype=dtype,
    )


# -- the layer on every backend -------------------------------------------------------------
def test_same_initial_weights_on_every_backend(case: Any) -> None:
    with pn.use_backend("numpy"):
        ref = Conv2d(3, 4, (3, 2), seed=7)
        ref_model = pn.Sequential([Conv2d(1, 2, 3), ReLU(), Conv2d(2, 3, 3, bias=False)], seed=3)
    layer = Conv2d(3, 4, (3, 2), seed=7)
    case.assert_close(layer.weight.data, pn.to_numpy(ref.weight.data), dtype="float32")
    assert np.array_equal(pn.to_numpy(layer.weight.data), pn.to_numpy(ref.weight.data))
    assert np.array_equal(pn.to_numpy(layer.bias.data), np.zeros(4, np.float32))
    assert layer.weight.shape == (4, 3, 3, 2)
    model = pn.Sequential([Conv2d(1, 2, 3), ReLU(), Conv2d(2, 3, 3, bias=False)], seed=3)
    state, ref_state = model.state_dict(), ref_model.state_dict()
    assert list(state) == ["0.weight", "0.bias", "2.weight"]
    for name in state:
        assert backends.adapter_for(state[name]) is case.backend.adapter
        assert np.array_equal(pn.to_numpy(state[name]), pn.to_numpy(ref_state[name])), name
    # He uniform: U(±sqrt(6 / fan_in)), fan_in = in_channels * kh * kw
    w = pn.to_numpy(Conv2d(16, 64, 3, seed=0).weight.data)
    bound = np.sqrt(6 / (16 * 9))
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.95 * bound


@pytest.mark.parametrize(
    ("args", "kwargs", "x_shape"),
    [
        ((3, 4, 3), {}, (2, 3, 8, 7)),
        ((3, 4, (3, 2)), {"stride": 2, "padding": 1}, (2, 3, 9, 8)),
        ((2, 5, 3), {"stride": (1, 2), "padding": (0, 2), "dilation": (2, 1)}, (1, 2, 9, 6)),
        ((1, 2, 5), {"padding": 2}, (3, 1, 5, 5)),
    ],
)
def test_output_shape_and_gradients_match_the_functional(case: Any, args: Any, kwargs: Any, x_shape: Any) -> None:
    dtype = "float64" if case.supports("float64") else "float32"
    layer = Conv2d(*args, **kwargs, dtype=dtype, seed=0)
    assert layer.output_shape((None, *x_shape[1:])) == (None, *layer.output_shape(x_shape)[1:])
    r = np.random.default_rng(3)
    x = r.normal(size=x_shape)
    y, backward = layer.forward(case.asarray(x, dtype), training=True)
    assert tuple(y.shape) == layer.output_shape(x_shape)
    w, b = pn.to_numpy(layer.weight.data).astype(np.float64), pn.to_numpy(layer.bias.data).astype(np.float64)
    y_ref, back_ref = conv2d(x, w, b, **kwargs)
    case.assert_close(y, y_ref, dtype=dtype)
    dy = r.normal(size=y_ref.shape)
    dx = backward(case.asarray(dy, dtype))
    dx_ref, dw_ref, db_ref = back_ref(dy)
    case.assert_close(dx, dx_ref, dtype=dtype)
    case.assert_close(layer.weight.grad, dw_ref, dtype=dtype)
    case.assert_close(layer.bias.grad, db_ref, dtype=dtype)
    backward(case.asarray(dy, dtype))  # gradients add up over backward calls
    case.assert_close(layer.weight.grad, 2 * dw_ref, dtype=dtype)
    _, back_no_dx = layer.forward(case.asarray(x, dtype), input_grad=False)
    assert back_no_dx(case.asarray(dy, dtype)) is None


def test_float32_stays_float32_on_the_device(case: Any) -> None:
    layer = Conv2d(3, 4, 3, padding=1, seed=0)
    x = case.asarray(np.random.default_rng(4).normal(size=(2, 3, 5, 5)), "float32")
    y, backward = layer.forward(x)
    dx = backward(y)
    for a in (y, dx, layer.weight.grad, layer.bias.grad):
        assert case.backend.adapter.owns(a) and device(a) == case.device
        assert dtype_name(a.dtype) == "float32"


def test_small_convnet_trains(case: Any) -> None:
    model = pn.Sequential(
        [Conv2d(1, 4, 3, padding=1), ReLU(), Conv2d(4, 4, 3, stride=2), ReLU(), Flatten(), Linear(4 * 3 * 3, 3)],
        seed=0,
        input_shape=(1, 8, 8),
    )
    assert model.output_shape == (None, 3)
    r = np.random.default_rng(5)
    x = case.asarray(r.normal(size=(24, 1, 8, 8)), "float32")
    y = case.asarray(r.integers(0, 3, size=24), "int64")
    loss, opt = pn.losses.CrossEntropy(), pn.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    losses = [float(model.train_step(x, y, loss, opt)[0]) for _ in range(15)]
    assert np.all(np.isfinite(losses))
    assert losses[-1] < 0.7 * losses[0], losses


# -- errors -------------------------------------------------------------------------------
def test_wrong_input_shapes_name_the_layer(case: Any) -> None:
    layer = Conv2d(1, 8, 3)
    with pytest.raises(
        ShapeError,
        match=r"Conv2d\(1, 8, kernel_size=\(3, 3\)\) got input of shape \(32, 784\): expected \(batch, 1, H, W\) "
        r"\(flat images\? use x.reshape\(-1, 1, 28, 28\)\)",
    ):
        layer(case.asarray(np.ones((32, 784)), "float32"))
    with pytest.raises(ShapeError, match=r"got input of shape \(32, 3, 28, 28\): expected \(batch, 1, H, W\)"):
        layer(case.asarray(np.ones((32, 3, 28, 28)), "float32"))
    with pytest.raises(ShapeError, match=r"\(2, 28, 28, 1\).*channels last\? portnn is NCHW: use x.transpose\(0, 3, 1, 2\)"):
        layer(case.asarray(np.ones((2, 28, 28, 1)), "float32"))
    with pytest.raises(ShapeError, match=r"\(2, 28, 28\).*grey images without a channel axis\? use x.reshape\(-1, 1, H, W\)"):
        layer(case.asarray(np.ones((2, 28, 28)), "float32"))
    with pytest.raises(
        ShapeError,
        match=r"got input of shape \(2, 1, 2, 5\): its padded size \(H, W\) = \(2, 5\) is smaller than the kernel \(3, 3\)",
    ):
        layer(case.asarray(np.ones((2, 1, 2, 5)), "float32"))
    with pytest.raises(ShapeError, match=r"\(2, 1, 4, 4\).*smaller than the kernel \(3, 3\) \(dilated to \(5, 5\)\)"):
        Conv2d(1, 8, 3, dilation=2)(case.asarray(np.ones((2, 1, 4, 4)), "float32"))


def test_wrong_dtype_and_device_name_the_layer(case: Any) -> None:
    layer = Conv2d(1, 8, 3)
    if case.supports("float64"):
        with pytest.raises(
            TypeError, match=r"Conv2d\(1, 8, kernel_size=\(3, 3\)\) got input of dtype float64 but its parameters are float32"
        ):
            layer(case.asarray(np.ones((2, 1, 5, 5)), "float64"))
    if case.name != "numpy":
        with pytest.raises(TypeError, match=r"Conv2d\(1, 8, kernel_size=\(3, 3\)\): got arrays from different libraries"):
            layer(np.ones((2, 1, 5, 5), np.float32))


def test_two_strict_devices_in_one_call() -> None:
    pytest.importorskip("array_api_strict")
    with pn.use_backend("array_api_strict", "device1"):
        layer = Conv2d(1, 2, 3)
    x = backends.get_adapter("array_api_strict").from_numpy(np.ones((2, 1, 5, 5), np.float32), "device2")
    with pytest.raises(
        ValueError,
        match=r"Conv2d\(1, 2, kernel_size=\(3, 3\)\) got input on device .*device2.* but its parameters are on .*device1",
    ):
        layer(x)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match=r"Conv2d: in_channels must be a positive int; got 0"):
        Conv2d(0, 8, 3)
    with pytest.raises(
        ValueError, match=r"Conv2d\(1, 8\): kernel_size must be an int or a pair of positive ints; got kernel_size=\(3, 0\)"
    ):
        Conv2d(1, 8, (3, 0))
    with pytest.raises(ValueError, match=r"Conv2d\(1, 8\): padding must be an int or a pair of ints >= 0; got padding=-1"):
        Conv2d(1, 8, 3, padding=-1)
    with pytest.raises(
        ValueError, match=r"Conv2d\(1, 8\): stride must be an int or a pair of positive ints; got stride=\(1, 2, 3\)"
    ):
        Conv2d(1, 8, 3, stride=(1, 2, 3))
    with pytest.raises(ValueError, match=r"unknown init 'nope'"):
        Conv2d(1, 8, 3, init="nope")
    with pytest.raises(
        ShapeError,
        match=r"layer 2 \(Conv2d\(4, 8, kernel_size=\(3, 3\)\)\) does not fit after layer 1 "
        r".*expects input of shape \(batch, 4, H, W\); got \(batch, 2, 26, 26\)",
    ):
        pn.Sequential([Conv2d(1, 2, 3), ReLU(), Conv2d(4, 8, 3)], input_shape=(1, 28, 28))
    with pytest.raises(ShapeError, match=r"smaller than the kernel \(5, 5\)"):
        pn.Sequential([Conv2d(1, 2, 3), Conv2d(2, 2, 5)], input_shape=(1, 6, 6))
    assert Conv2d(1, 2, 3).output_shape((None, 1, None, 7)) == (None, 2, None, 5)
    x, w = np.ones((2, 3, 5, 5)), np.ones((4, 2, 3, 3))
    with pytest.raises(ValueError, match=r"conv2d: input of shape \(2, 3, 5, 5\) does not fit weight of shape \(4, 2, 3, 3\)"):
        conv2d(x, w)
    with pytest.raises(TypeError, match=r"conv2d: input is float64 but weight/bias are float32"):
        conv2d(x, np.ones((4, 3, 3, 3), np.float32))


def test_repr() -> None:
    assert repr(Conv2d(1, 8, 3)) == "Conv2d(1, 8, kernel_size=(3, 3))"
    assert repr(Conv2d(3, 4, (3, 5), 2, (0, 1), 2, False)) == (
        "Conv2d(3, 4, kernel_size=(3, 5), stride=(2, 2), padding=(0, 1), dilation=(2, 2), bias=False)"
    )


# -- memory -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("x_shape", "o", "padding"), [((64, 1, 28, 28), 8, 0), ((64, 8, 13, 13), 16, 0), ((32, 8, 12, 12), 16, 1)]
)
def test_forward_holds_one_im2col_buffer(x_shape: tuple[int, ...], o: int, padding: int) -> None:
    """tracemalloc sees NumPy's allocations: a forward's peak is one im2col buffer plus input- and output-sized arrays."""
    layer = Conv2d(x_shape[1], o, 3, padding=padding, seed=0)
    x = np.random.default_rng(6).normal(size=x_shape).astype(np.float32)
    n, c, h, w = x_shape
    ho, wo = h + 2 * padding - 2, w + 2 * padding - 2
    cols, out, padded = 4 * n * c * 9 * ho * wo, 4 * n * o * ho * wo, 4 * n * c * (h + 2 * padding) * (w + 2 * padding)
    kw = {"stride": (1, 1), "padding": (padding, padding), "dilation": (1, 1)}
    for input_grad in (False, True):
        batch_last = NumpyAdapter().conv2d(x, layer.weight.data, None, input_grad=input_grad, **kw) is not None
        # generic: (padded input and buffer) then (buffer and output); batch-last: (transposed
        # padded input and buffer) then (buffer and the output twice: GEMM result, NCHW copy);
        # batch-last keeps the transposed input in its workspace, for the next step
        bound = cols + (padded + 2 * out if batch_last else max(padded if padding else 0, out))
        if not input_grad:  # a first layer: the buffer has a row of ones per sample (the bias folded in)
            bound += 4 * n * ho * wo
        NumpyAdapter().workspace.clear()  # fresh arrays, not ones a previous test left for reuse
        tracemalloc.start()
        try:
            y, backward = layer.forward(x, input_grad=input_grad)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak <= bound + 64 * 1024, (input_grad, batch_last, peak, bound)
        assert peak >= cols + out  # the buffer really is there, once
        del y, backward


def test_the_batch_last_spec_takes_the_numpy_kernel() -> None:
    """The op-spec harness exercises NumPy's batch-last kernel as well as the generic path."""
    from specs_conv import SPECS

    x, w, _ = SPECS["conv2d_batch_last"].make(np.random.default_rng(0))
    kw = {"stride": (1, 1), "padding": (1, 1), "dilation": (1, 1), "input_grad": True}
    assert NumpyAdapter().conv2d(x, w, None, **kw) is not None

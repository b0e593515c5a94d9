"""NumPy's fast kernels (the adapter hooks ``relu``, ``max_pool2d``, ``batch_norm``...) equal the generic array-API path.

Each hook runs the generic path's elementwise operations in the generic order, with ``out=``
into reused workspace arrays, so the comparisons here are bit for bit: values (ties, NaN,
infinities and signed zeros included), dtypes, shapes and gradients, in float32 and float64,
for odd shapes, strides and batch 1. The generic path is reached by calling the functional
with the hook switched off (``monkeypatch``), as it runs on array_api_strict, torch and cupy.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import pytest

from portnn import backends
from portnn.backends.numpy import NumpyAdapter, Workspace
from portnn.functional import relu
from portnn.functional.pooling import max_pool2d

DTYPES = ["float32", "float64"]

#: inf * 0 in the gradients of the special values: NaN on both paths, as it should be
pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")


def _generic(monkeypatch: pytest.MonkeyPatch, hook: str) -> None:
    """Switch the NumPy adapter's ``hook`` off: the functional then takes its generic path."""
    monkeypatch.setattr(NumpyAdapter, hook, lambda self, *args, **kwargs: None)


def _same(got: Any, want: Any, what: str, zero_sign: bool = True) -> None:
    assert isinstance(got, np.ndarray), what
    assert got.dtype == want.dtype and got.shape == want.shape, (what, got.dtype, want.dtype, got.shape, want.shape)
    np.testing.assert_array_equal(got, want, err_msg=what)
    if zero_sign:
        np.testing.assert_array_equal(np.signbit(got), np.signbit(want), err_msg=what + " (sign of zero)")
    else:  # only a zero may differ in sign
        differ = np.signbit(got) != np.signbit(want)
        assert np.all(got[differ] == 0), what + " (sign of a non-zero)"


def _special(r: np.random.Generator, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    """Normal draws with ties, zeros of both signs, infinities and NaN sprinkled in."""
    x = np.round(r.normal(size=shape) * 2) / 2  # many ties
    flat = x.reshape(-1)
    picks = r.choice(flat.size, size=min(flat.size, 8), replace=False)
    flat[picks] = [0.0, -0.0, np.inf, -np.inf, np.nan, 0.0, -0.0, 1.0][: len(picks)]
    return x.astype(dtype)


# -- ReLU -----------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 7), (3, 5, 11, 13), (128, 10), (2, 1, 1, 1)])
def test_relu_equals_generic(monkeypatch: pytest.MonkeyPatch, dtype: str, shape: tuple[int, ...]) -> None:
    r = np.random.default_rng(0)
    x, dy = _special(r, shape, dtype), _special(r, shape, dtype)
    assert NumpyAdapter().relu(x) is not None  # the fast path is the one under test
    y, backward = relu(x)
    dx = backward(dy)
    _generic(monkeypatch, "relu")
    y_ref, backward_ref = relu(x)
    _same(y, y_ref, "y")
    _same(dx, backward_ref(dy), "dx")


def test_relu_fast_path_declines_what_it_does_not_speed_up() -> None:
    adapter = NumpyAdapter()
    assert adapter.relu(np.arange(3)) is None  # ints: the generic path keeps its dtype rules
    assert adapter.relu(np.float32(2.0)) is None  # a 0-d input
    assert adapter.relu(np.ones(3, np.float16)) is None


def test_relu_results_are_never_reused_while_held() -> None:
    """A result still referenced is never handed out again: two calls give two live arrays."""
    x = np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4)
    y1, back1 = relu(x)
    y2, back2 = relu(-x)
    assert not np.shares_memory(y1, y2)
    np.testing.assert_array_equal(y1, np.maximum(x, 0))
    d1 = back1(np.ones_like(x))
    d2 = back2(np.ones_like(x))
    assert not np.shares_memory(d1, d2)
    np.testing.assert_array_equal(d1, (x > 0).astype(np.float32))
    np.testing.assert_array_equal(d2, (x < 0).astype(np.float32))


# -- max-pool -------------------------------------------------------------------------------
#: (input shape, kernel_size, stride): windows that tile the input, leave a remainder, skip a gap,
#: non-square; batch 1; a 1x1 window
POOLS = [
    ((2, 3, 8, 8), (2, 2), (2, 2)),
    ((1, 1, 7, 9), (2, 2), (2, 2)),
    ((3, 2, 9, 10), (3, 2), (3, 2)),
    ((2, 2, 11, 11), (2, 2), (3, 3)),
    ((1, 4, 6, 5), (2, 3), (2, 4)),
    ((2, 2, 5, 5), (1, 1), (1, 1)),
    ((128, 8, 26, 26), (2, 2), (2, 2)),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("shape", "k", "s"), POOLS, ids=[str(i) for i in range(len(POOLS))])
def test_max_pool_equals_generic(monkeypatch: pytest.MonkeyPatch, dtype: str, shape: Any, k: Any, s: Any) -> None:
    r = np.random.default_rng(1)
    x = _special(r, shape, dtype)
    x_copy = x.copy()
    y, backward = max_pool2d(x, k, stride=s)
    dy = r.normal(size=y.shape).astype(dtype)
    dy.reshape(-1)[:2] = [np.inf, -0.0]
    dx = backward(dy)
    y_forward_only, none = max_pool2d(x, k, stride=s, input_grad=False)
    np.testing.assert_array_equal(x, x_copy)  # the input is read only
    _generic(monkeypatch, "max_pool2d")
    y_ref, backward_ref = max_pool2d(x, k, stride=s)
    # The maximum of a window whose maximum is a tie of +0 and -0 may be either zero: the generic
    # path takes the argmax's element (the first), NumPy's SIMD maximum its second operand (IEEE 754
    # leaves max(+0, -0) open). Everything else, the argmax that the gradient goes to included, is equal.
    _same(y, y_ref, "y", zero_sign=False)
    _same(dx, backward_ref(dy), "dx")
    _same(y_forward_only, y_ref, "y (input_grad=False)", zero_sign=False)
    assert none(dy) is None


def test_max_pool_takes_the_fast_path_only_for_disjoint_windows_without_padding() -> None:
    adapter, x = NumpyAdapter(), np.zeros((1, 1, 6, 6), np.float32)
    assert adapter.max_pool2d(x, (2, 2), (2, 2), (0, 0), (3, 3)) is not None
    assert adapter.max_pool2d(x, (2, 2), (1, 1), (0, 0), (5, 5)) is None  # overlapping windows
    assert adapter.max_pool2d(x, (3, 3), (3, 3), (1, 1), (2, 2)) is None  # padding
    assert adapter.max_pool2d(x.astype(np.float16), (2, 2), (2, 2), (0, 0), (3, 3)) is None


def test_max_pool_backward_twice_and_two_live_forwards() -> None:
    """A backward called twice gives the same answer; a second forward leaves the first's arrays alone."""
    r = np.random.default_rng(2)
    a, b = r.normal(size=(2, 2, 4, 4)), r.normal(size=(2, 2, 4, 4))
    ya, back_a = max_pool2d(a, 2)
    first = back_a(np.ones_like(ya)).copy()
    yb, back_b = max_pool2d(b, 2)
    assert not np.shares_memory(ya, yb)
    np.testing.assert_array_equal(ya, a.reshape(2, 2, 2, 2, 2, 2).max(axis=(3, 5)))
    np.testing.assert_array_equal(back_a(np.ones_like(ya)), first)


# -- the workspace --------------------------------------------------------------------------
def test_workspace_reuses_only_released_arrays() -> None:
    ws = Workspace(per_key=2, max_keys=2)
    a = ws.empty("t", (3, 4), np.float32)
    b = ws.empty("t", (3, 4), np.float32)
    assert a is not b  # a is still held
    a_id = id(a)
    del a
    assert id(ws.empty("t", (3, 4), np.float32)) == a_id  # released: handed out again
    view = b[1:]
    del b
    c = ws.empty("t", (3, 4), np.float32)
    assert not np.shares_memory(c, view)  # a view keeps its base out of reuse
    assert ws.empty("t", (3, 4), np.float64).dtype == np.float64
    ws.empty("u", (2,), np.float32)
    ws.empty("v", (5,), np.float32)
    assert [k[0] for k in ws._kept] == [(2,), (5,)]  # the least recently used shape dropped
    small = Workspace(max_bytes=100)
    big = small.empty("t", (200,), np.uint8)
    del big
    assert small.nbytes == 0 and small.empty("t", (20,), np.uint8) is not None and small.nbytes == 20
    z = ws.zeros((2, 3), np.float32)
    assert not z.flags.writeable and not z.any()
    assert sys.getrefcount(z) >= 2


def test_fast_paths_are_numpy_only() -> None:
    """Other libraries keep the generic path: their adapters have no such kernels."""
    for name, adapter in backends._ADAPTERS.items():
        if name != "numpy":
            for hook in ("relu", "max_pool2d", "conv2d_im2col", "batch_moments", "batch_norm"):
                assert getattr(type(adapter), hook) is getattr(backends.Adapter, hook), (name, hook)


# -- conv2d (batch-last kernel) with its workspace --------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("x_shape", "o", "padding", "stride"), [((16, 3, 9, 7), 5, 1, 1), ((20, 4, 8, 8), 6, 0, 2)])
def test_conv_workspace_keeps_live_results_apart(dtype: str, x_shape: Any, o: int, padding: int, stride: int) -> None:
    """Two forwards alive at once and a backward called twice: each result is its own, bit for bit
    what a lone call gives, and equal to the generic path up to summation order."""
    from portnn.functional.conv import _conv2d, conv2d, conv2d_output_size

    r = np.random.default_rng(3)
    xa, xb = r.normal(size=x_shape).astype(dtype), r.normal(size=x_shape).astype(dtype)
    w, b = r.normal(size=(o, x_shape[1], 3, 3)).astype(dtype), r.normal(size=o).astype(dtype)
    kw = {"stride": (stride, stride), "padding": (padding, padding), "dilation": (1, 1), "input_grad": True}
    assert NumpyAdapter().conv2d(xa, w, b, **kw) is not None  # the batch-last kernel is the one under test
    ya, back_a = conv2d(xa, w, b, stride=stride, padding=padding)
    dy = r.normal(size=ya.shape).astype(dtype)
    ga = [g.copy() for g in back_a(dy)]
    ya_copy = ya.copy()
    yb, back_b = conv2d(xb, w, b, stride=stride, padding=padding)
    gb = back_b(dy)
    assert not np.shares_memory(ya, yb) and not np.shares_memory(ga[0], gb[0])
    np.testing.assert_array_equal(ya, ya_copy)
    for got, want in zip(back_a(dy), ga):  # a's closure still reads a's im2col buffer
        _same(got, want, "backward again")
    out = conv2d_output_size(x_shape[2:], (3, 3), (stride, stride), (padding, padding))
    y_ref, back_ref = _conv2d(np, xa, w, b, kw["stride"], kw["padding"], (1, 1), out, True)
    tol = {"float32": 1e-4, "float64": 1e-10}[dtype]
    np.testing.assert_allclose(ya, y_ref, rtol=tol, atol=tol)
    for got, want in zip(ga, back_ref(dy)):
        assert got.dtype == want.dtype == np.dtype(dtype)
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol * 10)


def test_a_training_step_is_deterministic_with_the_workspace() -> None:
    """Reused arrays never leak values from one step into the next: two runs give bit-identical weights."""
    import portnn as pn

    def run() -> list[np.ndarray]:
        L = pn.layers
        model = pn.Sequential(
            [L.Conv2d(1, 4, 3), L.ReLU(), L.MaxPool2d(2), L.Conv2d(4, 8, 3), L.ReLU(), L.MaxPool2d(2)]
            + [L.Flatten(), L.Linear(8, 3)],
            seed=0,
            input_shape=(1, 12, 12),
        )
        opt = pn.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        r = np.random.default_rng(4)
        for batch in (32, 32, 5, 32):
            x, y = r.random((batch, 1, 12, 12), dtype=np.float32), r.integers(0, 3, size=batch)
            model.train_step(x, y, pn.losses.CrossEntropy(), opt)
        return [np.array(v) for v in model.state_dict().values()]

    first = run()
    NumpyAdapter().workspace.clear()
    for a, b in zip(first, run()):
        np.testing.assert_array_equal(a, b)


# -- conv2d, the generic im2col path in NumPy's terms (Adapter.conv2d_im2col) -------------------
#: (input shape, (out channels, kh, kw), stride, padding, dilation): batch 1, odd sizes, padding,
#: strides, dilation, 1x1, a kernel as large as the padded input, LeNet's first convolution
IM2COL = [
    ((1, 1, 5, 7), (2, 3, 3), (1, 1), (0, 0), (1, 1)),
    ((3, 2, 9, 8), (4, 3, 2), (2, 1), (1, 2), (1, 1)),
    ((2, 3, 11, 10), (2, 3, 3), (1, 2), (2, 0), (2, 3)),
    ((2, 5, 6, 6), (3, 1, 1), (1, 1), (0, 0), (1, 1)),
    ((2, 2, 5, 6), (3, 5, 6), (1, 1), (2, 1), (1, 1)),
    ((2, 1, 8, 8), (40, 3, 3), (1, 1), (0, 0), (1, 1)),
    ((128, 1, 28, 28), (8, 3, 3), (1, 1), (0, 0), (1, 1)),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    ("bias", "input_grad", "param_grad"), [(True, True, True), (False, True, True), (True, False, True), (True, True, False)]
)
@pytest.mark.parametrize("geometry", IM2COL, ids=[str(i) for i in range(len(IM2COL))])
def test_conv_im2col_equals_generic(geometry: Any, bias: bool, input_grad: bool, param_grad: bool, dtype: str) -> None:
    from portnn.functional.conv import _conv2d, conv2d_output_size

    x_shape, (o, kh, kw), s, p, d = geometry
    r = np.random.default_rng(5)
    x, w = r.normal(size=x_shape).astype(dtype), r.normal(size=(o, x_shape[1], kh, kw)).astype(dtype)
    b = r.normal(size=o).astype(dtype) if bias else None
    args = {"stride": s, "padding": p, "dilation": d, "input_grad": input_grad, "param_grad": param_grad}
    y, backward = NumpyAdapter().conv2d_im2col(x, w, b, **args)
    dy = r.normal(size=y.shape).astype(dtype)
    grads = backward(dy)
    out = conv2d_output_size(x_shape[2:], (kh, kw), s, p, d)
    y_ref, backward_ref = _conv2d(np, x, w, b, s, p, d, out, input_grad, param_grad)
    _same(y, y_ref, "y")
    for got, want, what in zip(grads, backward_ref(dy), ("dx", "dweight", "dbias")):
        if want is None:
            assert got is None, what
        else:
            _same(got, want, what)


# -- BatchNorm (Adapter.batch_moments, Adapter.batch_norm) --------------------------------------
BN_SHAPES = [(2, 3), (7, 5), (2, 4, 9), (128, 16, 121)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", BN_SHAPES)
def test_batch_moments_equal_generic(monkeypatch: pytest.MonkeyPatch, dtype: str, shape: tuple[int, ...]) -> None:
    from portnn.functional import batch_moments

    x = (np.random.default_rng(6).normal(size=shape) * 3 + 1).astype(dtype)
    assert NumpyAdapter().batch_moments(x) is not None
    got = batch_moments(x)
    _generic(monkeypatch, "batch_moments")
    for g, w, what in zip(got, batch_moments(x), ("mean", "var")):
        _same(g, w, what)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", BN_SHAPES)
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize(
    ("affine", "input_grad", "param_grad"),
    [("both", True, True), ("none", True, True), ("weight", True, False), ("bias", False, True), ("both", True, False)],
)
def test_batch_norm_equals_generic(
    monkeypatch: pytest.MonkeyPatch, dtype: str, shape: Any, training: bool, affine: str, input_grad: bool, param_grad: bool
) -> None:
    from portnn.functional import batch_moments, batch_norm

    r = np.random.default_rng(7)
    x = (r.normal(size=shape) * 2 - 1).astype(dtype)
    c = shape[1]
    weight = r.normal(size=c).astype(dtype) if affine in ("both", "weight") else None
    bias = r.normal(size=c).astype(dtype) if affine in ("both", "bias") else None
    if training:
        mean, var = batch_moments(x)
    else:
        mean, var = r.normal(size=c).astype(dtype), r.random(c).astype(dtype) + 0.5
    kw = {"mean": mean, "var": var, "training": training, "eps": 1e-5, "input_grad": input_grad, "param_grad": param_grad}
    assert NumpyAdapter().batch_norm(x, weight, bias, **kw) is not None
    y, backward = batch_norm(x, weight, bias, **kw)
    dy = r.normal(size=shape).astype(dtype)
    grads = [None if g is None else g.copy() for g in backward(dy)]
    y = y.copy()
    _generic(monkeypatch, "batch_norm")
    y_ref, backward_ref = batch_norm(x, weight, bias, **kw)
    _same(y, y_ref, "y")
    for got, want, what in zip(grads, backward_ref(dy), ("dx", "dweight", "dbias")):
        if want is None:
            assert got is None, what
        else:
            _same(got, want, what)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", BN_SHAPES)
@pytest.mark.parametrize("fast", [True, False])
def test_batch_norm_training_equals_moments_then_batch_norm(
    monkeypatch: pytest.MonkeyPatch, dtype: str, shape: Any, fast: bool
) -> None:
    """batch_norm_training (the layer's path; the generic one centres x once) = batch_moments, then batch_norm."""
    from portnn.functional import batch_moments, batch_norm
    from portnn.functional.normalization import batch_norm_training

    r = np.random.default_rng(8)
    x = (r.normal(size=shape) * 2 - 1).astype(dtype)
    weight, bias = r.normal(size=shape[1]).astype(dtype), r.normal(size=shape[1]).astype(dtype)
    dy = r.normal(size=shape).astype(dtype)
    if not fast:
        _generic(monkeypatch, "batch_moments")
        _generic(monkeypatch, "batch_norm")
    y, backward, mean, var = batch_norm_training(x, weight, bias, eps=1e-5)
    got = [y.copy(), mean, var, *(g.copy() for g in backward(dy))]
    mean_ref, var_ref = batch_moments(x)
    y_ref, backward_ref = batch_norm(x, weight, bias, mean=mean_ref, var=var_ref, training=True, eps=1e-5)
    want = [y_ref, mean_ref, var_ref, *backward_ref(dy)]
    for g, w, what in zip(got, want, ("y", "mean", "var", "dx", "dweight", "dbias"), strict=True):
        _same(g, w, what)


# -- the flat gradient buffer (Adapter.concat_into) and col2im's in-place adds ---------------------------
@pytest.mark.parametrize("dtype", DTYPES)
def test_concat_into_equals_concat(dtype: str) -> None:
    r = np.random.default_rng(9)
    arrays = [r.normal(size=s).astype(dtype) for s in [(3, 4), (5,), (2, 1, 3), (1,)]]
    arrays[1] = arrays[1][::-1]  # a strided view too
    out = np.full(sum(a.size for a in arrays), np.nan, dtype)
    assert NumpyAdapter().concat_into(arrays, out)
    _same(out, np.concatenate([a.reshape(-1) for a in arrays]), "flat")
    assert not NumpyAdapter().concat_into([arrays[0].astype(np.float16)], out[:12])  # a dtype that differs: declined
    for name, adapter in backends._ADAPTERS.items():
        if name != "numpy":
            assert type(adapter).concat_into is backends.Adapter.concat_into, name


@pytest.mark.parametrize(("padding", "stride", "dilation"), [(1, 1, 1), (0, 2, 1), (2, 1, 2)])
def test_col2im_in_place_equals_add_and_write(monkeypatch: pytest.MonkeyPatch, padding: int, stride: int, dilation: int) -> None:
    """The generic conv backward's col2im: in-place adds into window views = add, then write (bit for bit)."""
    from portnn.functional.conv import conv2d

    r = np.random.default_rng(10)
    x, w = r.normal(size=(3, 4, 9, 8)), r.normal(size=(5, 4, 3, 3))
    _generic(monkeypatch, "conv2d")
    _generic(monkeypatch, "conv2d_im2col")
    y, backward = conv2d(x, w, stride=stride, padding=padding, dilation=dilation)
    dy = r.normal(size=y.shape)
    dx = backward(dy)[0].copy()
    monkeypatch.setattr(NumpyAdapter, "inplace", False)
    _same(dx, conv2d(x, w, stride=stride, padding=padding, dilation=dilation)[1](dy)[0], "dx")


# -- LSTM (time loop into preallocated arrays) -------------------------------------------------
# Not bit for bit: the fast LSTM fuses a step's two products (and the backward's parameter
# gradients) into one, which sums in another order; the elementwise operations are the generic ones.
def _close(got: Any, want: Any, what: str) -> None:
    """Equal up to the rounding of a different summation order (the fast LSTM fuses its products)."""
    assert isinstance(got, np.ndarray), what
    assert got.dtype == want.dtype and got.shape == want.shape, (what, got.dtype, want.dtype, got.shape, want.shape)
    tol = 2e-5 if want.dtype == np.float32 else 1e-13
    scale = float(np.max(np.abs(want), initial=1.0))
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * scale, err_msg=what)


def _lstm_run(x: Any, w: list[Any], dy: Any, **kwargs: Any) -> list[Any]:
    from portnn.functional import lstm

    y, backward = lstm(x, *w, **kwargs)
    y = np.array(y)  # a copy: the fast path's y is a view of its arrays
    return [y, *(None if g is None else np.array(g) for g in backward(dy))]


LSTM_CASES = [  # (N, T, in, H)
    (1, 1, 1, 1),
    (3, 1, 5, 7),
    (2, 2, 1, 3),
    (5, 7, 3, 4),
    (4, 6, 9, 13),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("sizes", LSTM_CASES)
@pytest.mark.parametrize("sequences", [False, True])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("grads", [(True, True), (False, True), (True, False), (False, False)])
def test_lstm_equals_generic(
    monkeypatch: pytest.MonkeyPatch, dtype: str, sizes: Any, sequences: bool, bias: bool, grads: Any
) -> None:
    n, t, f, h = sizes
    r = np.random.default_rng(sum(sizes))
    x = r.normal(size=(n, t, f)).astype(dtype)
    w = [r.normal(size=(4 * h, f)).astype(dtype), r.normal(size=(4 * h, h)).astype(dtype) / 2]
    w += [r.normal(size=4 * h).astype(dtype), r.normal(size=4 * h).astype(dtype)] if bias else [None, None]
    dy = r.normal(size=(n, t, h) if sequences else (n, h)).astype(dtype)
    kwargs = {"return_sequences": sequences, "input_grad": grads[0], "param_grad": grads[1]}
    assert NumpyAdapter().lstm(x, *w, **kwargs) is not None  # the fast path runs
    fast = _lstm_run(x, w, dy, **kwargs)
    _generic(monkeypatch, "lstm")
    want = _lstm_run(x, w, dy, **kwargs)
    for what, got, ref in zip(["y", "dx", "dweight_ih", "dweight_hh", "dbias_ih", "dbias_hh"], fast, want):
        assert (got is None) == (ref is None), what
        if ref is not None:
            _close(got, ref, what)


def test_lstm_fast_path_declines_mixed_dtypes_and_other_libraries() -> None:
    r = np.random.default_rng(0)
    x, w_ih, w_hh = r.normal(size=(2, 3, 4)), r.normal(size=(8, 4)), r.normal(size=(8, 2))
    kwargs = {"return_sequences": False, "input_grad": True, "param_grad": True}
    assert NumpyAdapter().lstm(x.astype(np.float32), w_ih, w_hh, None, None, **kwargs) is None
    assert NumpyAdapter().lstm(x.astype(np.float16), *(w.astype(np.float16) for w in (w_ih, w_hh)), None, None, **kwargs) is None
    for name, adapter in backends._ADAPTERS.items():
        if name != "numpy":
            assert type(adapter).lstm is backends.Adapter.lstm, name


def test_lstm_two_live_forwards_and_backward_twice() -> None:
    """Each forward's arrays stay its own while its backward or its output is held."""
    from portnn.functional import lstm

    r = np.random.default_rng(1)
    w = [r.normal(size=(12, 4)).astype(np.float32), r.normal(size=(12, 3)).astype(np.float32), None, None]
    x1, x2 = r.normal(size=(2, 5, 4, 4)).astype(np.float32)
    dy = r.normal(size=(5, 4, 3)).astype(np.float32)  # x1, x2: (N=5, T=4, in=4)
    want1, want2 = _lstm_run(x1, w, dy, return_sequences=True), _lstm_run(x2, w, dy, return_sequences=True)
    y1, b1 = lstm(x1, *w, return_sequences=True)
    y2, b2 = lstm(x2, *w, return_sequences=True)
    for _ in range(2):
        for y, b, want in ((y1, b1, want1), (y2, b2, want2)):
            _close(np.array(y), want[0], "y")
            grads = b(dy)
            assert grads[3:] == (None, None)  # no bias
            for got, ref in zip(grads[:3], want[1:4]):
                _close(got, ref, "grad")


@pytest.mark.parametrize("sequences", [False, True])
def test_lstm_layer_of_two_layers_equals_generic(monkeypatch: pytest.MonkeyPatch, sequences: bool) -> None:
    import portnn as pn

    def run() -> list[Any]:
        layer = pn.layers.LSTM(5, 6, num_layers=2, return_sequences=sequences, seed=3)
        x = np.random.default_rng(2).normal(size=(7, 4, 5)).astype(np.float32)
        y, backward = layer.forward(x, training=True)
        dx = backward(np.ones_like(y))
        return [np.array(y), np.array(dx), *(np.array(p.grad) for p in layer.parameters())]

    fast = run()
    _generic(monkeypatch, "lstm")
    for got, want in zip(fast, run()):
        _close(got, want, "LSTM(num_layers=2)")


# -- conv2d, windows that tile without overlap (stride == kernel, no padding): conv2d_disjoint ----
#: (input shape, (out channels, kh, kw)): the speedrun's 2x2/2, rows and columns past the last
#: whole window (dropped by the conv, zero in dx), non-square kernels, batch 1, one output position
DISJOINT = [
    ((128, 32, 14, 14), (32, 2, 2)),
    ((3, 8, 9, 7), (5, 2, 3)),
    ((1, 9, 6, 6), (4, 3, 2)),
    ((2, 8, 5, 5), (3, 5, 5)),
    ((4, 16, 4, 6), (7, 2, 1)),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    ("bias", "input_grad", "param_grad"), [(True, True, True), (False, True, True), (True, False, True), (True, True, False)]
)
@pytest.mark.parametrize("geometry", DISJOINT, ids=[str(i) for i in range(len(DISJOINT))])
def test_conv_disjoint_equals_generic(geometry: Any, bias: bool, input_grad: bool, param_grad: bool, dtype: str) -> None:
    """The tiling kernel is the one conv2d takes, and it equals the generic path up to summation order;
    its results stay its own while a second call runs, and a second backward gives the same gradients."""
    from portnn.functional.conv import _conv2d, conv2d

    x_shape, (o, kh, kw) = geometry
    r = np.random.default_rng(6)
    x, w = r.normal(size=x_shape).astype(dtype), r.normal(size=(o, x_shape[1], kh, kw)).astype(dtype)
    b = r.normal(size=o).astype(dtype) if bias else None
    s, out = (kh, kw), (x_shape[2] // kh, x_shape[3] // kw)
    calls: list[Any] = []
    real = backends.numpy.conv2d_disjoint
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(backends.numpy, "conv2d_disjoint", lambda *a, **k: calls.append(1) or real(*a, **k))
        y, backward = conv2d(x, w, b, stride=s, input_grad=input_grad, param_grad=param_grad)
    assert calls == [1]  # the tiling kernel is the one under test
    dy = r.normal(size=y.shape).astype(dtype)
    grads = [None if g is None else g.copy() for g in backward(dy)]
    y_copy = y.copy()
    y2, backward2 = real(r.normal(size=x_shape).astype(dtype), w, b, input_grad=input_grad, param_grad=param_grad)
    backward2(dy)
    assert not np.shares_memory(y, y2)
    np.testing.assert_array_equal(y, y_copy)
    for got, want in zip(backward(dy), grads):
        assert (got is None) == (want is None)
        if got is not None:
            _same(got, want, "backward again")
    y_ref, backward_ref = _conv2d(np, x, w, b, s, (0, 0), (1, 1), out, input_grad, param_grad)
    tol = {"float32": 1e-4, "float64": 1e-10}[dtype]
    assert y.dtype == y_ref.dtype and y.shape == y_ref.shape and y.flags.c_contiguous
    np.testing.assert_allclose(y, y_ref, rtol=tol, atol=tol)
    for got, want, what in zip(grads, backward_ref(dy), ("dx", "dweight", "dbias")):
        if want is None:
            assert got is None, what
        else:
            assert got.dtype == want.dtype and got.shape == want.shape, what
            np.testing.assert_allclose(got, want, rtol=tol, atol=tol * 10, err_msg=what)


def test_conv_disjoint_declines_overlap_padding_1x1_and_few_channels() -> None:
    adapter, r = NumpyAdapter(), np.random.default_rng(7)
    x = r.normal(size=(32, 8, 8, 8)).astype(np.float32)

    def taken(w_shape: tuple[int, ...], stride: tuple[int, int], padding: tuple[int, int], xx: Any = x) -> bool:
        calls: list[Any] = []
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(backends.numpy, "conv2d_disjoint", lambda *a, **k: calls.append(1))
            w = np.ones(w_shape, np.float32)
            adapter.conv2d(xx, w, None, stride=stride, padding=padding, dilation=(1, 1), input_grad=True)
        return bool(calls)

    assert taken((4, 8, 2, 2), (2, 2), (0, 0))
    assert not taken((4, 8, 2, 2), (1, 1), (0, 0))  # windows overlap
    assert not taken((4, 8, 2, 2), (2, 2), (1, 1))  # padding
    assert not taken((4, 8, 1, 1), (1, 1), (0, 0))  # 1x1: measured slower here
    assert not taken((4, 3, 2, 2), (2, 2), (0, 0), x[:, :3])  # few channels: no gain


# -- conv2d of a first layer (input_grad=False): the im2col kernel, its bias gradient by GEMV ----
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("geometry", IM2COL, ids=[str(i) for i in range(len(IM2COL))])
def test_conv_first_layer_equals_generic(geometry: Any, dtype: str) -> None:
    """conv2d with input_grad=False takes NumpyAdapter.conv2d (the bias folded into the products):
    y, dweight and dbias equal the generic path's up to rounding; no dx."""
    from portnn.functional.conv import _conv2d, conv2d, conv2d_output_size

    x_shape, (o, kh, kw), s, p, d = geometry
    r = np.random.default_rng(8)
    x, w = r.normal(size=x_shape).astype(dtype), r.normal(size=(o, x_shape[1], kh, kw)).astype(dtype)
    b = r.normal(size=o).astype(dtype)
    assert NumpyAdapter().conv2d(x, w, b, stride=s, padding=p, dilation=d, input_grad=False) is not None
    y, backward = conv2d(x, w, b, stride=s, padding=p, dilation=d, input_grad=False)
    dy = r.normal(size=y.shape).astype(dtype)
    dx, dw, db = backward(dy)
    out = conv2d_output_size(x_shape[2:], (kh, kw), s, p, d)
    y_ref, backward_ref = _conv2d(np, x, w, b, s, p, d, out, False)
    _, dw_ref, db_ref = backward_ref(dy)
    assert dx is None
    tol = {"float32": 1e-4, "float64": 1e-10}[dtype]
    for got, want, what in ((y, y_ref, "y"), (dw, dw_ref, "dweight"), (db, db_ref, "dbias")):
        assert got.dtype == want.dtype and got.shape == want.shape and got.flags.c_contiguous, what
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol * 10, err_msg=what)
    y_copy, grads = y.copy(), (dw.copy(), db.copy())
    y2, backward2 = conv2d(x[::-1].copy(), w, b, stride=s, padding=p, dilation=d, input_grad=False)
    backward2(dy)
    assert not np.shares_memory(y, y2)  # a second call's results are its own
    np.testing.assert_array_equal(y, y_copy)
    for got, want in zip(backward(dy)[1:], grads):  # the first call's buffer is intact
        _same(got, want, "backward again")

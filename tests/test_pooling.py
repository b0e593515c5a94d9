"""Pooling layers and BatchNorm2d on every backend: PyTorch's tie rule, parity with torch, shapes, errors, training.

The op-level gradients (finite differences, torch autograd, float32/float64 parity) are
in ``tests/specs_pool.py``, run by the op-spec harness.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from array_api_compat import device

import portnn as pn
from portnn._array import dtype_name
from portnn.functional.pooling import avg_pool2d, global_avg_pool2d, max_pool2d
from portnn.layers import Flatten, Linear, ReLU, ShapeError
from portnn.layers.normalization import BatchNorm1d, BatchNorm2d
from portnn.layers.pooling import AvgPool2d, GlobalAvgPool2d, MaxPool2d

try:
    import torch
except ImportError:  # the oracle tests skip with a reason
    torch = None

needs_torch = pytest.mark.skipif(
    torch is None, reason="PyTorch not installed: the pooling oracle needs torch==2.13.0 (pip install torch==2.13.0)"
)

#: (kernel_size, stride, padding): non-overlapping, overlapping, padded, non-square
CONFIGS = [(2, None, 0), (2, 1, 0), (3, 2, 1), (3, 1, 1), ((2, 3), (1, 2), (1, 1))]


def _dtype(case: Any) -> str:
    """float64 for exact comparisons with PyTorch where the device has it, else float32."""
    return "float64" if case.supports("float64") else "float32"


def _torch_max_pool(x: np.ndarray, dy: np.ndarray | None, k: Any, s: Any, p: Any) -> tuple[np.ndarray, np.ndarray, Any]:
    """PyTorch's output, input gradient (for upstream ``dy``; ones when None) and argmax indices, in float64."""
    tx = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    ty, indices = torch.nn.functional.max_pool2d(tx, k, s, p, return_indices=True)
    ty.backward(torch.ones_like(ty) if dy is None else torch.tensor(dy))
    return ty.detach().numpy(), tx.grad.numpy(), indices.numpy()


# -- MaxPool2d: exactly one element per window, PyTorch's on ties ---------------------------
@needs_torch
@pytest.mark.parametrize(("k", "s", "p"), CONFIGS)
def test_max_pool_ties_go_where_torch_sends_them(case: Any, k: Any, s: Any, p: Any) -> None:
    dtype = _dtype(case)
    r = np.random.default_rng(0)
    for x in (np.ones((2, 3, 7, 6)), r.integers(0, 2, size=(2, 3, 7, 6)).astype(float)):  # all ties; many ties
        y, backward = max_pool2d(case.asarray(x, dtype), k, stride=s, padding=p)
        ty, tgrad, _ = _torch_max_pool(x, None, k, s, p)
        case.assert_close(y, ty, dtype=dtype)
        dx = backward(case.asarray(np.ones(ty.shape), dtype))
        # with dy = 1, dx counts the windows whose argmax each element is: one per window in all
        assert pn.to_numpy(dx).sum() == ty.size
        case.assert_close(dx, tgrad, dtype=dtype)
        dy = r.normal(size=ty.shape)
        _, tgrad, _ = _torch_max_pool(x, dy, k, s, p)
        case.assert_close(backward(case.asarray(dy, dtype)), tgrad, dtype=dtype)


@needs_torch
def test_max_pool_tie_rule_is_the_first_maximum_in_row_major_order() -> None:
    """A constant 4x4 with 2x2 windows: each window's top-left element; the same as torch's indices."""
    y, backward = max_pool2d(np.zeros((1, 1, 4, 4)), 2)
    dx = backward(np.ones((1, 1, 2, 2)))
    expected = np.zeros((4, 4))
    expected[::2, ::2] = 1
    np.testing.assert_array_equal(dx[0, 0], expected)
    _, _, indices = _torch_max_pool(np.zeros((1, 1, 4, 4)), None, 2, 2, 0)
    np.testing.assert_array_equal(np.flatnonzero(expected), np.sort(indices.ravel()))
    # a later, strictly greater value wins; an equal one does not
    x = np.array([[[[1.0, 3.0], [3.0, 2.0]]]])
    np.testing.assert_array_equal(max_pool2d(x, 2)[1](np.ones((1, 1, 1, 1)))[0, 0], [[0, 1], [0, 0]])


@needs_torch
def test_max_pool_windows_of_minus_infinity_pick_an_input_element_not_padding(case: Any) -> None:
    dtype = _dtype(case)
    x = np.full((1, 2, 4, 3), -np.inf)
    x[0, 1, 2, 1] = 5.0
    y, backward = max_pool2d(case.asarray(x, dtype), 3, stride=1, padding=1)
    ty, tgrad, _ = _torch_max_pool(x, None, 3, 1, 1)
    np.testing.assert_array_equal(pn.to_numpy(y), ty)
    dx = backward(case.asarray(np.ones(ty.shape), dtype))
    case.assert_close(dx, tgrad, dtype=dtype)
    assert pn.to_numpy(dx).sum() == ty.size  # no window lost its gradient to the padding


def test_max_pool_backward_keeps_only_small_argmax_offsets() -> None:
    x = np.random.default_rng(1).normal(size=(4, 3, 8, 8)).astype(np.float32)
    _, backward = max_pool2d(x, 2)
    kept = [c.cell_contents for c in backward.__closure__ if isinstance(c.cell_contents, np.ndarray)]
    assert [a.dtype for a in kept] == [np.int8], kept  # not x, not y: one byte per output element
    _, backward = max_pool2d(x, 2, input_grad=False)
    assert backward(np.ones((4, 3, 4, 4), np.float32)) is None


def test_pooling_stays_in_the_input_dtype_and_device(case: Any) -> None:
    dtypes = ["float32", "float64"] if case.supports("float64") else ["float32"]
    for dtype in dtypes:
        x = case.asarray(np.random.default_rng(2).normal(size=(2, 3, 5, 5)), dtype)
        for fn in (
            lambda a: max_pool2d(a, 3, stride=2, padding=1),
            lambda a: avg_pool2d(a, 3, stride=2, padding=1),
            global_avg_pool2d,
        ):
            y, backward = fn(x)
            dx = backward(y * 1.0)
            for a in (y, dx):
                assert case.backend.adapter.owns(a) and device(a) == case.device, (type(a), device(a))
                assert dtype_name(a.dtype) == dtype, a.dtype
            assert tuple(dx.shape) == (2, 3, 5, 5)


# -- layer shapes -----------------------------------------------------------------------------
@needs_torch
@pytest.mark.parametrize(("k", "s", "p"), CONFIGS)
@pytest.mark.parametrize("shape", [(3, 2, 7, 7), (1, 1, 6, 9)])
def test_layer_shapes_match_torch_and_output_shape(case: Any, shape: tuple[int, ...], k: Any, s: Any, p: Any) -> None:
    x = np.random.default_rng(3).normal(size=shape)
    for ours, theirs in (
        (MaxPool2d(k, s, p), torch.nn.MaxPool2d(k, s, p)),
        (AvgPool2d(k, s, p), torch.nn.AvgPool2d(k, s, p)),
        (GlobalAvgPool2d(), torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())),
    ):
        y = ours(case.asarray(x, "float32"))
        expected = theirs(torch.tensor(x)).numpy()
        case.assert_close(y, expected, dtype="float32", err_msg=repr(ours))
        assert ours.output_shape((None, *shape[1:])) == (None, *expected.shape[1:]), repr(ours)
        assert ours.output_shape(shape) == expected.shape
        assert ours.parameters() == [] and ours.buffers() == []


def test_output_shape_with_unknown_sizes_and_repr() -> None:
    assert MaxPool2d(2).output_shape((None, 8, None, 28)) == (None, 8, None, 14)
    assert GlobalAvgPool2d().output_shape((None, 8, None, None)) == (None, 8)
    assert repr(MaxPool2d(2)) == "MaxPool2d(kernel_size=2)"
    assert repr(MaxPool2d(3, stride=2, padding=1)) == "MaxPool2d(kernel_size=3, stride=2, padding=1)"
    assert repr(AvgPool2d((2, 3), (2, 3))) == "AvgPool2d(kernel_size=(2, 3))"
    assert repr(AvgPool2d([2, 2], stride=1, padding=(0, 1))) == "AvgPool2d(kernel_size=2, stride=1, padding=(0, 1))"
    assert repr(GlobalAvgPool2d()) == "GlobalAvgPool2d()"
    layer = MaxPool2d(3, 2)
    assert (layer.kernel_size, layer.stride, layer.padding) == (3, 2, 0)
    assert MaxPool2d(2).stride == 2  # as PyTorch: stride defaults to kernel_size


# -- errors -----------------------------------------------------------------------------------
def test_pooling_errors_name_the_layer_and_the_shapes() -> None:
    with pytest.raises(
        ShapeError, match=r"^MaxPool2d\(kernel_size=2\) got input of shape \(32, 784\): expected \(batch, C, H, W\)$"
    ):
        MaxPool2d(2).forward(np.ones((32, 784), np.float32))
    with pytest.raises(
        ShapeError, match=r"AvgPool2d\(kernel_size=2\) got input of shape \(3, 4, 4\): .*x.reshape\(1, \*x.shape\)"
    ):
        AvgPool2d(2).forward(np.ones((3, 4, 4), np.float32))
    with pytest.raises(
        ShapeError,
        match=r"MaxPool2d\(kernel_size=3\) got input of shape \(1, 1, 2, 5\): "
        r"the 3x3 window does not fit in the padded input \(2x5\); use a smaller kernel_size or a larger input",
    ):
        MaxPool2d(3).forward(np.ones((1, 1, 2, 5), np.float32))
    MaxPool2d(3, padding=1).forward(np.ones((1, 1, 2, 2), np.float32))  # padded to 4x4: fits, as in PyTorch
    with pytest.raises(ShapeError, match=r"GlobalAvgPool2d\(\) got input of shape \(8, 16\): expected \(batch, C, H, W\)"):
        GlobalAvgPool2d().forward(np.ones((8, 16), np.float32))
    with pytest.raises(
        ValueError, match=r"MaxPool2d: padding must be at most half of kernel_size \(PyTorch's rule\); got padding=2"
    ):
        MaxPool2d(3, padding=2)
    with pytest.raises(
        ValueError, match=r"AvgPool2d: padding must be at most half .* got padding=\(0, 2\) with kernel_size=\(4, 3\)"
    ):
        AvgPool2d((4, 3), padding=(0, 2))
    for bad in (0, -1, True, 2.0, (2, 2, 2), "2"):
        with pytest.raises(
            ValueError, match=r"MaxPool2d: kernel_size must be an int or a pair of positive ints; got kernel_size="
        ):
            MaxPool2d(bad)
    with pytest.raises(ValueError, match=r"AvgPool2d: stride must be an int or a pair of positive ints; got stride=\(1, 0\)"):
        AvgPool2d(2, stride=(1, 0))
    with pytest.raises(ValueError, match=r"MaxPool2d: padding must be an int or a pair of ints >= 0; got padding=-1"):
        MaxPool2d(2, padding=-1)
    # functional forms name themselves
    with pytest.raises(ValueError, match=r"max_pool2d: got input of shape \(4, 4\): expected \(batch, C, H, W\)"):
        max_pool2d(np.ones((4, 4)), 2)
    with pytest.raises(ValueError, match=r"avg_pool2d: got input of shape \(1, 1, 1, 4\): the 2x2 window does not fit"):
        avg_pool2d(np.ones((1, 1, 1, 4)), 2)
    with pytest.raises(ValueError, match=r"global_avg_pool2d: got input of shape \(2, 3, 4\)"):
        global_avg_pool2d(np.ones((2, 3, 4)))
    # in a model, the stack is checked as it is built
    with pytest.raises(ShapeError, match=r"layer 1 \(MaxPool2d\(kernel_size=2\)\) does not fit after layer 0 \(Linear\(3, 4\)\)"):
        pn.Sequential([Linear(3, 4), MaxPool2d(2)])
    with pytest.raises(
        ShapeError, match=r"MaxPool2d\(kernel_size=5\) does not take input of shape \(batch, 1, 4, 4\): the 5x5 window"
    ):
        pn.Sequential([MaxPool2d(5)], input_shape=(1, 4, 4))


# -- BatchNorm2d ------------------------------------------------------------------------------
def _bn_pair(case: Any, c: int, dtype: str, **options: Any) -> tuple[Any, Any]:
    """Our BatchNorm2d on the case's backend and torch's in float64, with the same random affine parameters."""
    ours = BatchNorm2d(c, dtype=dtype, **options)
    theirs = torch.nn.BatchNorm2d(c, dtype=torch.float64, **options)
    if ours.weight is not None:
        r = np.random.default_rng(10)
        w, b = 1 + 0.5 * r.normal(size=c), r.normal(size=c)
        ours.weight.data, ours.bias.data = case.asarray(w, dtype), case.asarray(b, dtype)
        with torch.no_grad():
            theirs.weight.copy_(torch.tensor(w)), theirs.bias.copy_(torch.tensor(b))
    return ours, theirs


@needs_torch
@pytest.mark.parametrize("momentum", [0.1, None])
def test_batchnorm2d_matches_torch(case: Any, momentum: float | None) -> None:
    dtype = _dtype(case)
    shape = (4, 3, 5, 6)
    ours, theirs = _bn_pair(case, 3, dtype, momentum=momentum)
    r = np.random.default_rng(11)
    for step in range(3):  # train mode: output, gradients, running statistics
        x, dy = 3 * r.normal(size=shape) + 2, r.normal(size=shape)
        ours.weight.grad = ours.bias.grad = None
        y, backward = ours.forward(case.asarray(x, dtype), training=True)
        dx = backward(case.asarray(dy, dtype))
        tx = torch.tensor(x, requires_grad=True)
        theirs.train()
        theirs.zero_grad()
        ty = theirs(tx)
        ty.backward(torch.tensor(dy))
        where = f"step {step}"
        case.assert_close(y, ty.detach().numpy(), dtype=dtype, err_msg=f"{where} forward")
        case.assert_close(dx, tx.grad.numpy(), dtype=dtype, err_msg=f"{where} dx")
        case.assert_close(ours.weight.grad, theirs.weight.grad.numpy(), dtype=dtype, err_msg=f"{where} dweight")
        case.assert_close(ours.bias.grad, theirs.bias.grad.numpy(), dtype=dtype, err_msg=f"{where} dbias")
        case.assert_close(ours.running_mean.data, theirs.running_mean.numpy(), dtype=dtype, err_msg=f"{where} running_mean")
        case.assert_close(ours.running_var.data, theirs.running_var.numpy(), dtype=dtype, err_msg=f"{where} running_var")
        assert int(pn.to_numpy(ours.num_batches_tracked.data)) == int(theirs.num_batches_tracked) == step + 1
    x, dy = r.normal(size=(1, 3, 2, 2)), r.normal(size=(1, 3, 2, 2))  # eval: running statistics, one image is fine
    before = pn.to_numpy(ours.running_var.data).copy()
    ours.weight.grad = ours.bias.grad = None
    y, backward = ours.forward(case.asarray(x, dtype), training=False)
    dx = backward(case.asarray(dy, dtype))
    theirs.eval()
    theirs.zero_grad()
    tx = torch.tensor(x, requires_grad=True)
    ty = theirs(tx)
    ty.backward(torch.tensor(dy))
    case.assert_close(y, ty.detach().numpy(), dtype=dtype, err_msg="eval forward")
    case.assert_close(dx, tx.grad.numpy(), dtype=dtype, err_msg="eval dx")
    case.assert_close(ours.weight.grad, theirs.weight.grad.numpy(), dtype=dtype, err_msg="eval dweight")
    case.assert_close(ours(case.asarray(x, dtype)), ty.detach().numpy(), dtype=dtype, err_msg="layer(x)")
    np.testing.assert_array_equal(pn.to_numpy(ours.running_var.data), before)  # evaluation never updates them


@needs_torch
def test_batchnorm2d_without_affine_or_running_stats_matches_torch(case: Any) -> None:
    dtype = _dtype(case)
    ours, theirs = _bn_pair(case, 2, dtype, affine=False, track_running_stats=False)
    assert ours.parameters() == [] and list(ours.named_buffers()) == []
    x = np.random.default_rng(12).normal(size=(2, 2, 3, 3))
    theirs.eval()  # without running statistics both use batch statistics in evaluation too
    for training in (True, False):
        y, backward = ours.forward(case.asarray(x, dtype), training=training, input_grad=False)
        case.assert_close(y, theirs(torch.tensor(x)).detach().numpy(), dtype=dtype)
        assert backward(y) is None


def test_batchnorm2d_errors_and_shapes() -> None:
    layer = BatchNorm2d(4)
    with pytest.raises(ShapeError, match=r"^BatchNorm2d\(4\) got input of shape \(8, 4\): expected \(batch, 4, H, W\)$"):
        layer.forward(np.ones((8, 4), np.float32), training=True)
    with pytest.raises(ShapeError, match=r"BatchNorm2d\(4\) got input of shape \(8, 3, 5, 5\): expected \(batch, 4, H, W\)"):
        layer.forward(np.ones((8, 3, 5, 5), np.float32))
    with pytest.raises(ShapeError, match=r"got input of shape \(4, 5, 5\).*a single image\? use x.reshape\(1, \*x.shape\)"):
        layer.forward(np.ones((4, 5, 5), np.float32))
    with pytest.raises(
        ValueError,
        match=r"BatchNorm2d\(4\): Expected more than 1 value per channel when training, got input of shape \(1, 4, 1, 1\)",
    ):
        layer.forward(np.ones((1, 4, 1, 1), np.float32), training=True)
    layer.forward(np.ones((1, 4, 1, 2), np.float32), training=True)  # two values per channel
    with pytest.raises(ValueError, match=r"BatchNorm2d: num_features must be a positive int; got 0"):
        BatchNorm2d(0)
    with pytest.raises(ValueError, match=r"BatchNorm2d\(3\): momentum must be in \[0, 1\] or None; got 2"):
        BatchNorm2d(3, momentum=2)
    with pytest.raises(ShapeError, match=r"layer 1 \(BatchNorm2d\(4\)\) does not fit after layer 0 \(Linear\(3, 4\)\)"):
        pn.Sequential([Linear(3, 4), BatchNorm2d(4)])
    with pytest.raises(ShapeError, match=r"BatchNorm1d\(4\) got input of shape \(2, 4, 3, 3\)"):
        BatchNorm1d(4).forward(np.ones((2, 4, 3, 3), np.float32))  # BatchNorm1d's ranks are unchanged
    assert layer.output_shape((None, 4, 7, 7)) == (None, 4, 7, 7)
    assert repr(BatchNorm2d(8, eps=1e-3, affine=False)) == "BatchNorm2d(8, eps=0.001, affine=False)"
    assert [n for n, _ in layer.named_buffers()] == ["running_mean", "running_var", "num_batches_tracked"]


# -- in a model -------------------------------------------------------------------------------
def test_pooling_model_trains(case: Any) -> None:
    """Sequential([BatchNorm2d, MaxPool2d, Flatten, Linear, ...]) and a GlobalAvgPool2d head learn on random images."""
    r = np.random.default_rng(13)
    n = 96
    labels = r.integers(0, 2, size=n)
    x = r.normal(size=(n, 2, 8, 8))
    x[np.arange(n), labels, :4, :4] += 2.0  # class k: a bright top-left quarter in channel k
    models = [
        pn.Sequential(
            [BatchNorm2d(2), MaxPool2d(2), AvgPool2d(3, 1, 1), Flatten(), Linear(2 * 4 * 4, 8), ReLU(), Linear(8, 2)],
            input_shape=(2, 8, 8),
            seed=0,
        ),
        pn.Sequential([MaxPool2d(3, 2, 1), GlobalAvgPool2d(), Linear(2, 2)], input_shape=(2, 8, 8), seed=0),
    ]
    assert models[0].output_shape == (None, 2) and models[1].layers[1].output_shape((None, 2, 4, 4)) == (None, 2)
    for model in models:
        history = model.fit(
            x, labels, loss=pn.losses.CrossEntropy(), optimizer=pn.optim.Adam(lr=0.05), epochs=8, batch_size=16, verbose=0
        )
        assert history["loss"][-1] < 0.6 * history["loss"][0], (model, history["loss"])
        assert history["accuracy"][-1] > 0.8, (model, history["accuracy"])
        pred = model.predict(x[:5])
        assert case.backend.adapter.owns(pred) and tuple(pred.shape) == (5, 2)

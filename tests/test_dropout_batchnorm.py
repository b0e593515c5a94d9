"""Dropout and BatchNorm1d on every backend: device RNG, train/eval behaviour, parity with PyTorch, errors."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from array_api_compat import device

import portnn as pn
from portnn import functional as F
from portnn._array import dtype_name
from portnn.layers import BatchNorm1d, Dropout, ShapeError

try:
    import torch
except ImportError:  # the oracle tests skip with a reason
    torch = None

needs_torch = pytest.mark.skipif(
    torch is None, reason="PyTorch not installed: the BatchNorm1d oracle needs torch==2.13.0 (pip install torch==2.13.0)"
)


def _dtype(case: Any) -> str:
    """float64 for exact comparisons with PyTorch where the device has it, else float32."""
    return "float64" if case.supports("float64") else "float32"


def _check_home(case: Any, a: Any, dtype: str) -> None:
    """``a`` is an array of the case's library, on its device, of ``dtype``."""
    assert case.backend.adapter.owns(a), type(a)
    assert device(a) == case.device, (device(a), case.device)
    assert dtype_name(a.dtype) == dtype, a.dtype


# -- the adapters' generators ------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_random_uniform_is_born_on_the_device_in_the_dtype(case: Any, dtype: str) -> None:
    if not case.supports(dtype):
        pytest.skip(f"{case.name} on {case.device} has no {dtype}")
    adapter = case.backend.adapter
    draws = [adapter.random_uniform(adapter.make_generator(5, case.device), (300, 40), getattr(case.xp, dtype), case.device)]
    draws.append(adapter.random_uniform(adapter.make_generator(5, case.device), (300, 40), getattr(case.xp, dtype), case.device))
    for u in draws:
        _check_home(case, u, dtype)
    host = pn.to_numpy(draws[0])
    assert host.min() >= 0.0 and host.max() < 1.0
    assert abs(host.mean() - 0.5) < 0.01
    np.testing.assert_array_equal(host, pn.to_numpy(draws[1]))  # one seed, one stream


# -- Dropout --------------------------------------------------------------------------------
def test_dropout_is_the_identity_in_evaluation(case: Any) -> None:
    x = case.asarray(np.random.default_rng(0).normal(size=(8, 5)), "float32")
    layer = Dropout(0.5, seed=0)
    y, backward = layer.forward(x, training=False)
    case.assert_close(y, pn.to_numpy(x), dtype="float32")
    case.assert_close(backward(x), pn.to_numpy(x), dtype="float32")
    case.assert_close(layer(x), pn.to_numpy(x), dtype="float32")
    assert layer.forward(x, training=False, input_grad=False)[1](x) is None


@pytest.mark.parametrize("p", [0.2, 0.5])
def test_dropout_zeroes_a_fraction_p_and_scales_survivors(case: Any, p: float) -> None:
    x = case.asarray(np.ones((400, 250)), "float32")
    y, _ = Dropout(p, seed=1).forward(x, training=True)
    _check_home(case, y, "float32")
    host = pn.to_numpy(y)
    dropped = host == 0
    assert abs(dropped.mean() - p) < 0.01, dropped.mean()
    np.testing.assert_allclose(host[~dropped], np.float32(1 / (1 - p)), rtol=1e-6)
    assert abs(host.mean() - 1.0) < 0.02  # inverted dropout keeps the mean


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_dropout_gradient_is_the_scaled_mask(case: Any, dtype: str) -> None:
    if not case.supports(dtype):
        pytest.skip(f"{case.name} on {case.device} has no {dtype}")
    r = np.random.default_rng(2)
    x_host = 1.0 + r.random((30, 20))  # nowhere zero, so the mask is y / x
    dy_host = r.normal(size=(30, 20))
    x = case.asarray(x_host, dtype)
    y, backward = Dropout(0.4, seed=3).forward(x, training=True)
    dx = backward(case.asarray(dy_host, dtype))
    _check_home(case, y, dtype)
    mask = (pn.to_numpy(y) != 0) * (1 / 0.6)
    case.assert_close(y, x_host * mask, dtype=dtype)  # survivors scaled by exactly 1 / (1 - p)
    case.assert_close(dx, dy_host * mask, dtype=dtype)
    assert 0.3 < (mask == 0).mean() < 0.5


def test_dropout_same_seed_same_mask(case: Any) -> None:
    x = case.asarray(np.ones((50, 40)), "float32")
    first = pn.to_numpy(Dropout(0.5, seed=7).forward(x, training=True)[0])
    layer = Dropout(0.5, seed=7)
    again = pn.to_numpy(layer.forward(x, training=True)[0])
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(again, pn.to_numpy(layer.forward(x, training=True)[0]))  # the stream moves on
    assert not np.array_equal(first, pn.to_numpy(Dropout(0.5, seed=8).forward(x, training=True)[0]))


def test_sequential_seed_reseeds_dropout(case: Any) -> None:
    x = case.asarray(np.ones((20, 6)), "float32")

    def masks(seed: int) -> np.ndarray:
        model = pn.Sequential([pn.layers.Linear(6, 30), Dropout(0.5)], seed=seed)
        return pn.to_numpy(model.forward(x, training=True)[0]) == 0

    np.testing.assert_array_equal(masks(3), masks(3))
    assert not np.array_equal(masks(3), masks(4))
    layer = Dropout(0.5, seed=1)
    layer.reset_parameters(pn.backends.host_rng(0))
    assert layer.seed == int(pn.backends.host_rng(0).integers(2**63))


def test_dropout_edge_probabilities(case: Any) -> None:
    x_host = np.random.default_rng(4).normal(size=(6, 7))
    x = case.asarray(x_host, "float32")
    y, backward = Dropout(0.0).forward(x, training=True)
    case.assert_close(y, x_host.astype("float32"), dtype="float32")
    case.assert_close(backward(x), x_host.astype("float32"), dtype="float32")
    with np.errstate(all="raise"):  # p = 1 divides by nothing
        y, backward = Dropout(1.0).forward(x, training=True)
        case.assert_close(y, np.zeros((6, 7)), dtype="float32")
        case.assert_close(backward(x), np.zeros((6, 7)), dtype="float32")


def test_dropout_generator_follows_the_input_device() -> None:
    """Made for the first input's backend/device, made again when it changes: the mask never mixes devices."""
    layer = Dropout(0.5, seed=0)
    host = np.ones((10, 10), dtype=np.float32)
    first = layer.forward(host, training=True)[0]
    strict = pn.backends.get_adapter("array_api_strict")
    x = strict.from_numpy(host, "device1")
    y = layer.forward(x, training=True)[0]  # device1 raises if the mask were born elsewhere
    assert device(y) == strict.device("device1")
    np.testing.assert_array_equal(pn.to_numpy(y), first)  # NumPy and strict share the host PCG64 stream
    if torch is not None:
        t = layer.forward(torch.ones(10, 10), training=True)[0]
        assert isinstance(t, torch.Tensor) and t.dtype == torch.float32


@pytest.mark.parametrize("p", [-0.1, 1.5, "0.5", True, None])
def test_dropout_rejects_bad_p(p: Any) -> None:
    with pytest.raises(ValueError, match=r"Dropout: p is the probability of zeroing an element, so 0 <= p <= 1; got p="):
        Dropout(p)
    with pytest.raises(ValueError, match=r"dropout: .* 0 <= p <= 1"):
        F.dropout(np.ones(3), np.ones(3), p=p)


def test_dropout_repr() -> None:
    assert repr(Dropout(0.25)) == "Dropout(p=0.25)"


# -- BatchNorm1d ----------------------------------------------------------------------------
def _pair(case: Any, shape: tuple[int, ...], dtype: str, **options: Any) -> tuple[Any, Any]:
    """Our BatchNorm1d on the case's backend and torch's in float64, with the same random affine parameters."""
    c = shape[1]
    ours = BatchNorm1d(c, dtype=dtype, **options)
    theirs = torch.nn.BatchNorm1d(c, dtype=torch.float64, **options)
    if ours.weight is not None:
        r = np.random.default_rng(10)
        w, b = 1 + 0.5 * r.normal(size=c), r.normal(size=c)
        ours.weight.data, ours.bias.data = case.asarray(w, dtype), case.asarray(b, dtype)
        with torch.no_grad():
            theirs.weight.copy_(torch.tensor(w)), theirs.bias.copy_(torch.tensor(b))
    return ours, theirs


@needs_torch
@pytest.mark.parametrize("momentum", [0.1, None])
@pytest.mark.parametrize("shape", [(8, 4), (5, 4, 3)])
def test_batchnorm_matches_torch(case: Any, shape: tuple[int, ...], momentum: float | None) -> None:
    dtype = _dtype(case)
    ours, theirs = _pair(case, shape, dtype, momentum=momentum)
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
    x, dy = r.normal(size=(1, *shape[1:])), r.normal(size=(1, *shape[1:]))  # eval: running stats, batch of 1 is fine
    before = pn.to_numpy(ours.running_mean.data).copy()
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
    np.testing.assert_array_equal(pn.to_numpy(ours.running_mean.data), before)  # evaluation never updates them


@needs_torch
def test_batchnorm_without_affine_or_running_stats_matches_torch(case: Any) -> None:
    dtype = _dtype(case)
    ours, theirs = _pair(case, (6, 3), dtype, affine=False, track_running_stats=False)
    assert ours.parameters() == [] and list(ours.named_buffers()) == []
    x = np.random.default_rng(12).normal(size=(6, 3))
    theirs.eval()  # without running statistics both use batch statistics in evaluation too
    for training in (True, False):
        case.assert_close(
            ours.forward(case.asarray(x, dtype), training=training)[0], theirs(torch.tensor(x)).detach().numpy(), dtype=dtype
        )


def test_batchnorm_buffers_are_not_parameters(case: Any) -> None:
    layer = BatchNorm1d(3)
    assert [n for n, _ in layer.named_parameters("1.")] == ["1.weight", "1.bias"]
    assert [n for n, _ in layer.named_buffers("1.")] == ["1.running_mean", "1.running_var", "1.num_batches_tracked"]
    case.assert_close(layer.weight.data, np.ones(3), dtype="float32")
    case.assert_close(layer.bias.data, np.zeros(3), dtype="float32")
    case.assert_close(layer.running_mean.data, np.zeros(3), dtype="float32")
    case.assert_close(layer.running_var.data, np.ones(3), dtype="float32")
    _check_home(case, layer.num_batches_tracked.data, "int64")
    model = pn.Sequential([pn.layers.Linear(2, 3), layer])
    assert len(model.parameters()) == 4  # Linear's two and BatchNorm's two: no buffers
    x = case.asarray(np.random.default_rng(13).normal(size=(16, 2)), "float32")
    opt = pn.optim.SGD(model.parameters(), lr=0.1)
    y, backward = model.forward(x, training=True)
    backward(y)
    opt.step()
    _check_home(case, layer.running_var.data, "float32")  # updated by the forward pass, never by the optimizer
    assert int(pn.to_numpy(layer.num_batches_tracked.data)) == 1
    layer.reset_parameters()
    case.assert_close(layer.running_mean.data, np.zeros(3), dtype="float32")
    assert int(pn.to_numpy(layer.num_batches_tracked.data)) == 0


def test_batchnorm_float64_and_to_moves_buffers() -> None:
    layer = BatchNorm1d(2, dtype="float64")
    x = np.random.default_rng(14).normal(size=(4, 2))
    layer.forward(x, training=True)
    expected = {n: pn.to_numpy(b.data).copy() for n, b in layer.named_buffers()}
    layer.to("array_api_strict", "device1")
    strict = pn.backends.get_adapter("array_api_strict")
    for name, b in layer.named_buffers():
        assert device(b.data) == strict.device("device1"), name
        np.testing.assert_array_equal(pn.to_numpy(b.data), expected[name])
    assert layer.running_mean.dtype == strict.xp.float64
    y = layer.forward(strict.from_numpy(x, "device1"), training=True)[0]  # device1 raises if anything stayed behind
    assert device(y) == strict.device("device1")
    assert int(pn.to_numpy(layer.num_batches_tracked.data)) == 2


def test_batchnorm_errors() -> None:
    layer = BatchNorm1d(4)
    with pytest.raises(
        ShapeError, match=r"BatchNorm1d\(4\) got input of shape \(8, 5\): expected \(batch, 4\) or \(batch, 4, length\)"
    ):
        layer.forward(np.ones((8, 5), dtype=np.float32), training=True)
    with pytest.raises(ShapeError, match=r"got input of shape \(4,\).*x.reshape\(1, -1\)"):
        layer.forward(np.ones(4, dtype=np.float32))
    with pytest.raises(
        ValueError, match=r"BatchNorm1d\(4\): Expected more than 1 value per channel when training, got input of shape \(1, 4\)"
    ):
        layer.forward(np.ones((1, 4), dtype=np.float32), training=True)
    with pytest.raises(ValueError, match=r"Expected more than 1 value per channel when training, got input of shape \(1, 4, 1\)"):
        layer.forward(np.ones((1, 4, 1), dtype=np.float32), training=True)
    layer.forward(np.ones((1, 4), dtype=np.float32))  # evaluation uses running statistics: one example is fine
    layer.forward(np.ones((1, 4, 2), dtype=np.float32), training=True)  # two values per channel
    with pytest.raises(TypeError, match=r"BatchNorm1d\(4\) got input of dtype float64 but its parameters are float32"):
        layer.forward(np.ones((8, 4)))
    with pytest.raises(ShapeError, match=r"layer 1 \(BatchNorm1d\(4\)\) does not fit after layer 0 \(Linear\(3, 5\)\)"):
        pn.Sequential([pn.layers.Linear(3, 5), BatchNorm1d(4)], input_shape=(3,))
    # without input_shape a Linear takes (batch, ..., 3), (batch, 4, 3) fits: 2-D data is refused when it comes
    with pytest.raises(ShapeError, match=r"x has shape \(2, 3\), which does not fit layer 1 \(BatchNorm1d\(4\)\)"):
        pn.Sequential([pn.layers.Linear(3, 5), BatchNorm1d(4)]).predict(np.ones((2, 3), dtype=np.float32))
    with pytest.raises(ValueError, match=r"BatchNorm1d: num_features must be a positive int; got 0"):
        BatchNorm1d(0)
    with pytest.raises(ValueError, match=r"BatchNorm1d\(3\): momentum must be in \[0, 1\] or None; got 2"):
        BatchNorm1d(3, momentum=2)
    with pytest.raises(ValueError, match=r"BatchNorm1d\(3\): eps must be a number >= 0"):
        BatchNorm1d(3, eps=-1.0)
    with pytest.raises(ValueError, match=r"training=False.*pass mean= and var="):
        F.batch_norm(np.ones((2, 3)), training=False)
    assert repr(BatchNorm1d(8, momentum=None, affine=False)) == "BatchNorm1d(8, momentum=None, affine=False)"


def test_batchnorm_in_sequential_learns_and_predicts_with_running_stats(case: Any) -> None:
    r = np.random.default_rng(15)
    n = 256
    labels = r.integers(0, 2, size=n)
    x = r.normal(size=(n, 2)) + 4.0 * labels[:, None]
    x = x * np.array([100.0, 0.01]) + np.array([500.0, -3.0])  # badly scaled features: BatchNorm copes
    model = pn.Sequential(
        [pn.layers.Linear(2, 16), BatchNorm1d(16), pn.layers.ReLU(), Dropout(0.1), pn.layers.Linear(16, 2)], seed=0
    )
    history = model.fit(
        x, labels, loss=pn.losses.CrossEntropy(), optimizer=pn.optim.SGD(lr=0.1, momentum=0.9), epochs=4, batch_size=32, verbose=0
    )
    assert history["loss"][-1] < 0.5 * history["loss"][0], history["loss"]
    assert history["accuracy"][-1] > 0.9, history["accuracy"]
    bn = model.layers[1]
    assert int(pn.to_numpy(bn.num_batches_tracked.data)) == 4 * (n // 32)
    # predict is evaluation mode: each example alone gives its row of the batch (running stats, no dropout)
    full = pn.to_numpy(model.predict(x))
    one = pn.to_numpy(model.predict(x[5:6]))
    np.testing.assert_allclose(one, full[5:6], rtol=1e-4, atol=1e-4)
    # ... and it is the running-statistics formula
    X = case.asarray(x, "float32")
    h = pn.to_numpy(model.layers[0](X))
    rm, rv = pn.to_numpy(bn.running_mean.data), pn.to_numpy(bn.running_var.data)
    w, b = pn.to_numpy(bn.weight.data), pn.to_numpy(bn.bias.data)
    expected = (h - rm) / np.sqrt(rv + 1e-5) * w + b
    np.testing.assert_allclose(pn.to_numpy(bn(model.layers[0](X))), expected, rtol=1e-4, atol=1e-4)
    assert model.evaluate(x, labels)["accuracy"] > 0.9


def test_batchnorm_without_running_statistics_trains_in_fit() -> None:
    model = pn.Sequential(
        [pn.layers.Linear(3, 4), pn.layers.BatchNorm1d(4, track_running_stats=False), pn.layers.Linear(4, 2)], seed=0
    )
    x = np.random.default_rng(0).normal(size=(20, 3)).astype(np.float32)
    history = model.fit(
        x, np.arange(20) % 2, loss=pn.losses.CrossEntropy(), optimizer=pn.optim.SGD(lr=0.1), batch_size=10, verbose=0
    )
    assert len(history.epoch) == 1 and np.isfinite(history.history["loss"][0])

"""Sequential: building, training, state, and whole-model parity across backends."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import portnn as pn
from portnn.layers import Flatten, Linear, ReLU, ShapeError, Tanh

try:
    import torch
except ImportError:
    torch = None


def mlp(seed: int = 0, dtype: str = "float32") -> pn.Sequential:
    return pn.Sequential(
        [Linear(6, 16, dtype=dtype), Tanh(), Linear(16, 8, dtype=dtype), ReLU(), Linear(8, 3, dtype=dtype)], seed=seed
    )


def toy(n: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    r = np.random.default_rng(seed)
    x = r.normal(size=(n, 6))
    y = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0.5)
    return x, y


def test_same_seed_same_weights_on_every_backend(case: Any) -> None:
    with pn.use_backend("numpy"):
        ref = {k: np.asarray(v) for k, v in mlp(seed=3).state_dict().items()}
    model = mlp(seed=3)
    assert model.backend.name == case.name
    for name, value in model.state_dict().items():
        case.assert_close(value, ref[name], dtype="float32", err_msg=name)
        assert np.array_equal(pn.to_numpy(value), ref[name]), f"{name}: initial weights differ bit for bit"


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_sgd_steps_match_numpy_float64_reference(case: Any, dtype: str) -> None:
    """A few SGD steps (momentum, Nesterov, weight decay) give the same losses and weights on every backend."""
    if not case.supports(dtype):
        pytest.skip(f"{case.name} has no {dtype}")
    x, y = toy()

    def run() -> tuple[list[float], dict[str, np.ndarray]]:
        model = mlp(seed=1, dtype=dtype)
        opt = pn.optim.SGD(lr=0.2, momentum=0.9, nesterov=True, weight_decay=1e-3)
        history = model.fit(x, y, loss=pn.losses.CrossEntropy(), optimizer=opt, epochs=3, batch_size=16, seed=5, verbose=0)
        return history["loss"], model.state_dict()

    with pn.use_backend("numpy"):
        ref_losses, ref_state = mlp(seed=1, dtype="float64"), None
        model = ref_losses
        opt = pn.optim.SGD(lr=0.2, momentum=0.9, nesterov=True, weight_decay=1e-3)
        ref_losses = model.fit(x, y, loss=pn.losses.CrossEntropy(), optimizer=opt, epochs=3, batch_size=16, seed=5, verbose=0)[
            "loss"
        ]
        ref_state = {k: np.asarray(v) for k, v in model.state_dict().items()}
    losses, state = run()
    tol = {"float32": 1e-4, "float64": 1e-10}[dtype]
    np.testing.assert_allclose(losses, ref_losses, rtol=tol)
    assert losses[-1] < losses[0]
    for name, value in state.items():
        assert pn._array.dtype_name(value.dtype) == dtype
        np.testing.assert_allclose(pn.to_numpy(value), ref_state[name], rtol=50 * tol, atol=50 * tol, err_msg=name)


@pytest.mark.skipif(torch is None, reason="PyTorch not installed: the oracle needs torch==2.13.0")
@pytest.mark.parametrize(
    "momentum,nesterov,weight_decay", [(0.0, False, 0.0), (0.9, False, 0.0), (0.9, True, 0.01), (0.5, False, 0.1)]
)
def test_training_matches_torch(momentum: float, nesterov: bool, weight_decay: float) -> None:
    """The same net, data and batches trained by torch.nn + torch.optim.SGD in float64 follow the same trajectory."""
    x, y = toy(48)
    with pn.use_backend("numpy"):
        model = pn.Sequential([Linear(6, 10, dtype="float64"), ReLU(), Linear(10, 3, dtype="float64")], seed=2)
    tmodel = torch.nn.Sequential(torch.nn.Linear(6, 10), torch.nn.ReLU(), torch.nn.Linear(10, 3)).double()
    with torch.no_grad():
        for value, tparam in zip(model.state_dict().values(), tmodel.parameters()):
            tparam.copy_(torch.from_numpy(np.array(value)))
    loss_fn = pn.losses.CrossEntropy()
    opt = pn.optim.SGD(model.parameters(), lr=0.1, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
    topt = torch.optim.SGD(tmodel.parameters(), lr=0.1, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
    for step in range(20):
        sl = slice((step * 8) % 48, (step * 8) % 48 + 8)
        value, _ = model.train_step(x[sl], y[sl], loss_fn, opt)
        topt.zero_grad()
        tloss = torch.nn.functional.cross_entropy(tmodel(torch.from_numpy(x[sl])), torch.from_numpy(y[sl]))
        tloss.backward()
        topt.step()
        np.testing.assert_allclose(float(value), tloss.item(), rtol=1e-10, err_msg=f"step {step}")
    for value, tparam in zip(model.state_dict().values(), tmodel.parameters()):
        np.testing.assert_allclose(value, tparam.detach().numpy(), rtol=1e-9, atol=1e-12)


def test_fit_evaluate_predict(case: Any) -> None:
    x, y = toy(256)
    model = mlp()
    history = model.fit(
        x,
        y,
        loss=pn.losses.CrossEntropy(),
        optimizer=pn.optim.SGD(lr=0.1, momentum=0.9),
        epochs=8,
        batch_size=32,
        validation_data=(x[:64], y[:64]),
        verbose=0,
    )
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy", "lr", "epoch_time"}
    assert len(history["loss"]) == 8 and history.epoch == list(range(8))
    assert history["loss"][-1] < 0.5 * history["loss"][0]
    result = model.evaluate(x, y)
    assert set(result.keys()) == {"loss", "accuracy"} and result["accuracy"] > 0.9
    out = model.predict(x, batch_size=100)  # 3 batches, the last partial
    assert case.backend.adapter.owns(out) and tuple(out.shape) == (256, 3)
    acc = float(np.mean(np.argmax(pn.to_numpy(out), axis=1) == y))
    assert acc == pytest.approx(result["accuracy"])
    # evaluate's loss is the mean over examples, whatever the batch size
    assert model.evaluate(x, y, batch_size=7)["loss"] == pytest.approx(result["loss"], rel=1e-5)


def test_compile_then_fit_and_regression_with_mse(case: Any) -> None:
    r = np.random.default_rng(0)
    x = r.uniform(-1, 1, size=(200, 1))
    y = np.sin(3 * x)
    model = pn.Sequential([Linear(1, 32), Tanh(), Linear(32, 1)], seed=0).compile(
        loss=pn.losses.MSE(), optimizer=pn.optim.SGD(lr=0.1, momentum=0.9)
    )
    history = model.fit(x, y, epochs=60, batch_size=20, verbose=0)
    assert "accuracy" not in history.history
    assert history["loss"][-1] < 0.02 < history["loss"][0]
    assert set(model.evaluate(x, y).keys()) == {"loss"}


def test_shuffling_is_seeded() -> None:
    x, y = toy()
    runs = []
    for _ in range(2):
        model = mlp(seed=4)
        model.fit(x, y, loss=pn.losses.CrossEntropy(), optimizer=pn.optim.SGD(lr=0.1), epochs=2, batch_size=8, verbose=0)
        runs.append(model.state_dict())
    for name in runs[0]:
        assert np.array_equal(runs[0][name], runs[1][name])
    other = mlp(seed=4)
    other.fit(x, y, loss=pn.losses.CrossEntropy(), optimizer=pn.optim.SGD(lr=0.1), epochs=2, batch_size=8, verbose=0, seed=99)
    assert not np.array_equal(other.state_dict()["0.weight"], runs[0]["0.weight"])


def test_gradient_is_a_batch_mean() -> None:
    """Duplicating every example leaves the gradient unchanged: lr never needs dividing by the batch size."""
    x, y = toy(8)
    grads = []
    for reps in (1, 4):
        model = mlp(seed=0, dtype="float64")
        opt = pn.optim.SGD(model.parameters(), lr=0.1)
        out, backward = model.forward(np.repeat(x, reps, axis=0), training=True)
        _, loss_back = pn.losses.CrossEntropy().forward(out, np.repeat(y, reps))
        backward(loss_back())
        grads.append([p.grad.copy() for p in model.parameters()])
        opt.zero_grad()
        assert all(p.grad is None for p in model.parameters())
    for a, b in zip(*grads):
        np.testing.assert_allclose(a, b, rtol=1e-12)


def test_overfits_ten_examples_per_digit(mnist_dir: Any) -> None:
    """Seed 000's sanity check: a net that can learn memorises 100 real MNIST images."""
    (x, y), _ = pn.datasets.load_mnist(mnist_dir, download=False)
    idx = np.concatenate([np.flatnonzero(y == d)[:10] for d in range(10)])
    xs, ys = x[idx].reshape(100, 784) / 255, y[idx]
    model = pn.Sequential([Linear(784, 64), ReLU(), Linear(64, 10)], seed=0)
    model.fit(
        xs, ys, loss=pn.losses.CrossEntropy(), optimizer=pn.optim.SGD(lr=0.1, momentum=0.9), epochs=60, batch_size=20, verbose=0
    )
    assert model.evaluate(xs, ys)["accuracy"] == 1.0


def test_build_checks_each_layer_against_the_previous() -> None:
    model = pn.Sequential().build([Linear(784, 256), ReLU()])
    with pytest.raises(
        ShapeError, match=r"layer 2 \(Linear\(100, 10\)\) does not fit after layer 1 \(ReLU\(\)\), which outputs \(batch, 256\)"
    ):
        model.build([Linear(100, 10)])
    assert len(model.layers) == 2  # the bad layer was not appended
    model.add(Linear(256, 10))
    assert model.output_shape == None  # noqa: E711  a Linear takes (batch, ..., 784): the rank is not fixed
    assert model.output_shape((None, 784)) == (None, 10) and model.output_shape((None, 5, 784)) == (None, 5, 10)
    assert pn.Sequential([Linear(784, 256), ReLU(), Linear(256, 10)], input_shape=(784,)).output_shape == (None, 10)
    with pytest.raises(ShapeError, match="layer 1"):
        pn.Sequential([Linear(4, 5), Linear(6, 2)])
    with pytest.raises(TypeError, match="portnn layers"):
        pn.Sequential([Linear(4, 5), "relu"])
    images = pn.Sequential([Flatten(), Linear(784, 10)], input_shape=(28, 28))
    assert images.output_shape == (None, 10)
    with pytest.raises(ShapeError, match=r"Linear\(100, 10\) expects input of shape \(batch, 100\); got \(batch, 784\)"):
        pn.Sequential([Flatten(), Linear(100, 10)], input_shape=(28, 28))


def test_summary_lists_layers_shapes_and_counts() -> None:
    model = pn.Sequential([Linear(784, 1024), ReLU(), Linear(1024, 10)], seed=0)
    text = model.summary(print_fn=None)
    # without input_shape a Linear takes (batch, ..., 784): the free axes print as "..."
    assert "Linear(784, 1024)" in text and "(batch, ..., 1024)" in text and "803,840" in text and "10,250" in text
    built = pn.Sequential([Linear(784, 1024), ReLU(), Linear(1024, 10)], input_shape=(784,)).summary(print_fn=None)
    assert "(batch, 1024)" in built and "(batch, 10)" in built and "..." not in built
    assert "Total params: 814,090 (trainable: 814,090)" in text
    model.layers[0].trainable = False
    assert "(trainable: 10,250)" in model.summary(print_fn=None)
    lines: list[str] = []
    assert model.summary(print_fn=lines.append) is None and lines and "Sequential on numpy:cpu" in lines[0]


def test_state_dict_roundtrip_across_backends(case: Any) -> None:
    with pn.use_backend("numpy"):
        source = mlp(seed=7)
    target = mlp(seed=8)
    target.load_state_dict(source.state_dict())
    for name, value in target.state_dict().items():
        assert case.backend.adapter.owns(value)
        assert np.array_equal(pn.to_numpy(value), source.state_dict()[name])
    # a copy, not shared memory: training the target leaves the source alone
    before = source.state_dict()["0.weight"].copy()
    x, y = toy()
    target.fit(x, y, loss=pn.losses.CrossEntropy(), optimizer=pn.optim.SGD(lr=0.1), verbose=0)
    assert np.array_equal(source.state_dict()["0.weight"], before)


def test_load_state_dict_is_all_or_nothing() -> None:
    model = mlp(seed=0)
    before = {k: v.copy() for k, v in model.state_dict().items()}
    bad = dict(mlp(seed=1).state_dict())
    bad["4.weight"] = np.zeros((5, 8), dtype=np.float32)
    with pytest.raises(ValueError, match=r"4.weight has shape \(5, 8\) in the state but \(3, 8\) in the model"):
        model.load_state_dict(bad)
    with pytest.raises(KeyError, match="missing.*4.bias"):
        model.load_state_dict({k: v for k, v in mlp(seed=1).state_dict().items() if k != "4.bias"})
    for name, value in model.state_dict().items():
        assert np.array_equal(value, before[name]), f"{name} changed by a failed load"


def test_model_to_moves_every_parameter(case: Any) -> None:
    with pn.use_backend("numpy"):
        model = mlp(seed=0)
    expected = model.predict(toy()[0])
    model.to(case.name, case.device)
    assert model.backend.name == case.name
    assert all(case.backend.adapter.owns(p.data) for p in model.parameters())
    case.assert_close(model.predict(toy()[0]), expected, dtype="float32")


@pytest.mark.skipif(torch is None, reason="PyTorch not installed: the oracle needs torch==2.13.0")
def test_input_gradient_on_request() -> None:
    """backward returns d(loss)/d(input) with input_grad=True (the default, as every layer), and skips it with False."""
    x, y = toy(5)
    with pn.use_backend("numpy"):
        model = pn.Sequential([Linear(6, 7, dtype="float64"), Tanh(), Linear(7, 3, dtype="float64")], seed=0)
    out, backward = model.forward(x, training=True, input_grad=True)
    _, loss_back = pn.losses.CrossEntropy().forward(out, y)
    dx = backward(loss_back())
    tx = torch.tensor(x, requires_grad=True)
    w0, b0, w1, b1 = (torch.from_numpy(np.array(v)) for v in model.state_dict().values())
    torch.nn.functional.cross_entropy(torch.tanh(tx @ w0.T + b0) @ w1.T + b1, torch.from_numpy(y)).backward()
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-10, atol=1e-14)
    out, backward = model.forward(x, training=True, input_grad=False)
    assert backward(loss_back()) is None


def test_drop_last_skips_a_short_last_batch_that_batchnorm_cannot_train_on() -> None:
    x = np.random.default_rng(0).normal(size=(65, 4)).astype(np.float32)  # 64 + a last batch of 1
    y = np.arange(65) % 2
    model = pn.Sequential([pn.layers.Linear(4, 8), pn.layers.BatchNorm1d(8), pn.layers.ReLU(), pn.layers.Linear(8, 2)], seed=0)
    kwargs = dict(loss=pn.losses.CrossEntropy(), optimizer=pn.optim.SGD(lr=0.1), batch_size=32, verbose=0, shuffle=False)
    with pytest.raises(ValueError, match=r"last batch of 1, on which BatchNorm1d\(8\) cannot train.*drop_last=True"):
        model.fit(x, y, **kwargs)
    assert int(pn.to_numpy(model.layers[1].num_batches_tracked.data)) == 0  # refused before the first step
    history = model.fit(x, y, drop_last=True, epochs=2, **kwargs)
    assert int(pn.to_numpy(model.layers[1].num_batches_tracked.data)) == 4  # 2 steps an epoch
    assert len(history.epoch) == 2
    with pytest.raises(ValueError, match="leaves no batch"):
        model.fit(x[:10], y[:10], drop_last=True, **kwargs)

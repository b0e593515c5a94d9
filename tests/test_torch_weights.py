"""PyTorch weights both ways: a portnn Sequential and a torch.nn.Sequential of the same layers share state_dict names.

``model.load_state_dict(net.state_dict())`` and ``net.load_state_dict({k: torch.from_numpy(pn.to_numpy(v)) ...})``
for every layer with a ``torch.nn`` twin (Linear, Conv2d, BatchNorm1d/2d with their running
statistics and ``num_batches_tracked``; activations, pooling, Flatten and Dropout hold no
state and only keep the positions aligned), proved by equal outputs in evaluation mode. The
README's example runs here as written.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import portnn as pn
from portnn import cli
from portnn.layers import (
    AvgPool2d,
    BatchNorm1d,
    BatchNorm2d,
    Conv2d,
    Dropout,
    Flatten,
    LeakyReLU,
    Linear,
    MaxPool2d,
    ReLU,
    Sigmoid,
    Softmax,
    Tanh,
)

torch = pytest.importorskip("torch", reason="the PyTorch side of the weights: pip install torch==2.13.0")
nn = torch.nn
README = Path(__file__).resolve().parents[1] / "README.md"
TOL = {"float32": (2e-4, 2e-5), "float64": (1e-10, 1e-12)}


def mlp_pair(dtype: str) -> tuple[pn.Sequential, Any, tuple[int, ...]]:
    model = pn.Sequential(
        [
            Linear(6, 8, dtype=dtype), BatchNorm1d(8, dtype=dtype), ReLU(), Dropout(0.3), Linear(8, 5, bias=False, dtype=dtype),
            BatchNorm1d(5, momentum=None, affine=False, dtype=dtype), Tanh(), Linear(5, 4, dtype=dtype), LeakyReLU(0.2),
            Linear(4, 3, dtype=dtype), Softmax(),
        ],
        seed=0,
    )  # fmt: skip
    net = nn.Sequential(
        nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.3), nn.Linear(8, 5, bias=False),
        nn.BatchNorm1d(5, momentum=None, affine=False), nn.Tanh(), nn.Linear(5, 4), nn.LeakyReLU(0.2), nn.Linear(4, 3),
        nn.Softmax(dim=-1),
    )  # fmt: skip
    return model, net, (6,)


def cnn_pair(dtype: str) -> tuple[pn.Sequential, Any, tuple[int, ...]]:
    model = pn.Sequential(
        [
            Conv2d(2, 4, 3, padding=1, dtype=dtype), BatchNorm2d(4, dtype=dtype), Sigmoid(), MaxPool2d(2),
            Conv2d(4, 3, (2, 3), stride=(1, 2), padding=(1, 0), dilation=(2, 1), bias=False, dtype=dtype),
            BatchNorm2d(3, dtype=dtype), ReLU(), AvgPool2d((2, 1), 1), Flatten(), Linear(9, 3, dtype=dtype),
        ],
        seed=0,
        input_shape=(2, 8, 8),
    )  # fmt: skip
    net = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.Sigmoid(), nn.MaxPool2d(2),
        nn.Conv2d(4, 3, (2, 3), stride=(1, 2), padding=(1, 0), dilation=(2, 1), bias=False),
        nn.BatchNorm2d(3), nn.ReLU(), nn.AvgPool2d((2, 1), 1), nn.Flatten(), nn.Linear(9, 3),
    )  # fmt: skip
    return model, net, (2, 8, 8)


PAIRS = {"mlp": mlp_pair, "cnn": cnn_pair}


def torch_trained(net: Any, shape: tuple[int, ...], dtype: str) -> Any:
    """A few training steps in torch: weights, running statistics and num_batches_tracked all move."""
    net = net.to(getattr(torch, dtype))
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    generator = torch.Generator().manual_seed(0)
    for _ in range(3):
        x = torch.randn(16, *shape, generator=generator, dtype=getattr(torch, dtype))
        optimizer.zero_grad()
        net(x).square().mean().backward()
        optimizer.step()
    return net.eval()


def portnn_trained(model: pn.Sequential, shape: tuple[int, ...]) -> pn.Sequential:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, *shape)), rng.integers(0, 3, 32)
    loss = pn.losses.CrossEntropy() if model.layers[-1].__class__ is not Softmax else pn.losses.MSE()
    target = y if isinstance(loss, pn.losses.CrossEntropy) else np.eye(3)[y]
    model.fit(x, target, loss=loss, optimizer=pn.optim.SGD(lr=0.1), epochs=1, batch_size=8, verbose=0)
    return model


def same_outputs(model: pn.Sequential, net: Any, shape: tuple[int, ...], dtype: str) -> None:
    x = np.random.default_rng(1).normal(size=(7, *shape)).astype(dtype)
    with torch.no_grad():
        expected = net.eval()(torch.from_numpy(x)).numpy()
    got = model.predict(x, to_numpy=True)
    assert got.dtype == expected.dtype == np.dtype(dtype)
    rtol, atol = TOL[dtype]
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=atol)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("pair", sorted(PAIRS))
def test_the_names_are_pytorchs(pair: str, dtype: str) -> None:
    with pn.use_backend("numpy"):
        model, net, _ = PAIRS[pair](dtype)
    assert sorted(model.state_dict()) == sorted(net.state_dict())
    for name, value in net.state_dict().items():
        assert tuple(pn.to_numpy(model.state_dict()[name]).shape) == tuple(value.shape), name


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("pair", sorted(PAIRS))
def test_torch_weights_into_portnn(pair: str, dtype: str) -> None:
    with pn.use_backend("numpy"):
        model, net, shape = PAIRS[pair](dtype)
    net = torch_trained(net, shape, dtype)
    model.load_state_dict(net.state_dict())
    for name, value in net.state_dict().items():  # every value, running statistics and counts included
        np.testing.assert_array_equal(pn.to_numpy(model.state_dict()[name]), value.numpy(), err_msg=name)
    assert int(pn.to_numpy(model.state_dict()["1.num_batches_tracked"])) == 3
    same_outputs(model, net, shape, dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("pair", sorted(PAIRS))
def test_portnn_weights_into_torch(pair: str, dtype: str) -> None:
    with pn.use_backend("numpy"):
        model, net, shape = PAIRS[pair](dtype)
        model = portnn_trained(model, shape)
    net = net.to(getattr(torch, dtype))
    net.load_state_dict({k: torch.from_numpy(pn.to_numpy(v)) for k, v in model.state_dict().items()})
    assert int(net.state_dict()["1.num_batches_tracked"]) == 4  # 32 examples in batches of 8
    same_outputs(model, net, shape, dtype)


def test_both_ways_on_every_backend(case: Any) -> None:
    model, net, shape = cnn_pair("float32")
    net = torch_trained(net, shape, "float32")
    model.load_state_dict(net.state_dict())  # onto the backend's device, whatever the source library
    for p in model.parameters():
        assert case.backend.adapter.owns(p.data) and p.device == case.device
    same_outputs(model, net, shape, "float32")
    back = cnn_pair("float32")[1]  # a fresh torch twin
    state = (
        model.state_dict()
        if case.name == "torch"
        else {k: torch.from_numpy(pn.to_numpy(v)) for k, v in model.state_dict().items()}
    )
    back.load_state_dict(state)  # torch tensors need no conversion at all
    same_outputs(model, back, shape, "float32")


def test_the_cli_cnn_preset_has_a_torch_twin() -> None:
    """``portnn train --preset cnn``'s model; RandomTranslation (the identity at evaluation) stands where nn.Identity does."""
    p = cli.PRESETS["cnn"]
    with pn.use_backend("numpy"):
        model = cli.build_cnn((1, 28, 28), p["channels"], p["hidden"], 10, dropout=p["dropout"], augment=p["augment"], seed=0)
        model = portnn_trained(model, (1, 28, 28))
    (c1, c2), (h,) = p["channels"], p["hidden"]
    net = nn.Sequential(
        nn.Identity(), nn.Conv2d(1, c1, 3, padding=1), nn.BatchNorm2d(c1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(c1, c2, 3, padding=1), nn.BatchNorm2d(c2), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(c2 * 7 * 7, h), nn.ReLU(), nn.Dropout(p["dropout"]), nn.Linear(h, 10),
    )  # fmt: skip
    net.load_state_dict({k: torch.from_numpy(pn.to_numpy(v)) for k, v in model.state_dict().items()})
    same_outputs(model, net, (1, 28, 28), "float32")
    fresh = cli.build_cnn((1, 28, 28), p["channels"], p["hidden"], 10, dropout=p["dropout"], augment=p["augment"], seed=1)
    fresh.load_state_dict(net.state_dict())
    same_outputs(fresh, net, (1, 28, 28), "float32")


def test_another_architecture_is_refused_naming_the_names() -> None:
    with pn.use_backend("numpy"):
        model = pn.Sequential([Linear(4, 3), ReLU(), Linear(3, 2)], seed=0)
    with pytest.raises(KeyError, match=r"missing \['2.weight', '2.bias'\], unexpected \['1.weight', '1.bias'\]"):
        model.load_state_dict(nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2)).state_dict())
    with pytest.raises(ValueError, match=r"0.weight has shape \(3, 5\) in the state but \(3, 4\) in the model"):
        model.load_state_dict(nn.Sequential(nn.Linear(5, 3), nn.ReLU(), nn.Linear(3, 2)).state_dict())


def test_the_readme_example_runs() -> None:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Proof tools, ONNX, PyTorch weights") :]
    (example,) = re.findall(r"```python\n(.*?)```", section[: section.index("\n## ", 5)], flags=re.S)[:1]
    assert len(example.strip().splitlines()) == 5
    namespace: dict[str, Any] = {}
    with pn.use_backend("numpy"):
        exec(compile(example, "README.md", "exec"), namespace)
    model, net = namespace["model"], namespace["net"]
    x = np.random.default_rng(0).normal(size=(3, 784)).astype(np.float32)
    with torch.no_grad():
        np.testing.assert_allclose(model.predict(x, to_numpy=True), net(torch.from_numpy(x)).numpy(), rtol=2e-4, atol=2e-5)

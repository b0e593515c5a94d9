"""portnn.testing, the public proof tools: they pass portnn's own layers and fail planted bugs, with a clear report.

Each planted bug is one a hand-written backward pass really has: a wrong derivative, a
parameter gradient never accumulated, a mean where the forward sums, an array born on the
default device, a float32 input that comes out float64, an output shape the layer
misstates. ``docs/testing-tutorial.md`` runs here, block by block.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from array_api_compat import array_namespace
from array_api_compat import device as device_of

import portnn as pn
from portnn import functional as F
from portnn.layers import (
    AvgPool2d,
    BatchNorm1d,
    BatchNorm2d,
    Conv2d,
    Dropout,
    Flatten,
    GlobalAvgPool2d,
    LeakyReLU,
    Linear,
    MaxPool2d,
    RandomTranslation,
    ReLU,
    Sigmoid,
    Softmax,
    Tanh,
)
from portnn.testing import BACKENDS, assert_close, backends_under_test, check_layer, check_model, check_op

try:
    import torch
except ImportError:  # the oracles are left out, with a reason
    torch = None

TUTORIAL = Path(__file__).resolve().parents[1] / "docs" / "testing-tutorial.md"
WORST = r"the worst, at index \([0-9, ]*\): expected -?[0-9.e+-]+ \(.+\), got -?[0-9.e+-]+ \(.+\), \|diff\| .+ > tolerance"


def distinct(rng: Any, shape: tuple[int, ...]) -> Any:
    """Values 0.05 apart in random order: a max-pool input without near-ties."""
    n = int(np.prod(shape))
    return (rng.permutation(n).reshape(shape) - n / 2) * 0.05


def _twin(name: str, *args: Any, **kw: Any) -> Any:
    return None if torch is None else getattr(torch.nn, name)(*args, **kw)


# -- portnn's own layers pass ---------------------------------------------------------------------------
# (layer, input shape, torch.nn twin or oracle function, options)
LAYERS = {
    "linear": (lambda: Linear(4, 3, seed=0), (5, 4), lambda: _twin("Linear", 4, 3), {}),
    "linear-no-bias": (lambda: Linear(4, 3, bias=False, seed=0), (5, 4), lambda: _twin("Linear", 4, 3, bias=False), {}),
    "conv2d": (lambda: Conv2d(2, 3, 3, padding=1, seed=0), (2, 2, 5, 5), lambda: _twin("Conv2d", 2, 3, 3, padding=1), {}),
    "conv2d-mixed": (
        lambda: Conv2d(2, 2, (2, 3), stride=(2, 1), padding=(1, 2), dilation=(1, 2), seed=0),
        (1, 2, 5, 7),
        lambda: _twin("Conv2d", 2, 2, (2, 3), stride=(2, 1), padding=(1, 2), dilation=(1, 2)),
        {},
    ),
    "batchnorm1d": (lambda: BatchNorm1d(4), (6, 4), lambda: _twin("BatchNorm1d", 4), {}),
    "batchnorm1d-length": (lambda: BatchNorm1d(3), (3, 3, 5), lambda: _twin("BatchNorm1d", 3), {}),
    "batchnorm1d-cumulative": (lambda: BatchNorm1d(3, momentum=None), (4, 3), lambda: _twin("BatchNorm1d", 3, momentum=None), {}),
    "batchnorm2d": (lambda: BatchNorm2d(3), (2, 3, 4, 2), lambda: _twin("BatchNorm2d", 3), {}),
    "relu": (lambda: ReLU(), (4, 5), lambda: _twin("ReLU"), {}),
    "leaky-relu": (lambda: LeakyReLU(0.2), (4, 5), lambda: _twin("LeakyReLU", 0.2), {}),
    "sigmoid": (lambda: Sigmoid(), (4, 5), lambda: _twin("Sigmoid"), {}),
    "tanh": (lambda: Tanh(), (4, 5), lambda: _twin("Tanh"), {}),
    "softmax": (lambda: Softmax(), (4, 5), lambda: _twin("Softmax", dim=-1), {}),
    "max-pool": (lambda: MaxPool2d(2), (2, 3, 6, 6), lambda: _twin("MaxPool2d", 2), {"make_input": distinct}),
    "max-pool-overlap": (lambda: MaxPool2d(3, 2, 1), (2, 2, 7, 7), lambda: _twin("MaxPool2d", 3, 2, 1), {"make_input": distinct}),
    "avg-pool": (lambda: AvgPool2d(3, 2, 1), (2, 2, 7, 6), lambda: _twin("AvgPool2d", 3, 2, 1), {}),
    "global-avg-pool": (lambda: GlobalAvgPool2d(), (2, 3, 4, 5), lambda: lambda x: x.mean(dim=(2, 3)), {}),
    "flatten": (lambda: Flatten(), (3, 2, 4), lambda: _twin("Flatten"), {}),
    "dropout": (lambda: Dropout(0.3, seed=0), (5, 6), lambda: _twin("Dropout", 0.3), {}),
    "random-translation": (lambda: RandomTranslation(1, seed=0), (2, 1, 5, 5), lambda: None, {}),
}


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_every_layer_of_portnn_passes_with_its_torch_twin(name: str) -> None:
    build, shape, oracle, options = LAYERS[name]
    with pn.use_backend("numpy"):
        layer = build()
        report = check_layer(layer, shape, oracle=oracle(), **options)
    checked = [what for what, _ in report.checked]
    assert any("central differences, training=True: the input" in w for w in checked)
    for backend, _ in backends_under_test()[0]:
        assert any(w.startswith(f"{backend} float32, training=False") for w in checked), (backend, checked)
    if oracle() is not None and pn.backends.get_adapter("torch").import_error() is None:  # the oracle needs torch
        assert "PyTorch oracle, training=False: output and gradients" in checked
    assert all(ratio <= 1 for _, ratio in report.checked)


def test_check_layer_checks_a_layer_on_any_backend_and_leaves_it_alone(case: Any) -> None:
    layer = BatchNorm1d(4)
    layer.running_mean.data = case.asarray([0.5, -1.0, 0.0, 2.0], "float32")
    before = {n: pn.to_numpy(b.data).copy() for n, b in (*layer.named_parameters(), *layer.named_buffers())}
    check_layer(layer, (6, 4), backends=[(case.name, case.device)])
    for n, b in (*layer.named_parameters(), *layer.named_buffers()):
        assert case.backend.adapter.owns(b.data) and device_of(b.data) == case.device, n
        np.testing.assert_array_equal(pn.to_numpy(b.data), before[n], err_msg=n)
    assert all(p.grad is None for p in layer.parameters())


# -- planted bugs fail, and the report says where ---------------------------------------------------------
class WrongDerivativeTanh(pn.layers.Layer):
    """tanh with ``dy * (1 - y)`` for ``dy * (1 - y**2)``: a wrong derivative."""

    def call(self, x: Any, *, training: bool = False, input_grad: bool = True) -> Any:
        y = array_namespace(x).tanh(x)
        return y, lambda dy: dy * (1.0 - y)


class NoBiasGradient(Linear):
    """A Linear whose backward forgets the bias."""

    def call(self, x: Any, *, training: bool = False, input_grad: bool = True) -> Any:
        y, back = F.linear(x, self.weight.data, self.bias.data)

        def backward(dy: Any) -> Any:
            dx, dw, _ = back(dy)
            self.weight.accumulate(dw)
            return dx

        return y, backward


class MeanBiasGradient(Linear):
    """A Linear whose bias gradient averages over the batch where the forward adds the bias to every example."""

    def call(self, x: Any, *, training: bool = False, input_grad: bool = True) -> Any:
        y, back = F.linear(x, self.weight.data, self.bias.data)

        def backward(dy: Any) -> Any:
            dx, dw, _ = back(dy)
            self.weight.accumulate(dw)
            self.bias.accumulate(array_namespace(dy).mean(dy, axis=0))
            return dx

        return y, backward


class DefaultDeviceShift(pn.layers.Layer):
    """Adds an array born without ``device=``: right on NumPy, wrong on any other device."""

    def call(self, x: Any, *, training: bool = False, input_grad: bool = True) -> Any:
        xp = array_namespace(x)
        return x + xp.ones(tuple(x.shape[1:]), dtype=x.dtype), lambda dy: dy


class Float64Creep(pn.layers.Layer):
    """Scales by a float64 constant: a float32 input comes out float64."""

    def call(self, x: Any, *, training: bool = False, input_grad: bool = True) -> Any:
        xp = array_namespace(x)
        two = xp.asarray(2.0, dtype=xp.float64, device=device_of(x))
        return x * two, lambda dy: xp.astype(dy * two, x.dtype)


class MisstatedShape(pn.layers.Layer):
    """Sums the last axis but says its output keeps the input's shape."""

    def call(self, x: Any, *, training: bool = False, input_grad: bool = True) -> Any:
        xp = array_namespace(x)
        return xp.sum(x, axis=-1), lambda dy: xp.broadcast_to(dy[..., None], x.shape)


def test_a_wrong_derivative_fails_naming_the_input_and_the_worst_element() -> None:
    with pytest.raises(AssertionError) as info:
        check_layer(WrongDerivativeTanh(), (4, 5), backends=())
    message = str(info.value)
    assert message.startswith(
        "check_layer(WrongDerivativeTanh()), training=False: gradient of the input against float64 central differences: "
    )
    assert re.search(WORST, message), message
    assert "(central differences)" in message and "(backward)" in message


def test_a_missing_bias_gradient_fails_naming_the_parameter() -> None:
    with pytest.raises(
        AssertionError, match=r"check_layer\(NoBiasGradient\(4, 3\)\): backward gave parameter 'bias' no gradient"
    ):
        check_layer(NoBiasGradient(4, 3, seed=0), (5, 4), backends=())


def test_a_mean_for_a_sum_fails_in_the_layer_and_in_the_model() -> None:
    with pytest.raises(AssertionError) as info:
        check_layer(MeanBiasGradient(4, 3, seed=0), (5, 4), backends=())
    message = str(info.value)
    assert "gradient of parameter 'bias' against float64 central differences: 3 of 3 elements differ" in message
    expected, got = (float(v) for v in re.search(r"expected (\S+) .* got (\S+) ", message).groups())
    assert got == pytest.approx(expected / 5)  # the mean over the batch of 5: a fifth of the sum
    with pn.use_backend("numpy"):
        model = pn.Sequential([MeanBiasGradient(4, 3, seed=0), Tanh(), Linear(3, 2)], seed=0)
    x, y = np.random.default_rng(0).normal(size=(6, 4)), np.arange(6) % 2
    with pytest.raises(AssertionError, match=r"the loss: gradient of parameter '0.bias' against float64 central differences"):
        check_model(model, x, y, backends=())


def test_a_loss_whose_backward_averages_a_summed_forward_fails_check_model() -> None:
    class SumForwardMeanBackward(pn.losses.MSE):
        def forward(self, y_pred: Any, target: Any, *, validate: bool = True) -> Any:
            value, _ = F.mse(y_pred, target, reduction="sum")
            _, backward = F.mse(y_pred, target, reduction="mean")
            return value, backward

    with pn.use_backend("numpy"):
        model = pn.Sequential([Linear(3, 4), Tanh(), Linear(4, 2)], seed=0)
    x, y = np.random.default_rng(0).normal(size=(8, 3)), np.random.default_rng(1).normal(size=(8, 2))
    assert check_model(model, x, y, loss=pn.losses.MSE(), backends=())  # the correct loss passes
    with pytest.raises(
        AssertionError, match=r"check_model\(Sequential of 3 layers\): the loss: gradient of parameter '0.weight'"
    ):
        check_model(model, x, y, loss=SumForwardMeanBackward(), backends=())


def test_an_array_born_on_the_default_device_fails_on_array_api_strict_device1() -> None:
    pytest.importorskip("array_api_strict", reason="the fake device1 is array-api-strict's")
    check_layer(DefaultDeviceShift(), (3, 4), backends=["numpy"])  # NumPy has one device: nothing to see there
    with pytest.raises(
        AssertionError,
        match=r"check_layer\(DefaultDeviceShift\(\)\), training=False on array_api_strict \(device1\) in float32: raised",
    ):
        check_layer(DefaultDeviceShift(), (3, 4), backends=["array_api_strict"])


def test_float64_creep_fails_naming_the_dtype() -> None:
    with pytest.raises(AssertionError, match=r"on numpy \(cpu\) in float32: output: dtype float64, expected float32"):
        check_layer(Float64Creep(), (3, 4), backends=["numpy"])


def test_a_misstated_output_shape_fails() -> None:
    with pytest.raises(AssertionError, match=r"output of shape \(3,\) for input \(3, 4\), but output_shape says \(None, 4\)"):
        check_layer(MisstatedShape(), (3, 4), backends=())


@pytest.mark.skipif(torch is None, reason="the oracle is PyTorch: pip install torch==2.13.0")
def test_an_oracle_that_disagrees_fails() -> None:
    with pytest.raises(AssertionError, match=r"training=False: output against the PyTorch oracle: .* the worst, at index"):
        check_layer(Tanh(), (4, 5), oracle=torch.nn.Sigmoid(), backends=())
    with pytest.raises(AssertionError, match=r"the oracle module does not take the layer's state by name"):
        check_layer(Linear(4, 3, seed=0), (5, 4), oracle=torch.nn.Sequential(torch.nn.Linear(4, 3)), backends=())


# -- check_model ------------------------------------------------------------------------------------------
def test_check_model_passes_a_model_with_batchnorm_and_dropout_on_every_backend() -> None:
    with pn.use_backend("numpy"):
        model = pn.Sequential(
            [Conv2d(1, 3, 3, padding=1), BatchNorm2d(3), ReLU(), MaxPool2d(2), Flatten(), Dropout(0.25), Linear(18, 3)], seed=0
        )
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(8, 1, 4, 6)), np.arange(8) % 3
    before = {k: pn.to_numpy(v).copy() for k, v in model.state_dict().items()}
    optimizer = pn.optim.SGD(lr=0.05, momentum=0.9)
    report = check_model(model, x, y, optimizer=optimizer, steps=4, batch_size=4)
    checked = [what for what, _ in report.checked]
    assert "central differences: the loss: parameter '0.weight' (27 of 27 elements)" in checked
    for backend, _ in backends_under_test()[0]:
        assert f"{backend} float32: 4 training steps against NumPy float64" in checked
    for k, v in model.state_dict().items():  # the model and the optimizer are as they were
        np.testing.assert_array_equal(pn.to_numpy(v), before[k], err_msg=k)
    assert optimizer.params == [] and optimizer.state == {}


def test_check_model_finds_a_backend_that_trains_differently(monkeypatch: pytest.MonkeyPatch) -> None:
    """An optimizer step that goes wrong on one backend only: the step's weights differ from the NumPy run."""
    with pn.use_backend("numpy"):
        model = pn.Sequential([Linear(3, 4), Tanh(), Linear(4, 2)], seed=0)
    step = pn.optim.SGD._update

    def skewed(self: Any, p: Any, g: Any, state: Any) -> None:
        step(self, p, g if pn.backends.adapter_for(g).name == "numpy" else g * 1.01, state)

    monkeypatch.setattr(pn.optim.SGD, "_update", skewed)
    x, y = np.random.default_rng(0).normal(size=(8, 3)), np.arange(8) % 2
    with pytest.raises(
        AssertionError,
        match=r"training on array_api_strict \(device1\) in float32: the loss of step 1: 1 of 1 elements differ; " + WORST,
    ):
        check_model(model, x, y, backends=["numpy", "array_api_strict"])


# -- the pieces -----------------------------------------------------------------------------------------------
def test_assert_close_checks_library_device_and_dtype_before_values() -> None:
    xs = pytest.importorskip("array_api_strict", reason="the fake devices are array-api-strict's")
    a = xs.asarray([1.0, 2.0], dtype=xs.float32, device=xs.Device("device2"))
    with pytest.raises(AssertionError, match=r"expected a numpy array, got a array_api_strict"):
        assert_close(a, [1.0, 2.0], backend="numpy")
    with pytest.raises(AssertionError, match=r"on device .*device2.*, expected .*device1"):
        assert_close(a, [1.0, 2.0], backend="array_api_strict")
    with pytest.raises(AssertionError, match=r"dtype float32, expected float64"):
        assert_close(a, [1.0, 2.0], dtype="float64")
    with pytest.raises(AssertionError, match=r"shape \(2,\) \(float32\), expected \(3,\)"):
        assert_close(a, [1.0, 2.0, 3.0])
    with pytest.raises(AssertionError, match=r"1 of 2 elements differ; the worst, at index \(0,\): expected 1 .* got nan"):
        assert_close(np.array([np.nan, 2.0]), [1.0, 2.0])
    assert assert_close(a, [1.0, 2.0], backend=("array_api_strict", "device2")) == 0.0


def test_the_backends_a_check_runs_on_follow_portnn_backends(monkeypatch: pytest.MonkeyPatch) -> None:
    assert BACKENDS["array_api_strict"] == "device1"
    monkeypatch.setenv("PORTNN_BACKENDS", "numpy,cupy")
    runs, skipped = backends_under_test()
    assert runs[0] == ("numpy", None)
    if not pn.backends.get_adapter("cupy").is_available():
        assert runs == [("numpy", None)] and skipped[0].startswith("cupy: ")
    report = check_layer(Tanh(), (2, 3))
    assert {what.split()[0] for what, _ in report.checked if "against NumPy" in what} == {name for name, _ in runs}


def test_check_op_samples_large_arrays_and_checks_one_direction_through_all() -> None:
    def op(x: Any, w: Any) -> Any:
        y, back = F.linear(x, w)
        return y, lambda dy: back(dy)[:2]

    rng = np.random.default_rng(0)
    report = check_op(op, [rng.normal(size=(3, 40)), rng.normal(size=(5, 40))], samples=16, backends=())
    assert [what for what, _ in report.checked] == [
        "central differences: input 0 (16 of 120 elements)",
        "central differences: input 1 (16 of 200 elements)",
    ]

    def wrong_off_the_sample(x: Any, w: Any) -> Any:  # every element of dw doubled: a sample of 1 still finds it
        y, back = F.linear(x, w)
        return y, lambda dy: (back(dy)[0], 2 * back(dy)[1])

    with pytest.raises(AssertionError, match=r"gradient of input 1 against float64 central differences \(a sample of 1"):
        check_op(wrong_off_the_sample, [rng.normal(size=(3, 40)), rng.normal(size=(5, 40))], samples=1, backends=())


# -- the tutorial ------------------------------------------------------------------------------------------------
@pytest.mark.skipif(torch is None, reason="the tutorial's oracle is PyTorch: pip install torch==2.13.0")
def test_the_tutorial_runs_as_written(capsys: pytest.CaptureFixture[str]) -> None:
    blocks = re.findall(r"```python\n(.*?)```", TUTORIAL.read_text(encoding="utf-8"), flags=re.S)
    assert len(blocks) == 5
    namespace: dict[str, Any] = {"__name__": "tutorial"}
    with pn.use_backend("numpy"):
        for i, block in enumerate(blocks):
            exec(compile(block, f"{TUTORIAL.name} block {i + 1}", "exec"), namespace)
    out = capsys.readouterr().out
    assert "check_layer(Swish(beta=1.5)): 20 comparisons passed" in out
    assert "central differences, training=False: parameter 'beta' (1 of 1 elements)" in out
    assert namespace["accuracy"] > 0.95
    betas = [float(pn.to_numpy(layer.beta.data)[0]) for layer in namespace["model"].layers[1::2]]
    assert all(abs(b - 1.0) > 0.05 for b in betas)  # beta learned something


@pytest.mark.skipif(torch is None, reason="the oracle is PyTorch: pip install torch==2.13.0")
def test_the_oracle_module_is_left_as_it_was() -> None:
    oracle = torch.nn.Linear(4, 3)
    before = {k: v.clone() for k, v in oracle.state_dict().items()}
    check_layer(Linear(4, 3, seed=0), (5, 4), oracle=oracle, backends=())
    for k, v in oracle.state_dict().items():
        assert v.dtype == torch.float32 and torch.equal(v, before[k]), k
    assert all(p.grad is None for p in oracle.parameters())

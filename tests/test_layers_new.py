"""LayerNorm, GELU, SiLU and Conv1d as layer objects: PyTorch's modules as oracles, every backend, errors, saving.

The ops themselves go through the harness of ``tests/test_ops.py`` (``tests/specs_norm_act.py``).
Here: :func:`portnn.testing.check_layer` against ``torch.nn.LayerNorm``/``GELU``/``SiLU``/``Conv1d``
with the layer's own parameters loaded by their names, on each backend; the error function's
portable path against ``torch.special.erf`` on each backend (it is what array-api-strict runs);
stability at extreme inputs; the messages; configs, files and PyTorch state dicts.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import portnn as pn
from portnn import functional as F
from portnn.functional.activations import erf_portable
from portnn.layers import GELU, Conv1d, Flatten, LayerNorm, Linear, ShapeError, SiLU
from portnn.testing import check_layer

torch = pytest.importorskip("torch", reason="PyTorch's modules are the oracles here: pip install torch==2.13.0")
nn = torch.nn


def _randomized(layer: LayerNorm, seed: int = 3) -> LayerNorm:
    """A LayerNorm with random affine parameters (fresh ones are 1 and 0: they test little)."""
    rng = np.random.default_rng(seed)
    for p in layer.parameters():
        dt = pn._array.dtype_name(p.dtype)
        p.data = pn.backends.adapter_for(p.data).from_numpy(
            (rng.normal(size=p.shape) + (p.name == "weight")).astype(dt), p.device
        )
    return layer


# (the layer, built on the test's backend; its torch twin; the input shape)
LAYERS = {
    "layer_norm": (lambda: _randomized(LayerNorm(5)), lambda: nn.LayerNorm(5), (4, 5)),
    "layer_norm_sequence": (lambda: _randomized(LayerNorm(6)), lambda: nn.LayerNorm(6), (2, 3, 6)),
    "layer_norm_two_axes": (
        lambda: _randomized(LayerNorm((3, 4), eps=1e-3)),
        lambda: nn.LayerNorm((3, 4), eps=1e-3),
        (2, 5, 3, 4),
    ),
    "layer_norm_no_bias": (lambda: _randomized(LayerNorm(5, bias=False)), lambda: nn.LayerNorm(5, bias=False), (3, 5)),
    "layer_norm_no_affine": (
        lambda: LayerNorm(5, elementwise_affine=False),
        lambda: nn.LayerNorm(5, elementwise_affine=False),
        (3, 5),
    ),  # fmt: skip
    "gelu": (lambda: GELU(), lambda: nn.GELU(), (4, 7)),
    "gelu_tanh": (lambda: GELU(approximate="tanh"), lambda: nn.GELU(approximate="tanh"), (2, 3, 5)),
    "silu": (lambda: SiLU(), lambda: nn.SiLU(), (4, 7)),
    "conv1d": (lambda: Conv1d(3, 4, 3, padding=1, seed=0), lambda: nn.Conv1d(3, 4, 3, padding=1), (2, 3, 8)),
    "conv1d_stride_dilation": (
        lambda: Conv1d(2, 3, 3, stride=2, padding=2, dilation=2, bias=False, init="torch", seed=1),
        lambda: nn.Conv1d(2, 3, 3, stride=2, padding=2, dilation=2, bias=False),
        (3, 2, 11),
    ),  # fmt: skip
}


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layer_matches_its_torch_module_on_every_backend(case: Any, name: str) -> None:
    """Central differences, the torch module with the layer's parameters, and parity in float32 and float64 here."""
    build, twin, shape = LAYERS[name]
    layer = build()
    dtypes = [d for d in ("float32", "float64") if case.supports(d)]
    report = check_layer(layer, shape, oracle=twin(), training=(False,), backends=[(case.name, case.device)], dtypes=dtypes)
    checked = " ".join(what for what, _ in report.checked)
    assert "PyTorch" in checked and all(f"{case.name} {d}" in checked for d in dtypes), checked


@pytest.mark.parametrize("name", ["layer_norm", "layer_norm_two_axes", "layer_norm_no_bias", "conv1d", "conv1d_stride_dilation"])
def test_the_parameter_names_and_shapes_are_pytorchs(name: str) -> None:
    build, twin, _ = LAYERS[name]
    with pn.use_backend("numpy"):
        layer = build()
    ours = {n: p.shape for n, p in layer.named_parameters()}
    assert ours == {n: tuple(v.shape) for n, v in twin().state_dict().items()}


def test_a_torch_model_s_state_dict_loads_and_predicts_the_same() -> None:
    """A sequence model built of the four layers, both ways: torch's weights into portnn, equal outputs."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv1d(2, 4, 3, padding=1), nn.GELU(), nn.LayerNorm(9), nn.Conv1d(4, 3, 2, stride=2, dilation=2), nn.SiLU(),
        nn.GELU(approximate="tanh"), nn.Flatten(), nn.Linear(12, 2),
    ).double()  # fmt: skip
    with torch.no_grad():
        net[2].weight.normal_(1.0, 0.3)
        net[2].bias.normal_()
    with pn.use_backend("numpy"):
        model = pn.Sequential(
            [Conv1d(2, 4, 3, padding=1, dtype="float64"), GELU(), LayerNorm(9, dtype="float64"),
             Conv1d(4, 3, 2, stride=2, dilation=2, dtype="float64"), SiLU(), GELU("tanh"), Flatten(),
             Linear(12, 2, dtype="float64")],
            input_shape=(2, 9),
        )  # fmt: skip
        model.load_state_dict({k: v.numpy() for k, v in net.state_dict().items()})
        x = np.random.default_rng(0).normal(size=(5, 2, 9))
        with torch.no_grad():
            expected = net(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(model.predict(x, to_numpy=True), expected, rtol=1e-10, atol=1e-12)


# -- the error function -----------------------------------------------------------------------------
ERF_POINTS = np.concatenate(
    [np.linspace(-7.0, 7.0, 2801), [0.0, -0.0, 1e-300, -1e-20, 0.46875, -0.46875, 0.46876, 4.0, -4.0, 4.0001, 5.9, 26.0, -30.0,
                                    1e4, -1e300]]
)  # fmt: skip


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_portable_erf_equals_torch_special_erf_on_every_backend(case: Any, dtype: str) -> None:
    """Cody's approximation, run as array-api-strict runs it, within float64 rounding of PyTorch's kernel."""
    if not case.supports(dtype):
        pytest.skip(f"{case.name} on {case.device} has no {dtype}")
    x = ERF_POINTS.astype(dtype) if dtype == "float64" else np.clip(ERF_POINTS, -3e38, 3e38).astype(dtype)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        got = erf_portable(case.asarray(x))
    expected = torch.special.erf(torch.from_numpy(x.astype(np.float64))).numpy()
    if dtype == "float64":  # a few units in the last place
        assert pn.backends.adapter_for(got).owns(got) and pn._array.dtype_name(got.dtype) == "float64"
        np.testing.assert_allclose(pn.to_numpy(got), expected, rtol=5e-16, atol=3e-16)
    else:
        case.assert_close(got, expected, dtype=dtype)
    for value, want in ((math.inf, 1.0), (-math.inf, -1.0)):
        assert float(pn.to_numpy(erf_portable(case.asarray([value], dtype)))[0]) == want
    assert math.isnan(float(pn.to_numpy(erf_portable(case.asarray([math.nan], dtype)))[0]))


def test_each_library_s_own_erf_equals_the_portable_path(case: Any) -> None:
    """The adapter hook (torch.special, cupyx.scipy.special, SciPy) where there is one, checked like a fast kernel."""
    x = case.asarray(ERF_POINTS, "float64")
    own = case.backend.adapter.erf(x)
    if own is None:
        assert case.name == "array_api_strict" or case.name == "numpy", case.name  # no erf in the standard, nor in NumPy
        case.assert_close(F.erf(x), pn.to_numpy(erf_portable(x)), dtype="float64")
        return
    case.assert_close(own, pn.to_numpy(erf_portable(x)), dtype="float64")
    case.assert_close(F.erf(x), pn.to_numpy(own), dtype="float64")


def test_gelu_is_exact_without_a_library_erf(monkeypatch: pytest.MonkeyPatch) -> None:
    """NumPy without SciPy: the exact GELU still equals torch's, to float64 rounding, through the portable erf."""
    monkeypatch.setattr(pn.backends.get_adapter("numpy"), "erf", lambda x: None)
    x = np.linspace(-8.0, 8.0, 161)
    y, backward = F.gelu(x)
    t = torch.from_numpy(x).requires_grad_(True)
    ty = nn.functional.gelu(t)
    ty.backward(torch.ones_like(ty))
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(backward(np.ones_like(x)), t.grad.numpy(), rtol=1e-13, atol=1e-15)


# -- stability ----------------------------------------------------------------------------------------
def _silu_slope(x: float) -> float:
    s = 1 / (1 + math.exp(-x))
    return s * (1 + x * (1 - s))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_extreme_inputs_stay_finite(case: Any, dtype: str) -> None:
    if not case.supports(dtype):
        pytest.skip(f"{case.name} on {case.device} has no {dtype}")
    big = 3e38 if dtype == "float32" else 1e300
    x = case.asarray([[-big, -1e4, -30.0, 0.0, 30.0, 1e4, big]], dtype)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        for layer, expected in (
            (SiLU(), [[-0.0, -0.0, -30.0 * 1 / (1 + math.exp(30.0)), 0.0, 30.0 / (1 + math.exp(-30.0)), 1e4, big]]),
            (GELU(), [[-0.0, -0.0, 0.0, 0.0, 30.0, 1e4, big]]),
        ):
            y, backward = layer.forward(x)
            case.assert_close(y, expected, dtype=dtype, err_msg=repr(layer))
            slope = [[0, 0, _silu_slope(-30.0) if isinstance(layer, SiLU) else 0, 0.5, 1, 1, 1]]
            case.assert_close(backward(case.asarray(np.ones((1, 7)), dtype)), slope, dtype=dtype, err_msg=repr(layer))
        # the tanh form saturates too, though its cube overflows to inf for |x| > ~1e13 in float64
        y, _ = GELU("tanh").forward(case.asarray([[-1e4, -30.0, 30.0, 1e4]], dtype))
        case.assert_close(y, [[-0.0, -0.0, 30.0, 1e4]], dtype=dtype)
        # a constant slice has no variance: eps keeps the normalised values at 0
        y, _ = LayerNorm(4, dtype=dtype).forward(case.asarray(np.full((2, 4), 1e6), dtype))
        case.assert_close(y, np.zeros((2, 4)), dtype=dtype)


def test_layer_norm_float32_keeps_float32(case: Any) -> None:
    x = case.asarray(np.random.default_rng(0).normal(size=(3, 4, 6)), "float32")
    for layer in (LayerNorm(6), GELU(), GELU("tanh"), SiLU()):
        y, backward = layer.forward(x)
        assert pn._array.dtype_name(y.dtype) == "float32", layer
        assert pn._array.dtype_name(backward(y).dtype) == "float32", layer
        assert all(pn._array.dtype_name(p.grad.dtype) == "float32" for p in layer.parameters()), layer


# -- errors -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("make", "shape", "patterns"),
    [
        (lambda: LayerNorm(64), (8, 10, 32), [r"LayerNorm\(\(64,\)\) got input of shape \(8, 10, 32\)",
                                              r"last 1 axes \(32,\) must equal normalized_shape \(64,\)", r"LayerNorm\(32\)"]),
        (lambda: LayerNorm((3, 4)), (2, 4, 3), [r"last 2 axes \(4, 3\) must equal normalized_shape \(3, 4\)",
                                                r"LayerNorm\(\(4, 3\)\)"]),
        (lambda: LayerNorm(5), (5,), [r"LayerNorm\(\(5,\)\) got input of shape \(5,\)", r"more than 1 dimensions",
                                      r"a single example\? use x.reshape\(1, \*x.shape\)"]),
        (lambda: Conv1d(3, 8, 3), (2, 5, 20), [r"Conv1d\(3, 8, kernel_size=3\) got input of shape \(2, 5, 20\)",
                                               r"expected \(batch, 3, length\)"]),
        (lambda: Conv1d(3, 8, 3), (2, 20, 3), [r"channels last\? .*x.transpose\(0, 2, 1\)"]),
        (lambda: Conv1d(1, 8, 3), (2, 20), [r"expected \(batch, 1, length\)", r"x.reshape\(-1, 1, L\)"]),
        (lambda: Conv1d(4, 8, 3), (4, 20), [r"a single sequence\? use x.reshape\(1, 4, -1\)"]),
        (lambda: Conv1d(1, 2, 5, dilation=2), (1, 1, 6),
         [r"padded length 6 is shorter than the kernel 5 \(dilated to 9\)", r"more padding or a smaller kernel"]),
    ],
)  # fmt: skip
def test_shape_errors_name_the_layer_the_shape_and_the_fix(make: Any, shape: tuple[int, ...], patterns: list[str]) -> None:
    with pn.use_backend("numpy"):
        layer = make()
        with pytest.raises(ShapeError) as info:
            layer(np.ones(shape, dtype=np.float32))
    missing = [p for p in patterns if not re.search(p, str(info.value))]
    assert not missing, f"{info.value} lacks {missing}"


def test_a_model_s_shape_walk_refuses_what_the_forward_refuses() -> None:
    with pn.use_backend("numpy"):
        with pytest.raises(
            ShapeError, match=r"LayerNorm\(\(64,\)\) does not take input of shape \(batch, 10, 32\): its last 1 axes"
        ):
            pn.Sequential([SiLU(), LayerNorm(64)], input_shape=(10, 32))
        with pytest.raises(ShapeError, match=r"Conv1d\(1, 2, kernel_size=5\) does not take input of shape \(batch, 1, 3\)"):
            pn.Sequential([Conv1d(1, 2, 5)], input_shape=(1, 3))


def test_dtype_and_argument_errors() -> None:
    with pn.use_backend("numpy"):
        with pytest.raises(TypeError, match=r"LayerNorm\(\(4,\)\) got input of dtype float64 but its parameters are float32"):
            LayerNorm(4)(np.ones((2, 4)))
        with pytest.raises(TypeError, match=r"LayerNorm\(\(4,\), elementwise_affine=False\) got input of dtype int64"):
            LayerNorm(4, elementwise_affine=False)(np.ones((2, 4), dtype=np.int64))
        with pytest.raises(
            ValueError, match=r"GELU: approximate must be 'none' \(the exact form\) or 'tanh'; got approximate='erf'"
        ):
            GELU("erf")
        with pytest.raises(
            TypeError, match=r"LayerNorm: normalized_shape must be a positive int or a tuple of them.*got normalized_shape=4.0"
        ):
            LayerNorm(4.0)
        with pytest.raises(ValueError, match=r"LayerNorm: normalized_shape must be .* positive ints; got normalized_shape=\(\)"):
            LayerNorm(())
        with pytest.raises(TypeError, match=r"Conv1d\(1, 8\): kernel_size must be a positive int; got \(3, 3\)"):
            Conv1d(1, 8, (3, 3))
        with pytest.raises(ValueError, match=r"conv1d: input of shape \(1, 2, 3\) with padding 0 is shorter than the kernel 5"):
            F.conv1d(np.ones((1, 2, 3)), np.ones((1, 2, 5)))
        with pytest.raises(TypeError, match=r"conv1d: input is float32 but weight/bias are float64; cast one of them"):
            F.conv1d(np.ones((1, 2, 6), dtype=np.float32), np.ones((1, 2, 3)))
        with pytest.raises(ValueError, match=r"conv1d: bias of shape \(2,\) does not fit weight of shape \(1, 2, 3\)"):
            F.conv1d(np.ones((1, 2, 6)), np.ones((1, 2, 3)), np.ones(2))
        with pytest.raises(ValueError, match=r"layer_norm: input of shape \(2, 3\) does not end in normalized_shape \(4,\)"):
            F.layer_norm(np.ones((2, 3)), 4)


# -- saving -------------------------------------------------------------------------------------------
def test_configs_rebuild_every_new_layer() -> None:
    with pn.use_backend("numpy"):
        built = [
            LayerNorm(5), LayerNorm((3, 4), eps=1e-3, bias=False, dtype="float64"), LayerNorm(2, elementwise_affine=False),
            GELU(), GELU(approximate="tanh"), SiLU(),
            Conv1d(3, 4, 3), Conv1d(2, 3, 5, 2, 1, 2, False, init="torch", dtype="float64"),
        ]  # fmt: skip
        for layer in built:
            config = layer.get_config()
            again = type(layer).from_config(config)
            assert again.get_config() == config and repr(again) == repr(layer), config
            assert [(n, p.shape, p.dtype) for n, p in again.named_parameters()] == [
                (n, p.shape, p.dtype) for n, p in layer.named_parameters()
            ]
    assert built[1].get_config() == {
        "normalized_shape": [3, 4], "eps": 1e-3, "elementwise_affine": True, "bias": False, "dtype": "float64", "name": None,
    }  # fmt: skip
    assert built[7].get_config() == {
        "in_channels": 2, "out_channels": 3, "kernel_size": 5, "stride": 2, "padding": 1, "dilation": 2, "bias": False,
        "init": "torch", "dtype": "float64", "seed": None, "name": None,
    }  # fmt: skip


def test_a_model_of_the_new_layers_saves_and_loads(case: Any, tmp_path: Path) -> None:
    model = pn.Sequential(
        [Conv1d(2, 4, 3, padding=1), GELU(), LayerNorm(8), SiLU(), Conv1d(4, 2, 2, stride=2), GELU("tanh"), Flatten(),
         Linear(8, 3), LayerNorm(3, elementwise_affine=False)],
        seed=0,
        input_shape=(2, 8),
    )  # fmt: skip
    x = np.random.default_rng(0).normal(size=(6, 2, 8)).astype(np.float32)
    model.fit(x, np.arange(6) % 3, loss=pn.losses.CrossEntropy(), optimizer=pn.optim.Adam(lr=0.01), epochs=2, verbose=0)
    model.save(tmp_path / "m.safetensors")
    loaded = pn.load(tmp_path / "m.safetensors")
    assert [repr(a) for a in loaded.layers] == [repr(b) for b in model.layers]
    case.assert_close(loaded.predict(x), pn.to_numpy(model.predict(x)), dtype="float32")


def test_gelu_exports_as_one_erf_node_in_float32_and_the_portable_erf_in_float64() -> None:
    pytest.importorskip("ndonnx", reason="ONNX export runs the model on ndonnx arrays: pip install portnn[onnx]")
    ort = pytest.importorskip("onnxruntime", reason="the graphs are checked with onnxruntime: pip install portnn[onnx]")
    from portnn.onnx import to_onnx

    x = np.linspace(-6.0, 6.0, 48).reshape(2, 4, 6)
    for dtype in ("float32", "float64"):
        with pn.use_backend("numpy"):
            model = pn.Sequential([Conv1d(4, 4, 3, padding=1, dtype=dtype), GELU(), LayerNorm(6, dtype=dtype)], seed=0)
            graph = to_onnx(model, (4, 6))
        kinds = {node.op_type for node in graph.graph.node}
        assert ("Erf" in kinds) == (dtype == "float32"), kinds  # onnxruntime has no float64 Erf kernel
        session = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
        (got,) = session.run(None, {"input": x.astype(dtype)})
        np.testing.assert_allclose(got, model.predict(x.astype(dtype), to_numpy=True), rtol=1e-5, atol=1e-5)

"""LSTM and GRU: the functions checked by the op harness, the layers by check_layer against their torch twins.

The functions (:func:`portnn.functional.lstm`, :func:`portnn.functional.gru`) go through
:func:`portnn.testing.check_op` for one step and five, with and without biases, returning the
last state or the sequence: float64 central differences for the input and every parameter,
``torch.nn.LSTM`` / ``torch.nn.GRU`` (``batch_first=True``, the same weights through
``torch.func.functional_call``) as the autograd oracle, and parity on every backend in float32
and float64. The layers go through :func:`portnn.testing.check_layer` with a torch module that
loads their state dict by name: one layer and two, both output modes.
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
from portnn.layers import GRU, LSTM, ShapeError
from portnn.testing import check_layer, check_op

try:
    import torch
except ImportError:  # the oracle tests skip with a reason
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="the oracle is torch.nn.LSTM/GRU: pip install torch==2.13.0")

CELLS = {"lstm": (F.lstm, 4), "gru": (F.gru, 3)}
N, IN, HIDDEN = 2, 3, 4


def _inputs(kind: str, steps: int, bias: bool, seed: int = 0) -> list[np.ndarray]:
    """x (N, steps, IN), the weights and, with ``bias``, the biases; scaled so that no gate saturates."""
    rows = CELLS[kind][1] * HIDDEN
    r = np.random.default_rng(seed)
    arrays = [r.normal(size=(N, steps, IN)), 0.5 * r.normal(size=(rows, IN)), 0.5 * r.normal(size=(rows, HIDDEN))]
    return arrays + ([0.5 * r.normal(size=rows), 0.5 * r.normal(size=rows)] if bias else [])


def _op(kind: str, sequences: bool) -> Any:
    fn = CELLS[kind][0]

    def op(x: Any, w_ih: Any, w_hh: Any, b_ih: Any = None, b_hh: Any = None) -> Any:
        y, backward = fn(x, w_ih, w_hh, b_ih, b_hh, return_sequences=sequences)
        return y, lambda dy: tuple(g for g in backward(dy) if g is not None)

    return op


def _oracle(kind: str, sequences: bool, bias: bool) -> Any:
    def oracle(x: Any, w_ih: Any, w_hh: Any, b_ih: Any = None, b_hh: Any = None) -> Any:
        module = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[kind](IN, HIDDEN, batch_first=True, bias=bias)
        params = {"weight_ih_l0": w_ih, "weight_hh_l0": w_hh}
        params.update({"bias_ih_l0": b_ih, "bias_hh_l0": b_hh} if bias else {})
        out, _ = torch.func.functional_call(module, params, (x,))
        return out if sequences else out[:, -1]

    return oracle


OPS = [
    pytest.param(
        kind, steps, sequences, bias, id=f"{kind}-T{steps}-{'seq' if sequences else 'last'}-{'bias' if bias else 'nobias'}"
    )
    for kind in CELLS
    for steps in (1, 5)
    for sequences in (False, True)
    for bias in (True, False)
]


@pytest.mark.parametrize(("kind", "steps", "sequences", "bias"), OPS)
def test_gradients_match_central_differences_and_torch(kind: str, steps: int, sequences: bool, bias: bool) -> None:
    inputs = _inputs(kind, steps, bias)
    oracle = _oracle(kind, sequences, bias) if torch is not None else None
    report = check_op(_op(kind, sequences), inputs, oracle=oracle, backends=(), name=f"{kind}-T{steps}")
    checked = [what for what, _ in report.checked]
    assert len([w for w in checked if w.startswith("central differences")]) == len(inputs)  # x and every parameter
    if torch is not None:
        assert "PyTorch oracle: output and gradients" in checked


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(("kind", "steps", "sequences", "bias"), OPS)
def test_every_backend_computes_the_same(case: Any, kind: str, steps: int, sequences: bool, bias: bool, dtype: str) -> None:
    if not case.supports(dtype):
        pytest.skip(f"{case.name} on {case.device} has no {dtype}")
    report = check_op(
        _op(kind, sequences), _inputs(kind, steps, bias), finite_differences=False,
        backends=[(case.name, case.device)], dtypes=[dtype], name=kind,
    )  # fmt: skip
    assert [what for what, _ in report.checked] == [f"{case.name} {dtype}: output and gradients against NumPy float64"]


# -- the layers against their torch twins ---------------------------------------------------------
def _twin(kind: str, *args: Any, sequences: bool, **kw: Any) -> Any:
    """``torch.nn.LSTM``/``GRU`` with ``batch_first=True`` returning what the portnn layer returns (one array)."""
    base = {"LSTM": torch.nn.LSTM, "GRU": torch.nn.GRU}[kind]

    class Twin(base):
        def forward(self, x: Any) -> Any:
            out, _ = super().forward(x)
            return out if sequences else out[:, -1]

    return Twin(*args, batch_first=True, **kw)


LAYERS = {
    f"{kind}-{name}": (kind, kw, shape)
    for kind in ("LSTM", "GRU")
    for name, kw, shape in (
        ("last", {}, (3, 5, IN)),
        ("one-step", {}, (3, 1, IN)),
        ("sequences-no-bias", {"return_sequences": True, "bias": False}, (2, 4, IN)),
        ("two-layers", {"num_layers": 2}, (2, 4, IN)),
        ("two-layers-sequences", {"num_layers": 2, "return_sequences": True}, (2, 3, IN)),
    )
}


@needs_torch
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layer_matches_its_torch_twin_on_every_backend(name: str) -> None:
    kind, kw, shape = LAYERS[name]
    with pn.use_backend("numpy"):
        layer = getattr(pn.layers, kind)(IN, HIDDEN, seed=0, **kw)
        torch_kw = {k: v for k, v in kw.items() if k != "return_sequences"}
        oracle = _twin(kind, IN, HIDDEN, sequences=kw.get("return_sequences", False), **torch_kw)
        report = check_layer(layer, shape, oracle=oracle, training=(True,))
    checked = [what for what, _ in report.checked]
    params = [n for n, _ in layer.named_parameters()]
    assert len(params) == 2 * kw.get("num_layers", 1) * (2 if kw.get("bias", True) else 1)
    for label in ["the input", *(f"parameter '{n}'" for n in params)]:
        assert any(w.startswith("central differences, training=True: " + label) for w in checked), (label, checked)
    assert "PyTorch oracle, training=True: output and gradients" in checked
    assert "parameter gradients with input_grad=False, training=True" in checked
    assert any(w.startswith("array_api_strict float32") for w in checked)
    assert all(ratio <= 1 for _, ratio in report.checked)


@needs_torch
@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_float32_layer_agrees_with_torch_float32(kind: str) -> None:
    """The layer as users build it (float32, its own initial weights) against torch in float32 on the same weights."""
    layer = getattr(pn.layers, kind)(IN, HIDDEN, num_layers=2, return_sequences=True, seed=3)
    twin = _twin(kind, IN, HIDDEN, num_layers=2, sequences=True)
    twin.load_state_dict({n: torch.from_numpy(pn.to_numpy(p.data).copy()) for n, p in layer.named_parameters()})
    x = np.random.default_rng(1).normal(size=(4, 6, IN)).astype(np.float32)
    dy = np.random.default_rng(2).normal(size=(4, 6, HIDDEN)).astype(np.float32)
    y, backward = layer.forward(x, training=True)
    dx = backward(dy)
    xt = torch.from_numpy(x).requires_grad_(True)
    yt = twin(xt)
    yt.backward(torch.from_numpy(dy))
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-4, atol=1e-5)
    for name, p in twin.named_parameters():
        np.testing.assert_allclose(layer._params[name].grad, p.grad.numpy(), rtol=1e-4, atol=1e-5, err_msg=name)


# -- parameters -------------------------------------------------------------------------------------
@pytest.mark.parametrize(("kind", "gates"), [("LSTM", 4), ("GRU", 3)])
def test_parameters_have_torch_names_shapes_and_initialisation(kind: str, gates: int) -> None:
    layer = getattr(pn.layers, kind)(5, 6, num_layers=2, seed=0)
    shapes = {n: p.shape for n, p in layer.named_parameters()}
    assert shapes == {
        "weight_ih_l0": (gates * 6, 5), "weight_hh_l0": (gates * 6, 6), "bias_ih_l0": (gates * 6,), "bias_hh_l0": (gates * 6,),
        "weight_ih_l1": (gates * 6, 6), "weight_hh_l1": (gates * 6, 6), "bias_ih_l1": (gates * 6,), "bias_hh_l1": (gates * 6,),
    }  # fmt: skip
    assert layer.weight_hh_l1 is layer._params["weight_hh_l1"]
    bound = 1 / math.sqrt(6)
    values = np.concatenate([pn.to_numpy(p.data).ravel() for p in layer.parameters()])
    assert values.dtype == np.float32 and np.all(np.abs(values) <= bound) and np.abs(values).max() > 0.9 * bound
    assert np.abs(values.mean()) < 0.1 * bound  # U(-bound, bound): centred, not all one sign
    # an L2 penalty applies to the weights, not to the biases
    assert {n: p.regularize for n, p in layer.named_parameters()} == {n: n.startswith("weight") for n in shapes}


def test_one_seed_gives_the_same_weights_on_every_backend(case: Any) -> None:
    with pn.use_backend("numpy"):
        reference = {n: pn.to_numpy(p.data) for n, p in LSTM(3, 4, seed=7).named_parameters()}
    layer = LSTM(3, 4, seed=7)
    for n, p in layer.named_parameters():
        case.assert_close(p.data, reference[n], dtype="float32", err_msg=n)
    model = pn.Sequential([GRU(3, 4), pn.layers.Linear(4, 2)], seed=1)
    again = pn.Sequential([GRU(3, 4), pn.layers.Linear(4, 2)], seed=1)
    for (n, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items()):
        np.testing.assert_array_equal(pn.to_numpy(a), pn.to_numpy(b), err_msg=n)
    assert not np.array_equal(pn.to_numpy(model.layers[0].weight_hh_l0.data), pn.to_numpy(layer.weight_hh_l0.data)[:12])


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_a_frozen_layer_skips_parameter_gradients_and_input_grad_false_skips_dx(kind: str) -> None:
    x = np.random.default_rng(0).normal(size=(3, 4, IN)).astype(np.float32)
    dy = np.ones((3, HIDDEN), dtype=np.float32)
    layer = getattr(pn.layers, kind)(IN, HIDDEN, seed=0)
    _, backward = layer.forward(x, training=True)
    dx = backward(dy)
    grads = {n: p.grad.copy() for n, p in layer.named_parameters()}
    for p in layer.parameters():
        p.grad = None
    layer.trainable = False
    _, backward = layer.forward(x, training=True)
    np.testing.assert_allclose(backward(dy), dx, rtol=1e-6)  # the input gradient is still there
    assert all(p.grad is None for p in layer.parameters())
    _, backward = layer.forward(x, training=True, input_grad=False)
    assert backward(dy) is None and all(p.grad is None for p in layer.parameters())  # nothing to compute
    layer.trainable = True
    _, backward = layer.forward(x, training=True, input_grad=False)
    assert backward(dy) is None
    for n, p in layer.named_parameters():
        np.testing.assert_allclose(p.grad, grads[n], rtol=1e-6, err_msg=n)
    # the functions skip the products they are not asked for
    fn = CELLS[kind.lower()][0]
    w = [pn.to_numpy(p.data) for p in layer.parameters()]
    assert fn(x, *w, input_grad=False, param_grad=False)[1](dy) == (None,) * 5
    dx_only = fn(x, *w, param_grad=False)[1](dy)
    assert dx_only[1:] == (None,) * 4 and np.allclose(dx_only[0], dx, rtol=1e-6)


def test_a_frozen_lower_layer_of_a_stack_gets_no_gradient_but_passes_one_down() -> None:
    layer = LSTM(IN, HIDDEN, num_layers=2, seed=0)
    for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
        layer._params[name].trainable = False
    x = np.random.default_rng(0).normal(size=(2, 3, IN)).astype(np.float32)
    _, backward = layer.forward(x, training=True, input_grad=False)
    assert backward(np.ones((2, HIDDEN), dtype=np.float32)) is None
    assert [n for n, p in layer.named_parameters() if p.grad is not None] == [
        "weight_ih_l1", "weight_hh_l1", "bias_ih_l1", "bias_hh_l1",
    ]  # fmt: skip


# -- errors, config, files ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("shape", "words"),
    [
        ((2, IN), [r"LSTM\(3, 4\) got input of shape \(2, 3\)", r"expected \(batch, time, 3\)", r"x.reshape\(-1, 1, 3\)"]),
        ((2, 5, 7), [r"LSTM\(3, 4\) got input of shape \(2, 5, 7\)", r"expected \(batch, time, 3\)"]),
        ((2, IN, 5), [r"\(2, 3, 5\)", r"time and features swapped\?", r"x.transpose\(0, 2, 1\)"]),
        ((2, 1, 6, IN), [r"\(2, 1, 6, 3\)", r"images\? read their rows as time steps: x.reshape\(-1, 6, 3\)"]),
        ((2, 0, IN), [r"\(2, 0, 3\)", r"at least one time step"]),
    ],
)
def test_shapes_that_do_not_fit_are_refused_naming_the_layer(shape: tuple[int, ...], words: list[str]) -> None:
    layer = LSTM(IN, HIDDEN, seed=0)
    with pytest.raises(ShapeError) as info:
        layer(np.ones(shape, dtype=np.float32))
    for pattern in words:
        assert re.search(pattern, str(info.value)), (pattern, str(info.value))
    with pytest.raises(ShapeError, match=r"GRU\(3, 4\) expects input of shape \(batch, time, 3\); got \(batch, 5\)"):
        pn.Sequential([GRU(IN, HIDDEN)], input_shape=(5,))


@pytest.mark.parametrize(
    ("build", "error", "pattern"),
    [
        (lambda: LSTM(0, 4), ValueError, r"LSTM: input_size must be a positive int; got 0"),
        (lambda: GRU(3, 2.0), TypeError, r"GRU: hidden_size must be a positive int; got 2.0"),
        (lambda: LSTM(3, 4, num_layers=0), ValueError, r"LSTM\(3, 4\): num_layers must be a positive int; got 0"),
        (lambda: GRU(3, 4, return_sequences="yes"), TypeError, r"GRU\(3, 4\): return_sequences must be True or False"),
        (lambda: LSTM(3, 4, init="nope"), ValueError, r"LSTM\(3, 4\): unknown init 'nope'"),
        (lambda: LSTM(3, 4, dtype="int32"), ValueError, r"float32 or float64; got dtype='int32'"),
        (lambda: GRU(3, 4, seed=-1), ValueError, r"GRU: seed must be None or an integer"),
    ],
)
def test_bad_arguments_are_refused_naming_the_layer(build: Any, error: type, pattern: str) -> None:
    with pytest.raises(error, match=pattern):
        build()


def test_config_round_trip_and_repr() -> None:
    layer = GRU(3, 5, num_layers=2, bias=False, return_sequences=True, init="glorot_uniform", dtype="float64")
    layer.name = "encoder"
    config = layer.get_config()
    assert config == {
        "input_size": 3, "hidden_size": 5, "num_layers": 2, "bias": False, "return_sequences": True,
        "init": "glorot_uniform", "dtype": "float64", "seed": None, "name": "encoder",
    }  # fmt: skip
    again = GRU.from_config(config)
    assert (
        again.get_config() == config
        and repr(again) == repr(layer) == "GRU(3, 5, num_layers=2, bias=False, return_sequences=True)"
    )
    assert repr(LSTM(28, 128)) == "LSTM(28, 128)"
    assert LSTM.from_config(LSTM(2, 3, init=pn.init.uniform(-0.1, 0.1)).get_config()).init.__name__ == "uniform(-0.1, 0.1)"


def test_a_model_with_recurrent_layers_saves_and_loads(tmp_path: Path) -> None:
    model = pn.Sequential(
        [LSTM(IN, 6, num_layers=2, return_sequences=True), GRU(6, 5), pn.layers.Linear(5, 2)], input_shape=(4, IN), seed=0
    )
    assert "0.weight_ih_l1" in model.state_dict() and "1.bias_hh_l0" in model.state_dict()
    path = tmp_path / "rnn.safetensors"
    model.save(path)
    loaded = pn.load(path)
    assert loaded.get_config() == model.get_config() and repr(loaded) == repr(model)
    x = np.random.default_rng(0).normal(size=(3, 4, IN)).astype(np.float32)
    np.testing.assert_array_equal(pn.to_numpy(loaded(x)), pn.to_numpy(model(x)))


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_a_recurrent_model_learns_to_remember_the_first_step(kind: str) -> None:
    """The label is the sign of the first of 6 steps; the rest is noise: the state must carry it to the end."""
    r = np.random.default_rng(0)
    x = r.normal(size=(256, 6, 1)).astype(np.float32)
    y = (x[:, 0, 0] > 0).astype(np.int64)
    model = pn.Sequential([getattr(pn.layers, kind)(1, 16), pn.layers.Linear(16, 2)], seed=0)
    loss = pn.losses.CrossEntropy()
    before = model.evaluate(x, y, loss=loss)["loss"]
    model.fit(x, y, loss=loss, optimizer=pn.optim.Adam(lr=0.02), epochs=30, batch_size=32, verbose=0)
    after = model.evaluate(x, y, loss=loss)
    assert after["loss"] < 0.1 * before and after["accuracy"] > 0.95, (before, after)


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_onnx_export_unrolls_the_steps_for_batches_of_any_size(kind: str) -> None:
    pytest.importorskip("ndonnx", reason="ONNX export runs the model on ndonnx arrays: pip install portnn[onnx]")
    ort = pytest.importorskip("onnxruntime", reason="the exported graph is checked with onnxruntime: pip install portnn[onnx]")
    from portnn.onnx import to_onnx

    layer = getattr(pn.layers, kind)
    model = pn.Sequential([layer(IN, 6, num_layers=2, return_sequences=True), layer(6, 5), pn.layers.Linear(5, 2)], seed=0)
    graph = to_onnx(model, (4, IN))
    session = ort.InferenceSession(graph.SerializeToString())
    assert {p.key: p.value for p in graph.metadata_props}["portnn_graph"] == "batched"
    for batch in (1, 7):
        x = np.random.default_rng(batch).normal(size=(batch, 4, IN)).astype(np.float32)
        np.testing.assert_allclose(session.run(None, {"input": x})[0], pn.to_numpy(model(x)), rtol=1e-5, atol=1e-6)

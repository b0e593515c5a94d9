"""ONNX export through the array API: the exported graph, run by onnxruntime, equals portnn's own predictions.

Every layer with an evaluation-mode forward, the CLI's presets built as ``portnn train`` builds
them, float32 and float64, batches of several sizes from one graph: the largest difference to
``model.predict`` on NumPy must stay within 1e-5. The tests skip with a reason where ndonnx or
onnxruntime is missing (``pip install portnn[onnx]``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import portnn as pn
from portnn import cli
from portnn.backends.ndonnx import NdonnxAdapter
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

pytest.importorskip("ndonnx", reason="ONNX export runs the model on ndonnx arrays: pip install portnn[onnx]")
ort = pytest.importorskip("onnxruntime", reason="the exported graphs are checked with onnxruntime: pip install portnn[onnx]")
from portnn.onnx import OnnxExportError, to_onnx  # noqa: E402  (after the skips: it needs ndonnx)

BATCHES = (1, 4, 9)
MAX_DIFF = 1e-5


def run(graph: Any, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    (y,) = session.run(None, {"input": x})
    return y


def max_difference(model: pn.Sequential, shape: tuple[int, ...], *, seed: int = 0, graph: Any = None) -> float:
    """Export ``model`` once and return the largest |onnxruntime - model.predict| over batches of several sizes."""
    graph = to_onnx(model, shape) if graph is None else graph
    rng, worst = np.random.default_rng(seed), 0.0
    for n in BATCHES:
        x = rng.normal(size=(n, *shape)).astype(model.dtype)
        expected = model.predict(x, to_numpy=True)
        got = run(graph, x)
        assert got.dtype == expected.dtype and got.shape == expected.shape, (got.dtype, got.shape, expected.shape)
        worst = max(worst, float(np.abs(got - expected).max()))
    return worst


def form(graph: Any) -> str:
    """The metadata ``portnn_graph``: ``"batched"`` or ``"per-example"``."""
    return {p.key: p.value for p in graph.metadata_props}["portnn_graph"]


def op_types(graph: Any) -> list[str]:
    """The op type of every node of ``graph``, those of subgraphs (a Scan's body) included."""
    nodes, types = list(graph.graph.node), []
    while nodes:
        node = nodes.pop()
        types.append(node.op_type)
        for attr in node.attribute:
            nodes += [*attr.g.node, *(n for g in attr.graphs for n in g.node)]
    return types


def with_statistics(model: pn.Sequential, seed: int = 1) -> pn.Sequential:
    """Give every BatchNorm random affine parameters and running statistics (fresh ones are 1 and 0: they test nothing)."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, (BatchNorm1d, BatchNorm2d)):
            c, adapter, dev = layer.num_features, pn.backends.adapter_for(layer.running_mean.data), layer.running_mean.device
            dt = pn._array.dtype_name(layer.running_mean.dtype)
            values = {"running_mean": rng.normal(size=c), "running_var": 0.5 + rng.random(c)}
            if layer.affine:
                values |= {"weight": 1 + 0.3 * rng.normal(size=c), "bias": rng.normal(size=c)}
            for name, v in values.items():
                getattr(layer, name).data = adapter.from_numpy(v.astype(dt), dev)
    return model


# every layer with an evaluation-mode forward, each alone (after what makes its input), with the example shape
LAYERS = {
    "linear": (lambda dt: [Linear(5, 3, dtype=dt)], (5,)),
    "linear-no-bias": (lambda dt: [Linear(5, 3, bias=False, dtype=dt)], (5,)),
    "relu": (lambda dt: [ReLU()], (6,)),
    "leaky-relu": (lambda dt: [LeakyReLU(0.2)], (6,)),
    "sigmoid": (lambda dt: [Sigmoid()], (6,)),
    "tanh": (lambda dt: [Tanh()], (6,)),
    "softmax": (lambda dt: [Softmax()], (6,)),
    "conv2d": (lambda dt: [Conv2d(2, 3, 3, padding=1, dtype=dt)], (2, 6, 5)),
    "conv2d-stride-dilation-no-bias": (lambda dt: [Conv2d(2, 3, 3, stride=2, dilation=2, bias=False, dtype=dt)], (2, 9, 8)),
    "conv2d-mixed": (lambda dt: [Conv2d(3, 2, (2, 3), stride=(2, 1), padding=(1, 2), dilation=(1, 2), dtype=dt)], (3, 7, 9)),
    "max-pool": (lambda dt: [MaxPool2d(2)], (3, 6, 7)),
    "max-pool-overlap-padding": (lambda dt: [MaxPool2d(3, 2, 1)], (2, 7, 6)),
    "avg-pool": (lambda dt: [AvgPool2d(2)], (3, 6, 6)),
    "avg-pool-overlap-padding": (lambda dt: [AvgPool2d(3, 2, 1)], (2, 7, 6)),
    "global-avg-pool": (lambda dt: [GlobalAvgPool2d()], (3, 4, 5)),
    "batchnorm1d": (lambda dt: [BatchNorm1d(4, dtype=dt)], (4,)),
    "batchnorm1d-length": (lambda dt: [BatchNorm1d(4, dtype=dt)], (4, 6)),
    "batchnorm1d-no-affine": (lambda dt: [BatchNorm1d(4, affine=False, dtype=dt)], (4,)),
    "batchnorm2d": (lambda dt: [BatchNorm2d(3, dtype=dt)], (3, 4, 5)),
    "dropout": (lambda dt: [Dropout(0.5)], (6,)),
    "random-translation": (lambda dt: [RandomTranslation(2)], (1, 6, 6)),
    "flatten": (lambda dt: [Flatten()], (2, 3, 4)),
    "conv1d": (lambda dt: [pn.layers.Conv1d(2, 3, 3, padding=1, dtype=dt)], (2, 7)),
    "conv1d-stride-dilation-no-bias": (lambda dt: [pn.layers.Conv1d(2, 3, 3, 2, 1, 2, bias=False, dtype=dt)], (2, 11)),
    "layer-norm": (lambda dt: [pn.layers.LayerNorm(6, dtype=dt)], (6,)),
    "layer-norm-two-axes-no-bias": (lambda dt: [pn.layers.LayerNorm((3, 4), bias=False, dtype=dt)], (5, 3, 4)),
    "gelu": (lambda dt: [pn.layers.GELU()], (6,)),
    "gelu-tanh": (lambda dt: [pn.layers.GELU(approximate="tanh")], (6,)),
    "silu": (lambda dt: [pn.layers.SiLU()], (6,)),
}


def _model(name: str, dtype: str) -> tuple[pn.Sequential, tuple[int, ...]]:
    build, shape = LAYERS[name]
    layers = build(dtype)
    # a model without parameters takes the dtype of its input: give it a float64 head where it must be float64
    if dtype == "float64" and not any(layer.parameters() for layer in layers):
        width = int(np.prod(cli_shape(layers, shape)))
        layers = (
            [*layers, Flatten(), Linear(width, 2, dtype=dtype)] if len(shape) > 1 else [*layers, Linear(width, 2, dtype=dtype)]
        )
    return with_statistics(pn.Sequential(layers, seed=0, input_shape=shape)), shape


def cli_shape(layers: list[Any], shape: tuple[int, ...]) -> tuple[int, ...]:
    out: Any = (None, *shape)
    for layer in layers:
        out = layer.output_shape(out)
    return tuple(out[1:])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_every_layer_exports_equal_to_numpy_predictions(name: str, dtype: str) -> None:
    """Every layer runs on a batch of unknown size (``x.shape[0] is None``): one batched graph, no Scan."""
    with pn.use_backend("numpy"):
        model, shape = _model(name, dtype)
        assert model.dtype == dtype
        graph = to_onnx(model, shape)
        assert form(graph) == "batched" and "Scan" not in op_types(graph)
        assert max_difference(model, shape, graph=graph) <= MAX_DIFF


@pytest.mark.parametrize("preset", ["mlp", "mlp-best", "cnn"])
def test_the_cli_presets_export_equal_to_numpy_predictions(preset: str, tmp_path: Path) -> None:
    """Built as ``portnn train --preset ...`` builds them, then trained a little (BatchNorm statistics move)."""
    p = cli.PRESETS[preset]
    with pn.use_backend("numpy"):
        if p["model"] == "cnn":
            shape: tuple[int, ...] = (1, 28, 28)
            model = cli.build_cnn(shape, p["channels"], p["hidden"], 10, dropout=p["dropout"], augment=p["augment"], seed=0)
        else:
            shape = (784,)
            model = cli.build_mlp(784, p["hidden"], 10, dropout=p["dropout"], seed=0)
        rng = np.random.default_rng(0)
        x, y = rng.random((64, *shape), dtype=np.float32), rng.integers(0, 10, 64)
        model.fit(x, y, loss=pn.losses.CrossEntropy(), optimizer=pn.optim.SGD(lr=0.05), epochs=1, batch_size=16, verbose=0)
        path = tmp_path / f"{preset}.onnx"
        graph = model.export_onnx(path)
        assert path.read_bytes() == graph.SerializeToString()
        assert form(graph) == "batched" and "Scan" not in op_types(graph)
        assert max_difference(model, shape, graph=graph) <= MAX_DIFF
        images = rng.random((9, *shape), dtype=np.float32)  # pixel-like inputs, as in MNIST
        assert np.abs(run(graph, images) - model.predict(images, to_numpy=True)).max() <= MAX_DIFF


def test_the_graph_takes_any_batch_size_and_names_its_axes() -> None:
    with pn.use_backend("numpy"):
        model = pn.Sequential([Linear(4, 8), ReLU(), Linear(8, 3)], seed=0)
        graph = to_onnx(model)
    dims = [[d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in (*graph.graph.input, *graph.graph.output)]
    assert dims == [["batch", 4], ["batch", 3]]
    for n in (1, 2, 100):
        assert run(graph, np.ones((n, 4), np.float32)).shape == (n, 3)


class RowsByCount(pn.layers.Layer):
    """Flattens each example with the batch size as a number (``int(x.shape[0])``): unknown in a graph for any batch."""

    def call(self, x: Any, *, training: bool = False, input_grad: bool = True) -> Any:
        xp, shape = x.__array_namespace__(), tuple(x.shape)
        return xp.reshape(x, (int(shape[0]), -1)), lambda dy: xp.reshape(dy, shape)

    def compute_output_shape(self, input_shape: Any) -> Any:
        rest = input_shape[1:]
        return (input_shape[0], None if None in rest else int(np.prod(rest)))


def test_a_batched_graph_where_every_layer_takes_an_unknown_batch_size_else_one_example_at_a_time() -> None:
    """portnn's layers (pooling, BatchNorm and Flatten included) trace once with ``x.shape[0] is None``; a layer that
    reads the batch size as a number makes the export trace one example and scan it over the batch (see portnn.onnx)."""
    with pn.use_backend("numpy"):
        mlp = to_onnx(pn.Sequential([Linear(4, 8), Tanh(), Linear(8, 3), Softmax(axis=0)], seed=0))
        pooled = to_onnx(pn.Sequential([MaxPool2d(2), BatchNorm2d(1), Flatten()], input_shape=(1, 4, 4)))
        counted = pn.Sequential([MaxPool2d(2), RowsByCount(), Linear(4, 2)], seed=0, input_shape=(1, 4, 4))
        scanned = to_onnx(counted)

    assert form(mlp) == "batched" and "Scan" not in op_types(mlp)
    assert form(pooled) == "batched" and "Scan" not in op_types(pooled)
    assert form(scanned) == "per-example" and [node.op_type for node in scanned.graph.node].count("Scan") == 1
    assert max_difference(counted, (1, 4, 4), graph=scanned) <= MAX_DIFF
    # Softmax over the batch axis mixes the examples: a batched graph reproduces it
    x = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    with pn.use_backend("numpy"):
        model = pn.Sequential([Linear(4, 8), Tanh(), Linear(8, 3), Softmax(axis=0)], seed=0)
    assert np.abs(run(mlp, x) - model.predict(x, to_numpy=True)).max() <= MAX_DIFF


def test_the_cnn_preset_exports_one_batched_graph_for_any_batch_size() -> None:
    """Built as ``portnn train --preset cnn`` builds it (shifts, conv-BN-ReLU-pool blocks, Flatten, dense, dropout):
    one graph with a symbolic batch axis and no Scan, equal to ``predict`` for batches of 1, 3 and 17."""
    p = cli.PRESETS["cnn"]
    shape = (1, 28, 28)
    with pn.use_backend("numpy"):
        model = cli.build_cnn(shape, p["channels"], p["hidden"], 10, dropout=p["dropout"], augment=p["augment"], seed=0)
        assert any(isinstance(layer, (MaxPool2d, BatchNorm2d, Flatten)) for layer in model.layers)
        with_statistics(model)
        graph = to_onnx(model)
    assert form(graph) == "batched"
    assert "Scan" not in op_types(graph)
    dims = [[d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in (*graph.graph.input, *graph.graph.output)]
    assert dims == [["batch", *shape], ["batch", 10]]
    rng = np.random.default_rng(3)
    for n in (1, 3, 17):
        x = rng.random((n, *shape), dtype=np.float32)
        expected = model.predict(x, to_numpy=True)
        got = run(graph, x)
        assert got.dtype == expected.dtype and got.shape == expected.shape == (n, 10)
        assert np.abs(got - expected).max() <= MAX_DIFF, n


def test_conv2d_becomes_one_onnx_conv_node_equal_to_the_generic_path(monkeypatch: pytest.MonkeyPatch) -> None:
    with pn.use_backend("numpy"):
        model = pn.Sequential(
            [Conv2d(2, 4, 3, padding=1), ReLU(), Conv2d(4, 3, 2, stride=2, bias=False)], seed=0, input_shape=(2, 8, 8)
        )
        fast = to_onnx(model)
        monkeypatch.setattr(NdonnxAdapter, "conv2d", lambda self, *a, **kw: None)  # the generic path: im2col slices
        generic = to_onnx(model)

    assert op_types(fast).count("Conv") == 2 and "Conv" not in op_types(generic)
    x = np.random.default_rng(0).normal(size=(6, 2, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(run(fast, x), run(generic, x), rtol=0, atol=MAX_DIFF)
    assert max_difference(model, (2, 8, 8), graph=fast) <= MAX_DIFF


def test_a_model_on_any_backend_exports_its_weights(case: Any) -> None:
    model = with_statistics(pn.Sequential([Linear(6, 4), BatchNorm1d(4), ReLU(), Linear(4, 2)], seed=0))
    graph = to_onnx(model)
    x = np.random.default_rng(0).normal(size=(7, 6)).astype(np.float32)
    assert np.abs(run(graph, x) - model.predict(x, to_numpy=True)).max() <= MAX_DIFF


def test_the_export_leaves_the_model_as_it_was() -> None:
    with pn.use_backend("numpy"):
        model = with_statistics(
            pn.Sequential([Conv2d(1, 2, 3), BatchNorm2d(2), ReLU(), Flatten(), Linear(8, 3)], seed=0, input_shape=(1, 4, 4))
        )
        arrays = {name: b.data for name, b in (*model.named_parameters(), *model.named_buffers())}
        before = {name: a.copy() for name, a in arrays.items()}
        to_onnx(model)
        for name, b in (*model.named_parameters(), *model.named_buffers()):
            assert b.data is arrays[name], name  # the same arrays, not copies
            np.testing.assert_array_equal(b.data, before[name], err_msg=name)
        model.fit(
            np.ones((4, 1, 4, 4)), np.arange(4) % 3, loss=pn.losses.CrossEntropy(), optimizer=pn.optim.SGD(lr=0.1), verbose=0
        )


# -- what cannot be exported says which layer and why --------------------------------------------
class NanGuard(pn.layers.Layer):
    """Refuses NaN input by reading ``bool(xp.any(...))`` on the host: a value an ONNX graph has only when it runs."""

    def call(self, x: Any, *, training: bool = False, input_grad: bool = True) -> Any:
        xp = x.__array_namespace__()
        if bool(xp.any(xp.isnan(x))):
            raise ValueError("NanGuard: NaN in the input")
        return x, lambda dy: dy


def test_a_layer_that_leaves_the_array_api_is_named_with_the_reason() -> None:
    with pn.use_backend("numpy"):
        model = pn.Sequential([Linear(4, 3), NanGuard(), Tanh()], seed=0)
        with pytest.raises(OnnxExportError) as info:
            to_onnx(model)
    message = str(info.value)
    assert message.startswith("Sequential.export_onnx: layer 1 (NanGuard()) cannot be exported:")
    assert "it reads on the host the value of an array that depends on the input" in message
    assert "no host conversion (float(), to_numpy)" in message


@pytest.mark.parametrize(
    ("layer", "shape", "why"),
    [
        (
            BatchNorm1d(4, track_running_stats=False),
            (4,),
            r"on one example at a time it raised ValueError: .*Expected more than 1",
        ),
        (BatchNorm2d(2, track_running_stats=False), (2, 3, 3), r"its output for one example depends on the other examples"),
    ],
    ids=["batchnorm1d", "batchnorm2d"],
)
def test_batch_statistics_at_evaluation_cannot_be_exported(layer: Any, shape: tuple[int, ...], why: str) -> None:
    with pn.use_backend("numpy"):
        model = pn.Sequential([layer, ReLU()], input_shape=shape)
        with pytest.raises(OnnxExportError) as info:
            to_onnx(model)
    message = str(info.value)
    assert re.search(r"layer 0 \(BatchNorm[12]d\(\w, track_running_stats=False\)\) cannot be exported: " + why, message), message
    assert "exports with its running statistics (track_running_stats=True)" in message


def test_an_input_shape_that_does_not_fit_is_refused_naming_the_layer() -> None:
    with pn.use_backend("numpy"):
        model = pn.Sequential([Linear(4, 3)], seed=0)
        with pytest.raises(OnnxExportError, match=r"input_shape=\(5,\) .* does not fit layer 0 \(Linear\(4, 3\)\)"):
            to_onnx(model, (5,))
        with pytest.raises(OnnxExportError, match=r"does not say the shape of its examples; pass input_shape"):
            to_onnx(pn.Sequential([ReLU()]))
        with pytest.raises(OnnxExportError, match=r"input_shape must be a tuple of positive ints"):
            to_onnx(model, 4)


def test_without_ndonnx_the_export_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(NdonnxAdapter, "import_error", lambda self: "ndonnx is not installed; install portnn[onnx]")
    with pn.use_backend("numpy"), pytest.raises(ImportError, match=r"ndonnx is not installed; install portnn\[onnx\]"):
        pn.Sequential([Linear(4, 3)], seed=0).export_onnx("never-written.onnx")
    assert not Path("never-written.onnx").exists()


def test_ndonnx_is_an_export_target_not_a_backend() -> None:
    assert "ndonnx" not in pn.available_backends()
    with pytest.raises(ValueError, match=r"'ndonnx' is not a backend: its arrays record an ONNX graph"):
        pn.set_backend("ndonnx")

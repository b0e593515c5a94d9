"""Sequence models: Embedding and its row-summing gradient, PositionalEmbedding, N-D Linear, Permute,
GlobalAvgPool1d, and CrossEntropy / accuracy on (batch, time, classes).

The ops themselves are also in the harness (tests/specs_seq.py): central differences, the
PyTorch oracle and parity on every backend. Here: each backend's fast ``index_add_rows``
against the generic one-hot path, the layers against their PyTorch modules, the errors, and
small models that train on sequences.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import portnn as pn
from portnn import backends
from portnn.functional import embedding as FE
from portnn.functional.dense import linear
from portnn.layers import Embedding, GlobalAvgPool1d, Linear, Permute, PositionalEmbedding, ShapeError
from portnn.testing import check_layer, check_op

torch = pytest.importorskip("torch", reason="the PyTorch oracle needs torch==2.13.0 (pip install torch==2.13.0)")


def _heavy_repeats(r: np.random.Generator, m: int, n_rows: int) -> np.ndarray:
    """``m`` indices where row 3 takes half, a few rows the rest, and most rows none."""
    idx = r.choice([0, 1, n_rows - 1], size=m)
    idx[r.random(m) < 0.5] = 3
    return idx


# -- index_add_rows: each backend's kernel against the generic path -----------------------------


@pytest.mark.parametrize("index_dtype", ["int64", "int32"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fast_index_add_rows_equals_the_generic_path(case: Any, dtype: str, index_dtype: str) -> None:
    if not case.supports(dtype):
        pytest.skip(f"{case.name} on {case.device} has no {dtype}")
    r = np.random.default_rng(0)
    n_rows, m, d = 11, 500, 6
    idx_host = _heavy_repeats(r, m, n_rows)
    values_host = r.normal(size=(m, d))
    expected = np.zeros((n_rows, d))
    np.add.at(expected, idx_host, values_host)  # accumulates duplicates: the reference
    assert expected[3].any() and not expected[5].any()  # row 3 summed ~250 times, row 5 never
    idx, values = case.asarray(idx_host, index_dtype), case.asarray(values_host, dtype)
    fast = FE.index_add_rows(n_rows, idx, values)
    generic = FE.index_add_rows(n_rows, idx, values, fast=False)
    case.assert_close(generic, expected, dtype=dtype, err_msg="generic")
    case.assert_close(fast, expected, dtype=dtype, err_msg="fast")
    case.assert_close(fast, backends.to_numpy(generic), dtype=dtype, err_msg="fast against generic")


def test_the_backends_with_a_kernel_have_one(case: Any) -> None:
    """NumPy, PyTorch and CuPy answer with their own kernel; array-api-strict takes the generic path."""
    idx = case.asarray(np.array([1, 1, 0]), "int64")
    values = case.asarray(np.ones((3, 2)), "float32")
    out = case.backend.adapter.index_add_rows(2, idx, values)
    if case.name == "array_api_strict":
        assert out is None
    else:
        case.assert_close(out, [[1.0, 1.0], [2.0, 2.0]], dtype="float32")


def test_generic_index_add_rows_in_blocks(case: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The one-hot product in many blocks (a large vocabulary) sums as one block does; no indices gives zeros."""
    r = np.random.default_rng(1)
    idx_host = _heavy_repeats(r, 103, 9)
    values_host = r.normal(size=(103, 4))
    expected = np.zeros((9, 4))
    np.add.at(expected, idx_host, values_host)
    monkeypatch.setattr(FE, "ONEHOT_ELEMENTS", 9 * 10)  # blocks of 10 rows: 11 blocks, the last one short
    out = FE.index_add_rows(9, case.asarray(idx_host, "int64"), case.asarray(values_host, "float64"), fast=False)
    case.assert_close(out, expected, dtype="float64")
    empty = FE.index_add_rows(4, case.asarray(np.zeros(0, np.int64)), case.asarray(np.zeros((0, 3)), "float32"), fast=False)
    case.assert_close(empty, np.zeros((4, 3)), dtype="float32")
    case.assert_close(
        FE.index_add_rows(4, case.asarray(np.zeros(0, np.int64)), case.asarray(np.zeros((0, 3)), "float32")),
        np.zeros((4, 3)),
        dtype="float32",
    )


# -- Embedding ---------------------------------------------------------------------------------


@pytest.mark.parametrize("padding_idx", [None, 2])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_embedding_matches_torch_nn_embedding(case: Any, dtype: str, padding_idx: Any) -> None:
    if not case.supports(dtype):
        pytest.skip(f"{case.name} on {case.device} has no {dtype}")
    layer = Embedding(7, 4, padding_idx=padding_idx, dtype=dtype, seed=3)
    assert layer.weight.device == case.device
    oracle = torch.nn.Embedding(7, 4, padding_idx=padding_idx, dtype=torch.float64)
    with torch.no_grad():
        oracle.weight.copy_(torch.from_numpy(backends.to_numpy(layer.weight.data).astype("float64")))
    r = np.random.default_rng(2)
    idx = np.concatenate([_heavy_repeats(r, 37, 7), [2, 2, 5]]).reshape(2, 20)  # the padding row too
    dy = r.normal(size=(*idx.shape, 4))
    y, backward = layer.forward(case.asarray(idx, "int64"), training=True)
    assert backward(case.asarray(dy, dtype)) is None  # indices have no gradient
    t = oracle(torch.from_numpy(idx))
    t.backward(torch.from_numpy(dy))
    case.assert_close(y, t.detach().numpy(), dtype=dtype)
    case.assert_close(layer.weight.grad, oracle.weight.grad.numpy(), dtype=dtype)
    if padding_idx is not None:
        assert not backends.to_numpy(layer.weight.data)[padding_idx].any()  # drawn as zeros, as PyTorch does
        assert not backends.to_numpy(layer.weight.grad)[padding_idx].any()


def test_padding_idx_against_torch_and_every_backend() -> None:
    """The padding row's zero gradient is a convention, not a derivative: the oracle and parity check it."""
    r = np.random.default_rng(4)
    w, idx = r.normal(size=(6, 3)), np.array([[2, 2, 0, 5], [2, 1, 2, 2]])
    report = check_op(
        lambda w, i: (lambda y_b: (y_b[0], lambda dy: (y_b[1](dy)[1],)))(FE.embedding(i, w, padding_idx=2)),
        [w],
        extra=[idx],
        oracle=lambda w, i: torch.nn.functional.embedding(i, w, padding_idx=2),
        finite_differences=False,
        dy=r.normal(size=(2, 4, 3)),
    )
    assert any("oracle" in what for what, _ in report.checked)


def test_embedding_accepts_any_integer_dtype_and_rank() -> None:
    layer = Embedding(5, 2, seed=0)
    w = backends.to_numpy(layer.weight.data)
    for idx in (np.array([4, 0]), np.array([[[1]], [[3]]], np.int32), np.array([[1, 2]], np.uint8)):
        np.testing.assert_array_equal(layer(idx), w[idx.astype(np.int64)])
    assert layer.output_shape((None, 7)) == (None, 7, 2)


@pytest.mark.parametrize(
    "idx, match",
    [
        (np.array([[0, 5, 7]]), r"Embedding\(5, 2\) got indices from 0 to 7 .*\(2 outside 0..4\).*num_embeddings=8 or more"),
        (np.array([-1, 2]), r"indices from -1 to 2 .*\(1 outside 0..4\).*map negative indices into 0..4"),
    ],
)
def test_embedding_refuses_indices_out_of_range(idx: np.ndarray, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Embedding(5, 2, seed=0)(idx)


def test_embedding_errors_name_the_layer() -> None:
    with pytest.raises(TypeError, match=r"Embedding\(5, 2\) got input of dtype float32: expected an integer dtype"):
        Embedding(5, 2)(np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match=r"Embedding: padding_idx must be an int in -5..4"):
        Embedding(5, 2, padding_idx=5)
    assert Embedding(5, 2, padding_idx=-1).padding_idx == 4
    with pytest.raises(ShapeError, match=r"PositionalEmbedding\(4, 3\) got input of shape \(2, 5, 3\): 5 steps, more than"):
        PositionalEmbedding(4, 3)(np.zeros((2, 5, 3), np.float32))
    with pytest.raises(ShapeError, match=r"expects input of shape \(batch, time, 3\); got \(batch, 4\)"):
        PositionalEmbedding(4, 3).output_shape((None, 4))
    with pytest.raises(ValueError, match=r"Permute: dims must be a permutation of 1..2 .*got \(0, 1\) \(0 is the batch"):
        Permute((0, 1))
    with pytest.raises(TypeError, match=r"Permute: dims must be a tuple"):
        Permute(2)


def test_embedding_config_round_trip() -> None:
    layer = Embedding(9, 3, padding_idx=1, dtype="float64", seed=0)
    config = layer.get_config()
    assert config["init"] == "normal(1.0)" and config["padding_idx"] == 1
    rebuilt = Embedding.from_config(config)
    assert rebuilt.get_config() == config and repr(rebuilt) == "Embedding(9, 3, padding_idx=1)"
    pos = PositionalEmbedding(8, 3, init="normal", seed=0)
    assert PositionalEmbedding.from_config(pos.get_config()).get_config() == pos.get_config()
    assert Permute.from_config(Permute((2, 3, 1)).get_config()).dims == (2, 3, 1)


# -- the other layers against PyTorch, with check_layer ------------------------------------------


def test_positional_embedding_check_layer() -> None:
    layer = PositionalEmbedding(6, 4, seed=0)
    report = check_layer(layer, (3, 5, 4), oracle=lambda x, weight: x + weight[: x.shape[1]])
    assert report.checked


def test_linear_on_sequences_check_layer() -> None:
    report = check_layer(Linear(4, 3, seed=0), (2, 5, 4), oracle=torch.nn.Linear(4, 3, dtype=torch.float64))
    assert report.checked
    assert Linear(4, 3).output_shape((None, 7, 2, 4)) == (None, 7, 2, 3)


def test_permute_and_global_avg_pool1d_check_layer() -> None:
    assert check_layer(Permute((2, 1)), (2, 3, 5), oracle=lambda x: x.permute(0, 2, 1)).checked
    assert check_layer(
        GlobalAvgPool1d(), (2, 3, 5), oracle=torch.nn.Sequential(torch.nn.AdaptiveAvgPool1d(1), torch.nn.Flatten())
    )
    with pytest.raises(ShapeError, match=r"GlobalAvgPool1d\(\) got input of shape \(3, 5\): expected \(batch, C, L\)"):
        GlobalAvgPool1d()(np.zeros((3, 5)))


def test_linear_keeps_the_2d_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 2-D input never reaches the N-D path (no reshapes on the MLP's hot path); N-D errors name the last axis."""
    from portnn.functional import dense

    monkeypatch.setattr(dense, "_linear_nd", lambda *a, **k: pytest.fail("2-D input took the N-D path"))
    y, backward = linear(np.ones((2, 3)), np.ones((4, 3)), np.zeros(4))
    assert y.shape == (2, 4) and backward(np.ones((2, 4)))[0].shape == (2, 3)
    with pytest.raises(ShapeError, match=r"Linear maps the last axis, which has 5 features; give it in_features=5"):
        Linear(4, 3)(np.zeros((2, 7, 5), np.float32))


def test_linear_first_layer_skips_the_input_gradient_on_sequences() -> None:
    layer = Linear(4, 3, seed=0)
    x = np.random.default_rng(0).normal(size=(2, 5, 4)).astype(np.float32)
    _, with_dx = layer.forward(x)
    assert with_dx(np.ones((2, 5, 3), np.float32)).shape == (2, 5, 4)
    grad = layer.weight.grad
    layer.weight.grad = None
    _, without = layer.forward(x, input_grad=False)
    assert without(np.ones((2, 5, 3), np.float32)) is None
    np.testing.assert_allclose(layer.weight.grad, grad, rtol=1e-6)


# -- CrossEntropy and accuracy on sequences ------------------------------------------------------


def test_cross_entropy_on_sequences_counts_every_position(case: Any) -> None:
    r = np.random.default_rng(5)
    z, t = r.normal(size=(3, 4, 5)), r.integers(0, 5, size=(3, 4))
    loss = pn.losses.CrossEntropy()
    zc, tc = case.asarray(z, "float32"), case.asarray(t, "int64")
    expected = torch.nn.functional.cross_entropy(torch.from_numpy(z).reshape(-1, 5), torch.from_numpy(t).reshape(-1))
    case.assert_close(loss(zc, tc), expected.numpy(), dtype="float32")
    hits = int((z.argmax(-1) == t).sum())
    assert int(loss.correct(zc, tc)) == hits and loss.count(tc) == 12
    assert loss.count(case.asarray(np.ones((3, 4, 5)), "float32")) == 12
    case.assert_close(pn.metrics.accuracy(tc, zc), hits / 12, dtype="float32")
    case.assert_close(pn.metrics.accuracy(tc, case.asarray(z.argmax(-1), "int64")), hits / 12, dtype="float32")


@pytest.mark.parametrize(
    "target, match",
    [
        (
            np.zeros((2, 4), np.int64),
            r"logits of shape \(2, 3, 5\) .*take integer labels of shape \(2, 3\), one per position; got \(2, 4\)",
        ),
        (np.zeros((2, 5), np.int64), r"got \(2, 5\) \(logits in PyTorch's \(batch, classes, time\) layout\?"),
        (np.zeros((2, 3, 5), np.int64), r"one-hot labels\? pass them as float probabilities"),
        (np.zeros((2, 3), np.float64), r"probabilities of the same shape; got \(2, 3\) \(class indices\?"),
        (np.full((2, 3), 5), r"labels must be class indices in 0..4 for a model with 5 outputs; got values from 5 to 5"),
    ],
)
def test_cross_entropy_refuses_targets_that_do_not_fit_sequences(target: np.ndarray, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        pn.losses.CrossEntropy()(np.zeros((2, 3, 5)), target)


def test_accuracy_refuses_sequence_predictions_of_another_shape() -> None:
    with pytest.raises(ValueError, match=r"accuracy: y_true holds integer labels of shape \(2, 3\);.*\(2, 3, C\)"):
        pn.metrics.accuracy(np.zeros((2, 3), np.int64), np.zeros((2, 4, 5)))


# -- models that train on sequences --------------------------------------------------------------


def _copy_task(n: int, steps: int, vocab: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Each step's label is its token mod 3: an embedding and a linear layer learn it per position."""
    x = np.random.default_rng(seed).integers(0, vocab, size=(n, steps))
    return x, x % 3


def test_a_sequence_model_trains_and_evaluates(case: Any) -> None:
    x, y = _copy_task(64, 6, 10, 0)
    model = pn.Sequential([Embedding(10, 8), PositionalEmbedding(6, 8), Linear(8, 3)], seed=0)
    model.compile(loss=pn.losses.CrossEntropy(), optimizer=pn.optim.Adam(model.parameters(), lr=0.05))
    history = model.fit(x, y, epochs=15, batch_size=16, verbose=0)
    assert history.history["loss"][-1] < 0.3 * history.history["loss"][0]
    assert 0.9 < history.history["accuracy"][-1] <= 1.0  # counted over every position during the epoch
    logs = model.evaluate(x, y, return_dict=True)
    assert logs["accuracy"] > 0.95
    y_pred = model.predict(x, to_numpy=True)
    assert logs["accuracy"] == pytest.approx(float((y_pred.argmax(-1) == y).mean()))
    assert model.predict(x[:2]).shape == (2, 6, 3)


def test_a_vision_transformer_stem_walks_and_checks(case: Any) -> None:
    """Conv2d patches -> tokens -> positions -> a per-token Linear -> pooled -> classes: shapes, gradients, parity."""
    d = 4
    model = pn.Sequential(
        [
            pn.layers.Conv2d(1, d, 7, stride=7),
            pn.layers.Flatten(start_dim=2),
            Permute((2, 1)),
            PositionalEmbedding(16, d),
            Linear(d, d),
            Permute((2, 1)),
            GlobalAvgPool1d(),
            Linear(d, 3),
        ],
        input_shape=(1, 14, 14),
        seed=0,
    )
    assert model.output_shape == (None, 3)
    x = np.random.default_rng(0).normal(size=(4, 1, 14, 14))
    report = pn.testing.check_model(model, x, np.array([0, 1, 2, 0]), backends=[(case.name, case.device)])
    assert report.checked


def test_a_token_model_builds_without_input_shape() -> None:
    """After an Embedding the shape is unknown: a later Linear does not pretend its input is (batch, in_features)."""
    layers = [Embedding(10, 4), PositionalEmbedding(6, 4), Linear(4, 4), Permute((2, 1)), GlobalAvgPool1d(), Linear(4, 3)]
    model = pn.Sequential(layers, seed=0)
    assert model.predict(np.zeros((2, 6), np.int64)).shape == (2, 3)
    assert pn.Sequential(layers, seed=0, input_shape=(6,)).output_shape == (None, 3)


def test_sequence_layers_export_to_onnx_as_one_batched_graph() -> None:
    pytest.importorskip("ndonnx", reason="ONNX export runs the model on ndonnx arrays: pip install portnn[onnx]")
    ort = pytest.importorskip("onnxruntime", reason="the exported graphs are checked with onnxruntime")
    from portnn.onnx import to_onnx

    model = pn.Sequential(
        [
            pn.layers.Conv2d(1, 4, 7, stride=7),
            pn.layers.Flatten(start_dim=2),
            Permute((2, 1)),
            PositionalEmbedding(4, 4),
            Linear(4, 4),
            Permute((2, 1)),
            GlobalAvgPool1d(),
            Linear(4, 3),
        ],
        input_shape=(1, 14, 14),
        seed=0,
    )
    graph = to_onnx(model, (1, 14, 14))
    assert {p.key: p.value for p in graph.metadata_props}["portnn_graph"] == "batched"
    session = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    for n in (1, 5):
        x = np.random.default_rng(n).normal(size=(n, 1, 14, 14)).astype(np.float32)
        (got,) = session.run(None, {"input": x})
        np.testing.assert_allclose(got, model.predict(x, to_numpy=True), rtol=1e-5, atol=1e-5)


def test_every_metric_counts_sequence_positions() -> None:
    r = np.random.default_rng(6)
    t, z = r.integers(0, 4, size=(3, 5)), r.normal(size=(3, 5, 4))
    flat_t, flat_z = t.reshape(-1), z.reshape(-1, 4)
    m = pn.metrics
    np.testing.assert_array_equal(m.confusion_matrix(t, z), m.confusion_matrix(flat_t, flat_z))
    np.testing.assert_array_equal(m.confusion_matrix(t, z.argmax(-1)), m.confusion_matrix(flat_t, flat_z))
    assert float(m.top_k_accuracy(t, z, k=2)) == float(m.top_k_accuracy(flat_t, flat_z, k=2))
    for got, want in zip(m.precision_recall_f1(t, z, average="macro"), m.precision_recall_f1(flat_t, flat_z, average="macro")):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(m.per_class_accuracy(t, z), m.per_class_accuracy(flat_t, flat_z))

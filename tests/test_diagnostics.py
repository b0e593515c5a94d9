"""portnn.diagnostics on every backend: the numbers the figures show, against NumPy float64, PyTorch and scikit-learn."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import portnn as pn
from portnn import diagnostics
from portnn.layers import Linear, ReLU, Sigmoid, Softmax, Tanh

torch = pytest.importorskip("torch", reason="PyTorch is the loss oracle here (pip install torch==2.13.0)")

PACKAGE = Path(pn.__file__).resolve().parent
RNG = np.random.default_rng(3)
X = RNG.normal(size=(30, 4)).astype(np.float32)
Y3 = np.arange(30) % 3


def on(case: Any, layers: list[Any], seed: int = 0) -> pn.Sequential:
    """A model built on NumPy (the same weights everywhere) and moved to the case's backend."""
    with pn.use_backend("numpy"):
        model = pn.Sequential(layers, seed=seed)
    return model.to(case.name, case.device)


def host_outputs(model: pn.Sequential, x: np.ndarray) -> np.ndarray:
    return pn.to_numpy(model.predict(x)).astype(np.float64)


def test_classification_of_logits_matches_torch(case: Any) -> None:
    model = on(case, [Linear(4, 8), Tanh(), Linear(8, 3)])
    result = diagnostics.classification(model, case.asarray(X), case.asarray(Y3), batch_size=7)  # batches of 7 add up
    z = torch.tensor(host_outputs(model, X))
    expected_losses = torch.nn.functional.cross_entropy(z, torch.tensor(Y3), reduction="none").numpy()
    for got in result:
        assert isinstance(got, np.ndarray), type(got)  # results come to the host
    np.testing.assert_array_equal(result.labels, Y3)
    np.testing.assert_allclose(result.probabilities, torch.softmax(z, dim=1).numpy(), rtol=1e-12)
    np.testing.assert_allclose(result.losses, expected_losses, rtol=1e-10)
    assert result.losses.dtype == np.float64 and result.predicted.dtype == np.int64
    np.testing.assert_array_equal(result.predicted, z.numpy().argmax(axis=1))
    assert result.accuracy == pytest.approx(np.mean(z.numpy().argmax(axis=1) == Y3))
    assert result.loss == pytest.approx(expected_losses.mean())
    np.testing.assert_allclose(diagnostics.example_losses(model, X, Y3), expected_losses, rtol=1e-10)


def test_a_single_logit_is_a_binary_model(case: Any) -> None:
    model = on(case, [Linear(4, 1)])
    y = (X[:, 0] > 0).astype(np.float32)[:, None]  # BinaryCrossEntropy's (n, 1) targets are labels here
    result = diagnostics.classification(model, case.asarray(X), case.asarray(y))
    z = torch.tensor(host_outputs(model, X))
    expected = torch.nn.functional.binary_cross_entropy_with_logits(z, torch.tensor(y, dtype=torch.float64), reduction="none")
    np.testing.assert_allclose(result.losses, expected.numpy()[:, 0], rtol=1e-10)
    p = torch.sigmoid(z).numpy()[:, 0]
    np.testing.assert_allclose(result.probabilities, np.stack([1 - p, p], axis=1), rtol=1e-10)
    np.testing.assert_array_equal(result.predicted, (z.numpy()[:, 0] > 0).astype(np.int64))


@pytest.mark.parametrize(("head", "single"), [(Sigmoid, True), (Softmax, False)])
def test_a_final_sigmoid_or_softmax_means_probabilities(case: Any, head: type, single: bool) -> None:
    """The same classifier with and without the final Sigmoid/Softmax: the same probabilities and losses."""
    out = 1 if single else 3
    with_head = on(case, [Linear(4, out), head()])
    logits_only = on(case, [Linear(4, out)])
    y = (X[:, 0] > 0).astype(np.int64) if single else Y3
    a = diagnostics.classification(with_head, case.asarray(X), y)
    b = diagnostics.classification(logits_only, case.asarray(X), y)
    np.testing.assert_allclose(a.probabilities, b.probabilities, rtol=2e-6, atol=1e-7)  # float32 sigmoid/softmax vs float64
    np.testing.assert_allclose(a.losses, b.losses, rtol=2e-5, atol=1e-6)
    # told otherwise, the outputs are read as logits: a second softmax/sigmoid, other numbers
    c = diagnostics.classification(with_head, case.asarray(X), y, from_logits=True)
    assert not np.allclose(c.probabilities, a.probabilities)


def test_confident_mistakes_keep_their_full_loss(case: Any) -> None:
    """Losses come from log-probabilities: a margin of 2e4 costs 2e4, not -log(a probability that underflowed)."""
    model = on(case, [Linear(1, 2)])
    model.load_state_dict({"0.weight": np.array([[1e4], [-1e4]], np.float32), "0.bias": np.zeros(2, np.float32)})
    result = diagnostics.classification(model, case.asarray(np.array([[1.0], [-1.0]], np.float32)), np.array([1, 1]))
    np.testing.assert_allclose(result.losses, [2e4, 0.0], rtol=1e-6, atol=1e-12)
    assert result.accuracy == 0.5


def test_predictions_without_labels(case: Any) -> None:
    model = on(case, [Linear(4, 3)])
    result = diagnostics.classification(model, case.asarray(X))
    assert result.labels is None and result.losses is None
    np.testing.assert_array_equal(result.predicted, host_outputs(model, X).argmax(axis=1))
    with pytest.raises(ValueError, match=r"Classification.accuracy: no labels were given; pass y"):
        _ = result.accuracy


def test_worst_predictions_are_the_highest_losses_in_a_stable_order(case: Any) -> None:
    model = on(case, [Linear(4, 3)])
    x = np.concatenate([X, X[:3]])  # repeated examples: equal losses, listed in order
    y = np.concatenate([Y3, Y3[:3]])
    index, worst = diagnostics.worst_predictions(model, case.asarray(x), case.asarray(y), n=40)
    losses = diagnostics.example_losses(model, x, y)
    np.testing.assert_array_equal(index, np.argsort(-losses, kind="stable"))
    np.testing.assert_allclose(worst.losses, losses[index])
    np.testing.assert_array_equal(worst.labels, y[index])
    index5, _ = diagnostics.worst_predictions(model, x, y, n=5)
    np.testing.assert_array_equal(index5, index[:5])


def test_labels(case: Any) -> None:
    np.testing.assert_array_equal(diagnostics.class_labels(case.asarray([[1.0], [0.0]], "float32")), [1, 0])
    np.testing.assert_array_equal(diagnostics.class_labels([True, False]), [1, 0])
    model = on(case, [Linear(4, 3)])
    with pytest.raises(ValueError, match=r"example_losses: y holds labels from 0 to 3 but the model predicts 3 classes"):
        diagnostics.example_losses(model, case.asarray(X), np.arange(30) % 4)
    with pytest.raises(ValueError, match=r"classification: x has 30 examples but y has 29; pass one label per example"):
        diagnostics.classification(model, case.asarray(X), Y3[:29])
    with pytest.raises(ValueError, match=r"class_labels: y holds non-integer values"):
        diagnostics.class_labels(np.array([0.5, 1.0]))
    with pytest.raises(ValueError, match=r"class_labels: y must be class labels of shape \(N,\); got shape \(2, 3\)"):
        diagnostics.class_labels(np.eye(3)[:2])


def test_errors_name_the_function_and_the_fix() -> None:
    with pytest.raises(TypeError, match=r"classification: model must be a portnn model .*; got str"):
        diagnostics.classification("model", X)
    model = pn.Sequential([Linear(4, 3)], seed=0)
    with pytest.raises(TypeError, match=r"from_logits must be True, False or None"):
        diagnostics.classification(model, X, from_logits="yes")
    # a torch CPU tensor is shared with a NumPy model through DLPack (tests/test_dlpack.py); another device is refused
    shared, host = diagnostics.classification(model, torch.ones((2, 4))), diagnostics.classification(model, np.ones((2, 4)))
    np.testing.assert_array_equal(shared.probabilities, host.probabilities)
    with pytest.raises(TypeError, match=r"classification: x is a torch array on meta but the model's parameters live on numpy"):
        diagnostics.classification(model, torch.ones((2, 4), device="meta"))
    with pytest.raises(ValueError, match=r"worst_predictions: n must be"):
        diagnostics.worst_predictions(model, X, Y3, n=0)


def test_any_object_with_layers_backend_and_dtype_is_a_model(case: Any) -> None:
    class Tiny:  # not a Sequential: duck typing
        def __init__(self) -> None:
            self.layers = on(case, [Linear(4, 3), ReLU(), Linear(3, 2)]).layers
            self.backend, self.dtype = case.backend, "float32"

    tiny = Tiny()
    y = np.arange(30) % 2
    result = diagnostics.classification(tiny, X, y)
    h = X.astype(np.float64)
    for layer in tiny.layers:
        h = pn.to_numpy(layer(case.asarray(h, "float32"))).astype(np.float64)
    np.testing.assert_array_equal(result.predicted, h.argmax(axis=1))
    assert set(diagnostics.activation_fractions(tiny, X)) == {"relu"}


# -- confusions ------------------------------------------------------------------------------


def test_confusion_against_scikit_learn(case: Any) -> None:
    skm = pytest.importorskip("sklearn.metrics", reason="scikit-learn is not installed (the oracle here)")
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 4, size=100)
    scores = rng.normal(size=(100, 4)).astype(np.float32)
    result = diagnostics.confusion(y_true, case.asarray(scores))  # NumPy labels, the case's scores: both come to the host
    predicted = scores.argmax(axis=1)
    np.testing.assert_array_equal(result.matrix, skm.confusion_matrix(y_true, predicted, labels=range(4)))
    np.testing.assert_array_equal(result.support, np.bincount(y_true, minlength=4))
    np.testing.assert_allclose(result.per_class_accuracy, skm.recall_score(y_true, predicted, average=None, labels=range(4)))
    assert result.per_class_accuracy.dtype == np.float64
    assert result.accuracy == pytest.approx(skm.accuracy_score(y_true, predicted))


def test_confusion_of_a_binary_model(case: Any) -> None:
    y = case.asarray([0, 1, 1, 0], "int64")
    logits = case.asarray([[-1.0], [2.0], [-0.5], [0.3]], "float32")
    result = diagnostics.confusion(y, logits, threshold=0.0)
    np.testing.assert_array_equal(result.matrix, [[1, 1], [1, 1]])
    with pytest.raises(ValueError, match=r"confusion_matrix: y_pred of shape \(4, 1\) .* Pass threshold=0\.0 for logits"):
        diagnostics.confusion(y, logits)
    probabilities = case.asarray([[0.2], [0.9], [0.4], [0.6]], "float32")
    np.testing.assert_array_equal(diagnostics.confusion(y, probabilities).matrix, [[1, 1], [1, 1]])


def test_confusion_of_labels_has_at_least_two_classes() -> None:
    result = diagnostics.confusion(np.zeros(3, np.int64), np.zeros(3, np.int64))
    np.testing.assert_array_equal(result.matrix, [[3, 0], [0, 0]])
    np.testing.assert_array_equal(result.per_class_accuracy, [1.0, 0.0])  # no examples of class 1: 0
    assert diagnostics.confusion(np.array([0, 1, 4]), np.array([0, 1, 4]), num_classes=6).matrix.shape == (6, 6)


def test_most_confused() -> None:
    m = np.array([[5, 2, 0], [2, 4, 3], [1, 0, 6]])
    assert diagnostics.most_confused(m) == [(1, 2, 3), (0, 1, 2), (1, 0, 2), (2, 0, 1)]  # ties in row-major order
    assert diagnostics.most_confused(m, top=1) == [(1, 2, 3)]


# -- units -----------------------------------------------------------------------------------


def test_top_activating_against_numpy(case: Any) -> None:
    model = on(case, [Linear(4, 6), ReLU(), Linear(6, 2)])
    result = diagnostics.top_activating(model, "linear", 4, case.asarray(X), top=5, batch_size=8)
    w, b = pn.to_numpy(model.layers[0].weight.data), pn.to_numpy(model.layers[0].bias.data)
    expected = np.maximum(X.astype(np.float64) @ w[4] + b[4], 0)
    np.testing.assert_allclose(result.activations, expected, rtol=2e-5, atol=1e-6)
    np.testing.assert_array_equal(result.indices, np.argsort(-result.activations, kind="stable")[:5])
    assert (result.layer, result.measured) == (0, 1)
    last = diagnostics.top_activating(model, -1, 1, X, top=50)  # no activation after it: the Linear output itself
    assert (last.layer, last.measured) == (2, 2) and last.indices.shape == (30,)


def test_top_activating_errors() -> None:
    model = pn.Sequential([Linear(2, 4), ReLU(), Linear(4, 3)], seed=0)
    x = X[:, :2]
    with pytest.raises(TypeError, match=r"top_activating: layer 'relu' is ReLU\(\), not a Linear layer; pass one of "):
        diagnostics.top_activating(model, "relu", 0, x)
    with pytest.raises(ValueError, match=r"top_activating: unit must be an int in 0\.\.3 for Linear\(2, 4\); got 4"):
        diagnostics.top_activating(model, 0, 4, x)
    with pytest.raises(KeyError, match=r"top_activating: no layer named 'dense'; the model has \['linear', 'relu', 'linear_1'\]"):
        diagnostics.top_activating(model, "dense", 0, x)
    with pytest.raises(IndexError, match=r"top_activating: layer index 3 is out of range for a model of 3 layers"):
        diagnostics.top_activating(model, 3, 0, x)
    with pytest.raises(TypeError, match=r"top_activating: layer must be a layer name \(str\) or an index \(int\); got 1.5"):
        diagnostics.top_activating(model, 1.5, 0, x)


def test_units_by_weight_norm(case: Any) -> None:
    layer = on(case, [Linear(3, 5)]).layers[0]
    norms = np.linalg.norm(pn.to_numpy(layer.weight.data).astype(np.float64), axis=1)
    assert diagnostics.units_by_weight_norm(layer) == list(np.argsort(-norms, kind="stable"))
    assert diagnostics.units_by_weight_norm(layer, top=2) == list(np.argsort(-norms, kind="stable")[:2])
    with pytest.raises(TypeError, match=r"units_by_weight_norm: ReLU\(\) has no weight"):
        diagnostics.units_by_weight_norm(ReLU())


def test_activation_fractions_are_what_fit_records(case: Any) -> None:
    """The same units counted the same way: fit(record=True)'s fractions of an epoch that changed nothing."""
    model = on(case, [Linear(4, 8), ReLU(), Linear(8, 6), Sigmoid(), Linear(6, 3)])
    before = diagnostics.activation_fractions(model, case.asarray(X), batch_size=7)
    optimizer = pn.optim.SGD(lr=1e-30)  # a step too small to move a float32 weight
    history = model.fit(X, Y3, loss=pn.losses.CrossEntropy(), optimizer=optimizer, epochs=1, batch_size=10, verbose=0,
                        record=True, shuffle=False)  # fmt: skip
    recorded = diagnostics.recorded_fractions(history)
    assert list(before) == list(recorded) == ["relu", "sigmoid"]
    for name in before:
        assert before[name].dtype == np.float64
        np.testing.assert_allclose(recorded[name], before[name], err_msg=name)
    assert diagnostics.activation_fractions(on(case, [Linear(4, 2)]), X) == {}


def test_recorded_fractions_and_grad_norms_from_records() -> None:
    records = {
        "step": [0, 5],
        "grad_norm": {"linear": [1.0, 0.5]},
        "active_fraction": {"relu": [np.array([0.5, 0.0]), np.array([1.0, 0.0, 0.25])], "tanh": []},
    }
    fractions = diagnostics.recorded_fractions(records)
    assert list(fractions) == ["relu"]  # the last epoch; a layer without an epoch is left out
    np.testing.assert_array_equal(fractions["relu"], [1.0, 0.0, 0.25])
    steps, norms = diagnostics.recorded_grad_norms(records)
    assert steps.dtype == np.int64 and steps.tolist() == [0, 5] and norms["linear"].tolist() == [1.0, 0.5]
    with pytest.raises(ValueError, match=r"recorded_grad_norms: History has no records\['grad_norm'\]; .*record=True"):
        diagnostics.recorded_grad_norms(pn.History())


def test_unit_shares() -> None:
    shares = diagnostics.unit_shares({"relu": np.array([0.0, 0.5, 1.0, 0.995]), "tanh": [0.0, 0.0]}, always_on=0.99)
    assert shares == {
        "relu": diagnostics.UnitShares(units=4, dead=0.25, always_on=0.5),
        "tanh": diagnostics.UnitShares(units=2, dead=1.0, always_on=0.0),
    }
    with pytest.raises(ValueError, match=r"unit_shares: always_on must be a fraction in \(0, 1\]; got 0"):
        diagnostics.unit_shares({}, always_on=0)


# -- where the module sits ---------------------------------------------------------------------


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            names.add((node.module or "").split(".")[0] or ",".join(a.name for a in node.names))
    return names


@pytest.mark.parametrize("module", ["diagnostics.py", "plot.py"])
def test_no_upper_room_imported(module: str) -> None:
    """diagnostics (and plot, which only draws) import nothing of the model, the loop, files or callbacks."""
    imported = _imports(PACKAGE / module)
    assert not imported & {"model", "training", "serialization", "callbacks", "_resume", "transfer"}, imported
    names = set()  # every name the code uses (docstrings aside)
    for node in ast.walk(ast.parse((PACKAGE / module).read_text())):
        if isinstance(node, ast.Name):
            names.add(node.id)
        elif isinstance(node, ast.Attribute):
            names.add(node.attr)
    assert not names & {"Sequential", "History", "_ingest_x", "_check_loss", "predict"}, "duck typing only, no model internals"

"""portnn.plot on every backend: each function returns a Figure that saves to a PNG of the right size with something drawn."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import portnn as pn
from portnn.layers import Linear, ReLU, Sigmoid, Tanh

mpl_image = pytest.importorskip("matplotlib.image")
from matplotlib.figure import Figure  # noqa: E402

RNG = np.random.default_rng(0)
X_IMG = RNG.random((40, 64), dtype=np.float32)  # 8x8 "images": the shape is inferred from the square
Y_IMG = np.arange(40) % 3
X_2D = RNG.normal(size=(60, 2)).astype(np.float32)
Y_2D = (X_2D[:, 0] > 0).astype(np.int64) + (X_2D[:, 1] > 1)


def on(case: Any, layers: list[pn.layers.Layer], seed: int = 0) -> pn.Sequential:
    """A model built on NumPy (the same weights everywhere) and moved to the case's backend."""
    with pn.use_backend("numpy"):
        model = pn.Sequential(layers, seed=seed)
    return model.to(case.name, case.device)


def check_png(fig: Any, path: Path) -> np.ndarray:
    """Save ``fig`` and check the PNG: figsize x dpi pixels, not blank."""
    assert isinstance(fig, Figure)
    fig.savefig(path)
    pixels = mpl_image.imread(path)
    w, h = fig.get_size_inches() * fig.dpi
    assert pixels.shape[:2] == (round(h), round(w)), f"{path.name}: {pixels.shape[:2]} pixels, expected {(round(h), round(w))}"
    assert pixels[..., :3].var() > 0, f"{path.name} is blank"
    return pixels


def history_with_records(case: Any) -> pn.History:
    """A History as fit(..., record=True) returns it, with the fractions as arrays of the case's backend."""
    history = pn.History()
    for epoch in range(3):
        history.append(epoch, {"loss": 1.0 / (epoch + 1), "accuracy": 0.5 + 0.1 * epoch, "lr": 0.1, "epoch_time": 0.1})
    history.records = {
        "step": [0, 5, 10, 15],
        "grad_norm": {"linear": [1e-3, 5e-4, 2e-4, 1e-4], "linear_1": [0.5, 0.4, 0.3, 0.2], "linear_2": [2.0, 1.5, 1.0, 0.9]},
        "active_fraction": {
            "relu": [case.asarray([0.5, 0.0, 1.0, 0.2])] * 3,
            "tanh": [case.asarray([0.0, 0.0, 0.995, 0.3, 0.7]), case.asarray([0.0, 0.1, 1.0, 0.3, 0.7])],
        },
    }
    return history


def test_learning_curves_of_a_real_fit(case: Any, tmp_path: Path) -> None:
    model = on(case, [Linear(2, 8), ReLU(), Linear(8, 3)])
    history = model.fit(
        case.asarray(X_2D), case.asarray(Y_2D), loss=pn.losses.CrossEntropy(), optimizer=pn.optim.SGD(lr=0.1),
        epochs=3, batch_size=16, validation_data=(X_2D, Y_2D), verbose=0,
    )  # fmt: skip
    fig = pn.plot.learning_curves(history, title="toy")
    assert [ax.get_ylabel() for ax in fig.axes] == ["loss", "accuracy"]
    assert [len(line.get_xdata()) for line in fig.axes[0].lines] == [3, 3]
    check_png(fig, tmp_path / "curves.png")


def test_learning_curves_without_accuracy_is_one_panel(tmp_path: Path) -> None:
    fig = pn.plot.learning_curves({"loss": [3.0, 2.0]})
    assert len(fig.axes) == 1
    check_png(fig, tmp_path / "loss.png")
    with pytest.raises(ValueError, match="no 'loss'"):
        pn.plot.learning_curves({"loss": []})
    with pytest.raises(TypeError, match="History returned by model.fit"):
        pn.plot.learning_curves([1.0, 2.0])


def test_decision_boundary_multiclass_and_single_logit(case: Any, tmp_path: Path) -> None:
    model = on(case, [Linear(2, 8), Tanh(), Linear(8, 3)])
    fig = pn.plot.decision_boundary(model, case.asarray(X_2D), case.asarray(Y_2D), resolution=40)
    assert "3 classes" in fig.axes[0].get_title()
    check_png(fig, tmp_path / "three.png")

    binary = on(case, [Linear(2, 8), ReLU(), Linear(8, 1)])
    y01 = (X_2D[:, 0] > 0).astype(np.float32)[:, None]  # BinaryCrossEntropy targets
    fig = pn.plot.decision_boundary(binary, case.asarray(X_2D), case.asarray(y01), resolution=40, title="binary")
    assert fig.axes[0].get_title() == "binary" and len(fig.axes[0].collections) >= 2


def test_decision_boundary_into_given_axes() -> None:
    model = pn.Sequential([Linear(2, 3)], seed=0)
    fig = Figure(figsize=(8, 3), dpi=50)
    left, right = fig.subplots(1, 2)
    assert pn.plot.decision_boundary(model, X_2D, Y_2D, ax=right, resolution=20) is fig
    assert right.get_title() and not left.get_title()


def test_decision_boundary_errors(case: Any) -> None:
    model = on(case, [Linear(2, 2)])
    with pytest.raises(ValueError, match=r"decision_boundary: x must hold 2-D points of shape \(n, 2\); got shape \(60, 1\)"):
        pn.plot.decision_boundary(model, X_2D[:, :1], Y_2D)
    with pytest.raises(ValueError, match="decision_boundary: y holds labels from 0 to 2 but the model predicts 2 classes"):
        pn.plot.decision_boundary(model, X_2D, Y_2D, resolution=10)


def test_confusion_matrix_from_logits_and_labels(case: Any, tmp_path: Path) -> None:
    y_true = np.array([0, 0, 1, 1, 2, 2, 2, 0])
    logits = np.eye(3, dtype=np.float32)[[0, 1, 1, 1, 2, 0, 2, 0]]
    fig = pn.plot.confusion_matrix(case.asarray(y_true), case.asarray(logits), class_names=["cat", "dog", "eel"])
    cm_ax, bar_ax = fig.axes[0], fig.axes[1]  # the colorbar comes last
    texts = {(round(t.get_position()[1]), round(t.get_position()[0])): t.get_text() for t in cm_ax.texts}
    assert texts[(0, 0)] == "2" and texts[(0, 1)] == "1" and texts[(2, 0)] == "1" and (1, 0) not in texts
    assert [round(b.get_height(), 4) for b in bar_ax.patches] == [round(2 / 3, 4), 1.0, round(2 / 3, 4)]
    assert "75.00%" in cm_ax.get_title()
    check_png(fig, tmp_path / "cm.png")
    fig = pn.plot.confusion_matrix(case.asarray(y_true), case.asarray(np.argmax(logits, axis=1)))
    assert "75.00%" in fig.axes[0].get_title()


def test_confusion_matrix_errors() -> None:
    with pytest.raises(ValueError, match="confusion_matrix: 2 class_names but y_pred has scores for 3 classes"):
        pn.plot.confusion_matrix(np.array([0, 1]), np.eye(3)[:2], class_names=["a", "b"])
    with pytest.raises(ValueError, match=r"y_true has 2 labels but y_pred has shape \(3,\)"):
        pn.plot.confusion_matrix(np.array([0, 1]), np.array([0, 1, 1]))


def test_worst_predictions_are_the_highest_losses(case: Any, tmp_path: Path) -> None:
    model = on(case, [Linear(64, 3)])
    fig = pn.plot.worst_predictions(model, case.asarray(X_IMG), case.asarray(Y_IMG), n=6, class_names=["a", "b", "c"])
    assert len(fig.axes) == 6
    logits = pn.to_numpy(model.predict(X_IMG)).astype(np.float64)
    logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    worst = np.argsort(logp[np.arange(40), Y_IMG])[:6]
    assert [ax.get_title().split(":")[0] for ax in fig.axes] == [f"#{i}" for i in worst]
    assert fig.axes[0].get_images()[0].get_array().shape == (8, 8)
    check_png(fig, tmp_path / "worst.png")


def test_worst_predictions_infers_mnist_and_nchw_shapes(tmp_path: Path) -> None:
    x = RNG.random((10, 784), dtype=np.float32)
    model = pn.Sequential([Linear(784, 10)], seed=0)
    fig = pn.plot.worst_predictions(model, x, np.arange(10), n=3)
    assert fig.axes[0].get_images()[0].get_array().shape == (28, 28)
    nchw = pn.Sequential([pn.layers.Flatten(), Linear(36, 2)], seed=0, input_shape=(1, 6, 6))
    fig = pn.plot.worst_predictions(nchw, RNG.random((5, 1, 6, 6), dtype=np.float32), np.zeros(5, dtype=np.int64), n=2)
    assert fig.axes[0].get_images()[0].get_array().shape == (6, 6)
    with pytest.raises(ValueError, match=r"worst_predictions: cannot tell how to draw examples of shape \(10,\).*image_shape"):
        pn.plot.worst_predictions(pn.Sequential([Linear(10, 2)], seed=0), np.ones((3, 10), np.float32), np.zeros(3, int))
    with pytest.raises(ValueError, match=r"image_shape=\(3, 3\) holds 9 values but each example has 10"):
        pn.plot.worst_predictions(
            pn.Sequential([Linear(10, 2)], seed=0), np.ones((3, 10), np.float32), np.zeros(3, int), image_shape=(3, 3)
        )


def test_neuron_shows_weights_and_top_examples(case: Any, tmp_path: Path) -> None:
    model = on(case, [Linear(64, 8), ReLU(), Linear(8, 3)])
    x = case.asarray(X_IMG)
    fig = pn.plot.neuron(model, "linear", 2, x, top=4)
    assert "linear, unit 2 (after relu)" in fig.get_suptitle()
    w = pn.to_numpy(model.layers[0].weight.data)[2]
    acts = np.maximum(X_IMG @ w + pn.to_numpy(model.layers[0].bias.data)[2], 0)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title().startswith("#")]
    assert [int(t[1:].split(":")[0]) for t in titles] == list(np.argsort(-acts, kind="stable")[:4])
    np.testing.assert_allclose(fig.axes[0].get_images()[0].get_array(), w.reshape(8, 8))
    check_png(fig, tmp_path / "neuron.png")
    # a hidden Linear layer (by index): its 8 weights are bars, not an image
    fig = pn.plot.neuron(model, 2, 0, x, top=3)
    assert "linear_1, unit 0:" in fig.get_suptitle() and not fig.axes[0].get_images()


def test_neuron_of_a_2d_model_is_a_scatter() -> None:
    model = pn.Sequential([Linear(2, 4), Tanh(), Linear(4, 3)], seed=0)
    fig = pn.plot.neuron(model, "linear", 1, X_2D, top=5)
    assert "(after tanh)" in fig.get_suptitle() and fig.axes[1].get_xlabel() == "x[:, 0]"


def test_neuron_errors(case: Any) -> None:
    model = on(case, [Linear(2, 4), ReLU(), Linear(4, 3)])
    with pytest.raises(
        TypeError, match=r"neuron: layer 'relu' is ReLU\(\), not a Linear layer; pass one of \['0: linear', '2: linear_1'\]"
    ):
        pn.plot.neuron(model, "relu", 0, X_2D)
    with pytest.raises(ValueError, match=r"neuron: unit must be an int in 0\.\.3 for Linear\(2, 4\); got 4"):
        pn.plot.neuron(model, 0, 4, X_2D)
    with pytest.raises(KeyError, match="neuron: .*no layer named 'dense'"):
        pn.plot.neuron(model, "dense", 0, X_2D)


def tiny_model_with_known_units(case: Any) -> tuple[pn.Sequential, np.ndarray, dict[str, np.ndarray]]:
    """x in 1-D; unit 0 is x, unit 1 is -x, unit 2 is dead (-1), unit 3 is always on (+1); then Tanh and Sigmoid of them."""
    model = on(case, [Linear(1, 4), ReLU(), Linear(4, 2), Tanh(), Linear(2, 2), Sigmoid()])
    state = {
        "0.weight": np.array([[1.0], [-1.0], [0.0], [0.0]], np.float32),
        "0.bias": np.array([0.0, 0.0, -1.0, 1.0], np.float32),
        "2.weight": np.array([[1.0, 0, 0, 0], [0, 0, 0, -1.0]], np.float32),  # relu0, -relu3 (never positive)
        "2.bias": np.zeros(2, np.float32),
        "4.weight": np.array([[1.0, 0], [0, 0]], np.float32),
        "4.bias": np.array([0.0, 0.0], np.float32),  # sigmoid(tanh0) > 0.5 where x > 0; sigmoid(0) = 0.5 is not active
    }
    model.load_state_dict(state)
    x = np.array([[1.0], [2.0], [-1.0], [3.0], [0.0]], np.float32)
    expected = {
        "relu": np.array([3 / 5, 1 / 5, 0.0, 1.0]),
        "tanh": np.array([3 / 5, 0.0]),
        "sigmoid": np.array([3 / 5, 0.0]),
    }
    return model, x, expected


def test_activation_fractions_by_hand(case: Any) -> None:
    model, x, expected = tiny_model_with_known_units(case)
    got = pn.plot.activation_fractions(model, case.asarray(x), batch_size=2)  # batches of 2, 2 and 1 add up
    assert list(got) == ["relu", "tanh", "sigmoid"]
    for name, value in expected.items():
        assert isinstance(got[name], np.ndarray) and got[name].dtype == np.float64
        np.testing.assert_allclose(got[name], value, err_msg=name)
    assert pn.plot.activation_fractions(on(case, [Linear(1, 2)]), x) == {}


def test_activation_stats_from_a_model(case: Any, tmp_path: Path) -> None:
    model, x, _ = tiny_model_with_known_units(case)
    fig = pn.plot.activation_stats(model, case.asarray(x))
    ax = fig.axes[0]
    dead, on_ = ax.containers
    assert [round(b.get_height(), 4) for b in dead] == [0.25, 0.5, 0.5]
    assert [round(b.get_height(), 4) for b in on_] == [0.25, 0.0, 0.0]
    assert "on 5 examples" in ax.get_title()


def test_activation_stats_from_records_uses_the_last_epoch(case: Any, tmp_path: Path) -> None:
    fig = pn.plot.activation_stats(history_with_records(case), always_on=0.99)
    dead, on_ = fig.axes[0].containers
    assert [b.get_height() for b in dead] == [0.25, 0.2]  # tanh: the last epoch has one dead unit, not two
    assert [b.get_height() for b in on_] == [0.25, 0.2]
    assert "epoch 3" in fig.axes[0].get_title() or "epoch 2" in fig.axes[0].get_title()
    check_png(fig, tmp_path / "stats_history.png")


def test_activation_stats_errors(case: Any) -> None:
    with pytest.raises(ValueError, match=r"activation_stats: History has no records\['active_fraction'\]; .*record=True"):
        pn.plot.activation_stats(pn.History())
    model, x, _ = tiny_model_with_known_units(case)
    with pytest.raises(ValueError, match="pass the examples x"):
        pn.plot.activation_stats(model)
    with pytest.raises(ValueError, match="always_on must be a fraction"):
        pn.plot.activation_stats(model, x, always_on=2)
    with pytest.raises(ValueError, match="no activation layers"):
        pn.plot.activation_stats(on(case, [Linear(1, 2)]), x)


def test_grad_norms_one_line_per_layer(case: Any, tmp_path: Path) -> None:
    history = history_with_records(case)
    fig = pn.plot.grad_norms(history)
    ax = fig.axes[0]
    assert [line.get_label() for line in ax.get_lines()] == ["linear", "linear_1", "linear_2"]
    assert list(ax.get_lines()[0].get_xdata()) == [0, 5, 10, 15]
    assert ax.get_yscale() == "log"
    check_png(fig, tmp_path / "grads.png")
    assert pn.plot.grad_norms(history.records, log=False).axes[0].get_yscale() == "linear"
    with pytest.raises(ValueError, match="record=True"):
        pn.plot.grad_norms(pn.History())


def test_without_matplotlib_calls_say_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    model = pn.Sequential([Linear(2, 3)], seed=0)
    calls = [
        lambda: pn.plot.learning_curves({"loss": [1.0]}),
        lambda: pn.plot.decision_boundary(model, X_2D, Y_2D),
        lambda: pn.plot.confusion_matrix(np.array([0, 1]), np.array([0, 1])),
        lambda: pn.plot.worst_predictions(model, X_2D, Y_2D),
        lambda: pn.plot.neuron(model, 0, 0, X_2D),
        lambda: pn.plot.activation_stats(model, X_2D),
        lambda: pn.plot.grad_norms(pn.History()),
    ]
    for call in calls:
        with pytest.raises(ImportError, match=r'needs matplotlib.*pip install "portnn\[plot\]"'):
            call()
    assert pn.plot.activation_fractions(pn.Sequential([Linear(2, 2), ReLU()], seed=0), X_2D)["relu"].shape == (2,)


def test_import_does_not_need_matplotlib() -> None:
    code = "import sys; sys.modules['matplotlib'] = None; import portnn, portnn.plot; print('matplotlib.figure' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"

"""portnn.report: the files, the numbers in metrics.json, and a page that shows every figure with escaped text."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import portnn as pn
from portnn.layers import Linear, ReLU

mpl_image = pytest.importorskip("matplotlib.image")

RNG = np.random.default_rng(1)
X = RNG.random((90, 16), dtype=np.float32)
Y = (X[:, :8].sum(axis=1) > X[:, 8:].sum(axis=1)).astype(np.int64) + (X[:, 0] > 0.8)


def trained(case: Any, record: bool) -> tuple[pn.Sequential, pn.History]:
    with pn.use_backend("numpy"):
        model = pn.Sequential([Linear(16, 12), ReLU(), Linear(12, 3)], seed=0)
    model.to(case.name, case.device)
    history = model.fit(
        case.asarray(X), case.asarray(Y), loss=pn.losses.CrossEntropy(), optimizer=pn.optim.SGD(lr=0.2, momentum=0.9),
        epochs=3, batch_size=30, validation_data=(X, Y), verbose=0, record=record,
    )  # fmt: skip
    return model, history


def check_page(folder: Path, files: dict[str, Path]) -> str:
    page = (folder / "index.html").read_text(encoding="utf-8")
    pngs = sorted(p.name for p in folder.glob("*.png"))
    assert pngs == sorted(name for name in files if name.endswith(".png"))
    assert sorted(re.findall(r'<img src="([^"]+)"', page)) == pngs, "the page shows every figure, by relative link"
    assert "http" not in page and "<script" not in page
    for name in pngs:
        assert mpl_image.imread(folder / name)[..., :3].var() > 0, f"{name} is blank"
    assert not list(folder.glob(".*.tmp")), "temporary files left behind"
    return page


def test_write_report_with_records(case: Any, tmp_path: Path) -> None:
    model, history = trained(case, record=True)
    names = ["<b>low</b>", "mid & more", "high"]
    files = pn.report.write_report(
        tmp_path / "r", model, history, case.asarray(X), case.asarray(Y), class_names=names, neurons=1, image_shape=(4, 4)
    )
    expected = {"learning_curves.png", "confusion_matrix.png", "worst_predictions.png", "activation_stats.png"}
    assert expected | {"grad_norms.png", "metrics.json", "index.html"} <= set(files)
    assert len([n for n in files if n.startswith("neuron_linear_")]) == 1
    page = check_page(tmp_path / "r", files)
    assert "&lt;b&gt;low&lt;/b&gt;" in page and "<b>low</b>" not in page and "mid &amp; more" in page

    data = json.loads((tmp_path / "r" / "metrics.json").read_text())
    predicted = np.argmax(pn.to_numpy(model.predict(X)), axis=1)
    assert data["accuracy"] == pytest.approx(np.mean(predicted == Y))
    assert data["test"]["confusion_matrix"] == pn.metrics.confusion_matrix(Y, predicted, num_classes=3).tolist()
    assert list(data["test"]["per_class_accuracy"]) == names
    assert data["history"]["loss"] == pytest.approx(history["loss"]) and data["epochs"] == 3
    assert data["portnn_version"] == pn.__version__ and "Linear(16, 12)" in data["model_summary"]
    assert set(data["records"]["activation_last_epoch"]) == {"relu"}


def test_write_report_without_records_or_images(tmp_path: Path) -> None:
    model = pn.Sequential([Linear(5, 3)], seed=0)
    x, y = RNG.random((20, 5), dtype=np.float32), np.arange(20) % 3
    files = pn.report.write_report(tmp_path, model, None, x, y, neurons=1)
    assert sorted(files)[:3] == ["confusion_matrix.png", "index.html", "metrics.json"] and len(files) == 4
    assert re.fullmatch(r"neuron_linear_[0-2]\.png", sorted(files)[3])  # no worst_predictions: 5 features are no image
    check_page(tmp_path, files)
    with pytest.raises(ValueError, match="write_report: 2 class_names but the model predicts 3 classes"):
        pn.report.write_report(tmp_path, model, None, x, y, class_names=["a", "b"])


def test_write_toy_report(case: Any, tmp_path: Path) -> None:
    x, y = pn.datasets.toy.load("moons", n_per_class=40)
    with pn.use_backend("numpy"):
        model = pn.Sequential([Linear(2, 8), ReLU(), Linear(8, 2)], seed=0)
    model.to(case.name, case.device)
    history = model.fit(x, y, loss=pn.losses.CrossEntropy(), optimizer=pn.optim.SGD(lr=0.2), epochs=2, verbose=0)
    files = pn.report.write_toy_report(tmp_path, model, history, case.asarray(x), case.asarray(y), title="moons", resolution=40)
    assert sorted(files) == ["decision_boundary.png", "index.html", "learning_curves.png", "metrics.json"]
    check_page(tmp_path, files)
    assert json.loads(files["metrics.json"].read_text())["data"]["examples"] == 80

"""The command line: `portnn train` end to end on real MNIST, and its error paths."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import portnn as pn
from portnn import backends
from portnn.cli import main


def test_train_end_to_end_on_a_slice_of_mnist(mnist_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["train", "--data-dir", str(mnist_dir), "--epochs", "3", "--limit", "6000", "--hidden", "64", "--no-download"])
    out = capsys.readouterr().out
    assert code == 0
    assert "Epoch 3/3" in out and "Linear(784, 64)" in out
    accuracy = float(out.split("test accuracy: ")[1].split()[0])
    assert accuracy > 0.88, out  # 6000 images, 3 epochs: 0.915 measured
    assert "per-class accuracy: 0: " in out and "9: " in out
    assert "seconds per epoch: " in out


def test_train_on_another_backend(mnist_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "train",
            "--data-dir",
            str(mnist_dir),
            "--epochs",
            "1",
            "--limit",
            "2000",
            "--hidden",
            "32",
            "--backend",
            "array_api_strict",
            "--device",
            "device1",
            "--quiet",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0 and "test accuracy: " in out and "Epoch" not in out


def test_unavailable_backend_is_a_clear_failure(capsys: pytest.CaptureFixture[str]) -> None:
    if backends.get_adapter("cupy").is_available():
        pytest.skip("a CUDA device works here")
    assert main(["train", "--backend", "cupy"]) == 2
    assert "backend 'cupy' is unavailable" in capsys.readouterr().err


def test_missing_data_is_a_clear_failure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PORTNN_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert main(["train", "--data-dir", str(tmp_path), "--no-download"]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path) in err and "PORTNN_DATA_DIR" in err


def test_console_script_lists_backends() -> None:
    out = subprocess.run([sys.executable, "-m", "portnn.cli", "backends"], capture_output=True, text=True, check=True).stdout
    assert out.startswith("numpy") and "available" in out and "auto" in out


def test_presets_and_their_overrides(mnist_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["train", "--preset", "mlp-best", "--data-dir", str(mnist_dir), "--epochs", "1", "--limit", "2000",
                 "--hidden", "64", "64"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert "preset mlp-best (mlp): Adam(lr=0.001" in out and "Dropout(p=0.2)" in out and "Linear(64, 64)" in out
    assert "test accuracy: " in out


def test_cnn_preset_trains(mnist_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["train", "--preset", "cnn", "--data-dir", str(mnist_dir), "--epochs", "2", "--limit", "3000",
                 "--channels", "8", "16", "--hidden", "32", "--dropout", "0"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert "Conv2d(1, 8, kernel_size=(3, 3), padding=(1, 1))" in out and "MaxPool2d(kernel_size=2)" in out
    assert "(batch, 16, 7, 7)" in out
    assert float(out.split("test accuracy: ")[1].split()[0]) > 0.7  # 3000 images, 2 epochs: 0.787 measured


def _check_report_pngs(folder: Path, names: list[str]) -> None:
    """Every PNG exists, has the pixel size of its figure (figsize x dpi) and is not blank; index.html links each one."""
    image = pytest.importorskip("matplotlib.image")
    page = (folder / "index.html").read_text(encoding="utf-8")
    for name in names:
        pixels = image.imread(folder / name)
        assert pixels[..., :3].var() > 0, f"{name} is blank"
        assert f'<img src="{name}"' in page, f"index.html does not show {name}"
    assert sorted(p.name for p in folder.glob("*.png")) == sorted(names)


def test_demo_toy_writes_a_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    import json

    from portnn import plot

    code = main(["demo", "toy", "--dataset", "moons", "--report", str(tmp_path / "toy"), "--epochs", "60"])
    out = capsys.readouterr().out
    assert code == 0 and f"report: {tmp_path / 'toy' / 'index.html'}" in out
    pngs = ["decision_boundary.png", "learning_curves.png", "activation_stats.png", "grad_norms.png"]
    _check_report_pngs(tmp_path / "toy", pngs)
    image = pytest.importorskip("matplotlib.image")
    assert image.imread(tmp_path / "toy" / "decision_boundary.png").shape[:2] == (5 * plot.DPI, 6 * plot.DPI)
    assert image.imread(tmp_path / "toy" / "learning_curves.png").shape[:2] == (4 * plot.DPI, 10 * plot.DPI)
    data = json.loads((tmp_path / "toy" / "metrics.json").read_text())
    assert data["accuracy"] > 0.9 and data["epochs"] == 60
    assert float(out.split("accuracy: ")[1].split()[0]) == pytest.approx(data["accuracy"], abs=1e-4)


def test_demo_toy_rejects_bad_sizes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "toy", "--hidden", "0"]) == 2
    assert "--hidden must be >= 1; got 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["demo", "toy", "--dataset", "nope"])


def test_train_report_on_real_mnist(mnist_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    import json

    folder = tmp_path / "mnist"
    code = main(["train", "--data-dir", str(mnist_dir), "--no-download", "--epochs", "1", "--limit", "3000",
                 "--hidden", "32", "--quiet", "--report", str(folder)])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0 and f"report: {folder / 'index.html'}" in out
    neurons = sorted(p.name for p in folder.glob("neuron_linear_*.png"))
    assert len(neurons) == 4
    pngs = ["learning_curves.png", "confusion_matrix.png", "worst_predictions.png", "activation_stats.png", "grad_norms.png"]
    _check_report_pngs(folder, pngs + neurons)
    data = json.loads((folder / "metrics.json").read_text())
    assert data["test"]["examples"] == 10000 and len(data["test"]["confusion_matrix"]) == 10
    assert data["accuracy"] == pytest.approx(float(out.split("test accuracy: ")[1].split()[0]), abs=1e-4)
    assert data["history"]["loss"] and "Linear(784, 32)" in data["model_summary"]


def test_report_without_matplotlib_fails_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert main(["demo", "toy", "--report", str(tmp_path)]) == 2
    assert 'pip install "portnn[plot]"' in capsys.readouterr().err


def test_train_resume_continues_a_run_with_its_own_arguments(mnist_dir: Path, tmp_path: Path, capsys) -> None:
    common = ["train", "--data-dir", str(mnist_dir), "--no-download", "--quiet", "--optimizer", "adam", "--lr", "0.001"]
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    assert (
        main([*common, "--limit", "1200", "--hidden", "32", "--dropout", "0.2", "--epochs", "2", "--checkpoint", str(whole)]) == 0
    )
    # the first run stops after one epoch; the resume names only the directory (and how far to go)
    assert main([*common, "--limit", "1200", "--hidden", "32", "--dropout", "0.2", "--epochs", "1", "--resume", str(parts)]) == 0
    assert json.loads((parts / "train_args.json").read_text())["hidden"] == [32]
    capsys.readouterr()
    assert main(["train", "--data-dir", str(mnist_dir), "--no-download", "--resume", str(parts), "--epochs", "2"]) == 0
    out = capsys.readouterr().out
    assert "Resuming from" in out and "epoch 2, step 0" in out
    a, b = pn.load(whole / "checkpoint.safetensors"), pn.load(parts / "checkpoint.safetensors")
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert pn.to_numpy(x).tobytes() == pn.to_numpy(y).tobytes(), name


def test_train_resume_may_add_a_report_and_refuses_two_directories(
    mnist_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("matplotlib")
    common = ["train", "--data-dir", str(mnist_dir), "--no-download", "--quiet", "--limit", "600", "--hidden", "16"]
    run = tmp_path / "run"
    assert main([*common, "--epochs", "1", "--resume", str(run)]) == 0
    assert main([*common, "--epochs", "2", "--resume", str(run), "--report", str(tmp_path / "report")]) == 0
    assert (tmp_path / "report" / "grad_norms.png").exists()
    assert json.loads((run / "train_args.json").read_text())["epochs"] == 2  # a later restart keeps the longer run
    capsys.readouterr()
    assert main([*common, "--checkpoint", str(tmp_path / "a"), "--resume", str(run)]) == 2
    assert "name two directories" in capsys.readouterr().err

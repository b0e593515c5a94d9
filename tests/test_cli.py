"""The command line: `portnn train` end to end on real MNIST, and its error paths."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

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

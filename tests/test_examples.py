"""The seed-era tasks in examples/ run and learn (shortened where that keeps the point)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_xor_is_learned() -> None:
    result = load("xor").main(verbose=False)
    assert result["accuracy"] == 1.0 and result["loss"] < 0.01


def test_parity_of_the_last_bit_is_learned_from_it(capsys: pytest.CaptureFixture[str]) -> None:
    result = load("parity_bit").main(verbose=True)
    assert result["accuracy"] == 1.0  # on 64 numbers never seen in training
    assert result["last_bit_weight_share"] > 0.4  # the net leans on the last bit, not the other seven
    assert "MSB..LSB" in capsys.readouterr().out


def test_sine_regression_fits() -> None:
    result = load("sine_regression").main(epochs=100, verbose=False)
    assert result["train_mse"] < 0.005 and result["max_abs_error"] < 0.15


def test_toy_boundaries_draws_one_figure(tmp_path: Path) -> None:
    image = pytest.importorskip("matplotlib.image", reason="examples/toy_boundaries.py draws with matplotlib")
    module = load("toy_boundaries")
    out = tmp_path / "boundaries.png"
    accuracies = module.main(["--quick", "--out", str(out)])
    assert list(accuracies) == list(module.QUICK_DATASETS) and all(len(a) == len(module.DEPTHS) for a in accuracies.values())
    pixels = image.imread(out)
    rows, cols = len(module.QUICK_DATASETS), len(module.DEPTHS)
    assert pixels.shape[:2] == (round(rows * module.PANEL * module.DPI), round(cols * module.PANEL * module.DPI))
    assert pixels[..., :3].var() > 0  # not blank


@pytest.mark.slow
def test_transfer_learning_beats_training_from_scratch_on_few_examples(mnist_dir: Path, tmp_path: Path) -> None:
    example = load("transfer_mnist")
    result = example.main(source_images=3000, few=300, epochs=2, data_dir=str(mnist_dir), workdir=str(tmp_path), verbose=False)
    assert result["source_accuracy"] > 0.95
    assert result["transfer_accuracy"] > 0.85
    assert (tmp_path / "digits_0_4.safetensors").exists()


def test_vanishing_gradients_in_a_deep_sigmoid_net_not_in_relu(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "vanishing.png"
    ratios = load("vanishing_gradients").main(depth=6, epochs=3, out=str(out))
    assert ratios["Sigmoid"] < 1e-2 < 0.1 < ratios["ReLU"]
    assert out.stat().st_size > 10_000

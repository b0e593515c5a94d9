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

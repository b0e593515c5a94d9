"""The seed-era tasks in examples/ run and learn (shortened where that keeps the point)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType

import pytest

import portnn as pn

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


def _quiet_temp_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """A working folder and a temporary folder of the test's own, both empty: (cwd, temp)."""
    cwd, temp = tmp_path / "cwd", tmp_path / "temp"
    cwd.mkdir()
    temp.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(tempfile, "tempdir", str(temp))  # what tempfile.gettempdir() answers (TMPDIR, read once)
    return cwd, temp


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_toy_boundaries_writes_into_its_output_folder_not_the_working_tree(tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("matplotlib", reason="examples/toy_boundaries.py draws with matplotlib")
    cwd, temp = _quiet_temp_folder(tmp_path, monkeypatch)
    module = load("toy_boundaries")
    module.main(["--quick", "--epochs", "1"])  # the default: portnn-examples in the temporary folder
    assert _files(cwd) == [] and _files(temp) == ["portnn-examples", "portnn-examples/toy_boundaries.png"]
    module.main(["--quick", "--epochs", "1", "--out-dir", str(tmp_path / "figures")])
    assert _files(tmp_path / "figures") == ["toy_boundaries.png"] and _files(cwd) == []


def test_vanishing_gradients_script_writes_into_its_output_folder(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    cwd, temp = tmp_path / "cwd", tmp_path / "temp"
    cwd.mkdir()
    temp.mkdir()
    script = [sys.executable, str(EXAMPLES / "vanishing_gradients.py"), "--depth", "3", "--epochs", "1"]
    out = subprocess.run(script, cwd=cwd, env={**os.environ, "TMPDIR": str(temp)}, capture_output=True, text=True, check=True)
    assert _files(cwd) == [] and _files(temp) == ["portnn-examples", "portnn-examples/vanishing_gradients.png"]
    assert f"wrote {temp / 'portnn-examples' / 'vanishing_gradients.png'}" in out.stdout
    subprocess.run([*script, "--out-dir", str(tmp_path / "figures")], cwd=cwd, capture_output=True, check=True)
    assert _files(tmp_path / "figures") == ["vanishing_gradients.png"] and _files(cwd) == []


def test_transfer_example_leaves_no_temporary_folder(mnist_dir: Path, tmp_path: Path, monkeypatch) -> None:
    """Without a workdir the source model goes to a temporary folder that is removed at the end (it was left behind)."""
    cwd, temp = _quiet_temp_folder(tmp_path, monkeypatch)
    result = load("transfer_mnist").main(source_images=300, few=50, epochs=1, data_dir=str(mnist_dir), verbose=False)
    assert set(result) == {"source_accuracy", "transfer_accuracy", "scratch_accuracy"}
    assert _files(temp) == [] and _files(cwd) == []


def test_bench_mlp_shows_progress_on_stderr(mnist_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A line per timed epoch on stderr while it runs (it printed nothing for minutes); the report stays on stdout."""
    spec = importlib.util.spec_from_file_location("bench_mlp", EXAMPLES.parent / "benchmarks" / "bench_mlp.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    try:
        assert bench.main(["--quick", "--repeats", "1", "--configs", "256-128x1000", "--data-dir", str(mnist_dir)]) == 0
    finally:
        pn.set_backend("numpy")  # the benchmark chooses it; the default of the next test
    out, err = capsys.readouterr()
    contenders = ["portnn", "numpy-loop"] + (["torch"] if bench.torch is not None else [])
    runs = 2 * len(contenders)
    lines = err.splitlines()
    assert len(lines) == runs, err
    expected = [f"256-128x1000 {r} {c}: " for r in ("warm-up", "round 1/1") for c in contenders]
    for i, (line, words) in enumerate(zip(lines, expected), start=1):
        assert line.startswith(f"[{i}/{runs}] {words}"), line
    assert f"{runs} epochs to time" in out and "| 256-128x1000 |" in out


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


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_sequential_mnist_learns_from_the_rows(mnist_dir: Path, cell: str) -> None:
    """A short run (2048 images, a small state): the loss falls well below chance's ln(10), above-chance test accuracy."""
    result = load("sequential_mnist").main(
        epochs=2, train_images=2048, test_images=500, hidden=32, batch_size=64, lr=1e-2, cell=cell,
        data_dir=str(mnist_dir), verbose=False,
    )  # fmt: skip
    first, last = result["batch_losses"][:4], result["batch_losses"][-4:]
    assert abs(sum(first) / 4 - 2.3026) < 0.1  # starts at chance
    assert sum(last) / 4 < 0.6 * sum(first) / 4 and result["epoch_losses"][1] < result["epoch_losses"][0]
    assert result["test_accuracy"] > 0.4  # chance is 0.1


def test_char_transformer_learns_real_text() -> None:
    """A short run on the first 20,000 characters of the Language Reference: the loss falls from ln(vocab) toward the text."""
    pytest.importorskip("pydoc_data.topics", reason="this Python ships without pydoc_data (the example's corpus)")
    result = load("char_transformer").main(
        steps=120, limit=20000, context=32, width=32, heads=2, blocks=1, batch_size=16, lr=3e-3, sample=0, verbose=False
    )
    assert result["first_loss"] > 3.0  # about ln(103) = 4.6 at the start
    assert result["last_loss"] < result["first_loss"] - 0.8
    assert result["transformer_bits"] < 5.0 and result["bigram_bits"] < 5.0  # both far below the 6.7 bits of a uniform guess


def test_resnet_example_learns(mnist_dir: Path) -> None:
    """A short run (4096 images, narrow stages, mostly the one-cycle warm-up): the loss falls by a quarter, above chance."""
    result = load("resnet_mnist").main(
        epochs=2, channels=(8, 16), train_images=4096, test_images=500, data_dir=str(mnist_dir), verbose=False
    )
    assert result["epoch_losses"][1] < 0.75 * result["epoch_losses"][0]  # 2.70 -> 1.82 measured
    assert result["test_accuracy"] > 0.3  # 0.448 measured; chance is 0.1


def test_vit_example_learns(mnist_dir: Path) -> None:
    """A short run (1536 images, one narrow block): the loss falls and the test accuracy beats chance."""
    result = load("vit_mnist").main(
        epochs=3,
        width=32,
        depth=1,
        heads=2,
        lr=3e-3,
        train_images=1536,
        test_images=500,
        data_dir=str(mnist_dir),
        verbose=False,
    )
    assert result["epoch_losses"][-1] < result["epoch_losses"][0] and result["epoch_losses"][-1] < 0.9 * 2.3026
    assert result["test_accuracy"] > 0.3

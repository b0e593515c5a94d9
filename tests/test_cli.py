"""The command line: `portnn train` end to end on real MNIST, and its error paths."""

from __future__ import annotations

import contextvars
import json
import os
import shlex
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import portnn as pn
from portnn import backends
from portnn.cli import main


@pytest.fixture(autouse=True)
def _keep_the_global_backend() -> Iterator[None]:
    """``portnn train`` sets the global backend: give it back after each test."""
    with pn.use_backend("numpy"):
        yield


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
    assert str(tmp_path) in err and "PORTNN_DATA_DIR" in err and "portnn train --data-dir /path/to/dir" in err


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


@pytest.mark.parametrize(
    ("preset", "extra", "shown"),
    [
        ("resnet", ["--channels", "8", "16"], ["Residual(Sequential)", "Conv2d(8, 8, kernel_size=(3, 3)", "GlobalAvgPool2d"]),
        (
            "vit",
            ["--width", "32", "--depth", "1", "--heads", "2", "--lr", "3e-3"],
            ["MultiHeadAttention(32, 2)", "PositionalEmbedding(16, 32)"],
        ),
        ("lstm", ["--hidden", "32", "--lr", "1e-2"], ["LSTM(28, 32)", "(batch, 10)"]),
    ],
)
def test_sequence_and_residual_presets_train(
    mnist_dir: Path, capsys: pytest.CaptureFixture[str], preset: str, extra: list[str], shown: list[str]
) -> None:
    """Each issue-12 preset builds its network (shown in the summary), trains with a one-cycle rate and beats chance."""
    code = main(["train", "--preset", preset, "--data-dir", str(mnist_dir), "--epochs", "2", "--limit", "2000", *extra])
    out = capsys.readouterr().out
    assert code == 0
    assert f"preset {preset} ({preset}):" in out and "schedule onecycle" in out
    assert all(text in out for text in shown), out
    assert float(out.split("test accuracy: ")[1].split()[0]) > 0.2  # chance is 0.1


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
    assert main(["demo", "toy", "--dataset", "nope"]) == 2  # main returns argparse's status too, as a number
    assert "argument --dataset: invalid choice: 'nope'" in capsys.readouterr().err


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


BAD_OPTIONS = {
    # arguments -> the one line printed (after "portnn <command>: ")
    "--epochs 0": (["train", "--epochs", "0"], "error: --epochs must be >= 1; got 0"),
    "--epochs x": (["train", "--epochs", "x"], "error: --epochs must be an integer >= 1; got x"),
    "--lr -1": (["train", "--lr", "-1"], "error: --lr must be a finite number > 0; got -1"),
    "--lr nan": (["train", "--lr", "nan"], "error: --lr must be a finite number > 0; got nan"),
    "--lr 0": (["train", "--lr", "0"], "error: --lr must be a finite number > 0; got 0"),
    "--dropout 1.5": (["train", "--dropout", "1.5"], "error: --dropout must be a number in [0, 1); got 1.5"),
    "--dropout 1": (["train", "--dropout", "1"], "error: --dropout must be a number in [0, 1); got 1"),
    "--momentum -0.1": (["train", "--momentum", "-0.1"], "error: --momentum must be a number in [0, 1); got -0.1"),
    "--hidden 0": (["train", "--hidden", "0"], "error: --hidden must be >= 1; got 0"),
    "--hidden 64 0": (["train", "--hidden", "64", "0"], "error: --hidden must be >= 1; got 0"),
    "--batch-size 0": (["train", "--batch-size", "0"], "error: --batch-size must be >= 1; got 0"),
    "--seed -1": (["train", "--seed", "-1"], "error: --seed must be >= 0; got -1"),
    "--limit 0": (["train", "--limit", "0"], "error: --limit must be >= 1; got 0"),
    "--channels 0": (["train", "--model", "cnn", "--channels", "8", "0"], "error: --channels must be >= 1; got 0"),
    "--augment -2": (["train", "--augment", "-2"], "error: --augment must be >= 0; got -2"),
    "--checkpoint-every 0": (["train", "--checkpoint-every", "0"], "error: --checkpoint-every must be >= 1; got 0"),
    "--optimizer nope": (["train", "--optimizer", "nope"], "error: argument --optimizer: invalid choice: 'nope'"),
    "demo --lr 0": (["demo", "toy", "--lr", "0"], "error: --lr must be a finite number > 0; got 0"),
    "demo --layers -1": (["demo", "toy", "--layers", "-1"], "error: --layers must be >= 0; got -1"),
    "demo --epochs 0": (["demo", "toy", "--epochs", "0"], "error: --epochs must be >= 1; got 0"),
    "--channels for an MLP": (["train", "--channels", "8"], "--channels set the CNN's layers, but this run trains an MLP: "
                              "add --model cnn (or --preset cnn)"),
    "--momentum for Adam": (["train", "--optimizer", "adam", "--momentum", "0.5"],
                            "--momentum is SGD's, but this run's optimizer is adam: add --optimizer sgd, or drop --momentum"),
    "--momentum for mlp-best": (["train", "--preset", "mlp-best", "--momentum", "0.5"], "--momentum is SGD's"),
    "--heads for a CNN": (["train", "--preset", "cnn", "--heads", "2"], "--heads sets the layers of a vit model, but this "
                          "run trains a cnn model: add --model vit (or --preset vit), or drop --heads"),
    "--hidden twice for an LSTM": (["train", "--preset", "lstm", "--hidden", "8", "8"],
                                   "--hidden takes one number for an LSTM (its state size); got 8 8"),
    "--hidden for a ViT": (["train", "--model", "vit", "--hidden", "32"], "--hidden sets the layers of a cnn or lstm or "
                           "mlp or strided model, but this run trains a vit model: add --model cnn (or --preset cnn), "
                           "or drop --hidden"),
    "--dropout for a ResNet": (["train", "--model", "resnet", "--dropout", "0.3"], "--dropout sets the layers of a cnn or mlp "
                               "model, but this run trains a resnet model: add --model cnn (or --preset cnn), or drop --dropout"),
    "--dropout for an LSTM": (["train", "--preset", "lstm", "--dropout", "0.3"], "--dropout sets the layers of a cnn or mlp "
                              "model, but this run trains a lstm model"),
    "--dropout for the speedrun": (["train", "--preset", "speedrun", "--dropout", "0.3"], "--dropout sets the layers of a "
                                   "cnn or mlp model, but this run trains a strided model"),
    "--check-every without --target": (["train", "--check-every", "50"], "--check-every sets how often --target is checked, "
                                       "but this run has no --target: add --target ACC, or drop --check-every"),
}  # fmt: skip


@pytest.mark.parametrize("name", list(BAD_OPTIONS))
def test_every_bad_option_is_one_line_before_anything_runs(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Exit status 2 and one line naming the option, what it got and what it takes: no traceback, no data read."""
    argv, expected = BAD_OPTIONS[name]
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    data = ["--data-dir", str(tmp_path), "--no-download"] if argv[0] == "train" else []  # an empty folder: no data
    assert main([*argv, *data]) == 2
    out, err = capsys.readouterr()
    command = " ".join(argv[:2]) if argv[0] == "demo" else "train"
    assert err.startswith(f"portnn {command}: {expected}"), err
    assert err.count("\n") == 1 and not out, (out, err)


def test_a_report_path_that_is_a_file_is_refused_before_training(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    (tmp_path / "report").write_text("not a folder")
    assert main(["train", "--report", str(tmp_path / "report"), "--data-dir", str(tmp_path), "--no-download"]) == 2
    assert capsys.readouterr().err == f"portnn train: --report {tmp_path / 'report'} is a file; name a folder for the report\n"
    assert main(["demo", "toy", "--report", str(tmp_path / "report")]) == 2
    assert "is a file; name a folder" in capsys.readouterr().err


def _environment_error(value: str) -> str:
    """What ``portnn.get_backend()`` raises in a fresh process whose PORTNN_BACKEND is ``value`` (a fresh context here)."""
    os.environ["PORTNN_BACKEND"] = value  # the caller's monkeypatch restores it
    try:
        contextvars.Context().run(pn.get_backend)  # no backend chosen yet in an empty context: read from the variable
    except (pn.BackendUnavailableError, ValueError) as exc:
        return str(exc)
    raise AssertionError(f"PORTNN_BACKEND={value!r} did not fail")


@pytest.mark.parametrize("value", ["numpy:gpu", "torch:cuda:0", "array_api_strict:device9", "nope"])
def test_portnn_backend_with_a_device_fails_as_in_python(
    value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """PORTNN_BACKEND=name:device is read by portnn train as by the library: a device that cannot run is the same error."""
    monkeypatch.setenv("PORTNN_BACKEND", value)
    name = value.partition(":")[0]
    if name in ("torch", "array_api_strict") and backends.get_adapter(name).import_error():
        pytest.skip(f"{name} is not installed")
    if value == "torch:cuda:0" and backends.get_adapter("torch").xp.cuda.is_available():
        pytest.skip("this PyTorch sees a CUDA device: torch:cuda:0 runs here (see the test below)")
    expected = _environment_error(value)
    assert expected.startswith(f"PORTNN_BACKEND={value!r} (name or name:device): ")
    assert main(["train", "--data-dir", str(tmp_path), "--no-download", "--quiet"]) == 2  # before reading any data
    assert capsys.readouterr().err == f"portnn train: {expected}\n"
    # an explicit --backend (or --device) is the user's own choice: the variable is not used for it
    assert main(["train", "--backend", "numpy", "--device", "gpu", "--data-dir", str(tmp_path), "--no-download"]) == 2
    assert capsys.readouterr().err == "portnn train: the numpy backend has one device, 'cpu'; got device='gpu'\n"


def test_portnn_backend_device_is_honoured(mnist_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    """PORTNN_BACKEND=array_api_strict:device1 trains there (the device was dropped: CPU_DEVICE); --device overrides it."""
    pytest.importorskip("array_api_strict")
    monkeypatch.setenv("PORTNN_BACKEND", "array_api_strict:device1")
    common = ["train", "--data-dir", str(mnist_dir), "--no-download", "--epochs", "1", "--limit", "500", "--hidden", "8"]
    assert main(common) == 0
    assert "backend array_api_strict:device1\n" in capsys.readouterr().out
    assert main([*common, "--device", "device2"]) == 0
    assert "backend array_api_strict:device2\n" in capsys.readouterr().out
    cuda = "torch" in pn.available_backends() and backends.get_adapter("torch").xp.cuda.is_available()
    if cuda:  # the issue's own example, where it can run
        monkeypatch.setenv("PORTNN_BACKEND", "torch:cuda:0")
        assert main(common) == 0
        assert "backend torch:cuda:0\n" in capsys.readouterr().out


CTRL_C = (
    "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); from portnn.cli import main; sys.exit(main())"
)


def _interrupt(argv: list[str], ready: Callable[[str], bool]) -> tuple[int, str]:
    """Run ``portnn train`` in a child; send it SIGINT (Ctrl-C) once ``ready(line)`` holds for a line it printed."""
    # a child of a shell's background job inherits SIGINT ignored: CTRL_C gives it Python's default handler, as a terminal has
    child = subprocess.Popen(
        [sys.executable, "-c", CTRL_C, "train", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        for line in child.stdout:
            if ready(line):
                child.send_signal(signal.SIGINT)
                break
        else:
            raise AssertionError(f"the run ended before it could be interrupted: {child.stderr.read()}")
        child.stdout.read()
        return child.wait(timeout=120), child.stderr.read()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process is POSIX")
def test_ctrl_c_is_one_line_that_says_how_to_continue(
    mnist_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Exit 130, no traceback; without --checkpoint the hint names --checkpoint/--resume, with it the exact resume command."""
    common = ["--data-dir", str(mnist_dir), "--no-download", "--limit", "6000", "--hidden", "32", "--epochs", "500"]
    status, err = _interrupt(common, lambda line: line.startswith("Epoch 1/500"))
    assert status == 130 and "Traceback" not in err, err
    assert err == (
        "portnn train: interrupted; nothing was saved: --checkpoint DIR saves the run every epoch and --resume DIR "
        "continues it (the same --resume DIR command serves the first run and every restart)\n"
    )
    run = tmp_path / "my run"  # a space: the command is quoted for a shell
    status, err = _interrupt([*common, "--checkpoint", str(run)], lambda line: line.startswith("Epoch 2/500"))
    command = shlex.join(["portnn", "train", "--resume", str(run), "--data-dir", str(mnist_dir), "--no-download"])
    assert status == 130 and err == f"portnn train: interrupted; continue from the last checkpoint in {run} with: {command}\n"
    # the command does continue the run (made short here with --epochs); the run's own arguments came with it
    assert json.loads((run / "train_args.json").read_text())["epochs"] == 500
    capsys.readouterr()
    assert main([*shlex.split(command)[1:], "--epochs", "3"]) == 0
    out = capsys.readouterr().out
    assert f"Resuming from {run / 'checkpoint.safetensors'}: epoch " in out and "Epoch 3/3" in out and "Linear(784, 32)" in out


def test_resuming_a_finished_run_says_it_is_complete(mnist_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A 2-epoch run given --resume: "already complete" and its results, not "Resuming ... epoch 3"; --epochs N extends it."""
    run = tmp_path / "run"
    common = ["train", "--data-dir", str(mnist_dir), "--no-download", "--resume", str(run)]
    assert main([*common, "--limit", "600", "--hidden", "16", "--epochs", "2", "--quiet"]) == 0
    first = capsys.readouterr().out
    assert main(common) == 0
    out = capsys.readouterr().out
    assert "Resuming" not in out and "Epoch" not in out
    assert (
        f"The run in {run} is already complete (2 of 2 epochs trained): its results follow; "
        f"portnn train --resume {run} --epochs N with N > 2 extends it\n" in out
    )
    assert out.split("test accuracy: ")[1].split()[0] == first.split("test accuracy: ")[1].split()[0]
    assert "seconds per epoch: " in out  # the run's own epochs, from its checkpoint
    assert main([*common, "--epochs", "3"]) == 0
    out = capsys.readouterr().out
    assert "already complete" not in out and "Epoch 3/3" in out


def test_resume_refuses_options_that_differ_from_the_run(mnist_dir: Path, tmp_path: Path, capsys) -> None:
    """--resume goes on with the run's own arguments: another value given for one of them is an error, not dropped."""
    run = tmp_path / "run"
    common = ["train", "--data-dir", str(mnist_dir), "--no-download", "--quiet", "--resume", str(run)]
    assert main([*common, "--limit", "600", "--hidden", "16", "--epochs", "1"]) == 0
    capsys.readouterr()
    assert main([*common, "--hidden", "32"]) == 2
    assert capsys.readouterr().err == (
        f"portnn train: --resume {run} continues the run with the arguments it was started with, and it ran with "
        "--hidden 16, not 32: drop --hidden (only --epochs may change, to extend the run), or start another run in "
        "another folder\n"
    )
    assert main([*common, "--hidden", "16", "--limit", "600"]) == 0  # the same values are fine
    (run / "train_args.json").write_text("{not json")
    assert main(common) == 2
    assert "is not the arguments file portnn train writes" in capsys.readouterr().err


def test_speedrun_preset_stops_at_its_target(mnist_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    common = ["train", "--preset", "speedrun", "--data-dir", str(mnist_dir), "--no-download", "--limit", "2000", "--quiet"]
    assert main([*common, "--target", "0.5", "--check-every", "8"]) == 0  # 2000 images: 0.5 comes within 3 epochs
    out = capsys.readouterr().out
    checks = out.split("test accuracy every 8 steps: ")[1].splitlines()[0].split(", ")
    steps = [int(c.split(": ")[0]) for c in checks]
    accuracies = [float(c.split(": ")[1]) for c in checks]
    assert steps == [8 * (i + 1) for i in range(len(steps))] and len(steps) < 3 * 16  # stopped before the end
    assert accuracies[-1] >= 0.5 and all(a < 0.5 for a in accuracies[:-1])
    assert "time to 50.00% test accuracy: " in out and f"reached {accuracies[-1]:.2%} at step {steps[-1]} " in out
    assert f"the {len(steps)} checks took " in out and "test accuracy: " in out


def test_speedrun_preset_says_when_its_target_is_not_reached(mnist_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["train", "--preset", "speedrun", "--data-dir", str(mnist_dir), "--no-download", "--limit", "600",
                 "--epochs", "1", "--check-every", "2", "--target", "1", "--channels", "8", "8", "--hidden", "16"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert "preset speedrun (strided)" in out and "Conv2d(1, 8, kernel_size=(4, 4), stride=(2, 2), padding=(1, 1))" in out
    assert "BatchNorm2d(8)" in out and "(batch, 8, 7, 7)" in out
    assert "target 100.00% not reached in 1 epochs (test accuracy checked every 2 steps; the 2 checks took " in out
    assert len(out.split("test accuracy every 2 steps: ")[1].splitlines()[0].split(", ")) == 2  # 5 steps: checks at 2, 4


def test_the_target_checks_count_on_from_a_checkpoint_after_a_resume(tmp_path: Path) -> None:
    """--target's step counter is kept in the checkpoint: the checks of a resumed run fall where they would have."""
    from portnn.cli import StopAtAccuracy

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 4)).astype(np.float32), np.arange(40) % 3
    fit = dict(loss=pn.losses.CrossEntropy(), batch_size=8, shuffle=False, verbose=0)

    def run(epochs: int, **kwargs: Any) -> StopAtAccuracy:
        stop = StopAtAccuracy(x, y, target=1.0, every=3)  # 5 steps an epoch: checks at steps 3, 6, 9
        model = pn.Sequential([pn.layers.Linear(4, 3)], seed=0)
        model.fit(x, y, optimizer=pn.optim.SGD(lr=1e-3), epochs=epochs, callbacks=[stop], **fit, **kwargs)
        return stop

    whole = run(2)
    run(1, checkpoint=tmp_path)
    resumed = run(2, resume=tmp_path)
    assert [s for s, _, _ in whole.curve] == [3, 6, 9]
    assert [s for s, _, _ in resumed.curve] == [3, 6, 9]
    assert [a for _, _, a in resumed.curve] == [a for _, _, a in whole.curve]

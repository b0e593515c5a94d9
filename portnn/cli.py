"""The ``portnn`` command: ``portnn train`` trains an MLP on MNIST; ``portnn backends`` lists what runs here."""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

import portnn as pn
from portnn.datasets import toy
from portnn.fileformat import write_bytes
from portnn.models import build_cnn, build_lstm, build_mlp, build_resnet, build_strided_cnn, build_vit

DATASETS = {"mnist": "load_mnist", "fashion-mnist": "load_fashion_mnist", "cifar10": "load_cifar10"}
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
OPTIMIZERS = {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW", "rmsprop": "RMSprop"}
SCHEDULES = ("none", "cosine", "onecycle", "step", "plateau", "backtracking")
MODELS = ("mlp", "cnn", "resnet", "vit", "lstm", "strided")
PRESETS: dict[str, dict[str, object]] = {
    "mlp": {
        "model": "mlp",
        "hidden": [1024],
        "epochs": 10,
        "batch_size": 128,
        "optimizer": "sgd",
        "lr": 0.1,
        "momentum": 0.9,
        "dropout": 0.0,
        "schedule": "none",
    },
    "cnn": {
        "model": "cnn",
        "hidden": [128],
        "channels": [16, 32],
        "augment": 2,
        "epochs": 16,
        "batch_size": 128,
        "optimizer": "adam",
        "lr": 1e-3,
        "momentum": 0.9,
        "dropout": 0.2,
        "schedule": "cosine",
    },
    "mlp-best": {
        "model": "mlp",
        "hidden": [800, 800],
        "epochs": 20,
        "batch_size": 128,
        "optimizer": "adam",
        "lr": 1e-3,
        "momentum": 0.9,
        "dropout": 0.2,
        "schedule": "cosine",
    },
    "resnet": {
        "model": "resnet",
        "channels": [16, 32, 64],
        "augment": 2,
        "label_smoothing": 0.1,
        "epochs": 15,
        "batch_size": 128,
        "optimizer": "adam",
        "lr": 3e-3,
        "schedule": "onecycle",
    },
    "vit": {
        "model": "vit",
        "width": 64,
        "depth": 4,
        "heads": 4,
        "augment": 1,
        "epochs": 12,
        "batch_size": 128,
        "optimizer": "adamw",
        "lr": 2e-3,
        "schedule": "onecycle",
    },
    "lstm": {
        "model": "lstm",
        "hidden": [128],
        "epochs": 8,
        "batch_size": 128,
        "optimizer": "adam",
        "lr": 3e-3,
        "schedule": "onecycle",
    },
    "speedrun": {  # benchmarks/bench_time_to_accuracy.py: the recipe, and how it was chosen
        "model": "strided",
        "channels": [32, 32],
        "hidden": [256],
        "epochs": 3,
        "batch_size": 128,
        "optimizer": "adam",
        "lr": 8e-3,
        "label_smoothing": 0.1,
        "schedule": "onecycle",
        "target": 0.99,
        "check_every": 100,
    },
}


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``portnn train: error: --epochs must be >= 1; got 0 (portnn train --help ...)``."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} ({self.prog} --help lists the options)\n")


def _check_int(low: int) -> Callable[[str], str | None]:
    def check(text: str) -> str | None:
        try:
            value = int(text)
        except ValueError:
            return f"must be an integer >= {low}"
        return None if value >= low else f"must be >= {low}"

    return check


def _check_float(
    low: float, high: float = math.inf, *, low_open: bool = False, high_open: bool = True
) -> Callable[[str], str | None]:
    interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    wanted = f"must be a finite number > {low:g}" if high == math.inf and low_open else f"must be a number in {interval}"

    def check(text: str) -> str | None:
        try:
            value = float(text)
        except ValueError:
            return wanted
        above = value > low if low_open else value >= low
        below = value < high if high_open else value <= high
        return None if math.isfinite(value) and above and below else wanted

    return check


class _Checked(argparse.Action):
    """Store a number (or, with ``nargs``, numbers) whose range ``check`` accepts; else a one-line error naming the option."""

    def __init__(self, *args: Any, check: Callable[[str], str | None], convert: Callable[[str], Any], **kwargs: Any) -> None:
        self.check, self.convert = check, convert
        super().__init__(*args, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any, option: Any = None) -> None:
        texts = values if isinstance(values, list) else [values]
        for text in texts:
            problem = self.check(text)
            if problem is not None:
                parser.error(f"{option} {problem}; got {text}")
        converted = [self.convert(t) for t in texts]
        setattr(namespace, self.dest, converted if isinstance(values, list) else converted[0])


def _count(low: int) -> dict[str, Any]:
    """``add_argument`` keywords for a whole number >= ``low``."""
    return {"action": _Checked, "check": _check_int(low), "convert": int}


def _number(low: float, high: float = math.inf, **bounds: bool) -> dict[str, Any]:
    """``add_argument`` keywords for a finite number in the interval from ``low`` to ``high``."""
    return {"action": _Checked, "check": _check_float(low, high, **bounds), "convert": float}


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="portnn", description="Neural networks from scratch on NumPy, CuPy and the array API.")
    parser.add_argument("--version", action="version", version=f"portnn {pn.__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train an MLP on MNIST and report test accuracy and seconds per epoch")
    train.add_argument("--dataset", choices=sorted(DATASETS), help="mnist (default), fashion-mnist or cifar10")
    train.add_argument(
        "--backend",
        help="numpy, cupy, torch, array_api_strict or auto (default: $PORTNN_BACKEND, name or name:device, else numpy)",
    )
    train.add_argument(
        "--device", default=None, help="device of the backend, e.g. cuda:1 (default: $PORTNN_BACKEND's, else the backend's)"
    )
    train.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        help="mlp (default): 784-1024-10, SGD with momentum, 10 epochs (>= 98.0%%); "
        "mlp-best: 784-800-800-10 with dropout, Adam and a cosine schedule (>= 98.5%%); "
        "cnn: 2 px random shifts, two conv-BN-ReLU-pool blocks (16, 32 channels), dense 128, dropout, Adam, cosine (>= 99.3%%); "
        "resnet: 2 px shifts, residual blocks with BatchNorm at 16, 32, 64 channels, label smoothing 0.1, Adam, one-cycle, "
        "15 epochs (>= 99.5%%); "
        "vit: a vision transformer on 16 patches of 7x7, 4 blocks of width 64, AdamW, one-cycle (>= 98.0%%); "
        "lstm: an LSTM(128) reading the 28 rows as time steps, Adam, one-cycle (>= 98.5%%); "
        "speedrun: a strided CNN (4x4/2 conv 32, 2x2/2 conv 32 with BatchNorm, dense 256), Adam, one-cycle over 3 epochs, "
        "label smoothing 0.1, stops at 99.0%% test accuracy (checked every 100 steps) and prints the time to it. "
        "Options below override the preset",
    )
    train.add_argument(
        "--model",
        choices=MODELS,
        help="multilayer perceptron, a CNN (conv-BN-ReLU-pool blocks), a ResNet (residual blocks), "
        "a vision transformer (vit), an LSTM over the image rows, or a CNN of strided convolutions without pooling (strided)",
    )
    train.add_argument(
        "--channels", nargs="+", metavar="C", help="CNN, ResNet: output channels of each conv block or stage", **_count(1)
    )
    train.add_argument(
        "--augment", metavar="PIXELS", help="CNN, ResNet, ViT: random shifts of up to PIXELS in training (0: none)", **_count(0)
    )
    train.add_argument("--width", metavar="D", help="ViT: token width (a multiple of --heads)", **_count(1))
    train.add_argument("--depth", metavar="N", help="ViT: transformer blocks", **_count(1))
    train.add_argument("--heads", metavar="H", help="ViT: attention heads", **_count(1))
    train.add_argument("--epochs", metavar="N", help="epochs to train (on --resume: the run's new length)", **_count(1))
    train.add_argument("--batch-size", metavar="N", **_count(1))
    train.add_argument("--optimizer", choices=sorted(OPTIMIZERS))
    train.add_argument(
        "--lr",
        help="learning rate > 0 (gradients are batch means: no need to scale it with the batch size)",
        **_number(0.0, low_open=True),
    )
    train.add_argument("--momentum", help="SGD momentum, in [0, 1)", **_number(0.0, 1.0))
    train.add_argument(
        "--hidden", nargs="+", metavar="N", help="hidden layer sizes (LSTM: its state size, one number)", **_count(1)
    )
    train.add_argument("--dropout", metavar="P", help="dropout after each hidden layer, in [0, 1) (0: none)", **_number(0.0, 1.0))
    train.add_argument("--schedule", choices=SCHEDULES, help="learning-rate schedule")
    train.add_argument(
        "--label-smoothing", metavar="E", help="cross-entropy label smoothing, in [0, 1) (0: none)", **_number(0.0, 1.0)
    )
    train.add_argument(
        "--target",
        metavar="ACC",
        help="stop once the test accuracy, checked every --check-every steps, reaches ACC in (0, 1]; print the training "
        "time to it (the checks' time not counted)",
        **_number(0.0, 1.0, low_open=True, high_open=False),
    )
    train.add_argument("--check-every", metavar="STEPS", help="steps between the --target checks (default 100)", **_count(1))
    train.add_argument("--seed", help="seed of the weights, shuffling and dropout (default 0)", **_count(0))
    train.add_argument("--data-dir", default=None, help="folder with the IDX files (default: $PORTNN_DATA_DIR, then the cache)")
    train.add_argument("--no-download", action="store_true", help="never download; fail if no local copy is found")
    train.add_argument("--limit", metavar="N", help="train on the first N examples only (quick runs)", **_count(1))
    train.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")
    train.add_argument(
        "--report",
        metavar="DIR",
        help="after training, write figures, metrics.json and index.html to DIR (trains with records; needs matplotlib)",
    )
    train.add_argument(
        "--checkpoint", metavar="DIR", help="write a training checkpoint to DIR every epoch (and every --checkpoint-every steps)"
    )
    train.add_argument("--checkpoint-every", metavar="STEPS", help="also checkpoint every STEPS steps", **_count(1))
    train.add_argument(
        "--resume",
        metavar="DIR",
        help="continue the run checkpointed in DIR with its own arguments (same result as an uninterrupted run); "
        "starts it if DIR holds no checkpoint yet, so the same command serves the first run and every restart",
    )
    train.add_argument(
        "--distributed",
        action="store_true",
        help="data-parallel training over the ranks of mpiexec -n N (needs portnn[mpi]): --batch-size is per rank, "
        "the update is that of one process with batch N x batch size; one BLAS thread per rank unless "
        "OMP_NUM_THREADS/OPENBLAS_NUM_THREADS is set; only rank 0 prints and writes",
    )
    train.set_defaults(run=train_command)

    demo = commands.add_parser("demo", help="small end-to-end demonstrations")
    demos = demo.add_subparsers(dest="demo", required=True)
    toy_demo = demos.add_parser("toy", help="train an MLP on a 2-D toy dataset; report its decision boundary")
    toy_demo.add_argument("--dataset", choices=list(toy.DATASETS), default="moons")
    toy_demo.add_argument(
        "--report", metavar="DIR", help="write the decision boundary, curves, metrics.json and index.html to DIR"
    )
    toy_demo.add_argument("--hidden", default=16, metavar="N", help="units per hidden layer", **_count(1))
    toy_demo.add_argument("--layers", default=2, metavar="L", help="hidden layers (Linear-ReLU blocks)", **_count(0))
    toy_demo.add_argument("--epochs", default=100, metavar="N", **_count(1))
    toy_demo.add_argument("--lr", default=0.01, help="Adam learning rate, > 0", **_number(0.0, low_open=True))
    toy_demo.add_argument("--seed", default=0, help="seed of the data, the weights and the shuffling", **_count(0))
    toy_demo.set_defaults(run=demo_toy_command)

    info = commands.add_parser("backends", help="list the backends and whether each can run here")
    info.set_defaults(run=backends_command)
    return parser


class StopAtAccuracy(pn.callbacks.Callback):
    """Every ``every`` training steps: the accuracy on ``(x, y)``; at ``target`` or above, stop training.

    ``curve`` holds (step, training seconds so far, accuracy) per check, ``reached`` the first at the
    target (or None). Training seconds run from the start of ``fit`` less the time of the checks.
    Its state is kept in a training checkpoint: a resumed run counts its steps and seconds on from
    the checkpoint's (the checks fall where they would have without the restart).
    """

    def __init__(self, x: Any, y: Any, *, target: float, every: int) -> None:
        self.x, self.y, self.target, self.every = x, y, target, every
        self.curve: list[tuple[int, float, float]] = []
        self.reached: tuple[int, float, float] | None = None
        self.eval_time = 0.0
        self.steps, self.start = 0, time.perf_counter()  # set again by on_train_begin

    def on_train_begin(self, logs: Any = None) -> None:
        self.steps, self.start = 0, time.perf_counter()

    def state_dict(self) -> dict[str, Any]:
        seconds = time.perf_counter() - self.start - self.eval_time
        return {
            "steps": self.steps,
            "seconds": seconds,
            "eval_time": self.eval_time,
            "curve": self.curve,
            "reached": self.reached,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps, self.eval_time = int(state["steps"]), float(state["eval_time"])
        self.start = time.perf_counter() - float(state["seconds"]) - self.eval_time
        self.curve = [tuple(c) for c in state["curve"]]
        self.reached = None if state["reached"] is None else tuple(state["reached"])

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        self.steps += 1
        if self.steps % self.every:
            return
        start = time.perf_counter()
        predicted = np.argmax(self.model.predict(self.x, batch_size=1000, to_numpy=True), axis=1)
        self.curve.append((self.steps, start - self.start - self.eval_time, float(np.mean(predicted == self.y))))
        self.eval_time += time.perf_counter() - start
        if self.curve[-1][2] >= self.target:
            self.reached, self.model.stop_training = self.curve[-1], True


def _as_examples(model: str, images: np.ndarray) -> np.ndarray:
    """uint8 images (N, H, W) or (N, C, H, W) as ``model`` takes them, float32 in [0, 1].

    Channels first for the image models, the rows as time steps for the LSTM ((N, H, C * W)),
    flat for the MLP.
    """
    n = len(images)
    if images.ndim == 3:
        images = images[:, None]
    if model in ("cnn", "resnet", "vit", "strided"):
        shaped = images
    elif model == "lstm":
        shaped = images.transpose(0, 2, 1, 3).reshape(n, images.shape[2], -1)
    else:
        shaped = images.reshape(n, -1)
    return shaped.astype(np.float32) / np.float32(255)


def build_model(args: argparse.Namespace, shape: tuple[int, ...], n_out: int) -> pn.Sequential:
    """The network ``args.model`` names, for examples of ``shape``, with the options of ``args``."""
    if args.model == "cnn":
        return build_cnn(shape, args.channels, args.hidden, n_out, dropout=args.dropout, augment=args.augment, seed=args.seed)
    if args.model == "resnet":
        return build_resnet(shape, args.channels, n_out, augment=args.augment, seed=args.seed)
    if args.model == "vit":
        return build_vit(shape, n_out, width=args.width, depth=args.depth, heads=args.heads, augment=args.augment, seed=args.seed)
    if args.model == "lstm":
        return build_lstm(shape, args.hidden[0], n_out, seed=args.seed)
    if args.model == "strided":
        return build_strided_cnn(shape, args.channels, args.hidden, n_out, seed=args.seed)
    return build_mlp(shape[0], args.hidden, n_out, dropout=args.dropout, seed=args.seed)


def make_optimizer(args: argparse.Namespace) -> pn.optim.Optimizer:
    cls = getattr(pn.optim, OPTIMIZERS[args.optimizer])
    return cls(lr=args.lr, momentum=args.momentum) if args.optimizer == "sgd" else cls(lr=args.lr)


def make_schedule(args: argparse.Namespace, *, steps_per_epoch: int = 1) -> list[pn.callbacks.Callback]:
    """The callbacks of ``args.schedule``; ``onecycle`` sets the rate every step, ``steps_per_epoch`` steps an epoch."""
    schedules = pn.optim.schedules
    if args.schedule == "onecycle":
        return [schedules.OneCycleLR(max_lr=args.lr, epochs=args.epochs, steps_per_epoch=steps_per_epoch)]
    return {
        "none": [],
        "cosine": [schedules.CosineAnnealingLR(T_max=max(args.epochs, 1))],
        "step": [schedules.StepLR(step_size=max(args.epochs // 3, 1), gamma=0.1)],
        "plateau": [schedules.ReduceLROnPlateau(monitor="loss", factor=0.2, patience=2)],  # Keras counting: as before
        "backtracking": [schedules.Backtracking()],
    }[args.schedule]


#: Arguments of ``portnn train`` that a resumed run may change: where things are and what is printed.
RESUME_MAY_CHANGE = ("resume", "checkpoint", "quiet", "data_dir", "no_download", "run", "report")
#: Defaults of ``portnn train`` options filled in after the saved arguments of a resumed run (None on the command line).
DEFAULTS: dict[str, object] = {"dataset": "mnist", "preset": "mlp", "seed": 0}
#: The CNN's own options, for ``--model cnn`` from a preset without them.
CNN_DEFAULTS: dict[str, object] = {"channels": PRESETS["cnn"]["channels"], "augment": 0}
#: Each model's own options, for ``--model M`` from a preset without them (the CNN's above).
MODEL_DEFAULTS: dict[str, dict[str, object]] = {
    "cnn": CNN_DEFAULTS,
    "resnet": {"channels": PRESETS["resnet"]["channels"], "augment": 0},
    "vit": {"width": 64, "depth": 4, "heads": 4, "augment": 0},
    "lstm": {"hidden": [128]},
    "strided": {"channels": PRESETS["speedrun"]["channels"]},
}
#: The options that only some models use, and those models.
MODEL_OPTIONS: dict[str, tuple[str, ...]] = {
    "channels": ("cnn", "resnet", "strided"),
    "augment": ("cnn", "resnet", "vit"),
    "width": ("vit",),
    "depth": ("vit",),
    "heads": ("vit",),
    "hidden": ("mlp", "cnn", "lstm", "strided"),  # the LSTM's state size
    "dropout": ("mlp", "cnn"),
}


def _option(key: str) -> str:
    return "--" + key.replace("_", "-")


def _given(args: argparse.Namespace) -> set[str]:
    """The options given on the command line (the others are None, or False for flags, until filled)."""
    return {k for k, v in vars(args).items() if v is not None and v is not False and k not in ("command", "run")}


def _checkpoint_args(
    args: argparse.Namespace, given: set[str] | frozenset[str] = frozenset(), *, write: bool = True
) -> str | None:
    """With --resume DIR: take the arguments saved in DIR by the first run; with --checkpoint/--resume: save them there.

    An explicit ``--epochs`` on a resume extends (or shortens) the run, and is saved for later restarts.
    Another option among ``given`` whose value differs from the run's is an error: the run goes on with its own.
    """
    if args.resume and args.checkpoint and Path(args.resume).resolve() != Path(args.checkpoint).resolve():
        raise ValueError(
            f"--checkpoint {args.checkpoint} and --resume {args.resume} name two directories; "
            "--resume DIR alone goes on writing checkpoints to DIR"
        )
    directory = args.resume or args.checkpoint
    if directory is None:
        return None
    saved = Path(directory) / "train_args.json"
    update = not (args.resume and saved.exists())
    if not update:
        try:
            values = json.loads(saved.read_text())
            if not isinstance(values, dict):
                raise ValueError(f"a {type(values).__name__}, not an object")
        except ValueError as exc:
            raise ValueError(
                f"--resume {directory}: {saved} is not the arguments file portnn train writes ({exc}); "
                "resume from the folder of a portnn train run, or start a new run in another folder"
            ) from None
        for key, value in values.items():
            if key in RESUME_MAY_CHANGE or not hasattr(args, key) or (key == "epochs" and args.epochs is not None):
                continue
            if key in given and getattr(args, key) != value:
                raise ValueError(
                    f"--resume {directory} continues the run with the arguments it was started with, and it ran with "
                    f"{_option(key)} {_shown(value)}, not {_shown(getattr(args, key))}: drop {_option(key)} (only --epochs "
                    "may change, to extend the run), or start another run in another folder"
                )
            setattr(args, key, value)
        update = args.epochs is not None
    if update and write:  # rank 0 only in a distributed run
        Path(directory).mkdir(parents=True, exist_ok=True)
        kept = {k: v for k, v in vars(args).items() if k not in RESUME_MAY_CHANGE}
        write_bytes(saved, json.dumps(kept, indent=1).encode())
    return directory


def _shown(value: object) -> str:
    return " ".join(map(str, value)) if isinstance(value, list) else str(value)


def _check_combination(args: argparse.Namespace, given: set[str]) -> str | None:
    """Options given that the run would not use, or a --report that is no folder: the problem in a line, or None."""
    if args.report is not None and Path(args.report).exists() and not Path(args.report).is_dir():
        return f"--report {args.report} is a file; name a folder for the report"
    unused = [_option(k) for k, models in MODEL_OPTIONS.items() if k in given and args.model not in models]
    if unused:
        users = sorted({m for k, models in MODEL_OPTIONS.items() if _option(k) in unused for m in models})
        if args.model == "mlp" and users[:2] == ["cnn", "resnet"]:  # the common case, worded as before
            return f"{' and '.join(unused)} set the CNN's layers, but this run trains an MLP: add --model cnn (or --preset cnn)"
        return (
            f"{' and '.join(unused)} {'sets' if len(unused) == 1 else 'set'} the layers of a {' or '.join(users)} model, "
            f"but this run trains a {args.model} model: add --model {users[0]} (or --preset {users[0]}), or drop "
            f"{' and '.join(unused)}"
        )
    if args.model == "lstm" and "hidden" in given and len(args.hidden) != 1:
        return f"--hidden takes one number for an LSTM (its state size); got {_shown(args.hidden)}"
    if "check_every" in given and args.target is None:
        return (
            "--check-every sets how often --target is checked, but this run has no --target: add --target ACC, "
            "or drop --check-every"
        )
    if "momentum" in given and args.optimizer != "sgd":
        return f"--momentum is SGD's, but this run's optimizer is {args.optimizer}: add --optimizer sgd, or drop --momentum"
    return None


def _finished(directory: str, epochs: int) -> tuple[int, bool] | None:
    """(epochs trained, stopped early) of the run checkpointed in ``directory`` if it has nothing left to do up to ``epochs``.

    None when there is no checkpoint, when it was written mid-epoch or has epochs left, or when it
    cannot be read (``fit`` then says why).
    """
    path = Path(directory) / "checkpoint.safetensors"
    if not path.is_file():
        return None
    try:
        progress = pn.fileformat.read_file(path)[1].get("progress")
        done, step, stopped = int(progress["epoch"]), int(progress["step"]), bool(progress.get("stopped", False))
    except (pn.CheckpointError, KeyError, TypeError, ValueError):
        return None
    return (done, stopped) if step == 0 and (done >= epochs or stopped) else None


def _resume_command(args: argparse.Namespace, directory: str, comm: Any) -> str:
    """The command that continues this run: its folder, plus where the data is and what is printed or written."""
    words = ["portnn", "train", "--resume", directory]
    if args.data_dir is not None:
        words += ["--data-dir", args.data_dir]
    words += ["--no-download"] * bool(args.no_download) + ["--quiet"] * bool(args.quiet)
    if args.report is not None:
        words += ["--report", args.report]
    if comm is not None:
        words = ["mpiexec", "-n", str(comm.size), *words]
    return shlex.join(words)


def _report_needs(command: str, args: argparse.Namespace) -> bool:
    """With --report, check for matplotlib before training rather than after."""
    if getattr(args, "report", None) is None:
        return True
    try:
        pn.plot._matplotlib("report")
    except ImportError as exc:
        print(f"portnn {command}: --report {exc}", file=sys.stderr)
        return False
    return True


def train_command(args: argparse.Namespace) -> int:
    if not _report_needs("train", args):
        return 2
    given = _given(args)
    environment = None  # PORTNN_BACKEND's value, where the backend comes from it
    if args.backend is None:  # read as the library reads it (portnn.get_backend): name, or name:device
        environment, args.backend, device = pn.backends._environment()
        if args.device is None:
            args.device = device
    from_environment = (args.backend, args.device)
    comm = None
    if args.distributed:
        try:
            comm = pn.distributed.init()  # also one BLAS thread per rank, unless the environment chose
        except ImportError as exc:
            print(f"portnn train: --distributed: {exc}", file=sys.stderr)
            return 2
        if not comm.is_root:
            sys.stdout = open(os.devnull, "w")  # this process is one rank of this run: only rank 0 prints
    try:
        checkpoint = _checkpoint_args(args, given, write=comm is None or comm.is_root)
    except (ValueError, OSError) as exc:
        print(f"portnn train: {exc}", file=sys.stderr)
        return 2
    for key, value in DEFAULTS.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    for key, value in PRESETS[args.preset].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.label_smoothing is None:
        args.label_smoothing = 0.0
    for key, value in MODEL_DEFAULTS.get(args.model, {}).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    problem = _check_combination(args, given)
    if problem is not None:
        print(f"portnn train: {problem}", file=sys.stderr)
        return 2
    try:
        backend = pn.set_backend(args.backend, args.device)
    except (pn.BackendUnavailableError, ValueError) as exc:
        if environment is not None and (args.backend, args.device) == from_environment:
            exc = pn.backends._environment_error(environment, exc)  # the error portnn.get_backend() gives
        print(f"portnn train: {exc}", file=sys.stderr)
        return 2
    try:
        return _train(args, backend, checkpoint, comm)
    except KeyboardInterrupt:
        if checkpoint is None:
            hint = (
                "nothing was saved: --checkpoint DIR saves the run every epoch and --resume DIR continues it "
                "(the same --resume DIR command serves the first run and every restart)"
            )
        else:
            hint = f"continue from the last checkpoint in {checkpoint} with: {_resume_command(args, checkpoint, comm)}"
        print(f"portnn train: interrupted; {hint}", file=sys.stderr)
        return 130


def _train(args: argparse.Namespace, backend: pn.Backend, checkpoint: str | None, comm: Any) -> int:
    load = getattr(pn.datasets, DATASETS[args.dataset])
    try:
        (x_train, y_train), (x_test, y_test) = load(args.data_dir, download=not args.no_download)
    except pn.datasets.DatasetError as exc:
        print(f"portnn train: {exc}", file=sys.stderr)
        return 2
    if args.limit is not None:
        x_train, y_train = x_train[: args.limit], y_train[: args.limit]
    n_classes = 10
    x_train, x_test = _as_examples(args.model, x_train), _as_examples(args.model, x_test)
    shape = tuple(x_train.shape[1:])
    finished = _finished(args.resume, args.epochs) if args.resume else None
    try:
        model = build_model(args, shape, n_classes)
        optimizer = make_optimizer(args)
        global_batch = args.batch_size * (comm.size if comm is not None else 1)
        callbacks = make_schedule(args, steps_per_epoch=-(-len(x_train) // global_batch))
        stop = None if args.target is None else StopAtAccuracy(x_test, y_test, target=args.target, every=args.check_every or 100)
        callbacks += [stop] if stop else []
        if not args.quiet:
            print(
                f"portnn {pn.__version__}: {args.dataset}, {len(x_train)} training / {len(x_test)} test images, backend {backend}"
            )
            print(f"preset {args.preset} ({args.model}): {optimizer!r}, schedule {args.schedule}, ", end="")
            print(f"{args.epochs} epochs of batch {args.batch_size}")
            model.summary()
        if finished is not None:
            done, stopped = finished
            why = f"stopped early after {done} epochs" if stopped else f"{done} of {args.epochs} epochs trained"
            further = (
                "" if stopped else f"; portnn train --resume {shlex.quote(args.resume)} --epochs N with N > {done} extends it"
            )
            print(f"The run in {args.resume} is already complete ({why}): its results follow{further}")
        history = model.fit(
            x_train,
            y_train,
            loss=pn.losses.CrossEntropy(label_smoothing=args.label_smoothing),
            optimizer=optimizer,
            epochs=args.epochs,
            batch_size=args.batch_size,
            seed=args.seed,
            validation_data=None if stop else (x_test, y_test),  # with --target, its checks are the validation
            callbacks=callbacks,
            verbose=0 if args.quiet or finished is not None else "auto",  # a finished run has nothing to resume or show
            checkpoint=checkpoint,
            checkpoint_every=args.checkpoint_every,
            resume=args.resume,
            distributed=comm,
            record=args.report is not None or checkpoint is not None,  # so a resume may add --report
            record_every=10,
        )
    except (ValueError, TypeError, FloatingPointError, OSError) as exc:
        print(f"portnn train: {exc}", file=sys.stderr)
        return 1

    if stop is not None:
        print(f"test accuracy every {stop.every} steps: " + ", ".join(f"{s}: {a:.4f}" for s, _, a in stop.curve))
        checks = f"test accuracy checked every {stop.every} steps; the {len(stop.curve)} checks took {stop.eval_time:.1f} s"
        checks += ", not counted"
        if stop.reached is not None:
            step, seconds, accuracy = stop.reached
            print(f"time to {args.target:.2%} test accuracy: {seconds:.1f} s of training, reached {accuracy:.2%} at step {step} "
                  f"(epoch {step * global_batch / len(x_train):.2f}; {checks})")  # fmt: skip
        else:
            print(f"target {args.target:.2%} not reached in {args.epochs} epochs ({checks})")
    start = time.perf_counter()
    predicted = np.argmax(pn.to_numpy(model.predict(x_test)), axis=1)
    predict_time = time.perf_counter() - start
    accuracy = float(np.mean(predicted == y_test))
    print(f"test accuracy: {accuracy:.4f} ({int(np.sum(predicted == y_test))}/{len(y_test)})")
    per_class = [float(np.mean(predicted[y_test == c] == c)) for c in range(n_classes)]
    print("per-class accuracy: " + "  ".join(f"{c}: {a:.4f}" for c, a in enumerate(per_class)))
    times = history.history.get("epoch_time", [])
    if times:
        print(
            f"seconds per epoch: {np.mean(times):.2f} (mean of {len(times)}; includes validation), "
            f"test-set prediction {predict_time:.2f}s"
        )
    if comm is not None:
        print(
            f"distributed: {comm.size} MPI ranks, batch {args.batch_size} per rank ({comm.size * args.batch_size} per step), "
            f"gradients summed through {comm.gradient_path}"
        )
    if args.report is not None and (comm is None or comm.is_root):
        class_names = {"fashion-mnist": FASHION_CLASSES, "cifar10": list(pn.datasets.cifar10.CIFAR10_CLASSES)}.get(args.dataset)
        try:
            files = pn.report.write_report(
                args.report, model, history, x_test, y_test, x_train=x_train, class_names=class_names,
                title=f"portnn train: {args.dataset}, preset {args.preset} ({args.model}), {len(history['loss'])} epochs",
            )  # fmt: skip
        except OSError as exc:
            print(f"portnn train: --report {args.report}: {exc}", file=sys.stderr)
            return 1
        print(f"report: {files['index.html']} ({len(files)} files)")
    return 0


def demo_toy_command(args: argparse.Namespace) -> int:
    """Train Linear-ReLU blocks with Adam (batches of 32) on a 2-D toy set; report on its points."""
    if not _report_needs("demo toy", args):
        return 2
    if args.report is not None and Path(args.report).exists() and not Path(args.report).is_dir():
        print(f"portnn demo toy: --report {args.report} is a file; name a folder for the report", file=sys.stderr)
        return 2
    x, y = toy.load(args.dataset, seed=args.seed)
    model = build_mlp(2, [args.hidden] * args.layers, int(y.max()) + 1, seed=args.seed)
    history = model.fit(
        x, y, loss=pn.losses.CrossEntropy(), optimizer=pn.optim.Adam(lr=args.lr), epochs=args.epochs, batch_size=32,
        seed=args.seed, verbose=0, record=args.report is not None,
    )  # fmt: skip
    accuracy = history["accuracy"][-1]
    final = model.evaluate(x, y)["accuracy"]
    print(f"{args.dataset}: {len(x)} points, {args.layers} x {args.hidden} hidden, {args.epochs} epochs")
    print(f"accuracy: {final:.4f} (last epoch while training: {accuracy:.4f})")
    if args.report is not None:
        title = f"{args.dataset}: {args.layers} hidden layers of {args.hidden}, {args.epochs} epochs"
        try:
            files = pn.report.write_toy_report(args.report, model, history, x, y, title=title)
        except OSError as exc:
            print(f"portnn demo toy: --report {args.report}: {exc}", file=sys.stderr)
            return 1
        print(f"report: {files['index.html']} ({len(files)} files)")
    return 0


def backends_command(args: argparse.Namespace) -> int:
    for name in ("numpy", "cupy", "torch", "array_api_strict"):
        why = pn.backends.get_adapter(name).import_error()
        print(f"{name:18s} {'available' if why is None else 'unavailable: ' + why}")
    print(f"{'auto':18s} -> {pn.backends._resolve('auto').name}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``portnn`` with ``argv`` (default: ``sys.argv[1:]``) and return its exit status; a user error is one line.

    0 on success, 1 when training fails, 2 for a wrong option or combination, 130 after Ctrl-C.
    """
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # argparse's --help, --version and its one-line errors
        return exc.code if isinstance(exc.code, int) else 2
    try:
        return args.run(args)
    except KeyboardInterrupt:  # portnn train says how to continue; the rest has nothing to continue
        print(f"portnn {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())

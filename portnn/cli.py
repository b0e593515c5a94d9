"""The ``portnn`` command: ``portnn train`` trains an MLP on MNIST; ``portnn backends`` lists what runs here."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence

import numpy as np

import portnn as pn

DATASETS = {"mnist": "load_mnist", "fashion-mnist": "load_fashion_mnist"}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="portnn", description="Neural networks from scratch on NumPy, CuPy and the array API.")
    parser.add_argument("--version", action="version", version=f"portnn {pn.__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train an MLP on MNIST and report test accuracy and seconds per epoch")
    train.add_argument("--dataset", choices=sorted(DATASETS), default="mnist")
    train.add_argument(
        "--backend",
        default=os.environ.get("PORTNN_BACKEND", "numpy").partition(":")[0] or "numpy",
        help="numpy (default), cupy, torch, array_api_strict or auto",
    )
    train.add_argument("--device", default=None, help="device of the backend, e.g. cuda:1 (default: the backend's)")
    train.add_argument("--epochs", type=int, default=10)
    train.add_argument("--batch-size", type=int, default=128)
    train.add_argument("--lr", type=float, default=0.1, help="SGD learning rate (the gradient is a batch mean)")
    train.add_argument("--momentum", type=float, default=0.9)
    train.add_argument("--hidden", type=int, nargs="+", default=[1024], metavar="N", help="hidden layer sizes (default: 1024)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--data-dir", default=None, help="folder with the IDX files (default: $PORTNN_DATA_DIR, then the cache)")
    train.add_argument("--no-download", action="store_true", help="never download; fail if no local copy is found")
    train.add_argument("--limit", type=int, default=None, metavar="N", help="train on the first N examples only (quick runs)")
    train.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")
    train.set_defaults(run=train_command)

    info = commands.add_parser("backends", help="list the backends and whether each can run here")
    info.set_defaults(run=backends_command)
    return parser


def train_command(args: argparse.Namespace) -> int:
    try:
        backend = pn.set_backend(args.backend, args.device)
    except (pn.BackendUnavailableError, ValueError) as exc:
        print(f"portnn train: {exc}", file=sys.stderr)
        return 2
    load = getattr(pn.datasets, DATASETS[args.dataset])
    try:
        (x_train, y_train), (x_test, y_test) = load(args.data_dir, download=not args.no_download)
    except pn.datasets.DatasetError as exc:
        print(f"portnn train: {exc}", file=sys.stderr)
        return 2
    if args.limit is not None:
        x_train, y_train = x_train[: args.limit], y_train[: args.limit]
    n_in, n_classes = int(np.prod(x_train.shape[1:])), 10
    x_train = x_train.reshape(len(x_train), n_in).astype(np.float32) / np.float32(255)
    x_test = x_test.reshape(len(x_test), n_in).astype(np.float32) / np.float32(255)

    layers: list[pn.layers.Layer] = []
    for n_prev, n_next in zip([n_in, *args.hidden], args.hidden):
        layers += [pn.layers.Linear(n_prev, n_next), pn.layers.ReLU()]
    layers.append(pn.layers.Linear(([n_in, *args.hidden])[-1], n_classes))
    model = pn.Sequential(layers, seed=args.seed)
    if not args.quiet:
        print(f"portnn {pn.__version__}: {args.dataset}, {len(x_train)} training / {len(x_test)} test images, backend {backend}")
        model.summary()
    try:
        history = model.fit(
            x_train,
            y_train,
            loss=pn.losses.CrossEntropy(),
            optimizer=pn.optim.SGD(lr=args.lr, momentum=args.momentum),
            epochs=args.epochs,
            batch_size=args.batch_size,
            seed=args.seed,
            validation_data=(x_test, y_test),
            verbose=0 if args.quiet else "auto",
        )
    except (ValueError, TypeError, FloatingPointError) as exc:
        print(f"portnn train: {exc}", file=sys.stderr)
        return 1

    start = time.perf_counter()
    predicted = np.argmax(pn.to_numpy(model.predict(x_test)), axis=1)
    predict_time = time.perf_counter() - start
    accuracy = float(np.mean(predicted == y_test))
    print(f"test accuracy: {accuracy:.4f} ({int(np.sum(predicted == y_test))}/{len(y_test)})")
    per_class = [float(np.mean(predicted[y_test == c] == c)) for c in range(n_classes)]
    print("per-class accuracy: " + "  ".join(f"{c}: {a:.4f}" for c, a in enumerate(per_class)))
    times = history["epoch_time"]
    if times:
        print(
            f"seconds per epoch: {np.mean(times):.2f} (mean of {len(times)}; includes validation), "
            f"test-set prediction {predict_time:.2f}s"
        )
    return 0


def backends_command(args: argparse.Namespace) -> int:
    for name in ("numpy", "cupy", "torch", "array_api_strict"):
        why = pn.backends.get_adapter(name).import_error()
        print(f"{name:18s} {'available' if why is None else 'unavailable: ' + why}")
    print(f"{'auto':18s} -> {pn.backends._resolve('auto').name}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    raise SystemExit(main())

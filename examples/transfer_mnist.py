"""Transfer learning: features a CNN learned on digits 0-4 help it learn digits 5-9 from few examples.

1. Train a small CNN on the digits 0-4 and save it (``model.save``).
2. For the digits 5-9, with only ``--few`` training images, build the same network with a new
   5-way head, load the convolutional layers from the file (``load_layers``, which reports
   what matched and what it skipped), freeze them, and train the head.
3. Train the same network from scratch on the same few images, and compare both on the
   test images of 5-9.

Run: ``python examples/transfer_mnist.py [--out-dir DIR]`` (needs MNIST: ``PORTNN_DATA_DIR`` or a
download). The source model is saved to ``DIR/digits_0_4.safetensors``; without ``--out-dir`` it
goes to a temporary folder that is removed at the end.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

import portnn as pn


def cnn(n_out: int, *, seed: int) -> pn.Sequential:
    """The features, two blocks of 3x3 conv (padding 1), BatchNorm2d, ReLU and 2x2 max-pool (8, 16 channels); a Linear head."""
    L = pn.layers
    return pn.Sequential(
        [
            L.Conv2d(1, 8, 3, padding=1), L.BatchNorm2d(8), L.ReLU(), L.MaxPool2d(2),
            L.Conv2d(8, 16, 3, padding=1), L.BatchNorm2d(16), L.ReLU(), L.MaxPool2d(2),
            L.Flatten(), L.Linear(16 * 7 * 7, n_out),
        ],
        input_shape=(1, 28, 28),
        seed=seed,
    )  # fmt: skip


def subset(x: np.ndarray, y: np.ndarray, digits: range, limit: int | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Images of ``digits`` (at most ``limit``, drawn at random), scaled to [0, 1] as (N, 1, 28, 28); labels 0..len-1."""
    keep = np.flatnonzero((y >= digits.start) & (y < digits.stop))
    if limit is not None:
        keep = np.sort(np.random.default_rng(seed).choice(keep, size=min(limit, len(keep)), replace=False))
    return x[keep, None].astype(np.float32) / np.float32(255), (y[keep] - digits.start).astype(np.int64)


def main(
    *, source_images: int = 10000, few: int = 500, epochs: int = 3, data_dir: str | None = None, seed: int = 0,
    workdir: str | None = None, verbose: bool = True,
) -> dict[str, float]:  # fmt: skip
    """Train on 0-4, save, transfer to 5-9 from ``few`` images; the file goes to ``workdir`` (else a folder removed after)."""
    (x_train, y_train), (x_test, y_test) = pn.datasets.load_mnist(data_dir)
    data = (x_train, y_train, x_test, y_test)
    if workdir is not None:
        return _run(*data, source_images, few, epochs, seed, Path(workdir), verbose)
    with tempfile.TemporaryDirectory(prefix="portnn-transfer-") as folder:  # removed at the end, errors included
        return _run(*data, source_images, few, epochs, seed, Path(folder), verbose)


def _run(
    x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, source_images: int, few: int,
    epochs: int, seed: int, folder: Path, verbose: bool,
) -> dict[str, float]:  # fmt: skip
    say = print if verbose else (lambda *a, **k: None)
    loss = pn.losses.CrossEntropy()

    # 1. the source task: digits 0-4
    xs, ys = subset(x_train, y_train, range(0, 5), source_images, seed)
    source = cnn(5, seed=seed)
    source.fit(xs, ys, loss=loss, optimizer=pn.optim.Adam(lr=1e-3), epochs=epochs, batch_size=64, verbose=0)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "digits_0_4.safetensors"
    source.save(path)
    xt, yt = subset(x_test, y_test, range(0, 5), None, seed)
    source_acc = source.evaluate(xt, yt)["accuracy"]
    say(f"source: CNN on {len(xs)} images of 0-4, test accuracy {source_acc:.4f}, saved to {path.name}")

    # 2. the target task, few examples: digits 5-9
    xf, yf = subset(x_train, y_train, range(5, 10), few, seed + 1)
    xv, yv = subset(x_test, y_test, range(5, 10), None, seed)
    target_epochs = max(10, 4 * epochs)
    results = {"source_accuracy": source_acc}
    for name in ("transfer", "scratch"):
        model = cnn(5, seed=seed + 2)  # a fresh 5-way head
        if name == "transfer":
            features = [layer.name for layer in model.layers[:-1] if layer.parameters()]  # all but the head
            report = model.load_layers(path, features)
            say(report)
            model.freeze(*features)
        model.fit(xf, yf, loss=loss, optimizer=pn.optim.Adam(lr=1e-3), epochs=target_epochs, batch_size=32, verbose=0)
        accuracy = results[f"{name}_accuracy"] = model.evaluate(xv, yv)["accuracy"]
        trainable = sum(p.size for p in model.parameters() if p.trainable)
        say(f"{name:8s}: {len(xf)} images of 5-9, {trainable:,} trainable parameters, test accuracy {accuracy:.4f}")
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--few", type=int, default=500, help="training images of the target task (5-9)")
    parser.add_argument("--source-images", type=int, default=10000, help="training images of the source task (0-4)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", default=None, help="keep the source model here (default: a temporary folder, removed)")
    args = parser.parse_args()
    main(
        source_images=args.source_images, few=args.few, epochs=args.epochs, data_dir=args.data_dir, seed=args.seed,
        workdir=args.out_dir,
    )  # fmt: skip

"""Sequential MNIST: an LSTM reads each digit one row at a time, 28 steps of 28 pixels, and names it.

The net is ``LSTM(28, 128) -> Linear(128, 10)`` on the last hidden state: the whole image has
to pass through the 128 numbers of the LSTM's state, row after row. Training uses the
low-level loop (``model.forward``, the loss's backward, the model's backward) so that the
gradients can be clipped before each step, as recurrent nets usually are (global norm 1.0),
with Adam and a one-cycle learning rate per step (up to ``--lr``, then annealed to almost 0).

The default recipe (hidden 128, batch 128, max lr 3e-3, 8 epochs) is meant to reach 98.5%+
test accuracy; ``--epochs``, ``--hidden``, ``--train-images`` shorten it.

Run: ``python examples/sequential_mnist.py [--epochs 8] [--cell gru]`` (needs MNIST:
``PORTNN_DATA_DIR`` or a download).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

import portnn as pn

MEAN, STD = 0.1307, 0.3081  # of MNIST's training pixels in [0, 1]


def rows(images: np.ndarray) -> np.ndarray:
    """(N, 28, 28) uint8 images as (N, 28 steps, 28 features) float32, standardised."""
    return ((images.astype(np.float32) / np.float32(255) - np.float32(MEAN)) / np.float32(STD)).reshape(-1, 28, 28)


def net(cell: str = "lstm", hidden: int = 128, seed: int = 0) -> pn.Sequential:
    recurrent = {"lstm": pn.layers.LSTM, "gru": pn.layers.GRU}[cell]
    return pn.Sequential([recurrent(28, hidden), pn.layers.Linear(hidden, 10)], input_shape=(28, 28), seed=seed)


def main(
    *, epochs: int = 8, batch_size: int = 128, lr: float = 3e-3, hidden: int = 128, cell: str = "lstm", clip: float = 1.0,
    train_images: int | None = None, test_images: int | None = None, data_dir: str | None = None, seed: int = 0,
    verbose: bool = True,
) -> dict[str, Any]:  # fmt: skip
    """Train, then evaluate on the test set; returns the losses per epoch and batch and the test accuracy."""
    say = print if verbose else (lambda *a, **k: None)
    (x_train, y_train), (x_test, y_test) = pn.datasets.load_mnist(data_dir)
    x_train, y_train = rows(x_train[:train_images]), y_train[:train_images].astype(np.int64)
    x_test, y_test = rows(x_test[:test_images]), y_test[:test_images].astype(np.int64)

    model = net(cell, hidden, seed)
    loss_fn = pn.losses.CrossEntropy()
    optimizer = pn.optim.Adam(model.parameters(), lr=lr)
    steps_per_epoch = -(-len(x_train) // batch_size)
    schedule = pn.optim.schedules.OneCycleLR(optimizer, max_lr=lr, total_steps=epochs * steps_per_epoch)
    backend, order = model.backend, np.random.default_rng(seed)
    say(f"{model!r}\n{len(x_train)} training images as 28 steps of 28 pixels, {epochs} epochs of {steps_per_epoch} steps")

    batch_losses, epoch_losses = [], []
    for epoch in range(epochs):
        start, total = time.perf_counter(), 0.0
        perm = order.permutation(len(x_train))
        for step in range(steps_per_epoch):
            idx = perm[step * batch_size : (step + 1) * batch_size]
            xb = backend.adapter.from_numpy(x_train[idx], backend.device)
            yb = backend.adapter.from_numpy(y_train[idx], backend.device)
            optimizer.zero_grad()
            y_pred, backward = model.forward(xb, training=True)
            loss, loss_backward = loss_fn.forward(y_pred, yb)
            backward(loss_backward())
            pn.optim.clip_grad_norm_(model.parameters(), clip)
            optimizer.step()
            if epoch * steps_per_epoch + step + 1 < schedule.total_steps:
                schedule.step()
            batch_losses.append(float(pn.to_numpy(loss)))
            total += batch_losses[-1] * len(idx)
        epoch_losses.append(total / len(x_train))
        say(f"epoch {epoch + 1}/{epochs}: training loss {epoch_losses[-1]:.4f} ({time.perf_counter() - start:.1f} s)")
    result = model.evaluate(x_test, y_test, loss=loss_fn, batch_size=1000)
    say(f"test accuracy {result['accuracy']:.4f} on {len(x_test)} images (loss {result['loss']:.4f})")
    return {"batch_losses": batch_losses, "epoch_losses": epoch_losses, "test_accuracy": result["accuracy"]}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=3e-3, help="the peak of the one-cycle schedule")
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--cell", choices=["lstm", "gru"], default="lstm")
    parser.add_argument("--clip", type=float, default=1.0, help="the gradients' global norm is clipped to this")
    parser.add_argument("--train-images", type=int, default=None, help="use only the first N training images")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    main(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, hidden=args.hidden, cell=args.cell, clip=args.clip,
        train_images=args.train_images, data_dir=args.data_dir, seed=args.seed,
    )  # fmt: skip

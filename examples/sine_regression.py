"""Regression with MSE: a small tanh network fits sin(x) on [-pi, pi].

Run: ``python examples/sine_regression.py``
"""

from __future__ import annotations

import numpy as np

import portnn as pn


def main(epochs: int = 200, seed: int = 0, verbose: bool = True) -> dict[str, float]:
    x, y = pn.datasets.toy.sine(512, seed=seed)  # y = sin(pi x), x in [-1, 1]
    x = np.float32(np.pi) * x  # the net sees x in [-pi, pi] and learns sin(x)
    grid = np.linspace(-np.pi, np.pi, 101, dtype=np.float32)[:, None]
    model = pn.Sequential(
        [pn.layers.Linear(1, 32, init="glorot_uniform"), pn.layers.Tanh(), pn.layers.Linear(32, 32, init="glorot_uniform"),
         pn.layers.Tanh(), pn.layers.Linear(32, 1)],
        seed=seed,
    )  # fmt: skip
    history = model.fit(
        x, y, loss=pn.losses.MSE(), optimizer=pn.optim.SGD(lr=0.05, momentum=0.9), epochs=epochs, batch_size=32, verbose=0
    )
    error = pn.to_numpy(model.predict(grid)) - np.sin(grid)
    result = {"train_mse": history["loss"][-1], "max_abs_error": float(np.max(np.abs(error)))}
    if verbose:
        print(f"train MSE {result['train_mse']:.5f}; largest error on a grid of 101 points: {result['max_abs_error']:.3f}")
    return result


if __name__ == "__main__":
    main()

"""Vanishing gradients, seen: the same deep net with sigmoids and with ReLUs, gradient norms per layer.

A sigmoid's slope is at most 1/4, so the gradient shrinks by a factor at every layer on its
way back: in a 10-layer sigmoid net the first layer's gradient is thousands of times smaller
than the last one's, and the first layers barely learn. ReLUs with He initialisation pass
the gradient back at about the same size. ``fit(record=True)`` keeps the norms;
``pn.plot.grad_norms`` draws them, one figure with both nets side by side.

Run: ``python examples/vanishing_gradients.py [--out-dir DIR]``: the figure goes to
``DIR/vanishing_gradients.png`` (default: a ``portnn-examples`` folder in the system's temporary
folder, never the working tree).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import portnn as pn

FILENAME = "vanishing_gradients.png"


def deep_net(activation: type[pn.layers.Layer], depth: int, width: int, seed: int) -> pn.Sequential:
    init = "glorot_uniform" if activation is pn.layers.Sigmoid else "he_uniform"
    layers: list[pn.layers.Layer] = []
    n_in = 2
    for _ in range(depth):
        layers += [pn.layers.Linear(n_in, width, init=init), activation()]
        n_in = width
    return pn.Sequential([*layers, pn.layers.Linear(n_in, 2, init=init)], seed=seed)


def main(*, depth: int = 9, width: int = 16, epochs: int = 20, seed: int = 0, out: str | None = None) -> dict[str, float]:
    """Train both nets on the moons; return, per activation, the first layer's over the last layer's mean gradient norm."""
    x, y = pn.datasets.toy.moons(seed=seed)
    ratios, histories = {}, {}
    for activation in (pn.layers.Sigmoid, pn.layers.ReLU):
        model = deep_net(activation, depth, width, seed)
        history = model.fit(
            x, y, loss=pn.losses.CrossEntropy(), optimizer=pn.optim.SGD(lr=0.5 if activation is pn.layers.Sigmoid else 0.05),
            epochs=epochs, batch_size=32, verbose=0, record=True,
        )  # fmt: skip
        norms = history.records["grad_norm"]
        first, last = norms[model.layers[0].name], norms[model.layers[-1].name]
        ratios[activation.__name__] = (sum(first) / len(first)) / (sum(last) / len(last))
        histories[activation.__name__] = (history, model.evaluate(x, y)["accuracy"])
    if out is not None:
        from matplotlib.figure import Figure

        fig = Figure(figsize=(14, 5), layout="constrained")
        axes = fig.subplots(1, 2, sharey=True)
        for ax, (name, (history, accuracy)) in zip(axes, histories.items()):
            pn.plot.grad_norms(history, ax=ax)
            ax.set_title(f"{depth} hidden {name} layers: first/last gradient {ratios[name]:.1e}, accuracy {accuracy:.1%}")
        fig.savefig(out)
    return ratios


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=9)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--out-dir", type=Path, default=Path(tempfile.gettempdir()) / "portnn-examples",
        help=f"folder for {FILENAME} (default: portnn-examples in the temporary folder)",
    )  # fmt: skip
    args = parser.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    out = args.out_dir / FILENAME
    for name, ratio in main(depth=args.depth, epochs=args.epochs, seed=args.seed, out=str(out)).items():
        print(f"{name:8s} first layer's gradient / last layer's: {ratio:.2e}")
    print(f"wrote {out}")

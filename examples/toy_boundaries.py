"""Decision boundaries of deeper and deeper nets on the classic 2-D toy sets, in one figure.

Rows are the datasets of ``pn.datasets.toy.DATASETS``; columns are MLPs with 1 to 5 hidden
layers of 16 units. Each panel shows the class the trained net predicts over the square, the
training points on top, and the training accuracy in its title. Linear-ish sets (two Gaussians)
need no depth; curved ones (moons, cubics, sinusoids) a little; the spirals need the most.

Run: ``python examples/toy_boundaries.py [--out-dir DIR] [--quick] [--seed 0]`` (needs
matplotlib; the full run trains 45 small nets in about two minutes on two CPU cores). The PNG
goes to ``DIR/toy_boundaries.png`` (default: a ``portnn-examples`` folder in the system's
temporary folder, never the working tree; ``--out FILE`` names the file itself).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import portnn as pn

DEPTHS = (1, 2, 3, 4, 5)
WIDTH = 16
#: Panel size in inches and the resolution of the PNG: the image is rows*PANEL*DPI by cols*PANEL*DPI pixels.
PANEL, DPI = 2.4, 80
QUICK_DATASETS = ("moons", "spirals")
FILENAME = "toy_boundaries.png"


def default_out_dir() -> Path:
    """Where the examples write unless told: ``portnn-examples`` in the system's temporary folder (not the working tree)."""
    return Path(tempfile.gettempdir()) / "portnn-examples"


def make_model(depth: int, n_classes: int, *, activation: str = "tanh", seed: int = 0) -> pn.Sequential:
    """An MLP from 2 inputs through ``depth`` hidden layers of ``WIDTH`` units to ``n_classes`` logits."""
    act = {"tanh": pn.layers.Tanh, "relu": pn.layers.ReLU}[activation]
    layers, width = [], 2
    for _ in range(depth):
        layers += [pn.layers.Linear(width, WIDTH, init="glorot_uniform"), act()]
        width = WIDTH
    return pn.Sequential([*layers, pn.layers.Linear(width, n_classes)], seed=seed)


def run(
    names: Sequence[str],
    *,
    depths: Sequence[int] = DEPTHS,
    epochs: int = 150,
    lr: float = 0.003,
    n_per_class: int = 200,
    activation: str = "tanh",
    seed: int = 0,
    resolution: int = 150,
    out: str | Path | None = None,
    verbose: bool = True,
) -> dict[str, list[float]]:
    """Train one net per (dataset, depth), draw every decision boundary into one PNG at ``out`` (default: see the module).

    Returns the training accuracies, ``{dataset: [accuracy for each depth]}``.
    """
    from matplotlib.figure import Figure

    import portnn.plot  # noqa: F401  (pn.plot.decision_boundary; needs matplotlib)

    fig = Figure(figsize=(PANEL * len(depths), PANEL * len(names)), dpi=DPI, layout="constrained")
    axes = fig.subplots(len(names), len(depths), squeeze=False)
    accuracies: dict[str, list[float]] = {}
    for row, name in zip(axes, names):
        x, y = pn.datasets.toy.load(name, n_per_class=n_per_class, seed=seed)
        n_classes = int(y.max()) + 1
        accuracies[name] = []
        for ax, depth in zip(row, depths):
            start = time.perf_counter()
            model = make_model(depth, n_classes, activation=activation, seed=seed)
            model.fit(
                x, y, loss=pn.losses.CrossEntropy(), optimizer=pn.optim.Adam(lr=lr),
                epochs=epochs, batch_size=32, verbose=0,
            )  # fmt: skip
            accuracy = model.evaluate(x, y)["accuracy"]
            accuracies[name].append(accuracy)
            title = f"{depth} hidden: {accuracy:.1%}"
            pn.plot.decision_boundary(model, x, y, ax=ax, resolution=resolution, title=title)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_xlabel("")
            ax.set_ylabel(name if depth == depths[0] else "")
            if depth != depths[0] and ax.get_legend() is not None:
                ax.get_legend().remove()  # one legend per row is enough
            if verbose:
                print(f"{name:>14}  {depth} hidden layer(s): accuracy {accuracy:.3f}  ({time.perf_counter() - start:.1f}s)")
    fig.suptitle(
        f"Training accuracy of MLPs with {WIDTH} {activation} units per hidden layer, {epochs} epochs of Adam (lr {lr:g})"
    )
    out = Path(out) if out is not None else default_out_dir() / FILENAME
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=DPI)
    if verbose:
        print(f"wrote {out}")
    return accuracies


def main(argv: Sequence[str] | None = None) -> dict[str, list[float]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out-dir", type=Path, default=None, help=f"folder for {FILENAME} (default: portnn-examples in the temporary folder)"
    )
    parser.add_argument("--out", type=Path, default=None, help=f"the PNG itself (default: OUT_DIR/{FILENAME})")
    parser.add_argument("--quick", action="store_true", help=f"only {', '.join(QUICK_DATASETS)}, few epochs (a smoke test)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data and the nets (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per net (default: 150, or 5 with --quick)")
    parser.add_argument("--lr", type=float, default=0.003, help="Adam's learning rate (default: %(default)s)")
    parser.add_argument("--activation", choices=("tanh", "relu"), default="tanh", help="hidden activation (default: %(default)s)")
    args = parser.parse_args(argv)
    names = QUICK_DATASETS if args.quick else tuple(pn.datasets.toy.DATASETS)
    epochs = args.epochs if args.epochs is not None else (5 if args.quick else 150)
    return run(
        names, epochs=epochs, n_per_class=100 if args.quick else 200, lr=args.lr, activation=args.activation, seed=args.seed,
        resolution=60 if args.quick else 150, out=args.out or (args.out_dir or default_out_dir()) / FILENAME,
    )  # fmt: skip


if __name__ == "__main__":
    main()

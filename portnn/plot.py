"""Figures of a model and its training: learning curves, decision boundaries, confusions, neurons, dead units, gradients.

matplotlib is an optional extra (``pip install "portnn[plot]"``): this module imports it
only when a function is called, so ``import portnn`` works without it, and a call without it
raises an ImportError that says what to install.

Every function takes arrays of any backend (they are moved to the host with
:func:`portnn.backends.to_numpy` on the way in), returns a :class:`matplotlib.figure.Figure`
and never saves or shows it: call ``fig.savefig("name.png")`` yourself. Figures are made
with ``matplotlib.figure.Figure`` directly, not ``pyplot``: no GUI backend is touched (it
works headless, on a server, in a test), and nothing is kept in pyplot's global registry, so
a loop that makes a thousand figures does not leak them. In a notebook, display one by
leaving it as a cell's value. Functions that draw a single panel take ``ax=`` to draw into
an axes of your own figure instead (and then return that axes' figure).

What a figure shows is computed by :mod:`portnn.diagnostics` (class probabilities, losses,
confusions, unit activity); this module only draws it. Models run there in inference mode
(``training=False``) and in batches on their own backend; anything with ``layers``,
``backend`` and ``dtype`` is a model (:class:`portnn.diagnostics.Model`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from . import backends, diagnostics
from ._checks import check_int
from .diagnostics import Model

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "ACTIVATION_LAYERS",
    "activation_fractions",
    "activation_stats",
    "confusion_matrix",
    "decision_boundary",
    "grad_norms",
    "learning_curves",
    "neuron",
    "worst_predictions",
]

#: The layers whose units :func:`activation_fractions` counts as active or not.
ACTIVATION_LAYERS = diagnostics.ACTIVATION_LAYERS
ACTIVATION_LAYERS_NAMES = tuple(cls.__name__ for cls in ACTIVATION_LAYERS)
#: Dots per inch of every figure: a figure of ``figsize=(w, h)`` saves as ``w*DPI`` x ``h*DPI`` pixels.
DPI = 100
INSTALL_HINT = 'pip install "portnn[plot]"'


# -- edges: matplotlib, host arrays ------------------------------------------------------


def _matplotlib(where: str) -> Any:
    """Import matplotlib on first use, or raise an ImportError naming the extra to install."""
    try:
        import matplotlib
        import matplotlib.colors
        import matplotlib.figure
        import matplotlib.ticker
    except ImportError as exc:
        raise ImportError(
            f"portnn.plot.{where} needs matplotlib, which is not installed ({exc}); install it with: {INSTALL_HINT}"
        ) from exc
    return matplotlib


def _figure(where: str, figsize: tuple[float, float]) -> Figure:
    mpl = _matplotlib(where)
    return mpl.figure.Figure(figsize=figsize, dpi=DPI, layout="constrained")


def _axes(where: str, ax: Axes | None, figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    if ax is not None:
        _matplotlib(where)
        return ax.figure, ax
    fig = _figure(where, figsize)
    return fig, fig.add_subplot()


def _host(a: Any) -> np.ndarray:
    """Any backend's array (or a list) as a NumPy array."""
    if isinstance(a, np.ndarray):
        return a
    try:
        return backends.to_numpy(a)
    except TypeError:
        return np.asarray(a)


def _images(where: str, x: np.ndarray, image_shape: tuple[int, ...] | None) -> np.ndarray | None:
    """``x`` as (n, H, W) images: ``image_shape`` if given, else 784 -> 28x28, other squares, (n, H, W) or NCHW with one channel.

    None when no image shape can be inferred.
    """
    n, features = x.shape[0], x.shape[1:]
    size = int(np.prod(features))
    if image_shape is not None:
        shape = tuple(int(d) for d in image_shape)
        if int(np.prod(shape)) != size:
            raise ValueError(
                f"{where}: image_shape={tuple(image_shape)} holds {int(np.prod(shape))} values but each example has {size} "
                f"(shape {tuple(features)}); pass an image_shape whose product is {size}"
            )
        return x.reshape(n, *shape)
    if len(features) == 3 and features[0] == 1:
        return x.reshape(n, *features[1:])
    if len(features) == 2:
        return x
    if len(features) == 1:
        side = math.isqrt(size)
        if side * side == size and side >= 4:  # 784 -> 28x28
            return x.reshape(n, side, side)
    return None


def _class_name(class_names: Any, c: int) -> str:
    if class_names is not None and 0 <= c < len(class_names):
        return str(class_names[c])
    return str(c)


def _class_colors(n_classes: int) -> list[Any]:
    mpl = _matplotlib("decision_boundary")
    cmap = mpl.colormaps["tab10" if n_classes <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n_classes)]


# -- learning curves ----------------------------------------------------------------------


def learning_curves(history: Any, *, title: str | None = None) -> Figure:
    """Loss, and accuracy when it was logged, per epoch, on the training and validation data.

    Parameters
    ----------
    history
        What :meth:`portnn.Sequential.fit` returned, or its ``history.history`` dict
        (``"loss"``, ``"accuracy"``, ``"val_loss"``, ``"val_accuracy"``: one value per epoch).
    title
        Figure title (default: none).

    Returns
    -------
    matplotlib.figure.Figure
        One panel (loss) or two (loss, accuracy), 10 x 4 inches. The loss axis is logarithmic
        when the loss spans more than two orders of magnitude.

    Examples
    --------
    >>> import portnn as pn
    >>> history = pn.History()
    >>> for epoch, (loss, acc) in enumerate([(0.9, 0.7), (0.5, 0.85), (0.4, 0.9)]):
    ...     history.append(epoch, {"loss": loss, "accuracy": acc, "val_loss": loss + 0.1, "val_accuracy": acc - 0.05})
    >>> fig = pn.plot.learning_curves(history)
    >>> [ax.get_ylabel() for ax in fig.axes]
    ['loss', 'accuracy']
    """
    where = "learning_curves"
    logs = history if isinstance(history, Mapping) else getattr(history, "history", None)
    if not isinstance(logs, Mapping):
        raise TypeError(f"{where}: pass the History returned by model.fit (or its .history dict); got {type(history).__name__}")
    if not logs.get("loss"):
        raise ValueError(f"{where}: the history has no 'loss' values (keys: {sorted(logs)}); train for at least one epoch")
    metrics_ = ["loss"] + (["accuracy"] if logs.get("accuracy") or logs.get("val_accuracy") else [])
    fig = _figure(where, (10.0 if len(metrics_) == 2 else 5.5, 4.0))
    mpl = _matplotlib(where)
    for k, metric in enumerate(metrics_):
        ax = fig.add_subplot(1, len(metrics_), k + 1)
        finals, lows, highs = [], [], []
        for key, label, marker in ((metric, "train", "o"), (f"val_{metric}", "validation", "s")):
            values = [float(v) for v in logs.get(key) or []]
            if values:
                shown = marker if len(values) <= 30 else None
                ax.plot(np.arange(1, len(values) + 1), values, marker=shown, markersize=4, label=label)
                finals.append(f"{label} {values[-1]:.4f}")
                lows.append(min(values))
                highs.append(max(values))
        if metric == "loss" and lows and min(lows) > 0 and max(highs) > 100 * min(lows):
            ax.set_yscale("log")  # a loss that fell by orders of magnitude
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.set_title(f"{metric} (last: {', '.join(finals)})", fontsize=10)
        ax.xaxis.set_major_locator(mpl.ticker.MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    return fig


# -- decision boundary --------------------------------------------------------------------


def decision_boundary(
    model: Model, x: Any, y: Any, *, ax: Axes | None = None, resolution: int = 200, title: str | None = None
) -> Figure:
    """The class a 2-D input model predicts over the plane around the data, with the data on top.

    Parameters
    ----------
    model
        A classifier of 2 inputs: C >= 2 outputs (the most probable class), or one output per
        example (a binary model: class 1 where its probability is above 0.5). Outputs are
        logits unless the model ends with Sigmoid or Softmax (see :mod:`portnn.diagnostics`).
    x
        Points of shape (n, 2), any backend; the grid covers them with a 10% margin.
    y
        Their integer class labels (n,), or 0/1 targets (n, 1).
    ax
        Axes to draw into; default: a new 6 x 5 inch figure.
    resolution
        Grid points per axis (the model runs on ``resolution**2`` points).
    title
        Default: the number of classes and the accuracy on ``(x, y)``.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import numpy as np
    >>> import portnn as pn
    >>> x = np.random.default_rng(0).normal(size=(100, 2)).astype(np.float32)
    >>> y = (x[:, 0] > 0).astype(np.int64)
    >>> model = pn.Sequential([pn.layers.Linear(2, 8), pn.layers.ReLU(), pn.layers.Linear(8, 2)], seed=0)
    >>> fig = pn.plot.decision_boundary(model, x, y, resolution=50)
    >>> fig.axes[0].get_xlabel()
    'x[:, 0]'
    """
    where = "decision_boundary"
    mpl = _matplotlib(where)
    X = _host(x)
    if X.ndim != 2 or X.shape[1] != 2:
        raise ValueError(
            f"{where}: x must hold 2-D points of shape (n, 2); got shape {X.shape}. For images use worst_predictions or neuron"
        )
    check_int(where, "resolution", resolution, minimum=2)
    data = diagnostics._classification(where, model, X, y, None, 1024)
    Y, n_classes = data.labels, data.probabilities.shape[1]
    X = X.astype(np.float64)
    lo, hi = X.min(axis=0), X.max(axis=0)
    margin = 0.1 * np.maximum(hi - lo, 1e-3)
    gx = np.linspace(lo[0] - margin[0], hi[0] + margin[0], resolution)
    gy = np.linspace(lo[1] - margin[1], hi[1] + margin[1], resolution)
    xx, yy = np.meshgrid(gx, gy)
    pred_grid = diagnostics._classification(where, model, np.stack([xx.ravel(), yy.ravel()], axis=1), None, None, 1024).predicted
    colors = _class_colors(n_classes)
    cmap = mpl.colors.ListedColormap(colors)
    fig, ax = _axes(where, ax, (6.0, 5.0))
    field = pred_grid.reshape(xx.shape).astype(np.float64)
    ax.contourf(xx, yy, field, levels=np.arange(n_classes + 1) - 0.5, cmap=cmap, alpha=0.3)
    ax.contour(xx, yy, field, levels=np.arange(n_classes - 1) + 0.5, colors="k", linewidths=0.6, alpha=0.6)
    size = float(np.clip(4000 / max(len(X), 1), 6, 36))
    for c in range(n_classes):
        mask = Y == c
        if mask.any():
            ax.scatter(X[mask, 0], X[mask, 1], s=size, color=colors[c], edgecolors="k", linewidths=0.3, label=f"class {c}")
    ax.set_xlim(gx[0], gx[-1])
    ax.set_ylim(gy[0], gy[-1])
    ax.set_xlabel("x[:, 0]")
    ax.set_ylabel("x[:, 1]")
    ax.set_title(
        title if title is not None else f"decision regions, {n_classes} classes: accuracy {data.accuracy:.1%} on {len(Y)} points"
    )
    ax.legend(loc="best", fontsize=8, framealpha=0.8, markerscale=max(1.0, 20 / size))
    return fig


# -- confusion matrix ---------------------------------------------------------------------


def confusion_matrix(
    y_true: Any, y_pred: Any, *, class_names: Any = None, threshold: float | None = None, title: str | None = None
) -> Figure:
    """The confusion matrix with its counts, and each class's accuracy as bars.

    Counts come from :func:`portnn.diagnostics.confusion` (rows: true class, columns:
    predicted); cells are coloured by the fraction of their row on a square-root-like scale
    (``PowerNorm(0.4)``) so that rare confusions next to a ~99% diagonal still show.

    Parameters
    ----------
    y_true
        Integer class labels (n,) (or 0/1 targets (n, 1)), any backend.
    y_pred
        Predicted labels (n,), or scores/logits/probabilities (n, C) (their argmax), or one
        score per example, float (n,) or (n, 1) (class 1 above ``threshold``), any backend.
    class_names
        Names for the ticks; its length sets the number of classes when given.
    threshold
        For one score per example only: None means 0.5, for probabilities (scores outside
        [0, 1] raise); pass 0.0 for logits.
    title
        Default: the number of examples and the accuracy.

    Returns
    -------
    matplotlib.figure.Figure
        Two panels, about 12 x 5 inches for 10 classes.

    Examples
    --------
    >>> import numpy as np
    >>> import portnn as pn
    >>> fig = pn.plot.confusion_matrix(np.array([0, 1, 2, 2]), np.array([0, 2, 2, 2]), class_names=["a", "b", "c"])
    >>> fig.axes[0].get_xlabel(), fig.axes[1].get_ylabel()
    ('predicted', 'accuracy within the class')
    """
    where = "confusion_matrix"
    mpl = _matplotlib(where)
    n_classes = None
    if class_names is not None:
        n_classes = len(class_names)
        scores = _host(y_pred).shape
        if len(scores) == 2 and scores[1] > 1 and scores[1] != n_classes:
            raise ValueError(f"{where}: {n_classes} class_names but y_pred has scores for {scores[1]} classes")
    cm, support, per_class, accuracy = diagnostics._confusion(where, y_true, y_pred, n_classes, threshold)
    c = cm.shape[0]
    total = int(cm.sum())
    rates = cm / np.maximum(support, 1)[:, None]
    names = [_class_name(class_names, k) for k in range(c)]

    side = max(5.0, 0.45 * c + 1.5)
    fig = _figure(where, (side * 2.2, side))
    ax_cm, ax_bar = fig.subplots(1, 2, width_ratios=[1.15, 1])
    norm = mpl.colors.PowerNorm(0.4, vmin=0.0, vmax=1.0)
    image = ax_cm.imshow(rates, cmap="Blues", norm=norm)
    fig.colorbar(image, ax=ax_cm, shrink=0.8, label="fraction of the true class")
    if c <= 30:
        fontsize = 9 if c <= 10 else 7 if c <= 20 else 5
        for i in range(c):
            for j in range(c):
                if cm[i, j] or i == j:
                    color = "white" if norm(rates[i, j]) > 0.6 else "black"
                    ax_cm.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=fontsize, color=color)
    ticks = np.arange(c)
    rotate = 45 if max(len(n) for n in names) > 3 else 0
    ax_cm.set_xticks(ticks, names, rotation=rotate, ha="right" if rotate else "center")
    ax_cm.set_yticks(ticks, names)
    ax_cm.set_xlabel("predicted")
    ax_cm.set_ylabel("true")
    ax_cm.set_title(title if title is not None else f"confusion matrix: {total} examples, accuracy {accuracy:.2%}")

    bars = ax_bar.bar(ticks, per_class, color=[_class_colors(c)[k] for k in range(c)], edgecolor="k", linewidth=0.4)
    low = float(per_class[support > 0].min()) if (support > 0).any() else 0.0
    bottom = max(0.0, math.floor((low - 0.05) * 20) / 20) if low > 0.5 else 0.0
    ax_bar.set_ylim(bottom, 1.0 + (1.0 - bottom) * 0.08)
    ax_bar.axhline(accuracy, color="k", linestyle="--", linewidth=0.8, label=f"overall {accuracy:.2%}")
    if c <= 30:
        ax_bar.bar_label(
            bars,
            labels=[f"{a:.1%}" if s else "-" for a, s in zip(per_class, support)],
            fontsize=7,
            padding=2,
            rotation=90 if c > 12 else 0,
        )
    ax_bar.set_xticks(ticks, names, rotation=rotate, ha="right" if rotate else "center")
    ax_bar.set_xlabel("true class")
    ax_bar.set_ylabel("accuracy within the class")
    ax_bar.set_title("per-class accuracy" + (f" (axis from {bottom:.0%})" if bottom else ""))
    ax_bar.legend(loc="lower right", fontsize=8)
    ax_bar.grid(axis="y", alpha=0.3)
    return fig


# -- worst predictions --------------------------------------------------------------------


def worst_predictions(
    model: Model,
    x: Any,
    y: Any,
    *,
    n: int = 16,
    image_shape: tuple[int, ...] | None = None,
    class_names: Any = None,
) -> Figure:
    """The ``n`` examples with the highest loss, as images titled with the label, the prediction and the top-3 probabilities.

    The loss of an example is its cross-entropy, ``-log`` of the probability the model gives
    its true class (:func:`portnn.diagnostics.worst_predictions`): confident mistakes come first.

    Parameters
    ----------
    model
        A classifier (logits out, or probabilities after a final Sigmoid or Softmax).
    x, y
        Examples (any backend) and their integer labels.
    n
        How many to show (at most ``len(x)``), 8 per row.
    image_shape
        Shape to draw each example as; default: 784 features -> 28x28 (other squares alike),
        (n, H, W) as is, NCHW with one channel -> H x W.
    class_names
        Names to print instead of class indices.

    Returns
    -------
    matplotlib.figure.Figure
        1.9 x 2.4 inches per image.

    Examples
    --------
    >>> import numpy as np
    >>> import portnn as pn
    >>> x = np.random.default_rng(0).random((20, 64), dtype=np.float32)
    >>> model = pn.Sequential([pn.layers.Linear(64, 3)], seed=0)
    >>> fig = pn.plot.worst_predictions(model, x, np.arange(20) % 3, n=4)
    >>> len(fig.axes)
    4
    """
    where = "worst_predictions"
    _matplotlib(where)
    check_int(where, "n", n)
    X = _host(x)
    images = _images(where, X, image_shape)
    if images is None:
        raise ValueError(
            f"{where}: cannot tell how to draw examples of shape {X.shape[1:]} as images; pass image_shape=(H, W) "
            "(for 2-D points use decision_boundary)"
        )
    result = diagnostics._classification(where, model, x, y, None, 1024)
    order, worst = diagnostics._worst(result, n)
    cols = min(len(order), 8)
    rows = math.ceil(len(order) / cols)
    fig = _figure(where, (1.9 * cols, 2.4 * rows + 0.4))
    vmin, vmax = float(images.min()), float(images.max())
    for k, i in enumerate(order):
        ax = fig.add_subplot(rows, cols, k + 1)
        ax.imshow(images[i], cmap="gray_r", vmin=vmin, vmax=vmax)
        ax.set_xticks([])
        ax.set_yticks([])
        true, pred, probs = int(worst.labels[k]), int(worst.predicted[k]), worst.probabilities[k]
        top3 = np.argsort(-probs, kind="stable")[:3]
        line1 = f"#{i}: true {_class_name(class_names, true)}, pred {_class_name(class_names, pred)}"
        line2 = "  ".join(f"{_class_name(class_names, int(c))}: {probs[c]:.2f}" for c in top3)
        ax.set_title(f"{line1}\n{line2}", fontsize=7.5, color="tab:red" if pred != true else "black")
    fig.suptitle(f"the {len(order)} examples of {len(result.labels)} with the highest loss (red: misclassified)", fontsize=11)
    return fig


# -- one neuron ---------------------------------------------------------------------------


def neuron(
    model: Model, layer: str | int, unit: int, x: Any, *, top: int = 9, image_shape: tuple[int, ...] | None = None
) -> Figure:
    """A hidden unit of a Linear layer: its input weights, and the examples of ``x`` that activate it most.

    The activation is the unit's output after the activation layer that follows the Linear
    layer, if one does (ReLU, LeakyReLU, Tanh, Sigmoid), else the Linear output itself.

    Parameters
    ----------
    model
        The model.
    layer
        A Linear layer's name (``"linear"``) or index in ``model.layers``.
    unit
        The unit (output feature) of that layer, ``0 <= unit < out_features``.
    x
        Examples to rank (any backend).
    top
        How many of the most activating examples to show.
    image_shape
        Shape of one example as an image; default inferred as in :func:`worst_predictions`.
        The weights are drawn as an image when the layer's inputs form one (784 -> 28x28,
        blue negative, red positive), else as bars; examples that are not images are drawn
        as a scatter plot (2 features) or bars of their activation.

    Returns
    -------
    matplotlib.figure.Figure
        About 11 x 5 inches.

    Examples
    --------
    >>> import numpy as np
    >>> import portnn as pn
    >>> x = np.random.default_rng(0).random((30, 16), dtype=np.float32)
    >>> model = pn.Sequential([pn.layers.Linear(16, 4), pn.layers.ReLU(), pn.layers.Linear(4, 2)], seed=0)
    >>> fig = pn.plot.neuron(model, "linear", 1, x, top=4)
    >>> fig.get_suptitle()
    'linear, unit 1 (after relu): input weights and the 4 examples of 30 that activate it most'
    """
    where = "neuron"
    _matplotlib(where)
    order, acts, index, measured = diagnostics._top_activating(where, model, layer, unit, x, top, 1024)
    linear, after = model.layers[index], model.layers[measured]
    X = _host(x)
    weights = backends.to_numpy(linear.weight.data)[unit].astype(np.float64)
    # Weights are an image only where they look at the input itself (the first layer with parameters).
    w_img = _images(where, weights[None, :], image_shape) if index == _first_weighted(model) else None

    fig = _figure(where, (11.0, 5.0))
    left, right = fig.subfigures(1, 2, width_ratios=[1, 1.35])
    ax_w = left.add_subplot()
    if w_img is not None:
        bound = float(np.abs(weights).max()) or 1.0
        image = ax_w.imshow(w_img[0], cmap="RdBu_r", vmin=-bound, vmax=bound)
        left.colorbar(image, ax=ax_w, shrink=0.8, label="weight")
        ax_w.set_xticks([])
        ax_w.set_yticks([])
    else:
        ax_w.bar(np.arange(weights.size), weights, color=np.where(weights >= 0, "tab:red", "tab:blue"))
        ax_w.set_xlabel(f"input of {linear.name}")
        ax_w.set_ylabel("weight")
        ax_w.axhline(0, color="k", linewidth=0.5)
    bias = backends.to_numpy(linear.bias.data)[unit] if getattr(linear, "bias", None) is not None else 0.0
    ax_w.set_title(f"input weights (|w| = {np.linalg.norm(weights):.2f}, bias {float(bias):.2f})", fontsize=10)

    images = _images(where, X, image_shape)
    if images is not None:
        cols = math.ceil(math.sqrt(len(order)))
        rows = math.ceil(len(order) / cols)
        vmin, vmax = float(images.min()), float(images.max())
        for k, i in enumerate(order):
            ax = right.add_subplot(rows, cols, k + 1)
            ax.imshow(images[i], cmap="gray_r", vmin=vmin, vmax=vmax)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"#{i}: {acts[i]:.2f}", fontsize=8)
    elif X.ndim == 2 and X.shape[1] == 2:
        ax = right.add_subplot()
        points = ax.scatter(X[:, 0], X[:, 1], c=acts, cmap="viridis", s=10)
        ax.scatter(X[order, 0], X[order, 1], facecolors="none", edgecolors="tab:red", s=60, label=f"top {len(order)}")
        right.colorbar(points, ax=ax, label="activation")
        ax.legend(fontsize=8)
        ax.set_xlabel("x[:, 0]")
        ax.set_ylabel("x[:, 1]")
    else:
        ax = right.add_subplot()
        ax.barh(np.arange(len(order))[::-1], acts[order], color="tab:green")
        ax.set_yticks(np.arange(len(order))[::-1], [f"#{i}" for i in order])
        ax.set_xlabel("activation")
    right.suptitle("most activating examples (activation above each)" if images is not None else "activations", fontsize=10)
    fig.suptitle(
        f"{linear.name}, unit {unit}"
        + (f" (after {after.name})" if after is not linear else "")
        + f": input weights and the {len(order)} examples of {len(acts)} that activate it most"
    )
    return fig


def _first_weighted(model: Model) -> int:
    """Index of the first layer with parameters: the one whose weights look at the input itself."""
    return next((i for i, layer in enumerate(model.layers) if layer.parameters()), -1)


# -- dead and saturated units -------------------------------------------------------------


#: The fraction of the examples on which each unit is active (computed, not drawn: re-exported from diagnostics).
activation_fractions = diagnostics.activation_fractions


def activation_stats(
    source: Any, x: Any = None, *, always_on: float = 0.99, ax: Axes | None = None, batch_size: int = 256
) -> Figure:
    """Per activation layer, the share of dead units (never active) and always-on units, as grouped bars.

    Parameters
    ----------
    source
        A History from ``model.fit(..., record=True)`` (its ``records["active_fraction"]``
        of the last epoch: fractions of the training examples), or a model, whose fractions
        are computed on ``x`` by :func:`portnn.diagnostics.activation_fractions`.
    x
        The examples, with a model (not with a History).
    always_on
        A unit active on at least this fraction of the examples counts as always on (for
        ReLU: a unit that is linear on this data).
    ax
        Axes to draw the bars into; default: a new figure with a second panel, the histogram
        of each layer's per-unit active fractions.
    batch_size
        Examples per forward pass, with a model.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import numpy as np
    >>> import portnn as pn
    >>> model = pn.Sequential([pn.layers.Linear(4, 8), pn.layers.ReLU(), pn.layers.Linear(8, 2)], seed=0)
    >>> fig = pn.plot.activation_stats(model, np.random.default_rng(0).normal(size=(50, 4)))
    >>> fig.axes[0].get_ylabel()
    'share of the layer'
    """
    where = "activation_stats"
    _matplotlib(where)
    diagnostics._check_always_on(where, always_on)
    if hasattr(source, "layers"):  # a model
        if x is None:
            raise ValueError(f"{where}: with a model, pass the examples x to run it on (activation_stats(model, x))")
        fractions = diagnostics.activation_fractions(source, x, batch_size=batch_size)
        where_from = f"on {_host(x).shape[0]} examples"
    else:
        if x is not None:
            raise ValueError(f"{where}: x is used only with a model; a History already holds the fractions of its last epoch")
        fractions = diagnostics._recorded_fractions(where, source)
        records = source if isinstance(source, Mapping) else source.records
        where_from = f"in training epoch {max(len(v) for v in records['active_fraction'].values())}"
    if not fractions:
        raise ValueError(f"{where}: the model has no activation layers ({', '.join(ACTIVATION_LAYERS_NAMES)}) to count")
    shares = diagnostics._unit_shares(where, fractions, always_on)
    names = list(fractions)
    dead = np.array([shares[k].dead for k in names])
    full = np.array([shares[k].always_on for k in names])
    sizes = [shares[k].units for k in names]
    mpl = _matplotlib(where)
    if ax is None:  # a second panel: how often each unit is active, per layer
        fig = _figure(where, (max(5.0, 1.3 * len(names) + 2.5) + 5.5, 4.0))
        ax, ax_hist = fig.subplots(1, 2, width_ratios=[max(5.0, 1.3 * len(names) + 2.5), 5.5])
        for name in names:
            ax_hist.hist(fractions[name], bins=np.linspace(0, 1, 41), histtype="step", linewidth=1.5, label=name)
        ax_hist.set_xlabel("share of the examples on which the unit is active")
        ax_hist.set_ylabel("units")
        ax_hist.xaxis.set_major_formatter(mpl.ticker.PercentFormatter(1.0))
        ax_hist.set_title("how often each unit is active", fontsize=10)
        ax_hist.legend(fontsize=8)
        ax_hist.grid(alpha=0.3)
    else:
        fig = ax.figure
    pos = np.arange(len(names))
    width = 0.38
    for offset, values, label, color in (
        (-width / 2, dead, "dead (never active)", "tab:gray"),
        (width / 2, full, f"always on (active on >= {always_on:.0%})", "tab:orange"),
    ):
        bars = ax.bar(pos + offset, values, width, label=label, color=color, edgecolor="k", linewidth=0.4)
        ax.bar_label(bars, labels=[f"{v:.1%}\n({round(v * s)}/{s})" for v, s in zip(values, sizes)], fontsize=7, padding=2)
    ax.set_xticks(pos, names)
    ax.set_ylabel("share of the layer")
    ax.set_ylim(0, max(0.1, float(max(dead.max(), full.max()))) * 1.35)
    ax.yaxis.set_major_formatter(mpl.ticker.PercentFormatter(1.0))
    ax.set_title(f"dead and always-on units {where_from}", fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(axis="y", alpha=0.3)
    return fig


# -- gradient norms -----------------------------------------------------------------------


def grad_norms(history: Any, *, log: bool = True, ax: Axes | None = None) -> Figure:
    """The L2 norm of each layer's parameter gradients over the recorded training steps.

    One line per layer, coloured from dark (first layer) to light (last), on a log scale by
    default: in a deep sigmoid or tanh net the first layers' lines sit orders of magnitude
    below the last ones' (vanishing gradients).

    Parameters
    ----------
    history
        A History from ``model.fit(..., record=True)`` (``records["step"]`` and
        ``records["grad_norm"]``).
    log
        Log-scale y axis.
    ax
        Axes to draw into; default: a new 8 x 4.5 inch figure.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import portnn as pn
    >>> history = pn.History()
    >>> history.records = {"step": [0, 10, 20], "grad_norm": {"linear": [1.0, 0.5, 0.2], "linear_1": [2.0, 1.0, 0.8]}}
    >>> fig = pn.plot.grad_norms(history)
    >>> fig.axes[0].get_yscale()
    'log'
    """
    where = "grad_norms"
    mpl = _matplotlib(where)
    steps, norms = diagnostics._recorded_grad_norms(where, history)
    fig, ax = _axes(where, ax, (8.0, 4.5))
    cmap = mpl.colormaps["viridis"]
    for k, (name, values) in enumerate(norms.items()):
        x = steps if len(steps) == len(values) else np.arange(len(values))
        color = cmap(0.9 * k / max(len(norms) - 1, 1))
        window = len(values) // 40
        if window < 2:
            ax.plot(x, values, label=name, color=color, linewidth=1.2, marker="o" if len(values) < 30 else None, markersize=3)
            continue
        # Many steps: the raw norms, faint, under a running mean (geometric on a log scale) of 1/40 of the run.
        ax.plot(x, values, color=color, linewidth=0.5, alpha=0.25)
        kernel = np.ones(window) / window
        smooth = (
            np.exp(np.convolve(np.log(np.maximum(values, 1e-30)), kernel, mode="valid"))
            if log
            else np.convolve(values, kernel, mode="valid")
        )
        ax.plot(x[window - 1 :], smooth, label=f"{name} (running mean of {window})", color=color, linewidth=1.8)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel("gradient L2 norm")
    ax.set_title(f"gradient norm per layer ({len(steps)} recorded steps)", fontsize=10)
    ax.legend(fontsize=8, ncol=1 if len(norms) <= 8 else 2, loc="best")
    ax.grid(alpha=0.3, which="both" if log else "major")
    return fig

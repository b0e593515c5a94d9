"""A folder that tells how a training run went: figures, ``metrics.json`` and a static ``index.html`` showing them.

:func:`write_report` is for image classifiers (MNIST): learning curves, the confusion matrix,
the worst test predictions, a few first-layer neurons and, when ``fit`` ran with
``record=True``, dead units and gradient norms. :func:`write_toy_report` is for 2-D toy
sets: the decision boundary and the learning curves. ``portnn train --report DIR`` and
``portnn demo toy --report DIR`` write them from the command line.

The page has no external assets (relative image links, inline style), so the folder can be
zipped, copied or opened from disk. Every file is written to a temporary name and renamed,
so a reader never sees half a PNG. Needs matplotlib (``pip install "portnn[plot]"``).
"""

from __future__ import annotations

import html
import io
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import diagnostics, plot
from ._checks import check_int
from ._version import __version__
from .diagnostics import Model
from .fileformat import write_bytes
from .layers.dense import Linear

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["write_report", "write_toy_report"]

#: A unit active on at least this fraction of the examples counts as always on in the report.
ALWAYS_ON = 0.99


# -- files --------------------------------------------------------------------------------


def _save(fig: Figure, path: Path) -> Path:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    write_bytes(path, buffer.getvalue())
    return path


def _write_text(path: Path, text: str) -> Path:
    write_bytes(path, text.encode("utf-8"))
    return path


def _jsonable(value: Any) -> Any:
    """Floats, ints, lists and dicts that ``json`` writes as standard JSON (NaN and inf become null)."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value if value is None or isinstance(value, str) else str(value)


# -- numbers ------------------------------------------------------------------------------


def _classification(
    where: str, model: Model, x: Any, y: Any, class_names: Sequence[str] | None
) -> tuple[dict[str, Any], np.ndarray]:
    """Loss, accuracy, per-class accuracy, confusion matrix and the most frequent confusions on ``(x, y)``."""
    result = diagnostics._classification(where, model, x, y, None, 1024)
    c = result.probabilities.shape[1]
    if class_names is not None and len(class_names) != c:
        raise ValueError(f"{where}: {len(class_names)} class_names but the model predicts {c} classes; pass {c} names")
    confusion = diagnostics.confusion(result.labels, result.predicted, num_classes=c)
    names = [plot._class_name(class_names, k) for k in range(c)]
    summary = {
        "examples": int(len(result.labels)),
        "loss": result.loss,
        "accuracy": result.accuracy,
        "class_names": names,
        "per_class_accuracy": {names[k]: float(confusion.per_class_accuracy[k]) for k in range(c)},
        "confusion_matrix": confusion.matrix.tolist(),
        "most_confused": [
            {"true": names[t], "predicted": names[p], "count": n} for t, p, n in diagnostics.most_confused(confusion.matrix)
        ],
    }
    return summary, result.predicted


def _history_logs(history: Any) -> dict[str, list[float]]:
    if history is None:
        return {}
    logs = history if isinstance(history, Mapping) else getattr(history, "history", None)
    if not isinstance(logs, Mapping):
        raise TypeError(f"write_report: history must be the History returned by model.fit; got {type(history).__name__}")
    return {k: [float(v) for v in values] for k, values in logs.items()}


def _records(history: Any) -> dict[str, Any]:
    return getattr(history, "records", None) or {}


def _records_summary(records: Mapping[str, Any]) -> dict[str, Any]:
    """The last recorded gradient norm of each layer, and each activation layer's dead and always-on shares in the last epoch."""
    out: dict[str, Any] = {}
    if records.get("grad_norm"):
        out["last_grad_norm"] = {name: (float(v[-1]) if len(v) else None) for name, v in records["grad_norm"].items()}
        out["recorded_steps"] = len(records.get("step") or [])
    if records.get("active_fraction"):
        shares = diagnostics.unit_shares(diagnostics.recorded_fractions(records), always_on=ALWAYS_ON)
        out["activation_last_epoch"] = {name: s._asdict() for name, s in shares.items()}
    return out


def _base_metrics(model: Model, history: Any) -> dict[str, Any]:
    return {
        "portnn_version": __version__,
        "model_summary": model.summary(print_fn=None),
        "history": _history_logs(history),
        "epochs": len(_history_logs(history).get("loss", [])),
        "records": _records_summary(_records(history)),
    }


# -- the page -----------------------------------------------------------------------------

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1250px; margin: 2em auto; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 2em; border-bottom: 1px solid #ddd; }
img { max-width: 100%; border: 1px solid #e4e4e4; }
figcaption, .note { color: #555; font-size: 0.92em; max-width: 60em; }
table { border-collapse: collapse; font-size: 0.92em; }
td, th { padding: 2px 10px; border-bottom: 1px solid #eee; text-align: right; }
th:first-child, td:first-child { text-align: left; }
pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
.big { font-size: 1.2em; }
"""


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(v: Any) -> str:
        return html.escape(f"{v:.4f}" if isinstance(v, float) else str(v))

    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _history_table(logs: Mapping[str, list[float]]) -> str:
    keys = [k for k in ("loss", "accuracy", "val_loss", "val_accuracy", "lr", "epoch_time") if k in logs]
    keys += [k for k in logs if k not in keys]
    n = max((len(v) for v in logs.values()), default=0)
    rows = [[e + 1, *[(logs[k][e] if e < len(logs[k]) else "") for k in keys]] for e in range(n)]
    return _table(["epoch", *keys], rows)


def _page(title: str, intro: str, sections: Sequence[tuple[str, str]]) -> str:
    """The HTML page: ``intro`` and ``sections`` are (heading, HTML body) with every text already escaped."""
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        intro,
    ]
    for heading, body in sections:
        parts.append(f"<h2>{html.escape(heading)}</h2>\n{body}")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _figure_html(name: str, caption: str) -> str:
    src = html.escape(name, quote=True)
    return f'<figure><img src="{src}" alt="{src}"><figcaption>{html.escape(caption)}</figcaption></figure>'


# -- the reports --------------------------------------------------------------------------


class _Report:
    """A report being written into a folder: figures saved as they are added, then ``metrics.json`` and ``index.html``."""

    def __init__(self, directory: str | os.PathLike[str], model: Model, history: Any) -> None:
        self.out = Path(directory)
        self.out.mkdir(parents=True, exist_ok=True)
        self.files: dict[str, Path] = {}
        self.sections: list[tuple[str, str]] = []
        self.history = history
        self.summary = _base_metrics(model, history)

    def save(self, name: str, fig: Figure) -> Path:
        self.files[name] = _save(fig, self.out / name)
        return self.files[name]

    def add(self, name: str, fig: Figure, heading: str, caption: str) -> None:
        """Save ``fig`` as ``name`` and give it a section of the page."""
        self.save(name, fig)
        self.sections.append((heading, _figure_html(name, caption)))

    def add_records(self) -> None:
        """The pictures of ``fit(record=True)``: dead and always-on units, gradient norms (when recorded)."""
        records = _records(self.history)
        if records.get("active_fraction"):
            self.add(
                "activation_stats.png",
                plot.activation_stats(self.history, always_on=ALWAYS_ON),
                "Dead and always-on units",
                "Per activation layer, in the last training epoch: the share of units never active (dead: they pass "
                f"no gradient and stopped learning) and of units active on at least {ALWAYS_ON:.0%} of the examples "
                "(for ReLU: units that act linearly).",
            )
        if records.get("grad_norm"):
            self.add(
                "grad_norms.png",
                plot.grad_norms(self.history),
                "Gradient norms",
                "The L2 norm of each layer's parameter gradient over the training steps (log scale). Early layers far "
                "below late ones would mean vanishing gradients; spikes, exploding ones.",
            )

    def finish(self, title: str, intro: str, extra: Sequence[tuple[str, str]] = ()) -> dict[str, Path]:
        """Write ``metrics.json`` and ``index.html`` (the model, the figures, ``extra``, the per-epoch history)."""
        self.files["metrics.json"] = _write_text(self.out / "metrics.json", json.dumps(_jsonable(self.summary), indent=2) + "\n")
        sections = [("Model", f"<pre>{html.escape(self.summary['model_summary'])}</pre>"), *self.sections, *extra]
        if self.summary["history"]:
            sections.append(("Per-epoch history", _history_table(self.summary["history"])))
        self.files["index.html"] = _write_text(self.out / "index.html", _page(title, intro, sections))
        return self.files


def write_report(
    directory: str | os.PathLike[str],
    model: Model,
    history: Any,
    x_test: Any,
    y_test: Any,
    *,
    x_train: Any = None,
    class_names: Sequence[str] | None = None,
    neurons: int = 4,
    image_shape: tuple[int, ...] | None = None,
    title: str | None = None,
) -> dict[str, Path]:
    """Write the figures, ``metrics.json`` and an ``index.html`` of a trained image classifier into ``directory``.

    Files: ``learning_curves.png``, ``confusion_matrix.png``, ``worst_predictions.png``,
    ``neuron_<layer>_<unit>.png`` for the ``neurons`` units of the first Linear layer with the
    largest input-weight norms (their top examples taken from ``x_train``, else ``x_test``),
    ``activation_stats.png`` and ``grad_norms.png`` when ``history`` has records
    (``fit(..., record=True)``), ``metrics.json`` (test loss and accuracy, per-class accuracy,
    the confusion matrix, the most frequent confusions, the per-epoch history, the model
    summary, the portnn version) and ``index.html``.

    Parameters
    ----------
    directory
        Created if needed; files of the same names are replaced.
    model
        A trained classifier (logits out).
    history
        What ``model.fit`` returned (None: no learning curves).
    x_test, y_test
        Test examples (any backend) and integer labels.
    x_train
        Examples in which to look for each neuron's most activating inputs.
    class_names
        One name per class (default: the class indices).
    neurons
        How many first-layer units to draw (0: none).
    image_shape
        Shape of one example as an image; default inferred (784 -> 28x28, NCHW with one channel).
    title
        Page title.

    Returns
    -------
    dict[str, pathlib.Path]
        File name (``"confusion_matrix.png"``, ``"metrics.json"``, ``"index.html"``...) -> its path.

    Examples
    --------
    >>> import tempfile, numpy as np, portnn as pn
    >>> x = np.random.default_rng(0).random((60, 16), dtype=np.float32)
    >>> y = (x[:, 0] > 0.5).astype(np.int64)
    >>> model = pn.Sequential([pn.layers.Linear(16, 8), pn.layers.ReLU(), pn.layers.Linear(8, 2)], seed=0)
    >>> history = model.fit(x, y, loss=pn.losses.CrossEntropy(), optimizer=pn.optim.SGD(lr=0.1), epochs=2, verbose=0)
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     files = pn.report.write_report(folder, model, history, x, y, neurons=1)
    >>> sorted(files)[:3]
    ['confusion_matrix.png', 'index.html', 'learning_curves.png']
    """
    where = "write_report"
    plot._matplotlib(where)
    check_int(where, "neurons", neurons, minimum=0)
    test, predicted = _classification(where, model, x_test, y_test, class_names)
    report = _Report(directory, model, history)
    summary = report.summary
    summary.update(loss=test["loss"], accuracy=test["accuracy"], test=test)
    logs = summary["history"]
    if logs.get("loss"):
        report.add(
            "learning_curves.png",
            plot.learning_curves(logs),
            "Learning curves",
            "Loss and accuracy per epoch on the training data (averaged over the epoch, while the weights changed) "
            "and on the validation data (at the end of the epoch). A validation loss that rises while the "
            "training loss falls is overfitting.",
        )
    confused = ", ".join(f"{d['true']} taken for {d['predicted']} ({d['count']}x)" for d in test["most_confused"][:3])
    report.add(
        "confusion_matrix.png",
        plot.confusion_matrix(y_test, plot._host(predicted), class_names=test["class_names"]),
        "Confusion matrix",
        "Rows are true classes, columns predicted ones; cells give counts, coloured by the fraction of the row. "
        f"Most frequent confusions: {confused or 'none'}.",
    )
    if plot._images(where, plot._host(x_test)[:1], image_shape) is not None:
        report.add(
            "worst_predictions.png",
            plot.worst_predictions(model, x_test, y_test, n=16, image_shape=image_shape, class_names=class_names),
            "Worst predictions",
            "The test examples with the highest loss: confident mistakes (red titles) and correct but unsure "
            "answers. Each title gives the true label, the prediction and the three most probable classes.",
        )
    first = next((i for i, layer in enumerate(model.layers) if isinstance(layer, Linear)), None)
    if first is not None and neurons:
        layer = model.layers[first]
        pool = x_test if x_train is None else x_train
        blocks = []
        for unit in diagnostics.units_by_weight_norm(layer, top=neurons):
            name = f"neuron_{layer.name}_{unit}.png"
            report.save(name, plot.neuron(model, first, unit, pool, top=9, image_shape=image_shape))
            blocks.append(_figure_html(name, f"{layer.name}, unit {unit}"))
        report.sections.append(
            (
                f"Neurons of {layer.name}",
                '<p class="note">The units of the first Linear layer with the largest weight norms: their input '
                "weights (red positive, blue negative: the pattern the unit looks for) and the "
                f"{'training' if x_train is not None else 'test'} examples that activate it most.</p>" + "".join(blocks),
            )
        )
    report.add_records()
    per_class = _table(
        ["class", "accuracy", "examples"],
        [(k, v, int(np.sum(test["confusion_matrix"][i]))) for i, (k, v) in enumerate(test["per_class_accuracy"].items())],
    )
    intro = (
        f'<p class="big">Test accuracy <b>{test["accuracy"]:.2%}</b> '
        f"({round(test['accuracy'] * test['examples'])}/{test['examples']}), test loss {test['loss']:.4f}, "
        f"after {summary['epochs']} epochs. portnn {html.escape(summary['portnn_version'])}. "
        '<a href="metrics.json">metrics.json</a> holds every number on this page.</p>'
    )
    return report.finish(title or "portnn training report", intro, [("Per-class accuracy", per_class)])


def write_toy_report(
    directory: str | os.PathLike[str],
    model: Model,
    history: Any,
    x: Any,
    y: Any,
    *,
    title: str | None = None,
    resolution: int = 300,
) -> dict[str, Path]:
    """Write the decision boundary, learning curves, ``metrics.json`` and ``index.html`` of a 2-D classifier.

    ``activation_stats.png`` and ``grad_norms.png`` are added when ``history`` has records.

    Parameters
    ----------
    directory
        Created if needed.
    model
        A trained classifier of 2-D points (C logits, or one logit for two classes).
    history
        What ``model.fit`` returned (None: no learning curves).
    x, y
        The points (n, 2) and their integer labels (the data the boundary is drawn over, and
        the accuracy in ``metrics.json``).
    title
        Page and figure title.
    resolution
        Grid points per axis of the decision boundary.

    Returns
    -------
    dict[str, pathlib.Path]
        File name -> its path.

    Examples
    --------
    >>> import tempfile, portnn as pn
    >>> from portnn.datasets import toy
    >>> x, y = toy.load("moons", n_per_class=50)
    >>> model = pn.Sequential([pn.layers.Linear(2, 8), pn.layers.ReLU(), pn.layers.Linear(8, 2)], seed=0)
    >>> history = model.fit(x, y, loss=pn.losses.CrossEntropy(), optimizer=pn.optim.SGD(lr=0.1), epochs=2, verbose=0)
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     sorted(pn.report.write_toy_report(folder, model, history, x, y, resolution=50))
    ['decision_boundary.png', 'index.html', 'learning_curves.png', 'metrics.json']
    """
    where = "write_toy_report"
    plot._matplotlib(where)
    data, _ = _classification(where, model, x, y, None)
    report = _Report(directory, model, history)
    summary = report.summary
    summary.update(loss=data["loss"], accuracy=data["accuracy"], data=data)
    report.add(
        "decision_boundary.png",
        plot.decision_boundary(model, x, y, resolution=resolution, title=title),
        "Decision boundary",
        "The class the model predicts at each point of the plane (shaded), with the training points on top.",
    )
    if summary["history"].get("loss"):
        report.add(
            "learning_curves.png", plot.learning_curves(summary["history"]), "Learning curves", "Loss and accuracy per epoch."
        )
    report.add_records()
    intro = (
        f'<p class="big">Accuracy <b>{data["accuracy"]:.2%}</b> on the {data["examples"]} points, loss {data["loss"]:.4f}, '
        f"after {summary['epochs']} epochs. portnn {html.escape(summary['portnn_version'])}. "
        '<a href="metrics.json">metrics.json</a> holds the numbers.</p>'
    )
    return report.finish(title or "portnn toy report", intro)

"""What the figures and reports show, computed: class probabilities, per-example losses, confusions, unit activity.

:mod:`portnn.plot` and :mod:`portnn.report` draw and write what these functions compute;
call them yourself to get the numbers behind a figure (or to print them, or draw them your
own way).

A model here is anything with ``layers`` (each called as ``layer(x)``, in inference mode),
``backend`` (a :class:`portnn.Backend`: where its parameters live) and ``dtype`` (``"float32"``
or ``"float64"``), such as :class:`portnn.Sequential`. Data of any backend, or host data, is
brought onto the model's backend and cast to its dtype; the model runs there in batches.
The results are small (one number or row per example, per class, per unit) and are returned
on the host as NumPy arrays, float64 for rates and probabilities and int64 for counts and
indices, ready to draw or print.

Outputs are read as logits unless the model ends with Sigmoid or Softmax (then they are
probabilities); pass ``from_logits=`` to say so yourself. A single output per example is a
binary model: class 1 with probability ``sigmoid(z)`` (or the output itself, after Sigmoid).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NamedTuple, Protocol

from array_api_compat import array_namespace

from . import backends, metrics
from ._array import dtype_name
from ._checks import check_int
from ._inputs import batches, model_input
from .layers.activations import LeakyReLU, ReLU, Sigmoid, Softmax, Tanh
from .layers.dense import Linear

__all__ = [
    "ACTIVATION_LAYERS",
    "ACTIVE_ABOVE",
    "Classification",
    "Confusion",
    "GradNorms",
    "Model",
    "TopActivating",
    "UnitShares",
    "activation_fractions",
    "active_counts",
    "active_threshold",
    "class_labels",
    "classification",
    "confusion",
    "example_losses",
    "most_confused",
    "recorded_fractions",
    "recorded_grad_norms",
    "top_activating",
    "unit_shares",
    "units_by_weight_norm",
    "worst_predictions",
]

#: The output above which a unit of each activation layer counts as active.
ACTIVE_ABOVE: dict[type, float] = {ReLU: 0.0, LeakyReLU: 0.0, Tanh: 0.0, Sigmoid: 0.5}
#: The layers whose units :func:`activation_fractions` counts as active or not.
ACTIVATION_LAYERS = tuple(ACTIVE_ABOVE)


class Model(Protocol):
    """What these functions use of a model (:class:`portnn.Sequential` has it)."""

    layers: Sequence[Any]

    @property
    def backend(self) -> Any: ...

    @property
    def dtype(self) -> Any: ...


class Classification(NamedTuple):
    """What :func:`classification` returns: one entry per example, on the host."""

    #: The true classes, int64 (n,); None when no labels were given.
    labels: Any
    #: The predicted classes (the most probable; the first on ties), int64 (n,).
    predicted: Any
    #: Class probabilities, float64 (n, C); a single-output model has C = 2: ``[1 - p, p]``.
    probabilities: Any
    #: Each example's cross-entropy, ``-log`` of the probability of its true class, float64 (n,); None without labels.
    losses: Any

    @property
    def accuracy(self) -> float:
        """The fraction of examples whose predicted class is the true one."""
        self._need_labels("accuracy")
        return float(array_namespace(self.labels).mean(_as_f64(self.predicted == self.labels)))

    @property
    def loss(self) -> float:
        """The mean cross-entropy."""
        self._need_labels("loss")
        return float(array_namespace(self.losses).mean(self.losses))

    def _need_labels(self, what: str) -> None:
        if self.labels is None:
            raise ValueError(f"Classification.{what}: no labels were given; pass y to classification(model, x, y)")


class Confusion(NamedTuple):
    """What :func:`confusion` returns, on the host."""

    #: Counts of (true, predicted) pairs, rows true classes, int64 (C, C).
    matrix: Any
    #: Examples of each true class, int64 (C,).
    support: Any
    #: The accuracy within each true class (its recall; 0 without examples), float64 (C,).
    per_class_accuracy: Any
    #: The overall accuracy (the diagonal's share; 0 without examples).
    accuracy: float


class TopActivating(NamedTuple):
    """What :func:`top_activating` returns."""

    #: The examples that activate the unit most, most first (a stable order on ties), int64.
    indices: Any
    #: The unit's activation on every example of ``x``, float64 (n,).
    activations: Any
    #: The index of the Linear layer in ``model.layers``.
    layer: int
    #: The index of the layer whose output is measured: the activation layer after it, or itself.
    measured: int


class UnitShares(NamedTuple):
    """What :func:`unit_shares` returns for a layer."""

    #: Units in the layer.
    units: int
    #: The share of units never active (dead on this data).
    dead: float
    #: The share of units active on at least ``always_on`` of the examples.
    always_on: float


class GradNorms(NamedTuple):
    """What :func:`recorded_grad_norms` returns."""

    #: The recorded training steps, int64 (s,).
    steps: Any
    #: Layer name -> the L2 norm of its parameters' gradients at those steps, float64 (s,).
    norms: dict[str, Any]


# -- units: what counts as active -----------------------------------------------------------


def active_threshold(layer: Any) -> float | None:
    """The output value above which ``layer``'s units count as active (None: not an activation layer).

    Examples
    --------
    >>> import portnn as pn
    >>> pn.diagnostics.active_threshold(pn.layers.Sigmoid()), pn.diagnostics.active_threshold(pn.layers.Linear(2, 2))
    (0.5, None)
    """
    for cls, threshold in ACTIVE_ABOVE.items():
        if isinstance(layer, cls):
            return threshold
    return None


def active_counts(out: Any, threshold: float) -> Any:
    """For each unit (feature of the flattened output), on how many examples of the batch it is above ``threshold``.

    An array of ``out``'s namespace, device and dtype, of shape (units,); no transfer to the host.

    Examples
    --------
    >>> import numpy as np
    >>> import portnn as pn
    >>> pn.diagnostics.active_counts(np.array([[1.0, -1.0], [2.0, 0.0], [0.5, 3.0]]), 0.0)
    array([3., 1.])
    """
    xp = array_namespace(out)
    flat = xp.reshape(out, (out.shape[0], -1))
    return xp.sum(xp.astype(flat > threshold, out.dtype), axis=0)


# -- edges: host arrays, models ---------------------------------------------------------------


def _host(a: Any) -> Any:
    """Any backend's array, or host data (a list), as a NumPy array."""
    try:
        return backends.to_numpy(a)
    except TypeError:
        adapter = backends.get_adapter("numpy")
        return backends.as_backend_array(a, backends.Backend(adapter, adapter.device(None)), what="the data")


def _as_f64(a: Any) -> Any:
    xp = array_namespace(a)
    return xp.astype(a, xp.float64)


def _check_model(where: str, model: Any) -> None:
    if not isinstance(getattr(model, "layers", None), Sequence) or not all(hasattr(model, k) for k in ("backend", "dtype")):
        raise TypeError(
            f"{where}: model must be a portnn model (with layers, backend and dtype, as portnn.Sequential); "
            f"got {type(model).__name__}"
        )


def _run(where: str, model: Any, x: Any, stop: int, batch_size: int) -> Iterator[tuple[int, Any, Any]]:
    """Run ``model.layers[:stop]`` on ``x`` in batches (inference mode); yield ``(index, layer, output)`` per layer and batch."""
    check_int(where, "batch_size", batch_size)
    X = model_input(model, x, where)
    for lo, hi in batches(X.shape[0], batch_size):  # as predict cuts them
        h = X[lo:hi, ...]
        for i, layer in enumerate(model.layers[:stop]):
            h = layer(h)
            yield i, layer, h


def _outputs(where: str, model: Any, x: Any, batch_size: int) -> Any:
    """The model's outputs for ``x``, on the host, as float64 of shape (n, outputs)."""
    _check_model(where, model)
    stop = len(model.layers)
    if stop == 0:
        out = model_input(model, x, where)
    else:
        parts = [h for i, _, h in _run(where, model, x, stop, batch_size) if i == stop - 1]
        out = parts[0] if len(parts) == 1 else array_namespace(*parts).concat(parts, axis=0)
    host = _as_f64(_host(out))
    return array_namespace(host).reshape(host, (host.shape[0], -1))


def _reads_logits(model: Any, from_logits: bool | None) -> bool:
    """Whether the outputs are logits: as given, else unless the model ends with Sigmoid or Softmax."""
    if from_logits is not None:
        if not isinstance(from_logits, bool):
            raise TypeError(f"from_logits must be True, False or None (None: from the model's last layer); got {from_logits!r}")
        return from_logits
    return not (model.layers and isinstance(model.layers[-1], (Sigmoid, Softmax)))


def _log_probabilities(out: Any, from_logits: bool) -> Any:
    """Log class probabilities, float64 (n, C), from outputs (n, K): K = 1 is a binary model (C = 2)."""
    xp = array_namespace(out)
    if out.shape[1] == 1:
        if from_logits:  # log sigmoid(z) = -softplus(-z), log(1 - sigmoid(z)) = -softplus(z), without overflow
            z = out
            softplus = xp.maximum(z, 0.0) + xp.log1p(xp.exp(-xp.abs(z)))
            return xp.concat([-softplus, z - softplus], axis=1)
        p = xp.clip(out, 0.0, 1.0)
        out = xp.concat([1.0 - p, p], axis=1)
    if from_logits:
        shifted = out - xp.max(out, axis=1, keepdims=True)
        return shifted - xp.log(xp.sum(xp.exp(shifted), axis=1, keepdims=True))
    return xp.log(xp.clip(out, 1e-300, None))


def _class_labels(where: str, y: Any, n: int | None = None) -> Any:
    labels = _host(y)
    xp = array_namespace(labels)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise ValueError(
            f"{where}: y must be class labels of shape (N,); got shape {tuple(labels.shape)}. "
            "For one-hot rows pass y.argmax(axis=1)"
        )
    if n is not None and labels.shape[0] != n:
        raise ValueError(f"{where}: x has {n} examples but y has {labels.shape[0]}; pass one label per example")
    if xp.isdtype(labels.dtype, "real floating"):
        if not bool(xp.all(labels == xp.round(labels))):
            raise ValueError(f"{where}: y holds non-integer values; pass integer class labels (0/1 for a binary model)")
    elif not (xp.isdtype(labels.dtype, "integral") or labels.dtype == xp.bool):
        raise TypeError(f"{where}: y must hold integer class labels; got dtype {dtype_name(labels.dtype)}")
    return xp.astype(labels, xp.int64)


def _check_label_range(where: str, labels: Any, n_classes: int) -> None:
    xp = array_namespace(labels)
    if labels.shape[0]:
        lo, hi = int(xp.min(labels)), int(xp.max(labels))
        if lo < 0 or hi >= n_classes:
            raise ValueError(f"{where}: y holds labels from {lo} to {hi} but the model predicts {n_classes} classes")


# -- predictions and losses --------------------------------------------------------------------


def class_labels(y: Any) -> Any:
    """Integer class labels (n,) on the host from labels of any backend: 0/1 float targets of shape (n, 1) included.

    Parameters
    ----------
    y
        Integer (or boolean) labels of shape (n,), whole-number floats, or a column (n, 1)
        of them (``BinaryCrossEntropy``'s targets).

    Returns
    -------
    numpy.ndarray
        int64 of shape (n,).

    Examples
    --------
    >>> import numpy as np
    >>> import portnn as pn
    >>> pn.diagnostics.class_labels(np.array([[1.0], [0.0], [1.0]]))
    array([1, 0, 1])
    """
    return _class_labels("class_labels", y)


def classification(
    model: Model, x: Any, y: Any = None, *, from_logits: bool | None = None, batch_size: int = 1024
) -> Classification:
    """Each example's true class, predicted class, class probabilities and cross-entropy.

    The cross-entropy of an example is ``-log`` of the probability the model gives its true
    class: the softmax of C logits, or for one output per example the sigmoid (class 1) and
    its complement (class 0). It is computed from log-probabilities, so confident mistakes get
    their full (large, finite) loss.

    Parameters
    ----------
    model
        A classifier: C >= 2 outputs, or one (a binary model).
    x
        Examples (any backend).
    y
        Their integer labels (n,) (or 0/1 targets (n, 1)); None: predictions only (``labels``
        and ``losses`` are then None).
    from_logits
        Whether the outputs are logits; None: unless the model ends with Sigmoid or Softmax.
    batch_size
        Examples per forward pass.

    Returns
    -------
    Classification
        ``(labels, predicted, probabilities, losses)`` on the host, with ``.accuracy`` and
        ``.loss`` (the mean cross-entropy) when labels were given.

    Examples
    --------
    >>> import numpy as np
    >>> import portnn as pn
    >>> model = pn.Sequential([pn.layers.Linear(1, 1)])
    >>> model.layers[0].weight.data[...] = 2.0
    >>> model.layers[0].bias.data[...] = 0.0
    >>> result = pn.diagnostics.classification(model, np.array([[1.0], [-0.5], [0.25]]), np.array([1, 1, 0]))
    >>> result.predicted, result.accuracy
    (array([1, 0, 1]), 0.3333333333333333)
    >>> result.losses.round(3)  # -log sigmoid(2), -log sigmoid(-1), -log(1 - sigmoid(0.5))
    array([0.127, 1.313, 0.974])
    """
    return _classification("classification", model, x, y, from_logits, batch_size)


def _classification(where: str, model: Any, x: Any, y: Any, from_logits: bool | None, batch_size: int) -> Classification:
    _check_model(where, model)
    logits = _reads_logits(model, from_logits)
    out = _outputs(where, model, x, batch_size)
    labels = None if y is None else _class_labels(where, y, out.shape[0])
    logp = _log_probabilities(out, logits)
    xp = array_namespace(logp)
    predicted, probabilities = xp.argmax(logp, axis=1), xp.exp(logp)
    if labels is None:
        return Classification(None, predicted, probabilities, None)
    _check_label_range(where, labels, logp.shape[1])
    losses = -xp.take_along_axis(logp, labels[:, None], axis=1)[:, 0]
    return Classification(labels, predicted, probabilities, losses)


def example_losses(model: Model, x: Any, y: Any, *, from_logits: bool | None = None, batch_size: int = 1024) -> Any:
    """Each example's cross-entropy: ``-log`` of the probability the model gives its true class (see :func:`classification`).

    Parameters
    ----------
    model, x, y, from_logits, batch_size
        As in :func:`classification` (``y`` is required).

    Returns
    -------
    numpy.ndarray
        float64 of shape (n,).

    Examples
    --------
    >>> import numpy as np
    >>> import portnn as pn
    >>> model = pn.Sequential([pn.layers.Linear(2, 2)])
    >>> model.layers[0].weight.data[...] = np.eye(2)
    >>> model.layers[0].bias.data[...] = 0.0
    >>> pn.diagnostics.example_losses(model, np.array([[0.0, 0.0], [3.0, 0.0]]), np.array([0, 1])).round(4)  # log 2, softplus(3)
    array([0.6931, 3.0486])
    """
    return _classification("example_losses", model, x, y, from_logits, batch_size).losses


def worst_predictions(
    model: Model, x: Any, y: Any, *, n: int = 16, from_logits: bool | None = None, batch_size: int = 1024
) -> tuple[Any, Classification]:
    """The ``n`` examples with the highest loss (see :func:`classification`), highest first.

    Confident mistakes come first; then mistakes, then correct but unsure answers.

    Parameters
    ----------
    model, x, y, from_logits, batch_size
        As in :func:`classification` (``y`` is required).
    n
        How many examples to return (all of them when ``x`` has fewer).

    Returns
    -------
    tuple[numpy.ndarray, Classification]
        ``(indices, their Classification)``: the indices into ``x`` (int64, at most ``n``; a
        stable order on ties) and the classification of just those examples.

    Examples
    --------
    >>> import numpy as np
    >>> import portnn as pn
    >>> model = pn.Sequential([pn.layers.Linear(2, 2)])
    >>> model.layers[0].weight.data[...] = np.eye(2)
    >>> model.layers[0].bias.data[...] = 0.0
    >>> index, worst = pn.diagnostics.worst_predictions(model, np.array([[1.0, 0.0], [0.0, 5.0], [2.0, 0.0]]), [0, 0, 1], n=2)
    >>> index, worst.predicted  # example 1 (class 1 by 5, true 0), then example 2 (class 0 by 2, true 1)
    (array([1, 2]), array([1, 0]))
    """
    where = "worst_predictions"
    check_int(where, "n", n)
    return _worst(_classification(where, model, x, y, from_logits, batch_size), n)


def _worst(result: Classification, n: int) -> tuple[Any, Classification]:
    xp = array_namespace(result.losses)
    order = xp.argsort(result.losses, descending=True, stable=True)[: min(n, result.losses.shape[0])]
    return order, Classification(*(xp.take(a, order, axis=0) for a in result))


# -- confusions ------------------------------------------------------------------------------


def confusion(y_true: Any, y_pred: Any, *, num_classes: int | None = None, threshold: float | None = None) -> Confusion:
    """The confusion matrix, each class's support and accuracy, and the overall accuracy.

    ``y_true`` and ``y_pred`` may come from different backends (a NumPy label array and a
    model's output on a GPU): both come to the host. The counts are those of
    :func:`portnn.metrics.confusion_matrix`, with its rules for ``y_pred``.

    Parameters
    ----------
    y_true
        Integer class labels (n,), or 0/1 targets (n, 1).
    y_pred
        Predicted labels (n,); scores, logits or probabilities (n, C) (their argmax); or one
        score per example, float (n,) or (n, 1): class 1 above ``threshold``.
    num_classes
        The number of classes C; None: C of the scores, else ``max(labels) + 1``, at least 2.
    threshold
        For one score per example only: None means 0.5, for probabilities (scores outside
        [0, 1] raise); pass 0.0 for logits.

    Returns
    -------
    Confusion
        ``(matrix, support, per_class_accuracy, accuracy)``.

    Examples
    --------
    >>> import numpy as np
    >>> import portnn as pn
    >>> result = pn.diagnostics.confusion(np.array([0, 0, 1, 2]), np.array([0, 1, 1, 2]))
    >>> result.matrix
    array([[1, 1, 0],
           [0, 1, 0],
           [0, 0, 1]])
    >>> result.per_class_accuracy, result.accuracy
    (array([0.5, 1. , 1. ]), 0.75)
    """
    return _confusion("confusion", y_true, y_pred, num_classes, threshold)


def _confusion(where: str, y_true: Any, y_pred: Any, num_classes: int | None, threshold: float | None) -> Confusion:
    t = _class_labels(where, y_true)
    p = _host(y_pred)
    if p.ndim == 0 or p.shape[0] != t.shape[0]:
        raise ValueError(
            f"{where}: y_true has {t.shape[0]} labels but y_pred has shape {tuple(p.shape)}; pass one prediction per label"
        )
    xp = array_namespace(t, p)
    if num_classes is None and (p.ndim == 1 and not xp.isdtype(p.dtype, "real floating")) and t.shape[0]:
        num_classes = int(max(int(xp.max(t)), int(xp.max(p)), 1)) + 1  # labels only: at least 2 classes
    matrix = metrics.confusion_matrix(t, p, num_classes=num_classes, threshold=threshold)
    support = xp.sum(matrix, axis=1)
    diagonal = xp.sum(matrix * xp.eye(matrix.shape[0], dtype=matrix.dtype), axis=1)
    per_class = _as_f64(diagonal) / xp.maximum(_as_f64(support), 1.0)
    total = int(xp.sum(support))
    return Confusion(matrix, support, per_class, float(xp.sum(diagonal)) / max(total, 1))


def most_confused(matrix: Any, *, top: int = 10) -> list[tuple[int, int, int]]:
    """The ``top`` most frequent confusions of a confusion matrix: ``(true class, predicted class, count)``, most first.

    Parameters
    ----------
    matrix
        Counts of shape (C, C), rows true classes (:func:`confusion`, :func:`portnn.metrics.confusion_matrix`).
    top
        How many off-diagonal cells to return at most; cells of count 0 are never returned.

    Returns
    -------
    list[tuple[int, int, int]]
        Ties keep the row-major order.

    Examples
    --------
    >>> import numpy as np
    >>> import portnn as pn
    >>> pn.diagnostics.most_confused(np.array([[5, 2, 0], [0, 4, 3], [1, 0, 6]]))
    [(1, 2, 3), (0, 1, 2), (2, 0, 1)]
    """
    check_int("most_confused", "top", top, minimum=0)
    m = _host(matrix)
    c = m.shape[0]
    cells = [(int(m[i, j]), i, j) for i in range(c) for j in range(c) if i != j and m[i, j]]
    cells.sort(key=lambda cell: -cell[0])  # stable: row-major order on ties
    return [(i, j, count) for count, i, j in cells[:top]]


# -- units -----------------------------------------------------------------------------------


def _layer_index(where: str, model: Any, layer: Any) -> int:
    if not isinstance(layer, (str, int)) or isinstance(layer, bool):
        raise TypeError(f"{where}: layer must be a layer name (str) or an index (int); got {layer!r}")
    layers = model.layers
    if isinstance(layer, int):
        if not -len(layers) <= layer < len(layers):
            raise IndexError(f"{where}: layer index {layer} is out of range for a model of {len(layers)} layers")
        return layer % len(layers)
    for i, other in enumerate(layers):
        if getattr(other, "name", None) == layer:
            return i
    raise KeyError(f"{where}: no layer named {layer!r}; the model has {[getattr(other, 'name', None) for other in layers]}")


def top_activating(model: Model, layer: str | int, unit: int, x: Any, *, top: int = 9, batch_size: int = 1024) -> TopActivating:
    """A Linear layer's unit: its activation on every example of ``x``, and the examples that activate it most.

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
        Examples (any backend).
    top
        How many of the most activating examples to return.
    batch_size
        Examples per forward pass.

    Returns
    -------
    TopActivating
        ``(indices, activations, layer, measured)``.

    Examples
    --------
    >>> import numpy as np
    >>> import portnn as pn
    >>> model = pn.Sequential([pn.layers.Linear(1, 2), pn.layers.ReLU()])
    >>> model.layers[0].weight.data[...] = [[1.0], [-1.0]]
    >>> model.layers[0].bias.data[...] = 0.0
    >>> result = pn.diagnostics.top_activating(model, "linear", 0, np.array([[1.0], [3.0], [-2.0]]), top=2)
    >>> result.indices, result.activations, model.layers[result.measured].name
    (array([1, 0]), array([1., 3., 0.]), 'relu')
    """
    return _top_activating("top_activating", model, layer, unit, x, top, batch_size)


def _top_activating(where: str, model: Any, layer: Any, unit: Any, x: Any, top: int, batch_size: int) -> TopActivating:
    _check_model(where, model)
    index = _layer_index(where, model, layer)
    linear = model.layers[index]
    if not isinstance(linear, Linear):
        linears = [f"{i}: {other.name}" for i, other in enumerate(model.layers) if isinstance(other, Linear)]
        raise TypeError(f"{where}: layer {layer!r} is {linear!r}, not a Linear layer; pass one of {linears}")
    if not isinstance(unit, int) or isinstance(unit, bool) or not 0 <= unit < linear.out_features:
        raise ValueError(f"{where}: unit must be an int in 0..{linear.out_features - 1} for {linear!r}; got {unit!r}")
    check_int(where, "top", top)
    stop = index + 1
    if stop < len(model.layers) and isinstance(model.layers[stop], ACTIVATION_LAYERS):
        stop += 1
    parts = [_host(h[:, unit]) for i, _, h in _run(where, model, x, stop, batch_size) if i == stop - 1]
    xp = array_namespace(*parts)
    activations = _as_f64(xp.concat(parts, axis=0))
    order = xp.argsort(activations, descending=True, stable=True)[: min(top, activations.shape[0])]
    return TopActivating(order, activations, index, stop - 1)


def units_by_weight_norm(layer: Any, *, top: int | None = None) -> list[int]:
    """The units (output features) of a layer with weights, by the L2 norm of their input weights, largest first.

    Parameters
    ----------
    layer
        A layer with a ``weight`` parameter whose first axis is the unit (Linear, Conv2d).
    top
        How many units to return; None: all (ties keep the index order).

    Returns
    -------
    list[int]

    Examples
    --------
    >>> import numpy as np
    >>> import portnn as pn
    >>> linear = pn.layers.Linear(2, 3)
    >>> linear.weight.data[...] = [[1.0, 0.0], [3.0, 4.0], [0.0, -2.0]]
    >>> pn.diagnostics.units_by_weight_norm(linear), pn.diagnostics.units_by_weight_norm(linear, top=1)
    ([1, 2, 0], [1])
    """
    weight = getattr(getattr(layer, "weight", None), "data", None)
    if weight is None:
        raise TypeError(f"units_by_weight_norm: {layer!r} has no weight; pass a Linear or Conv2d layer")
    w = _as_f64(_host(weight))
    xp = array_namespace(w)
    w = xp.reshape(w, (w.shape[0], -1))
    order = xp.argsort(xp.sqrt(xp.sum(w * w, axis=1)), descending=True, stable=True)
    if top is not None:
        check_int("units_by_weight_norm", "top", top, minimum=0)
        order = order[: min(top, w.shape[0])]
    return [int(u) for u in order]


def activation_fractions(model: Model, x: Any, *, batch_size: int = 256) -> dict[str, Any]:
    """For each activation layer, the fraction of the examples of ``x`` on which each unit is active.

    A unit is one feature of the layer's flattened output; it is active where its output is
    positive (above 0.5 for Sigmoid; :data:`ACTIVE_ABOVE`). A fraction of 0 marks a dead unit
    on this data. The model runs in inference mode, one layer at a time, in batches, on its own
    backend; the counts stay on the device until the end (the same counts ``fit(record=True)``
    keeps).

    Parameters
    ----------
    model
        The model; its ReLU, LeakyReLU, Tanh and Sigmoid layers are counted.
    x
        Examples (any backend, or host data).
    batch_size
        Examples per forward pass.

    Returns
    -------
    dict[str, numpy.ndarray]
        Layer name -> float64 array of shape (units,), in layer order ({} without activation layers).

    Examples
    --------
    >>> import numpy as np
    >>> import portnn as pn
    >>> model = pn.Sequential([pn.layers.Linear(1, 2), pn.layers.ReLU()])
    >>> model.layers[0].weight.data[...] = [[1.0], [-1.0]]
    >>> model.layers[0].bias.data[...] = 0.0
    >>> pn.diagnostics.activation_fractions(model, np.array([[1.0], [2.0], [-1.0], [3.0]], dtype=np.float32))
    {'relu': array([0.75, 0.25])}
    """
    where = "activation_fractions"
    _check_model(where, model)
    last = max((i for i, layer in enumerate(model.layers) if isinstance(layer, ACTIVATION_LAYERS)), default=-1)
    counts: dict[str, Any] = {}
    n = 0
    for i, layer, h in _run(where, model, x, last + 1, batch_size):
        threshold = active_threshold(layer)
        if threshold is not None:
            c = active_counts(h, threshold)
            counts[layer.name] = c if layer.name not in counts else counts[layer.name] + c
            if i == last:
                n += int(h.shape[0])
    return {name: _as_f64(_host(c)) / n for name, c in counts.items()}


def _records(where: str, source: Any, key: str) -> Mapping[str, Any]:
    records = source if isinstance(source, Mapping) and key in source else getattr(source, "records", None)
    if not records or not records.get(key):
        raise ValueError(
            f"{where}: {type(source).__name__} has no records[{key!r}]; train with model.fit(..., record=True) "
            "and pass the History it returns"
        )
    return records


def recorded_fractions(history: Any) -> dict[str, Any]:
    """Each activation layer's per-unit active fractions in the last recorded epoch of ``fit(..., record=True)``.

    Parameters
    ----------
    history
        The History that ``fit(..., record=True)`` returned, or its ``records`` dict.

    Returns
    -------
    dict[str, numpy.ndarray]
        Layer name -> float64 (units,): the fraction of that epoch's training examples on which
        each unit was active (layers with no recorded epoch are left out).

    Examples
    --------
    >>> import numpy as np
    >>> import portnn as pn
    >>> records = {"active_fraction": {"relu": [np.array([0.5, 0.0]), np.array([0.25, 0.0])]}}
    >>> pn.diagnostics.recorded_fractions(records)
    {'relu': array([0.25, 0.  ])}
    """
    return _recorded_fractions("recorded_fractions", history)


def _recorded_fractions(where: str, history: Any) -> dict[str, Any]:
    records = _records(where, history, "active_fraction")
    out = {}
    for name, per_epoch in records["active_fraction"].items():
        if len(per_epoch):
            f = _as_f64(_host(per_epoch[-1]))
            out[name] = array_namespace(f).reshape(f, (-1,))
    return out


def recorded_grad_norms(history: Any) -> GradNorms:
    """The gradient norms that ``fit(..., record=True)`` kept: the recorded steps and each layer's norms at them.

    Parameters
    ----------
    history
        The History that ``fit(..., record=True)`` returned, or its ``records`` dict.

    Returns
    -------
    GradNorms
        ``(steps, norms)``.

    Examples
    --------
    >>> import portnn as pn
    >>> norms = pn.diagnostics.recorded_grad_norms({"step": [0, 10], "grad_norm": {"linear": [1.0, 0.5]}})
    >>> norms.steps, norms.norms
    (array([ 0, 10]), {'linear': array([1. , 0.5])})
    """
    return _recorded_grad_norms("recorded_grad_norms", history)


def _recorded_grad_norms(where: str, history: Any) -> GradNorms:
    records = _records(where, history, "grad_norm")
    steps = _host(list(records.get("step") or []))
    xp = array_namespace(steps)
    norms = {name: _as_f64(_host([float(v) for v in values])) for name, values in records["grad_norm"].items()}
    return GradNorms(xp.astype(steps, xp.int64), norms)


def unit_shares(fractions: Mapping[str, Any], *, always_on: float = 0.99) -> dict[str, UnitShares]:
    """Per layer, the share of dead units (never active) and of always-on units (active on at least ``always_on``).

    Parameters
    ----------
    fractions
        Layer name -> per-unit active fractions (:func:`activation_fractions`,
        :func:`recorded_fractions`).
    always_on
        The fraction in (0, 1] from which a unit counts as always on (for ReLU: linear on this data).

    Returns
    -------
    dict[str, UnitShares]
        Layer name -> ``(units, dead, always_on)``.

    Examples
    --------
    >>> import numpy as np
    >>> import portnn as pn
    >>> pn.diagnostics.unit_shares({"relu": np.array([0.0, 0.5, 1.0, 0.0])})
    {'relu': UnitShares(units=4, dead=0.5, always_on=0.25)}
    """
    return _unit_shares("unit_shares", fractions, always_on)


def _check_always_on(where: str, always_on: Any) -> None:
    if isinstance(always_on, bool) or not (isinstance(always_on, (int, float)) and 0 < always_on <= 1):
        raise ValueError(f"{where}: always_on must be a fraction in (0, 1]; got {always_on!r}")


def _unit_shares(where: str, fractions: Mapping[str, Any], always_on: Any) -> dict[str, UnitShares]:
    _check_always_on(where, always_on)
    out = {}
    for name, f in fractions.items():
        f = _as_f64(_host(f))
        xp = array_namespace(f)
        f = xp.reshape(f, (-1,))
        units = int(f.shape[0])
        dead = float(xp.sum(_as_f64(f <= 0.0))) / max(units, 1)
        full = float(xp.sum(_as_f64(f >= always_on))) / max(units, 1)
        out[name] = UnitShares(units, dead, full)
    return out

"""Classification metrics, written once against the array API standard.

Every metric infers its namespace and device from its inputs and returns arrays there
(0-d for a single number): nothing is copied to the host, so a metric on a GPU stays on the
GPU until you print it (``float(m)`` or :func:`portnn.to_numpy`).

Inputs are ``y_true``, integer class labels of shape (N,), and ``y_pred``, one of:

- integer (or boolean) labels of shape (N,);
- scores of shape (N, C), C >= 2 (logits or probabilities: the predicted class is their
  ``argmax``, the first one on ties, as in NumPy);
- one score per example, float of shape (N,) or any real dtype of shape (N, 1): the output of
  a binary model (``BinaryCrossEntropy``). Class 1 is predicted where the score is above
  ``threshold``: 0.5 by default, for probabilities (Keras's ``binary_accuracy``); pass
  ``threshold=0.0`` for logits. Under the default, scores outside [0, 1] raise a ValueError
  (they are logits, and 0.5 would silently be the wrong threshold) when ``validate=True``.

Sequences count position by position: labels (N, T) with scores (N, T, C) (classes last, as
Keras and :class:`portnn.losses.CrossEntropy` have them) or with labels (N, T) are taken as
N * T examples by every metric.

Rates (accuracy, precision, ...) are float32, or float64 when the scores are float64: integer
labels alone never bring float64 in. Counts (confusion matrix, support) are int64.

Data-dependent checks need a device-to-host sync (one ``bool``/``int`` of a 0-d array): checking
that labels lie in ``0..num_classes-1`` and that binary scores under the default threshold lie
in [0, 1] (``validate=True``, the default; pass ``validate=False`` in a hot loop once the data
is known to be clean) and inferring ``num_classes`` when it is not given and ``y_pred`` holds
labels. Pass ``num_classes`` to skip the latter.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from array_api_compat import device

from ._array import dtype_name, namespace
from ._checks import check_flag, check_int, check_number

__all__ = [
    "PrecisionRecallF1",
    "accuracy",
    "confusion_matrix",
    "per_class_accuracy",
    "precision_recall_f1",
    "top_k_accuracy",
]

AVERAGES = (None, "micro", "macro", "weighted")

#: float32 holds every integer up to 2**24 exactly, so a float32 one-hot matmul over at most
#: that many rows counts exactly; longer inputs are counted in blocks.
_EXACT_ROWS = 2**24
#: At most this many one-hot elements per block (64 MiB in float32).
_ONEHOT_ELEMENTS = 2**24


class PrecisionRecallF1(NamedTuple):
    """What :func:`precision_recall_f1` returns; unpacks like scikit-learn's 4-tuple."""

    precision: Any
    recall: Any
    f1: Any
    support: Any


# -- validation ---------------------------------------------------------------------------


def _shape(a: Any) -> tuple[int, ...]:
    return tuple(int(d) for d in a.shape)


def _describe(a: Any) -> str:
    return f"shape {_shape(a)} and dtype {dtype_name(a.dtype)}"


def _common(where: str, y_true: Any, other: Any, other_name: str) -> Any:
    """Namespace of both arrays after checking library, device and the labels ``y_true``."""
    xp = namespace(y_true, other, where=f"{where}: ")
    if device(y_true) != device(other):
        raise ValueError(
            f"{where}: y_true is on device {device(y_true)!r} but {other_name} is on {device(other)!r}; "
            "move one of them with x.to_device(...)"
        )
    if not xp.isdtype(y_true.dtype, "integral"):
        raise TypeError(
            f"{where}: y_true must hold integer class labels of shape (N,); got {_describe(y_true)}. "
            "Cast it with xp.astype(y_true, xp.int64)"
            + (" (one-hot rows? take xp.argmax(y_true, axis=1))" if y_true.ndim == 2 else "")
        )
    if y_true.ndim != 1:
        hint = " (one-hot rows? take xp.argmax(y_true, axis=1))" if y_true.ndim == 2 else ""
        raise ValueError(f"{where}: y_true must be class labels of shape (N,); got {_describe(y_true)}{hint}")
    if other.ndim == 0 or other.shape[0] != y_true.shape[0]:
        raise ValueError(
            f"{where}: y_true has {y_true.shape[0]} samples (shape {_shape(y_true)}) but {other_name} has "
            f"shape {_shape(other)}; pass one prediction per label"
        )
    return xp


def _check_scores(where: str, xp: Any, scores: Any, name: str) -> None:
    if scores.ndim != 2 or not xp.isdtype(scores.dtype, ("real floating", "integral")):
        raise TypeError(f"{where}: {name} must be real scores of shape (N, C); got {_describe(scores)}")
    if scores.shape[1] == 0:
        raise ValueError(f"{where}: {name} has no classes (shape {_shape(scores)})")


def _is_binary(xp: Any, scores: Any) -> bool:
    """One score per example: float (N,), or (N, 1) of any real dtype (a binary model's output)."""
    if scores.ndim == 1:
        return bool(xp.isdtype(scores.dtype, "real floating"))
    return scores.ndim == 2 and scores.shape[1] == 1 and bool(xp.isdtype(scores.dtype, ("real floating", "integral")))


def _binary_scores(where: str, xp: Any, scores: Any, name: str, threshold: Any, validate: bool) -> tuple[Any, float]:
    """The scores as shape (N,) floats and the threshold to compare them with (checked: see the module docstring)."""
    s = scores if scores.ndim == 1 else scores[:, 0]
    if not xp.isdtype(s.dtype, "real floating"):
        s = xp.astype(s, xp.float32)
    if threshold is not None:
        return s, threshold  # a float, checked by _options
    if validate and s.shape[0]:
        lo, hi = float(xp.min(s)), float(xp.max(s))
        if lo < 0.0 or hi > 1.0:
            raise ValueError(
                f"{where}: {name} of shape {_shape(scores)} holds one score per example (a binary model), compared with "
                f"the default threshold 0.5, for probabilities; but its values run from {lo} to {hi}, outside [0, 1]: "
                "they look like logits. Pass threshold=0.0 for logits (or apply a sigmoid first)"
            )
    return s, 0.5


def _options(where: str, threshold: Any, validate: Any, num_classes: Any = None) -> tuple[float | None, bool, int | None]:
    """The keyword arguments every metric takes, checked before any array is read: ``(threshold, validate, num_classes)``."""
    threshold = check_number(
        where, "threshold", threshold, expected="a finite number (0.0 for logits, 0.5 for probabilities)", allow_none=True
    )
    validate = check_flag(where, "validate", validate)
    num_classes = check_int(where, "num_classes", num_classes, expected="a positive int or None", allow_none=True)
    return threshold, validate, num_classes


def _no_threshold(where: str, threshold: Any, y_pred: Any) -> None:
    if threshold is not None:
        raise ValueError(
            f"{where}: threshold applies to one score per example (a binary model, shape (N,) or (N, 1)); "
            f"y_pred has {_describe(y_pred)}: drop threshold="
        )


def _predictions(
    where: str, y_true: Any, y_pred: Any, threshold: Any = None, validate: bool = True
) -> tuple[Any, Any, int | None, Any]:
    """Return ``(xp, predicted labels, C of the scores or None, float dtype of the result)``."""
    xp = _common(where, y_true, y_pred, "y_pred")
    if _is_binary(xp, y_pred):
        s, t = _binary_scores(where, xp, y_pred, "y_pred", threshold, validate)
        return xp, xp.astype(s > t, xp.int64), 2, _float_dtype(xp, y_pred)
    _no_threshold(where, threshold, y_pred)
    if y_pred.ndim == 2:
        _check_scores(where, xp, y_pred, "y_pred")
        labels, score_classes = xp.argmax(y_pred, axis=1), int(y_pred.shape[1])
    elif y_pred.ndim == 1:
        if y_pred.dtype == xp.bool:
            labels = xp.astype(y_pred, xp.int64)
        elif xp.isdtype(y_pred.dtype, "integral"):
            labels = y_pred
        else:
            raise TypeError(
                f"{where}: y_pred of shape (N,) must hold integer class labels or float scores; got {_describe(y_pred)}"
            )
        score_classes = None
    else:
        raise ValueError(
            f"{where}: y_pred must be labels of shape (N,), scores of shape (N, C), or one score per example (N, 1); "
            f"got {_describe(y_pred)}"
        )
    return xp, labels, score_classes, _float_dtype(xp, y_pred)


def _float_dtype(xp: Any, a: Any) -> Any:
    return xp.float64 if a.dtype == xp.float64 else xp.float32


def _num_classes(where: str, xp: Any, y_true: Any, labels: Any, num_classes: Any, score_classes: int | None) -> int:
    if num_classes is not None:  # checked by _options
        if score_classes is not None and num_classes != score_classes:
            raise ValueError(
                f"{where}: num_classes={num_classes} but y_pred holds scores for {score_classes} classes; "
                "drop num_classes or pass scores with one column per class"
            )
        return num_classes
    if score_classes is not None:
        return score_classes
    if y_true.shape[0] == 0:
        raise ValueError(f"{where}: cannot infer num_classes from 0 samples; pass num_classes=")
    return int(xp.maximum(xp.max(y_true), xp.max(labels))) + 1  # a sync


def _check_range(where: str, xp: Any, c: int, **named: Any) -> None:
    """Raise naming the first array in ``named`` whose values leave ``0..c-1`` (one sync when all are fine)."""
    bad = [xp.any((a < 0) | (a >= c)) for a in named.values()]
    flag = bad[0]
    for b in bad[1:]:
        flag = flag | b
    if not bool(flag):
        return
    for (name, a), b in zip(named.items(), bad):
        if bool(b):
            lo, hi = int(xp.min(a)), int(xp.max(a))
            raise ValueError(
                f"{where}: {name} must hold class indices in 0..{c - 1} for num_classes={c}; got values from {lo} to {hi}. "
                "Pass a larger num_classes, or remap the labels to 0..num_classes-1"
            )


def _positions(where: str, y_true: Any, y_pred: Any) -> tuple[Any, Any]:
    """Sequences as examples: labels (N, T) with scores (N, T, C) or labels (N, T) become (N * T,) and (N * T, C) or (N * T,).

    Other inputs come back unchanged (and meet the usual checks).
    """
    if getattr(y_true, "ndim", 0) < 2 or getattr(y_pred, "ndim", 0) < 2:
        return y_true, y_pred
    xp = namespace(y_true, y_pred, where=f"{where}: ")
    if not xp.isdtype(y_true.dtype, "integral"):
        return y_true, y_pred
    shape = tuple(y_true.shape)
    if tuple(y_pred.shape[:-1]) == shape and y_pred.shape[-1] >= 2:  # scores, classes last
        return xp.reshape(y_true, (-1,)), xp.reshape(y_pred, (-1, int(y_pred.shape[-1])))
    if tuple(y_pred.shape) == shape and (xp.isdtype(y_pred.dtype, "integral") or y_pred.dtype == xp.bool):
        return xp.reshape(y_true, (-1,)), xp.reshape(y_pred, (-1,))
    per_example = ""
    if len(shape) == 2:  # or one label per example, given as a column or as one-hot rows
        fix = "a column? take xp.reshape(y_true, (-1,))" if shape[1] == 1 else "one-hot rows? take xp.argmax(y_true, axis=1)"
        per_example = f". If y_true holds one label per example, it must have shape (N,) ({fix})"
    raise ValueError(
        f"{where}: y_true holds integer labels of shape {shape}; as one label per position of a sequence, y_pred must be "
        f"scores of shape ({', '.join(map(str, shape))}, C) (classes last) or labels of shape {shape}; got "
        f"{_describe(y_pred)}{per_example}"
    )


def _safe_divide(xp: Any, num: Any, den: Any) -> Any:
    """``num / den`` with 0/0 -> 0 (wherever ``den`` is 0 so is ``num``: counts of a subset)."""
    return num / (den + xp.astype(den == 0, den.dtype))


# -- the metrics --------------------------------------------------------------------------


def accuracy(y_true: Any, y_pred: Any, *, threshold: float | None = None, validate: bool = True) -> Any:
    """Fraction of predictions equal to the labels.

    Parameters
    ----------
    y_true
        Integer class labels, shape (N,); or (N, T), one per position of a sequence.
    y_pred
        Integer labels, shape (N,); scores/logits, shape (N, C) (then their argmax); or one
        score per example of a binary model, float (N,) or (N, 1) (then class 1 where the
        score is above ``threshold``). With labels (N, T): scores (N, T, C), classes last as
        in Keras, or labels (N, T); every position counts once.
    threshold
        For one score per example only: None (the default) means 0.5, for probabilities, and
        refuses scores outside [0, 1]; pass ``threshold=0.0`` for logits.
    validate
        With scores: check that the labels lie in ``0..C-1`` (C = 2 for one score per
        example) and, under the default threshold, that one score per example lies in [0, 1]
        (a device-to-host sync).

    Returns
    -------
    array
        0-d float32 (float64 for float64 scores), on the inputs' device.

    Raises
    ------
    ValueError, TypeError
        For empty inputs, mismatched lengths or shapes, float labels, logits under the
        probability threshold.

    Examples
    --------
    >>> import numpy as np
    >>> from portnn import metrics
    >>> float(metrics.accuracy(np.array([0, 1, 2, 2]), np.array([0, 2, 2, 2])))
    0.75
    >>> float(metrics.accuracy(np.array([1, 0]), np.array([[0.1, 0.9], [0.3, 0.7]])))
    0.5
    >>> float(metrics.accuracy(np.array([1, 0, 0, 1]), np.array([[0.9], [0.2], [0.6], [0.7]])))  # probabilities of class 1
    0.75
    >>> float(metrics.accuracy(np.array([1, 0, 0, 1]), np.array([[2.2], [-1.4], [0.4], [0.8]]), threshold=0.0))  # logits
    0.75
    >>> float(metrics.accuracy(np.array([[0, 1], [1, 1]]), np.array([[[0.9, 0.1], [0.2, 0.8]], [[0.6, 0.4], [0.3, 0.7]]])))
    0.75
    """
    where = "accuracy"
    threshold, validate, _ = _options(where, threshold, validate)
    y_true, y_pred = _positions(where, y_true, y_pred)
    xp, labels, score_classes, fdt = _predictions(where, y_true, y_pred, threshold, validate)
    n = int(y_true.shape[0])
    if n == 0:
        raise ValueError(f"{where}: got 0 samples; accuracy of an empty set is undefined")
    if validate and score_classes is not None:
        _check_range(where, xp, score_classes, y_true=y_true)
    hits = xp.sum(xp.astype(labels == y_true, xp.int64))
    return xp.asarray(xp.astype(hits, fdt) / n)


def top_k_accuracy(y_true: Any, scores: Any, *, k: int = 5, threshold: float | None = None, validate: bool = True) -> Any:
    """Fraction of samples whose true class is among the ``k`` highest scores.

    The rank of the true class ``t`` of a row is the number of classes that beat it: those
    with a higher score, and on a tie those with a lower index (the order of a stable
    descending sort; ``k=1`` is then exactly :func:`accuracy` of the argmax). A hit is a rank
    below ``k``. Computed by comparison in O(N·C), without sorting. NaN scores are not
    supported (NaN compares false with everything, so such a row's rank is meaningless).

    One score per example (float (N,) or (N, 1), a binary model) counts as two classes, class 1
    ranking first where the score is above ``threshold``: ``k=1`` is :func:`accuracy`, ``k=2``
    gives 1.

    Parameters
    ----------
    y_true
        Integer class labels, shape (N,).
    scores
        Scores or logits, shape (N, C); or one score per example, (N,) or (N, 1).
    k
        How many top classes count, ``1 <= k <= C``; ``k == C`` gives 1.
    threshold
        For one score per example only, as in :func:`accuracy` (None: 0.5 for probabilities).
    validate
        Check that the labels lie in ``0..C-1``, and one score per example in [0, 1] under the
        default threshold (one device-to-host sync).

    Returns
    -------
    array
        0-d float32 (float64 for float64 scores), on the inputs' device.

    Examples
    --------
    >>> import numpy as np
    >>> from portnn import metrics
    >>> scores = np.array([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]])
    >>> float(metrics.top_k_accuracy(np.array([1, 0]), scores, k=2))
    1.0
    >>> float(metrics.top_k_accuracy(np.array([1, 1]), scores, k=2))  # tie of 0 and 1: the lower index ranks first
    0.5
    """
    where = "top_k_accuracy"
    threshold, validate, _ = _options(where, threshold, validate)
    k = check_int(where, "k", k, minimum=None, expected="an int in 1..C (C classes of scores)")  # the range once C is known
    y_true, scores = _positions(where, y_true, scores)
    xp = _common(where, y_true, scores, "scores")
    if _is_binary(xp, scores):
        s, t = _binary_scores(where, xp, scores, "scores", threshold, validate)
        scores = xp.stack([t - s, s - t], axis=1)  # class 1 ranks first exactly where s > t (a tie goes to class 0)
    else:
        _no_threshold(where, threshold, scores)
        _check_scores(where, xp, scores, "scores")
    c = int(scores.shape[1])
    if not 1 <= k <= c:
        raise ValueError(f"{where}: k must be an int in 1..{c} for scores of shape {_shape(scores)}; got k={k!r}")
    n = int(y_true.shape[0])
    if n == 0:
        raise ValueError(f"{where}: got 0 samples; accuracy of an empty set is undefined")
    if validate:
        _check_range(where, xp, c, y_true=y_true)
    dev = device(scores)
    true_score = xp.take_along_axis(scores, xp.astype(y_true, xp.int64)[:, None], axis=1)  # (N, 1)
    before = xp.arange(c, device=dev)[None, :] < y_true[:, None]
    beats = (scores > true_score) | ((scores == true_score) & before)
    rank = xp.sum(xp.astype(beats, xp.int64), axis=1)
    hits = xp.sum(xp.astype(rank < k, xp.int64))
    return xp.asarray(xp.astype(hits, _float_dtype(xp, scores)) / n)


def confusion_matrix(
    y_true: Any, y_pred: Any, *, num_classes: int | None = None, threshold: float | None = None, validate: bool = True
) -> Any:
    """Counts of (true class, predicted class) pairs: rows are true classes, columns predicted (scikit-learn's layout).

    Built as ``onehot(y_true).T @ onehot(y_pred)``, never by scattering with repeated indices
    (``cm[t, p] += 1`` drops duplicates on NumPy and is undefined in the array API standard).
    The product runs in float32, which every backend multiplies (CUDA PyTorch has no integer
    matmul), in blocks of at most 2**24 rows so that every count is exact; the result is int64.

    Parameters
    ----------
    y_true
        Integer class labels, shape (N,).
    y_pred
        Integer labels, shape (N,); scores/logits, shape (N, C) (then their argmax); or one
        score per example, (N,) or (N, 1) (two classes: 1 where the score is above ``threshold``).
    num_classes
        Number of classes C. None infers it: C of the scores, else ``max(labels) + 1`` (a
        device-to-host sync; and classes above the largest label seen are left out).
    threshold
        For one score per example only, as in :func:`accuracy` (None: 0.5 for probabilities).
    validate
        Check that the labels lie in ``0..C-1`` (one device-to-host sync), and one score per
        example in [0, 1] under the default threshold. Out-of-range labels would otherwise go
        uncounted.

    Returns
    -------
    array
        int64 of shape (C, C), on the inputs' device.

    Examples
    --------
    >>> import numpy as np
    >>> from portnn import metrics
    >>> metrics.confusion_matrix(np.array([0, 1, 2, 2]), np.array([0, 2, 2, 2]))
    array([[1, 0, 0],
           [0, 0, 1],
           [0, 0, 2]])
    >>> metrics.confusion_matrix(np.array([0, 0]), np.array([1, 1]), num_classes=3)
    array([[0, 2, 0],
           [0, 0, 0],
           [0, 0, 0]])
    >>> metrics.confusion_matrix(np.array([0, 1, 1]), np.array([[-0.3], [1.2], [-2.0]]), threshold=0.0)  # logits
    array([[1, 0],
           [1, 1]])
    """
    where = "confusion_matrix"
    threshold, validate, num_classes = _options(where, threshold, validate, num_classes)
    y_true, y_pred = _positions(where, y_true, y_pred)
    xp, labels, score_classes, _ = _predictions(where, y_true, y_pred, threshold, validate)
    c = _num_classes(where, xp, y_true, labels, num_classes, score_classes)
    if validate:
        checked = {"y_true": y_true} if score_classes is not None else {"y_true": y_true, "y_pred": labels}
        _check_range(where, xp, c, **checked)
    return _confusion(xp, y_true, labels, c)


def _confusion(xp: Any, y_true: Any, labels: Any, c: int) -> Any:
    dev = device(y_true)
    classes = xp.arange(c, device=dev)[None, :]
    n = int(y_true.shape[0])
    step = max(1, min(_EXACT_ROWS, _ONEHOT_ELEMENTS // c))
    counts = xp.zeros((c, c), dtype=xp.int64, device=dev)
    for start in range(0, n, step):
        stop = min(start + step, n)  # the standard leaves out-of-range slice bounds unspecified
        t = xp.astype(y_true[start:stop, None] == classes, xp.float32)
        p = xp.astype(labels[start:stop, None] == classes, xp.float32)
        counts = counts + xp.astype(t.T @ p, xp.int64)
    return counts


def precision_recall_f1(
    y_true: Any,
    y_pred: Any,
    *,
    num_classes: int | None = None,
    average: str | None = None,
    threshold: float | None = None,
    validate: bool = True,
) -> PrecisionRecallF1:
    """Precision, recall, F1 and support of each class, or their average (scikit-learn's ``precision_recall_fscore_support``).

    For class ``c``: precision = TP / (TP + FP), recall = TP / (TP + FN),
    F1 = 2·TP / (2·TP + FP + FN) (the harmonic mean of the two), support = TP + FN, the
    number of true samples of ``c``. A 0/0 is 0, without a warning: precision of a class never
    predicted, recall of a class with no samples, F1 of a class absent from both (scikit-learn
    with ``zero_division=0``).

    Parameters
    ----------
    y_true
        Integer class labels, shape (N,).
    y_pred
        Integer labels, shape (N,); scores/logits, shape (N, C) (then their argmax); or one
        score per example, (N,) or (N, 1), as in :func:`confusion_matrix`.
    num_classes
        Number of classes C; None infers it as in :func:`confusion_matrix`.
    average
        None: per-class values, shape (C,). ``"macro"``: their unweighted mean over the classes
        that occur in ``y_true`` or in the predictions (a class absent from both is left out, as
        scikit-learn does with ``labels=None``). ``"weighted"``: their mean weighted by support.
        ``"micro"``: from the summed counts (equal to accuracy when every label is in range).
    threshold
        For one score per example only, as in :func:`accuracy` (None: 0.5 for probabilities).
    validate
        Check that the labels lie in ``0..C-1`` (one device-to-host sync), and one score per
        example in [0, 1] under the default threshold.

    Returns
    -------
    PrecisionRecallF1
        ``(precision, recall, f1, support)``: float32 (float64 for float64 scores) arrays of
        shape (C,), or 0-d when averaged; ``support`` is int64 of shape (C,), or None when
        averaged (as in scikit-learn). All on the inputs' device.

    Examples
    --------
    >>> import numpy as np
    >>> from portnn import metrics
    >>> y_true, y_pred = np.array([0, 1, 2, 2]), np.array([0, 2, 2, 2])
    >>> p, r, f1, support = metrics.precision_recall_f1(y_true, y_pred)
    >>> p
    array([1.       , 0.       , 0.6666667], dtype=float32)
    >>> r, f1
    (array([1., 0., 1.], dtype=float32), array([1. , 0. , 0.8], dtype=float32))
    >>> support
    array([1, 1, 2])
    >>> round(float(metrics.precision_recall_f1(y_true, y_pred, average="macro").recall), 4)
    0.6667
    """
    return _precision_recall_f1("precision_recall_f1", y_true, y_pred, num_classes, average, threshold, validate)


def _precision_recall_f1(
    where: str, y_true: Any, y_pred: Any, num_classes: int | None, average: str | None, threshold: Any, validate: bool
) -> PrecisionRecallF1:
    if not (average is None or isinstance(average, str)) or average not in AVERAGES:
        raise ValueError(f"{where}: average must be one of {', '.join(map(repr, AVERAGES))}; got {average!r}")
    threshold, validate, num_classes = _options(where, threshold, validate, num_classes)
    y_true, y_pred = _positions(where, y_true, y_pred)
    xp, labels, score_classes, fdt = _predictions(where, y_true, y_pred, threshold, validate)
    c = _num_classes(where, xp, y_true, labels, num_classes, score_classes)
    if validate:
        checked = {"y_true": y_true} if score_classes is not None else {"y_true": y_true, "y_pred": labels}
        _check_range(where, xp, c, **checked)
    cm = _confusion(xp, y_true, labels, c)
    tp = xp.sum(cm * xp.eye(c, dtype=cm.dtype, device=device(cm)), axis=1)
    support = xp.sum(cm, axis=1)  # TP + FN
    predicted = xp.sum(cm, axis=0)  # TP + FP
    tp_f, support_f, predicted_f = (xp.astype(a, fdt) for a in (tp, support, predicted))
    if average == "micro":
        tp_f, support_f, predicted_f = xp.sum(tp_f), xp.sum(support_f), xp.sum(predicted_f)
    precision = _safe_divide(xp, tp_f, predicted_f)
    recall = _safe_divide(xp, tp_f, support_f)
    f1 = _safe_divide(xp, 2 * tp_f, predicted_f + support_f)
    if average is None:
        return PrecisionRecallF1(precision, recall, f1, support)
    if average == "micro":
        return PrecisionRecallF1(xp.asarray(precision), xp.asarray(recall), xp.asarray(f1), None)
    if average == "macro":
        weights = xp.astype((predicted + support) > 0, fdt)  # classes that occur
    else:
        weights = support_f
    total = xp.sum(weights)
    return PrecisionRecallF1(*(xp.asarray(_safe_divide(xp, xp.sum(v * weights), total)) for v in (precision, recall, f1)), None)


def per_class_accuracy(
    y_true: Any, y_pred: Any, *, num_classes: int | None = None, threshold: float | None = None, validate: bool = True
) -> Any:
    """Accuracy within each true class: the recall of each class, 0 for a class with no samples.

    Parameters
    ----------
    y_true
        Integer class labels, shape (N,).
    y_pred
        Integer labels, shape (N,); scores/logits, shape (N, C) (then their argmax); or one
        score per example, (N,) or (N, 1), as in :func:`confusion_matrix`.
    num_classes
        Number of classes C; None infers it as in :func:`confusion_matrix`.
    threshold
        For one score per example only, as in :func:`accuracy` (None: 0.5 for probabilities).
    validate
        Check that the labels lie in ``0..C-1`` (one device-to-host sync), and one score per
        example in [0, 1] under the default threshold.

    Returns
    -------
    array
        float32 (float64 for float64 scores) of shape (C,), on the inputs' device.

    Examples
    --------
    >>> import numpy as np
    >>> from portnn import metrics
    >>> metrics.per_class_accuracy(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]), num_classes=3).tolist()
    [0.5, 1.0, 0.0]
    """
    return _precision_recall_f1("per_class_accuracy", y_true, y_pred, num_classes, None, threshold, validate).recall

"""Metrics on every backend against values worked out by hand, and against scikit-learn when it is installed."""

from __future__ import annotations

import numpy as np
import pytest
from array_api_compat import device

import portnn as pn
from portnn import metrics
from portnn._array import dtype_name

# Ten samples over five classes. Cells (0, 0) and (2, 2) are hit three times each, so a
# duplicate-index scatter (cm[t, p] += 1) would count them once. Class 3 occurs nowhere
# (every ratio of it is 0/0); class 4 is predicted once but never true (precision 0/1, recall 0/0).
Y_TRUE = [0, 0, 0, 1, 1, 2, 2, 2, 2, 0]
Y_PRED = [0, 0, 1, 1, 4, 2, 2, 0, 2, 0]
CM = [
    [3, 1, 0, 0, 0],
    [0, 1, 0, 0, 1],
    [1, 0, 3, 0, 0],
    [0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0],
]
# TP = diagonal = [3, 1, 3, 0, 0]; predicted = column sums = [4, 2, 3, 0, 1]; support = row sums = [4, 2, 4, 0, 0].
PRECISION = [3 / 4, 1 / 2, 3 / 3, 0.0, 0 / 1]
RECALL = [3 / 4, 1 / 2, 3 / 4, 0.0, 0.0]
F1 = [6 / 8, 2 / 4, 6 / 7, 0.0, 0 / 1]  # 2 TP / (predicted + support)
SUPPORT = [4, 2, 4, 0, 0]
ACCURACY = 7 / 10
# Scores whose argmax is Y_PRED; row 0 ties classes 0 and 1 (the first maximum wins).
SCORES = [
    [2.0, 2.0, 0.0, 0.0, -1.0],
    [3.0, 1.0, 0.0, 0.0, 0.0],
    [0.5, 1.5, -1.0, 0.0, 0.0],
    [0.0, 4.0, 1.0, 0.0, 0.0],
    [0.0, 1.0, 0.0, 0.0, 2.0],
    [0.0, 0.0, 5.0, 0.0, 0.0],
    [-1.0, -2.0, -0.5, -3.0, -4.0],
    [1.0, 0.0, 0.5, 0.0, 0.0],
    [0.0, 0.0, 1.0, 0.0, 0.5],
    [9.0, 0.0, 0.0, 0.0, 0.0],
]
# Averages. macro: over the classes that occur (0, 1, 2, 4; not 3); weighted: by support; micro: summed counts.
AVERAGED = {
    "macro": ((0.75 + 0.5 + 1 + 0) / 4, (0.75 + 0.5 + 0.75 + 0) / 4, (0.75 + 0.5 + 6 / 7 + 0) / 4),
    "weighted": ((4 * 0.75 + 2 * 0.5 + 4 * 1) / 10, (3 + 1 + 3) / 10, (4 * 0.75 + 2 * 0.5 + 4 * 6 / 7) / 10),
    "micro": (7 / 10, 7 / 10, 7 / 10),
}

# Top-k with ties: a tie is broken towards the lower class index (a stable descending sort).
TOPK_TRUE = [2, 3, 0, 1]
TOPK_SCORES = [
    [0.1, 0.5, 0.5, 0.2],  # true 2 ties class 1, which ranks first: rank 1
    [0.3, 0.3, 0.3, 0.3],  # all tied: rank 3
    [0.9, 0.05, 0.03, 0.02],  # rank 0
    [0.2, 0.1, 0.4, 0.3],  # rank 3
]
TOPK = {1: 1 / 4, 2: 2 / 4, 3: 2 / 4, 4: 4 / 4}

# A binary model: one score per example. Most labels are 1, so the share of class 0 (what an
# argmax over one column gives: always class 0) is far from the accuracy.
BIN_TRUE = np.array([1, 1, 1, 1, 1, 0, 0, 1])
BIN_LOGITS = np.array([[2.0], [0.5], [3.0], [-0.3], [1.0], [-2.5], [0.2], [0.0]])  # 0.0 is not above the threshold
BIN_PROBS = 1.0 / (1.0 + np.exp(-BIN_LOGITS))  # sigmoid: the same predictions at threshold 0.5
BIN_PRED = (BIN_LOGITS[:, 0] > 0).astype(np.int64)  # [1, 1, 1, 0, 1, 0, 1, 0]
BIN_ACCURACY = 5 / 8  # right: rows 0, 1, 2, 4, 5


def _pred_forms(case):
    """y_pred as int64 labels, and as float32 scores whose argmax is the same."""
    return {"labels": case.asarray(Y_PRED, "int64"), "scores": case.asarray(SCORES, "float32")}


def _assert_counts(case, actual, expected):
    """Exact int64 counts, on the case's backend and device."""
    assert case.backend.adapter.owns(actual), f"expected a {case.name} array, got {type(actual)}"
    assert device(actual) == case.device, f"result on {device(actual)}, expected {case.device}"
    assert dtype_name(actual.dtype) == "int64", actual.dtype
    np.testing.assert_array_equal(pn.to_numpy(actual), np.asarray(expected))


@pytest.mark.parametrize("form", ["labels", "scores"])
def test_accuracy(case, form) -> None:
    y_pred = _pred_forms(case)[form]
    case.assert_close(metrics.accuracy(case.asarray(Y_TRUE, "int64"), y_pred), ACCURACY, dtype="float32")
    case.assert_close(metrics.accuracy(case.asarray(Y_TRUE, "int32"), y_pred), ACCURACY, dtype="float32")


def test_accuracy_float64_scores_give_float64(case) -> None:
    if not case.supports("float64"):
        pytest.skip(f"{case.name} has no float64")
    acc = metrics.accuracy(case.asarray(Y_TRUE, "int64"), case.asarray(SCORES, "float64"))
    case.assert_close(acc, ACCURACY, dtype="float64")


@pytest.mark.parametrize("form", ["labels", "scores"])
def test_confusion_matrix(case, form) -> None:
    y_pred = _pred_forms(case)[form]
    y_true = case.asarray(Y_TRUE, "int64")
    _assert_counts(case, metrics.confusion_matrix(y_true, y_pred), CM)
    _assert_counts(case, metrics.confusion_matrix(y_true, y_pred, validate=False), CM)
    if form == "labels":  # one more class than the labels show: an empty row and column
        padded = np.zeros((6, 6), dtype=np.int64)
        padded[:5, :5] = CM
        _assert_counts(case, metrics.confusion_matrix(y_true, y_pred, num_classes=6), padded)


def test_confusion_matrix_counts_repeated_pairs(case) -> None:
    y = case.asarray([1, 1, 1, 1, 0], "int64")
    _assert_counts(case, metrics.confusion_matrix(y, y), [[1, 0], [0, 4]])


def test_confusion_matrix_in_blocks(case, monkeypatch) -> None:
    monkeypatch.setattr(metrics, "_ONEHOT_ELEMENTS", 15)  # 3 rows a block: 4 blocks of the 10 samples
    _assert_counts(case, metrics.confusion_matrix(case.asarray(Y_TRUE, "int64"), case.asarray(Y_PRED, "int64")), CM)


@pytest.mark.parametrize("form", ["labels", "scores"])
def test_precision_recall_f1_per_class(case, form) -> None:
    y_pred = _pred_forms(case)[form]
    p, r, f1, support = metrics.precision_recall_f1(case.asarray(Y_TRUE, "int64"), y_pred)
    case.assert_close(p, PRECISION, dtype="float32", err_msg="precision")
    case.assert_close(r, RECALL, dtype="float32", err_msg="recall")
    case.assert_close(f1, F1, dtype="float32", err_msg="f1")
    _assert_counts(case, support, SUPPORT)
    case.assert_close(metrics.per_class_accuracy(case.asarray(Y_TRUE, "int64"), y_pred), RECALL, dtype="float32")


@pytest.mark.parametrize("average", sorted(AVERAGED))
def test_precision_recall_f1_averaged(case, average) -> None:
    result = metrics.precision_recall_f1(case.asarray(Y_TRUE, "int64"), case.asarray(Y_PRED, "int64"), average=average)
    for name, actual, expected in zip(("precision", "recall", "f1"), result[:3], AVERAGED[average]):
        case.assert_close(actual, expected, dtype="float32", err_msg=f"{average} {name}")
    assert result.support is None


def test_classes_that_never_occur_score_zero(case) -> None:
    y_true, y_pred = case.asarray([0, 0], "int64"), case.asarray([1, 1], "int64")
    p, r, f1, support = metrics.precision_recall_f1(y_true, y_pred, num_classes=3)
    for name, value in (("precision", p), ("recall", r), ("f1", f1)):
        case.assert_close(value, [0.0, 0.0, 0.0], dtype="float32", err_msg=name)
    _assert_counts(case, support, [2, 0, 0])
    for average in ("macro", "weighted", "micro"):
        for value in metrics.precision_recall_f1(y_true, y_pred, num_classes=3, average=average)[:3]:
            case.assert_close(value, 0.0, dtype="float32", err_msg=average)
    empty = case.asarray(np.zeros(0, dtype=np.int64))
    _assert_counts(case, metrics.confusion_matrix(empty, empty, num_classes=2), [[0, 0], [0, 0]])
    for value in metrics.precision_recall_f1(empty, empty, num_classes=2, average="macro")[:3]:
        case.assert_close(value, 0.0, dtype="float32", err_msg="empty macro")


@pytest.mark.parametrize("k", sorted(TOPK))
def test_top_k_accuracy_with_ties(case, k) -> None:
    y_true, scores = case.asarray(TOPK_TRUE, "int64"), case.asarray(TOPK_SCORES, "float32")
    case.assert_close(metrics.top_k_accuracy(y_true, scores, k=k), TOPK[k], dtype="float32")
    if k == 1:  # the same tie rule as argmax
        case.assert_close(metrics.accuracy(y_true, scores), TOPK[1], dtype="float32")


def test_top_k_accuracy_of_the_shared_example(case) -> None:
    # True-class ranks in SCORES: [0, 0, 1, 0, 1, 0, 0, 1, 0, 0] (row 0: class 0 wins its tie with class 1).
    y_true, scores = case.asarray(Y_TRUE, "int32"), case.asarray(SCORES, "float32")
    case.assert_close(metrics.top_k_accuracy(y_true, scores, k=1), 0.7, dtype="float32")
    case.assert_close(metrics.top_k_accuracy(y_true, scores, k=2), 1.0, dtype="float32")


# -- one score per example: a binary model ------------------------------------------------------


@pytest.mark.parametrize("shape", ["(N, 1)", "(N,)"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_binary_scores_are_thresholded_not_argmaxed(case, shape, dtype) -> None:
    if not case.supports(dtype):
        pytest.skip(f"{case.name} has no {dtype}")
    y_true = case.asarray(BIN_TRUE, "int64")

    def scores(a):
        return case.asarray(a if shape == "(N, 1)" else a[:, 0], dtype)

    probs, logits = scores(BIN_PROBS), scores(BIN_LOGITS)
    assert BIN_ACCURACY != np.mean(BIN_TRUE == 0)  # the old answer (argmax of one column: class 0) is not this one
    case.assert_close(metrics.accuracy(y_true, probs), BIN_ACCURACY, dtype=dtype)
    case.assert_close(metrics.accuracy(y_true, logits, threshold=0.0), BIN_ACCURACY, dtype=dtype)
    case.assert_close(metrics.accuracy(y_true, probs, threshold=0.9), np.mean((BIN_PROBS[:, 0] > 0.9) == BIN_TRUE), dtype=dtype)
    expected_cm = [[1, 1], [2, 4]]  # true 0: one right, one taken for 1; true 1: two missed, four right
    for y_pred, kw in ((probs, {}), (logits, {"threshold": 0.0})):
        _assert_counts(case, metrics.confusion_matrix(y_true, y_pred, **kw), expected_cm)
        p, r, f1, support = metrics.precision_recall_f1(y_true, y_pred, **kw)
        case.assert_close(p, [1 / 3, 4 / 5], dtype=dtype, err_msg="precision")
        case.assert_close(r, [1 / 2, 4 / 6], dtype=dtype, err_msg="recall")
        case.assert_close(metrics.per_class_accuracy(y_true, y_pred, **kw), [1 / 2, 4 / 6], dtype=dtype)
        _assert_counts(case, support, [2, 6])
        case.assert_close(metrics.top_k_accuracy(y_true, y_pred, k=1, **kw), BIN_ACCURACY, dtype=dtype)
        case.assert_close(metrics.top_k_accuracy(y_true, y_pred, k=2, **kw), 1.0, dtype=dtype)


def test_binary_threshold_ties_and_label_forms(case) -> None:
    y_true = case.asarray([0, 1, 1], "int64")
    at = case.asarray([[0.5], [0.5], [0.75]], "float32")  # a score equal to the threshold is class 0, as in Keras
    case.assert_close(metrics.accuracy(y_true, at), 2 / 3, dtype="float32")
    case.assert_close(metrics.top_k_accuracy(y_true, at, k=1), 2 / 3, dtype="float32")
    ints = case.asarray([[0], [1], [1]], "int64")  # an (N, 1) column of 0/1 integers is one score per example too
    case.assert_close(metrics.accuracy(y_true, ints), 1.0, dtype="float32")
    flags = case.asarray([False, True, False], "bool")  # booleans of shape (N,) are labels
    case.assert_close(metrics.accuracy(y_true, flags), 2 / 3, dtype="float32")
    # validate=False skips the range check: the caller vouches for probabilities
    logits = case.asarray(BIN_LOGITS, "float32")
    expected = np.mean((BIN_LOGITS[:, 0] > 0.5) == BIN_TRUE)
    case.assert_close(metrics.accuracy(case.asarray(BIN_TRUE, "int64"), logits, validate=False), expected, dtype="float32")


# -- errors: each names the function, what it got and the fix ---------------------------------

ERRORS = {
    "length": (
        lambda c: metrics.accuracy(c.asarray(Y_TRUE, "int64"), c.asarray(Y_PRED[:9], "int64")),
        ValueError,
        r"accuracy: y_true has 10 samples \(shape \(10,\)\) but y_pred has shape \(9,\); pass one prediction per label",
    ),
    "float y_true": (
        lambda c: metrics.confusion_matrix(c.asarray(Y_TRUE, "float32"), c.asarray(Y_PRED, "int64")),
        TypeError,
        r"confusion_matrix: y_true must hold integer class labels of shape \(N,\); got shape \(10,\) and dtype float32\. "
        r"Cast it with xp\.astype\(y_true, xp\.int64\)",
    ),
    "one-hot y_true": (
        lambda c: metrics.accuracy(c.asarray(np.eye(5, dtype=np.int64)[Y_TRUE]), c.asarray(Y_PRED, "int64")),
        ValueError,
        r"accuracy: y_true must be class labels of shape \(N,\); got shape \(10, 5\) and dtype int64 \(one-hot rows\? "
        r"take xp\.argmax\(y_true, axis=1\)\)",
    ),
    "a column of labels with scores": (  # (N, 1) labels: a column to squeeze, or one label per position of a sequence
        lambda c: metrics.accuracy(
            c.asarray(np.asarray(Y_TRUE)[:, None], "int64"), c.asarray(np.eye(5, dtype=np.float32)[Y_PRED])
        ),
        ValueError,
        r"accuracy: y_true holds integer labels of shape \(10, 1\); as one label per position of a sequence, y_pred must "
        r"be scores of shape \(10, 1, C\) .*got shape \(10, 5\) and dtype float32\. If y_true holds one label per example, "
        r"it must have shape \(N,\) \(a column\? take xp\.reshape\(y_true, \(-1,\)\)\)",
    ),
    "one-hot y_true with scores": (
        lambda c: metrics.accuracy(c.asarray(np.eye(5, dtype=np.int64)[Y_TRUE]), c.asarray(np.eye(5, dtype=np.float32)[Y_PRED])),
        ValueError,
        r"accuracy: y_true holds integer labels of shape \(10, 5\); as one label per position of a sequence.* "
        r"If y_true holds one label per example, it must have shape \(N,\) \(one-hot rows\? take xp\.argmax\(y_true, axis=1\)\)",
    ),
    "float y_pred labels are binary scores": (  # float (N,) is one score per example, and these are no probabilities
        lambda c: metrics.accuracy(c.asarray(Y_TRUE, "int64"), c.asarray(Y_PRED, "float32")),
        ValueError,
        r"accuracy: y_pred of shape \(10,\) holds one score per example \(a binary model\), compared with the default "
        r"threshold 0\.5, for probabilities; but its values run from 0\.0 to 4\.0, outside \[0, 1\]: they look like logits\. "
        r"Pass threshold=0\.0 for logits",
    ),
    "logits under the probability threshold": (
        lambda c: metrics.confusion_matrix(c.asarray(BIN_TRUE, "int64"), c.asarray(BIN_LOGITS, "float32")),
        ValueError,
        r"confusion_matrix: y_pred of shape \(8, 1\) holds one score per example .* values run from -2\.5 to 3\.0, "
        r"outside \[0, 1\].* Pass threshold=0\.0 for logits",
    ),
    "logits as top-k binary scores": (
        lambda c: metrics.top_k_accuracy(c.asarray(BIN_TRUE, "int64"), c.asarray(BIN_LOGITS[:, 0], "float32"), k=1),
        ValueError,
        r"top_k_accuracy: scores of shape \(8,\) holds one score per example .* Pass threshold=0\.0 for logits",
    ),
    "threshold with class scores": (
        lambda c: metrics.accuracy(c.asarray(Y_TRUE, "int64"), c.asarray(SCORES, "float32"), threshold=0.0),
        ValueError,
        r"accuracy: threshold applies to one score per example \(a binary model, shape \(N,\) or \(N, 1\)\); "
        r"y_pred has shape \(10, 5\) and dtype float32: drop threshold=",
    ),
    "threshold not a number": (
        lambda c: metrics.per_class_accuracy(c.asarray(BIN_TRUE, "int64"), c.asarray(BIN_PROBS, "float32"), threshold="0"),
        TypeError,
        r"per_class_accuracy: threshold must be a finite number \(0\.0 for logits, 0\.5 for probabilities\); got '0'",
    ),
    "binary scores and labels above 1": (
        lambda c: metrics.accuracy(c.asarray([0, 2], "int64"), c.asarray([[0.1], [0.9]], "float32")),
        ValueError,
        r"accuracy: y_true must hold class indices in 0\.\.1 for num_classes=2; got values from 0 to 2",
    ),
    "binary scores and num_classes": (
        lambda c: metrics.precision_recall_f1(c.asarray(BIN_TRUE, "int64"), c.asarray(BIN_PROBS, "float32"), num_classes=3),
        ValueError,
        r"precision_recall_f1: num_classes=3 but y_pred holds scores for 2 classes",
    ),
    "k > C": (
        lambda c: metrics.top_k_accuracy(c.asarray(Y_TRUE, "int64"), c.asarray(SCORES, "float32"), k=6),
        ValueError,
        r"top_k_accuracy: k must be an int in 1\.\.5 for scores of shape \(10, 5\); got k=6",
    ),
    "k = 0": (
        lambda c: metrics.top_k_accuracy(c.asarray(Y_TRUE, "int64"), c.asarray(SCORES, "float32"), k=0),
        ValueError,
        r"top_k_accuracy: k must be an int in 1\.\.5 .* got k=0",
    ),
    "labels as top-k scores": (
        lambda c: metrics.top_k_accuracy(c.asarray(Y_TRUE, "int64"), c.asarray(Y_PRED, "int64")),
        TypeError,
        r"top_k_accuracy: scores must be real scores of shape \(N, C\); got shape \(10,\) and dtype int64",
    ),
    "top-k label out of range": (
        lambda c: metrics.top_k_accuracy(c.asarray([0, 7], "int64"), c.asarray(SCORES[:2], "float32"), k=2),
        ValueError,
        r"top_k_accuracy: y_true must hold class indices in 0\.\.4 for num_classes=5; got values from 0 to 7",
    ),
    "y_pred out of range": (
        lambda c: metrics.confusion_matrix(c.asarray(Y_TRUE, "int64"), c.asarray(Y_PRED, "int64"), num_classes=3),
        ValueError,
        r"confusion_matrix: y_pred must hold class indices in 0\.\.2 for num_classes=3; got values from 0 to 4\. "
        r"Pass a larger num_classes, or remap the labels",
    ),
    "negative label": (
        lambda c: metrics.per_class_accuracy(c.asarray([0, -1, 2], "int64"), c.asarray([0, 1, 2], "int64")),
        ValueError,
        r"per_class_accuracy: y_true must hold class indices in 0\.\.2 for num_classes=3; got values from -1 to 2",
    ),
    "scores and num_classes disagree": (
        lambda c: metrics.confusion_matrix(c.asarray(Y_TRUE, "int64"), c.asarray(SCORES, "float32"), num_classes=6),
        ValueError,
        r"confusion_matrix: num_classes=6 but y_pred holds scores for 5 classes",
    ),
    "bad num_classes": (
        lambda c: metrics.confusion_matrix(c.asarray(Y_TRUE, "int64"), c.asarray(Y_PRED, "int64"), num_classes=0),
        ValueError,
        r"confusion_matrix: num_classes must be a positive int or None; got 0",
    ),
    "bad average": (
        lambda c: metrics.precision_recall_f1(c.asarray(Y_TRUE, "int64"), c.asarray(Y_PRED, "int64"), average="binary"),
        ValueError,
        r"precision_recall_f1: average must be one of None, 'micro', 'macro', 'weighted'; got 'binary'",
    ),
    "empty accuracy": (
        lambda c: metrics.accuracy(c.asarray(np.zeros(0, np.int64)), c.asarray(np.zeros(0, np.int64))),
        ValueError,
        r"accuracy: got 0 samples",
    ),
    "empty, num_classes inferred": (
        lambda c: metrics.confusion_matrix(c.asarray(np.zeros(0, np.int64)), c.asarray(np.zeros(0, np.int64))),
        ValueError,
        r"confusion_matrix: cannot infer num_classes from 0 samples; pass num_classes=",
    ),
}


@pytest.mark.parametrize("name", list(ERRORS))
def test_errors(case, name) -> None:
    call, error, match = ERRORS[name]
    with pytest.raises(error, match=match):
        call(case)


def test_error_for_two_libraries() -> None:
    torch = pytest.importorskip("torch", reason="PyTorch not installed")
    with pytest.raises(TypeError, match=r"accuracy: got arrays from different libraries"):
        metrics.accuracy(np.array(Y_TRUE), torch.asarray(Y_PRED))


def test_error_for_two_devices() -> None:
    xp = pytest.importorskip("array_api_strict", reason="array-api-strict not installed")
    y_true = xp.asarray(Y_TRUE, device=xp.Device("device1"))
    y_pred = xp.asarray(Y_PRED, device=xp.Device("CPU_DEVICE"))
    with pytest.raises(ValueError, match=r"confusion_matrix: y_true is on device .*device1.* but y_pred is on .*CPU_DEVICE"):
        metrics.confusion_matrix(y_true, y_pred)


# -- scikit-learn as an independent oracle, when it is installed ------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_against_scikit_learn(seed) -> None:
    skm = pytest.importorskip("sklearn.metrics", reason="scikit-learn is not installed (optional cross-check only)")
    rng = np.random.default_rng(seed)
    c = 7  # labels drawn from 0..5 and predictions from a subset: class 6 never occurs, some never predicted
    y_true = rng.integers(0, 6, size=200)
    y_pred = np.where(rng.random(200) < 0.6, y_true, rng.choice([0, 2, 3, 5], size=200))
    labels = list(range(c))
    np.testing.assert_array_equal(
        metrics.confusion_matrix(y_true, y_pred, num_classes=c), skm.confusion_matrix(y_true, y_pred, labels=labels)
    )
    ours = metrics.precision_recall_f1(y_true, y_pred, num_classes=c)
    theirs = skm.precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    for average in ("macro", "weighted", "micro"):
        ours = metrics.precision_recall_f1(y_true, y_pred, num_classes=c, average=average)
        theirs = skm.precision_recall_fscore_support(y_true, y_pred, average=average, zero_division=0)
        np.testing.assert_allclose(ours[:3], theirs[:3], rtol=1e-6, atol=1e-7, err_msg=average)
    scores = rng.standard_normal((200, c)).astype(np.float32)
    np.testing.assert_allclose(metrics.accuracy(y_true, scores), skm.accuracy_score(y_true, scores.argmax(axis=1)), rtol=1e-6)
    for k in (1, 2, 3):
        np.testing.assert_allclose(
            metrics.top_k_accuracy(y_true, scores, k=k), skm.top_k_accuracy_score(y_true, scores, k=k, labels=labels), rtol=1e-6
        )


@pytest.mark.parametrize("seed", range(5))
def test_binary_against_scikit_learn(seed) -> None:
    skm = pytest.importorskip("sklearn.metrics", reason="scikit-learn is not installed (optional cross-check only)")
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 2, size=300)
    logits = (2.0 * y_true - 1.0 + 1.5 * rng.standard_normal(300)).astype(np.float32)
    probs = (1.0 / (1.0 + np.exp(-logits.astype(np.float64)))).astype(np.float32)
    for scores, threshold in ((probs[:, None], None), (probs, 0.3), (logits[:, None], 0.0), (logits, 0.0)):
        t = 0.5 if threshold is None else threshold
        y_pred = (scores.reshape(-1) > t).astype(np.int64)
        what = f"shape {scores.shape}, threshold {threshold}"
        np.testing.assert_allclose(metrics.accuracy(y_true, scores, threshold=threshold), skm.accuracy_score(y_true, y_pred),
                                   rtol=1e-6, err_msg=what)  # fmt: skip
        np.testing.assert_array_equal(
            metrics.confusion_matrix(y_true, scores, threshold=threshold), skm.confusion_matrix(y_true, y_pred, labels=[0, 1])
        )
        ours = metrics.precision_recall_f1(y_true, scores, threshold=threshold)
        theirs = skm.precision_recall_fscore_support(y_true, y_pred, labels=[0, 1], zero_division=0)
        for a, b in zip(ours, theirs):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7, err_msg=what)
        np.testing.assert_allclose(
            metrics.per_class_accuracy(y_true, scores, threshold=threshold),
            skm.recall_score(y_true, y_pred, average=None, labels=[0, 1], zero_division=0),
            rtol=1e-6,
        )
    # scikit-learn's binary top-k thresholds probabilities at 0.5 and anything else at 0: the same as ours, told explicitly
    np.testing.assert_allclose(
        metrics.top_k_accuracy(y_true, probs, k=1), skm.top_k_accuracy_score(y_true, probs, k=1), rtol=1e-6
    )
    np.testing.assert_allclose(
        metrics.top_k_accuracy(y_true, logits, k=1, threshold=0.0), skm.top_k_accuracy_score(y_true, logits, k=1), rtol=1e-6
    )

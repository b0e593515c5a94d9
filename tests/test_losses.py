"""BinaryCrossEntropy from probabilities and from logits, against PyTorch on every backend; what each loss refuses.

``test_ops.py`` runs the shared gradient checks (finite differences, torch autograd, parity in
float32 and float64) on the ``bce`` and ``bce_probs`` specs; this file adds the two paths side
by side on every backend, the clip at 0 and 1, the checks and the accuracy threshold.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest

import portnn as pn
from portnn import losses as L
from portnn.layers import Linear, ReLU, Sigmoid, Softmax, Tanh

torch = pytest.importorskip("torch", reason="PyTorch is the oracle here (pip install torch==2.13.0)")

RNG = np.random.default_rng(7)
LOGITS = 3.0 * RNG.normal(size=(8, 3))
TARGETS = RNG.random((8, 3))  # soft targets; 0/1 targets are a special case
PROBABILITIES = 1.0 / (1.0 + np.exp(-LOGITS))


def torch_reference(from_logits: bool, reduction: str, y_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Loss and gradient from torch.nn.BCEWithLogitsLoss / BCELoss in float64."""
    module = torch.nn.BCEWithLogitsLoss if from_logits else torch.nn.BCELoss
    x = torch.tensor(y_pred, dtype=torch.float64, requires_grad=True)
    value = module(reduction=reduction)(x, torch.tensor(TARGETS, dtype=torch.float64))
    value.backward()
    return value.detach().numpy(), x.grad.numpy()


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("from_logits", [False, True])
def test_both_paths_match_torch(case: Any, from_logits: bool, dtype: str, reduction: str) -> None:
    if not case.supports(dtype):
        pytest.skip(f"{case.name} on {case.device} has no {dtype}")
    y_pred = LOGITS if from_logits else PROBABILITIES
    expected, expected_grad = torch_reference(from_logits, reduction, y_pred)
    loss = L.BinaryCrossEntropy(from_logits=from_logits, reduction=reduction)
    value, backward = loss.forward(case.asarray(y_pred, dtype), case.asarray(TARGETS, dtype))
    case.assert_close(value, expected, dtype=dtype, err_msg="loss")
    case.assert_close(backward(), expected_grad, dtype=dtype, err_msg="gradient")


def test_the_two_paths_agree_through_a_sigmoid(case: Any) -> None:
    """BCE(p = sigmoid(z)) equals BCE from logits z; the chain rule through Sigmoid gives the logits' gradient."""
    z = case.asarray(LOGITS, "float32")
    t = case.asarray(TARGETS, "float32")
    p, sigmoid_backward = pn.functional.sigmoid(z)
    from_p, back_p = L.BinaryCrossEntropy().forward(p, t)
    from_z, back_z = L.BinaryCrossEntropy(from_logits=True).forward(z, t)
    case.assert_close(from_p, pn.to_numpy(from_z), dtype="float32")
    case.assert_close(sigmoid_backward(back_p()), pn.to_numpy(back_z()), dtype="float32")


def test_probabilities_of_exactly_0_and_1_are_clipped(case: Any) -> None:
    """Keras's clip to [1e-7, 1 - 1e-7]: a finite loss, and no gradient where the clip bites."""
    p = np.array([[0.0, 1.0, 0.5, 1e-9, 0.3]])
    t = np.array([[1.0, 0.0, 1.0, 0.0, 0.0]])
    value, backward = L.BinaryCrossEntropy(reduction="sum").forward(case.asarray(p, "float32"), case.asarray(t, "float32"))
    eps = 1e-7
    high = float(np.float32(1 - eps))  # the clip's upper end, as float32 rounds it
    expected = -np.log(eps) - np.log(1 - high) - np.log(0.5) - np.log(1 - eps) - np.log(0.7)
    case.assert_close(value, expected, dtype="float32")
    case.assert_close(backward(), [[0.0, 0.0, -2.0, 0.0, 1 / 0.7]], dtype="float32")


def test_probabilities_path_refuses_logits(case: Any) -> None:
    t = case.asarray(TARGETS, "float32")
    with pytest.raises(ValueError) as info:
        L.BinaryCrossEntropy()(case.asarray(LOGITS, "float32"), t)
    message = str(info.value)
    lo, hi = LOGITS.astype(np.float32).min(), LOGITS.astype(np.float32).max()
    n_out = int(np.sum((LOGITS < 0) | (LOGITS > 1)))
    assert message.startswith(f"BinaryCrossEntropy() takes probabilities in [0, 1] (from_logits=False, the default), but the "
                              f"predictions run from {lo} to {hi} ({n_out} of 24 outside): they look like logits")  # fmt: skip
    assert "BinaryCrossEntropy(from_logits=True)" in message and "pn.layers.Sigmoid()" in message
    # the logits path takes any value; validate=False (fit's batches, checked once up front) skips the check
    L.BinaryCrossEntropy(from_logits=True)(case.asarray(LOGITS, "float32"), t)
    value, _ = L.BinaryCrossEntropy().forward(case.asarray(LOGITS, "float32"), t, validate=False)
    assert np.isfinite(float(value))
    L.BinaryCrossEntropy()(case.asarray([[0.0, 1.0, 0.5]], "float32"), case.asarray([[0.0, 1.0, 1.0]], "float32"))


def test_correct_thresholds_logits_at_0_and_probabilities_at_half(case: Any) -> None:
    target = case.asarray([[1.0], [0.0], [1.0], [0.0]], "float32")
    probabilities = case.asarray([[0.7], [0.3], [0.8], [0.2]], "float32")  # all four right at 0.5
    logits = case.asarray([[0.2], [-0.1], [3.0], [-0.5]], "float32")  # all four right at 0
    assert int(L.BinaryCrossEntropy().correct(probabilities, target)) == 4
    assert int(L.BinaryCrossEntropy(from_logits=True).correct(logits, target)) == 4
    # the other threshold would be wrong: every probability is above 0, and the logit 0.2 is below 0.5
    assert int(L.BinaryCrossEntropy(from_logits=True).correct(probabilities, target)) == 2
    assert int(L.BinaryCrossEntropy().correct(logits, target)) == 3
    # on the threshold is class 0: a probability of 0.5, a logit of 0 (whose sigmoid is 0.5)
    zero, one, half = (case.asarray([[v]], "float32") for v in (0.0, 1.0, 0.5))
    assert int(L.BinaryCrossEntropy().correct(half, zero)) == 1
    assert int(L.BinaryCrossEntropy(from_logits=True).correct(zero, one)) == 0


OUTPUT_LAYERS = {
    # loss, last layer -> None (accepted) or the patterns of the ValueError
    "ce after linear": (L.CrossEntropy(), Linear(3, 2), None),
    "ce after softmax": (L.CrossEntropy(), Softmax(), [r"CrossEntropy takes logits, but the model ends with Softmax",
                                                       r"remove the final Softmax layer"]),
    "logits after linear": (L.BinaryCrossEntropy(from_logits=True), Linear(3, 1), None),
    "logits after sigmoid": (L.BinaryCrossEntropy(from_logits=True), Sigmoid(), [
        r"BinaryCrossEntropy\(from_logits=True\) takes logits, but the model ends with Sigmoid",
        r"remove the final Sigmoid layer", r"or use BinaryCrossEntropy\(\) \(from_logits=False\), which takes probabilities"]),
    "probabilities after sigmoid": (L.BinaryCrossEntropy(), Sigmoid(), None),
    "probabilities after linear": (L.BinaryCrossEntropy(), Linear(3, 1), [
        r"BinaryCrossEntropy\(\) takes probabilities in \[0, 1\] \(from_logits=False, the default\), but the model ends with "
        r"Linear\(3, 1\), whose outputs are not probabilities",
        r"end the model with pn.layers.Sigmoid\(\)", r"or pass BinaryCrossEntropy\(from_logits=True\)"]),
    "probabilities after tanh": (L.BinaryCrossEntropy(), Tanh(), [r"ends with Tanh\(\)"]),
    "probabilities, no layers": (L.BinaryCrossEntropy(), None, None),
    "mse after anything": (L.MSE(), Sigmoid(), None),
}  # fmt: skip


@pytest.mark.parametrize("name", list(OUTPUT_LAYERS))
def test_check_output_layer(name: str) -> None:
    loss, layer, patterns = OUTPUT_LAYERS[name]
    if patterns is None:
        loss.check_output_layer(layer)
        return
    with pytest.raises(ValueError) as info:
        loss.check_output_layer(layer)
    for pattern in patterns:
        assert re.search(pattern, str(info.value)), (pattern, str(info.value))


def test_constructor_and_repr() -> None:
    assert repr(L.BinaryCrossEntropy()) == "BinaryCrossEntropy()"
    assert repr(L.BinaryCrossEntropy(from_logits=True)) == "BinaryCrossEntropy(from_logits=True)"
    assert L.BinaryCrossEntropy().from_logits is False  # probabilities by default, as Keras and torch's BCELoss
    with pytest.raises(TypeError, match=r"BinaryCrossEntropy: from_logits must be True or False; got 'yes'"):
        L.BinaryCrossEntropy(from_logits="yes")
    with pytest.raises(TypeError):
        L.BinaryCrossEntropy(True)  # keyword-only, as every option


def test_a_sigmoid_model_learns_with_probabilities(case: Any) -> None:
    """A model ending with Sigmoid trained on BinaryCrossEntropy() (a loop of its own: train_step) separates two blobs."""
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(-1.5, 0.5, size=(40, 2)), rng.normal(1.5, 0.5, size=(40, 2))])
    y = np.repeat([0.0, 1.0], 40)[:, None]
    with pn.use_backend("numpy"):
        model = pn.Sequential([Linear(2, 8), ReLU(), Linear(8, 1), Sigmoid()], seed=0)
    model.to(case.name, case.device)
    loss, optimizer = L.BinaryCrossEntropy(), pn.optim.SGD(model.parameters(), lr=0.5)
    loss.check_output_layer(model.layers[-1])
    xb, yb = case.asarray(x, "float32"), case.asarray(y, "float32")
    first = float(model.train_step(xb, yb, loss, optimizer)[0])
    for _ in range(60):
        value, p = model.train_step(xb, yb, loss, optimizer)
    assert float(value) < 0.2 * first
    assert int(loss.correct(p, yb)) == 80


def test_fit_trains_on_logits_with_from_logits_true() -> None:
    x, labels = pn.datasets.toy.parity_bits(2, rule="xor")
    y = labels[:, None].astype(np.float32)
    model = pn.Sequential([Linear(2, 8, init="glorot_uniform"), Tanh(), Linear(8, 1)], seed=0)
    loss = L.BinaryCrossEntropy(from_logits=True)
    model.fit(x, y, loss=loss, optimizer=pn.optim.SGD(lr=0.5, momentum=0.9), epochs=300, batch_size=4, verbose=0)
    assert model.evaluate(x, y, loss=loss)["accuracy"] == 1.0


def test_fit_trains_a_sigmoid_model_on_probabilities() -> None:
    x, labels = pn.datasets.toy.parity_bits(2, rule="xor")
    y = labels[:, None].astype(np.float32)
    model = pn.Sequential([Linear(2, 8, init="glorot_uniform"), Tanh(), Linear(8, 1), Sigmoid()], seed=0)
    optimizer = pn.optim.SGD(lr=0.5, momentum=0.9)
    model.fit(x, y, loss=L.BinaryCrossEntropy(), optimizer=optimizer, epochs=300, batch_size=4, verbose=0)
    assert model.evaluate(x, y)["accuracy"] == 1.0


def test_fit_refuses_probabilities_from_a_linear_layer() -> None:
    model = pn.Sequential([Linear(2, 1)], seed=0)
    with pytest.raises(ValueError, match=r"BinaryCrossEntropy\(\) takes probabilities .* ends with Linear\(2, 1\)"):
        model.fit(np.zeros((4, 2)), np.zeros((4, 1)), loss=L.BinaryCrossEntropy(), optimizer=pn.optim.SGD(lr=0.1), verbose=0)


#: Finite logits near each dtype's maximum: x - max(x) overflows to -inf where two of them have opposite signs.
EXTREME = {"float32": 3e38, "float64": 1.7e308}


def _torch_loss(fn: Any, z: np.ndarray, target: np.ndarray, dtype: str, **kwargs: Any) -> tuple[np.ndarray, np.ndarray]:
    """Loss and gradient from torch in ``dtype`` itself: where the overflow happens depends on the dtype."""
    x = torch.tensor(z, dtype=getattr(torch, dtype), requires_grad=True)
    t = torch.tensor(target) if target.dtype.kind in "iu" else torch.tensor(target, dtype=getattr(torch, dtype))
    value = fn(x, t, **kwargs)
    value.backward()
    return value.detach().numpy(), x.grad.numpy()


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_cross_entropy_of_extreme_finite_logits_matches_torch(case: Any, dtype: str, reduction: str) -> None:
    """Logits of ±3e38 (float32) give torch's finite loss, not NaN: 0 log 0 counts as 0; the gradient is torch's."""
    if not case.supports(dtype):
        pytest.skip(f"{case.name} on {case.device} has no {dtype}")
    big = EXTREME[dtype]
    z = np.array([[big, -big, 0.0], [-big, -big, big], [big, big, -big], [1.0, -big, 2.0]])
    loss = L.CrossEntropy(reduction=reduction)
    with np.errstate(over="ignore", invalid="raise"):  # -inf log-probabilities are right; a NaN is not
        for labels, finite in (([0, 2, 1, 2], True), ([1, 2, 1, 2], False)):  # the second picks a log-probability of -inf
            y = np.array(labels)
            expected, expected_grad = _torch_loss(torch.nn.functional.cross_entropy, z, y, dtype, reduction=reduction)
            assert np.isfinite(expected) == finite  # what torch says, so the case tests what it claims
            value, backward = loss.forward(case.asarray(z, dtype), case.asarray(y, "int64"))
            case.assert_close(value, expected, dtype=dtype, err_msg=f"loss, labels {labels}")
            case.assert_close(backward(), expected_grad, dtype=dtype, err_msg=f"gradient, labels {labels}")
        # one-hot probabilities are the integer labels (torch's own probability path gives NaN here: 0 * -inf)
        y = np.array([0, 2, 1, 2])
        expected, expected_grad = _torch_loss(torch.nn.functional.cross_entropy, z, y, dtype, reduction=reduction)
        value, backward = loss.forward(case.asarray(z, dtype), case.asarray(np.eye(3)[y], dtype))
        case.assert_close(value, expected, dtype=dtype, err_msg="one-hot probabilities")
        case.assert_close(backward(), expected_grad, dtype=dtype, err_msg="one-hot probabilities' gradient")
        # label smoothing gives every class weight: the -inf terms count, inf as in torch
        smooth = L.CrossEntropy(label_smoothing=0.1, reduction=reduction)
        expected, expected_grad = _torch_loss(
            torch.nn.functional.cross_entropy, z, y, dtype, reduction=reduction, label_smoothing=0.1
        )
        value, backward = smooth.forward(case.asarray(z, dtype), case.asarray(y, "int64"))
        case.assert_close(value, expected, dtype=dtype, err_msg="label smoothing")
        case.assert_close(backward(), expected_grad, dtype=dtype, err_msg="label smoothing's gradient")


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_binary_cross_entropy_of_extreme_finite_logits_matches_torch(case: Any, dtype: str, reduction: str) -> None:
    if not case.supports(dtype):
        pytest.skip(f"{case.name} on {case.device} has no {dtype}")
    big = EXTREME[dtype]
    z = np.array([[big, -big], [-big, big], [big, -big]])
    loss = L.BinaryCrossEntropy(from_logits=True, reduction=reduction)
    with np.errstate(over="ignore", invalid="raise"):
        for target in ([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]], [[0.0, 1.0], [0.0, 1.0], [1.0, 0.0]]):
            t = np.array(target)
            expected, expected_grad = _torch_loss(
                torch.nn.functional.binary_cross_entropy_with_logits, z, t, dtype, reduction=reduction
            )
            value, backward = loss.forward(case.asarray(z, dtype), case.asarray(t, dtype))
            case.assert_close(value, expected, dtype=dtype, err_msg=f"loss, target {target}")
            case.assert_close(backward(), expected_grad, dtype=dtype, err_msg=f"gradient, target {target}")

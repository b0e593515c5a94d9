"""Every op and loss, forward and backward: finite differences, a PyTorch autograd oracle, and parity on every backend.

Each spec builds float64 NumPy inputs and names the op as ``f(*arrays) -> (y, vjp)``, where
``vjp(dy)`` returns the gradients of the differentiable inputs. The reference is the op on
NumPy in float64, checked twice independently (central differences, torch autograd); every
backend must then reproduce it in float32 and float64. The checks are
:func:`portnn.testing.check_op`'s, the public tool users point at their own ops: these tests
keep it honest.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Any

import conftest
import numpy as np
import pytest
from opspec import Spec, away_from_zero, layer_op, loss_op
from specs_conv import SPECS as CONV_SPECS
from specs_norm_act import SPECS as NORM_ACT_SPECS
from specs_pool import SPECS as POOL_SPECS
from specs_seq import SPECS as SEQ_SPECS

import portnn as pn
from portnn import functional as F
from portnn import losses as L
from portnn.testing import FD_TOLERANCE, ORACLE_TOLERANCE, TOLERANCES, check_op

try:
    import torch
except ImportError:  # the oracle tests skip with a reason
    torch = None


def _labels(r: np.random.Generator) -> list[np.ndarray]:
    return [r.integers(0, 4, size=6)]


def _probs(r: np.random.Generator) -> list[np.ndarray]:
    p = r.random((6, 4))
    return [p / p.sum(axis=1, keepdims=True)]


def _t(name: str) -> Callable[..., Any]:
    """A torch oracle, looked up lazily (torch may be missing)."""

    def call(*args: Any) -> Any:
        nnf = torch.nn.functional
        table = {
            "linear": lambda x, w, b: nnf.linear(x, w, b),
            "linear_nobias": lambda x, w: nnf.linear(x, w),
            "relu": torch.relu,
            "leaky_relu": lambda x: nnf.leaky_relu(x, 0.2),
            "sigmoid": torch.sigmoid,
            "tanh": torch.tanh,
            "softmax": lambda x: torch.softmax(x, dim=-1),
            "log_softmax": lambda x: torch.log_softmax(x, dim=-1),
            "flatten": lambda x: torch.flatten(x, 1),
            "ce": lambda z, t: nnf.cross_entropy(z, t),
            "ce_sum": lambda z, t: nnf.cross_entropy(z, t, reduction="sum"),
            "ce_smooth": lambda z, t: nnf.cross_entropy(z, t, label_smoothing=0.1),
            "ce_probs": lambda z, t: nnf.cross_entropy(z, t),
            "ce_probs_smooth": lambda z, t: nnf.cross_entropy(z, t, label_smoothing=0.2),
            "mse": lambda y, t: nnf.mse_loss(y, t),
            "bce": lambda z, t: nnf.binary_cross_entropy_with_logits(z, t),
            "bce_probs": lambda p, t: nnf.binary_cross_entropy(p, t),
            "bce_probs_sum": lambda p, t: nnf.binary_cross_entropy(p, t, reduction="sum"),
        }
        return table[name](*args)

    return call


SPECS: dict[str, Spec] = {
    "linear": Spec(
        lambda r: [r.normal(size=(5, 4)), r.normal(size=(3, 4)), r.normal(size=3)], layer_op(F.linear), _t("linear"), 3
    ),
    "linear_nobias": Spec(lambda r: [r.normal(size=(5, 4)), r.normal(size=(3, 4))], layer_op(F.linear), _t("linear_nobias"), 2),
    "relu": Spec(lambda r: [away_from_zero(r, (4, 5))], layer_op(F.relu), _t("relu")),
    "leaky_relu": Spec(lambda r: [away_from_zero(r, (4, 5))], layer_op(lambda x: F.leaky_relu(x, 0.2)), _t("leaky_relu")),
    "sigmoid": Spec(lambda r: [3 * r.normal(size=(4, 5))], layer_op(F.sigmoid), _t("sigmoid")),
    "tanh": Spec(lambda r: [2 * r.normal(size=(4, 5))], layer_op(F.tanh), _t("tanh")),
    "softmax": Spec(lambda r: [3 * r.normal(size=(4, 5))], layer_op(F.softmax), _t("softmax")),
    "flatten": Spec(lambda r: [r.normal(size=(3, 2, 4))], layer_op(pn.layers.Flatten().forward), _t("flatten")),
    "ce": Spec(lambda r: [3 * r.normal(size=(6, 4))], loss_op(L.CrossEntropy()), _t("ce"), extra=_labels),
    "ce_sum": Spec(lambda r: [3 * r.normal(size=(6, 4))], loss_op(L.CrossEntropy(reduction="sum")), _t("ce_sum"), extra=_labels),
    "ce_smooth": Spec(
        lambda r: [3 * r.normal(size=(6, 4))], loss_op(L.CrossEntropy(label_smoothing=0.1)), _t("ce_smooth"), extra=_labels
    ),
    "ce_probs": Spec(lambda r: [3 * r.normal(size=(6, 4))], loss_op(L.CrossEntropy()), _t("ce_probs"), extra=_probs),
    "ce_probs_smooth": Spec(
        lambda r: [3 * r.normal(size=(6, 4))], loss_op(L.CrossEntropy(label_smoothing=0.2)), _t("ce_probs_smooth"), extra=_probs
    ),
    "mse": Spec(lambda r: [r.normal(size=(6, 3))], loss_op(L.MSE()), _t("mse"), extra=lambda r: [r.normal(size=(6, 3))]),
    "bce": Spec(
        lambda r: [4 * r.normal(size=(6, 2))],
        loss_op(L.BinaryCrossEntropy(from_logits=True)),
        _t("bce"),
        extra=lambda r: [r.random((6, 2))],
    ),
    # probabilities kept 0.02 inside (0, 1): the clip to [1e-7, 1 - 1e-7] is tested in test_losses.py
    "bce_probs": Spec(
        lambda r: [0.02 + 0.96 * r.random((6, 2))],
        loss_op(L.BinaryCrossEntropy()),
        _t("bce_probs"),
        extra=lambda r: [r.random((6, 2))],
    ),
    "bce_probs_sum": Spec(
        lambda r: [0.02 + 0.96 * r.random((5, 3))],
        loss_op(L.BinaryCrossEntropy(reduction="sum")),
        _t("bce_probs_sum"),
        extra=lambda r: [(r.random((5, 3)) > 0.5).astype(np.float64)],
    ),
    # batch norm in training mode (batch statistics): gradients w.r.t. input, weight and bias
    "batch_norm": Spec(
        lambda r: [2 * r.normal(size=(6, 4)) + 1, r.normal(size=4), r.normal(size=4)],
        layer_op(F.batch_norm),
        lambda x, w, b: torch.nn.functional.batch_norm(x, None, None, w, b, training=True, eps=1e-5),
        3,
    ),
    "batch_norm_ncl": Spec(
        lambda r: [2 * r.normal(size=(3, 4, 5)) - 1, r.normal(size=4), r.normal(size=4)],
        layer_op(F.batch_norm),
        lambda x, w, b: torch.nn.functional.batch_norm(x, None, None, w, b, training=True, eps=1e-5),
        3,
    ),
    # evaluation mode: given running statistics (the extra inputs) are constants
    "batch_norm_eval": Spec(
        lambda r: [2 * r.normal(size=(6, 4)), r.normal(size=4), r.normal(size=4)],
        layer_op(lambda x, w, b, rm, rv: F.batch_norm(x, w, b, mean=rm, var=rv, training=False)),
        lambda x, w, b, rm, rv: torch.nn.functional.batch_norm(x, rm, rv, w, b, training=False, eps=1e-5),
        3,
        extra=lambda r: [r.normal(size=4), 0.5 + r.random(4)],
    ),
    # dropout with fixed uniform draws (kept 0.05 away from p, so float32 rounding flips no element)
    "dropout": Spec(
        lambda r: [r.normal(size=(5, 6))],
        layer_op(lambda x, u: F.dropout(x, u, p=0.3)),
        lambda x, u: x * (u >= 0.3).to(x.dtype) / 0.7,
        extra=lambda r: [(lambda u: np.where(np.abs(u - 0.3) < 0.05, u + 0.1, u))(r.random((5, 6)))],
    ),
}
SPECS.update(CONV_SPECS)
SPECS.update(POOL_SPECS)
SPECS.update(SEQ_SPECS)
SPECS.update(NORM_ACT_SPECS)


def _inputs(name: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
    spec = SPECS[name]
    r = np.random.default_rng(zlib.crc32(name.encode()))  # stable across runs (str hash is salted per process)
    return spec.make(r), (spec.extra(r) if spec.extra else [])


def _check(name: str, **kw: Any) -> Any:
    """portnn.testing.check_op on the spec: the upstream gradient of every test is the same one."""
    spec = SPECS[name]
    diff, extra = _inputs(name)
    with pn.use_backend("numpy"):
        y, _ = spec.op(*diff, *extra)
    dy = np.random.default_rng(1).normal(size=np.shape(y))
    return check_op(spec.op, diff, n_diff=spec.n_diff, extra=extra, dy=dy, name=name, **kw)


@pytest.mark.parametrize("name", sorted(SPECS))
def test_gradient_matches_finite_differences(name: str) -> None:
    # every element, eps 1e-6, rtol 1e-6 and atol 1e-7 (FD_TOLERANCE): central differences carry ~1e-16 * |L| / eps
    # of rounding, 1e-7 absolute for the larger convolutions
    assert FD_TOLERANCE == (1e-6, 1e-7)
    report = _check(name, backends=())
    assert len(report.checked) == SPECS[name].n_diff


@pytest.mark.skipif(
    torch is None, reason="PyTorch not installed: the autograd oracle needs torch==2.13.0 (pip install torch==2.13.0)"
)
@pytest.mark.parametrize("name", sorted(SPECS))
def test_matches_torch_autograd(name: str) -> None:
    assert ORACLE_TOLERANCE == {"forward": (1e-12, 1e-12), "gradient": (1e-10, 1e-12)}
    report = _check(name, oracle=SPECS[name].oracle, finite_differences=False, backends=())
    assert [what for what, _ in report.checked] == ["PyTorch oracle: output and gradients"]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", sorted(SPECS))
def test_parity_with_numpy_float64(case: Any, name: str, dtype: str) -> None:
    if not case.supports(dtype):
        pytest.skip(f"{case.name} on {case.device} has no {dtype}")
    assert TOLERANCES == {dtype: (t["rtol"], t["atol"]) for dtype, t in conftest.TOLERANCES.items()}
    report = _check(name, finite_differences=False, backends=[(case.name, case.device)], dtypes=[dtype])
    assert [what for what, _ in report.checked] == [f"{case.name} {dtype}: output and gradients against NumPy float64"]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_extreme_logits_stay_finite(case: Any, dtype: str) -> None:
    if not case.supports(dtype):
        pytest.skip(f"{case.name} on {case.device} has no {dtype}")
    z = case.asarray([[1e4, -1e4, 0.0], [-1e4, -1e4, 1e4]], dtype)
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # underflow to 0 is the right answer
        loss, back = L.CrossEntropy().forward(z, case.asarray([1, 2], "int64"))
        # the first row's label has logit -1e4 against 1e4: loss 2e4, exactly
        np.testing.assert_allclose(float(loss), 1e4, rtol=1e-6)
        case.assert_close(back(), [[0.5, -0.5, 0.0], [0.0, 0.0, 0.0]], dtype=dtype)
        bce, bback = L.BinaryCrossEntropy(from_logits=True).forward(z, case.asarray([[0, 1, 1], [1, 0, 1]], dtype))
        np.testing.assert_allclose(float(bce), (1e4 + 1e4 + np.log(2) + 1e4) / 6, rtol=1e-6)
        assert np.all(np.isfinite(pn.to_numpy(bback())))
        s, sback = F.sigmoid(z)
        case.assert_close(s, [[1.0, 0.0, 0.5], [0.0, 0.0, 1.0]], dtype=dtype)
        assert np.all(np.isfinite(pn.to_numpy(sback(z))))
        sm, _ = F.softmax(z)
        case.assert_close(sm, [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], dtype=dtype)


def test_float32_stays_float32(case: Any) -> None:
    """No op promotes float32 to float64 (Python scalars, constants and labels included)."""
    x = case.asarray(np.random.default_rng(0).normal(size=(4, 3)), "float32")
    probabilities = case.asarray(np.random.default_rng(1).random((4, 3)), "float32")
    for name in ("relu", "leaky_relu", "sigmoid", "tanh", "softmax"):
        y, vjp = SPECS[name].op(x)
        assert pn._array.dtype_name(y.dtype) == "float32", name
        assert pn._array.dtype_name(vjp(y)[0].dtype) == "float32", name
    for loss, y_pred, target in (
        (L.CrossEntropy(label_smoothing=0.1), x, case.asarray([0, 1, 2, 0], "int64")),
        (L.MSE(), x, x),
        (L.BinaryCrossEntropy(from_logits=True), x, case.asarray(np.ones((4, 3)), "float32")),
        (L.BinaryCrossEntropy(), probabilities, case.asarray(np.ones((4, 3)), "float32")),
    ):
        value, back = loss.forward(y_pred, target)
        assert pn._array.dtype_name(value.dtype) == "float32", repr(loss)
        assert pn._array.dtype_name(back().dtype) == "float32", repr(loss)

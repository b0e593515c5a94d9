"""Property-based tests (hypothesis): random layer stacks and losses keep their invariants.

Every property runs derandomized and without an example database, so CI sees the same
examples on every run. ``PORTNN_PROPERTY_SCALE=10 pytest tests/test_properties.py`` multiplies
the example counts for a deeper (still reproducible) local run.

Shapes are predicted here from PyTorch's formulas, independently of the library's own
``output_shape``, so a wrong formula in one place cannot hide a wrong one in the other.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pytest
from array_api_compat import device as device_of
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import portnn as pn
from portnn import Backend, backends
from portnn.layers import (
    AvgPool2d,
    BatchNorm1d,
    Conv2d,
    Dropout,
    Flatten,
    LeakyReLU,
    Linear,
    MaxPool2d,
    ReLU,
    ShapeError,
    Sigmoid,
    Tanh,
)

_SCALE = max(1, int(os.environ.get("PORTNN_PROPERTY_SCALE", "1")))


def prop_settings(max_examples: int) -> settings:
    """Reproducible settings: derandomized, no database, no deadline (CI machines are slow and shared)."""
    return settings(
        max_examples=max_examples * _SCALE,
        deadline=None,
        derandomize=True,
        database=None,
        # the function-scoped fixtures here only choose the global backend, which no example changes
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
    )


ACTIVATIONS = {"relu": ReLU, "leaky_relu": LeakyReLU, "tanh": Tanh, "sigmoid": Sigmoid}
DTYPES = ("float32", "float64")


@pytest.fixture(autouse=True)
def _numpy_backend() -> Any:
    """New parameters are born on NumPy whatever ``PORTNN_BACKEND`` says; other backends get there by ``model.to``."""
    with pn.use_backend("numpy"):
        yield


def _host(a: Any) -> np.ndarray:
    return np.asarray(backends.to_numpy(a))


def _same_place(a: Any, like: Any) -> None:
    """``a`` is an array of ``like``'s library, on its device, in its dtype."""
    assert backends.adapter_for(a) is backends.adapter_for(like), f"{type(a)} vs {type(like)}"
    assert device_of(a) == device_of(like), f"on {device_of(a)}, expected {device_of(like)}"
    assert a.dtype == like.dtype, f"dtype {a.dtype}, expected {like.dtype}"


def _check_grads(model: pn.Sequential, where: str) -> None:
    """Every trainable parameter got a finite gradient of its own shape, dtype, library and device."""
    for name, p in model.named_parameters():
        if not p.trainable:
            continue
        assert p.grad is not None, f"{where}: {name} got no gradient"
        _same_place(p.grad, p.data)
        assert tuple(p.grad.shape) == p.shape, f"{where}: {name} grad shape {tuple(p.grad.shape)}, expected {p.shape}"
        assert np.isfinite(_host(p.grad)).all(), f"{where}: {name} has a non-finite gradient"


# -- 1. random MLP stacks -----------------------------------------------------------------------


@dataclass
class MLPSpec:
    in_features: int
    widths: list[int]  # output width of each Linear
    activations: list[str]  # after each Linear but the last
    dropout: list[float | None]  # Dropout(p) after each activation, or None
    batchnorm: list[bool]  # BatchNorm1d after each hidden Linear
    dtype: str
    batch: int
    seed: int

    @property
    def has_batchnorm(self) -> bool:
        return any(self.batchnorm)

    def layers(self) -> list[pn.layers.Layer]:
        out: list[pn.layers.Layer] = []
        fan_in = self.in_features
        for i, width in enumerate(self.widths):
            out.append(Linear(fan_in, width, dtype=self.dtype))
            fan_in = width
            if i == len(self.widths) - 1:
                break
            if self.batchnorm[i]:
                out.append(BatchNorm1d(width, dtype=self.dtype))
            out.append(ACTIVATIONS[self.activations[i]]())
            if self.dropout[i] is not None:
                out.append(Dropout(self.dropout[i]))
        return out


@st.composite
def mlp_specs(draw: st.DrawFn, activations: tuple[str, ...] = tuple(ACTIVATIONS), extras: bool = True) -> MLPSpec:
    depth = draw(st.integers(1, 5))
    hidden = depth - 1
    return MLPSpec(
        in_features=draw(st.integers(1, 32)),
        widths=draw(st.lists(st.integers(1, 32), min_size=depth, max_size=depth)),
        activations=draw(st.lists(st.sampled_from(activations), min_size=hidden, max_size=hidden)),
        dropout=draw(
            st.lists(
                st.one_of(st.none(), st.sampled_from([0.0, 0.1, 0.5, 0.9, 1.0])) if extras else st.none(),
                min_size=hidden,
                max_size=hidden,
            )
        ),
        batchnorm=draw(st.lists(st.booleans() if extras else st.just(False), min_size=hidden, max_size=hidden)),
        dtype=draw(st.sampled_from(DTYPES)),
        batch=draw(st.integers(1, 16)),
        seed=draw(st.integers(0, 2**32 - 1)),
    )


def _inputs(data: st.DataObject, shape: tuple[int, ...], dtype: str, bound: float = 10.0) -> np.ndarray:
    """Bounded, finite inputs (hypothesis likes zeros and repeated values: constant BatchNorm columns)."""
    elements = st.floats(-bound, bound, width=32 if dtype == "float32" else 64, allow_nan=False, allow_infinity=False)
    return data.draw(hnp.arrays(np.dtype(dtype), shape, elements=elements), label="x")


def _build_mlp(spec: MLPSpec, where: Backend) -> pn.Sequential:
    """The model of ``spec``, built on NumPy from its seed and moved to ``where`` (array_api_strict: device1)."""
    with pn.use_backend("numpy"):
        model = pn.Sequential(spec.layers(), seed=spec.seed, input_shape=(spec.in_features,))
    return model.to(where.name, where.device)


def _mlp_property(spec: MLPSpec, data: st.DataObject, where: Backend) -> None:
    model = _build_mlp(spec, where)
    batch = spec.batch
    assert model.output_shape == (None, spec.widths[-1])
    x_host = _inputs(data, (batch, spec.in_features), spec.dtype)
    x = where.adapter.from_numpy(x_host.copy(), where.device)
    assert (model.backend.name, model.backend.device) == (where.name, where.device)
    ref = model.parameters()[0].data  # where every array of the pass must live

    training = True
    event(f"depth {len(spec.widths)}, batchnorm {spec.has_batchnorm}, dropout {any(p is not None for p in spec.dropout)}")
    if spec.has_batchnorm and batch == 1:
        event("BatchNorm1d with a batch of 1: refused in training")
        with pytest.raises(ValueError, match="Expected more than 1 value per channel when training"):
            model.forward(x, training=True, input_grad=True)
        training = False  # the rest holds in inference mode, which uses the running statistics

    y, backward = model.forward(x, training=training, input_grad=True)
    _same_place(y, ref)
    expected_shape = (batch, *model.output_shape[1:])
    assert tuple(y.shape) == expected_shape
    assert np.isfinite(_host(y)).all()

    dy_host = np.random.default_rng(spec.seed).uniform(-1, 1, expected_shape).astype(spec.dtype)
    dy = where.adapter.from_numpy(dy_host, where.device)
    dx = backward(dy)
    assert dx is not None
    _same_place(dx, ref)
    assert tuple(dx.shape) == tuple(x.shape)
    assert np.isfinite(_host(dx)).all()
    _check_grads(model, f"{where} {spec}")

    # inference is deterministic (Dropout off, running statistics fixed)
    y1 = _host(model.forward(x)[0])
    y2 = _host(model.forward(x)[0])
    np.testing.assert_array_equal(y1, y2)

    # one seed, one model: the same weights and buffers, and the same first pass (dropout masks included)
    twin, fresh = _build_mlp(spec, where), _build_mlp(spec, where)
    state_a, state_b = twin.state_dict(), fresh.state_dict()
    assert state_a.keys() == state_b.keys()
    for key in state_a:
        np.testing.assert_array_equal(_host(state_a[key]), _host(state_b[key]), err_msg=key)
    # ... and with the input gradient skipped (the default input_grad=False), the same parameter gradients
    y_twin, backward_twin = twin.forward(x, training=training)
    np.testing.assert_array_equal(_host(y_twin), _host(y))
    backward_twin(dy)
    for (name, p), q in zip(model.named_parameters(), twin.parameters()):
        np.testing.assert_array_equal(_host(q.grad), _host(p.grad), err_msg=name)


@given(spec=mlp_specs(), data=st.data())
@prop_settings(100)
def test_mlp_shapes_grads_determinism_numpy(spec: MLPSpec, data: st.DataObject) -> None:
    _mlp_property(spec, data, pn.get_backend())


@pytest.mark.skip_backends("numpy", reason="test_mlp_shapes_grads_determinism_numpy runs more examples")
@given(spec=mlp_specs(), data=st.data())
@prop_settings(25)
def test_mlp_shapes_grads_determinism_other_backends(case: Any, spec: MLPSpec, data: st.DataObject) -> None:
    """The same property with the model moved to each other backend; array_api_strict's device1 raises on any
    array born on another device, which proves that no op of the pass falls back to the default device."""
    assume(case.supports(spec.dtype))
    _mlp_property(spec, data, case.backend)


# -- 2. random conv stacks ------------------------------------------------------------------------


def _int_or_pair(lo: int, hi: int) -> st.SearchStrategy[int | tuple[int, int]]:
    return st.one_of(st.integers(lo, hi), st.tuples(st.integers(lo, hi), st.integers(lo, hi)))


def _as_pair(v: int | tuple[int, int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


@dataclass
class ConvSpec:
    in_shape: tuple[int, int, int]  # (C, H, W)
    convs: list[dict[str, Any]]
    activation: str | None
    pool: tuple[str, Any, Any, Any] | None  # (kind, kernel, stride, padding)
    head: int | None  # Flatten + Linear(…, head)
    dtype: str
    batch: int

    def predicted(self) -> list[tuple[int, ...]]:
        """Shape of one example after each layer, from PyTorch's formulas (may hold sizes < 1)."""
        c, h, w = self.in_shape
        shapes: list[tuple[int, ...]] = []
        for conv in self.convs:
            (kh, kw), (sh, sw) = _as_pair(conv["kernel_size"]), _as_pair(conv["stride"])
            (ph, pw), (dh, dw) = _as_pair(conv["padding"]), _as_pair(conv["dilation"])
            c = conv["out_channels"]
            h = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
            w = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
            shapes.append((c, h, w))
            if self.activation is not None:
                shapes.append((c, h, w))
        if self.pool is not None:
            _, k, s, p = self.pool
            (kh, kw), (ph, pw) = _as_pair(k), _as_pair(p)
            sh, sw = (kh, kw) if s is None else _as_pair(s)
            h, w = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
            shapes.append((c, h, w))
        if self.head is not None:
            shapes += [(c * h * w,), (self.head,)]
        return shapes

    @property
    def fits(self) -> bool:
        return all(d >= 1 for s in self.predicted() for d in s)

    def layers(self) -> list[pn.layers.Layer]:
        out: list[pn.layers.Layer] = []
        channels = self.in_shape[0]
        for conv in self.convs:
            out.append(Conv2d(channels, dtype=self.dtype, **conv))
            channels = conv["out_channels"]
            if self.activation is not None:
                out.append(ACTIVATIONS[self.activation]())
        if self.pool is not None:
            kind, k, s, p = self.pool
            out.append((MaxPool2d if kind == "max" else AvgPool2d)(k, s, p))
        if self.head is not None:
            flat = self.predicted()[-2][0]
            out += [Flatten(), Linear(max(flat, 1), self.head, dtype=self.dtype)]
        return out


@st.composite
def conv_specs(draw: st.DrawFn, *, activations: tuple[str | None, ...] = (None, "relu", "tanh"), pools: bool = True) -> ConvSpec:
    convs = [
        {
            "out_channels": draw(st.integers(1, 4)),
            "kernel_size": draw(_int_or_pair(1, 4)),
            "stride": draw(_int_or_pair(1, 3)),
            "padding": draw(_int_or_pair(0, 2)),
            "dilation": draw(_int_or_pair(1, 2)),
        }
        for _ in range(draw(st.integers(1, 2)))
    ]
    pool = None
    if pools and draw(st.booleans()):
        k = draw(_int_or_pair(1, 3))
        kh, kw = _as_pair(k)
        padding = draw(st.one_of(st.just(0), st.tuples(st.integers(0, kh // 2), st.integers(0, kw // 2))))
        stride = draw(st.one_of(st.none(), _int_or_pair(1, 3)))
        pool = (draw(st.sampled_from(["max", "avg"])), k, stride, padding)
    return ConvSpec(
        in_shape=(draw(st.integers(1, 4)), draw(st.integers(1, 16)), draw(st.integers(1, 16))),
        convs=convs,
        activation=draw(st.sampled_from(activations)),
        pool=pool,
        head=draw(st.one_of(st.none(), st.integers(1, 5))),
        dtype=draw(st.sampled_from(DTYPES)),
        batch=draw(st.integers(1, 3)),
    )


@given(spec=conv_specs(), data=st.data())
@prop_settings(100)
def test_conv_stack_shapes_or_shape_error(spec: ConvSpec, data: st.DataObject) -> None:
    x = _inputs(data, (spec.batch, *spec.in_shape), spec.dtype, bound=5.0)
    event("fits" if spec.fits else "too small: ShapeError")
    if not spec.fits:  # both errors name the layer that does not fit
        with pytest.raises(ShapeError, match=r"layer \d+ \((Conv2d|MaxPool2d|AvgPool2d)\(.*does not fit"):
            pn.Sequential(spec.layers(), input_shape=spec.in_shape)
        with pytest.raises(ShapeError, match=r"^(Conv2d|MaxPool2d|AvgPool2d)\(.*got input of shape"):
            pn.Sequential(spec.layers()).forward(x, training=True, input_grad=True)
        return

    model = pn.Sequential(spec.layers(), input_shape=spec.in_shape)
    predicted = spec.predicted()
    assert model.output_shape == (None, *predicted[-1])
    y, backward = model.forward(x, training=True, input_grad=True)
    assert tuple(y.shape) == (spec.batch, *predicted[-1])
    assert y.dtype == x.dtype and np.isfinite(y).all()
    dx = backward(np.ones(y.shape, dtype=y.dtype))
    assert tuple(dx.shape) == x.shape and dx.dtype == x.dtype and np.isfinite(dx).all()
    _check_grads(model, repr(spec))


@given(spec=conv_specs(), data=st.data())
@prop_settings(80)
def test_single_layer_output_shape_matches_forward(spec: ConvSpec, data: st.DataObject) -> None:
    """Layer by layer: ``output_shape`` of the actual input equals the actual output's shape, or both refuse it."""
    x = _inputs(data, (spec.batch, *spec.in_shape), spec.dtype, bound=5.0)
    for i, layer in enumerate(spec.layers()):
        shape = tuple(x.shape)
        try:
            predicted = layer.output_shape(shape)
        except ShapeError:
            with pytest.raises(ShapeError):
                layer.forward(x, input_grad=True)
            assert not spec.fits, f"layer {i} ({layer!r}) refused {shape} although every size fits"
            return
        assert layer.output_shape((None, *shape[1:])) == (None, *predicted[1:]), f"layer {i} ({layer!r})"
        x = layer.forward(x, input_grad=True)[0]
        assert tuple(x.shape) == predicted, f"layer {i} ({layer!r}) on {shape}: output {tuple(x.shape)}, predicted {predicted}"
        assert tuple(x.shape[1:]) == spec.predicted()[i], f"layer {i} ({layer!r}): formula disagrees"
    assert spec.fits


@st.composite
def pools(draw: st.DrawFn) -> tuple[str, Any, Any, Any]:
    k = draw(_int_or_pair(1, 4))
    kh, kw = _as_pair(k)
    padding = draw(st.one_of(st.just(0), st.tuples(st.integers(0, kh // 2), st.integers(0, kw // 2))))
    stride = draw(st.one_of(st.none(), _int_or_pair(1, 3)))
    return draw(st.sampled_from(["max", "avg"])), k, stride, padding


@given(
    pool=pools(), shape=st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(4, 10), st.integers(4, 10)), data=st.data()
)
@prop_settings(80)
def test_pooling_backward_conserves_gradient_mass(
    pool: tuple[str, Any, Any, Any], shape: tuple[int, ...], data: st.DataObject
) -> None:
    """Max pooling routes each window's gradient to one input element, so sum(dx) == sum(dy).

    Overlapping windows (stride < kernel) and ties (hypothesis draws many equal values) send
    several windows' gradients to one element: a scatter that drops duplicates loses mass.
    Average pooling without padding spreads each window's gradient over its elements, also
    conserving it; with zero padding the share of the padding is lost, so sum(dx) <= sum(dy).
    """
    kind, k, stride, padding = pool
    layer = (MaxPool2d if kind == "max" else AvgPool2d)(k, stride, padding)
    x = data.draw(hnp.arrays(np.float64, shape, elements=st.sampled_from([-1.0, 0.0, 0.5, 2.0])), label="x")
    y, backward = layer.forward(x, input_grad=True)
    dy = np.ones_like(y)
    dx = backward(dy)
    assert dx.shape == x.shape and (dx >= 0).all()
    if kind == "max" or _as_pair(padding) == (0, 0):
        np.testing.assert_allclose(dx.sum(), dy.sum(), rtol=1e-12)
    else:
        assert dx.sum() <= dy.sum() * (1 + 1e-12)
    if kind == "max":  # every gradient lands on an element equal to its window's maximum
        assert set(np.unique(x[dx > 0])) <= set(np.unique(y))


# -- 3. gradients against central differences (float64) -----------------------------------------


def _directional_check(model: pn.Sequential, x: np.ndarray, rng: np.random.Generator, *, training: bool) -> None:
    """<backward, v> equals the derivative of f = <model(x), w> along v (over the input and every parameter).

    The reference is a finite difference in float64; ``w`` and ``v`` are random normal.
    """
    params = model.parameters()
    y, backward = model.forward(x, training=training, input_grad=True)
    w = rng.normal(size=y.shape)
    dx = backward(w)
    vx = rng.normal(size=x.shape)
    vs = [rng.normal(size=p.shape) for p in params]
    terms = [float(np.sum(dx * vx))] + [float(np.sum(p.grad * v)) for p, v in zip(params, vs)]
    analytic = sum(terms)

    base = [p.data for p in params]

    def f(t: float) -> float:
        for p, b, v in zip(params, base, vs):
            p.data = b + t * v
        try:
            return float(np.sum(model.forward(x + t * vx, training=training)[0] * w))
        finally:
            for p, b in zip(params, base):
                p.data = b

    # Richardson-extrapolated central differences, error O(h^4): BatchNorm over 2 examples curves
    # sharply, and the plain O(h^2) difference at h = 1e-6 missed rtol 1e-5 by 3x on a correct
    # backward (widths [4, 23, 9, 1], BatchNorm1d + Tanh after each hidden layer, seed 10).
    h = 1e-6
    numeric = (8 * (f(h) - f(-h)) - (f(2 * h) - f(-2 * h))) / (12 * h)
    scale = sum(abs(t) for t in terms) + 1e-3
    assert abs(analytic - numeric) <= 1e-5 * abs(numeric) + 1e-7 * scale, (
        f"directional derivative {analytic!r} vs central difference {numeric!r} (terms {terms})"
    )


@given(spec=mlp_specs(activations=("tanh", "sigmoid")), data=st.data())
@prop_settings(60)
def test_mlp_directional_derivative_float64(spec: MLPSpec, data: st.DataObject) -> None:
    # no Dropout (random), float64, and batches of 2 or more for BatchNorm1d in training mode
    spec = replace(spec, dtype="float64", dropout=[None] * len(spec.dropout), batch=max(spec.batch, 2))
    model = pn.Sequential(spec.layers(), seed=spec.seed)
    rng = np.random.default_rng(spec.seed)
    x = rng.normal(size=(spec.batch, spec.in_features))
    _directional_check(model, x, rng, training=True)


@given(spec=conv_specs(activations=("tanh",), pools=False), seed=st.integers(0, 2**32 - 1), avg=st.booleans())
@prop_settings(40)
def test_conv_directional_derivative_float64(spec: ConvSpec, seed: int, avg: bool) -> None:
    # average pooling is smooth; max pooling has kinks at ties
    spec = replace(spec, dtype="float64", pool=("avg", 2, 1, 1) if avg else None)
    event("fits" if spec.fits else "too small: skipped")
    if not spec.fits:
        return
    model = pn.Sequential(spec.layers(), seed=seed, input_shape=spec.in_shape)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(spec.batch, *spec.in_shape))
    _directional_check(model, x, rng, training=True)


# -- 4. losses ----------------------------------------------------------------------------------


@st.composite
def logits_and_labels(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, str]:
    dtype = draw(st.sampled_from(DTYPES))
    n, c = draw(st.integers(1, 16)), draw(st.integers(1, 10))
    bound = draw(st.sampled_from([1.0, 30.0, 1e4]))  # documented finite for logits of ±1e4
    elements = st.floats(-bound, bound, width=32 if dtype == "float32" else 64)
    logits = draw(hnp.arrays(np.dtype(dtype), (n, c), elements=elements))
    labels = draw(hnp.arrays(np.int64, (n,), elements=st.integers(0, c - 1)))
    return logits, labels, dtype


@given(
    logits_labels=logits_and_labels(),
    smoothing=st.sampled_from([0.0, 0.1]),
    reduction=st.sampled_from(["mean", "sum"]),
    soft=st.booleans(),
)
@prop_settings(150)
def test_cross_entropy_finite_nonnegative_rows_sum_to_zero(
    logits_labels: tuple[np.ndarray, np.ndarray, str], smoothing: float, reduction: str, soft: bool
) -> None:
    logits, labels, dtype = logits_labels
    n, c = logits.shape
    target: np.ndarray = labels
    if soft:  # probabilities: random positive rows normalised to one
        raw = np.random.default_rng(int(labels.sum()) + n * c).uniform(0.0, 1.0, (n, c)) + 1e-3
        target = (raw / raw.sum(axis=1, keepdims=True)).astype(dtype)
    loss_fn = pn.losses.CrossEntropy(label_smoothing=smoothing, reduction=reduction)
    value, backward = loss_fn.forward(logits, target)
    value = np.asarray(value)
    assert value.shape == () and value.dtype == logits.dtype
    assert np.isfinite(value) and value >= 0, f"loss {value!r}"
    grad = np.asarray(backward())
    assert grad.shape == logits.shape and grad.dtype == logits.dtype and np.isfinite(grad).all()
    per_row = 1.0 / n if reduction == "mean" else 1.0
    tol = (1e-5 if dtype == "float32" else 1e-12) * per_row * c
    np.testing.assert_allclose(grad.sum(axis=1), 0.0, atol=tol)
    assert (np.abs(grad) <= per_row * (1 + 1e-5)).all()  # |p - t| <= 1 per entry


@st.composite
def pairs_of_arrays(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    dtype = draw(st.sampled_from(DTYPES))
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=6))
    elements = st.floats(-1e3, 1e3, width=32 if dtype == "float32" else 64)
    return tuple(draw(hnp.arrays(np.dtype(dtype), shape, elements=elements)) for _ in range(2))


@given(arrays=pairs_of_arrays(), reduction=st.sampled_from(["mean", "sum"]))
@prop_settings(150)
def test_mse_nonnegative_symmetric_and_zero_on_equal_inputs(arrays: tuple[np.ndarray, np.ndarray], reduction: str) -> None:
    a, b = arrays
    mse = pn.losses.MSE(reduction=reduction)
    value = np.asarray(mse(a, b))
    assert value.shape == () and value.dtype == a.dtype
    assert np.isfinite(value) and value >= 0
    assert value == np.asarray(mse(b, a))
    same, backward = mse.forward(a, a.copy())
    assert np.asarray(same) == 0
    grad = np.asarray(backward())
    assert grad.shape == a.shape and grad.dtype == a.dtype and not grad.any()


@given(logits_labels=logits_and_labels(), reduction=st.sampled_from(["mean", "sum"]))
@prop_settings(100)
def test_binary_cross_entropy_finite_nonnegative(logits_labels: tuple[np.ndarray, np.ndarray, str], reduction: str) -> None:
    logits, labels, _ = logits_labels
    target = (labels % 2).astype(logits.dtype)[:, None] * np.ones_like(logits)
    value, backward = pn.losses.BinaryCrossEntropy(from_logits=True, reduction=reduction).forward(logits, target)
    value = np.asarray(value)
    assert value.dtype == logits.dtype and np.isfinite(value) and value >= 0
    grad = np.asarray(backward())
    per_item = 1.0 / logits.size if reduction == "mean" else 1.0
    assert np.isfinite(grad).all() and (np.abs(grad) <= per_item * (1 + 1e-6)).all()

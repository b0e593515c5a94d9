"""Initialisers: shapes, their formulas checked statistically, orthogonality, determinism, backend parity."""

from __future__ import annotations

import math

import numpy as np
import pytest
from array_api_compat import device

import portnn as pn
from portnn import backends
from portnn import init as I

FAN_IN, FAN_OUT = 1024, 256  # unequal, so that the He, Glorot and LeCun formulas differ
SHAPE = (FAN_OUT, FAN_IN)  # Linear's (out_features, in_features) layout; 262,144 draws

# name -> (distribution, std, bound of a uniform)
FORMULAS = {
    "he_normal": ("normal", math.sqrt(2 / FAN_IN), None),
    "he_uniform": ("uniform", math.sqrt(2 / FAN_IN), math.sqrt(6 / FAN_IN)),
    "glorot_normal": ("normal", math.sqrt(2 / (FAN_IN + FAN_OUT)), None),
    "glorot_uniform": ("uniform", math.sqrt(2 / (FAN_IN + FAN_OUT)), math.sqrt(6 / (FAN_IN + FAN_OUT))),
    "lecun_normal": ("normal", math.sqrt(1 / FAN_IN), None),
    "lecun_uniform": ("uniform", math.sqrt(1 / FAN_IN), math.sqrt(3 / FAN_IN)),
    "torch": ("uniform", 1 / math.sqrt(3 * FAN_IN), 1 / math.sqrt(FAN_IN)),
    "normal": ("normal", 0.01, None),
}
FACTORIES = {
    "normal(0.2)": (I.normal(0.2), "normal", 0.2, None),
    "uniform(-0.3, 0.3)": (I.uniform(-0.3, 0.3), "uniform", 0.3 / math.sqrt(3), 0.3),
}


def _draw(init, shape=SHAPE, seed=0):
    return init(backends.host_rng(seed), shape, FAN_IN, FAN_OUT)


@pytest.mark.parametrize(
    "init, kind, std, bound",
    [(I.INITIALIZERS[n], *FORMULAS[n]) for n in FORMULAS] + list(FACTORIES.values()),
    ids=list(FORMULAS) + list(FACTORIES),
)
def test_distribution_matches_formula(init, kind, std, bound) -> None:
    w = _draw(init)
    assert w.shape == SHAPE and w.dtype == np.float64
    assert abs(w.mean()) < 0.02 * std  # the sample mean's std is std / 512
    assert w.std() == pytest.approx(std, rel=0.02)
    inside = np.mean(np.abs(w) < std)  # 0.683 for a normal, 1/sqrt(3) = 0.577 for a uniform
    if kind == "normal":
        assert inside == pytest.approx(0.6827, abs=0.01)
    else:
        assert inside == pytest.approx(1 / math.sqrt(3), abs=0.01)
        assert np.abs(w).max() <= bound and np.abs(w).max() > 0.999 * bound


def test_uniform_with_offset() -> None:
    w = _draw(I.uniform(-0.1, 0.3))
    assert w.min() >= -0.1 and w.max() <= 0.3
    assert w.mean() == pytest.approx(0.1, abs=0.002)
    assert w.std() == pytest.approx(0.4 / math.sqrt(12), rel=0.02)


@pytest.mark.parametrize(
    "init, value", [(I.zeros, 0.0), (I.ones, 1.0), (I.constant(-2.5), -2.5)], ids=["zeros", "ones", "constant"]
)
def test_constants(init, value) -> None:
    w = _draw(init, (3, 4))
    assert w.shape == (3, 4) and w.dtype == np.float64
    np.testing.assert_array_equal(w, np.full((3, 4), value))


def test_new_names_are_registered() -> None:
    assert {"orthogonal", "lecun_uniform", "ones"} <= set(I.INITIALIZERS)
    assert I.get_initializer("ones") is I.ones and I.get_initializer(I.ones) is I.ones


# -- orthogonal ---------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(64, 128), (128, 64), (96, 96), (16, 4, 8)])
@pytest.mark.parametrize("gain", [1.0, 2.0])
def test_orthogonal_rows_or_columns_are_orthonormal(shape, gain) -> None:
    w = _draw(I.orthogonal(gain), shape)
    assert w.shape == shape and w.dtype == np.float64 and w.flags.c_contiguous
    m = w.reshape(shape[0], -1)
    gram = m @ m.T if m.shape[0] <= m.shape[1] else m.T @ m
    np.testing.assert_allclose(gram, gain**2 * np.eye(min(m.shape)), atol=1e-12)


@pytest.mark.parametrize("shape", [(128, 64), (64, 128)])
def test_orthogonal_has_the_sign_correction(shape) -> None:
    # With the Gaussian matrix A it drew (transposed when rows < cols), A = W R with R upper
    # triangular and R's diagonal positive: the unique QR whose Q is Haar distributed.
    a = backends.host_rng(3).standard_normal(shape)
    w = _draw(I.orthogonal(), shape, seed=3)
    if shape[0] < shape[1]:
        a, w = a.T, w.T
    r = w.T @ a
    np.testing.assert_allclose(np.tril(r, -1), 0.0, atol=1e-10)
    assert (np.diag(r) > 0).all()


@pytest.mark.parametrize("shape", [(40, 24), (24, 40), (5, 3, 4)])
def test_orthogonal_matches_torch_on_the_same_gaussian_draw(shape) -> None:
    torch = pytest.importorskip("torch", reason="PyTorch not installed (oracle only)")
    rows, cols = shape[0], math.prod(shape[1:])
    flat = torch.from_numpy(backends.host_rng(5).standard_normal((rows, cols)))
    # torch.nn.init.orthogonal_'s algorithm, applied to our draw instead of torch's generator
    if rows < cols:
        flat = flat.t()
    q, r = torch.linalg.qr(flat)
    q *= torch.diag(r, 0).sign()
    if rows < cols:
        q = q.t()
    np.testing.assert_allclose(_draw(I.orthogonal(1.5), shape, seed=5), 1.5 * q.reshape(shape).numpy(), atol=1e-12)


def test_orthogonal_needs_a_matrix() -> None:
    with pytest.raises(ValueError, match=r"orthogonal: needs a weight of 2 or more dimensions; got shape \(5,\)"):
        _draw(I.orthogonal(), (5,))


# -- determinism, layers, backends --------------------------------------------------------------

ALL = {**I.INITIALIZERS, "constant(0.5)": I.constant(0.5), "uniform(0, 1)": I.uniform(0.0, 1.0), "orthogonal(2)": I.orthogonal(2)}


@pytest.mark.parametrize("name", list(ALL))
def test_same_seed_same_weights(name) -> None:
    init = ALL[name]
    first, again, other = _draw(init, (6, 5), seed=1), _draw(init, (6, 5), seed=1), _draw(init, (6, 5), seed=2)
    assert first.shape == (6, 5) and first.dtype == np.float64
    np.testing.assert_array_equal(first, again)
    if name not in ("zeros", "ones", "constant(0.5)"):
        assert not np.array_equal(first, other)


def test_linear_takes_names_and_callables() -> None:
    with pn.use_backend("numpy"):
        w = pn.to_numpy(pn.layers.Linear(FAN_IN, FAN_OUT, init=I.normal(0.2), seed=0).weight.data)
        assert w.dtype == np.float32 and w.std() == pytest.approx(0.2, rel=0.02)
        w = pn.to_numpy(pn.layers.Linear(48, 32, init="orthogonal", seed=0).weight.data)
        np.testing.assert_allclose(w @ w.T, np.eye(32), atol=1e-5)


def test_unknown_name() -> None:
    with pytest.raises(
        ValueError, match=r"Linear\(3, 2\): unknown init 'orthogonl'; choose one of .*orthogonal.* or pass a callable"
    ):
        pn.layers.Linear(3, 2, init="orthogonl")
    with pytest.raises(ValueError, match=r"unknown init 'he'"):
        I.get_initializer("he")


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: I.normal(-1.0), r"normal: std must be >= 0; got -1\.0"),
        (lambda: I.uniform(1.0, 0.0), r"uniform: low must not exceed high; got low=1\.0, high=0\.0"),
        (lambda: I.constant(float("nan")), r"constant: value must be a finite number; got nan"),
        (lambda: I.orthogonal("big"), r"orthogonal: gain must be a finite number; got 'big'"),
    ],
)
def test_factory_arguments_are_checked(make, match) -> None:
    with pytest.raises(ValueError, match=match):
        make()


def _model():
    return pn.Sequential(
        [
            pn.layers.Linear(20, 16, init="orthogonal"),
            pn.layers.ReLU(),
            pn.layers.Linear(16, 12, init=I.normal(0.2)),
            pn.layers.Tanh(),
            pn.layers.Linear(12, 8, init="lecun_uniform"),
            pn.layers.Linear(8, 6, init=I.uniform(-0.1, 0.3)),
            pn.layers.Linear(6, 4, init="glorot_normal"),
            pn.layers.Linear(4, 3, init="ones", bias=False),
        ],
        seed=0,
    )


def test_seeded_model_is_the_same_on_every_backend(case) -> None:
    with pn.use_backend("numpy"):
        reference = {name: pn.to_numpy(p.data) for name, p in _model().named_parameters()}
    params = dict(_model().named_parameters())
    assert list(params) == list(reference)
    for name, p in params.items():
        assert case.backend.adapter.owns(p.data) and device(p.data) == case.device, name
        host = pn.to_numpy(p.data)
        assert host.dtype == np.float32, name
        np.testing.assert_array_equal(host, reference[name], err_msg=name)
    w = reference[next(iter(reference))]  # the orthogonal (16, 20): orthonormal rows
    np.testing.assert_allclose(w @ w.T, np.eye(16), atol=1e-5)
    np.testing.assert_array_equal(reference[list(reference)[-1]], np.ones((3, 4), np.float32))

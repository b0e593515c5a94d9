"""pn.datasets.toy: shapes, dtypes, balance, scaling and seeding of every set; bad arguments; learnability."""

from __future__ import annotations

import numpy as np
import pytest

import portnn as pn
from portnn.datasets import toy

CLASSES = {"bullseye3": 3, "sinusoids3": 3}
NAMES = list(toy.DATASETS)


@pytest.mark.parametrize("name", NAMES)
def test_shapes_dtypes_and_balanced_labels(name: str) -> None:
    x, y = toy.load(name, n_per_class=37)
    k = CLASSES.get(name, 2)
    assert isinstance(x, np.ndarray) and isinstance(y, np.ndarray)
    assert x.dtype == np.float32 and x.shape == (37 * k, 2)
    assert y.dtype == np.int64 and y.shape == (37 * k,)
    np.testing.assert_array_equal(np.bincount(y), [37] * k)


@pytest.mark.parametrize("name", NAMES)
def test_centred_and_scaled_into_the_unit_square(name: str) -> None:
    x, _ = toy.load(name)
    assert np.isfinite(x).all()
    assert np.abs(x).max() <= 1.0
    np.testing.assert_array_equal(np.abs(x).max(axis=0), [1.0, 1.0])  # each axis reaches +1 or -1
    np.testing.assert_allclose(x.mean(axis=0), 0.0, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_seeded(name: str) -> None:
    a, b, c = toy.load(name, seed=3), toy.load(name, seed=3), toy.load(name, seed=4)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_default_seed_is_zero_and_noise_changes_the_points() -> None:
    np.testing.assert_array_equal(toy.moons()[0], toy.moons(seed=0)[0])
    assert not np.array_equal(toy.moons(noise=0.0)[0], toy.moons(noise=0.2)[0])


@pytest.mark.parametrize("k", [2, 3, 5])
def test_spirals_take_any_number_of_arms(k: int) -> None:
    x, y = toy.spirals(20, n_classes=k)
    assert x.shape == (20 * k, 2)
    np.testing.assert_array_equal(np.bincount(y), [20] * k)


def test_sine() -> None:
    x, y = toy.sine(300, noise=0.0, seed=1)
    assert x.shape == y.shape == (300, 1) and x.dtype == y.dtype == np.float32
    assert -1.0 <= x.min() and x.max() <= 1.0
    np.testing.assert_allclose(y, np.sin(np.pi * x.astype(np.float64)), atol=1e-6)
    xn, yn = toy.sine(300, noise=0.1, seed=1)
    np.testing.assert_array_equal(xn, x)  # noise only touches y
    assert 0.05 < np.std(yn - y) < 0.15
    assert not np.array_equal(toy.sine(seed=1)[0], toy.sine(seed=2)[0])


def test_parity_bits() -> None:
    x, y = toy.parity_bits(4)
    assert x.shape == (16, 4) and x.dtype == np.float32 and y.dtype == np.int64
    powers = 2 ** np.arange(3, -1, -1)
    np.testing.assert_array_equal(x @ powers, np.arange(16))  # row i is i in binary, MSB first
    np.testing.assert_array_equal(y, np.arange(16) % 2)
    _, ones = toy.parity_bits(4, rule="xor")
    np.testing.assert_array_equal(ones, x.sum(axis=1).astype(np.int64) % 2)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: toy.moons(0), "moons: n_per_class"),
        (lambda: toy.moons(-5), "moons: n_per_class"),
        (lambda: toy.two_gaussians(10.0), "two_gaussians: n_per_class"),
        (lambda: toy.spirals(True), "spirals: n_per_class"),
        (lambda: toy.ball_and_cup(noise=-0.1), "ball_and_cup: noise"),
        (lambda: toy.shifted_cubics(noise=float("nan")), "shifted_cubics: noise"),
        (lambda: toy.bullseye(n_classes=4), "bullseye: n_classes must be 2 or 3"),
        (lambda: toy.shifted_sinusoids(n_classes=1), "shifted_sinusoids: n_classes"),
        (lambda: toy.spirals(n_classes=1), "spirals: n_classes"),
        (lambda: toy.sine(0), "sine: n must"),
        (lambda: toy.sine(noise=-1), "sine: noise"),
        (lambda: toy.parity_bits(0), "parity_bits: n_bits"),
        (lambda: toy.parity_bits(toy.MAX_BITS + 1), "parity_bits: n_bits"),
        (lambda: toy.parity_bits(3, rule="even"), "parity_bits: rule"),
        (lambda: toy.load("bullseye3", n_classes=2), "bullseye3 has 3 classes"),
    ],
)
def test_bad_arguments(call, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()


def test_unknown_name_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="load: unknown toy dataset 'swiss_roll'") as info:
        toy.load("swiss_roll")
    for name in NAMES:
        assert name in str(info.value)


def test_reachable_from_the_package() -> None:
    assert pn.datasets.toy is toy and "toy" in pn.datasets.__all__


def test_an_mlp_learns_the_moons() -> None:
    x, y = toy.moons()
    model = pn.Sequential([pn.layers.Linear(2, 32), pn.layers.ReLU(), pn.layers.Linear(32, 2)], seed=0)
    model.fit(x, y, loss=pn.losses.CrossEntropy(), optimizer=pn.optim.Adam(lr=0.01), epochs=40, verbose=0)
    assert model.evaluate(x, y)["accuracy"] > 0.95

"""RandomTranslation and the translate op: per-image shifts by one gather, on every backend."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import portnn as pn
from portnn.functional import translate
from portnn.layers import RandomTranslation, ShapeError


def shifted(x: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Reference: one image stack moved down by dy and right by dx with zero fill."""
    out = np.zeros_like(x)
    h, w = x.shape[-2:]
    out[..., max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = x[
        ..., max(-dy, 0) : h - max(dy, 0), max(-dx, 0) : w - max(dx, 0)
    ]
    return out


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_translate_matches_a_reference_and_its_backward_is_the_adjoint(case: Any, dtype: str) -> None:
    r = np.random.default_rng(0)
    x = r.normal(size=(5, 2, 6, 7))
    sy, sx = np.array([0, 1, -2, 3, -6]), np.array([0, -1, 2, 0, 7])
    y, backward = translate(case.asarray(x, dtype), case.asarray(sy, "int64"), case.asarray(sx, "int64"))
    expected = np.stack([shifted(x[i], sy[i], sx[i]) for i in range(5)])
    case.assert_close(y, expected, dtype=dtype)
    g = r.normal(size=x.shape)
    dx = backward(case.asarray(g, dtype))
    # <translate(x), g> == <x, translate^T(g)>
    np.testing.assert_allclose(np.sum(expected * g), np.sum(x * pn.to_numpy(dx)), rtol=1e-5)
    case.assert_close(dx, np.stack([shifted(g[i], -sy[i], -sx[i]) for i in range(5)]), dtype=dtype)


def test_random_translation_trains_but_predicts_unchanged(case: Any) -> None:
    layer = RandomTranslation(2, seed=0)
    x = case.asarray(np.random.default_rng(1).random((64, 1, 8, 8)), "float32")
    assert layer(x) is x  # evaluation: the identity
    y, backward = layer.forward(x, training=True)
    case.assert_close(y, pn.to_numpy(y), dtype="float32")  # on x's device, in x's dtype
    host_x, host_y = pn.to_numpy(x), pn.to_numpy(y)
    seen = set()
    for i in range(64):  # every image is some shift of its input by at most 2 pixels
        match = [(a, b) for a in range(-2, 3) for b in range(-2, 3) if np.array_equal(shifted(host_x[i], a, b), host_y[i])]
        assert match, f"image {i} is not a shift of at most 2 pixels"
        seen.add(match[0])
    assert len(seen) > 10  # shifts vary per image
    again = RandomTranslation(2, seed=0).forward(x, training=True)[0]
    assert np.array_equal(pn.to_numpy(again), host_y)  # same seed, same shifts


def test_random_translation_errors() -> None:
    with pytest.raises(ValueError, match="max_shift must be an int >= 0; got -1"):
        RandomTranslation(-1)
    with pytest.raises(
        ShapeError, match=r"RandomTranslation\(max_shift=2\) got input of shape \(4, 784\): expected \(batch, C, H, W\)"
    ):
        RandomTranslation(2).forward(np.ones((4, 784), dtype=np.float32), training=True)

"""What fit skips per step and per pass, and the checks that must still hold: check_input remembers accepted inputs.

The cache keys on everything the checks read (the input's type, shape, dtype and device, the
spec, the reference parameter's type, dtype and device); assigning any attribute of the layer
forgets it. Each test first gets an input accepted (so it is cached), then changes one fact and
expects the same error as an uncached layer gives.
"""

from __future__ import annotations

import array_api_strict
import numpy as np
import pytest

import portnn as pn
from portnn.layers import InputSpec, ShapeError


def _accepted(layer: pn.layers.Layer, x: object) -> None:
    layer.check_input(x)
    layer.check_input(x)  # the second call takes the remembered path
    assert layer.__dict__.get("_accepted_inputs"), "the accepted input was not remembered"


def test_remembered_input_still_passes_and_other_shapes_refused() -> None:
    pn.set_backend("numpy")
    layer = pn.layers.Linear(4, 3, seed=0)
    _accepted(layer, np.zeros((5, 4), np.float32))
    with pytest.raises(ShapeError, match="Linear"):
        layer.check_input(np.zeros((5, 6), np.float32))
    with pytest.raises(ShapeError):  # a refusal is never remembered: refused again
        layer.check_input(np.zeros((5, 6), np.float32))
    layer.check_input(np.zeros((7, 4), np.float32))  # another batch size fits


def test_changed_dtype_of_input_refused() -> None:
    pn.set_backend("numpy")
    layer = pn.layers.Linear(4, 3, seed=0)
    _accepted(layer, np.zeros((5, 4), np.float32))
    with pytest.raises(TypeError, match="dtype float64"):
        layer.check_input(np.zeros((5, 4), np.float64))


def test_model_cast_to_other_dtype_refuses_old_inputs() -> None:
    pn.set_backend("numpy")
    layer = pn.layers.Linear(4, 3, seed=0)
    x = np.zeros((5, 4), np.float32)
    _accepted(layer, x)
    for p in layer.parameters():  # the parameters cast in place of the layer's own attributes
        p.data = p.data.astype(np.float64)
    with pytest.raises(TypeError, match="parameters are float64"):
        layer.check_input(x)


def test_moved_model_refuses_input_left_behind() -> None:
    pn.set_backend("numpy")
    layer = pn.layers.Linear(4, 3, seed=0)
    x = np.zeros((5, 4), np.float32)
    _accepted(layer, x)
    torch = pytest.importorskip("torch", reason="moving the layer to the torch backend needs PyTorch")
    layer.to("torch")
    with pytest.raises(TypeError, match="different libraries"):
        layer.check_input(x)
    _accepted(layer, torch.zeros((5, 4)))
    layer.to("numpy")
    with pytest.raises(TypeError, match="different libraries"):
        layer.check_input(torch.zeros((5, 4)))


def test_other_device_refused_after_acceptance() -> None:
    pn.set_backend("array_api_strict", device="device1")
    try:
        layer = pn.layers.Linear(4, 3, seed=0)
        x = array_api_strict.zeros((5, 4), dtype=array_api_strict.float32, device=array_api_strict.Device("device1"))
        _accepted(layer, x)
        other = array_api_strict.zeros((5, 4), dtype=array_api_strict.float32)  # the default device
        with pytest.raises(ValueError, match="device"):
            layer.check_input(other)
    finally:
        pn.set_backend("numpy")


def test_assigned_attribute_forgets_what_was_accepted() -> None:
    pn.set_backend("numpy")
    layer = pn.layers.Linear(4, 3, seed=0)
    x = np.zeros((5, 4), np.float32)
    _accepted(layer, x)
    layer.input_spec = InputSpec(("batch", 6))  # a changed contract: x no longer fits
    assert "_accepted_inputs" not in layer.__dict__
    with pytest.raises(ShapeError):
        layer.check_input(x)


def test_not_an_array_refused_every_time() -> None:
    pn.set_backend("numpy")
    layer = pn.layers.ReLU()
    _accepted(layer, np.zeros((2, 3), np.float32))
    for _ in range(2):
        with pytest.raises(TypeError):
            layer.check_input([[0.0, 1.0]])


def test_fit_then_wrong_input_refused() -> None:
    """The remembered inputs of fit's batches do not let a wrong input through afterwards."""
    pn.set_backend("numpy")
    model = pn.Sequential([pn.layers.Linear(4, 3), pn.layers.ReLU(), pn.layers.Linear(3, 2)], seed=0)
    x, y = np.random.default_rng(0).normal(size=(32, 4)).astype(np.float32), np.arange(32) % 2
    model.fit(x, y, loss=pn.losses.CrossEntropy(), optimizer=pn.optim.SGD(lr=0.1), batch_size=8, verbose=0)
    with pytest.raises(TypeError, match="dtype float64"):
        model.forward(x.astype(np.float64))
    with pytest.raises(ShapeError):
        model.layers[0].forward(np.zeros((8, 5), np.float32))


def test_leaf_trainable_follows_its_parameters() -> None:
    """``trainable``'s leaf path (no nested layers) reads the parameters as the walk does."""
    pn.set_backend("numpy")
    layer = pn.layers.Linear(4, 3, seed=0)
    assert layer.trainable
    layer.weight.trainable = False
    assert layer.trainable  # the bias still trains
    layer.bias.trainable = False
    assert not layer.trainable
    assert not pn.layers.ReLU().trainable


@pytest.mark.filterwarnings("ignore:overflow encountered")
@pytest.mark.parametrize("shape", [(7,), (5, 6), (3, 4, 5)])
def test_count_nonfinite_counts_exactly(shape: tuple[int, ...]) -> None:
    """The sum over the first axis first: NaN, inf and finite values whose sum overflows are all settled right."""
    from array_api_compat import array_namespace

    from portnn._inputs import count_nonfinite

    a = np.ones(shape, np.float32)
    xp = array_namespace(a)
    assert count_nonfinite(xp, a) == 0
    big = np.full(shape, 3e38, np.float32)  # every value finite, the sum overflows to inf
    assert count_nonfinite(xp, big) == 0
    a.reshape(-1)[[0, -1]] = [np.nan, -np.inf]
    assert count_nonfinite(xp, a) == 2
    big.reshape(-1)[1] = np.inf
    assert count_nonfinite(xp, big) == 1
    torch = pytest.importorskip("torch", reason="the torch half of this check needs PyTorch (the NumPy half ran)")
    t = torch.ones(shape)
    t.reshape(-1)[0] = float("nan")
    assert count_nonfinite(array_namespace(t), t) == 1

"""Bad input gets a clear error that names the layer or function, what it received and the fix."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest

import portnn as pn
from portnn.layers import (
    AvgPool2d,
    BatchNorm1d,
    BatchNorm2d,
    Conv2d,
    Flatten,
    GlobalAvgPool2d,
    InputSpec,
    Layer,
    Linear,
    MaxPool2d,
    RandomTranslation,
    ReLU,
    ShapeError,
    Softmax,
    format_shape,
)

CE = pn.losses.CrossEntropy


def net() -> pn.Sequential:
    return pn.Sequential([Linear(4, 8), ReLU(), Linear(8, 3)], seed=0)


def fit(model: pn.Sequential, x: Any, y: Any, **kw: Any) -> Any:
    kw.setdefault("loss", CE())
    kw.setdefault("optimizer", pn.optim.SGD(lr=0.1))
    return model.fit(x, y, verbose=0, **kw)


X = np.random.default_rng(0).normal(size=(10, 4))
Y = np.arange(10) % 3


def test_linear_wrong_feature_count(case: Any) -> None:
    layer = Linear(784, 256)
    with pytest.raises(ShapeError, match=r"Linear\(784, 256\) got input of shape \(32, 100\): expected \(batch, 784\)"):
        layer(case.asarray(np.ones((32, 100)), "float32"))
    with pytest.raises(ShapeError, match=r"got input of shape \(2, 28, 28\).*add pn.layers.Flatten\(\)"):
        layer(case.asarray(np.ones((2, 28, 28)), "float32"))
    with pytest.raises(ShapeError, match=r"a single example\? use x.reshape\(1, -1\)"):
        layer(case.asarray(np.ones(784), "float32"))


def test_linear_wrong_dtype(case: Any) -> None:
    layer = Linear(3, 2)
    with pytest.raises(TypeError, match=r"Linear\(3, 2\) got input of dtype float64 but its parameters are float32"):
        layer(case.asarray(np.ones((1, 3)), "float64"))
    with pytest.raises(TypeError, match="got input of dtype int64"):
        layer(case.asarray(np.ones((1, 3)), "int64"))


def test_two_libraries_in_one_call() -> None:
    torch = pytest.importorskip("torch", reason="needs torch==2.13.0 to mix libraries")
    layer = Linear(3, 2)  # numpy parameters
    with pytest.raises(TypeError, match=r"Linear\(3, 2\): got arrays from different libraries.*torch"):
        layer(torch.ones((1, 3)))
    # a model takes a torch CPU tensor in place through DLPack (tests/test_dlpack.py); a tensor on another device it refuses
    with pytest.raises(
        TypeError,
        match=r"Sequential.fit: x is a torch array on meta but the model's parameters live on numpy:cpu.*"
        r"model.to\('torch', device='meta'\)",
    ):
        fit(net(), torch.ones((10, 4), device="meta"), Y)


def test_two_strict_devices_in_one_call() -> None:
    import array_api_strict as xs

    with pn.use_backend("array_api_strict", "device1"):
        layer = Linear(3, 2)
        model = net()
    x_other = xs.ones((1, 3), device=xs.Device("device2"))
    with pytest.raises(
        ValueError, match=r"Linear\(3, 2\) got input on device .*device2.* but its parameters are on .*device1.*model.to"
    ):
        layer(x_other)
    with pytest.raises(
        TypeError, match=r"x is a array_api_strict array on device2 but the model's parameters live on array_api_strict:device1"
    ):
        fit(model, xs.ones((10, 4), device=xs.Device("device2")), Y)
    # host data is moved onto the model's device
    fit(model, X, Y)


def test_labels_out_of_range(case: Any) -> None:
    with pytest.raises(
        ValueError,
        match=r"CrossEntropy\(\): labels must be class indices in 0..2 for a model with 3 outputs; got values from 0 to 3",
    ):
        fit(net(), X, np.arange(10) % 4)
    with pytest.raises(ValueError, match="got values from -1 to 2"):
        fit(net(), X, np.where(Y == 0, -1, Y))
    logits = case.asarray(np.zeros((2, 3)), "float32")
    with pytest.raises(ValueError, match="labels must be class indices in 0..2"):
        CE()(logits, case.asarray([0, 5], "int64"))


def test_label_encoding_mistakes(case: Any) -> None:
    with pytest.raises(
        ValueError,
        match=r"float targets are probabilities of shape \(batch, 3\); got \(10,\) \(class indices\? pass them as integers",
    ):
        fit(net(), X, Y.astype(np.float64))
    with pytest.raises(ValueError, match=r"integer labels must have shape \(batch,\); got \(10, 3\) \(one-hot labels\?"):
        fit(net(), X, np.eye(3, dtype=np.int64)[Y])
    fit(net(), X, np.eye(3)[Y])  # one-hot as float probabilities is fine
    with pytest.raises(ValueError, match=r"x has 10 examples but y has shape \(9,\)"):
        fit(net(), X, Y[:9])


def test_nan_and_inf_inputs_are_refused(case: Any) -> None:
    bad = X.copy()
    bad[3, 1] = np.nan
    bad[5, 0] = np.inf
    with pytest.raises(ValueError, match="Sequential.fit: x holds 2 NaN or infinite values"):
        fit(net(), bad, Y)
    with pytest.raises(ValueError, match="Sequential.predict: x holds 2 NaN"):
        net().predict(bad)
    with pytest.raises(ValueError, match="Sequential.fit: y holds 10 NaN or infinite values"):
        pn.Sequential([Linear(4, 1)]).fit(
            X, np.full((10, 1), np.nan), loss=pn.losses.MSE(), optimizer=pn.optim.SGD(lr=0.1), verbose=0
        )


def test_wrong_input_shape_in_fit_names_the_layer() -> None:
    with pytest.raises(ShapeError, match=r"x has shape \(10, 5\).*layer 0 \(Linear\(4, 8\)\).*expects input of shape \(batch, 4"):
        fit(net(), np.ones((10, 5)), Y)
    with pytest.raises(ShapeError, match=r"examples of shape \(27, 28\); the model takes \(28, 28\)"):
        pn.Sequential([Flatten(), Linear(784, 3)], input_shape=(28, 28)).predict(np.ones((2, 27, 28)))


def test_bad_fit_arguments() -> None:
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1; got 0"):
        fit(net(), X, Y, batch_size=0)
    with pytest.raises(ValueError, match="epochs must be an integer >= 0; got -1"):
        fit(net(), X, Y, epochs=-1)
    with pytest.raises(ValueError, match=r"x is empty \(shape \(0, 4\)\)"):
        fit(net(), np.ones((0, 4)), np.ones(0, dtype=int))
    with pytest.raises(TypeError, match=r"fit needs a loss such as pn.losses.CrossEntropy\(\)"):
        net().fit(X, Y, optimizer=pn.optim.SGD(lr=0.1), verbose=0)
    with pytest.raises(TypeError, match="fit needs an optimizer"):
        net().fit(X, Y, loss=CE(), verbose=0)
    with pytest.raises(TypeError, match="ragged or not numeric"):
        fit(net(), [[1, 2, 3, 4], [1, 2]], [0, 1])
    with pytest.raises(TypeError, match="validation_data must be a pair"):
        fit(net(), X, Y, validation_data=X)


def test_softmax_before_cross_entropy_is_refused() -> None:
    model = pn.Sequential([Linear(4, 3), Softmax()])
    with pytest.raises(ValueError, match="CrossEntropy takes logits, but the model ends with Softmax"):
        fit(model, X, Y)


def test_bad_hyperparameters() -> None:
    with pytest.raises(ValueError, match="SGD: lr must be a positive number; got -0.1"):
        pn.optim.SGD(lr=-0.1)
    with pytest.raises(ValueError, match="nesterov=True needs momentum > 0"):
        pn.optim.SGD(lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="Linear: in_features must be a positive int; got 0"):
        Linear(0, 3)
    with pytest.raises(ValueError, match="unknown init 'hee'"):
        Linear(3, 3, init="hee")
    with pytest.raises(ValueError, match="float32 or float64; got dtype='float16'"):
        Linear(3, 3, dtype="float16")
    with pytest.raises(ValueError, match="label_smoothing must be in"):
        CE(label_smoothing=1.5)
    with pytest.raises(RuntimeError, match="SGD has no parameters"):
        pn.optim.SGD(lr=0.1).step()


def test_diverging_training_stops_with_a_clear_error() -> None:
    with pytest.raises(FloatingPointError, match=r"training loss became (nan|inf) in epoch 1.*learning rate \(1e\+30\)"):
        with np.errstate(all="ignore"):
            fit(net(), X * 1e3, Y, optimizer=pn.optim.SGD(lr=1e30), batch_size=2)


# -- the declared input contract: one check for real inputs and shape walks ---------------------

#: (layer, a shape it refuses, what both errors must say besides the layer and the shape).
REFUSED = [
    (lambda: Linear(784, 256), (32, 100), [r"expect(ed|s input of shape) \(batch, 784\)"]),
    (lambda: Linear(784, 256), (2, 28, 28), [r"\(batch, 784\)", r"\(add pn.layers.Flatten\(\) before it\)"]),
    (lambda: Linear(4, 3), (4,), [r"\(batch, 4\)", r"\(a single example\? use x.reshape\(1, -1\)\)"]),
    (lambda: Conv2d(1, 8, 3), (32, 784), [r"\(batch, 1, H, W\)", r"flat images\? use x.reshape\(-1, 1, 28, 28\)"]),
    (lambda: Conv2d(1, 8, 3), (2, 28, 28), [r"\(batch, 1, H, W\)", r"grey images without a channel axis\?"]),
    (lambda: Conv2d(3, 4, 3), (2, 5, 5, 3), [r"\(batch, 3, H, W\)", r"channels last\? .*transpose\(0, 3, 1, 2\)"]),
    (
        lambda: Conv2d(1, 2, 3, dilation=2),
        (1, 1, 4, 9),
        [r"padded size \(H, W\) = \(4, 9\) is smaller than the kernel \(3, 3\) \(dilated to \(5, 5\)\)"],
    ),
    (lambda: MaxPool2d(2), (32, 784), [r"\(batch, C, H, W\)"]),
    (lambda: AvgPool2d(2), (3, 4, 4), [r"\(batch, C, H, W\)", r"a single image\? use x.reshape\(1, \*x.shape\)"]),
    (lambda: MaxPool2d(3), (1, 1, 2, 5), [r"the 3x3 window does not fit in the padded input \(2x5\); use a smaller kernel_size"]),
    (lambda: GlobalAvgPool2d(), (8, 16), [r"\(batch, C, H, W\)"]),
    (lambda: GlobalAvgPool2d(), (8, 16, 0, 3), [r"H and W must be at least 1"]),
    (lambda: BatchNorm1d(4), (8, 5), [r"\(batch, 4\) or \(batch, 4, length\)"]),
    (lambda: BatchNorm1d(4), (4,), [r"\(batch, 4\) or \(batch, 4, length\)", r"a single example\?"]),
    (lambda: BatchNorm2d(4), (4, 5, 5), [r"\(batch, 4, H, W\)", r"a single image\? use x.reshape\(1, \*x.shape\)"]),
    (lambda: Flatten(), (3,), [r"needs more than 1 dimensions \(batch first\)"]),
    (lambda: RandomTranslation(2), (4, 784), [r"\(batch, C, H, W\)"]),
]


@pytest.mark.parametrize(("make", "shape", "patterns"), REFUSED, ids=[f"{m()!r}-{s}" for m, s, _ in REFUSED])
def test_a_shape_walk_and_a_real_input_are_refused_alike(
    case: Any, make: Any, shape: tuple[int, ...], patterns: list[str]
) -> None:
    """The layer's input spec is checked in one place: forward and output_shape give the same facts and advice."""
    layer = make()
    with pytest.raises(ShapeError) as real:
        layer.forward(case.asarray(np.ones(shape), "float32"), training=True)
    with pytest.raises(ShapeError) as walk:
        layer.output_shape(shape)
    for message in (str(real.value), str(walk.value)):
        assert message.startswith(f"{layer!r} "), message
        assert format_shape(shape) in message, message
        missing = [p for p in patterns if not re.search(p, message)]
        assert not missing, f"{message!r} lacks {missing}"
    assert f"got input of shape {format_shape(shape)}: " in str(real.value)


def test_format_shape() -> None:
    assert format_shape((None, 784)) == "(batch, 784)"
    assert format_shape((32, 1, 28, 28)) == "(32, 1, 28, 28)"
    assert format_shape((None, 8, None, 7)) == "(batch, 8, ?, 7)"
    assert format_shape((4,)) == "(4,)" and format_shape((None,)) == "(batch,)"
    assert format_shape(()) == "()" and format_shape(None) == "?"
    assert format_shape((np.int64(3), 2)) == "(3, 2)"


def test_input_spec_fits_and_words_its_shapes() -> None:
    spec = InputSpec(("batch", 4), ("batch", 4, "length"))
    assert spec.fits((2, 4)) and spec.fits((None, 4, 9)) and spec.fits((None, None))
    assert not spec.fits((2, 5)) and not spec.fits((2,)) and not spec.fits((2, 4, 1, 1))
    assert spec.expected() == "(batch, 4) or (batch, 4, length)" and InputSpec(("batch",)).expected() == "(batch,)"
    assert InputSpec().fits(()) and InputSpec(min_ndim=2).fits((1, 2, 3)) and not InputSpec(min_ndim=2).fits((1,))
    assert InputSpec(min_ndim=3).expected() == "more than 2 dimensions (batch first)"
    assert spec == InputSpec(("batch", 4), ("batch", 4, "length")) and spec != InputSpec(("batch", 4))
    assert repr(InputSpec(("batch", 3), dtype="integral")) == "InputSpec(('batch', 3), dtype='integral')"


class _Scale(Layer):
    """A layer of the user's: it declares its input and writes only its math."""

    input_spec = InputSpec(("batch", 3))

    def __init__(self, data: Any) -> None:
        super().__init__()
        self.weight = self.add_parameter("weight", data)

    def call(self, x: Any, *, training: bool = False, input_grad: bool = True) -> tuple[Any, Any]:
        w = self.weight.data
        return x * w, lambda dy: dy * w

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return input_shape


class _Pick(Layer):
    """A layer that takes integer indices (as an embedding does)."""

    input_spec = InputSpec(("batch",), dtype="integral")

    def call(self, x: Any, *, training: bool = False, input_grad: bool = True) -> tuple[Any, Any]:
        return x, lambda dy: None


def test_a_new_layer_gets_every_check_from_its_spec(case: Any) -> None:
    layer = _Scale(case.asarray(np.arange(3.0), "float32"))
    y = layer(case.asarray(np.ones((2, 3)), "float32"))
    case.assert_close(y, np.tile(np.arange(3.0), (2, 1)), dtype="float32")
    assert layer.output_shape((None, 3)) == (None, 3)
    with pytest.raises(ShapeError, match=r"^_Scale\(\) got input of shape \(2, 4\): expected \(batch, 3\)$"):
        layer(case.asarray(np.ones((2, 4)), "float32"))
    with pytest.raises(ShapeError, match=r"^_Scale\(\) expects input of shape \(batch, 3\); got \(batch, 4\)$"):
        layer.output_shape((None, 4))
    with pytest.raises(TypeError, match=r"_Scale\(\) got input of dtype int64 but its parameters are float32"):
        layer(case.asarray(np.ones((2, 3)), "int64"))
    with pytest.raises(TypeError, match=r"_Scale\(\): got a list, not an array"):
        layer([[1.0, 2.0, 3.0]])

    pick = _Pick()
    assert pick(case.asarray(np.arange(4), "int64")).shape == (4,)
    with pytest.raises(TypeError, match=r"_Pick\(\) got input of dtype float32: expected an integer dtype \(indices\)"):
        pick(case.asarray(np.arange(4), "float32"))
    with pytest.raises(ShapeError, match=r"_Pick\(\) got input of shape \(2, 2\): expected \(batch,\)"):
        pick(case.asarray(np.ones((2, 2)), "int64"))


def test_a_layer_without_parameters_or_buffers_takes_only_floats(case: Any) -> None:
    """BatchNorm with neither affine parameters nor running statistics used to skip every dtype check."""
    layer = BatchNorm1d(4, affine=False, track_running_stats=False)
    with pytest.raises(TypeError, match=r"BatchNorm1d\(4, affine=False, track_running_stats=False\) got input of dtype int64"):
        layer.forward(case.asarray(np.ones((8, 4)), "int64"), training=True)
    y, _ = layer.forward(case.asarray(np.arange(8.0).reshape(2, 4), "float32"), training=True)
    case.assert_close(y, np.array([[-2.0] * 4, [2.0] * 4]) / np.sqrt(4 + 1e-5), dtype="float32")

"""Bad input gets a clear error that names the layer or function, what it received and the fix."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import portnn as pn
from portnn.layers import Flatten, Linear, ReLU, ShapeError, Softmax

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
    with pytest.raises(
        TypeError,
        match=r"Sequential.fit: x is a torch array on cpu but the model's parameters live on numpy:cpu.*model.to\('torch'\)",
    ):
        fit(net(), torch.ones((10, 4)), Y)


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

"""fit(record=True): gradient norms and unit activity; frozen layers do no gradient work."""

from __future__ import annotations

import numpy as np
import pytest

import portnn as pn

X = np.random.default_rng(1).normal(size=(96, 5)).astype(np.float32)
Y = np.arange(96) % 3


def mlp(case=None) -> pn.Sequential:
    model = pn.Sequential(
        [pn.layers.Linear(5, 8), pn.layers.ReLU(), pn.layers.Linear(8, 8), pn.layers.Sigmoid(), pn.layers.Linear(8, 3)], seed=0
    )
    return model if case is None else model.to(case.name, case.device)


def test_records_hold_what_the_docstring_says(case):
    history = mlp(case).fit(
        X, Y, loss=pn.losses.CrossEntropy(), optimizer=pn.optim.SGD(lr=0.1), epochs=3, batch_size=32, verbose=0,
        record=True, record_every=2,
    )  # fmt: skip
    records = history.records
    assert records["step"] == [0, 2, 4, 6, 8]  # 3 steps an epoch, 9 in all
    assert set(records["grad_norm"]) == {"linear", "linear_1", "linear_2"}
    for norms in records["grad_norm"].values():
        assert len(norms) == 5 and all(isinstance(v, float) and v > 0 for v in norms)
    assert set(records["active_fraction"]) == {"relu", "sigmoid"}
    for per_epoch in records["active_fraction"].values():
        assert len(per_epoch) == 3
        for fraction in per_epoch:
            assert isinstance(fraction, np.ndarray) and fraction.shape == (8,)
            assert np.all((fraction >= 0) & (fraction <= 1))


def test_grad_norm_and_active_fraction_equal_a_hand_computation():
    model = mlp()
    reference = mlp()
    history = model.fit(
        X, Y, loss=pn.losses.CrossEntropy(), optimizer=pn.optim.SGD(lr=0.1), epochs=1, batch_size=96, shuffle=False,
        verbose=0, record=True,
    )  # fmt: skip
    # one full batch: redo the step by hand on the reference
    out, backward = reference.forward(X, training=True)
    _, loss_backward = pn.losses.CrossEntropy().forward(out, Y)
    backward(loss_backward())
    for i, name in ((0, "linear"), (2, "linear_1"), (4, "linear_2")):
        layer = reference.layers[i]
        expected = np.sqrt(sum(np.sum(pn.to_numpy(p.grad).astype(np.float64) ** 2) for p in layer.parameters()))
        np.testing.assert_allclose(history.records["grad_norm"][name][0], expected, rtol=1e-5)
    hidden = reference.layers[1](reference.layers[0](X))
    np.testing.assert_array_equal(history.records["active_fraction"]["relu"][0], np.mean(hidden > 0, axis=0))


def test_records_are_empty_without_record():
    history = mlp().fit(X, Y, loss=pn.losses.CrossEntropy(), optimizer=pn.optim.SGD(lr=0.1), verbose=0)
    assert history.records == {}


def test_record_every_must_be_positive():
    with pytest.raises(ValueError, match="record_every"):
        mlp().fit(X, Y, loss=pn.losses.CrossEntropy(), optimizer=pn.optim.SGD(lr=0.1), record=True, record_every=0, verbose=0)


def test_vanishing_gradients_show_in_a_deep_sigmoid_net():
    layers = []
    for _ in range(8):
        layers += [pn.layers.Linear(16, 16, init="xavier_uniform"), pn.layers.Sigmoid()]
    model = pn.Sequential([pn.layers.Linear(5, 16), pn.layers.Sigmoid(), *layers, pn.layers.Linear(16, 3)], seed=0)
    history = model.fit(X, Y, loss=pn.losses.CrossEntropy(), optimizer=pn.optim.SGD(lr=0.1), verbose=0, record=True)
    norms = history.records["grad_norm"]
    assert norms["linear"][0] < norms["linear_9"][0] / 100  # the first layer learns 100x slower than the last


class CountingBackward(pn.layers.Layer):
    """Passes x through and counts how often its backward runs."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, x, *, training=False, input_grad=True):
        def backward(dy):
            self.calls += 1
            return dy

        return x, backward


def test_frozen_prefix_is_not_back_propagated(case):
    counter = CountingBackward()
    model = pn.Sequential([pn.layers.Linear(5, 8), counter, pn.layers.ReLU(), pn.layers.Linear(8, 3)], seed=0).to(
        case.name, case.device
    )
    model.layers[0].trainable = False
    frozen = pn.to_numpy(model.layers[0].weight.data).copy()
    model.fit(X, Y, loss=pn.losses.CrossEntropy(), optimizer=pn.optim.Adam(lr=0.01), epochs=2, batch_size=32, verbose=0)
    assert counter.calls == 0
    assert model.layers[0].weight.grad is None
    np.testing.assert_array_equal(pn.to_numpy(model.layers[0].weight.data), frozen)
    model.layers[0].trainable = True
    model.fit(X, Y, epochs=1, batch_size=32, verbose=0)
    assert counter.calls == 3


def test_a_frozen_layer_after_a_trainable_one_passes_gradients_but_computes_none_for_itself(monkeypatch):
    asked = []
    linear = pn.functional.linear

    def spy(*args, **kwargs):
        asked.append(kwargs.get("param_grad", True))
        return linear(*args, **kwargs)

    monkeypatch.setattr(pn.layers.dense.F, "linear", spy)
    model = mlp()
    model.layers[2].trainable = False
    frozen = pn.to_numpy(model.layers[2].weight.data).copy()
    first = pn.to_numpy(model.layers[0].weight.data).copy()
    model.fit(X, Y, loss=pn.losses.CrossEntropy(), optimizer=pn.optim.SGD(lr=0.1), epochs=1, verbose=0)
    np.testing.assert_array_equal(pn.to_numpy(model.layers[2].weight.data), frozen)
    assert model.layers[2].weight.grad is None
    assert not np.array_equal(pn.to_numpy(model.layers[0].weight.data), first)
    assert asked[:3] == [True, False, True]  # layers 0, 2, 4 of the first step: no weight gradient for the frozen one


def test_records_and_their_plots_with_a_frozen_layer():
    pytest.importorskip("matplotlib")
    model = mlp().freeze("linear")
    history = model.fit(X, Y, loss=pn.losses.CrossEntropy(), optimizer=pn.optim.SGD(lr=0.1), epochs=2, verbose=0, record=True)
    assert set(history.records["grad_norm"]) == {"linear_1", "linear_2"}  # frozen layers have no gradient to record
    assert pn.plot.grad_norms(history) is not None
    assert pn.plot.activation_stats(history) is not None


def test_input_grad_still_reaches_the_input_through_frozen_layers():
    model = mlp()
    for layer in model.layers:
        layer.trainable = False
    _, backward = model.forward(X, input_grad=True)
    dx = backward(np.ones((96, 3), np.float32))
    assert dx.shape == X.shape and np.any(dx != 0)
    _, backward = model.forward(X, input_grad=False)
    assert backward(np.ones((96, 3), np.float32)) is None


@pytest.mark.parametrize("training", [True, False])
def test_param_grad_false_skips_the_parameter_gradients_and_keeps_dx(training):
    rng = np.random.default_rng(3)
    w, b = rng.normal(size=(4, 3, 3, 3)), rng.normal(size=4)
    for n in (17, 4):  # NumPy's batch-last fast path, then the generic path
        x, dy = rng.normal(size=(n, 3, 9, 9)), rng.normal(size=(n, 4, 9, 9))
        full = pn.functional.conv2d(x, w, b, padding=1)[1](dy)
        frozen = pn.functional.conv2d(x, w, b, padding=1, param_grad=False)[1](dy)
        assert frozen[1] is None and frozen[2] is None
        np.testing.assert_array_equal(frozen[0], full[0])
    xb, gamma, beta, dyb = rng.normal(size=(8, 5)), rng.normal(size=5), rng.normal(size=5), rng.normal(size=(8, 5))
    stats = {} if training else {"mean": rng.normal(size=5), "var": rng.uniform(0.5, 2, size=5)}
    full = pn.functional.batch_norm(xb, gamma, beta, training=training, **stats)[1](dyb)
    frozen = pn.functional.batch_norm(xb, gamma, beta, training=training, param_grad=False, **stats)[1](dyb)
    assert frozen[1] is None and frozen[2] is None
    np.testing.assert_array_equal(frozen[0], full[0])


def test_frozen_conv_and_batchnorm_after_a_trainable_layer_compute_no_parameter_gradient(monkeypatch):
    asked = []
    for module, name in ((pn.layers.conv, "conv2d"), (pn.layers.normalization.F, "batch_norm")):
        original = getattr(module, name)

        def spy(*args, _original=original, _name=name, **kwargs):
            asked.append((_name, kwargs.get("param_grad", True)))
            return _original(*args, **kwargs)

        monkeypatch.setattr(module, name, spy)
    model = pn.Sequential(
        [pn.layers.Conv2d(1, 2, 3), pn.layers.ReLU(), pn.layers.Conv2d(2, 2, 3), pn.layers.BatchNorm2d(2), pn.layers.Flatten(),
         pn.layers.Linear(2 * 4 * 4, 3)], seed=0,
    )  # fmt: skip
    model.freeze("conv2d_1", "batchnorm2d")
    frozen = {k: pn.to_numpy(v).copy() for k, v in model.state_dict().items() if k[0] in "23"}
    x = np.random.default_rng(4).normal(size=(8, 1, 8, 8)).astype(np.float32)
    model.fit(x, np.arange(8) % 3, loss=pn.losses.CrossEntropy(), optimizer=pn.optim.SGD(lr=0.1), epochs=1, verbose=0)
    assert asked[:3] == [("conv2d", True), ("conv2d", False), ("batch_norm", False)]
    for k, v in frozen.items():
        np.testing.assert_array_equal(pn.to_numpy(model.state_dict()[k]), v, err_msg=k)

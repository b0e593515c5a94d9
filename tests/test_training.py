"""The training loop as its own part (portnn.training): any model trains with it; Keras's habits where names promise them."""

from __future__ import annotations

import copy
import pickle
from typing import Any

import numpy as np
import pytest
from array_api_compat import array_namespace

import portnn as pn
from portnn.layers import Linear, ReLU
from portnn.training import Evaluation, LocalStrategy, Trainer


def _data(n: int = 96) -> tuple[np.ndarray, np.ndarray]:
    r = np.random.default_rng(0)
    x = r.normal(size=(n, 4))
    return x, (x[:, 0] + x[:, 1] > 0).astype(np.int64) + (x[:, 2] > 1)


class TwoLayers(Trainer):
    """Linear -> ReLU -> Linear written by hand, without Sequential: the loop needs only parameters and a forward."""

    def __init__(self, first: Linear, second: Linear) -> None:
        self.first, self.relu, self.second = first, ReLU(), second

    def parameters(self) -> list[Any]:
        return [*self.first.parameters(), *self.second.parameters()]

    def named_parameters(self) -> Any:
        yield from self.first.named_parameters("first.")
        yield from self.second.named_parameters("second.")

    def forward(self, x: Any, *, training: bool = False, input_grad: bool = False) -> tuple[Any, Any]:
        h, back1 = self.first.forward(x, training=training, input_grad=input_grad)
        a, back_relu = self.relu.forward(h, training=training)
        y, back2 = self.second.forward(a, training=training)
        return y, lambda dy: back1(back_relu(back2(dy)))


def test_a_model_that_is_not_sequential_trains_bit_identically_to_the_same_stack(case: Any) -> None:
    x, y = _data()
    reference = pn.Sequential([Linear(4, 8), ReLU(), Linear(8, 3)], seed=1)
    first, second = Linear(4, 8), Linear(8, 3)
    for mine, theirs in zip([first, second], [reference.layers[0], reference.layers[2]]):
        for p, q in zip(mine.parameters(), theirs.parameters()):
            p.data = case.backend.adapter.from_numpy(pn.to_numpy(q.data).copy(), case.backend.device)
    custom = TwoLayers(first, second)
    custom._rng = np.random.default_rng(5)
    reference._rng = np.random.default_rng(5)
    kwargs: dict[str, Any] = {"loss": pn.losses.CrossEntropy(), "epochs": 3, "batch_size": 16, "verbose": 0}
    h_ref = reference.fit(x, y, optimizer=pn.optim.Adam(lr=0.01), **kwargs)
    h_custom = custom.fit(x, y, optimizer=pn.optim.Adam(lr=0.01), **kwargs)
    assert h_custom["loss"] == h_ref["loss"] and h_custom["accuracy"] == h_ref["accuracy"]
    assert h_custom["loss"][-1] < h_custom["loss"][0]
    for p, q in zip(custom.parameters(), reference.parameters()):
        assert np.array_equal(pn.to_numpy(p.data), pn.to_numpy(q.data))
    assert custom.backend == reference.backend and custom.dtype == reference.dtype
    out = custom.predict(x, to_numpy=True)
    assert np.array_equal(out, reference.predict(x, to_numpy=True))


def test_evaluate_unpacks_as_in_keras_and_reads_by_name(case: Any) -> None:
    x, y = _data()
    model = pn.Sequential([Linear(4, 3)], seed=0).compile(loss=pn.losses.CrossEntropy(), optimizer=pn.optim.SGD(lr=0.1))
    result = model.evaluate(x, y)
    assert isinstance(result, Evaluation)
    loss, accuracy = result  # Keras: the loss, then the metrics; before, this bound the strings 'loss', 'accuracy'
    assert isinstance(loss, float) and isinstance(accuracy, float)
    assert (loss, accuracy) == (result["loss"], result["accuracy"])
    assert result.keys() == ("loss", "accuracy") and dict(result) == {"loss": loss, "accuracy": accuracy}
    assert result.items() == [("loss", loss), ("accuracy", accuracy)] and result.get("nope", 3) == 3
    assert model.evaluate(x, y, return_dict=True) == {"loss": loss, "accuracy": accuracy}
    assert repr(result).startswith("Evaluation(loss=")
    with pytest.raises(KeyError, match=r"evaluate's result has \['loss', 'accuracy'\]; got 'acc'"):
        result["acc"]
    assert "accuracy" in result and "acc" not in result and loss not in result  # names, as a dict
    for again in (pickle.loads(pickle.dumps(result)), copy.copy(result), copy.deepcopy(result)):
        assert again == result and again.keys() == result.keys() and isinstance(again, Evaluation)
    with pytest.raises(TypeError, match=r"float\(\) of evaluate's result needs one value; it has \['loss', 'accuracy'\]"):
        float(result)
    regression = pn.Sequential([Linear(4, 1)], seed=0)
    only = regression.evaluate(x, x[:, :1], loss=pn.losses.MSE())
    (value,) = only
    assert value == only["loss"] == float(only) and f"{only:.3f}" == f"{value:.3f}"


def test_predict_returns_the_backend_array_or_a_host_copy_in_one_call(case: Any) -> None:
    x, _ = _data(10)
    model = pn.Sequential([Linear(4, 3)], seed=0)
    on_device = model.predict(x, batch_size=4)
    assert case.backend.adapter.owns(on_device)
    host = model.predict(x, batch_size=4, to_numpy=True)
    assert isinstance(host, np.ndarray) and host.dtype == np.float32
    assert np.array_equal(host, pn.to_numpy(on_device))


class Hooks(pn.callbacks.Callback):
    """Counts every Keras 3 hook it is given."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}

    def __getattribute__(self, name: str) -> Any:
        if name.startswith("on_") and name not in ("on_batch_begin", "on_batch_end", "on_nonfinite_loss"):
            calls = object.__getattribute__(self, "calls")

            def hook(*args: Any) -> None:
                calls[name] = calls.get(name, 0) + 1

            return hook
        return object.__getattribute__(self, name)


def test_keras_3_hooks_are_called_by_fit_evaluate_and_predict() -> None:
    x, y = _data(40)
    model = pn.Sequential([Linear(4, 3)], seed=0)
    fit_hooks = Hooks()
    model.fit(
        x, y, loss=pn.losses.CrossEntropy(), optimizer=pn.optim.SGD(lr=0.1), epochs=2, batch_size=10,
        validation_data=(x[:25], y[:25]), callbacks=[fit_hooks], verbose=0,
    )  # fmt: skip
    # validation of 25 examples in batches of max(10, 256): one test batch per epoch
    assert fit_hooks.calls == {
        "on_train_begin": 1, "on_train_end": 1, "on_epoch_begin": 2, "on_epoch_end": 2,
        "on_train_batch_begin": 8, "on_train_batch_end": 8,
        "on_test_begin": 2, "on_test_end": 2, "on_test_batch_begin": 2, "on_test_batch_end": 2,
    }  # fmt: skip
    eval_hooks, predict_hooks = Hooks(), Hooks()
    model.evaluate(x, y, batch_size=16, callbacks=[eval_hooks])
    assert eval_hooks.calls == {"on_test_begin": 1, "on_test_end": 1, "on_test_batch_begin": 3, "on_test_batch_end": 3}
    model.predict(x, batch_size=16, callbacks=[predict_hooks])
    assert predict_hooks.calls == {
        "on_predict_begin": 1, "on_predict_end": 1, "on_predict_batch_begin": 3, "on_predict_batch_end": 3,
    }  # fmt: skip


def test_the_old_batch_hook_names_still_work_beside_keras_3s() -> None:
    x, y = _data(40)
    seen: list[str] = []

    class Old(pn.callbacks.Callback):
        def on_batch_end(self, batch: int, logs: dict[str, Any]) -> None:
            seen.append("old")

    class New(pn.callbacks.Callback):
        def on_train_batch_end(self, batch: int, logs: dict[str, Any]) -> None:
            seen.append("new")

    model = pn.Sequential([Linear(4, 3)], seed=0)
    model.fit(
        x, y, loss=pn.losses.CrossEntropy(), optimizer=pn.optim.SGD(lr=0.1), batch_size=20, callbacks=[Old(), New()], verbose=0
    )
    assert seen == ["old", "new", "old", "new"]


def test_the_local_strategy_is_the_identity_of_every_collective() -> None:
    s = LocalStrategy()
    assert (s.size, s.rank, s.is_root) == (1, 0, True)
    assert s.shard(3, 9) == (3, 9)
    assert s.reduce_step(2.5, 7, False) == (2.5, 7, False)
    assert s.agree(True) is True and s.agree(False) is False
    assert s.sum_arrays([1, None]) == [1, None]
    assert s.evaluate(lambda X, Y: {"loss": X + Y}, 1, 2, pn.losses.MSE()) == {"loss": 3}


def test_train_step_outside_fit_reduces_nothing() -> None:
    x, y = _data(8)
    model = pn.Sequential([Linear(4, 3)], seed=0)
    opt = pn.optim.SGD(model.parameters(), lr=0.1)
    value, y_pred = model.train_step(model._ingest_x(x, "train_step"), np.asarray(y), pn.losses.CrossEntropy(), opt)
    assert float(value) > 0 and tuple(y_pred.shape) == (8, 3)
    assert isinstance(model._strategy, LocalStrategy)


class Lookup(pn.layers.Layer):
    """A user's embedding written as a layer would be: integer indices in, rows of a table out (one-hot product)."""

    input_spec = pn.layers.InputSpec(("batch",), dtype="integral")

    def __init__(self, num: int, dim: int) -> None:
        super().__init__()
        self.num, self.dim = num, dim
        table = np.random.default_rng(0).normal(size=(num, dim)).astype(np.float32)
        backend = pn.get_backend()
        self.table = self.add_parameter("table", backend.adapter.from_numpy(table, backend.device))

    def compute_output_shape(self, input_shape: Any) -> Any:
        return (input_shape[0], self.dim)

    def call(self, x: Any, *, training: bool = False, input_grad: bool = True) -> tuple[Any, Any]:
        hot = pn.functional.losses.one_hot(x, self.num, self.table.data.dtype)
        xp = array_namespace(hot)

        def backward(dy: Any) -> None:
            self.table.accumulate(xp.matmul(xp.permute_dims(hot, (1, 0)), dy))  # repeated indices add up

        return xp.matmul(hot, self.table.data), backward


def test_a_first_layer_that_takes_integer_indices_gets_them_from_fit_and_predict(case: Any) -> None:
    x = np.array([0, 1, 2, 3, 0, 1, 2, 3] * 4)
    y = (x % 2).astype(np.int64)
    model = pn.Sequential([Lookup(4, 2)], seed=0)
    history = model.fit(x, y, loss=pn.losses.CrossEntropy(), optimizer=pn.optim.SGD(lr=0.5), epochs=20, batch_size=8, verbose=0)
    assert history["accuracy"][-1] == 1.0
    assert model.predict(x[:3], to_numpy=True).shape == (3, 2)
    with pytest.raises(TypeError, match=r"x has dtype float64, but the first layer \(Lookup\(\)\) takes integer indices"):
        model.predict(x.astype(np.float64))

"""The training loop as its own part (portnn.training): any model trains with it; Keras's habits where names promise them."""

from __future__ import annotations

import copy
import os
import pickle
import re
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
    # the diagnostics (and so the plots and reports) bring data to the model as predict does
    assert pn.diagnostics.classification(model, x, y).accuracy == 1.0


# -- every argument checked before the first step ------------------------------------------
class CountBatches(pn.callbacks.Callback):
    def __init__(self) -> None:
        self.batches = 0

    def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
        self.batches += 1


def _unwritable_places(tmp_path: Any) -> list[tuple[Any, str]]:
    notes = tmp_path / "notes.txt"
    notes.write_text("a file")
    places = [(notes, "is a file, not a folder"), (notes / "run", "is a file, not a folder")]
    if os.path.isdir("/proc/self"):  # Linux: no file can be created in /proc, even by root
        places.append(("/proc/portnn-run", "no file can be created in /proc"))
    return places


def test_a_checkpoint_path_that_cannot_be_written_is_refused_before_the_first_step(tmp_path: Any) -> None:
    x, y = _data()
    for place, message in _unwritable_places(tmp_path):
        model = pn.Sequential([Linear(4, 8), ReLU(), Linear(8, 3)], seed=0)
        before = {k: pn.to_numpy(v).copy() for k, v in model.state_dict().items()}
        counter = CountBatches()
        expected = f"Sequential.fit: checkpoint='{re.escape(str(place))}' cannot be written: .*{message}"
        with pytest.raises(ValueError, match=expected):
            model.fit(x, y, loss=pn.losses.CrossEntropy(), optimizer=pn.optim.SGD(lr=0.1), epochs=2, verbose=0,
                      callbacks=[counter], checkpoint=place)  # fmt: skip
        assert counter.batches == 0, place
        for name, value in model.state_dict().items():
            np.testing.assert_array_equal(pn.to_numpy(value), before[name], err_msg=name)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]  # the check created nothing


def _batchnorm_without_running_stats() -> pn.Sequential:
    layers = [Linear(4, 8), pn.layers.BatchNorm1d(8, track_running_stats=False), ReLU(), Linear(8, 3)]
    return pn.Sequential(layers, seed=0)


def test_batchnorm_without_running_statistics_evaluates_any_number_of_examples(case: Any) -> None:
    """Inference normalises with the batch's own statistics: a last batch of one example joins the one before it."""
    x, y = _data(257)
    model = _batchnorm_without_running_stats().to(case.name, case.device)
    history = model.fit(x, y, loss=pn.losses.CrossEntropy(), optimizer=pn.optim.SGD(lr=0.1), epochs=2, batch_size=30,
                        validation_data=(x, y), verbose=0)  # fmt: skip
    assert len(history.history["val_loss"]) == 2  # a validation batch of 256 and one of 1 before
    out = model.predict(x)
    assert tuple(out.shape) == (257, 3)
    np.testing.assert_array_equal(pn.to_numpy(out), pn.to_numpy(model.predict(x, batch_size=257)))  # one batch of 257
    assert model.evaluate(x, y, batch_size=256)["loss"] == model.evaluate(x, y, batch_size=257)["loss"]
    # a model whose examples do not interact gives the same values, however the batches fall
    plain = pn.Sequential([Linear(4, 8), ReLU(), Linear(8, 3)], seed=0).to(case.name, case.device)
    np.testing.assert_array_equal(pn.to_numpy(plain.predict(x, batch_size=128)), pn.to_numpy(plain.predict(x, batch_size=300)))


def test_validation_of_one_example_that_the_model_cannot_run_is_refused_before_the_first_step() -> None:
    x, y = _data()
    counter = CountBatches()
    expected = "Sequential.fit validation_data: x holds a single example, on which the model cannot run"
    with pytest.raises(ValueError, match=expected):
        _batchnorm_without_running_stats().fit(x, y, loss=pn.losses.CrossEntropy(), optimizer=pn.optim.SGD(lr=0.1),
                                               validation_data=(x[:1], y[:1]), callbacks=[counter], verbose=0)  # fmt: skip
    assert counter.batches == 0


def test_torch_input_that_requires_grad_builds_no_graph() -> None:
    """Data handed to fit/evaluate/predict/train_step is detached: no step extends an autograd graph through the weights."""
    torch = pytest.importorskip("torch", reason="the PyTorch backend needs torch")
    x, y = _data()
    model = pn.Sequential([Linear(4, 8), ReLU(), Linear(8, 3)], seed=0).to("torch")
    xt = torch.tensor(x, dtype=torch.float32, requires_grad=True)
    model.fit(xt, torch.tensor(y), loss=pn.losses.CrossEntropy(), optimizer=pn.optim.Adam(lr=0.01), epochs=3, batch_size=8,
              validation_data=(xt, torch.tensor(y)), l2=1e-3, verbose=0)  # fmt: skip
    optimizer = model._optimizer
    model.train_step(xt[:8], torch.tensor(y[:8]), model._loss, optimizer)
    held = [(f"{name}.data", p.data) for name, p in model.named_parameters()]
    held += [(f"{name}.grad", p.grad) for name, p in model.named_parameters() if p.grad is not None]
    held += [(f"state {k}", v) for s in optimizer.state.values() for k, v in s.items() if hasattr(v, "requires_grad")]
    held += [("predict", model.predict(xt))]
    attached = [name for name, t in held if t.requires_grad or t.grad_fn is not None]
    assert attached == []
    assert xt.grad is None  # nothing back-propagated into the caller's tensor
    assert model.evaluate(xt, torch.tensor(y))["loss"] > 0


# -- compile: Keras's names, checked at the call -------------------------------------------
@pytest.mark.parametrize(
    ("loss", "optimizer", "classes"),
    [
        ("sparse_categorical_crossentropy", "sgd", (pn.losses.CrossEntropy, pn.optim.SGD)),
        ("categorical_crossentropy", "Adam", (pn.losses.CrossEntropy, pn.optim.Adam)),
        ("mse", "rmsprop", (pn.losses.MSE, pn.optim.RMSprop)),
        ("mean_squared_error", "adagrad", (pn.losses.MSE, pn.optim.AdaGrad)),
        ("binary_crossentropy", "adamw", (pn.losses.BinaryCrossEntropy, pn.optim.AdamW)),
    ],
)
def test_compile_takes_keras_names(loss: str, optimizer: str, classes: tuple[type, type]) -> None:
    x, y = _data()
    outputs = {pn.losses.CrossEntropy: 3, pn.losses.MSE: 1, pn.losses.BinaryCrossEntropy: 1}[classes[0]]
    layers = [Linear(4, 8), ReLU(), Linear(8, outputs)] + ([pn.layers.Sigmoid()] if outputs == 1 and "binary" in loss else [])
    target = y if outputs == 3 else (y[:, None] > 0).astype(np.float64)
    model = pn.Sequential(layers, seed=0).compile(loss=loss, optimizer=optimizer)
    assert type(model._loss) is classes[0] and type(model._optimizer) is classes[1]
    history = model.fit(x, target, epochs=2, verbose=0)  # no "call compile()": it was
    assert len(history.epoch) == 2 and model.evaluate(x, target)["loss"] > 0
    assert model.fit(x, target, loss=loss, optimizer=optimizer, verbose=0).epoch == [0]  # fit takes the names too


def test_compile_checks_what_it_is_given() -> None:
    model = pn.Sequential([Linear(4, 3)], seed=0)
    with pytest.raises(ValueError, match=r"Sequential.compile: unknown optimizer 'sgdd'; Keras's names portnn takes are 'sgd'"):
        model.compile(loss="mse", optimizer="sgdd")
    with pytest.raises(TypeError, match=r"Sequential.compile needs an optimizer .* \(a class\? build it: SGD\(\)\)"):
        model.compile(loss=pn.losses.MSE(), optimizer=pn.optim.SGD)
    with pytest.raises(ValueError, match="unknown loss 'hinge'"):
        model.compile(loss="hinge", optimizer="sgd")
    with pytest.raises(ValueError, match=r"BinaryCrossEntropy\(\) takes probabilities .* ends with Linear\(4, 3\)"):
        model.compile(loss="binary_crossentropy", optimizer="sgd")
    with pytest.raises(ValueError, match=r"metrics \['auc'\] are not computed during fit.*pn.metrics"):
        model.compile(loss="mse", optimizer="sgd", metrics=["accuracy", "auc"])
    with pytest.raises(ValueError, match=r"metrics=\['accuracy'\] needs a classification loss; MSE\(\)"):
        model.compile(loss="mse", optimizer="sgd", metrics=["accuracy"])
    assert model._loss is None and model._optimizer is None  # a refused compile keeps nothing
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])  # Keras's line, as written
    assert "accuracy" in model.evaluate(*_data()).keys()


def test_numpy_scalars_are_numbers_and_bools_are_not() -> None:
    x, y = _data()
    model = pn.Sequential([Linear(4, 8), ReLU(), Linear(8, 3)], seed=0)
    history = model.fit(
        x, y, loss=pn.losses.CrossEntropy(), optimizer=pn.optim.SGD(lr=0.1), epochs=np.int64(2), batch_size=np.int32(16),
        l2=np.float32(1e-3), seed=np.int64(3), shuffle=np.bool_(True), drop_last=np.False_, record=np.True_,
        record_every=np.uint8(2), verbose=0,
    )  # fmt: skip
    assert history.epoch == [0, 1] and history.records["step"] == [0, 2, 4, 6, 8, 10]
    assert pn.to_numpy(model.predict(x, batch_size=np.int64(10), to_numpy=np.True_)).shape == (96, 3)
    assert isinstance(model.evaluate(x, y, batch_size=np.int16(7), return_dict=np.True_), dict)
    for bad in ({"l2": True}, {"epochs": np.bool_(True)}, {"shuffle": 1}, {"seed": True}, {"record": "yes"}):
        with pytest.raises((TypeError, ValueError), match=r"Sequential.fit(/train_step)?: "):
            model.fit(x, y, verbose=0, **bad)

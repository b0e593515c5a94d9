"""Callbacks in fit: Keras 3's hooks, EarlyStopping, ModelCheckpoint and CSVLogger as Keras has them, is_root, the L2 penalty.

The learning-rate schedules and Backtracking are tested in tests/test_schedules.py.
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import portnn as pn
from portnn.callbacks import HOOKS, Callback, CallbackList, CSVLogger, EarlyStopping, LambdaCallback, ModelCheckpoint
from portnn.layers import Linear, Tanh

CE = pn.losses.CrossEntropy


def quadrants(n: int = 200, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    x = np.random.default_rng(seed).normal(size=(n, 2))
    return x, (x[:, 0] * x[:, 1] > 0).astype(np.int64)


def net(seed: int = 0) -> pn.Sequential:
    return pn.Sequential([Linear(2, 16), Tanh(), Linear(16, 2)], seed=seed)


class Recorder(Callback):
    def __init__(self) -> None:
        self.calls: list[str] = []

    def on_train_begin(self, logs: dict[str, Any]) -> None:
        self.calls.append("train_begin")

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any]) -> None:
        self.calls.append(f"epoch_begin {epoch}")

    def on_batch_end(self, batch: int, logs: dict[str, Any]) -> None:
        assert set(logs) == {"loss", "size"} and math.isfinite(logs["loss"])
        self.calls.append(f"batch {batch}")

    def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> None:
        assert {"loss", "accuracy", "lr"} <= set(logs)
        self.calls.append(f"epoch_end {epoch}")

    def on_train_end(self, logs: dict[str, Any]) -> None:
        self.calls.append("train_end")


def test_hooks_are_called_in_order() -> None:
    x, y = quadrants(20)
    rec = Recorder()
    net().fit(x, y, loss=CE(), optimizer=pn.optim.SGD(lr=0.1), epochs=2, batch_size=10, callbacks=[rec], verbose=0)
    assert rec.calls == [
        "train_begin", "epoch_begin 0", "batch 0", "batch 1", "epoch_end 0",
        "epoch_begin 1", "batch 0", "batch 1", "epoch_end 1", "train_end",
    ]  # fmt: skip


def test_a_callback_can_stop_training() -> None:
    x, y = quadrants(40)
    stopper = LambdaCallback(on_batch_end=lambda batch, logs: setattr(stopper.model, "stop_training", batch == 1))
    history = net().fit(x, y, loss=CE(), optimizer=pn.optim.SGD(lr=0.1), epochs=5, batch_size=10, callbacks=[stopper], verbose=0)
    assert len(history["loss"]) == 1
    with pytest.raises(TypeError, match="unknown hooks"):
        LambdaCallback(on_epoch_ending=print)
    with pytest.raises(TypeError, match="Callback instances"):
        net().fit(x, y, loss=CE(), optimizer=pn.optim.SGD(lr=0.1), callbacks=[print], verbose=0)


def test_early_stopping_restores_the_best_weights() -> None:
    x, y = quadrants()
    xv, yv = quadrants(100, seed=1)
    stop = EarlyStopping("val_loss", patience=2, restore_best_weights=True)
    model = net()
    # lr 3: the validation loss wanders, so early stopping has something to do
    history = model.fit(
        x,
        y,
        loss=CE(),
        optimizer=pn.optim.SGD(lr=3.0),
        epochs=60,
        batch_size=10,
        validation_data=(xv, yv),
        callbacks=[stop],
        verbose=0,
    )
    assert stop.stopped_epoch is not None and len(history["loss"]) == stop.stopped_epoch + 1 < 60
    best = min(history["val_loss"])
    assert history["val_loss"][stop.best_epoch] == best
    assert model.evaluate(xv, yv)["loss"] == pytest.approx(best, rel=1e-5)
    with pytest.raises(KeyError, match="'val_loss' is not in the logs.*pass validation_data"):
        net().fit(x, y, loss=CE(), optimizer=pn.optim.SGD(lr=0.1), callbacks=[EarlyStopping()], verbose=0)


def test_model_checkpoint_saves_the_best_epoch(tmp_path: Path) -> None:
    x, y = quadrants()
    ckpt = ModelCheckpoint(str(tmp_path / "best.safetensors"), monitor="loss", save_best_only=True, save_weights_only=True)
    model = net()
    history = model.fit(x, y, loss=CE(), optimizer=pn.optim.SGD(lr=0.5), epochs=5, batch_size=20, callbacks=[ckpt], verbose=0)
    assert ckpt.saved and (tmp_path / "best.safetensors").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["best.safetensors"]  # no temporary file left behind
    restored = net(seed=9)
    restored.load_weights(str(tmp_path / "best.safetensors"))
    assert history["loss"][-1] == min(history["loss"])  # the loss fell every epoch, so the last epoch was best
    for name, value in restored.state_dict().items():
        np.testing.assert_array_equal(value, model.state_dict()[name])


def test_l2_penalty_adds_to_loss_and_gradient_of_weights_only() -> None:
    x, y = quadrants(10)
    model = pn.Sequential([Linear(2, 3, dtype="float64")], seed=0)
    w, b = (np.array(v) for v in model.state_dict().values())
    opt = pn.optim.SGD(model.parameters(), lr=1.0)
    plain = CE()(model(x), y)
    value, _ = model.train_step(x, y, CE(), opt, l2=0.1)
    assert float(value) == pytest.approx(float(plain) + 0.05 * np.sum(w * w), rel=1e-12)
    # one SGD step with lr 1: W moved by its data gradient plus 0.1 * W; the bias by its data gradient alone
    ref = pn.Sequential([Linear(2, 3, dtype="float64")], seed=0)
    ref_opt = pn.optim.SGD(ref.parameters(), lr=1.0)
    ref.train_step(x, y, CE(), ref_opt)
    w_ref, b_ref = (np.array(v) for v in ref.state_dict().values())
    np.testing.assert_allclose(model.state_dict()["0.weight"], w_ref - 0.1 * w, rtol=1e-12)
    np.testing.assert_allclose(model.state_dict()["0.bias"], b_ref, rtol=1e-12)
    assert b.shape == (3,)


# -- Keras 3's hooks ------------------------------------------------------------------------------
class EveryHook(Callback):
    """Records every hook call with its arguments (no alias names: those are tested apart)."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def __getattribute__(self, name: str) -> Any:
        if name.startswith("on_") and name not in ("on_batch_begin", "on_batch_end"):
            calls = object.__getattribute__(self, "calls")
            return lambda *args: calls.append((name, *args)) or (False if name == "on_nonfinite_loss" else None)
        return object.__getattribute__(self, name)


def test_a_callback_list_forwards_every_hook() -> None:
    a, b = EveryHook(), EveryHook()
    callbacks = CallbackList([a, b])
    for name in HOOKS:
        args = {"on_nonfinite_loss": (0, 1, math.nan)}.get(name, (3, {"k": 1}) if "batch" in name or "epoch" in name else ({},))
        getattr(callbacks, name)(*args)
    forwarded = [name for name in HOOKS if name not in ("on_batch_begin", "on_batch_end")]
    expected = [c[0] for c in a.calls]
    # the aliases reach the callbacks as on_train_batch_*: what the current loop calls arrives under Keras 3's name
    assert expected == [n if n not in ("on_batch_begin", "on_batch_end") else n.replace("on_", "on_train_") for n in HOOKS]
    assert set(expected) == set(forwarded) and a.calls == b.calls
    assert ("on_epoch_end", 3, {"k": 1}) in a.calls and ("on_test_end", {}) in a.calls
    callbacks.on_predict_begin()  # logs may be left out, as in Keras
    assert a.calls[-1] == ("on_predict_begin", {})


def test_keras_batch_hooks_and_their_aliases_are_called_by_fit() -> None:
    class New(Callback):
        def __init__(self) -> None:
            self.seen: list[str] = []

        def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
            self.seen.append(f"begin {batch}")

        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            assert set(logs) == {"loss", "size"}
            self.seen.append(f"end {batch}")

    class Old(Callback):
        def __init__(self) -> None:
            self.seen: list[str] = []

        def on_batch_end(self, batch: int, logs: dict | None = None) -> None:
            self.seen.append(f"end {batch}")

    class Both(Old):
        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            self.seen.append(f"train end {batch}")  # as in Keras: overriding the new name replaces the alias call

    x, y = quadrants(20)
    new, old, both = New(), Old(), Both()
    net().fit(x, y, loss=CE(), optimizer=pn.optim.SGD(lr=0.1), epochs=1, batch_size=10, callbacks=[new, old, both], verbose=0)
    assert new.seen == ["begin 0", "end 0", "begin 1", "end 1"]
    assert old.seen == ["end 0", "end 1"] and both.seen == ["train end 0", "train end 1"]


def test_lambda_callback_accepts_every_hook() -> None:
    seen: list[str] = []

    def recorder(name: str) -> Any:
        return lambda *args: seen.append(name)

    fns = {name: recorder(name) for name in HOOKS if name != "on_nonfinite_loss"}
    callbacks = CallbackList([LambdaCallback(**fns)])
    x, y = quadrants(20)
    net().fit(x, y, loss=CE(), optimizer=pn.optim.SGD(lr=0.1), epochs=1, batch_size=10, callbacks=[callbacks.callbacks[0]],
              verbose=0)  # fmt: skip
    assert seen[:3] == ["on_train_begin", "on_epoch_begin", "on_train_batch_begin"] and seen[-1] == "on_train_end"
    seen.clear()
    callbacks.on_test_batch_end(0, {})
    callbacks.on_batch_begin(0, {})  # a function given as the alias is reached through on_train_batch_begin
    assert seen == ["on_test_batch_end", "on_train_batch_begin"]
    only_alias = CallbackList([LambdaCallback(on_batch_end=lambda batch, logs: seen.append("alias"))])
    only_alias.on_train_batch_end(0, {})
    assert seen[-1] == "alias"
    with pytest.raises(TypeError, match=r"LambdaCallback: on_epoch_end must be a function; got int"):
        LambdaCallback(on_epoch_end=3)


def test_set_context_passes_is_root_to_every_callback() -> None:
    a, b = Callback(), Callback()
    assert a.is_root is True  # the class default: one process writes
    callbacks = CallbackList([a, b])
    callbacks.set_context("model", "optimizer", is_root=False)
    assert (a.model, a.optimizer, a.is_root, b.is_root, callbacks.is_root) == ("model", "optimizer", False, False, False)
    callbacks.set_context("model", "optimizer")
    assert a.is_root and b.is_root


# -- EarlyStopping: Keras's counting --------------------------------------------------------------
class Stoppable:
    stop_training = False


def epochs_run(stop: EarlyStopping, values: list[float]) -> int:
    """Drive the callback by hand as fit would; the number of epochs trained before it stopped training."""
    model = Stoppable()
    stop.set_context(model, None)
    stop.on_train_begin({})
    for epoch, value in enumerate(values):
        stop.on_epoch_end(epoch, {stop.monitor: value})
        if model.stop_training:
            return epoch + 1
    return len(values)


def test_early_stopping_counts_as_keras() -> None:
    """Hand-traced from keras.callbacks.EarlyStopping.on_epoch_end: wait += 1 each epoch, reset on improvement; stop when
    wait >= patience after an epoch that did not improve (never after epoch 0)."""
    flat = [1.0] * 10
    assert epochs_run(EarlyStopping("loss", patience=2), flat) == 3  # portnn stopped when wait > patience: 4 epochs
    assert epochs_run(EarlyStopping("loss", patience=0), flat) == 2
    assert epochs_run(EarlyStopping("loss", patience=1), [1.0, 0.9, 0.9, 0.8]) == 3
    # baseline: improvements that do not beat it do not reset wait, so the first flat epoch after `patience` stops
    falling = [1.0, 0.9, 0.9, 0.9, 0.9]
    assert epochs_run(EarlyStopping("loss", patience=2), falling) == 4
    assert epochs_run(EarlyStopping("loss", patience=2, baseline=0.5), falling) == 3
    assert epochs_run(EarlyStopping("loss", patience=2, baseline=0.95), falling) == 4  # 0.9 beats it: wait resets
    # start_from_epoch: nothing is watched before it
    assert epochs_run(EarlyStopping("loss", patience=0, start_from_epoch=3), flat) == 5
    stop = EarlyStopping("val_accuracy", patience=1)
    assert stop.mode == "max" and epochs_run(stop, [0.5, 0.6, 0.6]) == 3


def test_early_stopping_on_a_flat_loss_in_fit_runs_patience_plus_one_epochs() -> None:
    x, y = np.zeros((8, 2)), np.arange(8) % 2  # nothing to learn
    stop = EarlyStopping("loss", patience=2, min_delta=0.1)
    history = net().fit(x, y, loss=CE(), optimizer=pn.optim.SGD(lr=0.1), epochs=10, callbacks=[stop], verbose=0)
    assert len(history["loss"]) == 3 and stop.stopped_epoch == 2 and stop.best_epoch == 0


def test_early_stopping_refuses_bad_arguments() -> None:
    with pytest.raises(ValueError, match=r"EarlyStopping: patience must be an integer >= 0; got -1"):
        EarlyStopping(patience=-1)
    with pytest.raises(ValueError, match=r"EarlyStopping: mode must be 'auto', 'min' or 'max'; got 'up'"):
        EarlyStopping(mode="up")


# -- ModelCheckpoint: Keras's path template and defaults ------------------------------------------
def test_model_checkpoint_formats_the_path_with_the_epoch_logs(tmp_path: Path) -> None:
    x, y = quadrants()
    xv, yv = quadrants(60, seed=1)
    saver = ModelCheckpoint(tmp_path / "w-{epoch:02d}-{val_loss:.2f}.safetensors")
    assert not saver.save_best_only and not saver.save_weights_only and saver.save_freq == "epoch"  # Keras's defaults
    model = net()
    history = model.fit(x, y, loss=CE(), optimizer=pn.optim.SGD(lr=0.5), epochs=3, batch_size=20, validation_data=(xv, yv),
                        callbacks=[saver], verbose=0)  # fmt: skip
    names = [f"w-{e + 1:02d}-{v:.2f}.safetensors" for e, v in enumerate(history["val_loss"])]
    assert [Path(p).name for p in saver.saved] == names and sorted(p.name for p in tmp_path.iterdir()) == sorted(names)
    whole = pn.load(saver.saved[-1])  # the whole model (model.save): pn.load rebuilds it
    assert whole.get_config() == model.get_config()
    weights = net(seed=5)
    weights.load_weights(saver.saved[-1])
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(pn.to_numpy(whole.state_dict()[name]), pn.to_numpy(value))
        np.testing.assert_array_equal(pn.to_numpy(weights.state_dict()[name]), pn.to_numpy(value))


def test_model_checkpoint_weights_only_load_with_load_weights(tmp_path: Path) -> None:
    x, y = quadrants(40)
    saver = ModelCheckpoint(str(tmp_path / "w{epoch}.safetensors"), save_weights_only=True)
    model = net()
    model.fit(x, y, loss=CE(), optimizer=pn.optim.SGD(lr=0.5), epochs=2, batch_size=20, callbacks=[saver], verbose=0)
    assert [Path(p).name for p in saver.saved] == ["w1.safetensors", "w2.safetensors"]
    with pytest.raises(pn.serialization.CheckpointError):
        pn.load(saver.saved[-1])  # weights, no architecture
    restored = net(seed=5)
    restored.load_weights(saver.saved[-1])
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(pn.to_numpy(restored.state_dict()[name]), pn.to_numpy(value))


def test_model_checkpoint_refuses_a_bad_template_when_built(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"ModelCheckpoint: filepath 'w-\{\}.safetensors' has a positional field \{\}"):
        ModelCheckpoint("w-{}.safetensors")
    with pytest.raises(ValueError, match=r"cannot be formatted with numbers: Unknown format code 'd'"):
        ModelCheckpoint("w-{loss:d}.safetensors")
    with pytest.raises(ValueError, match=r"is not a valid format string"):
        ModelCheckpoint("w-{epoch.safetensors")
    with pytest.raises(ValueError, match=r"save_freq must be 'epoch'.*got 100.*checkpoint_every"):
        ModelCheckpoint("w.safetensors", save_freq=100)


def test_model_checkpoint_names_a_missing_log_key_before_saving(tmp_path: Path) -> None:
    x, y = quadrants(40)
    saver = ModelCheckpoint(tmp_path / "w-{epoch}-{val_loss:.2f}.safetensors")
    with pytest.raises(KeyError, match=r"names \['val_loss'\], which the epoch's logs lack; they hold \['accuracy', 'loss', "
                                       r"'lr'\] and 'epoch' \(pass validation_data to fit\)"):  # fmt: skip
        net().fit(x, y, loss=CE(), optimizer=pn.optim.SGD(lr=0.5), epochs=3, batch_size=20, callbacks=[saver], verbose=0)
    assert not saver.saved and not list(tmp_path.iterdir())


def test_model_checkpoint_of_the_whole_model_refuses_a_foreign_layer_before_training(tmp_path: Path) -> None:
    class Mine(pn.layers.ReLU):
        pass

    model = pn.Sequential([Linear(2, 4), Mine(), Linear(4, 2)], seed=0)
    before = {k: pn.to_numpy(v).copy() for k, v in model.state_dict().items()}
    x, y = quadrants(40)
    with pytest.raises(
        TypeError, match=r"ModelCheckpoint\(.*\) saves the whole model.*layers \['1 \(Mine\)'\].*save_weights_only=True"
    ):
        model.fit(x, y, loss=CE(), optimizer=pn.optim.SGD(lr=0.5), callbacks=[ModelCheckpoint(tmp_path / "m.safetensors")],
                  verbose=0)  # fmt: skip
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(pn.to_numpy(value), before[name])
    saver = ModelCheckpoint(tmp_path / "m.safetensors", save_weights_only=True)
    model.fit(x, y, loss=CE(), optimizer=pn.optim.SGD(lr=0.5), callbacks=[saver], verbose=0)
    assert saver.saved == [str(tmp_path / "m.safetensors")]


def test_callbacks_that_write_files_write_only_on_the_root(tmp_path: Path) -> None:
    model = net()
    saver, logger = ModelCheckpoint(tmp_path / "m{epoch}.safetensors"), CSVLogger(tmp_path / "log.csv")
    callbacks = CallbackList([saver, logger])
    callbacks.set_context(model, pn.optim.SGD(model.parameters(), lr=0.1), is_root=False)
    callbacks.on_train_begin({})
    callbacks.on_epoch_end(0, {"loss": 0.5, "lr": 0.1})
    callbacks.on_train_end({})
    assert not saver.saved and not list(tmp_path.iterdir())
    callbacks.set_context(model, pn.optim.SGD(model.parameters(), lr=0.1))
    callbacks.on_train_begin({})
    callbacks.on_epoch_end(0, {"loss": 0.5, "lr": 0.1})
    callbacks.on_train_end({})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log.csv", "m1.safetensors"]


# -- CSVLogger ------------------------------------------------------------------------------------
def read_csv(path: Path, separator: str = ",") -> list[list[str]]:
    with open(path, newline="") as f:
        return list(csv.reader(f, delimiter=separator))


def test_csv_logger_writes_a_header_and_one_row_per_epoch(tmp_path: Path) -> None:
    x, y = quadrants(40)
    xv, yv = quadrants(20, seed=1)
    path = tmp_path / "logs" / "train.csv"  # a missing folder is made
    history = net().fit(x, y, loss=CE(), optimizer=pn.optim.SGD(lr=0.5), epochs=3, batch_size=20, validation_data=(xv, yv),
                        callbacks=[CSVLogger(path)], verbose=0)  # fmt: skip
    rows = read_csv(path)
    keys = ["accuracy", "loss", "lr", "val_accuracy", "val_loss"]  # Keras: epoch, then the logs' keys sorted
    assert rows[0] == ["epoch", *keys] and len(rows) == 4
    for epoch, row in enumerate(rows[1:]):
        assert row[0] == str(epoch)  # from 0, as Keras writes it
        assert [float(v) for v in row[1:]] == [history[k][epoch] for k in keys]  # repr of a float reads back exactly
    assert path.read_bytes().count(b"\n") == 4 and b"\r" not in path.read_bytes()


def test_csv_logger_separator_overwrite_and_append(tmp_path: Path) -> None:
    x, y = quadrants(40)
    path = tmp_path / "log.csv"

    def fit(logger: CSVLogger, epochs: int) -> Any:
        return net().fit(x, y, loss=CE(), optimizer=pn.optim.SGD(lr=0.5), epochs=epochs, batch_size=20, callbacks=[logger],
                         verbose=0)  # fmt: skip

    fit(CSVLogger(path, separator=";"), 2)
    assert read_csv(path, ";")[0] == ["epoch", "accuracy", "loss", "lr"] and len(read_csv(path, ";")) == 3
    fit(CSVLogger(path, separator=";"), 1)  # append=False: a new file
    assert len(read_csv(path, ";")) == 2
    fit(CSVLogger(path, separator=";", append=True), 2)  # continued: no second header
    rows = read_csv(path, ";")
    assert [r[0] for r in rows] == ["epoch", "0", "0", "1"]
    with pytest.raises(ValueError, match=r"CSVLogger\(append=True\): .* has the header 'epoch;accuracy;loss;lr', this run "
                                         r"writes 'epoch,accuracy,loss,lr'"):  # fmt: skip
        fit(CSVLogger(path, append=True), 1)
    assert len(read_csv(path, ";")) == 4  # nothing was added
    with open(path, "ab") as f:
        f.write(b"3;0.5;0.6")  # a row cut short by a crash
    with pytest.warns(RuntimeWarning, match="cut short"):
        fit(CSVLogger(path, separator=";", append=True), 1)
    assert [r[0] for r in read_csv(path, ";")] == ["epoch", "0", "0", "1", "0"]


def without_column(text: str, column: str) -> str:
    """The CSV text with one column removed (if it is there): values that differ between runs, such as timings."""
    rows = list(csv.reader(text.splitlines()))
    if column not in rows[0]:
        return text
    i = rows[0].index(column)
    return "".join(",".join(r[:i] + r[i + 1 :]) + "\n" for r in rows)


class InterruptAfterEpoch(Callback):
    """Listed after the CSVLogger: raises once the logger has written the row of ``epoch`` but before fit's end-of-epoch
    checkpoint, as a process killed in between would leave it: a row that the last checkpoint does not know."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if epoch == self.epoch:
            raise KeyboardInterrupt


@pytest.mark.parametrize("every", [None, 4], ids=["epoch-checkpoints", "mid-epoch-checkpoints"])
def test_csv_logger_resumes_to_the_file_of_an_uninterrupted_run(case: Any, tmp_path: Path, every: int | None) -> None:
    """Every column but epoch_time (a timing, which differs between runs) compared byte for byte; today's loop adds
    epoch_time after on_epoch_end, so the files are compared whole."""
    x, y = quadrants(60)
    fit = dict(loss=CE(), epochs=4, batch_size=10, verbose=0)

    def build() -> pn.Sequential:
        return net().to(case.name, case.device)

    build().fit(x, y, optimizer=pn.optim.SGD(lr=0.3), callbacks=[CSVLogger(tmp_path / "reference.csv")], **fit)
    run = dict(checkpoint=tmp_path / "ck", checkpoint_every=every)
    with pytest.raises(KeyboardInterrupt):
        build().fit(x, y, optimizer=pn.optim.SGD(lr=0.3), callbacks=[CSVLogger(tmp_path / "run.csv"), InterruptAfterEpoch(2)],
                    **run, **fit)  # fmt: skip
    assert len(read_csv(tmp_path / "run.csv")) == 4  # epochs 0-2 were written, epoch 2's after the last checkpoint
    build().fit(x, y, optimizer=pn.optim.SGD(lr=0.3), callbacks=[CSVLogger(tmp_path / "run.csv")], resume=tmp_path / "ck",
                **run, **fit)  # fmt: skip
    reference, resumed = (tmp_path / "reference.csv").read_text(), (tmp_path / "run.csv").read_text()
    assert len(read_csv(tmp_path / "run.csv")) == 5
    assert without_column(resumed, "epoch_time").encode() == without_column(reference, "epoch_time").encode()


def test_csv_logger_with_append_keeps_its_header_when_resumed_from_before_its_first_row(tmp_path: Path) -> None:
    """The checkpoint was taken mid-epoch 0 (no row yet), the run then wrote header and row 0 and died: the resumed run
    cuts the file back to nothing and must write the header again (it judged the header from the whole file before)."""
    x, y = quadrants(60)
    fit = dict(loss=CE(), epochs=2, batch_size=10, verbose=0)
    net().fit(x, y, optimizer=pn.optim.SGD(lr=0.3), callbacks=[CSVLogger(tmp_path / "reference.csv")], **fit)
    run = dict(checkpoint=tmp_path / "ck", checkpoint_every=2)
    with pytest.raises(KeyboardInterrupt):
        net().fit(x, y, optimizer=pn.optim.SGD(lr=0.3), callbacks=[CSVLogger(tmp_path / "run.csv", append=True),
                  InterruptAfterEpoch(0)], **run, **fit)  # fmt: skip
    assert [r[0] for r in read_csv(tmp_path / "run.csv")] == ["epoch", "0"]
    net().fit(x, y, optimizer=pn.optim.SGD(lr=0.3), callbacks=[CSVLogger(tmp_path / "run.csv", append=True)],
              resume=tmp_path / "ck", **run, **fit)  # fmt: skip
    assert [r[0] for r in read_csv(tmp_path / "run.csv")] == ["epoch", "0", "1"]
    assert (tmp_path / "run.csv").read_bytes() == (tmp_path / "reference.csv").read_bytes()


def test_csv_logger_refuses_a_bad_path_before_training(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"CSVLogger: filename '.*' is a folder; give a file in it, e.g. '.*log.csv'"):
        CSVLogger(tmp_path)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match=r"CSVLogger: cannot write '.*file/log.csv': '.*file' is a file, not a folder"):
        CSVLogger(tmp_path / "file" / "log.csv")
    with pytest.raises(ValueError, match=r"CSVLogger: separator must be one character .*; got ', '"):
        CSVLogger(tmp_path / "log.csv", separator=", ")
    # a path that becomes a folder after the logger was built: refused by fit before the first step
    logger = CSVLogger(tmp_path / "later")
    (tmp_path / "later").mkdir()
    model = net()
    before = {k: pn.to_numpy(v).copy() for k, v in model.state_dict().items()}
    x, y = quadrants(40)
    with pytest.raises(ValueError, match="is a folder"):
        model.fit(x, y, loss=CE(), optimizer=pn.optim.SGD(lr=0.5), callbacks=[logger], verbose=0)
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(pn.to_numpy(value), before[name])


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root may write into a read-only folder")
def test_csv_logger_refuses_a_read_only_folder(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(ValueError, match=r"the folder '.*ro' is not writable"):
            CSVLogger(folder / "log.csv")
    finally:
        folder.chmod(0o700)


def test_model_checkpoint_refuses_a_model_it_cannot_save_before_training(tmp_path: Path) -> None:
    class Mine(pn.Sequential):  # not registered: pn.load could not rebuild it
        pass

    x, y = quadrants(20)
    model = Mine([Linear(2, 4)], seed=0)
    before = pn.to_numpy(model.layers[0].weight.data).copy()
    with pytest.raises(
        TypeError, match=r"saves the whole model \(model.save\), but the model is a .*Mine, a class pn.load does not know"
    ):
        model.fit(x, y, loss=CE(), optimizer=pn.optim.SGD(lr=0.3), callbacks=[ModelCheckpoint(tmp_path / "m.safetensors")],
                  verbose=0)  # fmt: skip
    assert np.array_equal(pn.to_numpy(model.layers[0].weight.data), before) and not list(tmp_path.iterdir())
    model.fit(x, y, loss=CE(), optimizer=pn.optim.SGD(lr=0.3), verbose=0,
              callbacks=[ModelCheckpoint(tmp_path / "w.safetensors", save_weights_only=True)])  # fmt: skip
    assert (tmp_path / "w.safetensors").exists()

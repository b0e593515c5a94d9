"""Callbacks, the L2 penalty and non-finite losses in fit (schedules and backtracking: tests/test_schedules.py)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import portnn as pn
from portnn.callbacks import Callback, EarlyStopping, LambdaCallback, ModelCheckpoint
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
    ckpt = ModelCheckpoint(str(tmp_path / "best.safetensors"), monitor="loss")
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

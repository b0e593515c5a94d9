"""Every row of docs/input-validation.md: the call, the error type and the key words of the message.

A row is ``(call, error type, patterns)``; each pattern is a regular expression the message
must contain: the layer or function, what was received, the hint. The ids are the first
column of the table in the docs, and ``test_the_table_in_the_docs_lists_every_row`` keeps
the two in step. Rows run with NumPy as the global backend unless they build elsewhere.
"""

from __future__ import annotations

import contextlib
import contextvars
import io
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import portnn as pn
from portnn.callbacks import CSVLogger, EarlyStopping, LambdaCallback, ModelCheckpoint
from portnn.layers import (
    BatchNorm1d,
    BatchNorm2d,
    Conv2d,
    Dropout,
    Flatten,
    GlobalAvgPool2d,
    Linear,
    MaxPool2d,
    ReLU,
    ShapeError,
    Sigmoid,
    Softmax,
    Tanh,
)
from portnn.optim import schedules

DOC = Path(__file__).resolve().parents[1] / "docs" / "input-validation.md"
CE, MSE, BCE = pn.losses.CrossEntropy, pn.losses.MSE, pn.losses.BinaryCrossEntropy
X = np.random.default_rng(0).normal(size=(10, 4))
Y = np.arange(10) % 3
NOWHERE = Path(tempfile.gettempdir())  # rows that name a file never write it: they are refused first


def net() -> pn.Sequential:
    return pn.Sequential([Linear(4, 8), ReLU(), Linear(8, 3)], seed=0)


def fit(x: Any = X, y: Any = Y, *, model: pn.Sequential | None = None, **kw: Any) -> Any:
    kw.setdefault("loss", CE())
    kw.setdefault("optimizer", pn.optim.SGD(lr=0.1))
    return (model or net()).fit(x, y, verbose=0, **kw)


def ones(shape: Any, dtype: Any = np.float32) -> Any:
    return np.ones(shape, dtype=dtype)


def with_nan(count: int) -> Any:
    bad = X.copy()
    bad.flat[:count] = np.nan
    return bad


def torch_tensor(shape: tuple[int, ...], *, requires_grad: bool = False) -> Any:
    torch = pytest.importorskip("torch", reason="torch is not installed: the torch-crossing rows need it")
    return torch.ones(shape, requires_grad=requires_grad)


def strict(shape: tuple[int, ...], device: str = "device2") -> Any:
    import array_api_strict as xs

    return xs.ones(shape, device=xs.Device(device))


def on_device1(build: Callable[[], Any]) -> Any:
    with pn.use_backend("array_api_strict", "device1"):
        return build()


def cupy_without_gpu() -> Any:
    if pn.backends.get_adapter("cupy").is_available():
        pytest.skip("a CUDA device works here, so set_backend('cupy') succeeds")
    return pn.set_backend("cupy")


def train_step_on_empty_batch() -> Any:
    model = net()
    return model.train_step(ones((0, 4)), np.zeros(0, dtype=np.int64), CE(), pn.optim.SGD(model.parameters(), lr=0.1))


def row(id: str, call: Callable[[], Any], error: type[Exception], *patterns: str) -> Any:
    return pytest.param(call, error, patterns, id=id)


# fmt: off
ROWS = [
    # -- layers: rank, shape, feature count -------------------------------------------
    row("linear-features", lambda: Linear(4, 3)(ones((2, 5))), ShapeError,
        r"Linear\(4, 3\)", r"shape \(2, 5\)", r"expected \(batch, 4\)"),
    row("linear-images", lambda: Linear(784, 10)(ones((2, 28, 28))), ShapeError,
        r"Linear\(784, 10\)", r"\(2, 28, 28\)", r"add pn.layers.Flatten\(\)"),
    row("linear-one-example", lambda: Linear(4, 3)(ones(4)), ShapeError,
        r"Linear\(4, 3\)", r"\(4,\)", r"x.reshape\(1, -1\)"),
    row("conv-rank", lambda: Conv2d(1, 2, 3)(ones((2, 5, 5))), ShapeError,
        r"Conv2d\(1, 2", r"\(2, 5, 5\)", r"expected \(batch, 1, H, W\)", r"x.reshape\(-1, 1, H, W\)"),
    row("conv-channels-last", lambda: Conv2d(3, 4, 3)(ones((2, 5, 5, 3))), ShapeError,
        r"Conv2d\(3, 4", r"\(2, 5, 5, 3\)", r"channels last\? .*transpose\(0, 3, 1, 2\)"),
    row("conv-too-small", lambda: Conv2d(1, 2, 5)(ones((1, 1, 3, 3))), ShapeError,
        r"Conv2d\(1, 2", r"\(1, 1, 3, 3\)", r"smaller than the kernel \(5, 5\)", r"more padding"),
    row("batchnorm1d-features", lambda: BatchNorm1d(3)(ones((2, 4))), ShapeError,
        r"BatchNorm1d\(3\)", r"\(2, 4\)", r"expected \(batch, 3\) or \(batch, 3, length\)"),
    row("batchnorm2d-rank", lambda: BatchNorm2d(3)(ones((2, 3))), ShapeError,
        r"BatchNorm2d\(3\)", r"\(2, 3\)", r"expected \(batch, 3, H, W\)"),
    row("batchnorm-batch-of-one", lambda: BatchNorm1d(3).forward(ones((1, 3)), training=True), ValueError,
        r"BatchNorm1d\(3\)", r"\(1, 3\)", r"batches of 2 or more"),
    row("pool-rank", lambda: MaxPool2d(2)(ones((2, 4))), ShapeError,
        r"MaxPool2d\(kernel_size=2\)", r"\(2, 4\)", r"expected \(batch, C, H, W\)"),
    row("pool-window", lambda: MaxPool2d(3)(ones((1, 1, 2, 2))), ShapeError,
        r"MaxPool2d\(kernel_size=3\)", r"\(1, 1, 2, 2\)", r"window does not fit", r"smaller kernel_size"),
    row("global-pool-rank", lambda: GlobalAvgPool2d()(ones((2, 3))), ShapeError,
        r"GlobalAvgPool2d\(\)", r"\(2, 3\)", r"expected \(batch, C, H, W\)"),
    row("flatten-rank", lambda: Flatten()(ones(3)), ShapeError,
        r"Flatten\(\)", r"\(3,\)", r"more than 1 dimensions \(batch first\)"),
    row("linear-sequence-features", lambda: Linear(4, 3)(ones((2, 7, 5))), ShapeError,
        r"Linear\(4, 3\)", r"\(2, 7, 5\)", r"\(batch, \.\.\., 4\)", r"give it in_features=5"),
    row("embedding-index-range", lambda: pn.layers.Embedding(5, 2)(np.array([[0, 7]])), ValueError,
        r"Embedding\(5, 2\)", r"indices from 0 to 7", r"outside 0..4", r"num_embeddings=8 or more"),
    row("embedding-float-indices", lambda: pn.layers.Embedding(5, 2)(ones((2, 3))), TypeError,
        r"Embedding\(5, 2\)", r"dtype float32", r"an integer dtype \(indices\)", r"xp.astype\(x, xp.int64\)"),
    row("positional-embedding-too-long", lambda: pn.layers.PositionalEmbedding(4, 3)(ones((2, 5, 3))), ShapeError,
        r"PositionalEmbedding\(4, 3\)", r"\(2, 5, 3\)", r"more than max_length=4", r"max_length=5 or more"),
    row("permute-dims", lambda: pn.layers.Permute((0, 1)), ValueError,
        r"Permute", r"\(0, 1\)", r"permutation of 1..2", r"0 is the batch axis"),
    row("global-pool1d-rank", lambda: pn.layers.GlobalAvgPool1d()(ones((2, 3, 4, 5))), ShapeError,
        r"GlobalAvgPool1d\(\)", r"\(2, 3, 4, 5\)", r"expected \(batch, C, L\)"),
    row("ce-sequence-target-shape", lambda: CE()(ones((2, 3, 5)), np.zeros((2, 5), np.int64)), ValueError,
        r"CrossEntropy\(\)", r"\(2, 3, 5\)", r"labels of shape \(2, 3\)", r"got \(2, 5\)", r"Permute\(\(2, 1\)\)"),
    row("accuracy-sequence-shape", lambda: pn.metrics.accuracy(np.zeros((2, 3), np.int64), ones((2, 4, 5))), ValueError,
        r"accuracy", r"\(2, 3\)", r"\(2, 3, C\)", r"shape \(2, 4, 5\)"),
    row("recurrent-one-step", lambda: pn.layers.LSTM(3, 4)(ones((2, 3))), ShapeError,
        r"LSTM\(3, 4\)", r"\(2, 3\)", r"expected \(batch, time, 3\)", r"x.reshape\(-1, 1, 3\)"),
    row("recurrent-features", lambda: pn.layers.GRU(3, 4)(ones((2, 5, 7))), ShapeError,
        r"GRU\(3, 4\)", r"\(2, 5, 7\)", r"expected \(batch, time, 3\)"),
    row("recurrent-images", lambda: pn.layers.LSTM(28, 8)(ones((2, 1, 28, 28))), ShapeError,
        r"LSTM\(28, 8\)", r"\(2, 1, 28, 28\)", r"rows as time steps: x.reshape\(-1, 28, 28\)"),
    row("recurrent-no-steps", lambda: pn.layers.LSTM(3, 4)(ones((2, 0, 3))), ShapeError,
        r"LSTM\(3, 4\)", r"\(2, 0, 3\)", r"at least one time step"),
    # -- layers: dtypes and non-arrays (layers never convert) ---------------------------
    row("layer-int-input", lambda: Linear(3, 2)(ones((1, 3), np.int64)), TypeError,
        r"Linear\(3, 2\)", r"dtype int64", r"parameters are float32", r"astype", r"model.fit/predict/evaluate"),
    row("layer-float64-input", lambda: Linear(3, 2)(ones((1, 3), np.float64)), TypeError,
        r"Linear\(3, 2\)", r"dtype float64", r"parameters are float32", r"astype"),
    row("activation-int-input", lambda: ReLU()(ones((1, 3), np.int64)), TypeError,
        r"ReLU\(\)", r"dtype int64", r"expected float32 or float64", r"model.fit/predict/evaluate convert"),
    row("pool-bool-input", lambda: MaxPool2d(2)(ones((1, 1, 4, 4), bool)), TypeError,
        r"MaxPool2d\(kernel_size=2\)", r"dtype bool", r"astype"),
    row("activation-str-input", lambda: Tanh()(np.array([["a"]])), TypeError,
        r"Tanh\(\)", r"dtype str", r"expected float32 or float64"),
    row("dropout-int-input", lambda: Dropout(0.5).forward(ones((2, 4), np.int64), training=True), TypeError,
        r"Dropout\(p=0.5\)", r"dtype int64", r"astype"),
    row("layer-list-input", lambda: Linear(3, 2)([[1.0, 2.0, 3.0]]), TypeError,
        r"Linear\(3, 2\)", r"got a list, not an array", r"np.asarray", r"model.fit/evaluate/predict take lists"),
    # -- Sequential: shapes of x ---------------------------------------------------------
    row("fit-batchnorm-last-batch-of-one",
        lambda: fit(ones((9, 4)), np.arange(9) % 3, batch_size=4,
                    model=pn.Sequential([Linear(4, 8), BatchNorm1d(8), Linear(8, 3)], seed=0)), ValueError,
        r"Sequential.fit", r"9 examples in batches of 4 leave a last batch of 1", r"drop_last=True"),
    row("fit-feature-count", lambda: fit(ones((10, 5))), ShapeError,
        r"Sequential.fit", r"x has shape \(10, 5\)", r"layer 0 \(Linear\(4, 8\)\)", r"expects input of shape \(batch, 4\)"),
    row("predict-images-into-linear", lambda: net().predict(ones((2, 2, 2))), ShapeError,
        r"Sequential.predict", r"\(2, 2, 2\)", r"layer 0", r"add pn.layers.Flatten\(\) before it"),
    row("evaluate-feature-count", lambda: net().evaluate(ones((10, 5)), Y, loss=CE()), ShapeError,
        r"Sequential.evaluate", r"\(10, 5\)", r"Linear\(4, 8\)"),
    row("predict-input-shape", lambda: pn.Sequential([Flatten(), Linear(784, 3)], input_shape=(28, 28)).predict(
        ones((2, 27, 28))), ShapeError, r"Sequential.predict", r"examples of shape \(27, 28\)", r"takes \(28, 28\)"),
    row("x-empty", lambda: fit(ones((0, 4)), np.zeros(0, dtype=np.int64)), ValueError,
        r"Sequential.fit", r"x is empty \(shape \(0, 4\)\)", r"at least one example"),
    row("x-scalar", lambda: net().predict(1.0), ValueError,
        r"Sequential.predict", r"x is a scalar", r"shape \(n, ...\)"),
    row("x-zero-features", lambda: fit(ones((10, 0))), ValueError,
        r"Sequential.fit", r"x has shape \(10, 0\)", r"hold no values"),
    row("train-step-empty-batch", train_step_on_empty_batch, ValueError,
        r"Sequential.train_step", r"empty batch", r"\(0, 4\)"),
    # -- Sequential: dtypes and values of x and y ----------------------------------------
    row("x-complex", lambda: fit(X.astype(np.complex128)), TypeError,
        r"Sequential.fit", r"x has dtype complex128", r"real numbers"),
    row("x-str", lambda: net().predict(X.astype(str)), TypeError,
        r"Sequential.predict", r"x has dtype str", r"real numbers"),
    row("x-ragged", lambda: fit([[1, 2, 3, 4], [1, 2]], [0, 1]), TypeError,
        r"Sequential.fit", r"x is ragged or not numeric", r"rectangular numeric array"),
    row("x-none", lambda: net().predict(None), TypeError,
        r"Sequential.predict", r"x is ragged or not numeric"),
    row("y-str", lambda: fit(X, Y.astype(str)), TypeError,
        r"Sequential.fit", r"y has dtype str", r"integer labels or real targets"),
    row("x-nan-inf", lambda: fit(with_nan(2)), ValueError,
        r"Sequential.fit", r"x holds 2 NaN or infinite values", r"clean or impute"),
    row("predict-inf", lambda: net().predict(np.where(np.arange(40).reshape(10, 4) % 8 == 0, -np.inf, X)), ValueError,
        r"Sequential.predict", r"x holds 5 NaN or infinite"),
    row("y-nan", lambda: fit(X, np.where(np.arange(10)[:, None] < 3, np.nan, 0.0), model=pn.Sequential([Linear(4, 1)]),
                             loss=MSE()), ValueError,
        r"Sequential.fit", r"y holds 3 NaN or infinite values", r"fix the targets"),
    row("xy-lengths", lambda: fit(X, Y[:9]), ValueError,
        r"Sequential.fit", r"x has 10 examples but y has shape \(9,\)"),
    # -- labels and targets against the loss ----------------------------------------------
    row("labels-too-large", lambda: fit(X, np.arange(10) % 4), ValueError,
        r"CrossEntropy\(\)", r"class indices in 0..2", r"model with 3 outputs", r"values from 0 to 3"),
    row("labels-negative", lambda: fit(X, Y - 1), ValueError,
        r"CrossEntropy\(\)", r"class indices in 0..2", r"values from -1 to 1"),
    row("labels-fractional", lambda: fit(X, Y + 0.5), ValueError,
        r"CrossEntropy\(\)", r"got \(10,\)", r"10 of its values are not whole numbers", r"integer labels in 0..2"),
    row("labels-as-floats", lambda: fit(X, Y.astype(np.float64)), ValueError,
        r"CrossEntropy\(\)", r"got \(10,\)", r"class indices\? pass them as integers"),
    row("one-hot-wrong-width", lambda: fit(X, np.eye(4)[Y]), ValueError,
        r"CrossEntropy\(\)", r"got \(10, 4\)", r"over 4 classes, but the model has 3 outputs"),
    row("one-hot-as-ints", lambda: fit(X, np.eye(3, dtype=np.int64)[Y]), ValueError,
        r"CrossEntropy\(\)", r"integer labels must have shape \(batch,\); got \(10, 3\)", r"one-hot labels\?"),
    row("bce-targets-range",
        lambda: fit(X, np.full((10, 1), 2.0), model=pn.Sequential([Linear(4, 1)]), loss=BCE(from_logits=True)),
        ValueError, r"BinaryCrossEntropy\(from_logits=True\)", r"\[0, 1\]", r"from 2.0 to 2.0 \(10 outside\)",
        r"map labels to 0/1"),
    row("bce-probabilities-are-logits", lambda: BCE()(np.array([[2.0], [-1.0]]), np.array([[1.0], [0.0]])), ValueError,
        r"BinaryCrossEntropy\(\) takes probabilities in \[0, 1\]", r"from -1.0 to 2.0 \(2 of 2 outside\)",
        r"BinaryCrossEntropy\(from_logits=True\)", r"end the model with pn.layers.Sigmoid\(\)"),
    row("bce-probabilities-after-linear", lambda: BCE().check_output_layer(Linear(4, 1)), ValueError,
        r"BinaryCrossEntropy\(\) takes probabilities", r"ends with Linear\(4, 1\)", r"end the model with pn.layers.Sigmoid\(\)",
        r"BinaryCrossEntropy\(from_logits=True\)"),
    row("bce-logits-after-sigmoid", lambda: BCE(from_logits=True).check_output_layer(Sigmoid()), ValueError,
        r"BinaryCrossEntropy\(from_logits=True\) takes logits", r"ends with Sigmoid", r"remove the final Sigmoid layer",
        r"BinaryCrossEntropy\(\) \(from_logits=False\)"),
    row("mse-target-shape", lambda: fit(X, np.zeros((10, 3)), model=pn.Sequential([Linear(4, 2)]), loss=MSE()),
        ValueError, r"MSE\(\)", r"target shape \(10, 3\)", r"predictions \(10, 2\)"),
    row("mse-target-1d", lambda: fit(X, np.zeros(10), model=pn.Sequential([Linear(4, 1)]), loss=MSE()),
        ValueError, r"MSE\(\)", r"\(10,\)", r"reshape the target to \(batch, 1\)"),
    row("softmax-then-crossentropy", lambda: fit(model=pn.Sequential([Linear(4, 3), Softmax()])), ValueError,
        r"CrossEntropy takes logits", r"ends with Softmax", r"remove the final Softmax"),
    row("loss-missing", lambda: net().fit(X, Y, optimizer=pn.optim.SGD(lr=0.1), verbose=0), TypeError,
        r"fit needs a loss", r"got None", r"compile\(\)"),
    row("loss-class-not-instance", lambda: fit(loss=CE), TypeError,
        r"fit needs a loss such as pn.losses.CrossEntropy\(\)", r"got <class"),
    row("optimizer-missing", lambda: net().fit(X, Y, loss=CE(), verbose=0), TypeError,
        r"fit needs an optimizer", r"got None"),
    # -- fit / evaluate / predict arguments -------------------------------------------------
    row("batch-size-zero", lambda: fit(batch_size=0), ValueError,
        r"Sequential.fit: batch_size must be an integer >= 1; got 0"),
    row("batch-size-float", lambda: fit(batch_size=2.0), ValueError,
        r"Sequential.fit: batch_size must be an integer >= 1; got 2.0", r"pass batch_size=2"),
    row("batch-size-predict", lambda: net().predict(X, batch_size=-1), ValueError,
        r"Sequential.predict: batch_size must be an integer >= 1; got -1"),
    row("batch-size-evaluate", lambda: net().evaluate(X, Y, loss=CE(), batch_size=True), ValueError,
        r"Sequential.evaluate: batch_size must be an integer >= 1; got True", r"a bool"),
    row("epochs-negative", lambda: fit(epochs=-1), ValueError,
        r"Sequential.fit: epochs must be an integer >= 0; got -1"),
    row("epochs-float", lambda: fit(epochs=1.5), ValueError,
        r"Sequential.fit: epochs must be an integer >= 0; got 1.5", r"a float"),
    row("l2-negative", lambda: fit(l2=-0.1), ValueError,
        r"Sequential.fit/train_step: l2 must be a finite number >= 0; got -0.1"),
    row("validation-not-a-pair", lambda: fit(validation_data=X), TypeError,
        r"Sequential.fit: validation_data must be a pair \(x_val, y_val\); got a ndarray"),
    row("validation-one-element", lambda: fit(validation_data=(X,)), TypeError,
        r"validation_data must be a pair", r"got a tuple of length 1"),
    row("validation-lengths", lambda: fit(validation_data=(X, Y[:5])), ValueError,
        r"Sequential.fit validation_data", r"x has 10 examples but y has shape \(5,\)"),
    row("callback-function", lambda: fit(callbacks=[lambda epoch, logs: None]), TypeError,
        r"callbacks must be portnn.callbacks.Callback instances", r"got function", r"position 0",
        r"LambdaCallback\(on_epoch_end=fn\)"),
    row("callback-class", lambda: fit(callbacks=[pn.callbacks.EarlyStopping]), TypeError,
        r"got type", r"pass an instance"),
    row("callbacks-not-a-list", lambda: fit(callbacks=pn.callbacks.EarlyStopping()), TypeError,
        r"callbacks must be a list", r"got a single EarlyStopping", r"callbacks=\[...\]"),
    # -- callbacks and learning-rate schedules ----------------------------------------------
    row("lambda-callback-unknown-hook", lambda: LambdaCallback(on_epoch_ending=print), TypeError,
        r"LambdaCallback: unknown hooks \['on_epoch_ending'\]", r"choose from \[.*'on_train_batch_end'"),
    row("early-stopping-patience", lambda: EarlyStopping(patience=-1), ValueError,
        r"EarlyStopping: patience must be an integer >= 0; got -1"),
    row("checkpoint-positional-field", lambda: ModelCheckpoint("w-{}.safetensors"), ValueError,
        r"ModelCheckpoint: filepath 'w-\{\}.safetensors' has a positional field \{\}", r"e.g. \{epoch:02d\}"),
    row("checkpoint-format-spec", lambda: ModelCheckpoint("w-{loss:d}.safetensors"), ValueError,
        r"ModelCheckpoint: filepath 'w-\{loss:d\}.safetensors' cannot be formatted with numbers", r"format code 'd'"),
    row("checkpoint-save-freq", lambda: ModelCheckpoint("w.safetensors", save_freq=100), ValueError,
        r"ModelCheckpoint: save_freq must be 'epoch'", r"got 100", r"checkpoint_every"),
    row("checkpoint-missing-log-key", lambda: fit(callbacks=[ModelCheckpoint(NOWHERE / "w-{val_loss:.2f}.safetensors")]),
        KeyError, r"ModelCheckpoint: filepath '.*w-\{val_loss:.2f\}.safetensors' names \['val_loss'\]",
        r"they hold \['accuracy', 'loss', 'lr'\]", r"pass validation_data to fit"),
    row("csv-logger-folder", lambda: CSVLogger(DOC.parent), ValueError,
        r"CSVLogger: filename '.*docs' is a folder", r"give a file in it, e.g. '.*log.csv'"),
    row("csv-logger-below-a-file", lambda: CSVLogger(DOC / "log.csv"), ValueError,
        r"CSVLogger: cannot write '.*input-validation.md/log.csv'", r"is a file, not a folder"),
    row("csv-logger-separator", lambda: CSVLogger(NOWHERE / "log.csv", separator=", "), ValueError,
        r"CSVLogger: separator must be one character", r"got ', '"),
    row("schedule-interval", lambda: schedules.StepLR(step_size=2, interval="batch"), ValueError,
        r"StepLR: interval must be 'epoch' \(a rate per epoch\) or 'step' \(a rate per batch\); got 'batch'"),
    row("schedule-given-a-model", lambda: schedules.ExponentialLR(net(), gamma=0.9), TypeError,
        r"ExponentialLR: optimizer must be a portnn optimizer", r"got Sequential", r"in fit, leave it out"),
    row("schedule-step-without-optimizer", lambda: schedules.StepLR(step_size=2).step(), RuntimeError,
        r"StepLR has no optimizer: build it as StepLR\(optimizer, ...\)"),
    row("cosine-warmup-too-long", lambda: schedules.CosineAnnealingLR(T_max=3, warmup_epochs=3), ValueError,
        r"CosineAnnealingLR: need warmup_epochs < T_max; got T_max=3, warmup_epochs=3"),
    row("linear-lr-start-factor", lambda: schedules.LinearLR(start_factor=0), ValueError,
        r"LinearLR: start_factor must be a number in \(0, 1\]; got 0"),
    row("one-cycle-no-length", lambda: schedules.OneCycleLR(max_lr=0.1, epochs=3), ValueError,
        r"OneCycleLR: give total_steps, or epochs and steps_per_epoch", r"steps_per_epoch=None"),
    row("one-cycle-empty-phase", lambda: schedules.OneCycleLR(max_lr=0.1, total_steps=10, pct_start=0.1), ValueError,
        r"OneCycleLR: pct_start=0.1 with total_steps=10 leaves a phase without steps"),
    row("one-cycle-no-momentum", lambda: fit(optimizer=pn.optim.Adagrad(lr=0.1),
        callbacks=[schedules.OneCycleLR(max_lr=0.1, total_steps=5)]), ValueError,
        r"OneCycleLR: cycle_momentum=True needs an optimizer with a momentum", r"AdaGrad has neither",
        r"pass cycle_momentum=False"),
    row("one-cycle-past-total-steps", lambda: fit(epochs=6, optimizer=pn.optim.SGD(lr=0.1, momentum=0.9),
        callbacks=[schedules.OneCycleLR(max_lr=0.1, total_steps=5, pct_start=0.5)]), ValueError,
        r"OneCycleLR: fit reached batch 6 of a cycle of total_steps=5", r"covers every batch"),
    row("plateau-factor", lambda: schedules.ReduceLROnPlateau(factor=1.5), ValueError,
        r"ReduceLROnPlateau: factor must be a number in \(0, 1\); got 1.5"),
    row("backtracking-factor", lambda: schedules.Backtracking(factor=1), ValueError,
        r"Backtracking: factor must be a number > 1; got 1"),
    # -- optimizers ------------------------------------------------------------------------
    row("lr-zero", lambda: pn.optim.SGD(lr=0), ValueError, r"SGD: lr must be a positive number; got 0"),
    row("lr-nan", lambda: pn.optim.Adam(lr=float("nan")), ValueError,
        r"Adam: lr must be a positive number; got nan", r"finite step size"),
    row("lr-inf", lambda: pn.optim.SGD(lr=float("inf")), ValueError, r"SGD: lr must be a positive number; got inf"),
    row("momentum-one", lambda: pn.optim.SGD(lr=0.1, momentum=1.0), ValueError,
        r"SGD: momentum must be a number in \[0, 1\); got 1.0"),
    row("momentum-negative", lambda: pn.optim.SGD(lr=0.1, momentum=-0.5), ValueError,
        r"SGD: momentum must be a number in \[0, 1\); got -0.5"),
    row("adam-beta-one", lambda: pn.optim.Adam(betas=(0.9, 1.0)), ValueError,
        r"Adam: betas must be two numbers in \[0, 1\); got \(0.9, 1.0\)"),
    row("adam-beta-negative", lambda: pn.optim.AdamW(betas=(-0.1, 0.999)), ValueError,
        r"AdamW: betas must be two numbers in \[0, 1\)"),
    row("weight-decay-negative", lambda: pn.optim.SGD(lr=0.1, weight_decay=-1), ValueError,
        r"SGD: weight_decay must be a finite number >= 0; got -1"),
    row("adam-weight-decay-negative", lambda: pn.optim.Adam(weight_decay=-0.01), ValueError,
        r"Adam: weight_decay must be a finite number >= 0; got -0.01"),
    row("optimizer-given-a-model", lambda: pn.optim.SGD(net(), lr=0.1), TypeError,
        r"SGD takes a list of Parameters; got a Sequential", r"pass its .parameters\(\)"),
    row("optimizer-given-arrays", lambda: pn.optim.Adam([np.ones(3)]), TypeError,
        r"Adam takes portnn Parameters", r"got a ndarray at position 0"),
    row("optimizer-given-layers", lambda: pn.optim.SGD(net().layers, lr=0.1), TypeError,
        r"got a Linear at position 0", r"layer.parameters\(\) or model.parameters\(\)"),
    # -- layer arguments -------------------------------------------------------------------
    row("dropout-p-above-one", lambda: Dropout(1.5), ValueError, r"Dropout", r"0 <= p <= 1", r"got p=1.5"),
    row("dropout-p-negative", lambda: Dropout(-0.1), ValueError, r"Dropout", r"got p=-0.1"),
    row("linear-zero-features", lambda: Linear(0, 3), ValueError, r"Linear: in_features must be a positive int; got 0"),
    # -- building and state ----------------------------------------------------------------
    row("sequential-non-layer", lambda: pn.Sequential([Linear(4, 3), "relu"]), TypeError,
        r"Sequential takes portnn layers", r"got str \('relu'\) at position 1", r"pn.layers.ReLU\(\)"),
    row("sequential-layer-class", lambda: pn.Sequential([Linear(4, 3), ReLU]), TypeError,
        r"position 1", r"a layer class\? call it"),
    row("sequential-seed-bool", lambda: pn.Sequential([Linear(4, 3)], seed=True), TypeError,
        r"Sequential: seed must be None or an integer in 0\.\.2\*\*63-1; got True \(a bool"),
    row("sequential-seed-negative", lambda: pn.Sequential([Linear(4, 3)], seed=-1), ValueError,
        r"Sequential: seed must be None or an integer in 0\.\.2\*\*63-1; got -1$"),
    row("sequential-single-layer", lambda: pn.Sequential(Linear(4, 3)), TypeError,
        r"Sequential takes a list of layers; got a single Linear", r"Sequential\(\[layer, ...\]\)"),
    row("layers-do-not-fit", lambda: pn.Sequential([Linear(4, 3), Linear(4, 3)]), ShapeError,
        r"layer 1 \(Linear\(4, 3\)\) does not fit after layer 0", r"outputs \(batch, 3\)",
        r"expects input of shape \(batch, 4\)"),
    row("load-state-wrong-shape", lambda: net().load_state_dict({**net().state_dict(), "0.weight": np.ones((2, 2))}),
        ValueError, r"load_state_dict: 0.weight has shape \(2, 2\) in the state but \(8, 4\) in the model"),
    row("load-state-missing-key", lambda: net().load_state_dict({"0.weight": np.ones((8, 4))}), KeyError,
        r"load_state_dict: missing \['0.bias'", r"strict=False"),
    row("load-state-not-a-dict", lambda: net().load_state_dict([np.ones((8, 4))]), TypeError,
        r"load_state_dict takes a dict", r"got list"),
    # -- backends and devices -----------------------------------------------------------
    row("unknown-backend", lambda: pn.set_backend("jax"), ValueError,
        r"unknown backend 'jax'", r"choose one of 'numpy', 'cupy', 'torch', 'array_api_strict', 'auto'"),
    row("unknown-device-strict", lambda: pn.set_backend("array_api_strict", "device9"), ValueError,
        r"array_api_strict backend takes devices", r"'device1'", r"got device='device9'"),
    row("unknown-device-numpy", lambda: pn.set_backend("numpy", "cuda"), ValueError,
        r"numpy backend has one device, 'cpu'; got device='cuda'"),
    row("cupy-without-gpu", cupy_without_gpu, pn.BackendUnavailableError,
        r"backend 'cupy' is unavailable", r"set_backend\('auto'\)"),
    # a torch CPU tensor into a NumPy model is taken in place through DLPack (tests/test_dlpack.py); these are not
    row("fit-torch-into-device1-model", lambda: fit(torch_tensor((10, 4)), model=on_device1(net)), TypeError,
        r"Sequential.fit: x is a torch array on cpu", r"live on array_api_strict:device1", r"another device",
        r"portnn.backends.to_numpy\(x\)", r"model.to\('torch', device='cpu'\)"),
    row("fit-torch-requires-grad", lambda: fit(torch_tensor((10, 4), requires_grad=True)), TypeError,
        r"Sequential.fit: x is a torch array on cpu, on the model's device \(numpy:cpu\)", r"DLPack cannot share it",
        r"detach\(\)", r"portnn.backends.to_numpy\(x\)"),
    row("layer-torch-into-numpy-layer", lambda: Linear(3, 2)(torch_tensor((1, 3))), TypeError,
        r"Linear\(3, 2\)", r"the input is a torch array on cpu", r"the parameters are a numpy array on cpu",
        r"layer.to\('torch'\)"),
    row("loss-two-libraries", lambda: CE()(torch_tensor((2, 3)), np.array([0, 1])), TypeError,
        r"CrossEntropy\(\)", r"different libraries", r"torch"),
    # -- metrics ----------------------------------------------------------------------
    row("accuracy-logits-as-probabilities", lambda: pn.metrics.accuracy(np.array([0, 1]), np.array([[-2.0], [3.0]])),
        ValueError, r"accuracy: y_pred of shape \(2, 1\) holds one score per example", r"from -2.0 to 3.0",
        r"outside \[0, 1\]", r"threshold=0.0 for logits"),
    row("metrics-threshold-with-class-scores",
        lambda: pn.metrics.confusion_matrix(np.array([0, 1]), np.eye(3)[:2], threshold=0.0), ValueError,
        r"confusion_matrix: threshold applies to one score per example", r"shape \(2, 3\)", r"drop threshold="),
    row("fit-strict-into-numpy-model", lambda: fit(strict((10, 4), "device1")), TypeError,
        r"x is a array_api_strict array on device1", r"live on numpy:cpu", r"another device", r"portnn.backends.to_numpy\(x\)",
        r"model.to\('array_api_strict', device='device1'\)"),
    row("fit-other-device", lambda: fit(strict((10, 4)), model=on_device1(net)), TypeError,
        r"Sequential.fit: x is a array_api_strict array on device2", r"live on array_api_strict:device1",
        r"x.to_device\(model.backend.device\)", r"model.to\('array_api_strict', device='device2'\)"),
    row("fit-labels-other-device", lambda: fit(X, strict((10,)), model=on_device1(net)), TypeError,
        r"Sequential.fit: y is a array_api_strict array on device2", r"array_api_strict:device1"),
    row("layer-other-device", lambda: on_device1(lambda: Linear(3, 2))(strict((1, 3))), ValueError,
        r"Linear\(3, 2\) got input on device", r"device2", r"parameters are on .*device1", r"model.to"),
    # == issue 16: arguments of constructors and functions (type, range, finiteness; tests/test_arguments.py walks them all) ==
    row("arg-int-given-a-bool", lambda: Linear(True, 3), TypeError,
        r"Linear: in_features must be a positive int; got True \(a bool\)"),
    row("arg-int-given-a-float", lambda: Flatten(1.5), TypeError,
        r"Flatten: start_dim must be an integer >= 1 \(axis 0 is the batch\); got 1.5 \(a float\)"),
    row("arg-pair-given-numpy-floats", lambda: Conv2d(1, 8, np.float64(3.0)), TypeError,
        r"Conv2d\(1, 8\): kernel_size must be an int or a pair of positive ints; got kernel_size=np.float64\(3.0\)"),
    row("arg-flag-given-a-str", lambda: Linear(4, 3, bias="no"), TypeError,
        r"Linear: bias must be True or False; got 'no' \(a str\)"),
    row("arg-seed-negative", lambda: Dropout(0.5, seed=-1), ValueError,
        r"Dropout: seed must be None or an integer in 0..2\*\*63-1; got -1"),
    row("arg-number-given-text", lambda: pn.layers.LeakyReLU("0.1"), TypeError,
        r"LeakyReLU: negative_slope must be a finite number; got '0.1'", r"pass the number negative_slope=0.1, not text"),
    row("arg-eps-nan", lambda: BatchNorm1d(3, eps=float("nan")), ValueError,
        r"BatchNorm1d\(3\): eps must be a number >= 0; got nan"),
    row("arg-lr-bool", lambda: pn.optim.SGD(lr=True), TypeError,
        r"SGD: lr must be a positive number; got True \(a bool; pass a finite step size such as lr=0.01\)"),
    row("arg-clip-norm-nan", lambda: pn.optim.clip_grad_norm_([], max_norm=float("nan")), ValueError,
        r"clip_grad_norm_: max_norm must be a number >= 0; got nan", r"math.inf measures the norm without clipping"),
    row("arg-baseline-nan", lambda: EarlyStopping(baseline=float("nan")), ValueError,
        r"EarlyStopping: baseline must be a finite number or None; got nan"),
    row("arg-plateau-given-a-model", lambda: schedules.ReduceLROnPlateau(net()), TypeError,
        r"ReduceLROnPlateau: optimizer must be a portnn optimizer", r"got Sequential", r"in fit, leave it out"),
    row("arg-one-cycle-unused-epochs", lambda: schedules.OneCycleLR(max_lr=0.1, total_steps=10, epochs="3"), TypeError,
        r"OneCycleLR: epochs must be an integer >= 1 or None; got '3'", r"pass the number epochs=3"),
    row("arg-backtracking-tolerance", lambda: schedules.Backtracking(tolerance=-1), ValueError,
        r"Backtracking: tolerance must be a finite number > -1; got -1"),
    row("arg-label-smoothing-text", lambda: CE(label_smoothing="0.1"), TypeError,
        r"CrossEntropy: label_smoothing must be in \[0, 1\); got '0.1'", r"label_smoothing=0.1, not text"),
    row("arg-init-std-text", lambda: pn.init.normal("0.2"), TypeError,
        r"normal: std must be >= 0; got '0.2'", r"std=0.2, not text"),
    row("arg-top-k-float", lambda: pn.metrics.top_k_accuracy(np.array([0, 1]), np.eye(2), k=1.0), TypeError,
        r"top_k_accuracy: k must be an int in 1..C", r"got 1.0 \(a float; pass k=1\)"),
    row("arg-metric-threshold-nan",
        lambda: pn.metrics.accuracy(np.array([0, 1]), np.array([0.2, 0.7]), threshold=float("nan")), ValueError,
        r"accuracy: threshold must be a finite number \(0.0 for logits, 0.5 for probabilities\); got nan"),
    row("arg-metric-validate-text", lambda: pn.metrics.accuracy(np.array([0, 1]), np.array([0, 1]), validate="no"),
        TypeError, r"accuracy: validate must be True or False; got 'no'"),
    row("arg-toy-seed-float", lambda: pn.datasets.toy.moons(10, seed=1.5), TypeError,
        r"moons: seed must be None or an integer in 0..2\*\*63-1; got 1.5 \(a float\)"),
]
# fmt: on


# -- issue 16, part A: run arguments, checkpoints and files, checked before anything changes -----
def batchnorm_without_running_stats() -> pn.Sequential:
    return pn.Sequential([Linear(4, 8), BatchNorm1d(8, track_running_stats=False), ReLU(), Linear(8, 3)], seed=0)


def load_crafted_architecture() -> Any:
    """pn.load of a checksummed file of a few hundred bytes whose architecture declares a Linear(100000, 100000)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "crafted.safetensors"
        net().save(path)
        tensors, meta = pn.serialization.read_file(path)
        meta["architecture"]["layers"][0]["config"].update(in_features=100_000, out_features=100_000)
        pn.serialization.write_file(path, tensors, meta)
        return pn.load(path)


def load_unknown_saved_loss() -> Any:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.safetensors"
        net().compile(loss=CE(), optimizer="sgd").save(path)
        tensors, meta = pn.serialization.read_file(path)
        meta["compile"]["loss"]["class_name"] = "os.system"
        pn.serialization.write_file(path, tensors, meta)
        return pn.load(path)


def read_deeply_nested_meta() -> Any:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "deep.safetensors"
        deep: Any = []
        for _ in range(100):
            deep = [deep]
        pn.serialization.write_file(path, {}, {"deep": deep})
        return pn.serialization.read_file(path)


def resume_edited_checkpoint() -> Any:
    """A checkpoint whose optimizer learning rate was edited to a string (checksummed again), resumed."""
    with tempfile.TemporaryDirectory() as folder:
        fit(checkpoint=folder)
        path = Path(folder) / "checkpoint.safetensors"
        tensors, meta = pn.serialization.read_file(path)
        meta["optimizer"]["hyperparameters"]["lr"] = "fast"
        pn.serialization.write_file(path, tensors, meta)
        return fit(resume=folder)


# fmt: off
ROWS += [
    row("fit-shuffle-not-bool", lambda: fit(shuffle="no"), TypeError,
        r"Sequential.fit: shuffle must be True or False; got 'no' \(a str\)"),
    row("fit-l2-bool", lambda: fit(l2=True), ValueError,
        r"Sequential.fit/train_step: l2 must be a finite number >= 0; got True \(a bool\)"),
    row("fit-seed-negative", lambda: fit(seed=-1), ValueError, r"Sequential.fit: seed must be an integer >= 0; got -1"),
    row("fit-checkpoint-a-file", lambda: fit(checkpoint=DOC), ValueError,
        r"Sequential.fit: checkpoint='.*input-validation.md' cannot be written: .*input-validation.md is a file, not a folder"),
    row("fit-checkpoint-below-a-file", lambda: fit(checkpoint=DOC / "run"), ValueError,
        r"checkpoint='.*input-validation.md/run' cannot be written", r"is a file, not a folder"),
    row("fit-checkpoint-not-a-path", lambda: fit(checkpoint=3), TypeError,
        r"Sequential.fit: checkpoint must be a directory \(a str or path\) or None; got 3"),
    row("fit-resume-a-file", lambda: fit(resume=DOC), ValueError,
        r"Sequential.fit: resume='.*input-validation.md' is a file, not a checkpoint", r"checkpoint.safetensors"),
    row("fit-validation-one-example-batchnorm",
        lambda: fit(validation_data=(X[:1], Y[:1]), model=batchnorm_without_running_stats()), ValueError,
        r"Sequential.fit validation_data: x holds a single example, on which the model cannot run even in inference",
        r"pass 2 or more examples"),
    row("predict-to-numpy-not-bool", lambda: net().predict(X, to_numpy="yes"), TypeError,
        r"Sequential.predict: to_numpy must be True or False; got 'yes'"),
    row("evaluate-return-dict-not-bool", lambda: net().evaluate(X, Y, loss=CE(), return_dict=1), TypeError,
        r"Sequential.evaluate: return_dict must be True or False; got 1 \(an int\)"),
    row("compile-unknown-optimizer", lambda: net().compile(loss=CE(), optimizer="sgdd"), ValueError,
        r"Sequential.compile: unknown optimizer 'sgdd'", r"'sgd', 'adam', 'adamw', 'rmsprop', 'adagrad'"),
    row("compile-optimizer-class", lambda: net().compile(loss=CE(), optimizer=pn.optim.Adam), TypeError,
        r"Sequential.compile needs an optimizer such as pn.optim.SGD\(lr=0.1\) or 'adam'", r"a class\? build it"),
    row("compile-unknown-loss", lambda: net().compile(loss="hinge", optimizer="sgd"), ValueError,
        r"Sequential.compile: unknown loss 'hinge'", r"'sparse_categorical_crossentropy'"),
    row("load-architecture-larger-than-file", load_crafted_architecture, pn.CheckpointError,
        r"crafted.safetensors: its architecture declares 10000100000 parameter and buffer values up to layer 0 \(Linear\), "
        r"but the file holds 67", r"nothing was built"),
    row("load-unknown-saved-loss", load_unknown_saved_loss, pn.CheckpointError,
        r"its loss 'os.system' is not one of portnn's \(BinaryCrossEntropy, CrossEntropy, MSE\)"),
    row("read-meta-nested-too-deep", read_deeply_nested_meta, pn.CheckpointError,
        r"deep.safetensors: malformed JSON metadata \(it nests more than 64 levels deep\)"),
    row("resume-edited-checkpoint", resume_edited_checkpoint, pn.CheckpointError,
        r"checkpoint.safetensors: its optimizer hyperparameter lr='fast' is not of the kind of 0.1",
        r"the file is damaged or was edited"),
]
# fmt: on


# -- the command line and PORTNN_BACKEND (issue 16) --------------------------------------------
def portnn(*argv: str, env: str | None = None) -> Any:
    """Run ``portnn ARGV`` in this process (with ``PORTNN_BACKEND=env``); raise SystemExit with its status and stderr.

    Every refusal is one line and a status of 2, before any data is read (the data folder is empty).
    """
    from portnn.cli import main

    err = io.StringIO()
    with _environment("PORTNN_BACKEND", env), contextlib.redirect_stderr(err):
        data = ["--data-dir", str(NOWHERE / "portnn-no-data"), "--no-download"] if argv[0] == "train" else []
        status = main([*argv, *data])
    raise SystemExit(f"exit {status}: {err.getvalue()}")


@contextlib.contextmanager
def _environment(name: str, value: str | None) -> Any:
    old = os.environ.get(name)
    if value is not None:
        os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


def backend_from_environment(value: str) -> Any:
    """``pn.get_backend()`` in a process started with ``PORTNN_BACKEND=value`` (a context where none was chosen yet)."""
    with _environment("PORTNN_BACKEND", value):
        return contextvars.Context().run(pn.get_backend)


ONE_LINE = r"\(portnn train --help lists the options\)\n$"

# fmt: off
ROWS += [
    row("env-backend-device", lambda: backend_from_environment("numpy:gpu"), ValueError,
        r"^PORTNN_BACKEND='numpy:gpu' \(name or name:device\): the numpy backend has one device, 'cpu'; got device='gpu'$"),
    row("cli-env-backend-device", lambda: portnn("train", env="numpy:gpu"), SystemExit,
        r"^exit 2: portnn train: PORTNN_BACKEND='numpy:gpu' \(name or name:device\): the numpy backend has one device, "
        r"'cpu'; got device='gpu'\n$"),
    row("cli-epochs-zero", lambda: portnn("train", "--epochs", "0"), SystemExit,
        r"^exit 2: portnn train: error: --epochs must be >= 1; got 0 ", ONE_LINE),
    row("cli-lr-negative", lambda: portnn("train", "--lr", "-1"), SystemExit,
        r"^exit 2: portnn train: error: --lr must be a finite number > 0; got -1 ", ONE_LINE),
    row("cli-dropout-above-one", lambda: portnn("train", "--dropout", "1.5"), SystemExit,
        r"^exit 2: portnn train: error: --dropout must be a number in \[0, 1\); got 1.5 ", ONE_LINE),
    row("cli-hidden-zero", lambda: portnn("train", "--hidden", "0"), SystemExit,
        r"^exit 2: portnn train: error: --hidden must be >= 1; got 0 ", ONE_LINE),
    row("cli-batch-size-not-an-integer", lambda: portnn("train", "--batch-size", "12.5"), SystemExit,
        r"^exit 2: portnn train: error: --batch-size must be an integer >= 1; got 12.5 ", ONE_LINE),
    row("cli-momentum-for-adam", lambda: portnn("train", "--optimizer", "adam", "--momentum", "0.5"), SystemExit,
        r"^exit 2: portnn train: --momentum is SGD's, but this run's optimizer is adam: add --optimizer sgd, or drop "
        r"--momentum\n$"),
    row("cli-channels-for-mlp", lambda: portnn("train", "--channels", "8", "16"), SystemExit,
        r"^exit 2: portnn train: --channels set the CNN's layers, but this run trains an MLP: add --model cnn "
        r"\(or --preset cnn\)\n$"),
    row("cli-demo-layers-negative", lambda: portnn("demo", "toy", "--layers", "-1"), SystemExit,
        r"^exit 2: portnn demo toy: error: --layers must be >= 0; got -1 \(portnn demo toy --help lists the options\)\n$"),
    row("cli-hidden-for-vit", lambda: portnn("train", "--model", "vit", "--hidden", "32"), SystemExit,
        r"^exit 2: portnn train: --hidden sets the layers of a cnn or lstm or mlp or strided model, but this run trains a "
        r"vit model: add --model cnn \(or --preset cnn\), or drop --hidden\n$"),
    row("cli-dropout-for-resnet", lambda: portnn("train", "--model", "resnet", "--dropout", "0.3"), SystemExit,
        r"^exit 2: portnn train: --dropout sets the layers of a cnn or mlp model, but this run trains a resnet model: add "
        r"--model cnn \(or --preset cnn\), or drop --dropout\n$"),
    row("cli-check-every-without-target", lambda: portnn("train", "--check-every", "50"), SystemExit,
        r"^exit 2: portnn train: --check-every sets how often --target is checked, but this run has no --target: add "
        r"--target ACC, or drop --check-every\n$"),
]
# fmt: on

# -- issue 12: LayerNorm, GELU, SiLU, Conv1d ---------------------------------------------------------
# fmt: off
ROWS += [
    row("layernorm-trailing-axes", lambda: pn.layers.LayerNorm(64)(ones((8, 10, 32))), ShapeError,
        r"LayerNorm\(\(64,\)\) got input of shape \(8, 10, 32\)", r"last 1 axes \(32,\) must equal normalized_shape \(64,\)",
        r"\(LayerNorm\(32\)\) or reshape the input"),
    row("layernorm-one-example", lambda: pn.layers.LayerNorm(5)(ones(5)), ShapeError,
        r"LayerNorm\(\(5,\)\) got input of shape \(5,\)", r"a single example\? use x.reshape\(1, \*x.shape\)"),
    row("conv1d-rank", lambda: pn.layers.Conv1d(1, 2, 3)(ones((2, 20))), ShapeError,
        r"Conv1d\(1, 2, kernel_size=3\)", r"\(2, 20\)", r"expected \(batch, 1, length\)", r"x.reshape\(-1, 1, L\)"),
    row("conv1d-channels-last", lambda: pn.layers.Conv1d(3, 4, 3)(ones((2, 20, 3))), ShapeError,
        r"Conv1d\(3, 4", r"\(2, 20, 3\)", r"channels last\? .*transpose\(0, 2, 1\)"),
    row("conv1d-too-short", lambda: pn.layers.Conv1d(1, 2, 5)(ones((1, 1, 3))), ShapeError,
        r"Conv1d\(1, 2", r"\(1, 1, 3\)", r"padded length 3 is shorter than the kernel 5", r"more padding"),
    row("arg-gelu-approximate", lambda: pn.layers.GELU("erf"), ValueError,
        r"GELU: approximate must be 'none' \(the exact form\) or 'tanh'; got approximate='erf'"),
    row("arg-layernorm-shape-float", lambda: pn.layers.LayerNorm(4.0), TypeError,
        r"LayerNorm: normalized_shape must be a positive int or a tuple of them", r"got normalized_shape=4.0"),
]
# fmt: on

# fmt: off
ROWS += [  # composite layers (portnn/layers/combinators.py)
    row("residual-changes-shape", lambda: pn.layers.Residual([Linear(4, 3)])(ones((5, 4))), ShapeError,
        r"Residual\(Sequential\) computes x \+ block\(x\)", r"\(5, 4\) to \(5, 3\)", r"must keep the shape"),
    row("residual-not-a-layer", lambda: pn.layers.Residual(ReLU), TypeError,
        r"Residual\(block\) takes a layer or a non-empty list of layers", r"call it: ReLU\(\)"),
    row("parallel-no-branches", lambda: pn.layers.Parallel(), ValueError, r"Parallel takes one or more branches"),
    row("parallel-merge-unknown", lambda: pn.layers.Parallel(ReLU(), merge="mean"), ValueError,
        r"Parallel: merge is 'mean'", r"\['concat', 'sum'\]"),
    row("parallel-batch-axis", lambda: pn.layers.Parallel(ReLU(), axis=0), ValueError, r"axis=0 is the batch axis", r"axis=1"),
    row("parallel-axis-out-of-range", lambda: pn.layers.Parallel(ReLU(), axis=2)(ones((5, 4))), ShapeError,
        r"Parallel\(1 branch, merge='concat', axis=2\) got input of shape \(5, 4\)", r"pass axis=1"),
    row("parallel-sum-shapes-differ", lambda: pn.layers.Parallel(Linear(4, 2), Linear(4, 3), merge="sum")(ones((5, 4))),
        ShapeError, r"Parallel\(2 branches, merge='sum'\) adds them", r"\(5, 2\), \(5, 3\)", r"same shape"),
]
# fmt: on


def fit_streamed(x: Any, y: Any = None, **kw: Any) -> Any:
    return net().fit(x, y, loss=CE(), optimizer=pn.optim.SGD(lr=0.1), verbose=0, **kw)


def two_batches() -> Any:
    yield ones((4, 4)), np.zeros(4, dtype=np.int64)


class _TwoRanks(pn.training.LocalStrategy):
    size = 2


# fmt: off
ROWS += [
    row("fit-without-y", lambda: fit_streamed(ones((6, 4))), TypeError,
        r"^Sequential.fit: y is missing; pass the targets \(fit\(x, y\)\), or a pn.data.DataLoader that gives \(x, y\) "
        r"batches \(fit\(loader\)\)$"),
    row("fit-loader-and-y", lambda: fit_streamed(pn.data.DataLoader((ones((6, 4)), np.zeros(6)), 2), np.zeros(6)),
        ValueError, r"^Sequential.fit: x is a DataLoader, which gives the targets with the inputs; pass it alone \(no y\)"),
    row("fit-generator-epochs", lambda: fit_streamed(two_batches(), epochs=2), ValueError,
        r"^Sequential.fit: a generator gives one pass over its batches, so epochs=2 cannot be trained"),
    row("fit-loader-distributed", lambda: fit_streamed(pn.data.DataLoader((ones((6, 4)), np.zeros(6)), 2),
                                                       distributed=_TwoRanks()), ValueError,
        r"^Sequential.fit: distributed training with a DataLoader is not supported: every rank would read the same "
        r"batches\. Pass the arrays themselves \(memory-mapped ones stream"),
    row("loader-batch-size-for-batches", lambda: pn.data.DataLoader(two_batches(), 32), ValueError,
        r"^DataLoader: generator is an iterable of ready batches, so batch_size=32 cannot apply; pass batch_size=None"),
]
# fmt: on

# fmt: off
ROWS += [  # the loss read interval (portnn/training.py)
    row("fit-steps-per-execution", lambda: fit(steps_per_execution=0), ValueError,
        r"^Sequential.fit: steps_per_execution must be an integer >= 1; got 0$"),
]
# fmt: on


@pytest.mark.parametrize(("call", "error", "patterns"), ROWS)
def test_row(call: Callable[[], Any], error: type[Exception], patterns: tuple[str, ...]) -> None:
    with pn.use_backend("numpy"), np.errstate(all="ignore"):
        with pytest.raises(error) as info:
            call()
    message = str(info.value.args[0]) if isinstance(info.value, KeyError) else str(info.value)
    missing = [p for p in patterns if not re.search(p, message)]
    assert not missing, f"message {message!r} lacks {missing}"


def test_the_table_in_the_docs_lists_every_row() -> None:
    documented = re.findall(r"^\| `([a-z0-9-]+)` \|", DOC.read_text(encoding="utf-8"), flags=re.M)
    assert len(documented) == len(set(documented)), "a row id appears twice in the docs"
    assert sorted(documented) == sorted(p.id for p in ROWS)


# -- what is accepted: the conversion rule ---------------------------------------------------
def test_fit_evaluate_predict_convert_ints_and_bools_values_unchanged() -> None:
    with pn.use_backend("numpy"):
        model = net()
        xi = np.arange(40, dtype=np.int64).reshape(10, 4) % 5
        as_float = pn.to_numpy(model.predict(xi.astype(np.float32)))
        out = pn.to_numpy(model.predict(xi))
        assert out.dtype == np.float32
        np.testing.assert_array_equal(out, as_float)
        np.testing.assert_array_equal(pn.to_numpy(model.predict(xi > 2)), pn.to_numpy(model.predict((xi > 2) * 1.0)))
        np.testing.assert_array_equal(pn.to_numpy(model.predict(xi.tolist())), as_float)  # lists too
        assert model.evaluate(xi, Y, loss=CE()) == model.evaluate(xi.astype(np.float32), Y, loss=CE())
        # integer regression targets become the model's float dtype
        pn.Sequential([Linear(4, 1)], seed=0).fit(xi, Y[:, None], loss=MSE(), optimizer=pn.optim.SGD(lr=0.01), verbose=0)
        fit(X, Y, epochs=np.int64(1), batch_size=np.int32(4))  # NumPy integers are integers


# -- a refused fit changes no weight ----------------------------------------------------------
def _model_with_state() -> pn.Sequential:
    return pn.Sequential([Linear(4, 8), BatchNorm1d(8), ReLU(), Linear(8, 3)], seed=0)


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"y": np.arange(10) % 4}, id="labels-out-of-range"),
        pytest.param({"x": with_nan(1)}, id="nan-in-x"),
        pytest.param({"l2": -1.0}, id="negative-l2"),
        pytest.param({"validation_data": (X, Y[:5])}, id="bad-validation-data"),
    ],
)
def test_a_refused_fit_leaves_the_weights_unchanged(kwargs: dict[str, Any]) -> None:
    with pn.use_backend("numpy"):
        model = _model_with_state()
        optimizer = pn.optim.SGD(lr=0.5, momentum=0.9)
        before = {k: pn.to_numpy(v).copy() for k, v in model.state_dict().items()}
        with pytest.raises((ValueError, TypeError)):
            fit(kwargs.pop("x", X), kwargs.pop("y", Y), model=model, optimizer=optimizer, **kwargs)
        after = model.state_dict()
        assert sorted(after) == sorted(before)
        for name, value in before.items():
            np.testing.assert_array_equal(pn.to_numpy(after[name]), value, err_msg=name)
        assert optimizer.state == {} and optimizer.step_count == 0


# fmt: off
ROWS += [  # MultiHeadAttention (issue 12)
    row("attention-embed-size", lambda: pn.layers.MultiHeadAttention(8, 2)(ones((2, 5, 6))), ShapeError,
        r"MultiHeadAttention\(8, 2\)", r"\(2, 5, 6\)", r"expected \(batch, time, 8\)", r"embed_dim=6"),
    row("attention-features-first", lambda: pn.layers.MultiHeadAttention(8, 2)(ones((2, 8, 5))), ShapeError,
        r"MultiHeadAttention\(8, 2\)", r"\(2, 8, 5\)", r"expected \(batch, time, 8\)", r"x.transpose\(0, 2, 1\)"),
    row("attention-one-sequence", lambda: pn.layers.MultiHeadAttention(8, 2)(ones((5, 8))), ShapeError,
        r"MultiHeadAttention\(8, 2\)", r"\(5, 8\)", r"expected \(batch, time, 8\)", r"x.reshape\(1, time, embed_dim\)"),
    row("attention-heads-divide", lambda: pn.layers.MultiHeadAttention(10, 3), ValueError,
        r"MultiHeadAttention\(embed_dim=10, num_heads=3\)", r"divisible by num_heads", r"choose num_heads among 1, 2, 5, 10"),
    row("attention-dropout-range", lambda: pn.layers.MultiHeadAttention(8, 2, dropout=1.5), ValueError,
        r"MultiHeadAttention", r"0 <= dropout <= 1", r"got dropout=1.5"),
]
# fmt: on

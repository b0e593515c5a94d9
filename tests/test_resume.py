"""Training checkpoints: exact resume (also after SIGKILL), never a bad checkpoint, clear refusals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import portnn as pn
from portnn.serialization import CheckpointError, read_file

X = np.random.default_rng(0).normal(size=(300, 6)).astype(np.float32)
Y = np.arange(300) % 3


def build(case=None) -> pn.Sequential:
    layers = [
        pn.layers.Linear(6, 16),
        pn.layers.BatchNorm1d(16),
        pn.layers.ReLU(),
        pn.layers.Dropout(0.3),
        pn.layers.Linear(16, 3),
    ]
    model = pn.Sequential(layers, seed=0)
    return model if case is None else model.to(case.name, case.device)


class Interrupt(pn.callbacks.Callback):
    """Raises after ``after`` batches: an interrupted run."""

    def __init__(self, after: int) -> None:
        self.after, self.seen = after, 0

    def on_batch_end(self, batch, logs):
        self.seen += 1
        if self.seen == self.after:
            raise KeyboardInterrupt


def train(model, *, interrupt=None, **kwargs):
    callbacks = [pn.optim.schedules.CosineAnnealingLR(T_max=4)]
    if interrupt is not None:
        callbacks.append(Interrupt(interrupt))
    return model.fit(
        X, Y, loss=pn.losses.CrossEntropy(), optimizer=pn.optim.Adam(lr=1e-2), epochs=4, batch_size=32,
        callbacks=callbacks, verbose=0, **kwargs,
    )  # fmt: skip


def host_state(model) -> dict[str, np.ndarray]:
    return {k: pn.to_numpy(v).copy() for k, v in model.state_dict().items()}


def assert_bit_identical(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
        assert a[k].tobytes() == b[k].tobytes(), f"{k} differs"


@pytest.mark.parametrize("interrupt", [1, 7, 10, 23, 39])  # 10 steps an epoch: mid-epoch, at an epoch's end, late
def test_resume_is_bit_identical(case, tmp_path, interrupt):
    reference = build(case)
    ref_history = train(reference, record=True)
    model = build(case)
    with pytest.raises(KeyboardInterrupt):
        train(model, interrupt=interrupt, checkpoint=tmp_path, checkpoint_every=3, record=True)
    resumed = build(case)  # a fresh process would build the model again
    history = train(resumed, checkpoint=tmp_path, checkpoint_every=3, resume=tmp_path, record=True)
    assert_bit_identical(host_state(reference), host_state(resumed))
    assert history.history["loss"] == ref_history.history["loss"]
    assert history.history["val_loss" if "val_loss" in history.history else "accuracy"] == ref_history.history["accuracy"]
    assert history.records["grad_norm"] == ref_history.records["grad_norm"]
    assert history.records["step"] == ref_history.records["step"]
    for a, b in zip(history.records["active_fraction"]["relu"], ref_history.records["active_fraction"]["relu"], strict=True):
        np.testing.assert_array_equal(a, b)


def test_resume_without_a_checkpoint_starts_from_the_beginning(tmp_path):
    reference, model = build(), build()
    train(reference)
    train(model, checkpoint=tmp_path, resume=tmp_path)
    assert_bit_identical(host_state(reference), host_state(model))
    assert (tmp_path / "checkpoint.safetensors").exists()
    meta = read_file(tmp_path / "checkpoint.safetensors")[1]
    assert meta["progress"]["epoch"] == 4 and meta["progress"]["global_step"] == 40


def test_a_finished_run_resumed_does_nothing_more(tmp_path):
    model = build()
    train(model, checkpoint=tmp_path)
    before = host_state(model)
    again = build()
    history = train(again, resume=tmp_path)
    assert_bit_identical(before, host_state(again))
    assert len(history.history["loss"]) == 4


def test_nonfinite_parameters_never_overwrite_the_last_good_checkpoint(tmp_path):
    model = pn.Sequential([pn.layers.Linear(6, 3)], seed=0)
    kwargs = dict(loss=pn.losses.MSE(), epochs=3, batch_size=30, verbose=0, checkpoint=tmp_path, checkpoint_every=1)
    y = np.full((300, 3), 100.0, np.float32)
    model.fit(X, y, optimizer=pn.optim.SGD(lr=1e-3), **kwargs)  # a good run leaves a good checkpoint
    # a step size so large that one update overflows the weights while the loss that led to it was finite
    with (
        np.errstate(over="ignore", invalid="ignore"),
        pytest.raises(FloatingPointError, match="loss became"),
        pytest.warns(RuntimeWarning, match="not overwritten"),
    ):
        model.fit(X, y, optimizer=pn.optim.SGD(lr=1e37), **kwargs)
    tensors, meta = read_file(tmp_path / "checkpoint.safetensors")
    assert meta["progress"]["global_step"] == 30 and meta["progress"]["epoch"] == 3  # the good run's last checkpoint
    for name, value in tensors.items():
        assert np.all(np.isfinite(value)), name


def test_resume_refuses_a_checkpoint_of_another_model_and_leaves_the_model_alone(tmp_path):
    train(build(), checkpoint=tmp_path)
    other = pn.Sequential([pn.layers.Linear(6, 8), pn.layers.ReLU(), pn.layers.Linear(8, 3)], seed=1)
    before = host_state(other)
    with pytest.raises(CheckpointError, match="checkpoint.safetensors"):
        train(other, resume=tmp_path)
    assert_bit_identical(before, host_state(other))


def test_resume_refuses_another_optimizer(tmp_path):
    train(build(), checkpoint=tmp_path)
    model = build()
    with pytest.raises(CheckpointError, match="Adam.*SGD"):
        model.fit(X, Y, loss=pn.losses.CrossEntropy(), optimizer=pn.optim.SGD(lr=0.1), epochs=4, resume=tmp_path, verbose=0)


def test_checkpoint_every_needs_a_directory():
    with pytest.raises(ValueError, match="checkpoint_every needs checkpoint"):
        build().fit(X, Y, loss=pn.losses.CrossEntropy(), optimizer=pn.optim.SGD(lr=0.1), checkpoint_every=5, verbose=0)


def test_a_model_file_is_not_a_training_checkpoint(tmp_path):
    model = build()
    model.save(tmp_path / "model.safetensors")
    with pytest.raises(CheckpointError, match="not a training checkpoint"):
        train(build(), resume=tmp_path / "model.safetensors")


def test_a_training_checkpoint_loads_as_a_model(tmp_path):
    model = build()
    train(model, checkpoint=tmp_path)
    loaded = pn.load(tmp_path / "checkpoint.safetensors")
    assert_bit_identical(host_state(model), host_state(loaded))


SCRIPT = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    import portnn as pn

    mode, directory, out = sys.argv[1:4]
    x = np.random.default_rng(0).normal(size=(512, 8)).astype(np.float32)
    y = np.arange(512) % 4
    model = pn.Sequential(
        [pn.layers.Linear(8, 32), pn.layers.BatchNorm1d(32), pn.layers.ReLU(), pn.layers.Dropout(0.2), pn.layers.Linear(32, 4)],
        seed=0,
    )

    class Slow(pn.callbacks.Callback):
        def on_batch_end(self, batch, logs):
            if mode == "slow":
                time.sleep(0.05)

    where = None if mode == "plain" else directory
    model.fit(
        x, y, loss=pn.losses.CrossEntropy(), optimizer=pn.optim.Adam(lr=1e-2), epochs=4, batch_size=32,
        callbacks=[pn.optim.schedules.CosineAnnealingLR(T_max=4), Slow()], verbose=0,
        checkpoint=where, checkpoint_every=1 if where else None, resume=where,
    )
    np.savez(out, **{k: pn.to_numpy(v) for k, v in model.state_dict().items()})
    """
)


def _run(script: Path, *args: str) -> None:
    subprocess.run([sys.executable, str(script), *args], check=True, timeout=120)


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_is_bit_identical(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    directory = tmp_path / "run"
    _run(script, "plain", str(directory), str(tmp_path / "reference.npz"))

    proc = subprocess.Popen([sys.executable, str(script), "slow", str(directory), str(tmp_path / "never.npz")])
    checkpoint, step, deadline = directory / "checkpoint.safetensors", 0, time.monotonic() + 60
    try:
        while time.monotonic() < deadline and step < 25:  # 16 steps an epoch: into the second epoch
            if checkpoint.exists():
                step = read_file(checkpoint)[1]["progress"]["global_step"]  # atomic replace: never a torn file
            time.sleep(0.02)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert 25 <= step < 64, f"the run was killed at step {step}, not mid-run"
    assert not (tmp_path / "never.npz").exists()
    assert [p.name for p in directory.iterdir()] == ["checkpoint.safetensors"], "a temporary file was left behind"

    _run(script, "resume", str(directory), str(tmp_path / "resumed.npz"))
    with (
        np.load(tmp_path / "reference.npz", allow_pickle=False) as ref,
        np.load(tmp_path / "resumed.npz", allow_pickle=False) as got,
    ):
        assert_bit_identical(dict(ref), dict(got))


def _interrupted_then_resumed(tmp_path, make_callbacks, *, epochs=6, interrupt=25, **kwargs):
    """(uninterrupted model and history, resumed model and history) of one run, with fresh callbacks each time."""
    fit = dict(loss=pn.losses.CrossEntropy(), epochs=epochs, batch_size=32, verbose=0, validation_data=(X[:60], Y[:60]))
    fit.update(kwargs)
    reference = build()
    ref_history = reference.fit(X, Y, optimizer=pn.optim.SGD(lr=0.5), callbacks=make_callbacks(), **fit)
    with pytest.raises(KeyboardInterrupt):
        build().fit(
            X, Y, optimizer=pn.optim.SGD(lr=0.5), callbacks=[*make_callbacks(), Interrupt(interrupt)], checkpoint=tmp_path, **fit
        )
    resumed = build()
    history = resumed.fit(X, Y, optimizer=pn.optim.SGD(lr=0.5), callbacks=make_callbacks(), resume=tmp_path, **fit)
    return (reference, ref_history), (resumed, history)


@pytest.mark.parametrize(
    "make_callbacks",
    [
        lambda: [pn.optim.schedules.ReduceLROnPlateau(monitor="loss", patience=0, factor=0.5, min_delta=10.0)],
        # patience 2 (Keras's counting: stop when wait >= patience) stops after epoch 3, past the interrupt at step 25
        lambda: [pn.callbacks.EarlyStopping(monitor="val_loss", patience=2, min_delta=10.0)],
        lambda: [pn.callbacks.EarlyStopping(monitor="val_loss", patience=2, min_delta=10.0, restore_best_weights=True)],
        lambda: [pn.optim.schedules.Backtracking(tolerance=-0.5)],
    ],
    ids=["ReduceLROnPlateau", "EarlyStopping", "EarlyStopping-restore-best", "Backtracking"],
)
def test_callback_state_survives_a_resume(tmp_path, make_callbacks):
    # the large min_delta / negative tolerance makes every epoch a non-improvement, so the state matters
    (reference, ref_history), (resumed, history) = _interrupted_then_resumed(tmp_path, make_callbacks, interrupt=25)
    assert history.history["lr"] == ref_history.history["lr"]
    assert history.epoch == ref_history.epoch
    assert_bit_identical(host_state(reference), host_state(resumed))


def test_an_early_stopped_run_resumed_does_nothing_more(tmp_path):
    def stopper():
        return [pn.callbacks.EarlyStopping(monitor="val_loss", patience=0, min_delta=10.0)]

    fit = dict(loss=pn.losses.CrossEntropy(), optimizer=pn.optim.SGD(lr=0.1), epochs=10, verbose=0, validation_data=(X, Y))
    model = build()
    history = model.fit(X, Y, callbacks=stopper(), checkpoint=tmp_path, **fit)
    assert len(history.epoch) == 2
    again = build()
    history = again.fit(X, Y, callbacks=stopper(), resume=tmp_path, **fit)
    assert history.epoch == [0, 1]
    assert_bit_identical(host_state(model), host_state(again))


@pytest.mark.parametrize(
    "change", [{"batch_size": 16}, {"shuffle": False}, {"x": X[:200], "y": Y[:200]}], ids=["batch_size", "shuffle", "data"]
)
def test_resume_refuses_other_data_or_batching(tmp_path, change):
    train(build(), checkpoint=tmp_path)
    kwargs = dict(loss=pn.losses.CrossEntropy(), optimizer=pn.optim.Adam(lr=1e-2), epochs=4, batch_size=32, verbose=0)
    x, y = change.pop("x", X), change.pop("y", Y)
    kwargs.update(change)
    model = build()
    before = host_state(model)
    with pytest.raises(CheckpointError, match="resume with the same data and arguments"):
        model.fit(x, y, callbacks=[pn.optim.schedules.CosineAnnealingLR(T_max=4)], resume=tmp_path, **kwargs)
    assert_bit_identical(before, host_state(model))


def test_non_finite_numbers_in_the_history_round_trip(tmp_path):
    from portnn import _resume

    value = {"a": [1.0, float("inf"), float("-inf")], "b": {"c": float("nan")}, "d": [2, "x", None]}
    back = _resume._from_json(_resume._to_json(value))
    assert back["a"] == [1.0, float("inf"), float("-inf")] and np.isnan(back["b"]["c"]) and back["d"] == [2, "x", None]


def test_a_checkpoint_older_than_a_run_key_resumes_with_its_default(tmp_path):
    """A checkpoint written before fit knew drop_last and ranks ran with drop_last=False on one rank."""
    reference = build()
    train(reference)
    model = build()
    with pytest.raises(KeyboardInterrupt):
        train(model, interrupt=13, checkpoint=tmp_path, checkpoint_every=3)
    path = tmp_path / "checkpoint.safetensors"
    tensors, meta = read_file(path)
    for key in ("drop_last", "ranks"):
        del meta["progress"][key]
    pn.serialization.write_file(path, tensors, meta)
    resumed = build()
    train(resumed, checkpoint=tmp_path, resume=tmp_path)
    assert_bit_identical(host_state(resumed), host_state(reference))
    with pytest.raises(CheckpointError, match="the run had drop_last=False, this fit has drop_last=True"):
        train(build(), resume=tmp_path, drop_last=True)


# -- a checkpoint that does not fit changes nothing; another backend resumes ---------------
def _no_dropout(backend: str = "numpy", device: Any = None) -> pn.Sequential:
    with pn.use_backend(backend, device):
        # no bias right before the BatchNorm: its gradient would be rounding noise, which Adam amplifies
        layers = [pn.layers.Linear(6, 16), pn.layers.ReLU(), pn.layers.BatchNorm1d(16), pn.layers.Linear(16, 3)]
        return pn.Sequential(layers, seed=0)


def _fit_kwargs(**kwargs: Any) -> dict[str, Any]:
    return {"loss": pn.losses.CrossEntropy(), "optimizer": pn.optim.Adam(lr=1e-2), "epochs": 3, "batch_size": 32, "verbose": 0,
            "callbacks": [pn.optim.schedules.CosineAnnealingLR(T_max=3)], **kwargs}  # fmt: skip


def _interrupted(model: pn.Sequential, directory: Path, after: int = 14) -> None:
    kwargs = _fit_kwargs(checkpoint=directory, checkpoint_every=4)
    kwargs["callbacks"] = [*kwargs["callbacks"], Interrupt(after)]
    with pytest.raises(KeyboardInterrupt):
        model.fit(X, Y, **kwargs)


@pytest.mark.parametrize(
    ("source", "target"),
    [("numpy", "torch"), ("torch", "numpy"), ("numpy", "array_api_strict"), ("array_api_strict", "torch")],
)
def test_a_checkpoint_resumes_on_another_backend(tmp_path, source, target):
    """Weights, optimizer state, shuffling and schedule move through the host: the run ends as it would have on the source."""
    for name in (source, target):
        if pn.backends.get_adapter(name).import_error():
            pytest.skip(f"{name} is not installed")
    device = {"array_api_strict": "device1"}
    reference = _no_dropout(source, device.get(source))
    ref_history = reference.fit(X, Y, **_fit_kwargs())
    _interrupted(_no_dropout(source, device.get(source)), tmp_path)
    resumed = _no_dropout(target, device.get(target))
    history = resumed.fit(X, Y, **_fit_kwargs(resume=tmp_path))
    assert resumed.backend.name == target
    for name, value in host_state(reference).items():
        np.testing.assert_allclose(host_state(resumed)[name], value, rtol=1e-4, atol=1e-5, err_msg=name)
    np.testing.assert_allclose(history.history["loss"], ref_history.history["loss"], rtol=1e-5)
    assert history.history["lr"] == ref_history.history["lr"]


def test_dropout_generators_of_another_backend_start_again_with_a_warning(tmp_path):
    if pn.backends.get_adapter("torch").import_error():
        pytest.skip("torch is not installed")
    with pytest.raises(KeyboardInterrupt):
        train(build(), interrupt=13, checkpoint=tmp_path, checkpoint_every=3)
    with pytest.warns(RuntimeWarning, match=r"generator states of \['dropout'\].*saved on numpy, and torch cannot restore"):
        history = train(build().to("torch"), resume=tmp_path)
    assert len(history.epoch) == 4 and all(np.isfinite(history.history["loss"]))
    # on the backend it was saved on, the same state comes back: no warning, the run ends as the uninterrupted one
    reference = build()
    train(reference)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = build()
        train(again, resume=tmp_path)
    assert_bit_identical(host_state(reference), host_state(again))


def _edit(path: Path, edit) -> None:
    """Rewrite the checkpoint at ``path`` with ``edit(tensors, meta)`` applied, checksummed again (an edit, not damage)."""
    tensors, meta = read_file(path)
    edit(tensors, meta)
    pn.serialization.write_file(path, tensors, meta)


def _set(*keys):
    def setter(value):
        def edit(tensors, meta):
            target = meta
            for key in keys[:-1]:
                target = target[key]
            target[keys[-1]] = value

        return edit

    return setter


EDITS = {
    "lr-not-a-number": (_set("optimizer", "hyperparameters", "lr")("fast"), "hyperparameter lr='fast'"),
    "lr-negative": (_set("optimizer", "hyperparameters", "lr")(-1.0), "hyperparameters are refused: Adam: lr"),
    "unknown-hyperparameter": (_set("optimizer", "hyperparameters", "speed")(2.0), r"hyperparameters \['speed'\]"),
    "step-count-negative": (_set("optimizer", "step_count")(-3), "step_count=-3"),
    "optimizer-state-shape": (
        lambda t, m: t.update({"optimizer.0.exp_avg": np.zeros((3, 3), np.float32)}),
        r"optimizer state 'optimizer.0.exp_avg' is float32\[3, 3\], not a float array of \[16, 6\]",
    ),
    "optimizer-state-missing": (lambda t, m: t.pop("optimizer.2.exp_avg_sq"), r"parameter 2 holds \['exp_avg', 'step'\]"),
    "optimizer-state-stray": (lambda t, m: t.update({"optimizer.99.exp_avg": np.zeros(3, np.float32)}), "for no parameter"),
    "epoch-not-an-int": (_set("progress", "epoch")("two"), "progress epoch='two'"),
    "step-past-the-epoch": (_set("progress", "step")(10), "at step 10 of an epoch of 10 steps"),
    "shuffling-state": (_set("progress", "rng")({"bit_generator": "MT19937"}), "shuffling generator's state cannot be restored"),
    "dropout-state": (
        lambda t, m: t.update({"rng.dropout": np.frombuffer(b"not json at all", np.uint8).copy()}),
        "generator state of 'dropout' cannot be restored",
    ),
    "schedule-state": (
        lambda t, m: m["callbacks"][0]["state"].update(last_epoch="late"),
        "state of CosineAnnealingLR has last_epoch='late'",
    ),
    "schedule-state-missing": (lambda t, m: m["callbacks"][0]["state"].pop("last_epoch"), "CosineAnnealingLR does not load"),
    "history-lengths": (lambda t, m: m["history"]["history"]["loss"].pop(), "history's 'loss' is not a list of"),
    "weight-kind": (
        lambda t, m: t.update({"model.0.weight": t["model.0.weight"].astype(np.int64)}),
        "kinds of dtype differ: 0.weight: int64 in the file, float32 in the model",
    ),
    "weight-shape": (lambda t, m: t.update({"model.4.bias": np.zeros(4, np.float32)}), r"4.bias: \(4,\) in the file"),
}


@pytest.mark.parametrize("change", list(EDITS))
def test_an_edited_checkpoint_is_refused_before_anything_changes(tmp_path, change):
    """Every entry is checked before the first is written: the model, its optimizer and the history stay as they were."""
    with pytest.raises(KeyboardInterrupt):
        train(build(), interrupt=13, checkpoint=tmp_path, checkpoint_every=3)
    edit, message = EDITS[change]
    _edit(tmp_path / "checkpoint.safetensors", edit)
    model = build()
    optimizer = pn.optim.Adam(lr=1e-2)
    before = host_state(model)
    with pytest.raises(CheckpointError, match=message):
        model.fit(X, Y, loss=pn.losses.CrossEntropy(), optimizer=optimizer, epochs=4, batch_size=32, verbose=0,
                  callbacks=[pn.optim.schedules.CosineAnnealingLR(T_max=4)], resume=tmp_path)  # fmt: skip
    assert_bit_identical(before, host_state(model))
    assert optimizer.state == {} and optimizer.step_count == 0 and optimizer.params == []
    assert model._optimizer is None and model._loss is None  # not even compiled by the refused call


@pytest.mark.parametrize("record", [True, False])
def test_records_that_do_not_fit_are_refused_before_anything_changes(tmp_path, record):
    with pytest.raises(KeyboardInterrupt):
        train(build(), interrupt=13, checkpoint=tmp_path, checkpoint_every=3, record=True)
    _edit(tmp_path / "checkpoint.safetensors", lambda t, m: m["records"]["grad_norm"].update(nowhere=[1.0]))
    model = build()
    before = host_state(model)
    with pytest.raises(CheckpointError, match="records do not fit" if record else "the run did record"):
        train(model, resume=tmp_path, record=record)
    assert_bit_identical(before, host_state(model))


def test_a_resume_path_that_cannot_hold_a_checkpoint_is_refused(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("not a checkpoint")
    with pytest.raises(ValueError, match="resume='.*notes.txt' is a file, not a checkpoint"):
        train(build(), resume=notes)
    with pytest.raises(ValueError, match="cannot hold a checkpoint: .*notes.txt is a file, not a folder"):
        train(build(), resume=notes / "run")
    with pytest.raises(TypeError, match="resume must be a directory"):
        train(build(), resume=3)


def test_a_finished_run_resumed_says_so(tmp_path, capsys):
    train(build(), checkpoint=tmp_path)
    build().fit(X, Y, loss=pn.losses.CrossEntropy(), optimizer=pn.optim.Adam(lr=1e-2), epochs=4, batch_size=32, verbose=2,
                callbacks=[pn.optim.schedules.CosineAnnealingLR(T_max=4)], resume=tmp_path)  # fmt: skip
    out = capsys.readouterr().out
    assert "the run already ended after 4 epochs; nothing is left to train for epochs=4" in out
    assert "epoch 5" not in out

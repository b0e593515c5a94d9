"""Streamed data: memory-mapped arrays and pn.data.DataLoader in fit/evaluate/predict, prefetch, exact resume, bad input."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import portnn as pn
from portnn.data import BatchError, DataLoader, RandomFlip, RandomShift
from portnn.serialization import read_file

R = np.random.default_rng(0)
X = R.normal(size=(300, 6)).astype(np.float32)
Y = np.arange(300) % 3
IMAGES = R.normal(size=(120, 1, 6, 6)).astype(np.float32)
IMAGE_LABELS = np.arange(120) % 4


def mlp(case: Any = None, dropout: bool = True) -> pn.Sequential:
    layers = [pn.layers.Linear(6, 16), pn.layers.ReLU(), *([pn.layers.Dropout(0.3)] if dropout else []), pn.layers.Linear(16, 3)]
    model = pn.Sequential(layers, seed=0)
    return model if case is None else model.to(case.name, case.device)


def cnn(case: Any = None) -> pn.Sequential:
    layers = [pn.layers.Conv2d(1, 3, 3, padding=1), pn.layers.ReLU(), pn.layers.Flatten(), pn.layers.Linear(108, 4)]
    model = pn.Sequential(layers, seed=0)
    return model if case is None else model.to(case.name, case.device)


def host_state(model: Any) -> dict[str, np.ndarray]:
    return {k: pn.to_numpy(v).copy() for k, v in model.state_dict().items()}


def assert_bit_identical(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
        assert a[k].tobytes() == b[k].tobytes(), f"{k} differs"


def memmapped(tmp_path: Path, name: str, a: np.ndarray) -> np.ndarray:
    np.save(tmp_path / f"{name}.npy", a)
    m = np.load(tmp_path / f"{name}.npy", mmap_mode="r")
    assert isinstance(m, np.memmap)
    return m


FIT = dict(loss=pn.losses.CrossEntropy(), epochs=2, verbose=0)


def prefetch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "portnn-prefetch"]


# -- memory-mapped arrays --------------------------------------------------------------------


def test_a_memory_mapped_array_trains_bit_identical_to_the_array_in_memory(case, tmp_path):
    xm, ym = memmapped(tmp_path, "x", X), memmapped(tmp_path, "y", Y)
    a, b = mlp(case), mlp(case)
    ha = a.fit(X, Y, optimizer=pn.optim.Adam(lr=1e-2), batch_size=32, seed=3, validation_data=(X[:50], Y[:50]), **FIT)
    hb = b.fit(xm, ym, optimizer=pn.optim.Adam(lr=1e-2), batch_size=32, seed=3, validation_data=(xm[:50], ym[:50]), **FIT)
    assert_bit_identical(host_state(a), host_state(b))
    assert ha.history["loss"] == hb.history["loss"] and ha.history["val_loss"] == hb.history["val_loss"]
    assert dict(a.evaluate(X, Y, batch_size=64)) == dict(b.evaluate(xm, ym, batch_size=64))
    case.assert_close(b.predict(xm, batch_size=64), pn.to_numpy(a.predict(X, batch_size=64)), dtype="float32")
    assert not prefetch_threads()


def test_a_memory_mapped_x_needs_a_host_y_of_its_length(tmp_path):
    xm = memmapped(tmp_path, "x", X)
    with pytest.raises(ValueError, match=r"x has 300 examples but y has shape \(10,\)"):
        mlp().fit(xm, Y[:10], optimizer="sgd", **FIT)
    with pytest.raises(TypeError, match="y is missing"):
        mlp().fit(xm, optimizer="sgd", **FIT)
    with pytest.raises(TypeError, match="pass y as a NumPy array"):
        mlp().fit(xm, list(Y), optimizer="sgd", **FIT)


# -- the loader ---------------------------------------------------------------------------------


def test_a_loader_in_order_takes_the_steps_of_fit_on_arrays(case):
    a, b = mlp(case), mlp(case)
    a.fit(X, Y, optimizer=pn.optim.SGD(lr=0.1), batch_size=32, shuffle=False, **FIT)
    b.fit(DataLoader((X, Y), 32), optimizer=pn.optim.SGD(lr=0.1), **FIT)
    assert_bit_identical(host_state(a), host_state(b))


def test_the_order_is_a_function_of_the_seed_and_the_epoch():
    loader = DataLoader((X, Y), 64, shuffle=True, seed=5)
    first = np.concatenate([yb for _, yb in loader])
    second = np.concatenate([yb for _, yb in loader])
    assert loader.state_dict() == {"seed": 5, "epoch": 2, "batch": 0, "examples": 300}
    assert sorted(first.tolist()) == sorted(Y.tolist()) and not np.array_equal(first, second)
    again = DataLoader((X, Y), 64, shuffle=True, seed=5)
    assert np.array_equal(np.concatenate([yb for _, yb in again]), first)
    other = DataLoader((X, Y), 64, shuffle=True, seed=6)
    assert not np.array_equal(np.concatenate([yb for _, yb in other]), first)


def test_state_dict_resumes_a_pass_mid_epoch():
    loader = DataLoader((X, Y), 32, shuffle=True, seed=1, drop_last=True)
    assert len(loader) == 9
    it = iter(loader)
    head = [next(it)[1] for _ in range(4)]
    state = loader.state_dict()
    it.close()
    rest = [yb for _, yb in loader]
    fresh = DataLoader((X, Y), 32, shuffle=True, drop_last=True)  # another seed, replaced by the state's
    fresh.load_state_dict(state)
    assert all(np.array_equal(a, b) for a, b in zip([yb for _, yb in fresh], rest))
    assert len(head) + len(rest) == 9
    with pytest.raises(ValueError, match="over 300 examples; this one has 10"):
        DataLoader((X[:10], Y[:10]), 2).load_state_dict(state)


def test_a_loop_left_with_break_ends_its_thread_and_the_loader_stays_where_it_was():
    loader = DataLoader((X, Y), 10)
    for b, _ in enumerate(loader):
        if b == 2:
            break
    assert loader.state_dict()["batch"] == 3
    import gc

    gc.collect()
    deadline = time.monotonic() + 5
    while prefetch_threads() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not prefetch_threads()
    assert np.array_equal(next(iter(loader))[1], Y[30:40])  # the next pass goes on from there


class Examples:
    """A PyTorch-style dataset: one example per index."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.fail_at = fail_at

    def __len__(self) -> int:
        return 100

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        if i == self.fail_at:
            raise OSError(f"cannot read example {i}")
        return X[i], int(Y[i])


class Batches:
    """An iterable of ready batches whose __iter__ starts a new pass; optionally lying about its length or changing shape."""

    def __init__(self, *, n: int = 5, length: int | None = None, change_at: int | None = None, dtype_at: int | None = None):
        self.n, self.length, self.change_at, self.dtype_at = n, length, change_at, dtype_at

    def __len__(self) -> int:
        return self.length if self.length is not None else self.n

    def __iter__(self):
        for b in range(self.n):
            xb, yb = X[b * 20 : (b + 1) * 20], Y[b * 20 : (b + 1) * 20]
            if b == self.change_at:
                xb = np.concatenate([xb, xb[:, :1]], axis=1)
            if b == self.dtype_at:
                xb = xb.astype(np.float64)
            yield xb, yb


def test_a_dataset_of_examples_is_stacked_into_batches():
    loader = DataLoader(Examples(), 30)
    shapes = [(xb.shape, yb.shape) for xb, yb in loader]
    assert shapes == [((30, 6), (30,))] * 3 + [((10, 6), (10,))]
    model = mlp()
    model.fit(DataLoader(Examples(), 30, shuffle=True, seed=0), optimizer="adam", **FIT)
    assert model.evaluate(DataLoader(Examples(), 50))["loss"] == pytest.approx(model.evaluate(X[:100], Y[:100])["loss"])


def test_an_iterable_of_batches_resumes_by_skipping_what_was_trained(tmp_path):
    reference = mlp(dropout=False)
    reference.fit(DataLoader(Batches(), None), optimizer=pn.optim.SGD(lr=0.1), epochs=3, verbose=0, loss=FIT["loss"])
    model = mlp(dropout=False)
    with pytest.raises(KeyboardInterrupt):
        model.fit(
            DataLoader(Batches(), None), optimizer=pn.optim.SGD(lr=0.1), epochs=3, verbose=0, loss=FIT["loss"],
            callbacks=[Interrupt(7)], checkpoint=tmp_path, checkpoint_every=1,
        )  # fmt: skip
    resumed = mlp(dropout=False)
    resumed.fit(
        DataLoader(Batches(), None), optimizer=pn.optim.SGD(lr=0.1), epochs=3, verbose=0, loss=FIT["loss"],
        checkpoint=tmp_path, checkpoint_every=1, resume=tmp_path,
    )  # fmt: skip
    assert_bit_identical(host_state(reference), host_state(resumed))


def test_a_generator_trains_one_pass_and_cannot_be_resumed(tmp_path):
    def batches():
        for b in range(0, 300, 50):
            yield X[b : b + 50], Y[b : b + 50]

    model = mlp()
    history = model.fit(batches(), optimizer="adam", loss=FIT["loss"], verbose=0)
    assert len(history.history["loss"]) == 1
    with pytest.raises(TypeError, match="generator .* cannot be resumed"):
        DataLoader(batches(), None).state_dict()
    with pytest.raises(ValueError, match="checkpoint=/resume= need a source that can start again"):
        model.fit(batches(), optimizer="adam", loss=FIT["loss"], verbose=0, checkpoint=tmp_path)
    with pytest.raises(ValueError, match="a generator gives one pass"):
        model.fit(batches(), optimizer="adam", **FIT)
    assert not any(tmp_path.iterdir())


def test_fit_takes_a_loader_without_y_and_validation_data_as_a_loader():
    loader = DataLoader((X, Y), 32, shuffle=True, seed=0)
    val = DataLoader((X[:90], Y[:90]), 40)
    model = mlp()
    history = model.fit(loader, optimizer="adam", validation_data=val, **FIT)
    assert history.history["val_loss"][-1] == pytest.approx(model.evaluate(X[:90], Y[:90])["loss"], rel=1e-6)
    assert val.state_dict()["epoch"] == 0  # validation reads a pass without moving it
    with pytest.raises(ValueError, match="gives the targets with the inputs; pass it alone"):
        model.fit(loader, Y, optimizer="adam", **FIT)
    with pytest.raises(TypeError, match="y is missing"):
        model.fit(X, optimizer="adam", **FIT)
    assert model.predict(DataLoader((X,), 64)).shape == (300, 3)


def test_distributed_training_with_a_loader_is_refused_naming_the_fix():
    class TwoRanks(pn.training.LocalStrategy):
        size = 2

    with pytest.raises(ValueError, match="memory-mapped ones stream batch by batch"):
        mlp().fit(DataLoader((X, Y), 32), optimizer="adam", distributed=TwoRanks(), **FIT)


# -- transforms -----------------------------------------------------------------------------


def test_random_flip_and_shift_match_a_reference_on_the_device(case):
    x = R.normal(size=(8, 2, 5, 7))
    rng = np.random.default_rng(3)
    flipped = pn.to_numpy(RandomFlip()(case.asarray(x, "float32"), None, np.random.default_rng(3))[0])
    chosen = rng.random(8) < 0.5
    np.testing.assert_array_equal(flipped, np.where(chosen[:, None, None, None], x[..., ::-1], x).astype(np.float32))
    shifted, _ = RandomShift(2)(case.asarray(x, "float32"), None, np.random.default_rng(4))
    sy, sx = np.random.default_rng(4).integers(-2, 3, size=(2, 8))
    expected = np.zeros_like(x)
    h, w = x.shape[-2:]
    for i, (dy, dx) in enumerate(zip(sy, sx)):
        expected[i, :, max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = x[
            i, :, max(-dy, 0) : h - max(dy, 0), max(-dx, 0) : w - max(dx, 0)
        ]
    case.assert_close(shifted, expected, dtype="float32")


def test_a_transform_runs_on_the_models_device(case):
    seen = []

    def spy(x, y, rng):
        seen.append(type(x))
        return RandomFlip()(x, y, rng)

    model = cnn(case)
    model.fit(DataLoader((IMAGES, IMAGE_LABELS), 40, transform=spy), optimizer="adam", **FIT)
    assert {t for t in seen} == {type(case.asarray(np.zeros(1), "float32"))}


# -- exact resume ----------------------------------------------------------------------------


class Interrupt(pn.callbacks.Callback):
    """Raises KeyboardInterrupt after ``after`` batches: Ctrl-C mid-run."""

    def __init__(self, after: int) -> None:
        self.after, self.seen = after, 0

    def on_batch_end(self, batch, logs):
        self.seen += 1
        if self.seen == self.after:
            raise KeyboardInterrupt


def image_loader(seed: int | None = None) -> DataLoader:
    transform = pn.data.Compose([RandomFlip(), RandomShift(1)])
    return DataLoader((IMAGES, IMAGE_LABELS), 16, shuffle=True, drop_last=True, seed=seed, transform=transform)


@pytest.mark.parametrize("interrupt", [1, 7, 14, 20])  # 7 steps an epoch: mid-epoch, at an epoch's end, later
def test_a_loader_run_interrupted_and_resumed_is_bit_identical(case, tmp_path, interrupt):
    def train(model, loader, **kwargs):
        callbacks = [pn.optim.schedules.CosineAnnealingLR(T_max=3), *kwargs.pop("callbacks", [])]
        return model.fit(loader, loss=FIT["loss"], optimizer=pn.optim.Adam(lr=1e-2), epochs=3, verbose=0,
                         callbacks=callbacks, **kwargs)  # fmt: skip

    reference = cnn(case)
    ref_history = train(reference, image_loader(seed=11))
    with pytest.raises(KeyboardInterrupt):
        train(cnn(case), image_loader(seed=11), callbacks=[Interrupt(interrupt)], checkpoint=tmp_path, checkpoint_every=2)
    assert not prefetch_threads(), "Ctrl-C left the prefetch thread running"
    resumed = cnn(case)
    # the seed comes from the checkpoint (none is written before step 2: that run starts again, with the seed given)
    loader = image_loader(seed=None if interrupt >= 2 else 11)
    history = train(resumed, loader, checkpoint=tmp_path, checkpoint_every=2, resume=tmp_path)
    assert_bit_identical(host_state(reference), host_state(resumed))
    assert history.history["loss"] == ref_history.history["loss"]


def test_a_loader_checkpoint_is_refused_by_a_fit_on_arrays_and_another_loader(tmp_path):
    mlp().fit(DataLoader((X, Y), 32, seed=0), optimizer="adam", checkpoint=tmp_path, **FIT)
    with pytest.raises(pn.CheckpointError, match="trained on a DataLoader, this fit on arrays"):
        mlp().fit(X, Y, optimizer="adam", batch_size=32, shuffle=False, resume=tmp_path, **FIT)
    with pytest.raises(pn.CheckpointError, match="batch_size=32, this fit has batch_size=16"):
        mlp().fit(DataLoader((X, Y), 16), optimizer="adam", resume=tmp_path, **FIT)


SCRIPT = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    import portnn as pn

    mode, directory, data, out = sys.argv[1:5]
    x = np.load(data + "/x.npy", mmap_mode="r")
    y = np.load(data + "/y.npy", mmap_mode="r")
    model = pn.Sequential(
        [pn.layers.Linear(8, 32), pn.layers.ReLU(), pn.layers.Dropout(0.2), pn.layers.Linear(32, 4)], seed=0
    )

    class Slow(pn.callbacks.Callback):
        def on_batch_end(self, batch, logs):
            if mode == "slow":
                time.sleep(0.05)

    def noise(xb, yb, rng):
        return xb + 0.01 * pn.backends.adapter_for(xb).from_numpy(rng.normal(size=xb.shape).astype("float32")), yb

    loader = pn.data.DataLoader((x, y), 32, shuffle=True, transform=noise, seed=None if mode == "resume" else 7)
    where = None if mode == "plain" else directory
    model.fit(
        loader, loss=pn.losses.CrossEntropy(), optimizer=pn.optim.Adam(lr=1e-2), epochs=4,
        callbacks=[pn.optim.schedules.CosineAnnealingLR(T_max=4), Slow()], verbose=0,
        checkpoint=where, checkpoint_every=1 if where else None, resume=where,
    )
    np.savez(out, **{k: pn.to_numpy(v) for k, v in model.state_dict().items()})
    """
)


@pytest.mark.slow
def test_sigkill_mid_run_on_a_streamed_loader_then_resume_is_bit_identical(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    np.save(data / "x.npy", np.random.default_rng(0).normal(size=(512, 8)).astype(np.float32))
    np.save(data / "y.npy", np.arange(512) % 4)
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    directory = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(Path(pn.__file__).parents[1])}

    def run(*args: str) -> None:
        subprocess.run([sys.executable, str(script), *args], check=True, timeout=120, env=env)

    run("plain", str(directory), str(data), str(tmp_path / "reference.npz"))
    proc = subprocess.Popen(
        [sys.executable, str(script), "slow", str(directory), str(data), str(tmp_path / "never.npz")], env=env
    )
    checkpoint, step, deadline = directory / "checkpoint.safetensors", 0, time.monotonic() + 60
    try:
        while time.monotonic() < deadline and step < 25:  # 16 steps an epoch: into the second epoch
            if checkpoint.exists():
                step = read_file(checkpoint)[1]["progress"]["global_step"]
            time.sleep(0.02)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert 25 <= step < 64, f"the run was killed at step {step}, not mid-run"
    assert read_file(checkpoint)[1]["progress"]["loader"]["batch"] == read_file(checkpoint)[1]["progress"]["step"]
    assert [p.name for p in directory.iterdir()] == ["checkpoint.safetensors"], "a temporary file was left behind"
    run("resume", str(directory), str(data), str(tmp_path / "resumed.npz"))
    with np.load(tmp_path / "reference.npz") as ref, np.load(tmp_path / "resumed.npz") as got:
        assert_bit_identical(dict(ref), dict(got))


# -- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (
            Batches(change_at=3),
            r"batch 3: the source changed what a batch holds: examples of \(\(7,\) float32, \(\) int64\) after \(\(6,\) float32",
        ),
        (Batches(dtype_at=2), r"batch 2: the source changed what a batch holds: .*float64"),
        (Batches(n=3, length=5), r"batch 3: the source ended after 3 of its 5 batches in epoch 1"),
        (Batches(n=5, length=3), r"batch 3: the source gave more batches than its length \(3\)"),
    ],
    ids=["shape", "dtype", "exhausted-early", "too-long"],
)
def test_a_source_that_misbehaves_midway_is_named_by_batch_and_nothing_is_written(tmp_path, source, message):
    model = mlp(dropout=False)
    before = host_state(model)
    with pytest.raises(BatchError, match=message):
        model.fit(DataLoader(source, None), optimizer="adam", loss=FIT["loss"], verbose=0, checkpoint=tmp_path)
    assert not any(tmp_path.iterdir()), "an epoch cut short wrote a checkpoint"
    assert not prefetch_threads()
    assert host_state(model).keys() == before.keys()


def test_a_transform_that_changes_the_batch_is_named():
    def crop_some(x, y, rng):
        return x[:-1], y

    with pytest.raises(BatchError, match=r"batch 0: the transform returned shapes \[\(15, 1, 6, 6\), \(16,\)\]"):
        cnn().fit(DataLoader((IMAGES, IMAGE_LABELS), 16, transform=crop_some), optimizer="adam", **FIT)
    with pytest.raises(BatchError, match="batch 0: the transform returned a ndarray; it must return"):
        cnn().fit(DataLoader((IMAGES, IMAGE_LABELS), 16, transform=lambda x, y, rng: x), optimizer="adam", **FIT)


@pytest.mark.parametrize("prefetch", [0, 2])
def test_an_error_while_making_a_batch_is_raised_in_the_training_thread_naming_it(prefetch):
    loader = DataLoader(Examples(fail_at=47), 10, prefetch=prefetch)
    with pytest.raises(BatchError, match="batch 4: making it raised OSError: cannot read example 47") as info:
        mlp().fit(loader, optimizer="adam", **FIT)
    assert isinstance(info.value.__cause__, OSError)
    assert not prefetch_threads()
    assert loader.state_dict()["batch"] == 4  # the batches handed out before the failure


def test_nan_in_a_streamed_batch_is_named(tmp_path):
    x = X.copy()
    x[200, 2] = np.nan
    xm = memmapped(tmp_path, "x", x)
    with pytest.raises(BatchError, match="batch 6: making it raised ValueError: .*x holds 1 NaN"):
        mlp().fit(xm, Y, optimizer="adam", batch_size=32, shuffle=False, **FIT)


def test_the_loaders_arguments_are_checked():
    with pytest.raises(ValueError, match="batch_size=None"):
        DataLoader(Batches(), 32)
    with pytest.raises(ValueError, match="cannot be shuffled"):
        DataLoader(Batches(), None, shuffle=True)
    with pytest.raises(ValueError, match=r"have \[300, 10\] examples"):
        DataLoader((X, Y[:10]))
    with pytest.raises(TypeError, match="cannot read batches from a int"):
        DataLoader(3)
    with pytest.raises(TypeError, match="transform must be callable"):
        DataLoader((X, Y), transform="flip")
    with pytest.raises(ValueError, match="p must be a probability"):
        RandomFlip(p=2)


# -- distributed: memory-mapped arrays shard as arrays do ----------------------------------------

RANKS_SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    import portnn as pn

    data, out = sys.argv[1:3]
    x, y = np.load(data + "/x.npy", mmap_mode="r"), np.load(data + "/y.npy")
    states = {}
    for name, xs in (("memory", np.array(x)), ("mapped", x)):
        model = pn.Sequential([pn.layers.Linear(8, 16), pn.layers.ReLU(), pn.layers.Linear(16, 4)], seed=0)
        model.fit(xs, y, loss=pn.losses.CrossEntropy(), optimizer=pn.optim.SGD(lr=0.1), epochs=2, batch_size=16,
                  validation_data=(xs[:40], y[:40]), verbose=0, distributed=True)
        states.update({f"{name}.{k}": pn.to_numpy(v) for k, v in model.state_dict().items()})
    rank = pn.distributed.world().rank
    np.savez(f"{out}/rank{rank}.npz", **states)
    """
)


def test_memory_mapped_arrays_train_across_ranks_as_arrays_in_memory_do(tmp_path):
    pytest.importorskip("mpi4py", reason='distributed training needs mpi4py; pip install "portnn[mpi]"')
    mpiexec = Path(sys.executable).parent / "mpiexec"
    if not mpiexec.exists():
        pytest.skip("no mpiexec beside Python (the MPICH wheel's launcher)")
    np.save(tmp_path / "x.npy", np.random.default_rng(0).normal(size=(203, 8)).astype(np.float32))
    np.save(tmp_path / "y.npy", np.arange(203) % 4)
    (tmp_path / "ranks.py").write_text(RANKS_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(pn.__file__).parents[1])}
    done = subprocess.run(
        [str(mpiexec), "-n", "2", sys.executable, str(tmp_path / "ranks.py"), str(tmp_path), str(tmp_path)],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    for rank in (0, 1):
        with np.load(tmp_path / f"rank{rank}.npz") as got:
            names = [k[len("memory.") :] for k in got if k.startswith("memory.")]
            assert names
            for k in names:
                assert got[f"memory.{k}"].tobytes() == got[f"mapped.{k}"].tobytes(), f"rank {rank}: {k} differs"


# -- every streamed batch is checked; one path for memory-mapped data --------------------------


def test_a_memory_mapped_x_refuses_bad_labels_past_its_first_rows_as_the_array_in_memory_does(tmp_path):
    bad = Y.copy()
    bad[40] = 7  # a 3-class model: only 0..2 are labels
    xm, ym = memmapped(tmp_path, "x", X), memmapped(tmp_path, "y", bad)
    message = r"labels must be class indices in 0\.\.2"
    for x, y in ((X, bad), (xm, bad), (xm, ym)):
        with pytest.raises(ValueError, match=message):
            mlp().fit(x, y, optimizer="sgd", batch_size=32, **FIT)
        with pytest.raises(ValueError, match=message):
            mlp().evaluate(x, y, loss="sparse_categorical_crossentropy", batch_size=32)
    with pytest.raises(ValueError, match=message):  # memory-mapped validation data, read batch by batch
        mlp().fit(X, Y, optimizer="sgd", validation_data=(xm, ym), **FIT)
    with pytest.raises(ValueError, match=message):  # a loader's batches, in evaluate and in validation
        mlp().evaluate(DataLoader((X, bad), 32), loss="sparse_categorical_crossentropy")
    assert not prefetch_threads()


def test_memory_mapped_validation_data_is_read_in_fits_batches_as_in_memory_arrays_are(tmp_path, monkeypatch):
    xm, ym = memmapped(tmp_path, "x", X), memmapped(tmp_path, "y", Y)
    sizes = []
    read_rows = pn.Sequential._read_rows

    def spy(self, arrays, rows, *args):
        for idx in rows:
            sizes.append(idx.stop - idx.start)
            yield from read_rows(self, arrays, [idx], *args)

    monkeypatch.setattr(pn.Sequential, "_read_rows", spy)
    a, b = mlp(), mlp()
    ha = a.fit(X, Y, optimizer="sgd", batch_size=512, shuffle=False, validation_data=(X, Y), **FIT)
    hb = b.fit(X, Y, optimizer="sgd", batch_size=512, shuffle=False, validation_data=(xm, ym), **FIT)
    assert sizes == [300, 300]  # one batch of fit's 512 per epoch, not batches of 256
    assert ha.history["val_loss"] == hb.history["val_loss"]


def test_fit_on_a_loader_refuses_the_arguments_that_are_the_loaders_own():
    loader = DataLoader((X, Y), 32)
    for given in (dict(batch_size=8), dict(shuffle=True), dict(drop_last=True), dict(batch_size=8, shuffle=False)):
        name = next(iter(given))
        with pytest.raises(ValueError, match=rf"{name}=.*set them on the DataLoader"):
            mlp().fit(loader, optimizer="sgd", **given, **FIT)
    assert loader.state_dict()["epoch"] == 0  # refused before a batch was read


def test_evaluating_a_loader_runs_one_forward_pass_per_batch_and_one_for_the_shape(monkeypatch):
    model = mlp()
    calls = []
    forward = pn.Sequential.forward

    def counting(self, x, *args, **kwargs):
        calls.append(int(x.shape[0]))
        return forward(self, x, *args, **kwargs)

    monkeypatch.setattr(pn.Sequential, "forward", counting)
    model.evaluate(DataLoader((X, Y), 32), loss="sparse_categorical_crossentropy")
    assert len(calls) == 10 + 1  # ten batches, and the output's shape once (two examples)


def test_random_flip_keeps_the_dtype_and_infinities_and_makes_no_float64_on_the_device(case, monkeypatch):
    x = np.array([[[[1.0, np.inf, -np.inf]]]] * 6, dtype=np.float32)
    made = []
    adapter = pn.backends.adapter_for(case.asarray(x, "float32"))
    from_numpy = type(adapter).from_numpy

    def spy(self, a, *args, **kwargs):
        made.append(np.asarray(a).dtype)
        return from_numpy(self, a, *args, **kwargs)

    monkeypatch.setattr(type(adapter), "from_numpy", spy)
    out = pn.to_numpy(RandomFlip()(case.asarray(x, "float32"), None, np.random.default_rng(1))[0])
    chosen = np.random.default_rng(1).random(6) < 0.5
    assert chosen.any() and not chosen.all()
    np.testing.assert_array_equal(out, np.where(chosen[:, None, None, None], x[..., ::-1], x))
    assert out.dtype == np.float32 and not np.isnan(out).any()
    assert np.float64 not in made

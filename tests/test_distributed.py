"""Data-parallel training (portnn.distributed): 2 MPI ranks against one process with the double batch.

The multi-rank tests launch ``mpiexec -n 2 python tests/mpi_worker.py ...`` (MPICH from PyPI,
``portnn[mpi]``) with one BLAS thread per rank and a timeout, and skip with a reason where mpi4py
or mpiexec is missing. The packing, weighting and sharding are tested in this process with a
fake communicator.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import portnn as pn

sys.path.insert(0, str(Path(__file__).parent))
import mpi_worker  # noqa: E402

WORKER = Path(__file__).parent / "mpi_worker.py"
TIMEOUT = 120

try:
    import mpi4py  # noqa: F401
except ImportError as exc:
    MPI_MISSING: str | None = f'mpi4py is not installed ({exc}); pip install "portnn[mpi]"'
else:
    MPI_MISSING = None


def _mpiexec() -> str | None:
    beside = Path(sys.executable).parent / "mpiexec"  # the MPICH wheel's launcher, in the venv
    return str(beside) if beside.exists() else shutil.which("mpiexec")


needs_mpi = pytest.mark.skipif(MPI_MISSING is not None, reason=MPI_MISSING or "")
needs_mpiexec = pytest.mark.skipif(
    MPI_MISSING is not None or _mpiexec() is None,
    reason=MPI_MISSING or 'no mpiexec found beside Python or on PATH; pip install "portnn[mpi]"',
)


def _gpus() -> int:
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() if cupy.is_available() else 0
    except Exception:
        return 0


def launch(*args: str, ranks: int = 2, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``mpiexec -n ranks python tests/mpi_worker.py args`` with one BLAS thread per rank; killed after TIMEOUT s."""
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", **(env or {})}
    command = [_mpiexec(), "-n", str(ranks), sys.executable, str(WORKER), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT, env=full_env)


def check_run(out: Path, n: int, dtype: str, *, rtol: float, atol: float) -> dict[str, Any]:
    """Ranks bit-identical; both equal to one process trained with batch 2B on the same data."""
    rank0, rank1 = np.load(out / "rank0.npz"), np.load(out / "rank1.npz")
    assert sorted(rank0) == sorted(rank1) == ["0.bias", "0.weight", "2.bias", "2.weight"]
    for name in rank0:
        assert rank0[name].dtype == np.dtype(dtype) and rank0[name].shape == rank1[name].shape
        assert np.array_equal(rank0[name], rank1[name]), f"{name} differs between the ranks"
    with pn.use_backend("numpy"):
        model, history = mpi_worker.train(n, dtype, batch_size=2 * mpi_worker.BATCH, distributed=None)
    for name, value in model.state_dict().items():
        single = pn.to_numpy(value)
        assert single.dtype == rank0[name].dtype and single.shape == rank0[name].shape
        np.testing.assert_allclose(rank0[name], single, rtol=rtol, atol=atol, err_msg=name)
        assert not np.array_equal(single, mpi_worker.make_model(dtype).state_dict()[name])  # it did train
    logs = json.loads((out / "history.json").read_text())
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        np.testing.assert_allclose(logs[key], history[key], rtol=max(rtol, 1e-6), err_msg=key)
    single_active = mpi_worker.records_json(history)  # activity over all ranks' examples, not rank 0's shard
    assert logs["active"].keys() == single_active.keys()
    for name, per_epoch in single_active.items():
        assert len(logs["active"][name]) == len(per_epoch) == mpi_worker.EPOCHS
        np.testing.assert_allclose(logs["active"][name], per_epoch, atol=1e-9, err_msg=name)
    return logs


# -- two ranks ------------------------------------------------------------------------
@needs_mpiexec
@pytest.mark.slow
@pytest.mark.parametrize(
    ("n", "dtype", "rtol", "atol"),
    [
        (193, "float64", 1e-14, 1e-15),  # the last global batch holds 1 example: rank 0's part is empty
        (203, "float32", 1e-5, 1e-6),  # a short last batch split 5 / 6
    ],
)
def test_two_ranks_equal_one_process_with_the_double_batch(tmp_path: Path, n: int, dtype: str, rtol: float, atol: float) -> None:
    run = launch("train", str(tmp_path), str(n), dtype)
    assert run.returncode == 0, run.stderr
    logs = check_run(tmp_path, n, dtype, rtol=rtol, atol=atol)
    assert logs["size"] == 2 and logs["path"] == "numpy"


@needs_mpiexec
@pytest.mark.slow
def test_a_failing_rank_ends_the_job_with_its_error(tmp_path: Path) -> None:
    run = launch("fail", str(tmp_path))  # rank 1 raises at its third step; rank 0 would wait in Allreduce
    assert run.returncode != 0
    assert "rank 1 of 2 failed" in run.stderr
    assert "RuntimeError: rank 1 fails on purpose at step 3" in run.stderr


@needs_mpiexec
@pytest.mark.slow
def test_batchnorm_checkpoints_resume_exactly_with_their_shapes(tmp_path: Path) -> None:
    """BatchNorm under 2 ranks: 0-d buffers stay 0-d; a mid-epoch checkpoint holds the buffers averaged over
    the ranks and the records summed over them, so a resume from it ends as the uninterrupted run; ModelCheckpoint,
    given on both ranks, is written by rank 0 alone; the checkpoint refuses a resume on another number of ranks."""
    run = launch("bn", str(tmp_path))
    assert run.returncode == 0, run.stderr
    resumed = launch("bn-resume", str(tmp_path))
    assert resumed.returncode == 0, resumed.stderr
    reference = mpi_worker.make_bn_model().state_dict()
    shapes = {k: list(v.shape) for k, v in reference.items()}
    assert shapes["1.num_batches_tracked"] == []
    for tag in ("rank0", "rank1", "resumed0", "resumed1"):
        assert json.loads((tmp_path / f"{tag}.npz").with_suffix(".json").read_text()) == shapes, tag
    rank0, rank1 = np.load(tmp_path / "rank0.npz"), np.load(tmp_path / "rank1.npz")
    again0, again1 = np.load(tmp_path / "resumed0.npz"), np.load(tmp_path / "resumed1.npz")
    for name in shapes:
        for other in (rank1, again0, again1):
            assert other[name].shape == rank0[name].shape
            np.testing.assert_array_equal(other[name], rank0[name], err_msg=name)
    assert int(rank0["1.num_batches_tracked"]) == mpi_worker.EPOCHS * 7  # each rank counts its own 7 steps an epoch
    loaded = pn.load(tmp_path / "model.safetensors")
    assert pn.to_numpy(loaded.state_dict()["1.num_batches_tracked"]).shape == ()
    first = json.loads((tmp_path / "rank.history.json").read_text())
    second = json.loads((tmp_path / "resumed.history.json").read_text())
    del first["epoch_time"], second["epoch_time"]
    assert first == second  # history and activity records, bit for bit
    assert [len(per_epoch) for per_epoch in first["active"].values()] == [mpi_worker.EPOCHS]  # the ReLU's
    saved0, saved1 = (json.loads((tmp_path / f"rank{r}.saved.json").read_text()) for r in (0, 1))
    assert saved0 == [str(tmp_path / "best.safetensors")] * mpi_worker.EPOCHS and saved1 == []
    best = mpi_worker.make_bn_model()
    best.load_weights(tmp_path / "best.safetensors")
    assert pn.to_numpy(best.state_dict()["1.num_batches_tracked"]).shape == ()
    with pytest.raises(pn.serialization.CheckpointError, match="ranks=2, this fit has ranks=1"):
        mpi_worker.train(
            203, "float64", batch_size=mpi_worker.BATCH, distributed=None, bn=True, resume=str(tmp_path / "mid"),
            callbacks=[pn.callbacks.ModelCheckpoint(str(tmp_path / "other.safetensors"), monitor="loss")],
        )  # fmt: skip


@needs_mpiexec
@pytest.mark.slow
def test_a_stop_on_one_rank_stops_every_rank(tmp_path: Path) -> None:
    run = launch("stop", str(tmp_path))  # rank 1 alone sets stop_training after its third step
    assert run.returncode == 0, run.stderr
    assert json.loads((tmp_path / "epochs0.json").read_text()) == json.loads((tmp_path / "epochs1.json").read_text()) == [0]
    rank0, rank1 = np.load(tmp_path / "rank0.npz"), np.load(tmp_path / "rank1.npz")
    for name in rank0:
        np.testing.assert_array_equal(rank0[name], rank1[name], err_msg=name)


@needs_mpiexec
@pytest.mark.slow
def test_an_error_before_the_first_collective_ends_the_job(tmp_path: Path) -> None:
    run = launch("mismatch", str(tmp_path))  # rank 0 refuses the resume; rank 1 would wait in the broadcast
    assert run.returncode != 0
    assert "rank 0 of 2 failed" in run.stderr
    assert "CheckpointError" in run.stderr and "ModelCheckpoint" in run.stderr


@needs_mpiexec
@pytest.mark.slow
@pytest.mark.skipif(_gpus() < 1, reason="CuPy finds no CUDA GPU: the device-buffer and host-staging paths need one")
@pytest.mark.parametrize("path", ["host", "cuda-aware", "nccl"])
def test_two_ranks_on_cupy(tmp_path: Path, path: str) -> None:
    if path == "nccl" and _gpus() < 2:
        pytest.skip("NCCL needs one GPU per rank: 2 GPUs")
    if path == "cuda-aware" and not _cuda_aware():
        pytest.skip("the MPI library is not CUDA-aware (MPIX_Query_cuda_support() is 0); MPICH from PyPI is not")
    run = launch("train", str(tmp_path), "203", "float64", "cupy", env={"PORTNN_DISTRIBUTED_GPU": path})
    assert run.returncode == 0, run.stderr
    logs = check_run(tmp_path, 203, "float64", rtol=1e-9, atol=1e-11)
    assert logs["path"] == path


def _cuda_aware() -> bool:
    return bool(pn.distributed.cuda_aware_mpi())


# -- one process ------------------------------------------------------------------------
class FakeComm:
    """An mpi4py-like communicator of ``size`` ranks whose other ranks contribute ``others`` to every sum."""

    def __init__(self, size: int, rank: int, others: Any = None) -> None:
        self.size, self.rank, self.others, self.calls = size, rank, others, []

    def Get_rank(self) -> int:
        return self.rank

    def Get_size(self) -> int:
        return self.size

    def Allreduce(self, sendbuf: Any, recvbuf: Any, op: Any = None) -> None:
        self.calls.append(recvbuf.shape)
        if self.others is not None and recvbuf.shape == self.others.shape:
            recvbuf += self.others

    def Bcast(self, buf: Any, root: int = 0) -> None:  # rank 0's values are this rank's
        self.calls.append(("Bcast", buf.shape))

    def bcast(self, obj: Any, root: int = 0) -> Any:
        return obj

    def allgather(self, obj: Any) -> list[Any]:
        return [obj] * self.size

    def Abort(self, code: int = 1) -> None:  # a real one ends the job; this one lets the error through
        self.calls.append(("Abort", code))


@needs_mpi
def test_shards_tile_every_batch() -> None:
    for size in (1, 2, 3, 4, 7):
        comms = [pn.distributed.Communicator(FakeComm(size, r), blas_threads=None) for r in range(size)]
        for start, stop in [(0, 128), (128, 131), (256, 259), (10, 11)]:
            parts = [c.shard(start, stop) for c in comms]
            assert parts[0][0] == start and parts[-1][1] == stop
            assert all(a[1] == b[0] for a, b in zip(parts, parts[1:]))
            sizes = [hi - lo for lo, hi in parts]
            assert max(sizes) - min(sizes) <= 1


@needs_mpi
def test_gradients_are_packed_weighted_summed_and_unpacked() -> None:
    model = pn.Sequential([pn.layers.Linear(3, 2), pn.layers.ReLU(), pn.layers.Linear(2, 1)], seed=0)
    params = model.parameters()
    rng = np.random.default_rng(0)
    grads = [rng.normal(size=p.shape).astype(np.float32) for p in params]
    others = rng.normal(size=sum(p.size for p in params)).astype(np.float32)
    fake = FakeComm(2, 1, others)
    comm = pn.distributed.Communicator(fake, blas_threads=None)
    comm.shard(0, 4)  # this rank: 2 of 4 examples
    for p, g in zip(params, grads):
        p.grad = g.copy()
    params[1].grad = None  # no gradient here: zeros join the sum
    comm.allreduce_gradients(params, 3, mean=True)
    assert fake.calls == [(others.size,)] and comm.gradient_path == "numpy"
    offset = 0
    for i, (p, g) in enumerate(zip(params, grads)):
        mine = np.zeros_like(g) if i == 1 else g * np.float32(0.75)
        expected = mine + others[offset : offset + p.size].reshape(p.shape)
        assert p.grad.dtype == np.float32 and p.grad.shape == p.shape
        np.testing.assert_allclose(p.grad, expected, rtol=1e-6)
        offset += p.size
    comm.allreduce_gradients(params, 3, mean=False)  # a summed loss: weight 1; the buffer is reused
    assert fake.calls == [(others.size,)] * 2


def _bn_model(**kwargs: Any) -> pn.Sequential:
    return pn.Sequential([pn.layers.Linear(4, 6), pn.layers.BatchNorm1d(6, **kwargs), pn.layers.Linear(6, 3)], seed=0)


def _fit(model: pn.Sequential, n: int, **kwargs: Any) -> pn.History:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(n, 4)).astype(np.float32), np.arange(n) % 3
    kwargs = {"batch_size": 16, "verbose": 0, **kwargs}
    return model.fit(x, y, loss=pn.losses.CrossEntropy(), optimizer=pn.optim.SGD(lr=0.1), **kwargs)


@needs_mpi
def test_broadcast_and_average_keep_zero_dimensional_buffers() -> None:
    model = _bn_model()
    _fit(model, 32)
    comm = pn.distributed.Communicator(FakeComm(2, 1), blas_threads=None)
    before = {k: pn.to_numpy(v) for k, v in model.state_dict().items()}
    assert before["1.num_batches_tracked"].shape == ()
    comm.broadcast_model(model)
    comm.average_buffers(model)  # the fake's other rank adds nothing: the running statistics halve
    for name, value in model.state_dict().items():
        value = pn.to_numpy(value)
        assert value.shape == before[name].shape and value.dtype == before[name].dtype, name
        expected = before[name] / 2 if name.endswith(("running_mean", "running_var")) else before[name]
        np.testing.assert_array_equal(value, expected, err_msg=name)


@needs_mpi
def test_batch_checks_count_the_global_step_and_each_rank_s_shard() -> None:
    two = [pn.distributed.Communicator(FakeComm(2, r), blas_threads=None) for r in (0, 1)]
    with pytest.raises(ValueError, match=r"20 examples and batch_size=16 over 2 ranks \(32 examples per step\) leaves no batch"):
        _fit(pn.Sequential([pn.layers.Linear(4, 3)], seed=0), 20, drop_last=True, distributed=two[0])
    assert two[0].comm.calls == [("Abort", 1)]  # the error went through the abort guard, before any collective
    # 99 = 3 * 32 + 3: the last global batch of 3 gives rank 0 one example
    with pytest.raises(ValueError, match="leave a last batch of 3; split over 2 ranks, rank 0 gets 1"):
        _fit(_bn_model(), 99, distributed=two[1])
    _fit(_bn_model(), 99, drop_last=True, distributed=two[1])
    # 113 = 3 * 32 + 17: a last batch of 17 is 8 + 9 examples; one process with batches of 16 would see 1
    _fit(_bn_model(), 113, distributed=two[1])
    with pytest.raises(ValueError, match="leave a last batch of 1"):
        _fit(_bn_model(), 113)
    frozen = _bn_model().freeze(1)  # running statistics in training too: one example is enough
    _fit(frozen, 113)
    assert _bn_model(track_running_stats=False).freeze(1).layers[1].min_batch_size == 2  # frozen, no running stats
    assert frozen.layers[1].min_batch_size == 1


@needs_mpi
def test_rank_seeds_do_not_drift_over_fits() -> None:
    comm = pn.distributed.Communicator(FakeComm(2, 1), blas_threads=None)
    model = pn.Sequential([pn.layers.Linear(4, 8), pn.layers.Dropout(0.5), pn.layers.Linear(8, 3)], seed=0)
    seed = model.layers[1].seed
    for _ in range(2):
        _fit(model, 64, distributed=comm)
        assert model.layers[1].seed == seed


@needs_mpi
def test_fit_on_one_rank_is_plain_fit(case: Any) -> None:
    """A world of one rank (no mpiexec): fit(distributed=True) gives the same weights bit for bit, on every backend."""
    comm = pn.distributed.Communicator(blas_threads=None)  # leaves this process's BLAS threads alone
    assert (comm.rank, comm.size) == (0, 1)
    models = []
    for distributed in (None, comm):
        model, _ = mpi_worker.train(67, "float32", batch_size=16, distributed=distributed)
        models.append({k: pn.to_numpy(v) for k, v in model.state_dict().items()})
    for name in models[0]:
        assert models[0][name].dtype == np.float32
        np.testing.assert_array_equal(models[0][name], models[1][name], err_msg=name)
    expected = {"numpy": ("numpy",), "cupy": ("host", "cuda-aware")}.get(case.name, ("host",))
    assert comm.gradient_path in expected


def test_missing_mpi4py_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    with pytest.raises(ImportError, match=r'pip install "portnn\[mpi\]"'):
        pn.distributed.Communicator()
    with pytest.raises(TypeError, match="distributed must be None, True or a portnn.distributed.Communicator"):
        pn.Sequential([pn.layers.Linear(2, 2)]).fit(
            np.zeros((4, 2)), np.zeros(4, dtype=int), loss=pn.losses.CrossEntropy(), optimizer=pn.optim.SGD(lr=0.1),
            distributed="yes", verbose=0,
        )  # fmt: skip


def test_blas_threads_left_alone_when_the_environment_chose(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert pn.distributed.limit_blas_threads(1) is False
    assert os.environ["OMP_NUM_THREADS"] == "2"


@needs_mpiexec
@pytest.mark.slow
def test_portnn_train_distributed_prints_once(mnist_dir: Path, tmp_path: Path) -> None:
    command = [_mpiexec(), "-n", "2", sys.executable, "-m", "portnn.cli", "train", "--distributed", "--data-dir", str(mnist_dir)]
    command += ["--no-download", "--limit", "1000", "--epochs", "1", "--hidden", "32", "--checkpoint", str(tmp_path / "ckpt")]
    run = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert run.returncode == 0, run.stderr
    assert run.stdout.count("test accuracy: ") == 1  # rank 1 prints nothing
    assert "distributed: 2 MPI ranks, batch 128 per rank (256 per step), gradients summed through numpy" in run.stdout
    assert (tmp_path / "ckpt" / "checkpoint.safetensors").exists()


# -- the ranks agree on the run before anything else ----------------------------------------
@needs_mpiexec
@pytest.mark.slow
def test_ranks_given_different_runs_all_raise_the_same_error_instead_of_hanging(tmp_path: Path) -> None:
    """Each disagreement is found in one collective before the first step and raised on every rank, naming what differs."""
    run = launch("disagree", str(tmp_path))  # before: the first case hung until the timeout
    assert run.returncode != 0  # the last, uncaught disagreement ends the job
    messages = [json.loads((tmp_path / f"disagree{r}.json").read_text()) for r in (0, 1)]
    assert messages[0] == messages[1]  # the same error on both ranks
    expected = {
        "epochs": "epochs: rank 0 has 3, rank 1 has 4",
        "data": r"data: rank 0 has x \(203, 12\) float64, y \(203,\) int64, rank 1 has x \(200, 12\) float64, y \(200,\) int64",
        "batch_size": "batch_size: rank 0 has 16, rank 1 has 8",
        "dtype": r"data: rank 0 has x \(203, 12\) float64.* rank 1 has x \(203, 12\) float32",
        "architecture": r"layers\[0\]: rank 0 has Linear\(12, 32\), rank 1 has Linear\(12, 16\)",
        "optimizer": r"optimizer: rank 0 has Adam\(lr=0.01, .*\), rank 1 has Adam\(lr=0.02, ",
        "resume": r"resume: rank 0 has epoch 4, step 0 \(global step 21\) \(read from .*ck/checkpoint.safetensors\), "
        r"rank 1 has the beginning \(no checkpoint at .*elsewhere/checkpoint.safetensors on its disk\).*node-local",
    }
    assert sorted(messages[0]) == sorted(expected)
    for case, pattern in expected.items():
        assert re.search(pattern, messages[0][case]), (case, messages[0][case])
        assert "the 2 ranks were not given the same run" in messages[0][case]
    # after the refused fits the ranks are still in step: an agreeing fit trains on both
    assert json.loads((tmp_path / "agreed0.json").read_text()) == json.loads((tmp_path / "agreed1.json").read_text()) == [0, 1, 2]
    assert run.stderr.count("RunMismatchError: fit(distributed)") == 2  # raised on every rank, none aborted
    assert "MPI_Abort" not in run.stderr and "failed, aborting the job" not in run.stderr


class DisagreeingComm(FakeComm):
    """A fake of two ranks whose other rank gathers the configuration changed by ``change``."""

    def __init__(self, change: Any) -> None:
        super().__init__(2, 0)
        self.change = change

    def allgather(self, obj: Any) -> list[Any]:
        other = json.loads(json.dumps(obj))
        self.change(other)
        return [obj, other]


@needs_mpi
def test_a_disagreement_names_the_argument_and_both_values_and_changes_nothing() -> None:
    def change(gathered: dict) -> None:
        gathered["run"]["epochs"] = 5
        gathered["run"]["parameters and buffers"][2] = "2.weight (3, 8) float32 frozen"

    comm = pn.distributed.Communicator(DisagreeingComm(change), blas_threads=None)
    model = pn.Sequential([pn.layers.Linear(4, 8), pn.layers.ReLU(), pn.layers.Linear(8, 3)], seed=0)
    optimizer = pn.optim.SGD(lr=0.1)
    before = {k: pn.to_numpy(v).copy() for k, v in model.state_dict().items()}
    x, y = np.random.default_rng(0).normal(size=(64, 4)), np.arange(64) % 3
    with pytest.raises(pn.distributed.RunMismatchError) as info:
        model.fit(x, y, loss=pn.losses.CrossEntropy(), optimizer=optimizer, epochs=2, verbose=0, distributed=comm)
    message = str(info.value)
    assert "epochs: rank 0 has 2, rank 1 has 5" in message
    assert "parameters and buffers[2]: rank 0 has 2.weight (3, 8) float32, rank 1 has 2.weight (3, 8) float32 frozen" in message
    assert ("Abort", 1) not in comm.comm.calls  # every rank raises it: nothing to abort
    assert [c for c in comm.comm.calls if c[0] == "Bcast"] == []  # no collective but the gather ran
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(pn.to_numpy(value), before[name], err_msg=name)
    assert optimizer.params == [] and model._optimizer is None


@needs_mpi
def test_sharded_validation_gives_no_rank_a_single_example() -> None:
    """BatchNorm without running statistics evaluates with batch statistics: 3 examples over 2 ranks go to one rank."""
    shares = []
    for rank in (0, 1):
        strategy = pn.distributed.DataParallel(pn.distributed.Communicator(FakeComm(2, rank), blas_threads=None))
        seen = []
        strategy.evaluate(
            lambda X, Y, seen=seen: seen.append(X.shape[0]) or {"loss": 0.0}, np.zeros((3, 2)), np.zeros(3), pn.losses.MSE()
        )
        shares.append(seen)
    assert shares == [[3], []]

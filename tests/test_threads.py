"""The BLAS/OpenMP thread count portnn chooses for its work (portnn._threads): behaviour, never timings.

Each test clears the thread variables that the suite is usually run with (``OMP_NUM_THREADS=1``)
and sets the BLAS pools to a known count inside a threadpoolctl context, so the rule sees a
process in which nobody chose; the load is faked where the rule measures it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import portnn as pn
from portnn import _threads

threadpoolctl = pytest.importorskip("threadpoolctl", reason="portnn chooses thread counts through threadpoolctl")
CORES = _threads.usable_cores()
needs_two_cores = pytest.mark.skipif(CORES < 2, reason="one usable core: a limit cannot be told from the default")


@pytest.fixture
def nobody_chose(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No thread variable, no set_num_threads, every pool at the number of usable cores (restored after)."""
    for name in (*_threads.THREAD_VARIABLES, _threads.ENVIRONMENT):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(_threads, "_explicit", None)
    monkeypatch.setattr(_threads, "_sample", None)
    torch = sys.modules.get("torch")  # set_num_threads also sets PyTorch's, when it is imported
    before = torch.get_num_threads() if torch is not None else None
    with threadpoolctl.threadpool_limits(CORES):
        yield
    if torch is not None:
        torch.set_num_threads(before)


def blas_threads() -> int:
    return max(p["num_threads"] for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas")


class Seen(pn.callbacks.Callback):
    """Records the BLAS threads in force at every training, test and predict batch."""

    def __init__(self) -> None:
        super().__init__()
        self.train: list[int] = []
        self.test: list[int] = []
        self.predict: list[int] = []

    def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self.train.append(blas_threads())

    def on_test_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self.test.append(blas_threads())

    def on_predict_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self.predict.append(blas_threads())


def small_fit(callbacks: list[Any], **kwargs: Any) -> pn.Sequential:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 8)).astype(np.float32)
    y = rng.integers(0, 3, size=64)
    model = pn.Sequential([pn.layers.Linear(8, 16), pn.layers.ReLU(), pn.layers.Linear(16, 3)], seed=0)
    model.fit(
        x, y, loss=pn.losses.CrossEntropy(), optimizer=pn.optim.SGD(lr=0.1), epochs=2, batch_size=16, verbose=0,
        callbacks=callbacks, **kwargs,
    )  # fmt: skip
    return model


def fake_load(monkeypatch: pytest.MonkeyPatch, busy: float) -> list[int]:
    calls: list[int] = []

    def measured(window: float = _threads.WINDOW) -> float:
        calls.append(1)
        return busy

    monkeypatch.setattr(_threads, "busy_cores", measured)
    return calls


@needs_two_cores
def test_fit_takes_one_thread_when_every_core_is_busy_and_restores_after(nobody_chose: None, monkeypatch) -> None:
    calls = fake_load(monkeypatch, busy=float(CORES))
    seen = Seen()
    rng = np.random.default_rng(1)
    val = (rng.normal(size=(40, 8)).astype(np.float32), rng.integers(0, 3, size=40))
    small_fit([seen], validation_data=val)
    assert set(seen.train) == {1} and set(seen.test) == {1}
    assert len(calls) == 1  # measured once per fit: the validation inside it keeps fit's choice
    assert blas_threads() == CORES  # the limits as they were before fit


@needs_two_cores
def test_fit_keeps_every_core_on_an_idle_machine(nobody_chose: None, monkeypatch) -> None:
    fake_load(monkeypatch, busy=0.1)
    seen = Seen()
    small_fit([seen])
    assert set(seen.train) == {CORES}
    assert _threads.choose().threads == CORES


def test_free_cores_rule(nobody_chose: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_threads, "usable_cores", lambda: 8)
    for busy, threads in [(0.0, 8), (0.7, 7), (0.8, 7), (3.0, 5), (7.9, 1), (8.0, 1)]:
        fake_load(monkeypatch, busy)
        # a BLAS pool of 8 threads: nobody limited it (the pools here run CORES)
        monkeypatch.setattr(_threads, "_blas_threads", lambda controller: [8])
        assert _threads.choose().threads == threads, busy


@pytest.mark.parametrize(
    ("files", "cores"),
    [
        ({"cpu.max": "200000 100000"}, 2),  # docker --cpus=2, cgroup v2
        ({"cpu.max": "150000 100000"}, 2),  # 1.5 cores: 2 threads share them
        ({"cpu.max": "max 100000"}, None),  # no quota
        ({"quota": "100000", "period": "100000"}, 1),  # cgroup v1
        ({"quota": "-1", "period": "100000"}, None),
        ({}, None),
    ],
)
def test_usable_cores_respects_a_container_quota(files: dict[str, str], cores: int | None, tmp_path: Path, monkeypatch) -> None:
    paths = tuple(str(tmp_path / name) for name in ("cpu.max", "quota", "period"))
    for name, text in files.items():
        (tmp_path / name).write_text(text + "\n")
    monkeypatch.setattr(_threads, "CGROUP_FILES", paths)
    monkeypatch.setattr(_threads.os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    assert _threads.usable_cores() == (8 if cores is None else cores)


def test_busy_cores_subtracts_this_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """Busy share of the cores' ticks, times the cores, less this process's own CPU seconds per second."""
    readings = iter([(10.0, 0, 0, 0.0), (11.0, 150, 200, 0.5)])  # (time, busy ticks, all ticks, own CPU s)
    monkeypatch.setattr(_threads, "_ticks", lambda: next(readings))
    monkeypatch.setattr(_threads, "usable_cores", lambda: 2)
    monkeypatch.setattr(_threads, "_sample", None)
    monkeypatch.setattr(_threads.time, "sleep", lambda s: None)
    assert _threads.busy_cores() == pytest.approx(2 * 150 / 200 - 0.5)
    # the next call starts from the last sample when it is recent enough: no new wait
    monkeypatch.setattr(_threads, "_ticks", lambda: (11.5, 250, 300, 0.5))
    assert _threads.busy_cores() == pytest.approx(2 * 100 / 100)


def test_busy_cores_on_this_machine_is_a_core_count(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_threads, "_sample", None)
    busy = _threads.busy_cores()
    if busy is None:
        pytest.skip("this OS tells no load")
    assert busy >= 0.0
    if Path("/proc/stat").exists():  # measured on this process's cores (elsewhere: a load average)
        assert busy <= CORES


@pytest.mark.parametrize("name", _threads.THREAD_VARIABLES)
def test_fit_leaves_the_threads_alone_when_the_environment_chose(name: str, nobody_chose: None, monkeypatch) -> None:
    monkeypatch.setenv(name, "1")
    calls = fake_load(monkeypatch, busy=float(CORES))
    choice = _threads.choose()
    assert choice.threads is None and f"{name}=1" in choice.reason
    seen = Seen()
    small_fit([seen])
    assert set(seen.train) == {CORES} and not calls  # unchanged, and nothing measured


@needs_two_cores
def test_fit_leaves_a_threadpoolctl_limit_alone(nobody_chose: None, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_load(monkeypatch, busy=0.0)  # an idle machine would get every core
    seen = Seen()
    with threadpoolctl.threadpool_limits(1, user_api="blas"):
        assert "threadpoolctl" in _threads.choose().reason
        small_fit([seen])
        assert blas_threads() == 1
    assert set(seen.train) == {1}


@needs_two_cores
def test_portnn_num_threads_wins_and_is_restored(nobody_chose: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(_threads.ENVIRONMENT, "1")
    monkeypatch.setenv("OMP_NUM_THREADS", str(CORES))  # portnn's own setting is more specific
    seen = Seen()
    small_fit([seen])
    assert set(seen.train) == {1}
    assert blas_threads() == CORES


def test_portnn_num_threads_off_changes_nothing(nobody_chose: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(_threads.ENVIRONMENT, "off")
    calls = fake_load(monkeypatch, busy=float(CORES))
    seen = Seen()
    small_fit([seen])
    assert set(seen.train) == {CORES} and not calls


@pytest.mark.parametrize("value", ["0", "-1", "two", "1.5"])
def test_a_bad_portnn_num_threads_names_the_variable(value: str, nobody_chose: None, monkeypatch) -> None:
    monkeypatch.setenv(_threads.ENVIRONMENT, value)
    with pytest.raises(ValueError, match=rf"PORTNN_NUM_THREADS='{value}': expected a number of threads"):
        small_fit([])
    assert blas_threads() == CORES


@needs_two_cores
def test_limits_are_restored_after_an_error_in_fit(nobody_chose: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(_threads.ENVIRONMENT, "1")

    class Boom(pn.callbacks.Callback):
        def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        small_fit([Boom()])
    assert blas_threads() == CORES


@needs_two_cores
def test_set_num_threads_is_process_wide_and_fit_keeps_it(nobody_chose: None, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _threads.THREAD_VARIABLES:
        monkeypatch.setenv(name, "unset-by-test")  # registered, so the test puts them back
    monkeypatch.delenv(_threads.ENVIRONMENT, raising=False)
    calls = fake_load(monkeypatch, busy=0.0)
    pn.set_num_threads(1)
    assert pn.get_num_threads() == 1 == blas_threads()
    assert all(os.environ[name] == "1" for name in _threads.THREAD_VARIABLES)
    seen = Seen()
    small_fit([seen])
    assert set(seen.train) == {1} and blas_threads() == 1 and not calls
    assert "set_num_threads(1)" in _threads.choose().reason


BAD_COUNTS = [(0, ValueError), (-2, ValueError), ("2", TypeError), (True, TypeError), (1.0, TypeError)]


@pytest.mark.parametrize(("value", "error"), BAD_COUNTS)
def test_set_num_threads_checks_its_argument(value: Any, error: type, nobody_chose: None) -> None:
    with pytest.raises(error, match="set_num_threads"):
        pn.set_num_threads(value)
    assert blas_threads() == CORES and _threads._explicit is None


@needs_two_cores
def test_limit_threads_in_a_loop_of_your_own(nobody_chose: None) -> None:
    with pn.limit_threads(1) as choice:
        assert choice.threads == 1 and blas_threads() == 1
        with pn.limit_threads() as inner:  # nested: keeps the outer choice
            assert inner is choice and blas_threads() == 1
    assert blas_threads() == CORES


@needs_two_cores
def test_inference_of_several_batches_is_limited_one_batch_is_not(nobody_chose: None, monkeypatch) -> None:
    monkeypatch.setenv(_threads.ENVIRONMENT, "1")
    model = pn.Sequential([pn.layers.Linear(8, 3)], seed=0)
    x = np.zeros((40, 8), dtype=np.float32)
    y = np.zeros(40, dtype=np.int64)
    seen = Seen()
    model.predict(x, batch_size=16, callbacks=[seen])
    model.evaluate(x, y, loss=pn.losses.CrossEntropy(), batch_size=16, callbacks=[seen])
    assert set(seen.predict) == {1} and set(seen.test) == {1}
    seen = Seen()
    model.predict(x, callbacks=[seen])  # one batch of the default 256
    model.evaluate(x, y, loss=pn.losses.CrossEntropy(), batch_size=64, callbacks=[seen])
    assert set(seen.predict) == {CORES} and set(seen.test) == {CORES}
    assert blas_threads() == CORES


@needs_two_cores
def test_pytorch_threads_follow_and_are_restored(nobody_chose: None, monkeypatch: pytest.MonkeyPatch) -> None:
    torch = pytest.importorskip("torch", reason="PyTorch's own thread count")
    before = torch.get_num_threads()
    monkeypatch.setenv(_threads.ENVIRONMENT, "1")
    seen: list[int] = []

    class Torch(pn.callbacks.Callback):
        def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
            seen.append(torch.get_num_threads())

    small_fit([Torch()])
    assert set(seen) == {1} and torch.get_num_threads() == before


def test_the_mpi_path_sets_one_thread_per_rank(nobody_chose: None, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _threads.THREAD_VARIABLES:
        monkeypatch.setenv(name, "")  # registered for restoring; empty counts as unset
    assert pn.distributed.limit_blas_threads(1) is True
    assert all(os.environ[name] == "1" for name in _threads.THREAD_VARIABLES)
    assert blas_threads() == 1 and _threads._explicit == 1
    assert pn.distributed.limit_blas_threads(1) is False  # chosen now: a second call changes nothing


@pytest.mark.parametrize("chosen", ["OMP_NUM_THREADS=2", "PORTNN_NUM_THREADS=2", "PORTNN_NUM_THREADS=off"])
def test_the_mpi_path_respects_the_users_choice(chosen: str, nobody_chose: None, monkeypatch) -> None:
    name, value = chosen.split("=")
    monkeypatch.setenv(name, value)
    assert pn.distributed.limit_blas_threads(1) is False
    assert blas_threads() == CORES and _threads._explicit is None
    assert all(os.environ.get(v) in (None, "2") for v in _threads.THREAD_VARIABLES)


def _mpiexec() -> str | None:
    beside = Path(sys.executable).parent / "mpiexec"
    return str(beside) if beside.exists() else shutil.which("mpiexec")


RANK_THREADS = (
    "import portnn as pn, os, threadpoolctl; c = pn.distributed.init(); "
    "b = [p['num_threads'] for p in threadpoolctl.threadpool_info() if p['user_api'] == 'blas']; "
    "facts = c.allgather(f\"{c.rank} {max(b)} {os.environ['OPENBLAS_NUM_THREADS']}\"); "
    "print('\\n'.join(facts) if c.rank == 0 else '', end='', flush=True)"  # one writer: the ranks' lines never interleave
)


@pytest.mark.slow
def test_two_mpi_ranks_get_one_blas_thread_each() -> None:
    pytest.importorskip("mpi4py", reason='the MPI path needs mpi4py: pip install "portnn[mpi]"')
    if _mpiexec() is None:
        pytest.skip('no mpiexec beside Python or on PATH: pip install "portnn[mpi]"')
    env = {k: v for k, v in os.environ.items() if k not in (*_threads.THREAD_VARIABLES, _threads.ENVIRONMENT)}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(pn.__file__).parents[1]), env.get("PYTHONPATH")]))
    run = subprocess.run(
        [_mpiexec(), "-n", "2", sys.executable, "-c", RANK_THREADS], capture_output=True, text=True, timeout=120, env=env
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.split("\n") == ["0 1 1", "1 1 1"], run.stdout


def test_importing_portnn_changes_no_thread_setting() -> None:
    code = (
        "import os, numpy, threadpoolctl; before = (threadpoolctl.threadpool_info(), dict(os.environ)); "
        "import portnn; after = (threadpoolctl.threadpool_info(), dict(os.environ)); print(before == after)"
    )
    env = {k: v for k, v in os.environ.items() if k not in _threads.THREAD_VARIABLES}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(pn.__file__).parents[1]), env.get("PYTHONPATH")]))
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "True"

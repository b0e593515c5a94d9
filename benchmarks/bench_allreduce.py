"""How much of a data-parallel step is the gradient allreduce? 1 vs 2 MPI ranks on the MNIST MLP.

What it measures
----------------
``model.fit(..., distributed=True)`` of the 784-1024-10 ReLU MLP (814,090 float32 parameters,
a 3.26 MB gradient buffer), SGD with momentum, batch 128 *per rank*, NumPy backend, one BLAS
thread per rank, launched with ``mpiexec -n R`` for each R in ``--ranks``. Per training step,
on rank 0, medians over the timed steps (the first ``--warmup`` are dropped):

``step``
    the whole step as ``fit`` runs it (callback ``on_batch_begin`` to ``on_batch_end``).
``allreduce``
    the gradient exchange inside it: packing into the flat buffer, the buffer ``Allreduce``,
    unpacking (:meth:`portnn.distributed.Communicator.allreduce_gradients`); time spent
    waiting for the slower rank is in it.
``MPI``
    the ``Allreduce`` call alone.
``compute``
    ``step - allreduce``: forward, backward, optimizer, metrics.

Then, outside training, the ``Allreduce`` of the same buffer alone (``--reps`` times), and the
same sum through mpi4py's pickle-based lowercase ``allreduce`` of a NumPy array, which the
buffer API avoids.

How to run
----------
From the repository root (``pip install -e ".[mpi]"``; ``mpiexec`` is found beside Python)::

    python benchmarks/bench_allreduce.py               # 1 and 2 ranks
    python benchmarks/bench_allreduce.py --ranks 2 4   # on a machine with more cores

MNIST is read, never downloaded, from ``--data-dir``, else ``$PORTNN_DATA_DIR``, else
``../shared/datasets/mnist`` next to the repository; without it, random pixels (the timings do
not depend on the values). Timings depend on the machine and whatever else runs on it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

import portnn as pn

BATCH, HIDDEN, SEED = 128, 1024, 0
DEFAULT_DATA_DIR = Path(__file__).resolve().parents[1] / ".." / "shared" / "datasets" / "mnist"


def load_x_y(data_dir: str | None, n: int) -> tuple[np.ndarray, np.ndarray, str]:
    data_dir = data_dir or os.environ.get("PORTNN_DATA_DIR") or str(DEFAULT_DATA_DIR)
    try:
        (x, y), _ = pn.datasets.load_mnist(data_dir, download=False)
    except pn.datasets.DatasetError:
        rng = np.random.default_rng(0)
        return rng.random((n, 784), dtype=np.float32), rng.integers(0, 10, n), "random pixels (MNIST not found)"
    reps = -(-n // len(x))
    x = np.tile(x.reshape(len(x), 784), (reps, 1))[:n].astype(np.float32) / np.float32(255)
    return x, np.tile(y, reps)[:n], "MNIST"


class TimedCommunicator(pn.distributed.Communicator):
    """A communicator that keeps how long each gradient exchange and each MPI call took."""

    def __init__(self) -> None:
        super().__init__()
        self.exchange: list[float] = []
        self.mpi: list[float] = []

    def allreduce_gradients(self, params: list[Any], local_batch: int, *, mean: bool = True) -> None:
        start = time.perf_counter()
        super().allreduce_gradients(params, local_batch, mean=mean)
        self.exchange.append(time.perf_counter() - start)

    def _sum(self, buf: Any) -> Any:
        start = time.perf_counter()
        out = super()._sum(buf)
        self.mpi.append(time.perf_counter() - start)
        return out


class StepTimer(pn.callbacks.Callback):
    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []

    def on_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self._start = time.perf_counter()

    def on_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self.times.append(time.perf_counter() - self._start)


def worker(args: argparse.Namespace) -> None:
    """One rank: train ``--steps`` steps with timing, then time the bare Allreduce; rank 0 prints one JSON line."""
    comm = TimedCommunicator()
    x, y, source = load_x_y(args.data_dir, BATCH * comm.size * args.steps)
    model = pn.Sequential([pn.layers.Linear(784, HIDDEN), pn.layers.ReLU(), pn.layers.Linear(HIDDEN, 10)], seed=SEED)
    timer = StepTimer()
    model.fit(
        x, y, loss=pn.losses.CrossEntropy(), optimizer=pn.optim.SGD(lr=0.1, momentum=0.9), epochs=1, batch_size=BATCH,
        shuffle=True, verbose=0, callbacks=[timer], distributed=comm,
    )  # fmt: skip
    skip = args.warmup
    # one rank exchanges nothing: allreduce_gradients returns before packing, MPI is never called
    step, exchange, mpi = (statistics.median(v[skip:]) if v[skip:] else 0.0 for v in (timer.times, comm.exchange, comm.mpi))
    MPI = comm.MPI
    buf = np.ones(sum(p.size for p in model.parameters()), dtype=np.float32)
    bare, pickled = [], []
    for _ in range(args.reps):
        comm.comm.Barrier()
        start = time.perf_counter()
        comm.comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
        bare.append(time.perf_counter() - start)
    for _ in range(max(args.reps // 4, 3)):
        comm.comm.Barrier()
        start = time.perf_counter()
        comm.comm.allreduce(buf, op=MPI.SUM)
        pickled.append(time.perf_counter() - start)
    if comm.is_root:
        result = {
            "ranks": comm.size, "step": step, "exchange": exchange, "mpi": mpi, "bare": statistics.median(bare),
            "pickle": statistics.median(pickled), "bytes": buf.nbytes, "steps": len(timer.times) - skip, "data": source,
            "library": MPI.Get_library_version().splitlines()[0].strip(),
        }  # fmt: skip
        print("RESULT " + json.dumps(result), flush=True)


def launcher() -> str:
    beside = Path(sys.executable).parent / "mpiexec"
    found = str(beside) if beside.exists() else shutil.which("mpiexec")
    if found is None:
        sys.exit('bench_allreduce: no mpiexec beside Python or on PATH; pip install "portnn[mpi]"')
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--steps", type=int, default=80, help="training steps per run")
    parser.add_argument("--warmup", type=int, default=10, help="first steps left out of the medians")
    parser.add_argument("--reps", type=int, default=50, help="bare Allreduce repetitions")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    rows = []
    for ranks in args.ranks:
        command = [launcher(), "-n", str(ranks), sys.executable, __file__, "--worker", "--steps", str(args.steps)]
        command += ["--warmup", str(args.warmup), "--reps", str(args.reps)] + (
            ["--data-dir", args.data_dir] if args.data_dir else []
        )
        run = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
        line = next((ln for ln in run.stdout.splitlines() if ln.startswith("RESULT ")), None)
        if run.returncode != 0 or line is None:
            sys.exit(f"bench_allreduce: {ranks} ranks failed:\n{run.stdout}\n{run.stderr}")
        rows.append(json.loads(line[len("RESULT ") :]))
    first = rows[0]
    print(
        f"784-{HIDDEN}-10 MLP, batch {BATCH} per rank, float32 gradients of {first['bytes'] / 1e6:.2f} MB, "
        f"{first['steps']} timed steps, {first['data']}, {first['library']}, OMP_NUM_THREADS={env['OMP_NUM_THREADS']}"
    )
    print()
    print(
        "| ranks | step ms | compute ms | allreduce ms (% of step) | of which MPI ms | bare Allreduce ms | pickle allreduce ms |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        compute = r["step"] - r["exchange"]
        print(
            f"| {r['ranks']} | {1e3 * r['step']:.2f} | {1e3 * compute:.2f} | {1e3 * r['exchange']:.2f} "
            f"({100 * r['exchange'] / r['step']:.1f}%) | {1e3 * r['mpi']:.2f} | {1e3 * r['bare']:.2f} | {1e3 * r['pickle']:.2f} |"
        )
    if len(rows) > 1:
        base = rows[0]
        for r in rows[1:]:
            speedup = (r["ranks"] * BATCH / r["step"]) / (base["ranks"] * BATCH / base["step"])
            print(
                f"\n{r['ranks']} ranks: {speedup:.2f}x the examples per second of {base['ranks']} "
                f"(ideal {r['ranks'] / base['ranks']:.0f}x, efficiency {100 * speedup * base['ranks'] / r['ranks']:.0f}%)"
            )


if __name__ == "__main__":
    main()

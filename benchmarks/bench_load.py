"""How fast does portnn train when other processes keep every core busy, with its thread policy and without?

What it measures
----------------
Training time of two nets, on an idle machine and beside one busy loop per usable core
(``N`` processes running ``while True: pass``, started by this script and ended by it):

``mlp``  ``portnn train``'s default: 784-1024-10 ReLU MLP, batch 128, SGD lr 0.1 momentum 0.9.
``cnn``  the LeNet-like CNN of ``benchmarks/bench_cnn.py`` (conv 1->8, pool, conv 8->16, pool,
         dense ->10), batch 128, SGD lr 0.01 momentum 0.9.

Each is trained with ``model.fit`` (NumPy backend, float32, random MNIST-shaped data: the
arithmetic does not depend on the values) for ``--steps`` steps after a warm-up, under three
thread settings:

``portnn``       portnn's rule (``PORTNN_NUM_THREADS`` unset): one BLAS thread per core that
                 other processes leave free; the count it chose is shown.
``BLAS default`` ``PORTNN_NUM_THREADS=off``: OpenBLAS's own count (one thread per core).
``1 thread``     ``PORTNN_NUM_THREADS=1``.

The table gives the median milliseconds per step over ``--repeats`` rounds and the seconds per
MNIST epoch they imply (469 steps of 128). The script runs with no ``OMP_NUM_THREADS``,
``OPENBLAS_NUM_THREADS`` or ``MKL_NUM_THREADS`` (it restarts itself without them), as a new
user's process would. Before the loaded phase the policy's load sample is cleared, so it
measures the busy cores afresh, as a fit started on a loaded machine does.

How to run, from the repository root::

    python benchmarks/bench_load.py             # idle and loaded, 40 steps x 3 rounds per cell
    python benchmarks/bench_load.py --quick     # a few seconds of load: proves it runs
    python benchmarks/bench_load.py --idle-only # no busy loops of its own (a shared machine)

The loaded phase keeps every core busy for its whole length (tens of seconds without
``--quick``: the BLAS-default cells are the slow ones): do not run it on a machine others use.
"As found" is the machine without this script's loops: other processes still count there (the
"portnn chose" column says how many cores the policy saw busy); it is idle only on an idle machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

import portnn as pn  # noqa: E402
from portnn import _threads  # noqa: E402

BATCH = 128
STEPS_PER_EPOCH = -(-60000 // BATCH)  # 469
MODES = {"portnn": None, "BLAS default": "off", "1 thread": "1"}  # PORTNN_NUM_THREADS for each


def mlp() -> tuple[pn.Sequential, Any, tuple[int, ...]]:
    L = pn.layers
    model = pn.Sequential([L.Linear(784, 1024), L.ReLU(), L.Linear(1024, 10)], seed=0)
    return model, pn.optim.SGD(lr=0.1, momentum=0.9), (784,)


def cnn() -> tuple[pn.Sequential, Any, tuple[int, ...]]:
    from bench_cnn import portnn_net

    return portnn_net(), pn.optim.SGD(lr=0.01, momentum=0.9), (1, 28, 28)


NETS = {"mlp": mlp, "cnn": cnn}


class Chosen(pn.callbacks.Callback):
    """The thread count in force during training (and portnn's reason), read at the first step."""

    def __init__(self) -> None:
        super().__init__()
        self.threads: int | None = None
        self.reason = ""

    def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if self.threads is None:
            self.threads = pn.get_num_threads()
            choice = _threads._active.get()
            self.reason = choice.reason if choice is not None else ""


def time_fit(net: str, mode: str, steps: int, repeats: int) -> tuple[float, int | None, str]:
    """Median seconds per step of ``fit`` over ``steps`` steps, the threads in force, and portnn's reason."""
    model, opt, shape = NETS[net]()
    rng = np.random.default_rng(0)
    x = rng.random((steps * BATCH, *shape), dtype=np.float32)
    y = rng.integers(0, 10, size=steps * BATCH)
    loss = pn.losses.CrossEntropy()
    setting = MODES[mode]
    if setting is None:
        os.environ.pop(_threads.ENVIRONMENT, None)
    else:
        os.environ[_threads.ENVIRONMENT] = setting
    model.fit(x[:BATCH], y[:BATCH], loss=loss, optimizer=opt, batch_size=BATCH, verbose=0)  # warm-up: one step
    times, chosen = [], Chosen()
    for _ in range(repeats):
        start = time.perf_counter()
        model.fit(x, y, loss=loss, optimizer=opt, batch_size=BATCH, verbose=0, callbacks=[chosen])
        times.append((time.perf_counter() - start) / steps)
    os.environ.pop(_threads.ENVIRONMENT, None)
    return statistics.median(times), chosen.threads, chosen.reason


def busy_loops(n: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def end(processes: list[subprocess.Popen]) -> None:
    for p in processes:
        p.kill()
    for p in processes:
        p.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=40, help="timed steps per fit (469: one MNIST epoch)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--nets", default="mlp,cnn", help="comma-separated, of: " + ",".join(NETS))
    parser.add_argument("--quick", action="store_true", help="3 steps, 1 round: a few seconds of load")
    parser.add_argument("--idle-only", action="store_true", help="no busy loops")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.repeats = 3, 1
    nets = [n.strip() for n in args.nets.split(",") if n.strip()]
    unknown = set(nets) - set(NETS)
    if unknown:
        parser.error(f"--nets: unknown {sorted(unknown)}; choose from {sorted(NETS)}")

    cores = _threads.usable_cores()
    pools = [f"{p['internal_api']} {p['num_threads']} threads" for p in _info() if p["user_api"] == "blas"]
    print(f"numpy {np.__version__}, {cores} usable cores, BLAS at start: {', '.join(pools) or 'not seen'}")
    phases = ["as found"] if args.idle_only else ["as found", f"+{cores} busy loops"]
    rows = []
    for phase in phases:
        loops = busy_loops(cores) if phase != "as found" else []
        try:
            if loops:
                time.sleep(0.5)  # the loops are running before the policy looks
            _threads._sample = None  # the policy measures this phase afresh
            for net in nets:
                cells = {mode: time_fit(net, mode, args.steps, args.repeats) for mode in MODES}
                rows.append((net, phase, cells))
        finally:
            end(loops)

    print(f"\nms per step (s per MNIST epoch of {STEPS_PER_EPOCH} steps), median of {args.repeats} x {args.steps} steps")
    print("| net | machine | " + " | ".join(MODES) + " | portnn chose |")
    print("|---|---|" + "---:|" * len(MODES) + "---|")
    for net, phase, cells in rows:
        shown = [f"{s * 1e3:.1f} ({s * STEPS_PER_EPOCH:.1f} s)" for s, _, _ in cells.values()]
        threads, reason = cells["portnn"][1], cells["portnn"][2]
        print(f"| {net} | {phase} | " + " | ".join(shown) + f" | {threads}: {reason} |")
    if len(phases) == 2:
        print("\nwith the busy loops / as found, per setting:")
        for net in nets:
            idle, loaded = (c for n, _, c in rows if n == net)
            ratios = ", ".join(f"{mode} {loaded[mode][0] / idle[mode][0]:.2f}x" for mode in MODES)
            print(f"  {net}: {ratios}")
    return 0


def _info() -> list[dict[str, Any]]:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    return threadpool_info()


if __name__ == "__main__":
    chosen = [name for name in _threads.THREAD_VARIABLES if name in os.environ]
    if chosen and os.environ.get("PORTNN_BENCH_LOAD_CHILD") != "1":  # BLAS read them at import: start again without
        env = {k: v for k, v in os.environ.items() if k not in _threads.THREAD_VARIABLES}
        env["PORTNN_BENCH_LOAD_CHILD"] = "1"
        print(f"(restarting without {', '.join(chosen)}: a new user's process has none)", flush=True)
        raise SystemExit(subprocess.call([sys.executable, *sys.argv], env=env))
    raise SystemExit(main())

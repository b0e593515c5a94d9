"""Streamed data: epoch time from a memory-mapped file vs from memory, and the memory a run over a large mapped file holds.

Run from the repository root (real MNIST wanted: ``PORTNN_DATA_DIR`` or ``--data-dir``)::

    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/bench_data.py [--backend numpy] [--epochs 3] [--big-gb 1.0]

Prints two tables:

1. the MNIST MLP (784-256-128-10, ReLU, Adam, batch 128) trained ``--epochs`` epochs with x from
   memory and with x from a memory-mapped ``.npy`` (``np.load(..., mmap_mode="r")``), and through
   a :class:`portnn.data.DataLoader` over the mapped file; the best epoch time of each and its
   ratio to memory (the target is <= 1.1x); the sources take turns, an epoch each;
2. one epoch over a memory-mapped training set of ``--big-gb`` GB of float32 in a child process,
   sampling ``/proc/self/status`` every 20 ms: the peak of the process's own memory (``RssAnon``:
   the model, the batches in flight, Python) and of the file pages mapped at once (``RssFile``:
   page cache the kernel may drop, counted in RSS while mapped), against the file's size.

The numbers depend on what else the machine runs; run it on an idle machine to compare.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np

import portnn as pn


def mnist(data_dir: str | None) -> tuple[np.ndarray, np.ndarray]:
    (x, y), _ = pn.datasets.load_mnist(data_dir, download=False)
    return (x.reshape(len(x), -1).astype(np.float32) / np.float32(255)), y.astype(np.int64)


def mlp(backend: str) -> pn.Sequential:
    layers = [pn.layers.Linear(784, 256), pn.layers.ReLU(), pn.layers.Linear(256, 128), pn.layers.ReLU()]
    return pn.Sequential([*layers, pn.layers.Linear(128, 10)], seed=0).to(backend)


def epoch_times(backend: str, sources: dict[str, object], y: object, epochs: int) -> dict[str, list[float]]:
    """Per source, the time of each epoch: one epoch of each source in turn, so that a busy spell of the machine
    falls on all of them alike."""
    models = {name: mlp(backend) for name in sources}
    times: dict[str, list[float]] = {name: [] for name in sources}
    for _ in range(epochs):
        for name, x in sources.items():
            loader = isinstance(x, pn.data.DataLoader)
            history = models[name].fit(
                x, None if loader else y, loss=pn.losses.CrossEntropy(), optimizer=pn.optim.Adam(lr=1e-3), verbose=0,
                **({} if loader else {"batch_size": 128}),
            )  # fmt: skip
            times[name] += history["epoch_time"]
    return times


CHILD = textwrap.dedent(
    """
    import sys, threading, time
    import numpy as np
    import portnn as pn

    path, labels, backend = sys.argv[1:4]
    peaks = {"RssAnon": 0, "RssFile": 0}
    done = threading.Event()

    def sample():
        while not done.is_set():
            with open("/proc/self/status") as f:
                for line in f:
                    key = line.split(":")[0]
                    if key in peaks:
                        peaks[key] = max(peaks[key], int(line.split()[1]))
            time.sleep(0.02)

    x = np.load(path, mmap_mode="r")
    y = np.load(labels)
    model = pn.Sequential([pn.layers.Linear(784, 64), pn.layers.ReLU(), pn.layers.Linear(64, 10)], seed=0).to(backend)
    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    start = time.perf_counter()
    model.fit(x, y, loss=pn.losses.CrossEntropy(), optimizer=pn.optim.Adam(lr=1e-3), batch_size=1024, verbose=0, seed=0)
    seconds = time.perf_counter() - start
    done.set()
    thread.join()
    print(peaks["RssAnon"], peaks["RssFile"], seconds)
    """
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="numpy")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--big-gb", type=float, default=1.0, help="size of the memory-mapped set of table 2 (0: skip)")
    args = parser.parse_args()

    x, y = mnist(args.data_dir)
    with tempfile.TemporaryDirectory() as tmp:
        np.save(Path(tmp) / "x.npy", x)
        xm = np.load(Path(tmp) / "x.npy", mmap_mode="r")
        sources = {
            "memory": x,
            "memory-mapped": xm,
            "DataLoader(mapped, shuffle)": pn.data.DataLoader((xm, y), 128, shuffle=True, seed=0),
        }
        rows = epoch_times(args.backend, sources, y, args.epochs)
        del sources
        del xm
    base = min(rows["memory"])
    print(f"MNIST MLP 784-256-128-10, batch 128, backend {args.backend}, {args.epochs} epochs (best epoch)")
    print(f"{'x from':<30} {'epoch s':>8} {'vs memory':>10}")
    for name, times in rows.items():
        print(f"{name:<30} {min(times):>8.2f} {min(times) / base:>9.2f}x")

    if args.big_gb <= 0:
        return
    n = int(args.big_gb * 2**30 / (784 * 4))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.npy"
        big = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, 784))
        for start in range(0, n, len(x)):  # MNIST repeated
            stop = min(start + len(x), n)
            big[start:stop] = x[: stop - start]
        big.flush()
        del big
        np.save(Path(tmp) / "y.npy", np.resize(y, n))
        env = {**os.environ, "PYTHONPATH": str(Path(pn.__file__).parents[1])}
        out = subprocess.run(
            [sys.executable, "-c", CHILD, str(path), str(Path(tmp) / "y.npy"), args.backend],
            check=True, capture_output=True, text=True, env=env,
        ).stdout.split()  # fmt: skip
    anon_kb, file_kb, seconds = int(out[0]), int(out[1]), float(out[2])
    size_mb = n * 784 * 4 / 2**20
    print()
    print(f"One epoch over a memory-mapped training set of {n} x 784 float32 ({size_mb:.0f} MiB), batch 1024, {seconds:.1f} s")
    print(f"{'peak':<40} {'MiB':>8} {'of the file':>12}")
    print(f"{'process memory (RssAnon)':<40} {anon_kb / 1024:>8.0f} {anon_kb / 1024 / size_mb:>11.2f}x")
    print(f"{'mapped file pages resident (RssFile)':<40} {file_kb / 1024:>8.0f} {file_kb / 1024 / size_mb:>11.2f}x")


if __name__ == "__main__":
    main()

"""How fast does portnn train an MLP on MNIST, next to a hand-written NumPy loop and PyTorch?

What it measures
----------------
Seconds for ONE training epoch over MNIST's 60000 training images (shuffled; SGD with
momentum 0.9, lr 0.1; softmax cross-entropy averaged over each batch; float32; ReLU MLP),
for three contenders that do the same work from the same initial weights:

``portnn``
    ``model.fit(x, y, loss=CrossEntropy(), optimizer=SGD(...), epochs=1, batch_size=B, verbose=0)``
    on the NumPy backend. The data is flattened and scaled to float32 in [0, 1] once,
    before timing, as a user would do; only the ``fit`` call is timed.
``numpy-loop``
    A careful from-scratch NumPy loop, "what a careful student writes": a permutation per
    epoch and fancy-indexed batches, ``x @ W.T + b``, ReLU, stable log-softmax
    cross-entropy, backward, momentum SGD exactly like ``torch.optim.SGD``, in-place
    updates, float32 throughout, train loss and accuracy accumulated like ``fit`` does.
``torch``
    PyTorch on the CPU: ``nn.Linear``/``nn.ReLU``, ``torch.optim.SGD(momentum=0.9)``,
    ``F.cross_entropy``, float32 tensors made before timing, a ``randperm`` shuffle and
    index batches, torch's default thread count. Skipped (with the reason) if torch
    cannot be imported.

Configs: hidden layers ``1024`` and ``256-128`` (i.e. 784-1024-10 and 784-256-128-10),
each with batch sizes 128 and 1000, named ``HIDDENxBATCH`` (``1024x128``, ``256-128x1000``…).
Per config the contenders alternate round-robin (portnn, numpy-loop, torch, portnn, …)
for one untimed warm-up round and then ``--repeats`` timed rounds; the table shows the
median seconds per epoch. After the last round each contender's test accuracy is printed
(outside the timing) to show that all three really train.

Targets: portnn at most 1.10x the hand-written loop, and at most 0.9x PyTorch CPU; issue 13
asks at most 1.05x the hand-written loop (a line per config says PASS or MISS). On a shared
machine set ``OMP_NUM_THREADS=1``, so that all three use one core (torch reads it too).

How to run
----------
From the repository root::

    python benchmarks/bench_mlp.py                       # all four configs, 3 rounds each
    python benchmarks/bench_mlp.py --configs 1024x128    # one config
    python benchmarks/bench_mlp.py --quick --repeats 1   # smoke run on 10000 images

MNIST is read, never downloaded, from ``--data-dir``, else ``$PORTNN_DATA_DIR``, else
``../shared/datasets/mnist`` next to the repository (then portnn's own cache). Timings
depend on the machine and on whatever else runs on it: run on an idle machine.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

import portnn as pn

try:
    import torch
    import torch.nn.functional as torch_F
except ImportError as exc:  # torch is optional: its contender is skipped
    torch = None
    TORCH_MISSING = f"torch is not importable ({exc})"
else:
    TORCH_MISSING = None

LR, MOMENTUM, SEED = 0.1, 0.9, 0
N_IN, N_CLASSES = 28 * 28, 10
CONFIGS = {  # name -> (hidden sizes, batch size)
    "1024x128": ((1024,), 128),
    "1024x1000": ((1024,), 1000),
    "256-128x128": ((256, 128), 128),
    "256-128x1000": ((256, 128), 1000),
}
TARGET_VS_NUMPY, TARGET_VS_TORCH = 1.10, 0.90
TARGET_VS_NUMPY_ISSUE13 = 1.05
DEFAULT_DATA_DIR = Path(__file__).resolve().parents[1] / ".." / "shared" / "datasets" / "mnist"


# -- data ---------------------------------------------------------------------------------
def load_data(data_dir: str | None, quick: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """MNIST flattened to (N, 784) float32 in [0, 1] and int64 labels, as a user would prepare it."""
    data_dir = data_dir or os.environ.get("PORTNN_DATA_DIR") or str(DEFAULT_DATA_DIR)
    try:
        (x_train, y_train), (x_test, y_test) = pn.datasets.load_mnist(data_dir, download=False)
    except pn.datasets.DatasetError as exc:
        sys.exit(f"bench_mlp: MNIST not found; pass --data-dir or set PORTNN_DATA_DIR.\n{exc}")
    if quick:
        x_train, y_train = x_train[:10000], y_train[:10000]

    def prepare(x: np.ndarray) -> np.ndarray:
        return x.reshape(len(x), N_IN).astype(np.float32) / np.float32(255)

    return prepare(x_train), y_train.astype(np.int64), prepare(x_test), y_test.astype(np.int64)


# -- contender 1: portnn ------------------------------------------------------------------
def portnn_model(hidden: tuple[int, ...]) -> pn.Sequential:
    sizes = [N_IN, *hidden, N_CLASSES]
    layers: list[pn.layers.Layer] = []
    for n_prev, n_next in zip(sizes[:-1], sizes[1:]):
        layers += [pn.layers.Linear(n_prev, n_next), pn.layers.ReLU()]
    return pn.Sequential(layers[:-1], seed=SEED)  # no ReLU after the last Linear


class PortnnContender:
    name = "portnn"

    def __init__(self, hidden: tuple[int, ...], x: np.ndarray, y: np.ndarray, batch_size: int) -> None:
        self.hidden, self.x, self.y, self.batch_size = hidden, x, y, batch_size

    def run(self) -> float:
        model = portnn_model(self.hidden)  # fresh weights (the shared initial ones), not timed
        loss, optimizer = pn.losses.CrossEntropy(), pn.optim.SGD(lr=LR, momentum=MOMENTUM)
        start = time.perf_counter()
        model.fit(self.x, self.y, loss=loss, optimizer=optimizer, epochs=1, batch_size=self.batch_size, verbose=0)
        seconds = time.perf_counter() - start
        self.model = model
        return seconds

    def test_accuracy(self, x: np.ndarray, y: np.ndarray) -> float:
        return self.model.evaluate(x, y)["accuracy"]


# -- contender 2: the hand-written NumPy loop ---------------------------------------------
def numpy_forward(params: list[np.ndarray], x: np.ndarray) -> list[np.ndarray]:
    """Activations [x, h1, …, logits]: h = relu(h_prev @ W.T + b), no ReLU on the logits."""
    acts = [x]
    for i in range(0, len(params), 2):
        z = acts[-1] @ params[i].T
        z += params[i + 1]
        if i + 2 < len(params):
            np.maximum(z, 0, out=z)
        acts.append(z)
    return acts


def numpy_train_epoch(
    params: list[np.ndarray],
    bufs: list[np.ndarray | None],
    x: np.ndarray,
    y: np.ndarray,
    batch_size: int,
    rng: np.random.Generator,
) -> tuple[float, float]:
    """One epoch of momentum SGD over (x, y); updates ``params`` and ``bufs`` in place; returns (loss, accuracy)."""
    n = len(x)
    order = rng.permutation(n)
    loss_sum, correct = 0.0, 0
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size]
        xb, yb = x[idx], y[idx]
        m = len(idx)
        rows = np.arange(m)

        acts = numpy_forward(params, xb)
        logits = acts[-1]
        # Stable log-softmax cross-entropy, averaged over the batch.
        shifted = logits - logits.max(axis=1, keepdims=True)
        exp = np.exp(shifted)
        sum_exp = exp.sum(axis=1, keepdims=True)
        loss = np.log(sum_exp[:, 0]).sum() - shifted[rows, yb].sum()
        loss_sum += float(loss)  # sum over the batch, so the epoch loss is a mean per example
        correct += int(np.count_nonzero(logits.argmax(axis=1) == yb))

        # dL/dlogits = (softmax - onehot) / m
        dz = exp
        dz /= sum_exp
        dz[rows, yb] -= 1
        dz *= np.float32(1 / m)
        grads: list[np.ndarray] = [None] * len(params)  # type: ignore[list-item]
        for i in range(len(params) - 2, -1, -2):
            h_in = acts[i // 2]
            grads[i] = dz.T @ h_in
            grads[i + 1] = dz.sum(axis=0)
            if i > 0:
                dz = dz @ params[i]
                dz *= h_in > 0  # ReLU backward (h_in is a ReLU output)

        # torch.optim.SGD with momentum (dampening 0): b = g on the first step, then b = mu*b + g; p -= lr*b
        for j, (p, g) in enumerate(zip(params, grads)):
            if bufs[j] is None:
                bufs[j] = g.copy()
            else:
                bufs[j] *= MOMENTUM
                bufs[j] += g
            p -= LR * bufs[j]
    return loss_sum / n, correct / n


class NumpyLoopContender:
    name = "numpy-loop"

    def __init__(self, init: list[np.ndarray], x: np.ndarray, y: np.ndarray, batch_size: int) -> None:
        self.init, self.x, self.y, self.batch_size = init, x, y, batch_size

    def run(self) -> float:
        params = [a.copy() for a in self.init]
        bufs: list[np.ndarray | None] = [None] * len(params)
        rng = np.random.default_rng(SEED)
        start = time.perf_counter()
        numpy_train_epoch(params, bufs, self.x, self.y, self.batch_size, rng)
        seconds = time.perf_counter() - start
        bad = [a.dtype for a in params + bufs if a.dtype != np.float32]
        assert not bad, f"numpy loop silently promoted to {bad}"
        self.params = params
        return seconds

    def test_accuracy(self, x: np.ndarray, y: np.ndarray) -> float:
        return float(np.mean(numpy_forward(self.params, x)[-1].argmax(axis=1) == y))


# -- contender 3: PyTorch on the CPU ------------------------------------------------------
class TorchContender:
    name = "torch"

    def __init__(self, init: list[np.ndarray], x: np.ndarray, y: np.ndarray, batch_size: int) -> None:
        self.init, self.batch_size = init, batch_size
        self.x, self.y = torch.from_numpy(x), torch.from_numpy(y)  # float32 and int64, made before timing

    def model(self) -> torch.nn.Sequential:
        layers: list[torch.nn.Module] = []
        for i in range(0, len(self.init), 2):
            out_f, in_f = self.init[i].shape
            layers += [torch.nn.Linear(in_f, out_f), torch.nn.ReLU()]
        model = torch.nn.Sequential(*layers[:-1])
        with torch.no_grad():  # the same initial weights as the other two
            for p, a in zip(model.parameters(), self.init):
                p.copy_(torch.from_numpy(a))
        return model

    def run(self) -> float:
        model = self.model()
        optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
        generator = torch.Generator().manual_seed(SEED)
        x, y, n, batch_size = self.x, self.y, len(self.x), self.batch_size
        start = time.perf_counter()
        order = torch.randperm(n, generator=generator)
        loss_sum = torch.zeros(())
        correct = torch.zeros((), dtype=torch.int64)
        for i in range(0, n, batch_size):
            idx = order[i : i + batch_size]
            xb, yb = x[idx], y[idx]
            logits = model(xb)
            loss = torch_F.cross_entropy(logits, yb)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                loss_sum += loss * len(idx)
                correct += (logits.argmax(dim=1) == yb).sum()
        self.logs = (float(loss_sum) / n, int(correct) / n)  # the epoch's loss and accuracy, as fit returns them
        seconds = time.perf_counter() - start
        self.trained = model
        return seconds

    def test_accuracy(self, x: np.ndarray, y: np.ndarray) -> float:
        with torch.no_grad():
            predicted = self.trained(torch.from_numpy(x)).argmax(dim=1).numpy()
        return float(np.mean(predicted == y))


# -- the benchmark ------------------------------------------------------------------------
def machine_facts() -> list[str]:
    facts = [f"python {sys.version.split()[0]}, portnn {pn.__version__}, numpy {np.__version__}"]
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        build = f"{blas.get('name')} {blas.get('version')}; {blas.get('openblas configuration', '')}".rstrip("; ")
        facts.append(f"numpy BLAS (build): {build}")
    except Exception:  # older numpy: the plain-text report
        text = io.StringIO()
        with contextlib.redirect_stdout(text):
            np.show_config()
        lines = [line.strip() for line in text.getvalue().splitlines() if "blas" in line.lower()]
        facts.append("numpy BLAS (build): " + ("; ".join(lines[:3]) or "unknown"))
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        facts.append("BLAS at run time: threadpoolctl not installed")
    else:
        for pool in threadpool_info():
            if pool.get("user_api") == "blas":
                facts.append(
                    f"BLAS at run time: {pool.get('internal_api')} {pool.get('version')}, "
                    f"{pool.get('num_threads')} threads, arch {pool.get('architecture')} ({Path(pool.get('filepath', '')).name})"
                )
    env = [f"{k}={v}" for k, v in sorted(os.environ.items()) if k.startswith(("OPENBLAS_", "OMP_", "MKL_", "GOTO"))]
    facts.append("thread/BLAS environment: " + (" ".join(env) or "none set"))
    if torch is None:
        facts.append(f"torch: skipped, {TORCH_MISSING}")
    else:
        facts.append(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    facts.append(f"nproc: {cpus} (os.cpu_count {os.cpu_count()})")
    return facts


class Progress:
    """One line on stderr per timed epoch, ``[3/48] 1024x128 round 1/3 numpy-loop: 2.95 s``: the run shows it is alive.

    The report (stdout) stays the same; ``--quiet`` turns the lines off.
    """

    def __init__(self, total: int, enabled: bool = True) -> None:
        self.total, self.done, self.enabled, self.start = total, 0, enabled, time.perf_counter()

    def step(self, config: str, round_: int, repeats: int, contender: str, seconds: float) -> None:
        self.done += 1
        if self.enabled:
            which = "warm-up" if round_ == 0 else f"round {round_}/{repeats}"
            elapsed = time.perf_counter() - self.start
            print(
                f"[{self.done}/{self.total}] {config} {which} {contender}: {seconds:.2f} s ({elapsed:.0f} s so far)",
                file=sys.stderr,
                flush=True,
            )


def contender_count() -> int:
    return 3 if torch is not None else 2


def bench_config(name: str, data: tuple[np.ndarray, ...], repeats: int, progress: Progress | None = None) -> dict[str, float]:
    """Median seconds per epoch of each contender on one config; prints the raw times and test accuracies."""
    x, y, x_test, y_test = data
    hidden, batch_size = CONFIGS[name]
    init = [a.copy() for a in portnn_model(hidden).state_dict().values()]  # W1, b1, W2, b2, …
    contenders = [PortnnContender(hidden, x, y, batch_size), NumpyLoopContender(init, x, y, batch_size)]
    if torch is not None:
        contenders.append(TorchContender(init, x, y, batch_size))
    times: dict[str, list[float]] = {c.name: [] for c in contenders}
    cpu: dict[str, list[float]] = {c.name: [] for c in contenders}  # process CPU time, set-up included (small)
    for round_ in range(repeats + 1):  # round 0 is the untimed warm-up
        for contender in contenders:
            gc.collect()
            cpu0 = time.process_time()
            seconds = contender.run()
            cpu_seconds = time.process_time() - cpu0
            if progress is not None:
                progress.step(name, round_, repeats, contender.name, seconds)
            if round_:
                times[contender.name].append(seconds)
                cpu[contender.name].append(cpu_seconds)
    gc.collect()
    arch = "-".join(map(str, (N_IN, *hidden, N_CLASSES)))
    print(f"{name} ({arch}, batch {batch_size}):")
    for contender in contenders:
        run_times = " ".join(f"{t:.3f}" for t in times[contender.name])
        accuracy = contender.test_accuracy(x_test, y_test)
        print(f"  {contender.name:10s} s/epoch {run_times}   test accuracy after 1 epoch {accuracy:.4f}", flush=True)
    medians = {k: statistics.median(v) for k, v in times.items()}
    medians.update({f"{k} cpu": statistics.median(v) for k, v in cpu.items()})
    return medians


def print_table(results: dict[str, dict[str, float]]) -> None:
    def cell(value: float | None, fmt: str) -> str:
        return "n/a" if value is None else format(value, fmt)

    def verdict(ratio: float | None, target: float) -> str:
        return "n/a" if ratio is None else ("PASS" if ratio <= target else "MISS")

    print()
    print("| config | portnn s/epoch | numpy-loop s/epoch | torch s/epoch | portnn/numpy | portnn/torch |")
    print("|---|---:|---:|---:|---:|---:|")
    ratios: dict[str, tuple[float, float | None]] = {}
    for name, med in results.items():
        p, n, t = med["portnn"], med["numpy-loop"], med.get("torch")
        ratios[name] = (p / n, None if t is None else p / t)
        print(f"| {name} | {p:.3f} | {n:.3f} | {cell(t, '.3f')} | {p / n:.2f} | {cell(ratios[name][1], '.2f')} |")
    print()
    print(f"Targets: portnn <= {TARGET_VS_NUMPY:.2f}x the numpy loop, <= {TARGET_VS_TORCH:.2f}x PyTorch CPU")
    for name, (vs_numpy, vs_torch) in ratios.items():
        print(
            f"  {name:14s} vs numpy-loop {vs_numpy:.2f}x {verdict(vs_numpy, TARGET_VS_NUMPY)}"
            f"   vs torch {cell(vs_torch, '.2f')}x {verdict(vs_torch, TARGET_VS_TORCH)}"
        )
    print(f"Issue 13 target: portnn <= {TARGET_VS_NUMPY_ISSUE13:.2f}x the numpy loop (wall; by process CPU time beside it)")
    for name, (vs_numpy, _) in ratios.items():
        med = results[name]
        by_cpu = med["portnn cpu"] / med["numpy-loop cpu"]
        print(
            f"  {name:14s} vs numpy-loop {vs_numpy:.2f}x {verdict(vs_numpy, TARGET_VS_NUMPY_ISSUE13)}"
            f"   by CPU time {by_cpu:.2f}x {verdict(by_cpu, TARGET_VS_NUMPY_ISSUE13)}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds per config, after one warm-up round (default 3)")
    parser.add_argument(
        "--configs",
        nargs="+",
        default=list(CONFIGS),
        metavar="NAME",
        help=f"subset of {', '.join(CONFIGS)} (space- or comma-separated; default all)",
    )
    parser.add_argument(
        "--data-dir",
        default=None,
        help="folder with the MNIST IDX files (default: $PORTNN_DATA_DIR, then ../shared/datasets/mnist beside the repository)",
    )
    parser.add_argument("--quick", action="store_true", help="train on the first 10000 images only (a smoke run)")
    parser.add_argument("--quiet", action="store_true", help="no progress line per timed epoch on stderr")
    args = parser.parse_args(argv)
    configs = [c for arg in args.configs for c in arg.split(",") if c]
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown or args.repeats < 1:
        parser.error(f"unknown config(s) {unknown}; choose from {list(CONFIGS)}" if unknown else "--repeats must be >= 1")

    pn.set_backend("numpy")
    data = load_data(args.data_dir, args.quick)
    for line in machine_facts():
        print(line)
    print(
        f"MNIST: {len(data[0])} training images{' (--quick)' if args.quick else ''}, {len(data[2])} test; "
        f"SGD lr {LR} momentum {MOMENTUM}, float32; 1 warm-up + {args.repeats} timed rounds, round-robin; medians"
    )
    if torch is None:
        print(f"torch contender skipped: {TORCH_MISSING}")
    runs = len(configs) * (args.repeats + 1) * contender_count()
    print(f"{runs} epochs to time (a progress line each on stderr)\n", flush=True)
    progress = Progress(runs, enabled=not args.quiet)
    results = {name: bench_config(name, data, args.repeats, progress) for name in configs}
    print_table(results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

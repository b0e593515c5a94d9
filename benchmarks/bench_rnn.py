"""How fast is one training step of an LSTM classifier in portnn, next to PyTorch on the CPU?

What it measures
----------------
Sequential MNIST's net at batch 128: an LSTM reading 28 steps of 28 features into 128 hidden
units, the last hidden state into Linear(128, 10), softmax cross-entropy, one Adam step. Per
step: forward, backward through time, update. ``--cell gru`` times the same net with a GRU.

``portnn``  ``model.train_step`` on the NumPy backend, float32.
``generic`` (``--generic``) the same portnn step with the NumPy adapter's ``lstm`` kernel
            switched off: the array-API path that torch, CuPy and array-api-strict run.
``torch``   ``torch.nn.LSTM(batch_first=True)`` (its last step's output) and ``torch.nn.Linear``
            with ``torch.optim.Adam``, CPU, float32.

Both use the same number of threads (``--threads``, default: what NumPy's BLAS has; set for
NumPy through threadpoolctl when it is installed, else take it from the environment), start
from the same weights and see the same batches; the contenders alternate (portnn, torch,
portnn, …) for ``--repeats`` rounds of ``--steps`` steps after a warm-up, and the table gives
the median milliseconds per step, wall and CPU (``time.process_time``, all threads: on a busy
machine the wall time also counts other people's work), and the ratios. Target: portnn <= 1.5x torch. ``--profile``
shows where portnn's time goes (cProfile, top functions by own time).

How to run, from the repository root, on an otherwise idle machine::

    python benchmarks/bench_rnn.py
    python benchmarks/bench_rnn.py --cell gru --repeats 3 --steps 10 --profile
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import statistics
import time
from typing import Any

import numpy as np
from _profile import print_profile

import portnn as pn

BATCH, STEPS, FEATURES, HIDDEN, CLASSES = 128, 28, 28, 128, 10
TARGET = 1.5


def portnn_net(cell: str, seed: int = 0) -> pn.Sequential:
    recurrent = {"lstm": pn.layers.LSTM, "gru": pn.layers.GRU}[cell]
    return pn.Sequential(
        [recurrent(FEATURES, HIDDEN), pn.layers.Linear(HIDDEN, CLASSES)], input_shape=(STEPS, FEATURES), seed=seed
    )


def torch_net(cell: str, model: pn.Sequential) -> Any:
    import torch

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            recurrent = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell]
            self.rnn = recurrent(FEATURES, HIDDEN, batch_first=True)
            self.head = torch.nn.Linear(HIDDEN, CLASSES)

        def forward(self, x: Any) -> Any:
            return self.head(self.rnn(x)[0][:, -1])

    net = Net()
    state = {k.replace("0.", "rnn.", 1).replace("1.", "head.", 1): v for k, v in model.state_dict().items()}
    net.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()})
    return net


def run_portnn(model: pn.Sequential, opt: Any, batches: list[tuple[np.ndarray, np.ndarray]]) -> tuple[float, float]:
    loss = pn.losses.CrossEntropy()
    start, cpu = time.perf_counter(), time.process_time()
    for x, y in batches:
        model.train_step(x, y, loss, opt, validate=False)  # zeroes the gradients first
    return (time.perf_counter() - start) / len(batches), (time.process_time() - cpu) / len(batches)


@contextlib.contextmanager
def generic_path() -> Any:
    """The NumPy adapter's recurrent kernels switched off: the core's array-API path."""
    from portnn.backends import Adapter
    from portnn.backends.numpy import NumpyAdapter

    saved = NumpyAdapter.lstm
    NumpyAdapter.lstm = Adapter.lstm  # type: ignore[method-assign]
    try:
        yield
    finally:
        NumpyAdapter.lstm = saved  # type: ignore[method-assign]


def run_torch(net: Any, opt: Any, batches: list[Any]) -> tuple[float, float]:
    import torch

    start, cpu = time.perf_counter(), time.process_time()
    for x, y in batches:
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    return (time.perf_counter() - start) / len(batches), (time.process_time() - cpu) / len(batches)


def _blas_threads(threads: int | None) -> Any:
    """A context that gives NumPy's BLAS ``threads`` threads (threadpoolctl), and the count in force."""
    try:
        import threadpoolctl
    except ImportError:
        return contextlib.nullcontext(), threads
    if threads is None:
        blas = [p["num_threads"] for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"]
        threads = blas[0] if blas else 1
    return threadpoolctl.threadpool_limits(limits=threads, user_api="blas"), threads


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cell", choices=["lstm", "gru"], default="lstm")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None, help="threads of both (default: NumPy's BLAS's)")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--generic", action="store_true", help="also time portnn with its NumPy LSTM kernel off")
    args = parser.parse_args(argv)

    pn.set_backend("numpy")
    rng = np.random.default_rng(0)
    xs = rng.random((args.steps, BATCH, STEPS, FEATURES), dtype=np.float32)
    ys = rng.integers(0, CLASSES, size=(args.steps, BATCH))
    batches = list(zip(xs, ys))
    limit, threads = _blas_threads(args.threads)
    try:
        import torch

        if threads is not None:
            torch.set_num_threads(threads)
        torch_batches = [(torch.from_numpy(x), torch.from_numpy(y)) for x, y in batches]
        print(f"numpy {np.__version__}, torch {torch.__version__}; {torch.get_num_threads()} threads each")
    except ImportError as exc:
        torch = None
        print(f"torch unavailable ({exc}): timing portnn alone")

    model = portnn_net(args.cell)
    opt = pn.optim.Adam(model.parameters(), lr=1e-3)
    net = topt = None
    if torch is not None:
        net = torch_net(args.cell, portnn_net(args.cell))
        topt = torch.optim.Adam(net.parameters(), lr=1e-3)
    generic = gopt = None
    if args.generic:
        generic = portnn_net(args.cell)
        gopt = pn.optim.Adam(generic.parameters(), lr=1e-3)
    times: dict[str, list[tuple[float, float]]] = {"portnn": [], "generic": [], "torch": []}
    with limit:
        run_portnn(model, opt, batches[:3])  # warm-up
        if generic is not None:
            with generic_path():
                run_portnn(generic, gopt, batches[:3])
        if torch is not None:
            run_torch(net, topt, torch_batches[:3])
        for _ in range(args.repeats):
            gc.collect()
            times["portnn"].append(run_portnn(model, opt, batches))
            if generic is not None:
                gc.collect()
                with generic_path():
                    times["generic"].append(run_portnn(generic, gopt, batches))
            if torch is not None:
                gc.collect()
                times["torch"].append(run_torch(net, topt, torch_batches))

        name = args.cell.upper()
        med = {
            k: (statistics.median(w for w, _ in v) * 1e3, statistics.median(c for _, c in v) * 1e3) for k, v in times.items() if v
        }
        print(
            f"\n{name}({FEATURES}, {HIDDEN}) -> Linear({HIDDEN}, {CLASSES}), cross-entropy, Adam; batch {BATCH}, "
            f"{STEPS} steps; median of {args.repeats} x {args.steps} train steps"
        )
        labels = {"portnn": "portnn (numpy)", "generic": "portnn, generic path", "torch": "torch (CPU)"}
        print("| contender | ms/step | CPU ms/step |")
        print("|---|---:|---:|")
        for k, (wall, cpu) in med.items():
            print(f"| {labels[k]} | {wall:.2f} | {cpu:.2f} |")
        if "torch" in med:
            t, tc = med["torch"]
            for k in ("portnn", "generic"):
                if k in med:
                    p, pc = med[k]
                    verdict = "PASS" if p / t <= TARGET else "MISS"
                    print(f"\n{labels[k]} / torch = {p / t:.2f}x wall, {pc / tc:.2f}x CPU  (target <= {TARGET:.2f}x: {verdict})")

        if args.profile:
            print_profile(lambda: run_portnn(model, opt, batches), rows=14)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

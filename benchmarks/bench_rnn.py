"""How fast is one training step of an LSTM classifier in portnn, next to PyTorch on the CPU?

What it measures
----------------
Sequential MNIST's net at batch 128: an LSTM reading 28 steps of 28 features into 128 hidden
units, the last hidden state into Linear(128, 10), softmax cross-entropy, one Adam step. Per
step: forward, backward through time, update. ``--cell gru`` times the same net with a GRU.

``portnn``  ``model.train_step`` on the NumPy backend, float32.
``torch``   ``torch.nn.LSTM(batch_first=True)`` (its last step's output) and ``torch.nn.Linear``
            with ``torch.optim.Adam``, CPU, float32.

Both use the same number of threads (``--threads``, default: what NumPy's BLAS has; set for
NumPy through threadpoolctl when it is installed, else take it from the environment), start
from the same weights and see the same batches; the contenders alternate (portnn, torch,
portnn, …) for ``--repeats`` rounds of ``--steps`` steps after a warm-up, and the table gives
the median milliseconds per step and the ratio. Target: portnn <= 1.5x torch. ``--profile``
shows where portnn's time goes (cProfile, top functions by own time).

How to run, from the repository root, on an otherwise idle machine::

    python benchmarks/bench_rnn.py
    python benchmarks/bench_rnn.py --cell gru --repeats 3 --steps 10 --profile
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import gc
import io
import pstats
import statistics
import time
from typing import Any

import numpy as np

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


def run_portnn(model: pn.Sequential, opt: Any, batches: list[tuple[np.ndarray, np.ndarray]]) -> float:
    loss = pn.losses.CrossEntropy()
    start = time.perf_counter()
    for x, y in batches:
        model.train_step(x, y, loss, opt, validate=False)  # zeroes the gradients first
    return (time.perf_counter() - start) / len(batches)


def run_torch(net: Any, opt: Any, batches: list[Any]) -> float:
    import torch

    start = time.perf_counter()
    for x, y in batches:
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    return (time.perf_counter() - start) / len(batches)


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
    times: dict[str, list[float]] = {"portnn": [], "torch": []}
    with limit:
        run_portnn(model, opt, batches[:3])  # warm-up
        if torch is not None:
            run_torch(net, topt, torch_batches[:3])
        for _ in range(args.repeats):
            gc.collect()
            times["portnn"].append(run_portnn(model, opt, batches))
            if torch is not None:
                gc.collect()
                times["torch"].append(run_torch(net, topt, torch_batches))

        name = args.cell.upper()
        p = statistics.median(times["portnn"]) * 1e3
        print(
            f"\n{name}({FEATURES}, {HIDDEN}) -> Linear({HIDDEN}, {CLASSES}), cross-entropy, Adam; batch {BATCH}, "
            f"{STEPS} steps; median of {args.repeats} x {args.steps} train steps"
        )
        print("| contender | ms/step |")
        print("|---|---:|")
        print(f"| portnn (numpy) | {p:.2f} |")
        if times["torch"]:
            t = statistics.median(times["torch"]) * 1e3
            print(f"| torch (CPU) | {t:.2f} |")
            verdict = "PASS" if p / t <= TARGET else "MISS"
            print(f"\nportnn / torch = {p / t:.2f}x  (target <= {TARGET:.2f}x: {verdict})")

        if args.profile:
            prof = cProfile.Profile()
            prof.enable()
            run_portnn(model, opt, batches)
            prof.disable()
            out = io.StringIO()
            pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(14)
            print("\nwhere portnn's time goes (cProfile, by own time):")
            print("\n".join(line for line in out.getvalue().splitlines() if line.strip())[:4000])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

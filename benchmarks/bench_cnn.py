"""How fast is one training step of a small CNN in portnn, next to PyTorch on the CPU?

What it measures
----------------
A LeNet-like net on 28x28 single-channel images at batch 128 (the issue's reference net):
conv 1->8 3x3, ReLU, max-pool 2, conv 8->16 3x3, ReLU, max-pool 2, dense ->10, softmax
cross-entropy, one SGD step (momentum 0.9). Per step: forward, backward, update.

``portnn``  ``model.train_step`` on the NumPy backend, float32.
``torch``   the same net in ``torch.nn`` with ``torch.optim.SGD``, CPU, float32, default threads.

Times are wall-clock medians; the table also gives process CPU time per step, which on a
machine shared with other work leaves out the time spent waiting for a core.

Both start from the same weights and see the same batches; the contenders alternate
(portnn, torch, portnn, …) for ``--repeats`` rounds of ``--steps`` steps after a warm-up, and
the table gives the median milliseconds per step and the ratio. Target: portnn <= 1.3x torch
(issue 13 asks <= 1.0x). Threads: set ``OMP_NUM_THREADS=1`` to compare one core against one
core (torch reads it too; the header says how many threads torch uses), as on a shared machine.
Beside the times it prints portnn's minor page faults per step (fresh temporaries that the
allocator maps anew each step; the NumPy backend's workspace keeps them near zero).

It also prints portnn's peak memory for one step at batch 128 (tracemalloc sees NumPy's
allocations; arrays that the NumPy workspace reuses from the previous step are not new
allocations, so the workspace's own size is printed beside it) next to the size of one im2col
buffer per conv layer, and, with ``--profile``,
where portnn's time goes (cProfile, top functions by own time).

How to run, from the repository root::

    python benchmarks/bench_cnn.py
    python benchmarks/bench_cnn.py --repeats 3 --steps 20 --profile
"""

from __future__ import annotations

import argparse
import gc
import resource
import statistics
import time
import tracemalloc

import numpy as np
from _profile import print_profile

import portnn as pn

BATCH = 128


def portnn_net(seed: int = 0) -> pn.Sequential:
    L = pn.layers
    return pn.Sequential(
        [
            L.Conv2d(1, 8, 3), L.ReLU(), L.MaxPool2d(2),
            L.Conv2d(8, 16, 3), L.ReLU(), L.MaxPool2d(2),
            L.Flatten(), L.Linear(16 * 5 * 5, 10),
        ],
        seed=seed,
        input_shape=(1, 28, 28),
    )  # fmt: skip


def torch_net(model: pn.Sequential):  # noqa: ANN201 - torch is optional
    import torch

    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 3), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(8, 16, 3), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(16 * 5 * 5, 10),
    )  # fmt: skip
    state = {k: torch.from_numpy(np.array(v)) for k, v in model.state_dict().items()}
    net.load_state_dict(state)
    return net


def run_portnn(model: pn.Sequential, opt: pn.optim.SGD, batches: list[tuple[np.ndarray, np.ndarray]]) -> float:
    loss = pn.losses.CrossEntropy()
    start = time.perf_counter()
    for x, y in batches:
        model.train_step(x, y, loss, opt, validate=False)
    return (time.perf_counter() - start) / len(batches)


def run_torch(net, opt, batches) -> float:  # noqa: ANN001
    import torch

    start = time.perf_counter()
    for x, y in batches:
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    return (time.perf_counter() - start) / len(batches)


def minor_faults() -> int:
    """Minor page faults of this process so far (first touches of freshly mapped memory)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def workspace_bytes() -> int:
    """Bytes the NumPy backend keeps for reuse between steps (0 where it keeps none)."""
    workspace = getattr(pn.backends.get_adapter("numpy"), "workspace", None)
    return 0 if workspace is None else workspace.nbytes


def peak_memory(model: pn.Sequential, x: np.ndarray, y: np.ndarray) -> int:
    opt = pn.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    model.train_step(x, y, pn.losses.CrossEntropy(), opt)  # momentum buffers exist before measuring
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    model.train_step(x, y, pn.losses.CrossEntropy(), opt)
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    return peak


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args(argv)

    rng = np.random.default_rng(0)
    xs = rng.random((args.steps, BATCH, 1, 28, 28), dtype=np.float32)
    ys = rng.integers(0, 10, size=(args.steps, BATCH))
    batches = list(zip(xs, ys))
    try:
        import torch

        torch_batches = [(torch.from_numpy(x), torch.from_numpy(y)) for x, y in batches]
        print(f"numpy {np.__version__}, torch {torch.__version__} ({torch.get_num_threads()} threads)")
    except ImportError as exc:
        torch = None
        print(f"torch unavailable ({exc}): timing portnn alone")

    model = portnn_net()
    opt = pn.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    net = topt = None
    if torch is not None:
        net = torch_net(portnn_net())
        topt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    run_portnn(model, opt, batches[:3])  # warm-up
    if torch is not None:
        run_torch(net, topt, torch_batches[:3])
    times: dict[str, list[float]] = {"portnn": [], "torch": []}
    faults: list[float] = []
    cpu: dict[str, list[float]] = {"portnn": [], "torch": []}  # process CPU time: what a busy machine's waits leave out
    for _ in range(args.repeats):
        gc.collect()
        before, cpu0 = minor_faults(), time.process_time()
        times["portnn"].append(run_portnn(model, opt, batches))
        cpu["portnn"].append((time.process_time() - cpu0) / len(batches))
        faults.append((minor_faults() - before) / len(batches))
        if torch is not None:
            gc.collect()
            cpu0 = time.process_time()
            times["torch"].append(run_torch(net, topt, torch_batches))
            cpu["torch"].append((time.process_time() - cpu0) / len(batches))

    p = statistics.median(times["portnn"]) * 1e3
    print(f"\nLeNet-like train step, batch {BATCH}, median of {args.repeats} x {args.steps} steps")
    print("| contender | ms/step | CPU ms/step |")
    print("|---|---:|---:|")
    print(f"| portnn (numpy) | {p:.2f} | {statistics.median(cpu['portnn']) * 1e3:.2f} |")
    if times["torch"]:
        t = statistics.median(times["torch"]) * 1e3
        print(f"| torch (CPU) | {t:.2f} | {statistics.median(cpu['torch']) * 1e3:.2f} |")
        print(f"\nportnn / torch = {p / t:.2f}x  (target <= 1.30x: {'PASS' if p / t <= 1.3 else 'MISS'})")
        print(f"issue 13 target portnn / torch <= 1.00x: {'PASS' if p / t <= 1.0 else 'MISS'}")
        ratio_cpu = statistics.median(cpu["portnn"]) / statistics.median(cpu["torch"])
        print(f"portnn / torch by CPU time = {ratio_cpu:.2f}x (steadier than wall time on a busy machine)")
    print(f"portnn minor page faults per step: {statistics.median(faults):.0f} (median of {args.repeats} rounds)")

    x0, y0 = batches[0]
    peak = peak_memory(portnn_net(), x0, y0)
    im2col = [BATCH * 1 * 9 * 26 * 26 * 4, BATCH * 8 * 9 * 11 * 11 * 4]
    print(
        f"\nportnn peak memory in one train step at batch {BATCH}: {peak / 2**20:.1f} MiB "
        f"(one im2col buffer: conv1 {im2col[0] / 2**20:.1f} MiB, conv2 {im2col[1] / 2**20:.1f} MiB; "
        f"input batch {x0.nbytes / 2**20:.1f} MiB)"
    )
    kept = workspace_bytes()
    print(
        f"NumPy workspace kept for reuse between steps (not in that peak): {kept / 2**20:.1f} MiB; "
        f"a step's footprint, peak + workspace: {(peak + kept) / 2**20:.1f} MiB"
    )

    if args.profile:
        print_profile(lambda: run_portnn(model, opt, batches))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Array operations and device-to-host reads per training step, against the budgets of issue 13.

Counted on NumPy by :class:`portnn.testing.OpCounter` (a counting subclass of the NumPy array:
every operator, namespace function, indexed write and host read of one step), with the NumPy
adapter's own kernels switched off so that the count is that of the portable path a GPU runs:
on a GPU each operation is a kernel launch and each host read a wait for the device.

Columns: ``generic`` is ``model.train_step(x, y, loss, optimizer, validate=False)`` (as ``fit``
calls it; the third step, state made) on the generic path; ``cupy`` the same with CuPy's fused
optimizer kernels counted as the one launch each they are there (budgets apply to it);
``fit`` one step of ``model.fit``'s loop (batch gather and sums included) with CuPy's kernels,
from fits of 16 and 8 steps differenced; ``reads`` the host reads inside those fit steps
(``steps_per_execution="auto"``: the losses are read every 50 steps and at the epoch's end,
and the 8- and 16-step fits read once each). Nets: the MLP 784-1024-10 (SGD with momentum,
Adam) and the CNN of ``portnn train --preset cnn`` without its augmentation layer (Adam),
batch 128. ``--sites`` lists each net's operations by the function that issued them. Last, the same
steps counted on the torch backend (on CUDA where it works) through a ``TorchFunctionMode``.

Run: ``python benchmarks/bench_ops.py`` (a few seconds). ``MISS`` marks a count above the issue's target;
the exit status is 1 when a count exceeds what ``tests/test_budgets.py`` holds (a regression) or a step reads
from the device.
"""

from __future__ import annotations

import sys

import numpy as np

import portnn as pn
from portnn.backends.cupy import OPTIMIZER_KERNELS
from portnn.cli import build_cnn
from portnn.testing import OpCounter

#: Operations per ``train_step`` with CuPy's kernels (GPU launches): the issue's target, and the count
#: tests/test_budgets.py holds (the breakdown by site is printed with --sites).
BUDGETS = {"mlp-adam": (40, 40), "cnn-adam": (130, 130)}
BATCH = 128


def mlp() -> pn.Sequential:
    return pn.Sequential([pn.layers.Linear(784, 1024), pn.layers.ReLU(), pn.layers.Linear(1024, 10)], seed=0)


def cnn() -> pn.Sequential:
    return build_cnn((1, 28, 28), [16, 32], [128], 10, dropout=0.2, augment=0, seed=0)


NETS = {
    "mlp-sgd": (mlp, lambda: pn.optim.SGD(lr=0.1, momentum=0.9), (784,)),
    "mlp-adam": (mlp, lambda: pn.optim.Adam(lr=1e-3), (784,)),
    "cnn-adam": (cnn, lambda: pn.optim.Adam(lr=1e-3), (1, 28, 28)),
}


def data(shape: tuple[int, ...], n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.random((n, *shape), dtype=np.float32), rng.integers(0, 10, n)


def per_train_step(name: str, kernels: tuple[str, ...] = (), backend: str = "numpy", device: str | None = None) -> OpCounter:
    """A counter that saw one ``train_step`` (the third: the optimizer's state and the generic path's constants exist)."""
    build, make_opt, shape = NETS[name]
    with pn.use_backend(backend, device):
        model, opt, loss = build(), make_opt(), pn.losses.CrossEntropy()
        opt.bind(model.parameters())
        x, y = (pn.backends.as_backend_array(a, model.backend) for a in data(shape, BATCH))
        model.train_step(x, y, loss, opt, validate=False)
        with OpCounter(model, opt, kernels=kernels):  # the generic path's constants (made once per device) exist
            model.train_step(x, y, loss, opt, validate=False)
        with OpCounter(model, opt, kernels=kernels, sites=True) as counter:
            model.train_step(counter.track(x), counter.track(y), loss, opt, validate=False)
    return counter


def torch_rows() -> None:
    """The same steps counted on the torch backend (CUDA where it works): every call on a tensor, PyTorch's count."""
    if "torch" not in pn.backends.available_backends():
        print("torch: not installed, not counted")
        return
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    for name in NETS:
        counter = per_train_step(name, backend="torch", device=device)
        print(f"{name + '@torch':17} {counter.ops:>5} operations, {counter.reads} host reads per train_step on {device}")


def per_fit_step(name: str, steps: int = 8, kernels: tuple[str, ...] = OPTIMIZER_KERNELS) -> tuple[float, float]:
    """Operations and reads per step of ``fit`` (fits of ``2 * steps`` and ``steps`` steps, differenced)."""
    counts = []
    for k in (steps, 2 * steps):
        build, make_opt, shape = NETS[name]
        model, opt = build(), make_opt()
        x, y = data(shape, BATCH * k)
        model.fit(x[:BATCH], y[:BATCH], loss="sparse_categorical_crossentropy", optimizer=opt, epochs=1,
                  batch_size=BATCH, verbose=0)  # fmt: skip
        with OpCounter(model, opt, kernels=kernels) as counter:
            model.fit(counter.track(x), counter.track(y), optimizer=opt, epochs=1, batch_size=BATCH, verbose=0)
        counts.append(counter.snapshot())
    return (counts[1][0] - counts[0][0]) / steps, (counts[1][1] - counts[0][1]) / steps


def main(argv: list[str]) -> int:
    print(f"{'net':9} {'generic':>8} {'cupy':>5} {'fit':>6} {'reads':>6} {'target':>7} {'held':>5}  verdict")
    regressed = False
    for name in NETS:
        generic = per_train_step(name)
        cupy = per_train_step(name, OPTIMIZER_KERNELS)
        fit_ops, fit_reads = per_fit_step(name)
        target, held = BUDGETS.get(name, (None, None))
        reads_ok = cupy.reads == 0 and fit_reads == 0
        verdict = "PASS" if reads_ok and (target is None or cupy.ops <= target) else "MISS"
        if target is None:
            verdict += " (reads only)"
        regressed |= not reads_ok or (held is not None and cupy.ops > held)
        row = f"{name:9} {generic.ops:>8} {cupy.ops:>5} {fit_ops:>6.1f} {fit_reads:>6.2f}"
        print(f"{row} {target or '-':>7} {held or '-':>5}  {verdict}")
        if "--sites" in argv:
            for site, n in sorted(cupy.sites.items(), key=lambda kv: -kv[1]):
                print(f"    {n:4}  {site}")
    print(
        "generic: operations per train_step on the generic path; cupy: with CuPy's fused optimizer kernels (GPU "
        "launches; target and held apply to it); fit: per step of fit; reads: host reads inside fit's steps (0)"
    )
    torch_rows()
    return 1 if regressed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Array operations and device-to-host reads per training step, against the budgets of issue 13.

Counted on NumPy by :class:`portnn.testing.OpCounter` (a counting subclass of the NumPy array:
every operator, namespace function, indexed write and host read of one step), with the NumPy
adapter's own kernels switched off so that the count is that of the portable path a GPU runs:
on a GPU each operation is a kernel launch and each host read a wait for the device.

Rows: ``train_step`` (``model.train_step(x, y, loss, optimizer)`` after two warm-up steps) and
``fit`` (one step of ``model.fit``'s loop, its batch gather and sums included: the difference
between fits of 2k and k steps, divided by k; reads counted the same way). Nets: the MLP
784-1024-10 (SGD, Adam) and the CNN of ``portnn train --preset cnn`` without its augmentation
layer (Adam), batch 128.

Run: ``python benchmarks/bench_ops.py`` (a few seconds). Exit status 1 when a budget is missed.
"""

from __future__ import annotations

import sys

import numpy as np

import portnn as pn
from portnn.cli import build_cnn
from portnn.testing import OpCounter

BUDGETS = {"mlp-adam": 40, "cnn-adam": 130}
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


def per_train_step(name: str) -> tuple[int, int, dict[str, int]]:
    """Operations and reads of one ``train_step`` (the third: state and caches exist by then)."""
    build, make_opt, shape = NETS[name]
    model, opt, loss = build(), make_opt(), pn.losses.CrossEntropy()
    opt.bind(model.parameters())
    x, y = data(shape, BATCH)
    with OpCounter(model, opt) as counter:
        x, y = counter.track(x), counter.track(y)
        for _ in range(2):
            model.train_step(x, y, loss, opt)
        before, names = counter.snapshot(), dict(counter.names)
        model.train_step(x, y, loss, opt)
        after = counter.snapshot()
    by_name = {k: v - names.get(k, 0) for k, v in counter.names.items() if v - names.get(k, 0)}
    return after[0] - before[0], after[1] - before[1], by_name


def per_fit_step(name: str, steps: int = 8, **fit_args: object) -> tuple[float, float]:
    """Operations and reads per step of ``fit`` (fits of ``2 * steps`` and ``steps`` steps, differenced)."""
    counts = []
    for k in (steps, 2 * steps):
        build, make_opt, shape = NETS[name]
        model, opt = build(), make_opt()
        x, y = data(shape, BATCH * k)
        model.fit(x[:BATCH], y[:BATCH], loss="sparse_categorical_crossentropy", optimizer=opt, epochs=1,
                  batch_size=BATCH, verbose=0)  # fmt: skip
        with OpCounter(model, opt) as counter:
            model.fit(counter.track(x), counter.track(y), optimizer=opt, epochs=1, batch_size=BATCH, verbose=0, **fit_args)
        counts.append(counter.snapshot())
    return (counts[1][0] - counts[0][0]) / steps, (counts[1][1] - counts[0][1]) / steps


def main() -> int:
    print(f"{'net':10} {'ops/train_step':>15} {'ops/fit step':>13} {'reads/fit step':>15} {'budget':>7}  verdict")
    missed = False
    for name in NETS:
        ops, reads, by_name = per_train_step(name)
        fit_ops, fit_reads = per_fit_step(name)
        budget = BUDGETS.get(name)
        ok = (budget is None or ops <= budget) and reads == 0 and fit_reads == 0
        verdict = ("PASS" if ok else "MISS") if budget is not None else ("PASS" if ok else "MISS") + " (no op budget)"
        missed |= not ok
        print(f"{name:10} {ops:>15} {fit_ops:>13.1f} {fit_reads:>15.2f} {budget if budget else '-':>7}  {verdict}")
        top = sorted(by_name.items(), key=lambda kv: -kv[1])
        print("           " + ", ".join(f"{k} {v}" for k, v in top))
    print("budgets: ops per train_step (Adam) as stated; host reads per step inside fit: 0 (read every N steps and at epoch end)")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())

"""What each rank runs in the tests of ``portnn.distributed`` (``mpiexec -n 2 python tests/mpi_worker.py ...``).

``train OUT N DTYPE``: a small MLP trained with ``fit(distributed=True)`` on ``make_data(N)``; every
rank writes its final parameters to ``OUT/rank{r}.npz`` and rank 0 its history to
``OUT/history.json``. ``fail OUT``: the same, but rank 1 raises at its third step.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

import portnn as pn

BATCH, EPOCHS, SEED = 16, 3, 0


def make_data(n: int, dtype: str = "float64") -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``n`` training and 50 validation points of 3 Gaussian blobs in 12 dimensions."""
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, size=n + 50)
    x = (rng.normal(size=(n + 50, 12)) + y[:, None]).astype(dtype)
    return x[:n], y[:n], x[n:], y[n:]


def make_model(dtype: str = "float64") -> pn.Sequential:
    return pn.Sequential(
        [pn.layers.Linear(12, 32, dtype=dtype), pn.layers.ReLU(), pn.layers.Linear(32, 3, dtype=dtype)], seed=SEED
    )


def train(n: int, dtype: str, *, batch_size: int, distributed: object, callbacks: list | None = None) -> tuple:
    x, y, x_val, y_val = make_data(n, dtype)
    model = make_model(dtype)
    history = model.fit(
        x, y, loss=pn.losses.CrossEntropy(), optimizer=pn.optim.Adam(lr=0.01), epochs=EPOCHS, batch_size=batch_size,
        l2=1e-3, validation_data=(x_val, y_val), verbose=0, distributed=distributed, callbacks=callbacks,
    )  # fmt: skip
    return model, history


def main(argv: list[str]) -> int:
    mode, out = argv[0], Path(argv[1])
    comm = pn.distributed.init()
    if mode == "train":
        n, dtype = int(argv[2]), argv[3]
        if len(argv) > 4:  # a backend, e.g. cupy (one GPU per rank where there are enough)
            device = None
            if argv[4] == "cupy":
                import cupy

                device = comm.rank % cupy.cuda.runtime.getDeviceCount()
            pn.set_backend(argv[4], device)
        model, history = train(n, dtype, batch_size=BATCH, distributed=True)
        np.savez(out / f"rank{comm.rank}.npz", **{k: pn.to_numpy(v) for k, v in model.state_dict().items()})
        if comm.is_root:
            (out / "history.json").write_text(json.dumps({**history.history, "path": comm.gradient_path, "size": comm.size}))
        return 0
    if mode == "fail":

        def fail(step: int, logs: dict) -> None:
            if comm.rank == 1 and step == 3:
                raise RuntimeError("rank 1 fails on purpose at step 3")

        train(400, "float32", batch_size=BATCH, distributed=True, callbacks=[pn.callbacks.LambdaCallback(on_batch_begin=fail)])
        return 0
    raise SystemExit(f"mpi_worker: unknown mode {mode!r}")


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

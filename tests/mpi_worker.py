"""What each rank runs in the tests of ``portnn.distributed`` (``mpiexec -n 2 python tests/mpi_worker.py ...``).

``train OUT N DTYPE``: a small MLP trained with ``fit(distributed=True)`` on ``make_data(N)``; every
rank writes its final parameters to ``OUT/rank{r}.npz`` and rank 0 its history to
``OUT/history.json``. ``fail OUT``: the same, but rank 1 raises at its third step.
``bn OUT``: a BatchNorm MLP with mid-epoch checkpoints (``OUT/mid`` keeps a copy of the first),
records and a ModelCheckpoint on every rank; ``bn-resume OUT``: the same resumed from ``OUT/mid``.
``stop OUT``: rank 1 alone asks to stop after its third step. ``mismatch OUT``: a resume where
rank 0 has a callback with state that rank 1 has not (its CheckpointError must end the job).
``disagree OUT``: fits whose ranks were given different runs (epochs, data, batch size, dtype,
architecture, optimizer, a checkpoint only rank 0 sees); each must raise the same error on every
rank, which the worker catches and writes to ``OUT/disagree{r}.json``; then an agreeing fit, and
last an uncaught disagreement, which must end the job with the error on every rank.
"""

from __future__ import annotations

import json
import shutil
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


def make_bn_model(dtype: str = "float64") -> pn.Sequential:
    return pn.Sequential(
        [pn.layers.Linear(12, 16, dtype=dtype), pn.layers.BatchNorm1d(16, dtype=dtype), pn.layers.ReLU(),
         pn.layers.Linear(16, 3, dtype=dtype)], seed=SEED,
    )  # fmt: skip


def train(
    n: int, dtype: str, *, batch_size: int, distributed: object, callbacks: list | None = None, bn: bool = False, **fit: object
) -> tuple:
    x, y, x_val, y_val = make_data(n, dtype)
    model = make_bn_model(dtype) if bn else make_model(dtype)
    history = model.fit(
        x, y, loss=pn.losses.CrossEntropy(), optimizer=pn.optim.Adam(lr=0.01), epochs=EPOCHS, batch_size=batch_size,
        l2=1e-3, validation_data=(x_val, y_val), verbose=0, distributed=distributed, callbacks=callbacks, record=True,
        **fit,
    )  # fmt: skip
    return model, history


def _disagreeing_fit(
    *, n: int = 203, dtype: str = "float64", hidden: int = 32, lr: float = 0.01, batch_size: int = BATCH, **fit: object
) -> None:
    """A distributed fit whose arguments the caller may give differently on each rank."""
    x, y, _, _ = make_data(n, dtype)
    layers = [pn.layers.Linear(12, hidden, dtype=dtype), pn.layers.ReLU(), pn.layers.Linear(hidden, 3, dtype=dtype)]
    fit = {"epochs": EPOCHS, **fit}
    pn.Sequential(layers, seed=SEED).fit(
        x, y, loss=pn.losses.CrossEntropy(), optimizer=pn.optim.Adam(lr=lr), batch_size=batch_size, verbose=0,
        distributed=True, **fit,
    )  # fmt: skip


def save_state(model: pn.Sequential, path: Path) -> None:
    """The state dict as ``.npz``, and each entry's shape in ``<path>.json`` (npz keeps 0-d arrays 0-d, but say so)."""
    state = {k: pn.to_numpy(v) for k, v in model.state_dict().items()}
    np.savez(path, **state)
    path.with_suffix(".json").write_text(json.dumps({k: list(v.shape) for k, v in state.items()}))


def records_json(history: pn.History) -> dict:
    return {name: [f.tolist() for f in per_epoch] for name, per_epoch in history.records["active_fraction"].items()}


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
            logs = {**history.history, "path": comm.gradient_path, "size": comm.size, "active": records_json(history)}
            (out / "history.json").write_text(json.dumps(logs))
        return 0
    if mode in ("bn", "bn-resume"):
        resuming = mode == "bn-resume"
        saver = pn.callbacks.ModelCheckpoint(str(out / "best.safetensors"), monitor="loss", save_best_only=False)
        callbacks: list = [saver]
        if not resuming and comm.is_root:

            class KeepFirst(pn.callbacks.Callback):  # a copy of the first mid-epoch checkpoint, to resume from
                def on_batch_begin(self, step: int, logs: dict) -> None:
                    if step == 5 and not (out / "mid").exists():
                        shutil.copytree(out / "ck", out / "mid")

            callbacks.append(KeepFirst())
        ck = out / ("mid" if resuming else "ck")
        model, history = train(
            203, "float64", batch_size=BATCH, distributed=True, callbacks=callbacks, bn=True, checkpoint=str(ck),
            checkpoint_every=5, resume=str(ck) if resuming else None,
        )  # fmt: skip
        tag = "resumed" if resuming else "rank"
        save_state(model, out / f"{tag}{comm.rank}.npz")
        (out / f"{tag}{comm.rank}.saved.json").write_text(json.dumps(saver.saved))
        if comm.is_root:
            if not resuming:
                model.save(out / "model.safetensors")
            (out / f"{tag}.history.json").write_text(json.dumps({**history.history, "active": records_json(history)}))
        return 0
    if mode == "stop":

        class StopHere(pn.callbacks.Callback):  # e.g. a wall-clock budget read on one rank
            def on_batch_end(self, step: int, logs: dict) -> None:
                if comm.rank == 1 and step == 2:
                    self.model.stop_training = True

        model, history = train(400, "float64", batch_size=BATCH, distributed=True, callbacks=[StopHere()])
        save_state(model, out / f"rank{comm.rank}.npz")
        (out / f"epochs{comm.rank}.json").write_text(json.dumps(history.epoch))
        return 0
    if mode == "mismatch":
        schedule = [pn.optim.schedules.ReduceLROnPlateau(monitor="loss")]
        train(64, "float32", batch_size=BATCH, distributed=True, callbacks=schedule, checkpoint=str(out / "ck"))
        extra = [pn.callbacks.ModelCheckpoint(str(out / "best.safetensors"), monitor="loss")] if comm.is_root else []
        schedule = [pn.optim.schedules.ReduceLROnPlateau(monitor="loss")]
        train(64, "float32", batch_size=BATCH, distributed=True, callbacks=extra + schedule, resume=str(out / "ck"))
        return 0
    if mode == "disagree":
        other = comm.rank == 1
        cases = {
            "epochs": {"epochs": EPOCHS + other},
            "data": {"n": 203 - 3 * other},
            "batch_size": {"batch_size": 8 if other else BATCH},
            "dtype": {"dtype": "float32" if other else "float64"},
            "architecture": {"hidden": 16 if other else 32},
            "optimizer": {"lr": 0.02 if other else 0.01},
            "resume": {"resume": str(out / ("elsewhere" if other else "ck"))},  # rank 1's disk lacks the checkpoint
        }
        messages = {}
        _disagreeing_fit(checkpoint=str(out / "ck"))  # the same run on every rank; rank 0 writes the checkpoint
        for name, change in cases.items():
            try:
                _disagreeing_fit(**change)
            except pn.distributed.RunMismatchError as exc:
                messages[name] = str(exc)
        (out / f"disagree{comm.rank}.json").write_text(json.dumps(messages))
        model, history = train(64, "float64", batch_size=BATCH, distributed=True)  # the ranks are still in step
        (out / f"agreed{comm.rank}.json").write_text(json.dumps(history.epoch))
        _disagreeing_fit(epochs=EPOCHS + (comm.rank == 1))  # uncaught: every rank ends with it
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

"""Training checkpoints: everything ``fit(resume=...)`` needs to continue a run exactly.

One safetensors file, ``<dir>/checkpoint.safetensors``, written atomically by
:func:`portnn.serialization.write_file` (checksummed, no pickle). It holds the model's
parameters and buffers, the optimizer's state, the state of every random generator (the
shuffling generator as it was at the start of the epoch, so the epoch's order is drawn again;
each Dropout/RandomTranslation generator as it is now), the state of callbacks that have a
``state_dict`` (learning-rate schedules; others, such as a progress printer, may differ on
resume), the position (epoch and step), the epoch's running sums and the history so far.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from . import backends
from .layers.base import RandomLayer

FILENAME = "checkpoint.safetensors"
#: What a checkpoint written before a ``run`` key existed ran with.
RUN_DEFAULTS: dict[str, Any] = {"drop_last": False, "ranks": 1}


def checkpoint_file(directory: str | os.PathLike[str]) -> Path:
    """The checkpoint file in ``directory`` (a path to the file itself is taken as is)."""
    path = Path(directory)
    return path if path.suffix == ".safetensors" else path / FILENAME


def save(
    directory: str | os.PathLike[str],
    model: Any,
    optimizer: Any,
    callbacks: list[Any],
    progress: dict[str, Any],
    history: Any,
    recorder: Any = None,
) -> Path:
    """Write the training state to ``directory`` (created), replacing the previous checkpoint atomically."""
    from . import serialization

    path = checkpoint_file(directory)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": backends.to_numpy(v) for k, v in model.state_dict().items()}
    opt = optimizer.state_dict()
    scalars = {}
    for i, entries in opt["state"].items():
        for k, v in entries.items():
            if hasattr(v, "shape"):
                tensors[f"optimizer.{i}.{k}"] = backends.to_numpy(v)
            else:
                scalars[f"{i}.{k}"] = v
    for i, cb in enumerate(cb for cb in callbacks if hasattr(cb, "state_tensors")):
        tensors.update({f"callbacks.{i}.{k}": backends.to_numpy(v) for k, v in cb.state_tensors().items()})
    rngs = {}
    for layer in model.layers:
        if isinstance(layer, RandomLayer):
            state = layer.get_rng_state()
            rngs[layer.name] = state is not None
            if state is not None:
                tensors[f"rng.{layer.name}"] = state
    meta: dict[str, Any] = {
        "kind": "training",
        "progress": _to_json(progress),
        "optimizer": {
            "class": type(optimizer).__name__,
            "hyperparameters": opt["hyperparameters"],
            "step_count": opt["step_count"],
            "scalars": scalars,
        },
        "rng_layers": rngs,
        "callbacks": [
            {"class": type(cb).__name__, "state": _to_json(cb.state_dict())} for cb in callbacks if hasattr(cb, "state_dict")
        ],
        # arrays a callback keeps (EarlyStopping's best weights), as tensors "callbacks.<i>.<name>"
        "history": _to_json({"epoch": history.epoch, "history": history.history}),
        "layers": [layer.name for layer in model.layers],
        **serialization.model_meta(model),
    }
    if recorder is not None:
        records_meta, records_tensors = recorder.state()
        meta["records"] = _to_json(records_meta)
        tensors.update({f"records.{k}": v for k, v in records_tensors.items()})
    serialization.write_file(path, tensors, meta)
    return path


def load(
    directory: str | os.PathLike[str],
    model: Any,
    optimizer: Any,
    callbacks: list[Any],
    history: Any,
    recorder: Any = None,
    run: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Restore a checkpoint written by :func:`save` into the objects of a run set up as the interrupted one; return its progress.

    Everything is checked against the model, optimizer, callbacks and ``run`` (the data size,
    batch size, shuffling, drop_last and number of ranks of this fit; a key the checkpoint
    lacks, written before it existed, counts as :data:`RUN_DEFAULTS`) before anything is written. The callbacks' states
    come back in the progress, for :func:`restore_callbacks` once ``on_train_begin`` has run.
    """
    from . import serialization
    from .serialization import CheckpointError

    path = checkpoint_file(directory)
    tensors, meta = serialization.read_file(path)
    if meta.get("kind") != "training":
        raise CheckpointError(f"{path}: not a training checkpoint (it holds a model only); use pn.load or model.load_weights")
    names = [layer.name for layer in model.layers]
    if meta["layers"] != names:
        raise CheckpointError(f"{path}: the checkpoint's layers {meta['layers']} are not this model's {names}")
    opt_meta = meta["optimizer"]
    if opt_meta["class"] != type(optimizer).__name__:
        raise CheckpointError(f"{path}: the run used {opt_meta['class']}, this fit has {type(optimizer).__name__}")
    stateful = [cb for cb in callbacks if hasattr(cb, "state_dict")]
    saved_cbs, given_cbs = [c["class"] for c in meta["callbacks"]], [type(cb).__name__ for cb in stateful]
    if saved_cbs != given_cbs:
        raise CheckpointError(
            f"{path}: the run had callbacks with state {saved_cbs}, this fit has {given_cbs}; pass the same schedules"
        )
    progress = _from_json(meta["progress"])
    for key, value in (run or {}).items():
        saved = progress.get(key, RUN_DEFAULTS.get(key))
        if saved != value:
            raise CheckpointError(
                f"{path}: the run had {key}={saved!r}, this fit has {key}={value!r}; "
                "resume with the same data and arguments" + (" and number of ranks" if key == "ranks" else "")
            )
    if (recorder is None) != ("records" not in meta):
        raise CheckpointError(f"{path}: the run {'did' if 'records' in meta else 'did not'} record; pass the same record= to fit")
    try:
        model.load_state_dict(serialization.model_tensors(tensors, meta))
    except (KeyError, ValueError) as exc:
        raise CheckpointError(f"{path}: the model does not match the checkpoint: {exc}") from None
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, i, k = key.split(".", 2)
            state.setdefault(int(i), {})[k] = value
    for key, value in opt_meta["scalars"].items():
        i, k = key.split(".", 1)
        state.setdefault(int(i), {})[k] = value
    optimizer.load_state_dict(
        {"hyperparameters": opt_meta["hyperparameters"], "step_count": opt_meta["step_count"], "state": state}
    )
    backend = model.backend
    for layer in model.layers:
        if isinstance(layer, RandomLayer) and layer.name in meta["rng_layers"]:
            layer.set_rng_state(tensors.get(f"rng.{layer.name}"), backend, reseed=progress["global_step"])
    saved_history = _from_json(meta["history"])
    history.epoch = list(saved_history["epoch"])
    history.history = {k: list(v) for k, v in saved_history["history"].items()}
    if recorder is not None:
        records = {k[len("records.") :]: v for k, v in tensors.items() if k.startswith("records.")}
        recorder.load_state(_from_json(meta["records"]), records)
    progress["callbacks"] = [_from_json(c["state"]) for c in meta["callbacks"]]
    progress["callback_tensors"] = {k: v for k, v in tensors.items() if k.startswith("callbacks.")}
    return progress


def restore_callbacks(callbacks: list[Any], progress: dict[str, Any]) -> None:
    """Give the callbacks with a ``state_dict`` the states :func:`load` found (same classes, checked there)."""
    stateful = [cb for cb in callbacks if hasattr(cb, "state_dict")]
    for cb, state in zip(stateful, progress["callbacks"]):
        cb.load_state_dict(state)
    for i, cb in enumerate(cb for cb in callbacks if hasattr(cb, "state_tensors")):
        prefix = f"callbacks.{i}."
        cb.load_state_tensors({k[len(prefix) :]: v for k, v in progress["callback_tensors"].items() if k.startswith(prefix)})


def _to_json(value: Any) -> Any:
    """``value`` with non-finite floats tagged (``{"float": "inf"}``): JSON has no NaN or infinity."""
    if isinstance(value, float) and not math.isfinite(value):
        return {"float": repr(value)}
    if isinstance(value, dict):
        return {k: _to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_json(v) for v in value]
    return value


def _from_json(value: Any) -> Any:
    """The inverse of :func:`_to_json`."""
    if isinstance(value, dict):
        if value.keys() == {"float"}:
            return float(value["float"])
        return {k: _from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    return value

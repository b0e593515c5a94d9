"""Training checkpoints: everything ``fit(resume=...)`` needs to continue a run exactly.

One safetensors file, ``<dir>/checkpoint.safetensors``, written atomically by
:func:`portnn.serialization.write_file` (checksummed, no pickle). It holds the model's
parameters and buffers, the optimizer's state, the state of every random generator (the
shuffling generator as it was at the start of the epoch, so the epoch's order is drawn again;
each Dropout/RandomTranslation generator as it is now), the state of callbacks that have a
``state_dict`` (learning-rate schedules; others, such as a progress printer, may differ on
resume), the position (epoch and step), the epoch's running sums and the history so far.

Resuming is two steps, so that a checkpoint that does not fit changes nothing: :func:`plan`
reads the file and checks all of it against the run (every tensor's name, shape and dtype
kind, the optimizer's class, hyperparameters and per-parameter state, the random generators'
states, the callbacks' states, the records, the history, the position) and returns a
:class:`Restore`; :func:`apply` then writes it into the model, optimizer, generators, history
and records. A checkpoint written on another backend resumes on this one: arrays move through
the host, and a dropout generator whose state this backend cannot take starts again from its
seed plus the step (with a warning), as on CuPy, whose generators expose no state.
"""

from __future__ import annotations

import copy
import math
import os
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import backends
from .fileformat import CheckpointError
from .layers.base import Parameter, RandomLayer

FILENAME = "checkpoint.safetensors"
#: What a checkpoint written before a ``run`` key existed ran with.
RUN_DEFAULTS: dict[str, Any] = {"drop_last": False, "ranks": 1}
_EDITED = "the file is damaged or was edited"


def checkpoint_file(directory: str | os.PathLike[str]) -> Path:
    """The checkpoint file in ``directory`` (a path to the file itself is taken as is)."""
    path = Path(directory)
    return path if path.suffix == ".safetensors" else path / FILENAME


def random_layers(model: Any) -> dict[str, RandomLayer]:
    """The model's random layers by the key their generator state is saved under: a top-level layer's name, or for a
    layer nested in a composite its dotted path under that name (``"residual.block.2"``)."""
    tops = dict(model.named_children())  # "0" -> the first layer: its path starts with its name instead
    found: dict[str, RandomLayer] = {}
    for path, layer in model.named_modules():  # each layer once, a shared one at its first path
        if isinstance(layer, RandomLayer) and path:
            head, dot, rest = path.partition(".")
            found[f"{tops[head].name}{dot}{rest}"] = layer
    return found


def check_path(where: str, name: str, value: Any) -> None:
    """Refuse a ``checkpoint=``/``resume=`` that is not a path (a TypeError naming ``where`` and ``name``)."""
    if not isinstance(value, (str, os.PathLike)) or not os.fspath(value):
        raise TypeError(f"{where}: {name} must be a directory (a str or path) or None; got {value!r:.80}")


def check_resume_path(where: str, directory: str | os.PathLike[str]) -> None:
    """Refuse a ``resume=`` that names no place a checkpoint could be (a file of another kind, a path below a file).

    A directory that does not exist yet is fine: the run starts from the beginning, so the same
    command serves the first run and the restarts.
    """
    check_path(where, "resume", directory)
    path = Path(directory)
    if path.is_file() and path.suffix != ".safetensors":
        raise ValueError(
            f"{where}: resume={os.fspath(directory)!r} is a file, not a checkpoint: give the directory fit(checkpoint=) "
            f"wrote, or its {FILENAME}"
        )
    folder = path
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if folder != path and folder.exists() and not folder.is_dir():
        raise ValueError(f"{where}: resume={os.fspath(directory)!r} cannot hold a checkpoint: {folder} is a file, not a folder")


def check_writable(where: str, directory: str | os.PathLike[str]) -> None:
    """Refuse, before the first step, a ``checkpoint=`` that could never be written; nothing is created.

    The checkpoint file must not be a folder, and the nearest folder of its path that exists
    must be a folder (not a file) in which this process may create files: checked with a
    nameless temporary file where the OS offers one, which leaves nothing behind.
    """
    check_path(where, "checkpoint", directory)
    path = checkpoint_file(directory)
    if path.is_dir():
        raise ValueError(f"{where}: checkpoint={os.fspath(directory)!r} names {path}, which is a folder; give a directory")
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        if folder.is_symlink():  # a dangling link: writing through it fails
            break
        folder = folder.parent
    if not folder.is_dir():
        what = "a file" if folder.exists() else "a link to nothing"
        raise ValueError(
            f"{where}: checkpoint={os.fspath(directory)!r} cannot be written: {folder} is {what}, not a folder; "
            "choose a directory path"
        )
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise ValueError(
            f"{where}: checkpoint={os.fspath(directory)!r} cannot be written: no file can be created in {folder} "
            f"({exc.strerror or exc}); choose a folder this process may write to"
        ) from None


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
    for name, layer in random_layers(model).items():
        state = layer.get_rng_state()
        rngs[name] = state is not None
        if state is not None:
            tensors[f"rng.{name}"] = state
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


@dataclass
class Restore:
    """A checkpoint read and checked against a run by :func:`plan`: what :func:`apply` writes, nothing written yet."""

    path: Path
    progress: dict[str, Any]  # epoch, step, global_step, sums, the shuffling state; the callbacks' states
    model_state: dict[str, Any]
    optimizer_state: dict[str, Any]
    rngs: dict[str, Any]  # RandomLayer name -> the state to restore, or None to re-seed from the step
    history: dict[str, Any]
    records: tuple[dict[str, Any], dict[str, Any]] | None
    reseeded: list[str] = field(default_factory=list)  # generators whose state this backend cannot take
    saved_on: str = ""  # the backend the checkpoint was written from

    @property
    def position(self) -> str:
        """Where the run goes on, in words (``"epoch 2, step 3"``, 1-based epochs as printed)."""
        return f"epoch {self.progress['epoch'] + 1}, step {self.progress['step']}"


def plan(
    directory: str | os.PathLike[str],
    model: Any,
    optimizer: Any,
    callbacks: list[Any],
    recorder: Any = None,
    run: dict[str, Any] | None = None,
    *,
    steps_per_epoch: int | None = None,
    shuffle_rng: Any = None,
) -> Restore:
    """Read the checkpoint in ``directory`` and check all of it against this run; change nothing.

    ``run`` holds what a resume must find unchanged (the data size, batch size, shuffling,
    drop_last and number of ranks of this fit; a key the checkpoint lacks, written before it
    existed, counts as :data:`RUN_DEFAULTS`). ``steps_per_epoch`` bounds the saved step and
    ``shuffle_rng`` (the fit's NumPy generator) the saved shuffling state. Raises a
    :class:`~portnn.serialization.CheckpointError` naming the file and the first misfit.
    """
    from . import serialization

    path = checkpoint_file(directory)
    tensors, meta = serialization.read_file(path)

    def need(ok: bool, what: str) -> None:
        if not ok:
            raise CheckpointError(f"{path}: {what}; {_EDITED}")

    if meta.get("kind") != "training":
        raise CheckpointError(f"{path}: not a training checkpoint (it holds a model only); use pn.load or model.load_weights")
    for key, kind in (("layers", list), ("optimizer", dict), ("rng_layers", dict), ("callbacks", list), ("progress", dict)):
        need(isinstance(meta.get(key), kind), f"its entry {key!r} is not a JSON {kind.__name__}")
    need("history" in meta, "it has no history")
    names = [layer.name for layer in model.layers]
    if meta["layers"] != names:
        raise CheckpointError(f"{path}: the checkpoint's layers {meta['layers']} are not this model's {names}")

    # -- the position and the run's arguments ---------------------------------------
    progress = _from_json(meta["progress"])
    for key, value in (run or {}).items():
        saved = progress.get(key, RUN_DEFAULTS.get(key))
        if saved != value:
            raise CheckpointError(
                f"{path}: the run had {key}={saved!r}, this fit has {key}={value!r}; "
                "resume with the same data and arguments" + (" and number of ranks" if key == "ranks" else "")
            )
    for key in ("epoch", "step", "global_step", "seen", "correct"):
        need(_is_count(progress.get(key)), f"its progress {key}={progress.get(key)!r:.60} is not an integer >= 0")
    need(_is_number(progress.get("loss_sum")), f"its progress loss_sum={progress.get('loss_sum')!r:.60} is not a number")
    need(isinstance(progress.get("stopped", False), bool), "its progress 'stopped' is not true or false")
    need(progress["global_step"] >= progress["step"], "its progress has a global step before the epoch's step")
    if steps_per_epoch is not None:
        need(
            progress["step"] < max(steps_per_epoch, 1),
            f"its progress is at step {progress['step']} of an epoch of {steps_per_epoch} steps",
        )
    if run and "n" in run:
        need(progress["seen"] <= run["n"], f"its progress has seen {progress['seen']} of {run['n']} examples")
    if shuffle_rng is not None:
        probe = copy.deepcopy(shuffle_rng)
        try:
            probe.bit_generator.state = progress.get("rng")
        except Exception as exc:  # NumPy raises TypeError, ValueError or KeyError on a malformed state
            raise CheckpointError(f"{path}: its shuffling generator's state cannot be restored ({exc}); {_EDITED}") from None

    # -- the model's parameters and buffers -----------------------------------------
    model_state = serialization.model_tensors(tensors, meta)
    misfits = serialization.state_misfits(model, model_state)
    if misfits:
        raise CheckpointError(f"{path}: the model does not match the checkpoint ({misfits})")

    # -- the optimizer ------------------------------------------------------------------
    optimizer_state = _check_optimizer(path, meta["optimizer"], tensors, model, optimizer, need)

    # -- the random generators of Dropout and RandomTranslation ------------------------
    rngs, reseeded = _check_rngs(path, meta, tensors, model, need)

    # -- the callbacks ------------------------------------------------------------------
    stateful = [cb for cb in callbacks if hasattr(cb, "state_dict")]
    saved_cbs = [c.get("class") if isinstance(c, dict) else None for c in meta["callbacks"]]
    given_cbs = [type(cb).__name__ for cb in stateful]
    if saved_cbs != given_cbs:
        raise CheckpointError(
            f"{path}: the run had callbacks with state {saved_cbs}, this fit has {given_cbs}; pass the same schedules"
        )
    states = [_from_json(c.get("state")) for c in meta["callbacks"]]
    callback_tensors = {k: v for k, v in tensors.items() if k.startswith("callbacks.")}
    _check_callbacks(path, stateful, states, callbacks, callback_tensors, model, need)

    # -- the history and the records ----------------------------------------------------
    history = _from_json(meta["history"])
    need(isinstance(history, dict), "its history is not a JSON object")
    epochs, logs = history.get("epoch"), history.get("history")
    need(isinstance(epochs, list) and all(_is_count(e) for e in epochs), "its history's epochs are not a list of integers")
    need(isinstance(logs, dict), "its history's logs are not a JSON object")
    for key, values in logs.items():
        need(
            isinstance(values, list) and len(values) == len(epochs) and all(_is_number(v) for v in values),
            f"its history's {key!r} is not a list of {len(epochs)} numbers",
        )
    if (recorder is None) != ("records" not in meta):
        raise CheckpointError(f"{path}: the run {'did' if 'records' in meta else 'did not'} record; pass the same record= to fit")
    records = None
    if recorder is not None:
        records_meta = _from_json(meta["records"])
        records_tensors = {k[len("records.") :]: v for k, v in tensors.items() if k.startswith("records.")}
        problem = recorder.state_problem(records_meta, records_tensors)
        need(problem is None, f"its records do not fit this model: {problem}")
        records = (records_meta, records_tensors)

    progress["callbacks"] = states
    progress["callback_tensors"] = callback_tensors
    saved_on = str(meta.get("backend", "")).partition(":")[0]
    return Restore(path, progress, model_state, optimizer_state, rngs, history, records, reseeded, saved_on)


def apply(restore: Restore, model: Any, optimizer: Any, history: Any, recorder: Any = None) -> dict[str, Any]:
    """Write a checked :class:`Restore` into the run's objects (the optimizer bound to the model); return its progress.

    Should anything still fail, the model's parameters and buffers are put back as they were.
    """
    targets = dict((*model.named_parameters(), *model.named_buffers()))
    before = {name: (b.data, getattr(b, "grad", None)) for name, b in targets.items()}
    try:
        model.load_state_dict(restore.model_state)
        optimizer.load_state_dict(restore.optimizer_state)
        backend = model.backend
        for name, layer in random_layers(model).items():
            if name in restore.rngs:
                layer.set_rng_state(restore.rngs[name], backend, reseed=restore.progress["global_step"])
        history.epoch = list(restore.history["epoch"])
        history.history = {k: list(v) for k, v in restore.history["history"].items()}
        if recorder is not None and restore.records is not None:
            recorder.load_state(*restore.records)
    except BaseException:
        for name, (data, grad) in before.items():
            targets[name].data = data
            if isinstance(targets[name], Parameter):
                targets[name].grad = grad
        raise
    if restore.reseeded:
        warnings.warn(
            f"resume: the generator states of {restore.reseeded} in {restore.path} were saved on {restore.saved_on}, "
            f"and {backend.name} cannot restore them: they start again from their seeds and the step, so the resumed run "
            "draws other dropout masks (or translations) than the interrupted one would have",
            RuntimeWarning,
            stacklevel=4,  # apply, Trainer._resume, fit: the caller of fit
        )
    return restore.progress


def restore_callbacks(callbacks: list[Any], progress: dict[str, Any]) -> None:
    """Give the callbacks with a ``state_dict`` the states :func:`plan` found (same classes, checked there)."""
    stateful = [cb for cb in callbacks if hasattr(cb, "state_dict")]
    for cb, state in zip(stateful, progress["callbacks"]):
        cb.load_state_dict(state)
    for i, cb in enumerate(cb for cb in callbacks if hasattr(cb, "state_tensors")):
        prefix = f"callbacks.{i}."
        cb.load_state_tensors({k[len(prefix) :]: v for k, v in progress["callback_tensors"].items() if k.startswith(prefix)})


# -- the checks of plan ----------------------------------------------------------------
def _check_optimizer(path: Path, saved: dict[str, Any], tensors: dict[str, Any], model: Any, optimizer: Any, need: Any) -> dict:
    """The optimizer's state as :meth:`~portnn.optim.Optimizer.load_state_dict` takes it, every entry checked."""
    if saved.get("class") != type(optimizer).__name__:
        raise CheckpointError(f"{path}: the run used {saved.get('class')}, this fit has {type(optimizer).__name__}")
    hyper, scalars, step_count = saved.get("hyperparameters"), saved.get("scalars"), saved.get("step_count")
    need(_is_count(step_count), f"its optimizer step_count={step_count!r:.60} is not an integer >= 0")
    need(isinstance(hyper, dict), "its optimizer hyperparameters are not a JSON object")
    need(isinstance(scalars, dict), "its optimizer scalars are not a JSON object")
    current = optimizer.hyperparameters()
    unknown = sorted(set(hyper) - set(current))
    need(not unknown, f"its optimizer has hyperparameters {unknown}, which {type(optimizer).__name__} has not")
    for key, value in hyper.items():
        need(
            _same_kind(value, current[key]),
            f"its optimizer hyperparameter {key}={value!r:.60} is not of the kind of {current[key]!r}",
        )
    hyper = {k: tuple(v) if isinstance(v, list) else v for k, v in hyper.items()}
    probe = None
    if type(optimizer).__module__.startswith("portnn."):  # portnn's own classes take their hyperparameters as arguments
        try:
            probe = type(optimizer)(**{**current, **hyper})
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"{path}: its optimizer hyperparameters are refused: {exc}; {_EDITED}") from None
    params = list(model.parameters())
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, i, k = (*key.split(".", 2), "")[:3]
            need(i.isdigit() and int(i) < len(params) and k, f"it holds optimizer state {key!r} for no parameter of the model")
            p = params[int(i)]
            need(
                tuple(value.shape) == tuple(p.shape) and value.dtype.kind == "f",
                f"its optimizer state {key!r} is {value.dtype}{list(value.shape)}, not a float array of {list(p.shape)}",
            )
            state.setdefault(int(i), {})[k] = value
    for key, value in scalars.items():
        i, _, k = key.partition(".")
        need(i.isdigit() and int(i) < len(params) and k, f"it holds optimizer state {key!r} for no parameter of the model")
        need(_is_number(value) or isinstance(value, bool), f"its optimizer state {key!r}={value!r:.60} is not a number")
        state.setdefault(int(i), {})[k] = value
    if probe is not None and state:
        expected = _state_keys(probe, model)
        for i, entries in sorted(state.items()):
            need(
                set(entries) == expected,
                f"its optimizer state for parameter {i} holds {sorted(entries)}; "
                f"{type(optimizer).__name__} keeps {sorted(expected)}",
            )
    return {"hyperparameters": hyper, "step_count": step_count, "state": state}


def _state_keys(probe: Any, model: Any) -> set[str]:
    """The names of the state ``probe`` (an optimizer) keeps per parameter: one step on a scratch parameter shows them."""
    backend = model.backend
    xp = backend.xp
    reference = next(iter(model.parameters()), None)
    dtype = reference.dtype if reference is not None else xp.float32
    scratch = Parameter(xp.zeros((1,), dtype=dtype, device=backend.device), "scratch")
    probe.bind([scratch])
    scratch.grad = xp.ones((1,), dtype=dtype, device=backend.device)
    probe.step()
    return set(probe.state[id(scratch)])


def _check_rngs(path: Path, meta: dict[str, Any], tensors: dict[str, Any], model: Any, need: Any) -> tuple[dict, list]:
    """Each RandomLayer's saved generator state, tried on a scratch generator of this backend; None: re-seed."""
    saved = meta["rng_layers"]
    random = random_layers(model)
    stray = sorted(set(saved) - set(random))
    need(not stray, f"it holds generator states for {stray}, which are not random layers of this model")
    backend = model.backend
    saved_on = str(meta.get("backend", "")).partition(":")[0]
    rngs: dict[str, Any] = {}
    reseeded = []
    for name, has_state in saved.items():
        need(isinstance(has_state, bool), f"its rng_layers entry for {name!r} is not true or false")
        state = tensors.get(f"rng.{name}")
        need(has_state == (state is not None), f"its generator state of {name!r} is {'missing' if has_state else 'unexpected'}")
        if state is not None:
            try:
                scratch = backend.adapter.make_generator(random[name].seed, backend.device)
                backend.adapter.set_generator_state(scratch, state)
            except Exception as exc:  # each library raises its own kind
                if saved_on and saved_on != backend.name:
                    reseeded.append(name)
                    state = None
                else:
                    raise CheckpointError(
                        f"{path}: the generator state of {name!r} cannot be restored ({exc}); {_EDITED}"
                    ) from None
        rngs[name] = state
    return rngs, reseeded


def _check_callbacks(
    path: Path, stateful: list[Any], states: list[Any], callbacks: list[Any], tensors: dict[str, Any], model: Any, need: Any
) -> None:
    """Each saved callback state (and arrays) loaded into a copy of its callback, and of the kinds its own state has."""
    shapes = {name: tuple(b.shape) for name, b in (*model.named_parameters(), *model.named_buffers())}
    holders = [cb for cb in callbacks if hasattr(cb, "state_tensors")]
    for key, value in tensors.items():
        _, i, rest = (*key.split(".", 2), "")[:3]
        need(i.isdigit() and int(i) < len(holders) and rest, f"it holds callback arrays {key!r} for no callback of this fit")
        for candidate in (rest, rest.rpartition(".model.")[2]):  # a snapshot of the model's weights keeps their names
            if candidate in shapes:
                need(
                    tuple(value.shape) == shapes[candidate],
                    f"its callback array {key!r} has shape {tuple(value.shape)}, the model's {candidate} {shapes[candidate]}",
                )
    state_of = {id(cb): state for cb, state in zip(stateful, states)}
    for cb in dict.fromkeys([*stateful, *holders]):  # each once, in order
        name = type(cb).__name__
        state = state_of.get(id(cb))
        need(id(cb) not in state_of or isinstance(state, dict), f"its state of {name} is not a JSON object")
        fresh = cb.state_dict() if id(cb) in state_of else {}
        probe = copy.copy(cb)  # a shallow copy: loading sets its attributes, not the callback's
        try:
            if id(cb) in state_of:
                probe.load_state_dict(state)
            if cb in holders:
                prefix = f"callbacks.{holders.index(cb)}."
                probe.load_state_tensors({k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)})
            loaded = probe.state_dict() if id(cb) in state_of else {}
        except Exception as exc:  # a callback's own code: any error means the state does not fit it
            raise CheckpointError(f"{path}: its state of {name} does not load into {name} ({exc!r:.200}); {_EDITED}") from None
        for key, value in fresh.items():
            need(key in loaded, f"its state of {name} lacks {key!r}")
            need(
                _same_kind(loaded[key], value),
                f"its state of {name} has {key}={loaded[key]!r:.60}, not of the kind of {value!r:.60}",
            )


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _same_kind(value: Any, reference: Any) -> bool:
    """Whether a value read from a file can stand where ``reference`` stands: numbers for numbers, lists for sequences...

    None on either side passes (a value not set yet).
    """
    if value is None or reference is None:
        return True
    if isinstance(reference, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(reference, bool)
    if _is_number(reference):
        return _is_number(value)
    if isinstance(reference, (list, tuple)):
        return isinstance(value, (list, tuple))
    return isinstance(value, type(reference)) or isinstance(reference, type(value))


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
            try:
                return float(value["float"])
            except (TypeError, ValueError):
                return value
        return {k: _from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    return value


def check_loader_state(restore: Restore, loader: Any) -> None:
    """The checkpoint's loader state (a fit on a :class:`portnn.data.DataLoader`) checked against ``loader``; nothing changed.

    A run on a loader saves ``progress["loader"]`` (its seed, epoch and batch); a run on arrays
    saves none. One that a loader cannot take raises a CheckpointError naming the file.
    """
    saved = restore.progress.get("loader")
    if (saved is None) != (loader is None):
        had, has = ("a DataLoader", "arrays") if saved is not None else ("arrays", "a DataLoader")
        raise CheckpointError(f"{restore.path}: the run trained on {had}, this fit on {has}; resume with the same kind of data")
    if loader is None:
        return
    probe = copy.copy(loader)
    try:
        probe.load_state_dict(saved)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{restore.path}: its loader state cannot be restored ({exc})") from None
    if saved["batch"] != restore.progress["step"]:
        raise CheckpointError(
            f"{restore.path}: its loader is at batch {saved['batch']} but its progress at step "
            f"{restore.progress['step']}; {_EDITED}"
        )

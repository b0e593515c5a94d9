"""Transfer learning: copy the weights of chosen layers from a saved model (or a live one) into another.

Examples
--------
>>> import os, tempfile
>>> import portnn as pn
>>> features = [pn.layers.Linear(4, 8), pn.layers.ReLU()]
>>> old = pn.Sequential([*features, pn.layers.Linear(8, 3)], seed=0)
>>> path = os.path.join(tempfile.mkdtemp(), "old.safetensors")
>>> old.save(path)
>>> new = pn.Sequential([pn.layers.Linear(4, 8), pn.layers.ReLU(), pn.layers.Linear(8, 5)], seed=1)
>>> report = new.load_layers(path)
>>> print(report)
loaded 1 layer from old.safetensors:
  linear <- linear (weight (8, 4), bias (8,))
skipped 1:
  linear_1: shapes differ: weight (5, 8) here, (3, 8) in the source; bias (5,) here, (3,) in the source
>>> new = new.freeze("linear")  # train only the new head
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import backends
from ._array import dtype_name
from ._resume import checkpoint_file
from .fileformat import CheckpointError, read_file
from .serialization import model_tensors

__all__ = ["TransferReport", "load_layers"]


@dataclass
class TransferReport:
    """What :meth:`portnn.Sequential.load_layers` did: layers loaded (target, source, shapes) and skipped (name, why)."""

    source: str
    loaded: list[tuple[str, str, dict[str, tuple[int, ...]]]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __str__(self) -> str:
        n = len(self.loaded)
        lines = [f"loaded {n} layer{'s' if n != 1 else ''} from {self.source}:"]
        for target, source, shapes in self.loaded:
            shown = ", ".join(f"{k} {v}" for k, v in shapes.items())
            lines.append(f"  {target} <- {source} ({shown})")
        if self.skipped:
            lines.append(f"skipped {len(self.skipped)}:")
            lines += [f"  {name}: {why}" for name, why in self.skipped]
        return "\n".join(lines)


def _source_layers(source: Any) -> tuple[str, list[str], dict[str, dict[str, Any]]]:
    """``(description, layer names in order, name -> {param/buffer name -> host array})`` of a model or a file.

    A model is anything with ``layers`` (a :class:`~portnn.Sequential`), each layer with a
    ``name`` and ``named_parameters``/``named_buffers``: no model class is imported here.
    """
    if not isinstance(source, (str, os.PathLike)):
        if not hasattr(source, "layers"):
            raise TypeError(
                "load_layers: source must be a model with .layers (a Sequential) or the path of a saved model or training "
                f"checkpoint; got {type(source).__name__}"
            )
        names = [layer.name for layer in source.layers]
        arrays = {
            layer.name: {k: backends.to_numpy(b.data) for k, b in (*layer.named_parameters(), *layer.named_buffers())}
            for layer in source.layers
        }
        return "a model", names, arrays
    path = checkpoint_file(source) if Path(source).is_dir() else Path(source)
    tensors, meta = read_file(path)
    names = meta.get("layer_names")
    if not names:
        raise CheckpointError(f"load_layers: {path} does not name its layers (not written by model.save?)")
    if not (isinstance(names, list) and all(isinstance(n, str) for n in names) and len(set(names)) == len(names)):
        raise CheckpointError(f"load_layers: {path} names its layers {names!r:.100}, not as distinct strings; it was edited")
    arrays: dict[str, dict[str, Any]] = {name: {} for name in names}
    for key, value in model_tensors(tensors, meta).items():
        index, _, param = key.partition(".")
        if index.isdigit() and int(index) < len(names):
            arrays[names[int(index)]][param] = value
    return path.name, names, arrays


def load_layers(model: Any, source: Any, layers: Any = None) -> TransferReport:
    """Copy weights (and buffers such as BatchNorm's running statistics) layer by layer into ``model``.

    Parameters
    ----------
    model
        The model to load into.
    source
        A :class:`~portnn.Sequential`, a file written by ``model.save`` / ``save_weights``, or a
        training checkpoint (its directory or file).
    layers
        Which layers: None takes every layer of ``model`` whose name is in the source with
        arrays of the same names and shapes (others are skipped, and the report says why); a
        list of names or indices of ``model`` takes those (each must fit, else nothing is
        loaded); a dict maps layers of ``model`` to layers of the source (names or indices),
        when the names differ.

    Returns
    -------
    TransferReport
        Printable: what was loaded from where, and what was skipped and why.
    """
    description, source_names, arrays = _source_layers(source)
    report = TransferReport(description)

    def source_name(key: Any) -> str:
        if isinstance(key, int) and not isinstance(key, bool):
            if not -len(source_names) <= key < len(source_names):
                raise IndexError(f"load_layers: the source has {len(source_names)} layers; index {key} is out of range")
            return source_names[key]
        if key not in arrays:
            raise KeyError(f"load_layers: the source has no layer named {key!r}; it has {source_names}")
        return key

    if layers is None:
        pairs, explicit = [(layer, layer.name) for layer in model.layers], False
    elif isinstance(layers, dict):
        pairs, explicit = [(model.get_layer(t), source_name(s)) for t, s in layers.items()], True
    else:
        pairs, explicit = [(model.get_layer(t), source_name(model.get_layer(t).name)) for t in layers], True

    staged = []
    for layer, name in pairs:
        targets = dict((*layer.named_parameters(), *layer.named_buffers()))
        if not targets:
            continue  # nothing to load (activations, pooling)
        if name not in arrays:
            report.skipped.append((layer.name, "no layer of that name in the source"))
            continue
        found = arrays[name]
        missing = sorted(set(targets) - set(found))
        differ = [
            f"{k} {targets[k].shape} here, {tuple(found[k].shape)} in the source"
            for k in targets
            if k in found and tuple(found[k].shape) != targets[k].shape
        ]
        if missing or differ:
            why = f"shapes differ: {'; '.join(differ)}" if differ else f"the source's {name} has no {missing}"
            if explicit:
                raise ValueError(f"load_layers: cannot load {layer.name} from {description}'s {name}: {why}")
            report.skipped.append((layer.name, why))
            continue
        staged.append((layer, name, targets, found))
    for layer, name, targets, found in staged:  # everything checked: now write
        for k, b in targets.items():
            adapter = backends.adapter_for(b.data)
            b.data = adapter.from_numpy(found[k].astype(dtype_name(b.dtype), copy=True), b.device)
            if hasattr(b, "grad"):
                b.grad = None
        report.loaded.append((layer.name, name, {k: b.shape for k, b in targets.items()}))
    return report

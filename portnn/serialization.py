"""Models on disk: what a model's file holds, and how :func:`load` rebuilds it.

The container (a safetensors file with portnn's metadata, checksummed, written atomically)
is :mod:`portnn.fileformat`, which imports nothing of portnn; its :func:`read_file`,
:func:`write_bytes` and :class:`CheckpointError` are importable from here as well, and
:func:`write_file` here records this portnn's version. This module never imports the model
classes: :meth:`portnn.Sequential.save` calls it, and :func:`load` finds the class to build
in a registry filled by :func:`register_model`.

The ``meta`` of a model's file (see :mod:`portnn.fileformat` for the rest of the header):

``kind``
    ``"model"`` (:meth:`~portnn.Sequential.save`), ``"weights"``
    (:meth:`~portnn.Sequential.save_weights`) or ``"training"`` (a ``fit`` checkpoint,
    whose model tensors are prefixed with ``model.``).
``model_class``
    The registered name of the model's class (``"Sequential"``). Files written before this
    entry existed hold a Sequential.
``architecture``
    :meth:`~portnn.Sequential.get_config` (absent from weights files).
``dtype``, ``backend``, ``input_shape``, ``layer_names``
    The parameters' dtype, where the model was saved from, the shape of one example and the
    layers' names in order.
``compile``
    What :meth:`~portnn.training.Trainer.compile` (or the last ``fit``) gave the model, as
    Keras keeps its compile config: ``{"loss": {"class_name", "config"}, "optimizer":
    {"class_name", "config"}}`` for portnn's own classes (the optimizer's hyperparameters, not
    its state); :func:`load` compiles the model with them. Older files have none.

Reading never unpickles anything and never imports a name found in a file: layers, models,
losses and optimizers are rebuilt from registries of classes already imported. Before a layer
is built, the values its config declares are checked against the values the file holds, so
an edited architecture cannot make :func:`load` allocate more than the file pays for. This is the I/O edge:
arrays are moved to the host here and nowhere else.

Examples
--------
>>> import os, tempfile
>>> import numpy as np
>>> import portnn as pn
>>> path = os.path.join(tempfile.mkdtemp(), "state.safetensors")
>>> pn.serialization.write_file(path, {"w": np.arange(3.0)}, {"step": 7})
>>> tensors, meta = pn.serialization.read_file(path)
>>> tensors["w"], meta
(array([0., 1., 2.]), {'step': 7})
"""

from __future__ import annotations

import contextlib
import inspect
import json
import math
import os
from collections.abc import Iterable
from typing import Any, Protocol, TypeVar

import numpy as np

from . import backends, fileformat, layers, losses, optim
from ._array import dtype_name
from ._version import __version__
from .fileformat import FORMAT, FORMAT_VERSION, CheckpointError, read_file, write_bytes
from .layers.base import Layer, WeightedLayer

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "CheckpointError",
    "ModelLike",
    "layer_from_config",
    "load",
    "load_weights",
    "model_meta",
    "model_tensors",
    "read_file",
    "register_model",
    "save_model",
    "save_weights",
    "write_bytes",
    "write_file",
]


def write_file(path: str | os.PathLike[str], tensors: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    """:func:`portnn.fileformat.write_file` with this portnn's version recorded: ``tensors`` and ``meta``, atomically.

    Parameters
    ----------
    path
        The file to write (by convention ``*.safetensors``); missing folders are created.
    tensors
        NumPy arrays by name (move device arrays with :func:`portnn.to_numpy` first).
    meta
        JSON-able values, returned by :func:`read_file`.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from portnn.serialization import read_file, write_file
    >>> path = os.path.join(tempfile.mkdtemp(), "a.safetensors")
    >>> write_file(path, {"x": np.ones((2, 2), dtype=np.float32)}, {"epoch": 3})
    >>> read_file(path)[1]
    {'epoch': 3}
    """
    fileformat.write_file(path, tensors, meta, portnn_version=__version__)


# -- models: what this module needs of one, and the classes load may build -------------
class ModelLike(Protocol):
    """What saving and loading use of a model (:class:`portnn.Sequential` has it all).

    A class given to :func:`register_model` also needs the classmethod
    ``from_config(architecture)`` that rebuilds a model from :meth:`get_config`.
    """

    layers: list[Any]
    input_shape: tuple[int, ...] | None

    @property
    def dtype(self) -> str: ...

    @property
    def backend(self) -> Any: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    def named_parameters(self) -> Iterable[tuple[str, Any]]: ...

    def named_buffers(self) -> Iterable[tuple[str, Any]]: ...

    def get_config(self) -> dict[str, Any]: ...


_MODELS: dict[str, type] = {}
_Class = TypeVar("_Class", bound=type)


def register_model(cls: _Class) -> _Class:
    """Class decorator: let :func:`load` rebuild models of ``cls``, named in files by ``cls.__name__``.

    :class:`portnn.Sequential` is registered where it is defined. A model class of your own
    (a subclass of Sequential, say) must be registered before it is saved with ``save`` and
    before a file of it is loaded: :func:`load` looks the file's ``model_class`` up here and
    never imports a name found in a file. Registering the same class again (or a class of the
    same module and qualified name, as when a module is reloaded) replaces the entry.

    Parameters
    ----------
    cls
        A class with the methods of :class:`ModelLike` and a classmethod ``from_config``.

    Returns
    -------
    type
        ``cls`` itself, so this works as a decorator.

    Raises
    ------
    TypeError
        When ``cls`` is not a class, or has no ``from_config`` or ``get_config``.
    ValueError
        When another class of the same name is registered already.

    Examples
    --------
    >>> import os, tempfile
    >>> import portnn as pn
    >>> from portnn.serialization import register_model
    >>> @register_model
    ... class WideMLP(pn.Sequential):
    ...     pass
    >>> path = os.path.join(tempfile.mkdtemp(), "wide.safetensors")
    >>> WideMLP([pn.layers.Linear(4, 16)], seed=0).save(path)
    >>> type(pn.load(path)).__name__
    'WideMLP'
    """
    if not isinstance(cls, type):
        raise TypeError(f"register_model: expected a class (use it as @register_model above the class); got {cls!r:.100}")
    missing = [m for m in ("from_config", "get_config") if not callable(getattr(cls, m, None))]
    if missing:
        raise TypeError(
            f"register_model: {cls.__module__}.{cls.__qualname__} has no {' or '.join(missing)}; load rebuilds a model with "
            "cls.from_config(model.get_config()): define both (subclass portnn.Sequential to inherit them)"
        )
    name = cls.__name__
    known = _MODELS.get(name)
    if known is not None and known is not cls and (known.__module__, known.__qualname__) != (cls.__module__, cls.__qualname__):
        raise ValueError(
            f"register_model: {cls.__module__}.{cls.__qualname__} has the name {name!r} of the registered "
            f"{known.__module__}.{known.__qualname__}; files name a model class by its name alone, so rename one of them"
        )
    _MODELS[name] = cls
    return cls


def registered_name(model: Any) -> str | None:
    """The name under which ``model``'s class is registered for :func:`load`; None when it is not (``save`` refuses it)."""
    name = type(model).__name__
    return name if _MODELS.get(name) is type(model) else None


# -- layers ----------------------------------------------------------------------------
def _registry() -> dict[str, type[Layer]]:
    found = {}
    for name in layers.__all__:
        cls = getattr(layers, name)
        if isinstance(cls, type) and issubclass(cls, Layer) and cls is not Layer:
            found[name] = cls
    return found


def _nestable() -> dict[str, type[Layer]]:
    """The classes a config may nest: portnn's layers and the registered models that are layers too (Sequential)."""
    found = _registry()
    for name, cls in _MODELS.items():
        if isinstance(cls, type) and issubclass(cls, Layer):
            found.setdefault(name, cls)
    return found


def _is_entry(value: Any) -> bool:
    """Whether ``value`` is a nested layer as a composite's config holds it: ``{"class_name": str, "config": dict}``."""
    return isinstance(value, dict) and set(value) == {"class_name", "config"} and isinstance(value["class_name"], str)


#: How deep composites may nest in a config (a Residual in a Sequential in a Parallel… counts each): deeper is an edit.
MAX_NESTING = 64


def _check_nesting(config: Any, where: str) -> None:
    """Refuse a config whose layers nest more than :data:`MAX_NESTING` deep (read level by level, nothing built)."""
    level, depth = [config], 0
    while level:
        depth += 1
        if depth > MAX_NESTING:
            raise ValueError(f"{where}: layers nest more than {MAX_NESTING} deep in the config; it was damaged or edited")
        below = []
        for c in level:
            for v in c.values() if isinstance(c, dict) else ():
                if _is_entry(v):
                    below.append(v["config"])
                elif isinstance(v, list):
                    below += [e["config"] for e in v if _is_entry(e)]
        level = below


def _build_children(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` with each nested layer entry (or list of them) built by :func:`layer_from_config`, children first."""
    built = {}
    for key, value in config.items():
        if _is_entry(value):
            value = layer_from_config(value["class_name"], value["config"])
        elif isinstance(value, list) and value and all(_is_entry(v) for v in value):
            value = [layer_from_config(v["class_name"], v["config"]) for v in value]
        built[key] = value
    return built


def layer_from_config(class_name: str, config: dict[str, Any]) -> Layer:
    """Rebuild one of portnn's layers from its class name and :meth:`~portnn.layers.Layer.get_config`.

    Only the classes of :mod:`portnn.layers` are known: a name from a file is looked up
    there, never imported.

    Examples
    --------
    >>> import portnn as pn
    >>> from portnn.serialization import layer_from_config
    >>> layer_from_config("Conv2d", pn.layers.Conv2d(1, 4, 3).get_config())
    Conv2d(1, 4, kernel_size=(3, 3))
    """
    known = _nestable()
    if class_name not in known:
        raise ValueError(f"layer_from_config: {class_name!r} is not a portnn layer; known layers: {', '.join(sorted(known))}")
    cls = known[class_name]
    if isinstance(config, dict):
        _check_nesting(config, f"layer_from_config({class_name!r})")
        config = _build_children(config)  # a composite's children (Residual's block, Parallel's branches)
    try:
        return cls.from_config(config)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"layer_from_config: cannot build {class_name} from {config!r}: {exc}") from None


# -- models ----------------------------------------------------------------------------
def _state_on_host(model: ModelLike) -> dict[str, np.ndarray]:
    return {name: backends.to_numpy(value) for name, value in model.state_dict().items()}


def _common_meta(model: ModelLike) -> dict[str, Any]:
    return {
        "model_class": type(model).__name__,
        "dtype": model.dtype,
        "backend": str(model.backend),
        "input_shape": None if getattr(model, "input_shape", None) is None else list(model.input_shape[1:]),
        "layer_names": [layer.name for layer in getattr(model, "layers", ())],
    }


def _declared_values(cls: type[Layer], config: dict[str, Any]) -> int:
    """How many parameter and buffer values a layer of ``cls`` built from ``config`` would hold, from the config alone.

    Nothing is built. A layer with weights (:class:`~portnn.layers.base.WeightedLayer`: Linear,
    Conv2d) says its weight's shape through ``weight_spec``, read here from an instance that
    holds the config's values as the attributes its ``get_config`` reads them from; a
    normalisation layer holds ``num_features`` values four times (weight, bias, running mean,
    running variance) and a batch count; a MultiHeadAttention ``4 E²`` (+ ``4 E`` with bias);
    an LSTM or GRU its gates' weights per layer;
    LayerNorm the product of ``normalized_shape`` twice (weight, bias) or once (no bias) or not at
    all (no affine); every other layer of portnn holds none. A config not in the form
    ``get_config`` writes raises a TypeError or ValueError.
    """
    if issubclass(cls, WeightedLayer):
        probe = cls.__new__(cls)
        probe.__dict__.update({k: tuple(v) if isinstance(v, list) else v for k, v in config.items()})
        shape = tuple(_size(d) for d in probe.weight_spec()[0])
        bias = _bias(config, "bias" in inspect.signature(cls.__init__).parameters)  # no bias argument: no bias (Embedding)
        return math.prod(shape) + (shape[0] if bias else 0)
    _check_nesting(config, cls.__name__)
    nested = [v for v in config.values() if _is_entry(v)]
    nested += [e for v in config.values() if isinstance(v, list) for e in v if _is_entry(e)]
    if nested:  # a composite (Residual, Parallel, a nested Sequential): its children's values
        known = _nestable()
        total = 0
        for entry in nested:
            child = known.get(entry["class_name"])
            if child is not None and isinstance(entry["config"], dict):
                total += _declared_values(child, entry["config"])
        return total
    if "hidden_size" in config:  # LSTM, GRU: per layer, weight_ih (G H, in), weight_hh (G H, H) and with bias 2 G H
        g = cls._gates  # type: ignore[attr-defined]
        n_in, h, layers = _size(config["input_size"]), _size(config["hidden_size"]), _size(config.get("num_layers", 1))
        bias = _bias(config, True)
        return sum(g * h * ((n_in if k == 0 else h) + h + (2 if bias else 0)) for k in range(layers))
    if "embed_dim" in config:  # MultiHeadAttention: in_proj (3E, E) and out_proj (E, E), with biases 3E and E
        e, bias = _size(config["embed_dim"]), _bias(config, True)
        return 4 * e * e + (4 * e if bias else 0)
    if "num_features" in config:  # BatchNorm1d, BatchNorm2d
        n = _size(config["num_features"])
        affine, tracked = config.get("affine", True), config.get("track_running_stats", True)
        return (2 * n if affine else 0) + (2 * n + 1 if tracked else 0)
    if "normalized_shape" in config:  # LayerNorm: weight and bias of normalized_shape
        shape = config["normalized_shape"]
        n = math.prod(_size(d) for d in (shape if isinstance(shape, list) else [shape]))
        return (n + (n if config.get("bias", True) else 0)) if config.get("elementwise_affine", True) else 0
    return 0


def _bias(config: dict[str, Any], default: bool) -> bool:
    """The config's ``bias`` (``default`` when absent); a TypeError unless it is a bool."""
    bias = config.get("bias", default)
    if not isinstance(bias, bool):
        raise TypeError(f"bias is {bias!r}, not true or false")
    return bias


def _size(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise TypeError(f"{value!r:.40} is not a size (an integer >= 0)")
    return value


def _check_declared_size(architecture: Any, tensors: dict[str, np.ndarray], where: str) -> None:
    """Refuse an architecture whose layers would hold more values than the file's tensors, before one is built.

    A model's state is exactly its file's tensors (every name and shape is compared when they
    load), so a layer that declares more, such as a Linear(100000, 100000) in a file of a few
    hundred bytes, is an edit or damage: it is refused here instead of allocating its weights.
    A model class of your own whose config has no ``layers`` list is built as its
    ``from_config`` says.
    """
    entries = architecture.get("layers") if isinstance(architecture, dict) else None
    if not isinstance(entries, list):
        return
    known = _nestable()
    held = sum(int(a.size) for a in tensors.values())
    declared = 0
    for i, entry in enumerate(entries):
        cls = known.get(entry.get("class_name")) if isinstance(entry, dict) and isinstance(entry.get("class_name"), str) else None
        if cls is None:
            continue  # from_config names what it cannot build
        config = entry.get("config", {})
        try:
            if not isinstance(config, dict):
                raise TypeError(f"its config is a {type(config).__name__}, not an object")
            declared += _declared_values(cls, config)
        except (TypeError, ValueError, AttributeError, KeyError) as exc:
            raise CheckpointError(
                f"{where}: the config of layer {i} ({cls.__name__}) does not say its size as get_config writes it ({exc}); "
                "the file is damaged or was edited"
            ) from None
        if declared > held:
            raise CheckpointError(
                f"{where}: its architecture declares {declared} parameter and buffer values up to layer {i} "
                f"({cls.__name__}), but the file holds {held}; the file is damaged or was edited (nothing was built)"
            )


# -- what compile() was given: saved with the model, as Keras saves its compile config --------
def _losses() -> dict[str, type]:
    found = {n: getattr(losses, n) for n in losses.__all__}
    return {n: c for n, c in found.items() if isinstance(c, type) and issubclass(c, losses.Loss) and c is not losses.Loss}


def _optimizers() -> dict[str, type]:
    found = {n: getattr(optim, n) for n in optim.__all__}
    return {n: c for n, c in found.items() if isinstance(c, type) and issubclass(c, optim.Optimizer) and c is not optim.Optimizer}


def _constructor_config(obj: Any) -> dict[str, Any] | None:
    """The keyword arguments that rebuild ``obj``, read from its attributes of the same names; None if one is missing."""
    config = {}
    for name, param in inspect.signature(type(obj).__init__).parameters.items():
        if name in ("self", "params") or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        if not hasattr(obj, name):
            return None
        config[name] = getattr(obj, name)
    return config


def _compile_meta(model: Any) -> dict[str, Any]:
    """The model's loss and optimizer (class and arguments, no state) when they are portnn's own classes."""
    out: dict[str, Any] = {}
    loss, optimizer = getattr(model, "_loss", None), getattr(model, "_optimizer", None)
    if loss is not None and _losses().get(type(loss).__name__) is type(loss):
        config = _constructor_config(loss)
        if config is not None:
            out["loss"] = {"class_name": type(loss).__name__, "config": config}
    if optimizer is not None and _optimizers().get(type(optimizer).__name__) is type(optimizer):
        out["optimizer"] = {"class_name": type(optimizer).__name__, "config": optimizer.hyperparameters()}
    try:
        return json.loads(json.dumps(out, allow_nan=False))  # tuples to lists; nothing JSON cannot hold
    except (TypeError, ValueError):
        return {}


def _restore_compile(model: Any, compiled: Any, where: str) -> None:
    """Give a loaded model the loss and optimizer it was saved with (classes looked up among portnn's, never imported)."""
    if not isinstance(compiled, dict):
        raise CheckpointError(f"{where}: its compile entry is not a JSON object; the file is damaged or was edited")
    built: dict[str, Any] = {}
    for key, registry in (("loss", _losses()), ("optimizer", _optimizers())):
        entry = compiled.get(key)
        if entry is None:
            continue
        name = entry.get("class_name") if isinstance(entry, dict) else None
        config = entry.get("config") if isinstance(entry, dict) else None
        if name not in registry or not isinstance(config, dict):
            raise CheckpointError(
                f"{where}: its {key} {str(name)[:60]!r} is not one of portnn's ({', '.join(sorted(registry))}); "
                "the file is damaged or was edited"
            )
        try:
            built[key] = registry[name](**{k: tuple(v) if isinstance(v, list) else v for k, v in config.items()})
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"{where}: its {key} {name}({config}) cannot be rebuilt: {exc}") from None
    if built and callable(getattr(model, "compile", None)):
        try:
            model.compile(loss=built.get("loss"), optimizer=built.get("optimizer"))
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"{where}: the model does not take the loss it was saved with: {exc}") from None


def unsaveable(model: Any) -> str | None:
    """Why :func:`load` could not rebuild ``model`` from a file (its class or a layer's is not known); None when it can."""
    cls = type(model)
    if registered_name(model) is None:
        return (
            f"the model is a {cls.__module__}.{cls.__qualname__}, a class pn.load does not know: register it with "
            "@portnn.serialization.register_model above its definition"
        )
    first: dict[int, str] = {}
    for path, layer in model._walk("", remove_duplicate=False):  # every use of every layer
        if id(layer) in first:
            return (
                f"the layer {layer!r} (name={layer.name!r}) is used twice, at {first[id(layer)]!r} and {path!r}: a file "
                "holds its weights once, and pn.load would rebuild two separate layers (declaring its weights twice "
                "and un-sharing them); save the weights with model.save_weights(path) and read them back with "
                "load_weights into a model built the same way (state_dict names each shared weight once, at its first path)"
            )
        first[id(layer)] = path
    known = _nestable()
    order = {name: i for i, (name, _) in enumerate(model.named_children())}
    foreign = [
        (order[path.partition(".")[0]], x)
        for path, x in model.named_modules()
        if path and known.get(type(x).__name__) is not type(x)
    ]
    if foreign:
        i, first = foreign[0]
        return (
            f"layers {[f'{j} ({type(x).__name__})' for j, x in foreign]} are not portnn's own classes (layer {i} "
            f"({first!r}, name={first.name!r}) is a {type(first).__module__}.{type(first).__qualname__}), which pn.load "
            "cannot rebuild from a file"
        )
    return None


def save_model(model: ModelLike, path: str | os.PathLike[str]) -> None:
    """Write ``model``'s architecture and state dict to one file: :meth:`portnn.Sequential.save`.

    Raises
    ------
    TypeError
        When :func:`load` could not rebuild the model: a layer that is not one of portnn's
        own classes, or a model class not registered with :func:`register_model`. Nothing
        is written; ``save_weights`` still works.

    Examples
    --------
    >>> import os, tempfile
    >>> import portnn as pn
    >>> model = pn.Sequential([pn.layers.Linear(4, 2)], seed=0)
    >>> path = os.path.join(tempfile.mkdtemp(), "model.safetensors")
    >>> pn.serialization.save_model(model, path)
    >>> pn.load(path)
    Sequential(
      (0): Linear(4, 2)
    )
    """
    why = unsaveable(model)
    if why is not None:
        raise TypeError(
            f"{type(model).__name__}.save: {why}; or save the weights with model.save_weights(path) and build the model in code"
        )
    meta = {"kind": "model", "architecture": model.get_config(), **_common_meta(model), "compile": _compile_meta(model)}
    write_file(path, _state_on_host(model), meta)


def save_weights(model: ModelLike, path: str | os.PathLike[str]) -> None:
    """Write ``model``'s state dict (no architecture): :meth:`portnn.Sequential.save_weights`.

    Examples
    --------
    >>> import os, tempfile
    >>> import portnn as pn
    >>> path = os.path.join(tempfile.mkdtemp(), "weights.safetensors")
    >>> pn.serialization.save_weights(pn.Sequential([pn.layers.Linear(4, 2)], seed=0), path)
    >>> sorted(pn.serialization.read_file(path)[0])
    ['0.bias', '0.weight']
    """
    write_file(path, _state_on_host(model), {"kind": "weights", **_common_meta(model)})


def load_weights(model: ModelLike, path: str | os.PathLike[str]) -> None:
    """Load a file of :func:`save_weights` or :func:`save_model` into ``model``: :meth:`portnn.Sequential.load_weights`.

    Names and shapes are all checked before anything is written; a mismatch raises a
    :class:`CheckpointError` that lists them and leaves the model as it was.

    Examples
    --------
    >>> import os, tempfile
    >>> import portnn as pn
    >>> path = os.path.join(tempfile.mkdtemp(), "weights.safetensors")
    >>> saved = pn.Sequential([pn.layers.Linear(4, 2)], seed=0)
    >>> saved.save_weights(path)
    >>> model = pn.Sequential([pn.layers.Linear(4, 2)], seed=1)
    >>> pn.serialization.load_weights(model, path)
    >>> bool((pn.to_numpy(model.layers[0].weight.data) == pn.to_numpy(saved.layers[0].weight.data)).all())
    True
    """
    tensors, meta = read_file(path)
    _load_checked(
        model,
        model_tensors(tensors, meta),
        f"load_weights: {os.fspath(path)}",
        "build the model the file was saved from (pn.load rebuilds it when the file came from model.save)",
    )


def state_misfits(model: ModelLike, tensors: dict[str, np.ndarray]) -> str:
    """What keeps ``tensors`` from loading into ``model`` (names, shapes, kinds of dtype), in words; ``""`` when they fit.

    Every name and shape is compared, and each array's kind of dtype with the parameter's or
    buffer's (floats for floats, integers for integer counters): nothing is loaded here.

    Examples
    --------
    >>> import numpy as np
    >>> import portnn as pn
    >>> model = pn.Sequential([pn.layers.Linear(2, 3)])
    >>> pn.serialization.state_misfits(model, {"0.weight": np.ones((3, 2)), "0.bias": np.ones(3)})
    ''
    >>> pn.serialization.state_misfits(model, {"0.weight": np.ones((2, 3))})
    "missing from the file: ['0.bias'] | shapes differ: 0.weight: (2, 3) in the file, (3, 2) in the model"
    """
    targets = dict((*model.named_parameters(), *model.named_buffers()))
    expected = {name: tuple(b.shape) for name, b in targets.items()}
    missing = [n for n in expected if n not in tensors]
    unexpected = sorted(n for n in tensors if n not in expected)
    shapes = [
        f"{n}: {tuple(tensors[n].shape)} in the file, {expected[n]} in the model"
        for n in expected
        if n in tensors and tuple(tensors[n].shape) != expected[n]
    ]
    kinds = [
        f"{n}: {tensors[n].dtype} in the file, {dtype_name(targets[n].dtype)} in the model"
        for n in expected
        if n in tensors and tuple(tensors[n].shape) == expected[n] and _kind(tensors[n].dtype) != _kind(targets[n].dtype)
    ]
    problems = []
    if missing:
        problems.append(f"missing from the file: {missing}")
    if unexpected:
        problems.append(f"not in the model: {unexpected}")
    if shapes:
        problems.append(f"shapes differ: {'; '.join(shapes)}")
    if kinds:
        problems.append(f"kinds of dtype differ: {'; '.join(kinds)}")
    return " | ".join(problems)


def _kind(dtype: Any) -> str:
    """``"float"``, ``"int"`` or ``"bool"`` for a dtype of any library."""
    name = dtype_name(dtype)
    return "bool" if name == "bool" else "float" if name.startswith(("float", "bfloat")) else "int"


def _load_checked(model: ModelLike, tensors: dict[str, np.ndarray], where: str, hint: str) -> None:
    """``model.load_state_dict(tensors)`` after checking every name, shape and kind; a CheckpointError listing all misfits."""
    problems = state_misfits(model, tensors)
    if problems:
        raise CheckpointError(f"{where}: the weights do not fit the model ({problems}); {hint}")
    model.load_state_dict(tensors)


def load(path: str | os.PathLike[str], *, backend: str | None = None, device: Any = None) -> Any:
    """Rebuild a model saved by :meth:`portnn.Sequential.save`, with its weights bit for bit.

    Parameters
    ----------
    path
        A file written by ``model.save``, or a training checkpoint of ``fit``.
    backend, device
        Where to build the model: ``"numpy"``, ``"torch"``, ``"cupy"``, ``"array_api_strict"``
        and a device of it. None takes the current global backend (:func:`portnn.set_backend`);
        a ``device`` alone is a device of the current backend. The file's ``backend`` entry
        only records where it was saved from.

    Returns
    -------
    Sequential
        Or the registered class (:func:`register_model`) that the file's ``model_class`` names.

    Raises
    ------
    CheckpointError
        When the file is not a readable portnn model (see :func:`read_file`), holds only
        weights, names a model class, layer, loss or optimizer portnn does not know, or
        declares layers larger than the values it holds (checked before any is built).

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> import portnn as pn
    >>> model = pn.Sequential([pn.layers.Linear(4, 8), pn.layers.ReLU(), pn.layers.Linear(8, 3)], seed=0)
    >>> path = os.path.join(tempfile.mkdtemp(), "mlp.safetensors")
    >>> model.save(path)
    >>> again = pn.load(path, backend="numpy")
    >>> x = np.ones((2, 4), dtype=np.float32)
    >>> bool((again.predict(x) == model.predict(x)).all())
    True
    """
    tensors, meta = read_file(path)
    where = f"load: {os.fspath(path)}"
    architecture = meta.get("architecture")
    if architecture is None:
        if meta.get("kind") == "training":
            raise CheckpointError(
                f"{where}: a training checkpoint of a model that portnn cannot rebuild (a layer or model class of your "
                "own); build the model in code and call model.load_weights(path)"
            )
        raise CheckpointError(
            f"{where}: holds weights only (written by save_weights), not a model; build the model in code and call "
            "model.load_weights(path)"
        )
    class_name = meta.get("model_class", "Sequential")  # files written before model_class existed hold a Sequential
    cls = _MODELS.get(class_name) if isinstance(class_name, str) else None
    if cls is None:
        raise CheckpointError(
            f"{where}: the file holds a model of class {class_name!r}, which is not a registered model class "
            f"(registered: {', '.join(sorted(_MODELS)) or 'none'}); names in a file are never imported: import the module "
            "that defines the class, decorated with @portnn.serialization.register_model, before loading"
        )
    _check_declared_size(architecture, model_tensors(tensors, meta), where)
    if backend is None:
        backend = backends.get_backend().name if device is not None else None
    scope = backends.use_backend(backend, device) if backend is not None else contextlib.nullcontext()
    with scope:
        try:
            model = cls.from_config(architecture)
        except (TypeError, ValueError, KeyError) as exc:
            raise CheckpointError(f"{where}: the architecture cannot be rebuilt: {exc}") from None
    _load_checked(model, model_tensors(tensors, meta), where, "the file is damaged or was edited")
    if meta.get("compile"):
        _restore_compile(model, meta["compile"], where)
    return model


def model_meta(model: ModelLike) -> dict[str, Any]:
    """What lets :func:`load` rebuild ``model`` (architecture, class, dtype, backend, layer names), for other writers.

    Training checkpoints carry it, so ``pn.load`` reads them too. The architecture is None
    for a model :func:`load` could not rebuild (a layer class of your own, or a model class
    not registered with :func:`register_model`).

    Examples
    --------
    >>> import portnn as pn
    >>> meta = pn.serialization.model_meta(pn.Sequential([pn.layers.Linear(4, 2)]))
    >>> meta["model_class"], meta["layer_names"]
    ('Sequential', ['linear'])
    """
    known = _registry()
    layers_known = all(known.get(type(layer).__name__) is type(layer) for layer in model.layers)
    rebuildable = layers_known and registered_name(model) is not None
    return {"architecture": model.get_config() if rebuildable else None, **_common_meta(model), "compile": _compile_meta(model)}


def model_tensors(tensors: dict[str, np.ndarray], meta: dict[str, Any]) -> dict[str, np.ndarray]:
    """The model's state dict among a file's tensors (a training checkpoint prefixes them with ``model.``).

    Examples
    --------
    >>> import numpy as np
    >>> from portnn.serialization import model_tensors
    >>> sorted(model_tensors({"model.0.weight": np.ones(2), "optimizer.0.m": np.ones(2)}, {"kind": "training"}))
    ['0.weight']
    """
    if meta.get("kind") != "training":
        return tensors
    return {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}

"""Checkpoints on disk: one safetensors file with portnn's metadata, written atomically, read with checks.

A portnn file is an ordinary `safetensors <https://huggingface.co/docs/safetensors>`_ file
(tensors by name, little-endian, no code) whose ``__metadata__`` holds strings:

``format``
    ``"portnn"``.
``format_version``
    ``"1"``; a file of a newer version is refused with a hint to upgrade.
``portnn_version``
    The version of portnn that wrote it.
``meta``
    A JSON object given by the writer. :meth:`portnn.Sequential.save` stores the
    ``architecture`` (:meth:`~portnn.Sequential.get_config`), ``dtype``, ``backend`` (where the
    model was saved from), ``input_shape`` and ``layer_names``; ``save_weights`` the same
    without ``architecture``.
``checksum``
    ``"sha256:<hex>"`` over every tensor (sorted by name: name, dtype, shape, raw bytes) and
    then every other metadata entry (sorted by key: key, value), so damage to the data or
    to the metadata is caught on reading.

Reading never unpickles anything and never imports a name found in a file: layers are
rebuilt from a fixed registry of portnn's own classes. This is the I/O edge: arrays are
moved to the host here and nowhere else.

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
import hashlib
import json
import os
import secrets
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import safetensors.numpy

from . import backends

if TYPE_CHECKING:
    from .layers.base import Layer
    from .model import Sequential

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "CheckpointError",
    "layer_from_config",
    "load",
    "load_weights",
    "read_file",
    "save_model",
    "save_weights",
    "write_bytes",
    "write_file",
]

#: The ``format`` string in every portnn file.
FORMAT = "portnn"
#: The newest ``format_version`` this portnn writes and reads.
FORMAT_VERSION = 1

_RESERVED = "__metadata__"
_MAX_HEADER = 100 * 2**20  # safetensors' own limit on the JSON header


class CheckpointError(ValueError):
    """A file that is not a readable portnn checkpoint, or does not fit the model. The message names the file."""


# -- the file --------------------------------------------------------------------------
def write_file(path: str | os.PathLike[str], tensors: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    """Write ``tensors`` and the JSON-able ``meta`` to ``path`` as a portnn safetensors file, atomically.

    The bytes go to a temporary file in the same folder, which is flushed, synced and renamed
    over ``path`` (then the folder is synced where the OS allows): a reader sees the old file
    or the new one, never a mix, and a failed write removes its temporary file and leaves an
    existing ``path`` as it was. Missing parent folders are created.

    Parameters
    ----------
    path
        The file to write (by convention ``*.safetensors``).
    tensors
        NumPy arrays by name (move device arrays with :func:`portnn.to_numpy` first).
    meta
        JSON-able values (str, int, float, bool, None, lists, dicts with str keys), stored
        as the ``meta`` string of the header and returned by :func:`read_file`.

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
    path = Path(path)
    data = _encode(tensors, meta, where=f"write_file({str(path)!r})")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes(path, data)


def read_file(path: str | os.PathLike[str]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read a file written by :func:`write_file`: ``(tensors as NumPy arrays, meta)``, after checking it.

    Raises
    ------
    CheckpointError
        Naming the file and what is wrong: missing, empty, truncated, not a safetensors file
        (a ``.npz``, text, random bytes), a safetensors file that portnn did not write, a
        newer ``format_version``, malformed metadata, or a checksum that does not match.

    Examples
    --------
    >>> from portnn.serialization import CheckpointError, read_file
    >>> try:
    ...     read_file("no-such-file.safetensors")
    ... except CheckpointError as exc:
    ...     print(exc)
    read_file: no-such-file.safetensors: no such file
    """
    where = f"read_file: {os.fspath(path)}"
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise CheckpointError(f"{where}: no such file") from None
    except IsADirectoryError:
        raise CheckpointError(f"{where}: is a folder, not a checkpoint file") from None
    except OSError as exc:
        raise CheckpointError(f"{where}: cannot be read ({exc})") from exc
    return _decode(data, where)


def _encode(tensors: dict[str, np.ndarray], meta: dict[str, Any], *, where: str) -> bytes:
    if not isinstance(tensors, dict):
        raise TypeError(f"{where}: tensors must be a dict of name -> numpy array; got {type(tensors).__name__}")
    if not isinstance(meta, dict):
        raise TypeError(f"{where}: meta must be a dict of JSON-able values; got {type(meta).__name__}")
    host: dict[str, np.ndarray] = {}
    for name, value in tensors.items():
        if not isinstance(name, str) or not name or name == _RESERVED:
            raise ValueError(f"{where}: tensor name {name!r} is not allowed; use a non-empty str other than {_RESERVED!r}")
        if not isinstance(value, np.ndarray):
            raise TypeError(
                f"{where}: tensor {name!r} is a {type(value).__module__}.{type(value).__name__}; "
                "pass NumPy arrays (portnn.to_numpy(x) moves any backend's array to the host)"
            )
        if value.dtype.kind not in "biuf":
            raise TypeError(f"{where}: tensor {name!r} has dtype {value.dtype}; only bool, integer and float arrays are stored")
        host[name] = value if value.flags.c_contiguous else value.copy(order="C")  # keeps 0-d arrays 0-d
    try:
        meta_json = json.dumps(meta, allow_nan=False, sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{where}: meta must hold only JSON values (str, int, float, bool, None, list, dict): {exc}") from None
    from . import __version__

    metadata = {"format": FORMAT, "format_version": str(FORMAT_VERSION), "portnn_version": __version__, "meta": meta_json}
    metadata["checksum"] = _checksum(host, metadata)
    return safetensors.numpy.save(host, metadata=metadata)


def _checksum(tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> str:
    """sha256 over the tensors (sorted names; name, dtype, shape, bytes) and the metadata but its checksum (sorted keys).

    Every field is length-prefixed, so no two different contents hash the same bytes.
    """
    h = hashlib.sha256()

    def field(b: bytes) -> None:
        h.update(struct.pack("<Q", len(b)))
        h.update(b)

    for name in sorted(tensors):
        a = tensors[name]
        field(name.encode("utf-8"))
        field(a.dtype.name.encode("ascii"))
        field(json.dumps([int(d) for d in a.shape]).encode("ascii"))
        field(a.tobytes(order="C"))
    for key in sorted(k for k in metadata if k != "checksum"):
        field(key.encode("utf-8"))
        field(metadata[key].encode("utf-8"))
    return "sha256:" + h.hexdigest()


def write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: a temporary file in the same folder, fsync, rename, fsync of the folder.

    A failure at any point leaves the old file (if any) as it was and no temporary file behind.
    """
    path = Path(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            fd = os.open(tmp, flags, 0o666)  # the umask applies, as for any new file
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    """Make the rename durable; folders cannot be opened or synced on every OS (Windows), so failures pass."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _what_is(data: bytes) -> str:
    """A guess at what a file that is not safetensors is, for the error message."""
    if data[:4] == b"PK\x03\x04":
        return "a zip archive (a NumPy .npz? portnn now saves .safetensors: load it with numpy and save it again)"
    if data[:6] == b"\x93NUMPY":
        return "a NumPy .npy file"
    if data[:2] == b"\x80\x04" or data[:2] == b"\x80\x02":
        return "a pickle (never loaded: it could run code)"
    try:
        data[:64].decode("utf-8")
        return "a text file" if data[:64].isascii() else "not a safetensors file"
    except UnicodeDecodeError:
        return "not a safetensors file"


def _decode(data: bytes, where: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    size = len(data)
    if size == 0:
        raise CheckpointError(f"{where}: the file is empty (0 bytes); it was not written completely, save it again")
    looks_like_header = size > 8 and data[8:9] == b"{"
    if not looks_like_header:
        if size < 8:
            raise CheckpointError(f"{where}: {size} bytes is too short for a safetensors file: truncated, or {_what_is(data)}")
        raise CheckpointError(f"{where}: not a portnn checkpoint: {_what_is(data)} (no safetensors JSON header)")
    (n,) = struct.unpack("<Q", data[:8])
    if n > _MAX_HEADER:
        raise CheckpointError(f"{where}: not a safetensors file: its header length field says {n} bytes")
    if 8 + n > size:
        raise CheckpointError(
            f"{where}: the file is truncated in its header ({size} bytes; the header alone should take {8 + n}); save it again"
        )
    try:
        header = json.loads(data[8 : 8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{where}: the safetensors header is not valid JSON, so the file is damaged ({exc})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{where}: the safetensors header is not a JSON object, so the file is damaged")
    end = 0
    for name, entry in header.items():
        if name == _RESERVED:
            continue
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)):
            raise CheckpointError(f"{where}: the header entry of tensor {name!r} is malformed, so the file is damaged")
        end = max(end, offsets[1])
    if 8 + n + end > size:
        raise CheckpointError(
            f"{where}: the file is truncated: its tensor data ends at byte {8 + n + end} but the file has {size} bytes; "
            "save it again"
        )
    metadata = header.get(_RESERVED)
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        found = "no __metadata__" if not isinstance(metadata, dict) else f"format={metadata.get('format')!r}"
        raise CheckpointError(
            f"{where}: a safetensors file that portnn did not write ({found}, expected format={FORMAT!r}); "
            "read it with safetensors.numpy.load_file and pass the arrays to model.load_state_dict"
        )
    odd = sorted(k for k, v in metadata.items() if not isinstance(v, str))
    if odd:
        raise CheckpointError(f"{where}: malformed metadata: {odd} are not strings, as safetensors requires; the file is damaged")
    version = metadata.get("format_version")
    if not (isinstance(version, str) and version.isdigit() and int(version) >= 1):
        raise CheckpointError(f"{where}: format_version {version!r} is not a version portnn knows; the file is damaged")
    if int(version) > FORMAT_VERSION:
        from . import __version__

        raise CheckpointError(
            f"{where}: written by a newer portnn ({metadata.get('portnn_version')!r}, format_version {version}); "
            f"this portnn {__version__} reads format_version {FORMAT_VERSION} at most: upgrade portnn"
        )
    meta_json = metadata.get("meta")
    try:
        if not isinstance(meta_json, str):
            raise ValueError(f"'meta' is {type(meta_json).__name__}, expected a JSON string")
        meta = json.loads(meta_json)
        if not isinstance(meta, dict):
            raise ValueError(f"'meta' holds a {type(meta).__name__}, expected a JSON object")
    except ValueError as exc:
        raise CheckpointError(f"{where}: malformed JSON metadata: {exc}") from None
    try:
        tensors = safetensors.numpy.load(data)
    except Exception as exc:  # safetensors' own checks: offsets, dtypes, sizes
        raise CheckpointError(f"{where}: the safetensors data is invalid, so the file is damaged ({exc})") from None
    expected = metadata.get("checksum")
    actual = _checksum(tensors, metadata)
    if expected != actual:
        raise CheckpointError(
            f"{where}: checksum mismatch: the tensors or metadata changed after writing (bit rot, a partial copy, "
            f"an edit); stored {expected!r}, computed {actual!r}. Use another copy of the file"
        )
    return tensors, meta


# -- layers and models -----------------------------------------------------------------
def _registry() -> dict[str, type[Layer]]:
    from . import layers
    from .layers.base import Layer

    found = {}
    for name in layers.__all__:
        cls = getattr(layers, name)
        if isinstance(cls, type) and issubclass(cls, Layer) and cls is not Layer:
            found[name] = cls
    return found


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
    known = _registry()
    if class_name not in known:
        raise ValueError(f"layer_from_config: {class_name!r} is not a portnn layer; known layers: {', '.join(sorted(known))}")
    cls = known[class_name]
    try:
        return cls.from_config(config)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"layer_from_config: cannot build {class_name} from {config!r}: {exc}") from None


def _state_on_host(model: Sequential) -> dict[str, np.ndarray]:
    return {name: backends.to_numpy(value) for name, value in model.state_dict().items()}


def _common_meta(model: Sequential) -> dict[str, Any]:
    return {
        "dtype": model.dtype,
        "backend": str(model.backend),
        "input_shape": None if model.input_shape is None else list(model.input_shape[1:]),
        "layer_names": [layer.name for layer in model.layers],
    }


def save_model(model: Sequential, path: str | os.PathLike[str]) -> None:
    """Write ``model``'s architecture and state dict to one file: :meth:`portnn.Sequential.save`.

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
    known = _registry()
    for i, layer in enumerate(model.layers):
        if known.get(type(layer).__name__) is not type(layer):
            raise TypeError(
                f"Sequential.save: layer {i} ({layer!r}, name={layer.name!r}) is a {type(layer).__module__}."
                f"{type(layer).__qualname__}, which portnn cannot rebuild from a file (only its own layers); "
                "save the weights with model.save_weights(path) and build the model in code"
            )
    meta = {"kind": "model", "architecture": model.get_config(), **_common_meta(model)}
    write_file(path, _state_on_host(model), meta)


def save_weights(model: Sequential, path: str | os.PathLike[str]) -> None:
    """Write ``model``'s state dict (no architecture): :meth:`portnn.Sequential.save_weights`."""
    write_file(path, _state_on_host(model), {"kind": "weights", **_common_meta(model)})


def load_weights(model: Sequential, path: str | os.PathLike[str]) -> None:
    """Load a file of :func:`save_weights` or :func:`save_model` into ``model``: :meth:`portnn.Sequential.load_weights`.

    Names and shapes are all checked before anything is written; a mismatch raises a
    :class:`CheckpointError` that lists them and leaves the model as it was.
    """
    tensors, meta = read_file(path)
    _load_checked(
        model,
        model_tensors(tensors, meta),
        f"load_weights: {os.fspath(path)}",
        "build the model the file was saved from (pn.load rebuilds it when the file came from model.save)",
    )


def _load_checked(model: Sequential, tensors: dict[str, np.ndarray], where: str, hint: str) -> None:
    """``model.load_state_dict(tensors)`` after checking every name and shape; a CheckpointError listing all misfits."""
    expected = {name: b.shape for name, b in (*model.named_parameters(), *model.named_buffers())}
    missing = [n for n in expected if n not in tensors]
    unexpected = sorted(n for n in tensors if n not in expected)
    shapes = [
        f"{n}: {tuple(tensors[n].shape)} in the file, {expected[n]} in the model"
        for n in expected
        if n in tensors and tuple(tensors[n].shape) != expected[n]
    ]
    problems = []
    if missing:
        problems.append(f"missing from the file: {missing}")
    if unexpected:
        problems.append(f"not in the model: {unexpected}")
    if shapes:
        problems.append(f"shapes differ: {'; '.join(shapes)}")
    if problems:
        raise CheckpointError(f"{where}: the weights do not fit the model ({' | '.join(problems)}); {hint}")
    model.load_state_dict(tensors)


def load(path: str | os.PathLike[str], *, backend: str | None = None, device: Any = None) -> Sequential:
    """Rebuild a model saved by :meth:`portnn.Sequential.save`, with its weights bit for bit.

    Parameters
    ----------
    path
        A file written by ``model.save``.
    backend, device
        Where to build the model: ``"numpy"``, ``"torch"``, ``"cupy"``, ``"array_api_strict"``
        and a device of it. None takes the current global backend (:func:`portnn.set_backend`);
        a ``device`` alone is a device of the current backend. The file's ``backend`` entry
        only records where it was saved from.

    Returns
    -------
    Sequential

    Raises
    ------
    CheckpointError
        When the file is not a readable portnn model (see :func:`read_file`), holds only
        weights, or names a layer portnn does not have.

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
    from .model import Sequential

    tensors, meta = read_file(path)
    where = f"load: {os.fspath(path)}"
    architecture = meta.get("architecture")
    if architecture is None:
        raise CheckpointError(
            f"{where}: holds weights only (written by save_weights), not a model; build the model in code and call "
            "model.load_weights(path)"
        )
    if backend is None:
        backend = backends.get_backend().name if device is not None else None
    scope = backends.use_backend(backend, device) if backend is not None else contextlib.nullcontext()
    with scope:
        try:
            model = Sequential.from_config(architecture)
        except (TypeError, ValueError, KeyError) as exc:
            raise CheckpointError(f"{where}: the architecture cannot be rebuilt: {exc}") from None
    _load_checked(model, model_tensors(tensors, meta), where, "the file is damaged or was edited")
    return model


def model_meta(model: Sequential) -> dict[str, Any]:
    """The metadata that lets :func:`load` rebuild ``model`` (architecture, dtype, backend, layer names), for other writers.

    Training checkpoints carry it, so ``pn.load`` reads them too. The architecture is None
    for a model with a layer portnn cannot rebuild (a layer class of your own).
    """
    known = _registry()
    rebuildable = all(known.get(type(layer).__name__) is type(layer) for layer in model.layers)
    return {"architecture": model.get_config() if rebuildable else None, **_common_meta(model)}


def model_tensors(tensors: dict[str, np.ndarray], meta: dict[str, Any]) -> dict[str, np.ndarray]:
    """The model's state dict among a file's tensors (a training checkpoint prefixes them with ``model.``)."""
    if meta.get("kind") != "training":
        return tensors
    return {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}

"""The portnn file format: a safetensors container with portnn's metadata, checksummed, written atomically.

This module is the format and nothing else: it imports no other part of portnn (only the
standard library, NumPy and safetensors), so the rest of the package builds on it and never
the other way round. :mod:`portnn.serialization` adds the model side (what a model's file
holds, how ``pn.load`` rebuilds it) and passes in the portnn version to record.

A portnn file is an ordinary `safetensors <https://huggingface.co/docs/safetensors>`_ file
(tensors by name, little-endian, no code) whose ``__metadata__`` holds strings:

``format``
    ``"portnn"``.
``format_version``
    ``"1"``; a file of a newer version is refused with a hint to upgrade.
``portnn_version``
    The version of portnn that wrote it (given by the writer).
``meta``
    A JSON object given by the writer (for models, see :mod:`portnn.serialization`).
``checksum``
    ``"sha256:<hex>"`` over every tensor (sorted by name: name, dtype, shape, raw bytes) and
    then every other metadata entry (sorted by key: key, value), so damage to the data or
    to the metadata is caught on reading.

Reading never unpickles anything and never imports a name found in a file.

Examples
--------
>>> import os, tempfile
>>> import numpy as np
>>> from portnn import fileformat
>>> path = os.path.join(tempfile.mkdtemp(), "state.safetensors")
>>> fileformat.write_file(path, {"w": np.arange(3.0)}, {"step": 7}, portnn_version="0.1.0")
>>> tensors, meta = fileformat.read_file(path)
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
from typing import Any

import numpy as np
import safetensors.numpy

__all__ = ["FORMAT", "FORMAT_VERSION", "CheckpointError", "read_file", "write_bytes", "write_file"]

#: The ``format`` string in every portnn file.
FORMAT = "portnn"
#: The newest ``format_version`` this portnn writes and reads.
FORMAT_VERSION = 1

_RESERVED = "__metadata__"
_MAX_HEADER = 100 * 2**20  # safetensors' own limit on the JSON header


class CheckpointError(ValueError):
    """A file that is not a readable portnn checkpoint, or does not fit the model. The message names the file."""


# -- the file --------------------------------------------------------------------------
def write_file(
    path: str | os.PathLike[str], tensors: dict[str, np.ndarray], meta: dict[str, Any], *, portnn_version: str
) -> None:
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
    portnn_version
        The version of the writer, stored as ``portnn_version`` (this module does not import
        portnn: :func:`portnn.serialization.write_file` passes ``portnn.__version__``).

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from portnn.fileformat import read_file, write_file
    >>> path = os.path.join(tempfile.mkdtemp(), "a.safetensors")
    >>> write_file(path, {"x": np.ones((2, 2), dtype=np.float32)}, {"epoch": 3}, portnn_version="0.1.0")
    >>> read_file(path)[1]
    {'epoch': 3}
    """
    path = Path(path)
    data = _encode(tensors, meta, portnn_version, where=f"write_file({str(path)!r})")
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
    >>> from portnn.fileformat import CheckpointError, read_file
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


def _encode(tensors: dict[str, np.ndarray], meta: dict[str, Any], portnn_version: str, *, where: str) -> bytes:
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
    if not isinstance(portnn_version, str) or not portnn_version:
        raise TypeError(f"{where}: portnn_version must be a non-empty str such as '0.1.0'; got {portnn_version!r}")
    metadata = {"format": FORMAT, "format_version": str(FORMAT_VERSION), "portnn_version": portnn_version, "meta": meta_json}
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
    The parent folder must exist (:func:`write_file` creates it).

    Examples
    --------
    >>> import os, tempfile
    >>> from portnn.fileformat import write_bytes
    >>> path = os.path.join(tempfile.mkdtemp(), "index.html")
    >>> write_bytes(path, b"<p>done</p>")
    >>> open(path, "rb").read()
    b'<p>done</p>'
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
        raise CheckpointError(
            f"{where}: written by a newer portnn ({metadata.get('portnn_version')!r}, format_version {version}); "
            f"this portnn reads format_version {FORMAT_VERSION} at most: upgrade portnn"
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

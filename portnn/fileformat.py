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
import io
import json
import math
import os
import secrets
import struct
from pathlib import Path
from typing import Any, BinaryIO

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

    The file is read in the order that keeps a hostile or foreign file cheap: the 8-byte
    length and the JSON header first (at most 100 MiB, and never past the file's end), then
    every tensor's dtype, shape and offsets against each other and against the file's size,
    then portnn's metadata, and only then the tensor data, into arrays of exactly the sizes
    checked. So reading takes memory in proportion to the file's real size, whatever its
    header declares.

    Raises
    ------
    CheckpointError
        Naming the file and what is wrong: missing, empty, truncated, not a safetensors file
        (a ``.npz``, text, random bytes), sizes or offsets that do not add up, a safetensors
        file that portnn did not write, a newer ``format_version``, malformed or too deeply
        nested metadata, or a checksum that does not match.

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
        f = open(path, "rb")  # noqa: SIM115  (closed below, once the size is known)
    except FileNotFoundError:
        raise CheckpointError(f"{where}: no such file") from None
    except IsADirectoryError:
        raise CheckpointError(f"{where}: is a folder, not a checkpoint file") from None
    except OSError as exc:
        raise CheckpointError(f"{where}: cannot be read ({exc})") from exc
    with f:
        try:
            size = os.fstat(f.fileno()).st_size
            return _read(f, size, where)
        except OSError as exc:
            raise CheckpointError(f"{where}: cannot be read ({exc})") from exc


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
    """:func:`read_file` of bytes already in memory."""
    return _read(io.BytesIO(data), len(data), where)


#: safetensors' dtype names and the NumPy dtypes portnn reads them as (little-endian, as the format is).
_DTYPES = {
    "BOOL": np.dtype("?"),
    "U8": np.dtype("u1"),
    "I8": np.dtype("i1"),
    "U16": np.dtype("<u2"),
    "I16": np.dtype("<i2"),
    "F16": np.dtype("<f2"),
    "U32": np.dtype("<u4"),
    "I32": np.dtype("<i4"),
    "F32": np.dtype("<f4"),
    "U64": np.dtype("<u8"),
    "I64": np.dtype("<i8"),
    "F64": np.dtype("<f8"),
}
_MAX_NDIM = 64  # NumPy's limit on the number of dimensions
_MAX_DEPTH = 64  # nesting of the metadata's JSON; portnn writes fewer than 10 levels


def _read(f: BinaryIO, size: int, where: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Check and read a portnn file of ``size`` bytes from the binary stream ``f``, positioned at its start."""
    if size == 0:
        raise CheckpointError(f"{where}: the file is empty (0 bytes); it was not written completely, save it again")
    start = _read_exactly(f, min(size, 64), where)
    if not (size > 8 and start[8:9] == b"{"):
        if size < 8:
            raise CheckpointError(f"{where}: {size} bytes is too short for a safetensors file: truncated, or {_what_is(start)}")
        raise CheckpointError(f"{where}: not a portnn checkpoint: {_what_is(start)} (no safetensors JSON header)")
    (n,) = struct.unpack("<Q", start[:8])
    if n > _MAX_HEADER:
        raise CheckpointError(f"{where}: not a safetensors file: its header length field says {n} bytes")
    if 8 + n > size:
        raise CheckpointError(
            f"{where}: the file is truncated in its header ({size} bytes; the header alone should take {8 + n}); save it again"
        )
    f.seek(8)
    header = _json(_read_exactly(f, n, where), where, "the safetensors header is not valid JSON, so the file is damaged")
    if not isinstance(header, dict):
        raise CheckpointError(f"{where}: the safetensors header is not a JSON object, so the file is damaged")
    entries = _entries(header, where)
    end = entries[-1][3] if entries else 0
    if 8 + n + end > size:
        raise CheckpointError(
            f"{where}: the file is truncated: its tensor data ends at byte {8 + n + end} but the file has {size} bytes; "
            "save it again"
        )
    if 8 + n + end < size:
        raise CheckpointError(
            f"{where}: {size - 8 - n - end} bytes follow the end of its tensor data (byte {8 + n + end}), which no "
            "safetensors writer leaves: the file is damaged, or two files were joined"
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
    if not (isinstance(version, str) and version.isascii() and version.isdigit() and int(version) >= 1):
        raise CheckpointError(f"{where}: format_version {version!r} is not a version portnn knows; the file is damaged")
    if int(version) > FORMAT_VERSION:
        raise CheckpointError(
            f"{where}: written by a newer portnn ({metadata.get('portnn_version')!r}, format_version {version}); "
            f"this portnn reads format_version {FORMAT_VERSION} at most: upgrade portnn"
        )
    meta_json = metadata.get("meta")
    if not isinstance(meta_json, str):
        raise CheckpointError(f"{where}: malformed JSON metadata: 'meta' is {type(meta_json).__name__}, expected a JSON string")
    meta = _json(meta_json, where, "malformed JSON metadata")
    if not isinstance(meta, dict):
        raise CheckpointError(f"{where}: malformed JSON metadata: 'meta' holds a {type(meta).__name__}, expected a JSON object")
    tensors: dict[str, np.ndarray] = {}
    for name, dtype, shape, _ in entries:  # in the order of their offsets: one pass over the data
        try:
            array = np.empty(shape, dtype)  # its bytes were checked against the file's size; its sizes may still be absurd
        except (ValueError, OverflowError, MemoryError) as exc:
            raise CheckpointError(
                f"{where}: tensor {name[:80]!r} has shape {list(shape)[:8]}, which NumPy refuses ({exc})"
            ) from None
        if array.nbytes:
            f.readinto(memoryview(array).cast("B"))  # sizes were checked against the file: no short read unless it changed
        tensors[name] = array
    if f.read(1) != b"" or f.tell() != size:
        raise CheckpointError(f"{where}: the file changed while it was read; read it again")
    expected = metadata.get("checksum")
    actual = _checksum(tensors, metadata)
    if expected != actual:
        raise CheckpointError(
            f"{where}: checksum mismatch: the tensors or metadata changed after writing (bit rot, a partial copy, "
            f"an edit); stored {expected!r}, computed {actual!r}. Use another copy of the file"
        )
    return tensors, meta


def _read_exactly(f: BinaryIO, n: int, where: str) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise CheckpointError(f"{where}: the file ended after {len(data)} of {n} bytes: it changed while it was read")
    return data


def _json(raw: bytes | str, where: str, what: str) -> Any:
    """``raw`` parsed as JSON nested at most :data:`_MAX_DEPTH` deep; else a CheckpointError ``what (why)``."""
    try:
        value = json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise CheckpointError(f"{where}: {what} ({exc})") from None
    except RecursionError:
        raise CheckpointError(f"{where}: {what} (it nests deeper than Python can parse)") from None
    if _depth(value) > _MAX_DEPTH:
        raise CheckpointError(f"{where}: {what} (it nests more than {_MAX_DEPTH} levels deep)")
    return value


def _depth(value: Any) -> int:
    """How deeply lists and objects nest in a parsed JSON value (iteratively: no recursion limit)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            deepest = max(deepest, level)
            if level <= _MAX_DEPTH:
                stack.extend((child, level + 1) for child in item if isinstance(child, (list, dict)))
    return deepest


def _entries(header: dict[str, Any], where: str) -> list[tuple[str, np.dtype, tuple[int, ...], int]]:
    """The tensors the header declares, as ``(name, dtype, shape, end offset)`` in the order of their data.

    Every entry must have a dtype portnn reads, a shape of at most 64 sizes >= 0, and offsets
    whose difference is exactly the shape's number of bytes; the tensors must tile the data
    from offset 0 without gaps or overlaps, as safetensors writes them. Only then does the
    caller compare the end with the file's size: nothing here allocates what a header declares.
    """
    found = []
    for name, entry in header.items():
        if name == _RESERVED:
            continue
        bad = f"{where}: the header entry of tensor {name[:80]!r} is malformed"
        if not isinstance(entry, dict):
            raise CheckpointError(f"{bad}, so the file is damaged")
        dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_size(o) for o in offsets)):
            raise CheckpointError(f"{bad} (data_offsets {str(offsets)[:60]}), so the file is damaged")
        if not isinstance(dtype, str) or dtype not in _DTYPES:
            raise CheckpointError(
                f"{bad}: dtype {str(dtype)[:20]!r} is not one portnn reads ({', '.join(_DTYPES)}), so the file is damaged "
                "or was not written by portnn"
            )
        if not (isinstance(shape, list) and len(shape) <= _MAX_NDIM and all(_is_size(d) for d in shape)):
            raise CheckpointError(f"{bad} (shape {str(shape)[:60]}), so the file is damaged")
        begin, stop = offsets
        count = math.prod(shape)
        if stop < begin or stop - begin != count * _DTYPES[dtype].itemsize:
            raise CheckpointError(
                f"{bad}: shape {shape} of {dtype} takes {count * _DTYPES[dtype].itemsize} bytes but its offsets "
                f"[{begin}, {stop}] span {stop - begin}, so the file is damaged"
            )
        found.append((begin, stop, name, _DTYPES[dtype], tuple(shape)))
    found.sort(key=lambda e: (e[0], e[1]))
    position = 0
    for begin, stop, name, _, _ in found:
        if begin != position:
            gap = "overlaps the tensor before it" if begin < position else f"leaves a gap of {begin - position} bytes"
            raise CheckpointError(f"{where}: the data of tensor {name[:80]!r} {gap}, so the file is damaged")
        position = stop
    return [(name, dtype, shape, stop) for _, stop, name, dtype, shape in found]


def _is_size(value: Any) -> bool:
    """A JSON integer >= 0 (not a bool, which Python counts as an int)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0

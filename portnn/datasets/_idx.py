"""Reader and validators for the IDX format used by MNIST and Fashion-MNIST.

An IDX file is a 4-byte magic number ``0x0000TTNN`` (``TT`` the element type,
``NN`` the number of dimensions), ``NN`` big-endian uint32 dimension sizes and
then the elements in C order, big-endian.  Files may be gzip-compressed.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from ._errors import DatasetError

__all__ = [
    "IDX_IMAGES_MAGIC",
    "IDX_LABELS_MAGIC",
    "check_images",
    "check_labels",
    "md5_hex",
    "parse_idx",
    "read_idx",
    "read_idx_bytes",
]

#: Magic number of a 3-D uint8 IDX file (images).
IDX_IMAGES_MAGIC = 0x00000803
#: Magic number of a 1-D uint8 IDX file (labels).
IDX_LABELS_MAGIC = 0x00000801

# IDX element type code -> (big-endian numpy dtype, readable name)
_IDX_TYPES: dict[int, tuple[str, str]] = {
    0x08: (">u1", "uint8"),
    0x09: (">i1", "int8"),
    0x0B: (">i2", "int16"),
    0x0C: (">i4", "int32"),
    0x0D: (">f4", "float32"),
    0x0E: (">f8", "float64"),
}

_GZIP_MAGIC = b"\x1f\x8b"
_HASH_CHUNK = 1 << 23  # 8 MiB


def md5_hex(data: bytes | bytearray | memoryview) -> str:
    """Hex MD5 of an in-memory buffer, fed to hashlib in chunks.

    Parameters
    ----------
    data : bytes-like
        The buffer to hash.

    Returns
    -------
    str
        The 32-character lowercase hex digest.
    """
    h = hashlib.md5(usedforsecurity=False)
    view = memoryview(data).cast("B")
    for start in range(0, len(view), _HASH_CHUNK):
        h.update(view[start : start + _HASH_CHUNK])
    return h.hexdigest()


def _describe_magic(magic: int) -> str:
    type_code, ndim = (magic >> 8) & 0xFF, magic & 0xFF
    tname = _IDX_TYPES.get(type_code, (None, f"unknown type 0x{type_code:02x}"))[1]
    return f"0x{magic:08x} ({tname}, {ndim}-D)"


def read_idx_bytes(path: str | os.PathLike[str]) -> tuple[bytes, bytes | None]:
    """Read an IDX file from disk, decompressing it if it is gzip-compressed.

    A file whose name ends in ``.gz`` must be gzip data; any other file is
    decompressed too when it starts with the gzip magic bytes.

    Parameters
    ----------
    path : str or os.PathLike
        The file.

    Returns
    -------
    content : bytes
        The (decompressed) IDX bytes.
    compressed : bytes or None
        The bytes as stored on disk when the file was gzip-compressed, else None.

    Raises
    ------
    DatasetError
        If the file is empty or is not valid gzip data although it should be.
    OSError
        If the file cannot be read.
    """
    path = Path(path)
    raw = path.read_bytes()
    if not raw:
        raise DatasetError(f"{path}: empty file (0 bytes)")
    if path.name.endswith(".gz") or raw[:2] == _GZIP_MAGIC:
        try:
            content = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise DatasetError(
                f"{path}: bad gzip data ({type(exc).__name__}: {exc}); the file is "
                "corrupt or truncated (or is not gzip-compressed although named .gz)"
            ) from exc
        if not content:
            raise DatasetError(f"{path}: empty file (gzip data decompresses to 0 bytes)")
        return content, raw
    return raw, None


def parse_idx(content: bytes, source: str = "<bytes>", *, expected_magic: int | None = None) -> np.ndarray:
    """Parse IDX bytes into a NumPy array (native byte order, writable).

    Parameters
    ----------
    content : bytes
        Uncompressed IDX data.
    source : str, optional
        Name used in error messages (usually the file path).
    expected_magic : int, optional
        If given, the magic number the data must have (for example
        :data:`IDX_IMAGES_MAGIC`).

    Returns
    -------
    numpy.ndarray
        Array of the shape given in the header.

    Raises
    ------
    DatasetError
        On an empty or truncated header, an unknown or unexpected magic number,
        or a data section whose size does not match the header.
    """
    n = len(content)
    if n == 0:
        raise DatasetError(f"{source}: empty file (0 bytes)")
    if n < 4:
        raise DatasetError(f"{source}: truncated: {n} bytes, shorter than the 4-byte IDX magic")
    (magic,) = struct.unpack(">I", content[:4])
    type_code, ndim = (magic >> 8) & 0xFF, magic & 0xFF
    if magic >> 16 != 0 or type_code not in _IDX_TYPES or ndim == 0:
        want = f"; expected {_describe_magic(expected_magic)}" if expected_magic else ""
        raise DatasetError(
            f"{source}: not an IDX file: bad magic number 0x{magic:08x}{want} "
            "(is it a different file format, or a compressed file without a .gz name?)"
        )
    if expected_magic is not None and magic != expected_magic:
        raise DatasetError(
            f"{source}: wrong IDX magic number {_describe_magic(magic)}, expected "
            f"{_describe_magic(expected_magic)} (images and labels files swapped?)"
        )
    header = 4 + 4 * ndim
    if n < header:
        raise DatasetError(f"{source}: truncated header: {ndim} dimensions need a {header}-byte header, file has {n} bytes")
    dims = struct.unpack(f">{ndim}I", content[4:header])
    big_dtype = np.dtype(_IDX_TYPES[type_code][0])
    count = 1
    for d in dims:
        count *= d
    need = count * big_dtype.itemsize
    have = n - header
    shape_txt = "x".join(str(d) for d in dims)
    size_txt = f"{shape_txt} = {count}" if ndim > 1 else str(count)
    if big_dtype.itemsize > 1:
        size_txt += f" x {big_dtype.itemsize}"
    if have < need:
        raise DatasetError(f"{source}: truncated: header says {size_txt} bytes, file has {have} (after the {header}-byte header)")
    if have > need:
        raise DatasetError(
            f"{source}: {have - need} unexpected trailing bytes: header says {size_txt} "
            f"bytes, file has {have} (after the {header}-byte header)"
        )
    arr = np.frombuffer(content, dtype=big_dtype, count=count, offset=header).reshape(dims)
    # frombuffer over bytes is read-only; return an owned, writable, native-order copy
    return arr.astype(big_dtype.newbyteorder("="), copy=True)


def read_idx(path: str | os.PathLike[str], *, expected_magic: int | None = None) -> np.ndarray:
    """Read an IDX file (raw or ``.gz``) into a NumPy array.

    Only the file structure is checked (magic number, header, size); no
    element counts or checksums.

    Parameters
    ----------
    path : str or os.PathLike
        The file.
    expected_magic : int, optional
        If given, the magic number the file must have, e.g.
        :data:`IDX_IMAGES_MAGIC` (``0x00000803``) or :data:`IDX_LABELS_MAGIC`
        (``0x00000801``).

    Returns
    -------
    numpy.ndarray
        The array, shaped as in the header, in native byte order.

    Raises
    ------
    DatasetError
        If the file is empty, not valid gzip, not IDX, or its size does not
        match its header.

    Examples
    --------
    >>> labels = read_idx("train-labels-idx1-ubyte.gz")  # doctest: +SKIP
    >>> labels.shape, labels.dtype  # doctest: +SKIP
    ((60000,), dtype('uint8'))
    """
    content, _ = read_idx_bytes(path)
    return parse_idx(content, str(path), expected_magic=expected_magic)


def check_images(images: np.ndarray, source: str, *, count: int | None = None, image_shape: tuple[int, ...]) -> None:
    """Check an images array has shape ``(count, *image_shape)``.

    Parameters
    ----------
    images : numpy.ndarray
        Parsed images.
    source : str
        Name used in error messages.
    count : int, optional
        Expected number of images.
    image_shape : tuple of int
        Expected shape of one image.

    Raises
    ------
    DatasetError
        If the shape differs.
    """
    if images.ndim != 1 + len(image_shape) or tuple(images.shape[1:]) != tuple(image_shape):
        want = "x".join(str(d) for d in ("N", *image_shape))
        got = "x".join(str(d) for d in images.shape)
        raise DatasetError(f"{source}: images have shape {got}, expected {want}")
    if count is not None and images.shape[0] != count:
        raise DatasetError(
            f"{source}: holds {images.shape[0]} images, expected {count} (a different or incomplete version of the file?)"
        )


def check_labels(labels: np.ndarray, source: str, *, count: int | None = None, num_classes: int = 10) -> None:
    """Check a labels array is 1-D, has ``count`` entries and values in ``0..num_classes-1``.

    Parameters
    ----------
    labels : numpy.ndarray
        Parsed labels.
    source : str
        Name used in error messages.
    count : int, optional
        Expected number of labels.
    num_classes : int, optional
        Labels must lie in ``0 .. num_classes - 1``.

    Raises
    ------
    DatasetError
        On a wrong shape or count, or a label out of range (the message gives
        the index of the first offending label).
    """
    if labels.ndim != 1:
        raise DatasetError(f"{source}: labels have shape {labels.shape}, expected 1-D")
    if count is not None and labels.shape[0] != count:
        raise DatasetError(
            f"{source}: holds {labels.shape[0]} labels, expected {count} (a different or incomplete version of the file?)"
        )
    if labels.size:
        bad = (labels < 0) | (labels >= num_classes)
        if bad.any():
            i = int(np.argmax(bad))
            raise DatasetError(
                f"{source}: label {labels[i]} at index {i} is outside 0..{num_classes - 1} ({int(bad.sum())} such labels)"
            )

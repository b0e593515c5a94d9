"""CIFAR-10 from its binary version (no pickle): local search as for MNIST, download, structure and checksum checks."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tarfile
import tempfile
from pathlib import Path

import numpy as np

from ._download import download_file
from ._errors import DatasetError
from .mnist import DATA_DIR_ENV, _candidate_dirs, default_cache_dir

__all__ = ["CIFAR10_CLASSES", "CIFAR10_MIRRORS", "load_cifar10"]

#: Base URLs tried in order when downloading CIFAR-10 (``<mirror>cifar-10-binary.tar.gz``).
CIFAR10_MIRRORS: list[str] = ["https://www.cs.toronto.edu/~kriz/"]
#: The class of each label, 0..9.
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

ARCHIVE = "cifar-10-binary.tar.gz"
#: The MD5 the dataset's authors publish for the archive (the only checksum they publish).
ARCHIVE_MD5 = "c32a1d4ab5d03f1284b67883e8d87530"
FOLDER = "cifar-10-batches-bin"  # the archive's folder, and where a download is extracted
TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
TEST_FILE = "test_batch.bin"
RECORD = 1 + 3 * 32 * 32  # a label byte, then 1024 red, 1024 green, 1024 blue bytes (row-major 32x32)
PER_FILE = 10000

Dataset = tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


class _Spec:
    title = "CIFAR-10"
    subdirs = (FOLDER, "cifar10", "cifar-10")


def _read(path: Path, source: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Images (10000, 3, 32, 32) and labels (10000,) of one batch file, checked for size and labels."""
    src = source or str(path)
    raw = path.read_bytes()
    if len(raw) != PER_FILE * RECORD:
        raise DatasetError(
            f"{src}: {len(raw)} bytes; a CIFAR-10 batch file holds {PER_FILE} records of {RECORD} bytes "
            f"({PER_FILE * RECORD} bytes): the file is truncated or not the binary version (cifar-10-binary.tar.gz)"
        )
    records = np.frombuffer(raw, dtype=np.uint8).reshape(PER_FILE, RECORD)
    labels = records[:, 0].copy()
    if int(labels.max()) > 9:
        bad = int(np.argmax(labels > 9))
        raise DatasetError(f"{src}: record {bad} has label {int(labels[bad])}; CIFAR-10 labels are 0..9: the file is damaged")
    return records[:, 1:].reshape(PER_FILE, 3, 32, 32).copy(), labels


def _find(candidates: list[tuple[Path, str]]) -> tuple[Path | None, list[str]]:
    notes = []
    for d, origin in candidates:
        if not d.is_dir():
            notes.append(f"{d} ({origin}): does not exist")
            continue
        missing = [name for name in (*TRAIN_FILES, TEST_FILE) if not (d / name).is_file()]
        if not missing:
            return d, notes
        notes.append(f"{d} ({origin}): missing {', '.join(missing)}")
    return None, notes


def _load_from(d: Path) -> Dataset:
    train = [_read(d / name) for name in TRAIN_FILES]
    x_test, y_test = _read(d / TEST_FILE)
    return (np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train])), (x_test, y_test)


def _md5_file(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _members(archive: tarfile.TarFile, src: str) -> dict[str, tarfile.TarInfo]:
    """The six batch files of the archive (regular files of the right size under its folder); a DatasetError otherwise."""
    wanted = {f"{FOLDER}/{name}": name for name in (*TRAIN_FILES, TEST_FILE)}
    found = {wanted[m.name]: m for m in archive.getmembers() if m.name in wanted and m.isreg()}
    missing = [name for name in wanted.values() if name not in found]
    if missing:
        raise DatasetError(f"{src}: the archive lacks {', '.join(f'{FOLDER}/{n}' for n in missing)}")
    wrong = [n for n, m in found.items() if m.size != PER_FILE * RECORD]
    if wrong:
        raise DatasetError(f"{src}: {', '.join(wrong)} in the archive are not {PER_FILE * RECORD} bytes")
    return found


def _verify_archive(tmp: Path, url: str) -> None:
    got = _md5_file(tmp)
    if got != ARCHIVE_MD5:
        raise DatasetError(f"checksum mismatch: MD5 {got}, expected {ARCHIVE_MD5} (the published {ARCHIVE})")
    try:
        with tarfile.open(tmp, "r:gz") as archive:
            _members(archive, url)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DatasetError(f"not a readable tar.gz archive ({exc})") from None


def _extract(archive_path: Path, dest: Path) -> None:
    """Write the six batch files into ``dest``, each through a temporary file renamed when whole (nothing else extracted)."""
    with tarfile.open(archive_path, "r:gz") as archive:
        for name, member in _members(archive, str(archive_path)).items():
            source = archive.extractfile(member)
            assert source is not None  # a regular file
            fd, tmp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=dest)
            try:
                with os.fdopen(fd, "wb") as out:
                    while chunk := source.read(1 << 20):
                        out.write(chunk)
                os.replace(tmp_name, dest / name)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp_name)


def _download(dest: Path, notes: list[str]) -> Dataset:
    created = [d for d in (dest, *dest.parents) if not d.exists()]
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatasetError(_not_found(notes, f"cannot create {dest}: {exc}")) from exc
    archive = dest / ARCHIVE
    try:
        urls = [(u if u.endswith("/") else u + "/") + ARCHIVE for u in CIFAR10_MIRRORS]
        try:
            download_file(urls, archive, _verify_archive)
        except DatasetError as exc:
            raise DatasetError(_not_found(notes, f"downloading into {dest} failed: {exc}")) from None
        _extract(archive, dest)
    except BaseException:
        for d in created:  # the folders made here, if they stayed empty
            try:
                d.rmdir()
            except OSError:
                break
        raise
    finally:
        with contextlib.suppress(FileNotFoundError):
            archive.unlink()  # the six files are kept; the archive is not needed again
    return _load_from(dest)


def _not_found(notes: list[str], why: str) -> str:
    looked = "\n".join(f"  {n}" for n in notes)
    files = ", ".join((*TRAIN_FILES, TEST_FILE))
    return (
        f"CIFAR-10 not found. Looked for {files} in:\n{looked}\nand {why}\n"
        f"To use a local copy, unpack {ARCHIVE} (the binary version) and pass data_dir='/path/to/dir' (the "
        f"'{FOLDER}' folder or its parent; on the command line: portnn train --dataset cifar10 --data-dir "
        f"/path/to/dir) or set the environment variable {DATA_DIR_ENV} to such a directory."
    )


def load_cifar10(data_dir: str | os.PathLike[str] | None = None, *, download: bool = True) -> Dataset:
    r"""Load CIFAR-10 as NumPy arrays, channels first, from its binary version (no pickle is read).

    Parameters
    ----------
    data_dir : str or os.PathLike, optional
        Directory to look in first. Also where the files are downloaded to (into its
        ``cifar-10-batches-bin/`` subfolder) when they are found nowhere.
    download : bool, optional
        Download the archive when no local copy is found (default True).

    Returns
    -------
    (x_train, y_train), (x_test, y_test) : tuple of tuple of numpy.ndarray
        ``x_train`` uint8 of shape (50000, 3, 32, 32) (channels first, as portnn's ``Conv2d``
        takes them), ``y_train`` uint8 of shape (50000,), ``x_test`` (10000, 3, 32, 32) and
        ``y_test`` (10000,); pixel values 0..255, labels 0..9 (:data:`CIFAR10_CLASSES`).

    Raises
    ------
    DatasetError
        When no copy is found and none can be downloaded (the message lists every directory
        looked in and every mirror's error), or when a file is truncated or holds a label
        outside 0..9 (the message names the file).

    Notes
    -----
    **Where it looks**, as :func:`~portnn.datasets.load_mnist` does: ``data_dir``, then
    ``$PORTNN_DATA_DIR``, then the user cache (:func:`~portnn.datasets.default_cache_dir`); in
    each, the subfolders ``cifar-10-batches-bin/``, ``cifar10/`` and ``cifar-10/`` first, then the
    folder itself. The first that holds ``data_batch_1.bin`` .. ``data_batch_5.bin`` and
    ``test_batch.bin`` is used (each 10000 records: a label byte, then the 3072 pixel bytes of
    the red, green and blue planes).

    **Download.** ``cifar-10-binary.tar.gz`` from the mirrors in
    ``portnn.datasets.cifar10.CIFAR10_MIRRORS`` (next mirror on failure), verified against the
    MD5 its authors publish before it is kept; only the six batch files are extracted (each
    written whole, then renamed), into ``data_dir/cifar-10-batches-bin/`` (or the cache's), and
    the archive is removed. **Integrity**: the authors publish no checksum per file, so a local
    copy is checked for structure (size, labels 0..9).

    Examples
    --------
    >>> (x_train, y_train), (x_test, y_test) = load_cifar10()  # doctest: +SKIP
    >>> x_train.shape, x_train.dtype, y_train.shape  # doctest: +SKIP
    ((50000, 3, 32, 32), dtype('uint8'), (50000,))
    """
    candidates = _candidate_dirs(_Spec, data_dir)  # type: ignore[arg-type]  # a spec of the same shape
    found, notes = _find(candidates)
    if found is not None:
        return _load_from(found)
    if not download:
        raise DatasetError(_not_found(notes, "download=False was given."))
    root = Path(data_dir).expanduser() if data_dir is not None else default_cache_dir()
    return _download(root / FOLDER, notes)

"""MNIST and Fashion-MNIST loaders (Keras-style), with local search, download and checksums."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._download import download_file
from ._errors import DatasetError
from ._idx import (
    IDX_IMAGES_MAGIC,
    IDX_LABELS_MAGIC,
    check_images,
    check_labels,
    md5_hex,
    parse_idx,
    read_idx_bytes,
)

__all__ = [
    "DATA_DIR_ENV",
    "FASHION_MNIST_MIRRORS",
    "MNIST_MIRRORS",
    "default_cache_dir",
    "load_fashion_mnist",
    "load_mnist",
]

#: Base URLs tried in order when downloading MNIST (``<mirror><file>.gz``).
MNIST_MIRRORS: list[str] = [
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
]
#: Base URLs tried in order when downloading Fashion-MNIST.
FASHION_MNIST_MIRRORS: list[str] = [
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
]
#: Environment variable naming a directory searched for datasets.
DATA_DIR_ENV = "PORTNN_DATA_DIR"

Dataset = tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class _Member:
    key: str  # train_images, train_labels, test_images, test_labels
    name: str  # file name without .gz
    count: int
    md5: str | None  # MD5 of the uncompressed file, when known
    gz_md5: str | None  # MD5 of the published .gz file

    @property
    def is_images(self) -> bool:
        return self.key.endswith("images")


@dataclass(frozen=True)
class _Spec:
    title: str
    subdirs: tuple[str, ...]  # first one is where downloads go
    mirrors_attr: str
    members: tuple[_Member, ...]  # labels first: cheap checks fail fast


_MNIST = _Spec(
    title="MNIST",
    subdirs=("mnist",),
    mirrors_attr="MNIST_MIRRORS",
    members=(
        _Member("train_labels", "train-labels-idx1-ubyte", 60000,
                "a25bea736e30d166cdddb491f175f624", "d53e105ee54ea40749a09fcbcd1e9432"),
        _Member("test_labels", "t10k-labels-idx1-ubyte", 10000,
                "27ae3e4e09519cfbb04c329615203637", "ec29112dd5afa0611ce80d1b7f02629c"),
        _Member("train_images", "train-images-idx3-ubyte", 60000,
                "6bbc9ace898e44ae57da46a324031adb", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
        _Member("test_images", "t10k-images-idx3-ubyte", 10000,
                "2646ac647ad5339dbf082846283269ea", "9fb629c4189551a2d022fa330f9573f3"),
    ),
)  # fmt: skip

_FASHION = _Spec(
    title="Fashion-MNIST",
    subdirs=("fashion-mnist", "fashion_mnist"),
    mirrors_attr="FASHION_MNIST_MIRRORS",
    members=(
        _Member("train_labels", "train-labels-idx1-ubyte", 60000,
                None, "25c81989df183df01b3e8a0aad5dffbe"),
        _Member("test_labels", "t10k-labels-idx1-ubyte", 10000,
                None, "bb300cfdad3c16e7a12a480ee83cd310"),
        _Member("train_images", "train-images-idx3-ubyte", 60000,
                None, "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
        _Member("test_images", "t10k-images-idx3-ubyte", 10000,
                None, "bef4ecab320f06d8554ea6380940ec79"),
    ),
)  # fmt: skip

_MNIST_MD5S = {m.md5 for m in _MNIST.members}
_FASHION_GZ_MD5S = {m.gz_md5 for m in _FASHION.members}


def default_cache_dir() -> Path:
    """The per-user cache directory of portnn (it need not exist yet).

    Returns
    -------
    pathlib.Path
        ``%LOCALAPPDATA%\\portnn`` on Windows; elsewhere ``$XDG_CACHE_HOME/portnn``
        when ``XDG_CACHE_HOME`` is set to an absolute path, else ``~/.cache/portnn``.
    """
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA")
        root = Path(base) if base else Path.home() / "AppData" / "Local"
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        root = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return root / "portnn"


def _candidate_dirs(spec: _Spec, data_dir: str | os.PathLike[str] | None) -> list[tuple[Path, str]]:
    """Directories to search, in order, each with where it came from."""
    bases: list[tuple[Path, str]] = []
    if data_dir is not None:
        bases.append((Path(data_dir).expanduser(), "data_dir"))
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        bases.append((Path(env).expanduser(), f"${DATA_DIR_ENV}"))
    bases.append((default_cache_dir(), "user cache"))
    out: list[tuple[Path, str]] = []
    seen: set[str] = set()
    for base, origin in bases:
        # the dataset's own subfolder first: it cannot hold the other dataset by mistake
        for d in [*(base / s for s in spec.subdirs), base]:
            key = os.path.normcase(os.path.abspath(d))
            if key not in seen:
                seen.add(key)
                out.append((d, origin))
    return out


def _member_path(directory: Path, member: _Member) -> Path | None:
    """The file for ``member`` in ``directory`` (raw preferred: faster to load), or None."""
    for name in (member.name, member.name + ".gz"):
        p = directory / name
        if p.is_file():
            return p
    return None


def _display_order(spec: _Spec) -> list[_Member]:
    """Members in the usual order: train images, train labels, test images, test labels."""
    return sorted(spec.members, key=lambda m: (m.key.startswith("test"), not m.is_images))


def _find(spec: _Spec, candidates: list[tuple[Path, str]]) -> tuple[dict[str, Path] | None, list[str]]:
    """First candidate directory holding all files; plus a note per directory looked in."""
    notes: list[str] = []
    for d, origin in candidates:
        if not d.is_dir():
            notes.append(f"{d} ({origin}): does not exist")
            continue
        paths = {m.key: _member_path(d, m) for m in spec.members}
        missing = [m.name for m in _display_order(spec) if paths[m.key] is None]
        if not missing:
            return {k: p for k, p in paths.items() if p is not None}, notes
        have = len(spec.members) - len(missing)
        if have:
            notes.append(f"{d} ({origin}): has {have} of the {len(spec.members)} files, missing {', '.join(missing)}")
        else:
            notes.append(f"{d} ({origin}): none of the files")
    return None, notes


def _load_member(
    path: Path,
    member: _Member,
    spec: _Spec,
    *,
    source: str | None = None,
    downloaded: bool = False,
) -> np.ndarray:
    """Read, parse, validate and checksum one file of the dataset."""
    src = source or str(path)
    content, compressed = read_idx_bytes(path)
    if member.is_images:
        arr = parse_idx(content, src, expected_magic=IDX_IMAGES_MAGIC)
        check_images(arr, src, count=member.count, image_shape=(28, 28))
    else:
        arr = parse_idx(content, src, expected_magic=IDX_LABELS_MAGIC)
        check_labels(arr, src, count=member.count, num_classes=10)

    fix = (
        "the mirror served a bad file"
        if downloaded
        else f"delete it (it is downloaded again when download=True) or point data_dir (or ${DATA_DIR_ENV}) at a good copy"
    )
    if member.md5 is not None:
        # Hash the uncompressed bytes already in memory.  A .gz with the published
        # mirror MD5 always decompresses to these bytes, so one hash covers both forms.
        got = md5_hex(content)
        if got != member.md5:
            hint = ""
            if compressed is not None and md5_hex(compressed) in _FASHION_GZ_MD5S:
                hint = " It is the Fashion-MNIST file of that name: use load_fashion_mnist."
            raise DatasetError(
                f"{src}: {spec.title} checksum mismatch: MD5 of the uncompressed content is "
                f"{got}, expected {member.md5} (the published {member.name}; the published "
                f"{member.name}.gz has MD5 {member.gz_md5}).{hint} The file is corrupt or "
                f"not the published one: {fix}."
            )
        return arr
    # Fashion-MNIST: the published .gz MD5 is known; otherwise check structure only,
    # but never accept MNIST content (same file names).
    if compressed is not None and member.gz_md5 and md5_hex(compressed) == member.gz_md5:
        return arr
    if md5_hex(content) in _MNIST_MD5S:
        raise DatasetError(
            f"{src}: this is the MNIST file {member.name}, not {spec.title} (both datasets use "
            f"the same file names). Put {spec.title} in a '{spec.subdirs[0]}/' subfolder, or "
            f"move MNIST into a 'mnist/' subfolder, or pass a data_dir that holds {spec.title}."
        )
    return arr


def _download(spec: _Spec, dest: Path, notes: list[str], mirrors: Sequence[str]) -> dict[str, np.ndarray]:
    """Download (or reuse what is already in ``dest``) and load every file."""
    arrays: dict[str, np.ndarray] = {}
    created = [d for d in (dest, *dest.parents) if not d.exists()]  # innermost first
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatasetError(_not_found_message(spec, notes, f"cannot create {dest}: {exc}")) from exc
    try:
        _download_members(spec, dest, notes, mirrors, arrays)
    except BaseException:
        for d in created:  # remove the folders made here if they stayed empty
            try:
                d.rmdir()
            except OSError:
                break
        raise
    return arrays


def _download_members(spec: _Spec, dest: Path, notes: list[str], mirrors: Sequence[str], arrays: dict[str, np.ndarray]) -> None:
    for m in spec.members:
        existing = _member_path(dest, m)
        if existing is not None:  # left by an earlier, interrupted download
            arrays[m.key] = _load_member(existing, m, spec)
            continue
        urls = [u if u.endswith("/") else u + "/" for u in mirrors]
        urls = [u + m.name + ".gz" for u in urls]

        def verify(tmp: Path, url: str, m: _Member = m) -> np.ndarray:
            return _load_member(tmp, m, spec, source=url, downloaded=True)

        try:
            arrays[m.key] = download_file(urls, dest / (m.name + ".gz"), verify)
        except DatasetError as exc:
            raise DatasetError(_not_found_message(spec, notes, f"downloading into {dest} failed: {exc}")) from None


def _not_found_message(spec: _Spec, notes: list[str], why: str) -> str:
    files = ", ".join(f"{m.name}[.gz]" for m in _display_order(spec))
    looked = "\n".join(f"  {n}" for n in notes)
    sub = spec.subdirs[0]
    return (
        f"{spec.title} not found. Looked for {files} in:\n{looked}\n"
        f"and {why}\n"
        f"To use a local copy, pass data_dir='/path/to/dir' (the directory holding the four "
        f"files, or its parent with a '{sub}/' subfolder; on the command line: portnn train "
        f"--data-dir /path/to/dir) or set the environment variable {DATA_DIR_ENV} to such a directory."
    )


def _load(spec: _Spec, data_dir: str | os.PathLike[str] | None, download: bool) -> Dataset:
    candidates = _candidate_dirs(spec, data_dir)
    found, notes = _find(spec, candidates)
    if found is not None:
        arrays = {m.key: _load_member(found[m.key], m, spec) for m in spec.members}
    elif not download:
        raise DatasetError(_not_found_message(spec, notes, "download=False was given."))
    else:
        root = Path(data_dir).expanduser() if data_dir is not None else default_cache_dir()
        arrays = _download(spec, root / spec.subdirs[0], notes, list(globals()[spec.mirrors_attr]))
    return (
        (arrays["train_images"], arrays["train_labels"]),
        (arrays["test_images"], arrays["test_labels"]),
    )


def load_mnist(data_dir: str | os.PathLike[str] | None = None, *, download: bool = True) -> Dataset:
    r"""Load MNIST as NumPy arrays, Keras-style.

    Parameters
    ----------
    data_dir : str or os.PathLike, optional
        Directory to look in first.  Also where the files are downloaded to
        (into its ``mnist/`` subfolder) when they are found nowhere.
    download : bool, optional
        Download the files when no local copy is found (default True).

    Returns
    -------
    (x_train, y_train), (x_test, y_test) : tuple of tuple of numpy.ndarray
        ``x_train`` uint8 of shape (60000, 28, 28), ``y_train`` uint8 of shape
        (60000,), ``x_test`` (10000, 28, 28) and ``y_test`` (10000,); pixel
        values 0..255, labels 0..9.  The arrays are writable and own their data.

    Raises
    ------
    DatasetError
        When no copy is found and none can be downloaded (the message lists
        every directory looked in and every mirror error), or when a file is
        malformed or fails its checksum (the message names the file).

    Notes
    -----
    **Where it looks.** The four standard IDX files
    ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
    ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``, each raw or
    ``.gz``, are looked for in these base directories, in order: ``data_dir``,
    the environment variable ``PORTNN_DATA_DIR``, then the user cache
    (:func:`default_cache_dir`: ``$XDG_CACHE_HOME/portnn`` or
    ``~/.cache/portnn``; ``%LOCALAPPDATA%\portnn`` on Windows).  In each base
    the ``mnist/`` subfolder is tried first, then the base itself.  The first
    directory holding all four files is used (raw preferred over ``.gz``).

    **Download.** If none does and ``download`` is true, the ``.gz`` files are
    downloaded from the mirrors in ``portnn.datasets.mnist.MNIST_MIRRORS``
    (next mirror on failure) into ``data_dir/mnist/`` when ``data_dir`` is
    given -- like Keras and torchvision, which download into the root you
    name -- else into the cache's ``mnist/`` subfolder; later calls find them
    there.  Each download goes to a temporary file that is verified before
    it is renamed, so a corrupt download never lands under the final name.

    **Integrity.** Every file is checked for structure (IDX magic and header,
    60000/10000 images of 28x28, labels 0..9) and against the published MD5
    of its uncompressed content (a ``.gz`` with the published mirror MD5 always
    passes, as it decompresses to that content).

    Examples
    --------
    >>> (x_train, y_train), (x_test, y_test) = load_mnist()  # doctest: +SKIP
    >>> x_train.shape, x_train.dtype, y_train.shape  # doctest: +SKIP
    ((60000, 28, 28), dtype('uint8'), (60000,))
    """
    return _load(_MNIST, data_dir, download)


def load_fashion_mnist(data_dir: str | os.PathLike[str] | None = None, *, download: bool = True) -> Dataset:
    r"""Load Fashion-MNIST as NumPy arrays, Keras-style.

    Parameters
    ----------
    data_dir : str or os.PathLike, optional
        Directory to look in first.  Also where the files are downloaded to
        (into its ``fashion-mnist/`` subfolder) when they are found nowhere.
    download : bool, optional
        Download the files when no local copy is found (default True).

    Returns
    -------
    (x_train, y_train), (x_test, y_test) : tuple of tuple of numpy.ndarray
        ``x_train`` uint8 of shape (60000, 28, 28), ``y_train`` uint8 of shape
        (60000,), ``x_test`` (10000, 28, 28) and ``y_test`` (10000,); pixel
        values 0..255, labels 0..9.  The arrays are writable and own their data.

    Raises
    ------
    DatasetError
        When no copy is found and none can be downloaded (the message lists
        every directory looked in and every mirror error), when a file is
        malformed, or when the files found are MNIST rather than Fashion-MNIST.

    Notes
    -----
    The search and download rules are those of :func:`load_mnist`, with the
    subfolders ``fashion-mnist/`` or ``fashion_mnist/`` (tried before the base
    directory itself), downloads into ``fashion-mnist/`` and the mirrors in
    ``portnn.datasets.mnist.FASHION_MNIST_MIRRORS``.

    **Integrity.** Every file is checked for structure (IDX magic and header,
    60000/10000 images of 28x28, labels 0..9).  A ``.gz`` with the published
    MD5 is accepted; only those MD5s are published, so other copies (raw, or
    re-compressed) are checked for structure only -- except that MNIST files,
    which have the same names, are refused with a clear error: a directory of
    MNIST is never loaded as Fashion-MNIST.
    """
    return _load(_FASHION, data_dir, download)

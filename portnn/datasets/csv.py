"""Load image datasets stored as CSV (e.g. the Kaggle digit-recognizer layout)."""

from __future__ import annotations

import gzip
import math
import os
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, overload

import numpy as np
import numpy.typing as npt

from ._errors import DatasetError

__all__ = ["load_csv"]


def _open_text(path: Path) -> IO[str]:
    if path.name.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def _data_lines(path: Path, skip: int) -> Iterator[tuple[int, str]]:
    """(1-based line number, text) of each non-blank line after the first ``skip`` lines."""
    with _open_text(path) as f:
        for lineno, line in enumerate(f, start=1):
            if lineno <= skip:
                continue
            text = line.rstrip("\r\n")
            if text.strip():
                yield lineno, text


def _line_of_row(path: Path, skip: int, row: int) -> int:
    """File line number of data row ``row`` (0-based), as np.loadtxt counts rows."""
    for i, (lineno, _) in enumerate(_data_lines(path, skip)):
        if i == row:
            return lineno
    return -1


def _diagnose(path: Path, skip: int, has_header: bool) -> str | None:
    """Find the first ragged or non-numeric row (slow; only run after a parse failure)."""
    width: int | None = None
    first = 0
    for lineno, text in _data_lines(path, skip):
        cells = text.split(",")
        if width is None:
            width, first = len(cells), lineno
        elif len(cells) != width:
            return f"line {lineno} has {len(cells)} values, but line {first} has {width} (ragged rows)"
        for col, cell in enumerate(cells, start=1):
            try:
                float(cell)
            except ValueError:
                hint = ""
                if lineno == 1 and not has_header:
                    hint = " (if line 1 is a header, pass has_header=True)"
                return f"line {lineno}, column {col}: non-numeric value {cell.strip()!r}{hint}"
    return None


def _num(v: float) -> str:
    """A number as the file most likely wrote it: ``3`` rather than ``np.float64(3.0)``."""
    v = float(v)
    return str(int(v)) if v.is_integer() else repr(v)


def _first_bad_row(bad: np.ndarray) -> int:
    rows = bad.any(axis=1) if bad.ndim == 2 else bad
    return int(np.argmax(rows))


@overload
def load_csv(
    path: str | os.PathLike[str],
    *,
    label_column: None,
    has_header: bool = ...,
    image_shape: Sequence[int] | None = ...,
    dtype: npt.DTypeLike = ...,
) -> np.ndarray: ...


@overload
def load_csv(
    path: str | os.PathLike[str],
    *,
    label_column: int = ...,
    has_header: bool = ...,
    image_shape: Sequence[int] | None = ...,
    dtype: npt.DTypeLike = ...,
) -> tuple[np.ndarray, np.ndarray]: ...


def load_csv(
    path: str | os.PathLike[str],
    *,
    label_column: int | None = 0,
    has_header: bool = True,
    image_shape: Sequence[int] | None = (28, 28),
    dtype: npt.DTypeLike = "uint8",
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Load images (and labels) from a comma-separated file, one image per row.

    The default arguments fit the Kaggle digit-recognizer files: ``train.csv``
    (header ``label,pixel0,...,pixel783``) and, with ``label_column=None``,
    ``test.csv`` (no label column).

    Parameters
    ----------
    path : str or os.PathLike
        The CSV file (``.csv.gz`` works too).
    label_column : int or None, optional
        Index of the column holding the labels (negative counts from the end);
        None when the file has no labels.  Default 0.
    has_header : bool, optional
        Whether the first line holds column names (it is skipped).  Default True.
    image_shape : sequence of int or None, optional
        Shape of one image; each row must then hold exactly ``prod(image_shape)``
        pixel values.  None returns the rows flat, shape ``(N, n_features)``.
        Default ``(28, 28)``.
    dtype : data-type, optional
        dtype of the returned images (default uint8).  For an integer dtype,
        every value must be a whole number within its range.

    Returns
    -------
    x : numpy.ndarray
        Images of shape ``(N, *image_shape)`` (or ``(N, n_features)`` when
        ``image_shape`` is None).
    y : numpy.ndarray
        Labels of shape ``(N,)``: uint8 when they all fit, else int64.  Only
        returned when ``label_column`` is not None; otherwise just ``x`` is.

    Raises
    ------
    DatasetError
        If the file has no data rows, ragged rows, non-numeric cells, a pixel
        count that does not fit ``image_shape``, or negative, fractional or
        out-of-range values; the message names the file and, where it applies,
        the line.
    FileNotFoundError
        If ``path`` does not exist.

    Examples
    --------
    >>> x, y = load_csv("train.csv")  # doctest: +SKIP
    >>> x.shape, y.shape  # doctest: +SKIP
    ((42000, 28, 28), (42000,))
    >>> x_test = load_csv("test.csv", label_column=None)  # doctest: +SKIP
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    out_dtype = np.dtype(dtype)
    skip = 1 if has_header else 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "input contained no data"
        try:
            data = np.loadtxt(path, delimiter=",", skiprows=skip, dtype=np.float64, ndmin=2, comments=None)
        except ValueError as exc:
            where = _diagnose(path, skip, has_header) or str(exc)
            raise DatasetError(f"{path}: {where}") from exc
    if data.size == 0:
        raise DatasetError(f"{path}: no data rows" + (" after the header line" if has_header else ""))
    n_rows, n_cols = data.shape

    if has_header:
        with _open_text(path) as f:
            header = f.readline().rstrip("\r\n")
        if len(header.split(",")) != n_cols:
            raise DatasetError(f"{path}: the header (line 1) has {len(header.split(','))} names, but rows have {n_cols} values")

    def fail(row: int, what: str) -> DatasetError:
        return DatasetError(f"{path}: line {_line_of_row(path, skip, row)}: {what}")

    y: np.ndarray | None = None
    if label_column is not None:
        if not -n_cols <= label_column < n_cols:
            raise DatasetError(f"{path}: label_column={label_column} is out of range for rows of {n_cols} values")
        col = label_column % n_cols
        labels = data[:, col]
        x = data[:, 1:] if col == 0 else np.delete(data, col, axis=1)
        bad = ~np.isfinite(labels) | (labels != np.floor(labels))
        if bad.any():
            i = _first_bad_row(bad)
            raise fail(i, f"label {_num(labels[i])} (column {col + 1}) is not a whole number")
        if (labels < 0).any():
            i = _first_bad_row(labels < 0)
            raise fail(i, f"negative label {int(labels[i])} (column {col + 1})")
        y = labels.astype(np.uint8 if labels.max() <= np.iinfo(np.uint8).max else np.int64)
    else:
        x = data

    n_features = x.shape[1]
    if image_shape is not None:
        shape = tuple(int(d) for d in image_shape)
        if math.prod(shape) != n_features:
            label_txt = " plus the label" if label_column is not None else ""
            raise DatasetError(
                f"{path}: rows have {n_features} pixel values{label_txt}, but image_shape={shape} needs "
                f"{math.prod(shape)} (pass image_shape=None for flat rows, or the right label_column/has_header)"
            )
    else:
        shape = (n_features,)

    if np.issubdtype(out_dtype, np.integer):
        info = np.iinfo(out_dtype)
        bad = ~np.isfinite(x) | (x != np.floor(x)) | (x < info.min) | (x > info.max)
        if bad.any():
            i = _first_bad_row(bad)
            j = int(np.argmax(bad[i]))
            raise fail(i, f"value {_num(x[i, j])} (pixel {j}) is not a whole number in {info.min}..{info.max} ({out_dtype})")
    x = x.astype(out_dtype).reshape((n_rows, *shape))
    return x if y is None else (x, y)

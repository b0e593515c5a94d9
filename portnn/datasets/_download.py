"""Download a file from a list of mirrors, atomically, with an optional progress bar."""

from __future__ import annotations

import contextlib
import http.client
import os
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from ._errors import DatasetError

__all__ = ["DOWNLOAD_TIMEOUT", "download_file"]

#: Socket timeout in seconds for each network operation of a download.
DOWNLOAD_TIMEOUT: float = 30.0

_CHUNK = 1 << 16
_USER_AGENT = "portnn-datasets (Python urllib)"

T = TypeVar("T")


def _progress_bar(total: int | None, desc: str) -> Any:
    """A tqdm bar when stderr is a terminal and tqdm is installed, else None."""
    try:
        if not sys.stderr.isatty():
            return None
    except (AttributeError, ValueError):  # replaced or closed stderr
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024, leave=False)


def _fetch(url: str, fileobj: Any, *, timeout: float, desc: str) -> int:
    """Stream ``url`` into ``fileobj``; return the number of bytes written."""
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        bar = _progress_bar(total, desc)
        written = 0
        try:
            while True:
                chunk = response.read(_CHUNK)
                if not chunk:
                    break
                fileobj.write(chunk)
                written += len(chunk)
                if bar is not None:
                    bar.update(len(chunk))
        finally:
            if bar is not None:
                bar.close()
    if total is not None and written != total:
        raise OSError(f"incomplete download: got {written} of {total} bytes")
    if written == 0:
        raise OSError("the server sent an empty file")
    return written


def download_file(
    urls: Sequence[str],
    dest: str | os.PathLike[str],
    verify: Callable[[Path, str], T],
    *,
    timeout: float | None = None,
) -> T:
    """Download ``dest`` from the first of ``urls`` that yields a file passing ``verify``.

    Each attempt streams into a temporary file in ``dest``'s directory; the
    temporary file is passed to ``verify`` and only moved to ``dest`` (with
    :func:`os.replace`) when ``verify`` returns.  A failed or corrupt download
    therefore never appears under the final name, and no temporary file is
    left behind.  A progress bar (tqdm) is shown when stderr is a terminal.

    Parameters
    ----------
    urls : sequence of str
        Full URLs of the file, tried in order.
    dest : str or os.PathLike
        Final path; its directory must exist.
    verify : callable
        ``verify(tmp_path, url)`` checks the downloaded file and returns a value
        (e.g. the parsed data), or raises :class:`DatasetError` to reject it.
    timeout : float, optional
        Socket timeout in seconds (default :data:`DOWNLOAD_TIMEOUT`).

    Returns
    -------
    object
        What ``verify`` returned for the accepted download.

    Raises
    ------
    DatasetError
        When no URL gave a file that passed ``verify``; the message lists each
        URL with its error.
    """
    dest = Path(dest)
    timeout = DOWNLOAD_TIMEOUT if timeout is None else timeout
    errors: list[str] = []
    for url in urls:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
        tmp = Path(tmp_name)
        try:
            try:
                with os.fdopen(fd, "wb") as f:
                    _fetch(url, f, timeout=timeout, desc=dest.name)
            except (OSError, http.client.HTTPException, ValueError) as exc:
                errors.append(f"{url}: {_describe(exc)}")
                continue
            try:
                result = verify(tmp, url)
            except DatasetError as exc:
                errors.append(f"{url}: downloaded but rejected: {exc}")
                continue
            os.replace(tmp, dest)
            return result
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
    if not urls:
        errors.append("no mirror URLs configured")
    raise DatasetError(f"could not download {dest.name}:\n" + "\n".join(f"  {e}" for e in errors))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return f"{type(exc.reason).__name__}: {exc.reason}"
    return f"{type(exc).__name__}: {exc}"

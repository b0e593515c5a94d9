"""A progress bar that is tqdm when it is installed and wanted, and nothing otherwise."""

from __future__ import annotations

import sys
from typing import Any


class _Silent:
    def update(self, n: int = 1) -> None:
        pass

    def set_postfix_str(self, s: str) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(total: int, desc: str, enabled: bool, initial: int = 0) -> Any:
    """A tqdm bar on stderr (when ``enabled``, tqdm is importable and stderr is a terminal), else a no-op."""
    if not enabled or not sys.stderr.isatty():
        return _Silent()
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return _Silent()
    return tqdm(total=total, desc=desc, unit="batch", leave=False, dynamic_ncols=True, initial=initial)


def resolve_verbose(verbose: int | str) -> int:
    """Keras's convention: 0 silent, 1 bar and a line per epoch, 2 a line per epoch; "auto": 1 on a terminal, else 2."""
    if verbose == "auto":
        return 1 if sys.stderr.isatty() else 2
    if verbose not in (0, 1, 2):
        raise ValueError(f"verbose must be 0, 1, 2 or 'auto'; got {verbose!r}")
    return int(verbose)

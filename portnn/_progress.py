"""A progress bar that is tqdm when it is installed and wanted, and nothing otherwise.

Where a bar can be seen: on a terminal (stderr is a tty), and in a Jupyter kernel, whose
stderr is no terminal but where ``tqdm.auto`` draws a widget (or a text bar the notebook
shows, when ipywidgets is missing). Anywhere else (a log file, a pipe, CI) a bar would only
write carriage-return noise, so ``verbose="auto"`` prints one line per epoch instead.
"""

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


def in_notebook() -> bool:
    """Whether this process is a Jupyter kernel (an IPython ``ZMQInteractiveShell``, Colab's included).

    IPython is never imported here: a kernel has imported it already, so a process without
    ``IPython`` in ``sys.modules`` is no kernel.
    """
    ipython = sys.modules.get("IPython")
    get_ipython = getattr(ipython, "get_ipython", None)
    if not callable(get_ipython):
        return False
    try:
        shell = get_ipython()
    except Exception:  # an IPython half torn down at exit
        return False
    return shell is not None and any(cls.__name__ == "ZMQInteractiveShell" for cls in type(shell).__mro__)


def _visible() -> bool:
    """Whether a progress bar would be seen: stderr is a terminal, or this is a Jupyter kernel."""
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(callable(isatty) and isatty()) or in_notebook()


def progress_bar(total: int, desc: str, enabled: bool, initial: int = 0) -> Any:
    """A ``tqdm.auto`` bar (a widget in Jupyter) when ``enabled``, tqdm is importable and a bar can be seen; else a no-op."""
    if not enabled or not _visible():
        return _Silent()
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return _Silent()
    return tqdm(total=total, desc=desc, unit="batch", leave=False, dynamic_ncols=True, initial=initial)


def resolve_verbose(verbose: int | str) -> int:
    """Keras's convention: 0 silent, 1 bar and a line per epoch, 2 a line per epoch.

    ``"auto"``: 1 on a terminal and in a Jupyter kernel (where a bar can be seen), else 2.
    """
    if verbose == "auto":
        return 1 if _visible() else 2
    if verbose not in (0, 1, 2):
        raise ValueError(f"verbose must be 0, 1, 2 or 'auto'; got {verbose!r}")
    return int(verbose)

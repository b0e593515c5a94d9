"""verbose="auto" and the progress bar: a bar on a terminal and in a Jupyter kernel, one line per epoch elsewhere.

No real Jupyter: a fake ``IPython`` module whose ``get_ipython()`` returns a shell object of
the kernel's class name is put in ``sys.modules``, as a kernel would have it.
"""

from __future__ import annotations

import io
import sys
import types
from typing import Any

import pytest

from portnn import _progress
from portnn._progress import in_notebook, progress_bar, resolve_verbose


class ZMQInteractiveShell:
    """Named as ipykernel's shell, the one a Jupyter kernel runs."""


class ColabShell(ZMQInteractiveShell):
    """Colab's shell subclasses the kernel's."""


class TerminalInteractiveShell:
    """Plain ``ipython`` in a terminal: no kernel, no widgets."""


class Stderr(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def fake_ipython(monkeypatch: pytest.MonkeyPatch, shell: Any) -> None:
    module = types.ModuleType("IPython")
    module.get_ipython = lambda: shell  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "IPython", module)


@pytest.fixture
def no_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """stderr is a pipe, and no IPython has been imported."""
    monkeypatch.setattr(sys, "stderr", Stderr(tty=False))
    monkeypatch.delitem(sys.modules, "IPython", raising=False)


def test_auto_is_one_line_per_epoch_off_a_terminal(no_terminal: None) -> None:
    assert not in_notebook()
    assert resolve_verbose("auto") == 2
    assert isinstance(progress_bar(10, "Epoch 1/1", True), _progress._Silent)


def test_auto_is_a_bar_on_a_terminal(monkeypatch: pytest.MonkeyPatch, no_terminal: None) -> None:
    monkeypatch.setattr(sys, "stderr", Stderr(tty=True))
    assert resolve_verbose("auto") == 1


@pytest.mark.parametrize("shell", [ZMQInteractiveShell, ColabShell])
def test_auto_is_a_bar_in_a_jupyter_kernel(monkeypatch: pytest.MonkeyPatch, no_terminal: None, shell: type) -> None:
    fake_ipython(monkeypatch, shell())
    assert in_notebook()
    assert resolve_verbose("auto") == 1  # stderr is no terminal in a kernel, and still the bar shows


@pytest.mark.parametrize("shell", [TerminalInteractiveShell(), None])
def test_ipython_without_a_kernel_is_not_a_notebook(monkeypatch: pytest.MonkeyPatch, no_terminal: None, shell: Any) -> None:
    fake_ipython(monkeypatch, shell)  # terminal IPython, or IPython imported by a plain script (get_ipython() is None)
    assert not in_notebook()
    assert resolve_verbose("auto") == 2


def test_a_broken_ipython_is_not_a_notebook(monkeypatch: pytest.MonkeyPatch, no_terminal: None) -> None:
    module = types.ModuleType("IPython")  # no get_ipython at all
    monkeypatch.setitem(sys.modules, "IPython", module)
    assert not in_notebook()

    def shut_down() -> Any:
        raise AttributeError("the shell is gone")

    module.get_ipython = shut_down  # type: ignore[attr-defined]
    assert not in_notebook()


def test_the_bar_is_tqdm_auto_in_a_kernel(monkeypatch: pytest.MonkeyPatch, no_terminal: None) -> None:
    """The bar comes from tqdm.auto (a widget in Jupyter): a stand-in module records how it was made."""
    made: list[dict[str, Any]] = []

    class Bar:
        def __init__(self, **kwargs: Any) -> None:
            made.append(kwargs)

    package, auto = types.ModuleType("tqdm"), types.ModuleType("tqdm.auto")
    auto.tqdm = Bar  # type: ignore[attr-defined]
    package.auto = auto  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tqdm", package)
    monkeypatch.setitem(sys.modules, "tqdm.auto", auto)
    assert isinstance(progress_bar(10, "Epoch 1/2", True), _progress._Silent)  # not a kernel, not a terminal: no bar
    fake_ipython(monkeypatch, ZMQInteractiveShell())
    assert isinstance(progress_bar(10, "Epoch 1/2", False), _progress._Silent)  # verbose 2: no bar anywhere
    bar = progress_bar(10, "Epoch 1/2", True, initial=3)
    assert isinstance(bar, Bar)
    assert made == [{"total": 10, "desc": "Epoch 1/2", "unit": "batch", "leave": False, "dynamic_ncols": True, "initial": 3}]


def test_without_tqdm_there_is_no_bar(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stderr", Stderr(tty=True))
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)  # import fails
    assert isinstance(progress_bar(10, "Epoch 1/1", True), _progress._Silent)


def test_the_real_tqdm_in_a_kernel(monkeypatch: pytest.MonkeyPatch, no_terminal: None) -> None:
    tqdm = pytest.importorskip("tqdm.auto", reason="tqdm is not installed: the stand-in test above covers the call")
    fake_ipython(monkeypatch, ZMQInteractiveShell())
    bar = progress_bar(4, "Epoch 1/1", True)
    try:
        assert isinstance(bar, tqdm.tqdm)
        bar.update(1)
    finally:
        bar.close()


@pytest.mark.parametrize("verbose", [3, -1, "yes", None])
def test_bad_verbose(verbose: Any) -> None:
    with pytest.raises(ValueError, match=r"verbose must be 0, 1, 2 or 'auto'"):
        resolve_verbose(verbose)

"""One fixture over every installed backend, and assertions that check what they compare.

``PORTNN_BACKENDS=numpy,torch pytest`` runs the backend-parametrised tests on a subset. An
entry may name a device after a colon, as ``PORTNN_BACKEND`` does: ``PORTNN_BACKENDS=cupy,torch:cuda``
runs them on CuPy and on torch CUDA tensors (``torch:cuda:1``, ``cupy:cuda:1`` for another GPU).
A backend without a device keeps its default from ``ALL_BACKENDS``; a device that is not
there (no GPU) makes its tests skip with the reason, never fail.

array_api_strict runs with the model on its fake ``device1``: it raises when arrays of two
devices meet, so a pass there proves no op silently falls back to the default device.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import portnn as pn
from portnn import backends

ALL_BACKENDS = {"numpy": None, "array_api_strict": "device1", "torch": "cpu", "cupy": None}
ROOT = Path(__file__).resolve().parents[1]
SHARED_MNIST = ROOT.parent / "shared" / "datasets" / "mnist"

#: Tolerances keyed by dtype, for float32 results compared with a float64 reference.
TOLERANCES = {"float32": {"rtol": 2e-4, "atol": 2e-5}, "float64": {"rtol": 1e-10, "atol": 1e-12}}


@dataclass
class Case:
    """A backend under test: its name, device and namespace."""

    name: str
    device: Any
    backend: pn.Backend

    @property
    def xp(self) -> Any:
        return self.backend.xp

    def asarray(self, a: Any, dtype: str | None = None) -> Any:
        """A NumPy array moved onto this backend's device (cast to ``dtype`` on the host first)."""
        a = np.asarray(a)
        if dtype is not None:
            a = a.astype(dtype)
        return self.backend.adapter.from_numpy(a.copy(), self.backend.device)

    def assert_close(self, actual: Any, expected: Any, *, dtype: str, err_msg: str = "") -> None:
        """Check namespace, device, dtype and shape of ``actual`` before comparing its values to ``expected``."""
        assert self.backend.adapter.owns(actual), f"expected a {self.name} array, got {type(actual)} {err_msg}"
        from array_api_compat import device

        assert device(actual) == self.backend.device, f"result on {device(actual)}, expected {self.backend.device} {err_msg}"
        assert pn._array.dtype_name(actual.dtype) == dtype, f"dtype {actual.dtype}, expected {dtype} {err_msg}"
        host = backends.to_numpy(actual)
        expected = np.asarray(expected)
        assert host.shape == expected.shape, f"shape {host.shape}, expected {expected.shape} {err_msg}"
        np.testing.assert_allclose(host, expected, err_msg=err_msg, **TOLERANCES[dtype])

    def supports(self, dtype: str) -> bool:
        return dtype != "float64" or self.backend.adapter.supports_float64(self.backend.device)


def parse_backends(text: str | None) -> list[tuple[str, Any]]:
    """``PORTNN_BACKENDS``'s value as ``(backend, device)`` pairs; unset or blank: every backend on its default device.

    Entries are separated by commas; each is ``name`` or ``name:device``, split at the first
    colon (``torch:cuda:0`` is torch on ``cuda:0``). A name without a device takes its
    default from ``ALL_BACKENDS``. An unknown name, an empty device or a backend named twice
    is a usage error that says what to write.
    """
    if not text or not text.strip():
        return list(ALL_BACKENDS.items())
    pairs: list[tuple[str, Any]] = []
    for entry in (e.strip() for e in text.split(",")):
        if not entry:
            continue
        name, colon, device = (part.strip() for part in entry.partition(":"))
        if name not in ALL_BACKENDS:
            raise pytest.UsageError(
                f"PORTNN_BACKENDS={text!r} names the unknown backend {name!r}; choose from {list(ALL_BACKENDS)}, "
                "each optionally with a device after a colon (torch:cuda)"
            )
        if colon and not device:
            raise pytest.UsageError(f"PORTNN_BACKENDS={text!r}: {entry!r} has an empty device; write {name} or {name}:DEVICE")
        if name in (n for n, _ in pairs):
            raise pytest.UsageError(f"PORTNN_BACKENDS={text!r} names {name!r} twice; name each backend once")
        pairs.append((name, device if colon else ALL_BACKENDS[name]))
    return pairs or list(ALL_BACKENDS.items())


def _selected_devices() -> list[tuple[str, Any]]:
    return parse_backends(os.environ.get("PORTNN_BACKENDS"))


def _case_id(name: str, device: Any) -> str:
    """The test id: the backend's name on its default device (as always), ``name:device`` on another one."""
    return name if device == ALL_BACKENDS.get(name) else f"{name}:{device}"


def _skip_reason(name: str, device: Any = None) -> str | None:
    """Why ``name`` (on ``device``, when given) cannot run here, or None when it can."""
    adapter = backends.get_adapter(name)
    why = adapter.import_error()
    if why:
        return f"{name} backend unavailable: {why}"
    if device is not None:
        try:
            adapter.device(device)
        except (ValueError, RuntimeError) as exc:
            return f"{name} backend on device {device!r} unavailable: {exc}"
    return None


@pytest.fixture(params=_selected_devices(), ids=lambda pair: _case_id(*pair))
def case(request: pytest.FixtureRequest) -> Any:
    """Each selected backend in turn (on its device), made the global backend for the test's duration."""
    name, device = request.param
    why = _skip_reason(name, device)
    if why:
        pytest.skip(why)
    marker = request.node.get_closest_marker("skip_backends")
    if marker and name in marker.args:
        pytest.skip(f"{name}: {marker.kwargs['reason']}")
    with pn.use_backend(name, device) as backend:
        yield Case(name, backend.device, backend)


@pytest.fixture
def mnist_dir() -> Path:
    """The real MNIST files; tests that need them skip when they are absent (never faked)."""
    for candidate in (os.environ.get("PORTNN_DATA_DIR"), SHARED_MNIST):
        if candidate and (Path(candidate) / "train-images-idx3-ubyte.gz").exists():
            return Path(candidate)
    pytest.skip(f"real MNIST not found (looked in $PORTNN_DATA_DIR and {SHARED_MNIST}); set PORTNN_DATA_DIR")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "skip_backends(*names, reason): skip these backends for a test, with a reason")


def pytest_report_header(config: pytest.Config) -> str:
    lines = []
    for name, device in _selected_devices():
        why = _skip_reason(name, device)
        lines.append(f"  {_case_id(name, device)}: {'available' if why is None else 'SKIPPED - ' + why}")
    return "portnn backends under test:\n" + "\n".join(lines)

"""One fixture over every installed backend, and assertions that check what they compare.

``PORTNN_BACKENDS=numpy,torch pytest`` runs the backend-parametrised tests on a subset.
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


def _selected() -> list[str]:
    chosen = os.environ.get("PORTNN_BACKENDS")
    if not chosen:
        return list(ALL_BACKENDS)
    names = [n.strip() for n in chosen.split(",") if n.strip()]
    unknown = [n for n in names if n not in ALL_BACKENDS]
    if unknown:
        raise pytest.UsageError(f"PORTNN_BACKENDS names unknown backends {unknown}; choose from {list(ALL_BACKENDS)}")
    return names


def _skip_reason(name: str) -> str | None:
    why = backends.get_adapter(name).import_error()
    return f"{name} backend unavailable: {why}" if why else None


@pytest.fixture(params=_selected())
def case(request: pytest.FixtureRequest) -> Any:
    """Each selected backend in turn, made the global backend for the test's duration."""
    name = request.param
    why = _skip_reason(name)
    if why:
        pytest.skip(why)
    marker = request.node.get_closest_marker("skip_backends")
    if marker and name in marker.args:
        pytest.skip(f"{name}: {marker.kwargs['reason']}")
    with pn.use_backend(name, ALL_BACKENDS[name]) as backend:
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
    for name in _selected():
        why = _skip_reason(name)
        lines.append(f"  {name}: {'available' if why is None else 'SKIPPED - ' + why}")
    return "portnn backends under test:\n" + "\n".join(lines)

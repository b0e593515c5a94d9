"""The backend switch: set/get/use, the environment variable, auto, and the CuPy 'no GPU' path."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import portnn as pn
from portnn import backends

PACKAGE = Path(pn.__file__).parent


def test_default_is_numpy_and_use_backend_restores() -> None:
    assert pn.get_backend().name == "numpy"
    with pn.use_backend("torch" if "torch" in pn.available_backends() else "array_api_strict") as inner:
        assert pn.get_backend() is inner
        assert pn.layers.Linear(2, 2).weight.data.__class__.__module__.split(".")[0] in ("torch", "array_api_strict")
    assert pn.get_backend().name == "numpy"


def test_use_backend_restores_on_exception() -> None:
    with pytest.raises(RuntimeError, match="boom"):
        with pn.use_backend("array_api_strict", "device1"):
            raise RuntimeError("boom")
    assert pn.get_backend().name == "numpy"


def test_set_backend_with_device_places_new_parameters() -> None:
    import array_api_strict

    with pn.use_backend("numpy"):
        backend = pn.set_backend("array_api_strict", device="device1")
        assert backend.device == array_api_strict.Device("device1")
        assert str(backend) == "array_api_strict:device1"
        assert pn.layers.Linear(3, 2).weight.device == array_api_strict.Device("device1")
    assert pn.get_backend().name == "numpy"


def test_unknown_backend_and_device_are_clear_errors() -> None:
    with pytest.raises(
        ValueError, match=r"unknown backend 'tensorflow'; choose one of 'numpy', 'cupy', 'torch', 'array_api_strict', 'auto'"
    ):
        pn.set_backend("tensorflow")
    with pytest.raises(ValueError, match="the numpy backend has one device, 'cpu'"):
        pn.set_backend("numpy", device="cuda:0")
    with pytest.raises(ValueError, match="'CPU_DEVICE', 'device1' or 'device2'"):
        pn.set_backend("array_api_strict", device="device9")
    assert pn.get_backend().name == "numpy"  # a failed switch changes nothing


def test_cupy_without_gpu_says_so_and_mentions_auto() -> None:
    """Runs on every commit: CuPy imports here, but finds no GPU."""
    why = backends.get_adapter("cupy").import_error()
    if why is None:
        pytest.skip("a CUDA device works here: the no-GPU path cannot be shown")
    with pytest.raises(pn.BackendUnavailableError, match=r"backend 'cupy' is unavailable: .*set_backend\('auto'\)"):
        pn.set_backend("cupy")
    assert "cupy" not in pn.available_backends()
    assert pn.set_backend("auto").name == "numpy"  # the laptop fallback
    pn.set_backend("numpy")


def test_cupy_adapter_imports_cupy_when_installed() -> None:
    pytest.importorskip("cupy", reason="CuPy not installed (pip install portnn[cupy])")
    why = backends.get_adapter("cupy").import_error()
    assert why is None or "cupy.is_available() is False" in why or "CUDA" in why


def test_environment_variable_chooses_the_backend() -> None:
    code = "import portnn as pn; b = pn.get_backend(); print(b.name, b.device)"
    env = {**os.environ, "PORTNN_BACKEND": "array_api_strict:device2"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "array_api_strict array_api_strict.Device('device2')"


def test_available_backends_lists_what_runs() -> None:
    names = pn.available_backends()
    assert names[0] == "numpy" and "array_api_strict" in names
    for name in names:
        with pn.use_backend(name):
            pn.Sequential([pn.layers.Linear(2, 2)], seed=0).predict(np.ones((1, 2)))


def test_to_numpy_from_every_backend(case) -> None:
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    host = pn.to_numpy(case.asarray(a))
    assert type(host) is np.ndarray and np.array_equal(host, a)


def test_core_never_imports_numpy_or_cupy() -> None:
    """Only the adapters and the host edges (datasets, CLI, files, plots, reports, MPI buffers) may name an array library."""
    allowed = {"backends", "datasets", "cli.py", "fileformat.py", "serialization.py", "plot.py", "report.py", "distributed.py"}
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE)
        if rel.parts[0] in allowed:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [f"{rel}:{node.lineno} imports {n}" for n in names if n.split(".")[0] in ("numpy", "cupy", "torch")]
    assert not offenders, "\n".join(offenders)

"""The backend switch: set/get/use, the environment variable, auto, and the CuPy 'no GPU' path."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

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


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", "numpy cpu"),  # empty is unset
        ("  numpy  ", "numpy cpu"),
        ("array_api_strict", "array_api_strict array_api_strict.Device('CPU_DEVICE')"),
        (" array_api_strict : device1 ", "array_api_strict array_api_strict.Device('device1')"),
    ],
)
def test_environment_variable_is_split_at_the_first_colon(value: str, expected: str) -> None:
    env = {**os.environ, "PORTNN_BACKEND": value}
    code = "import portnn as pn; b = pn.get_backend(); print(b.name, b.device)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip() == expected


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("numpy:gpu", "ValueError: PORTNN_BACKEND='numpy:gpu' (name or name:device): the numpy backend has one device, "
         "'cpu'; got device='gpu'"),
        ("jax", "ValueError: PORTNN_BACKEND='jax' (name or name:device): unknown backend 'jax'; choose one of"),
        ("torch:cuda:0", "PORTNN_BACKEND='torch:cuda:0' (name or name:device): device='cuda:0': "),
    ],
)  # fmt: skip
def test_environment_variable_that_cannot_run_names_itself(value: str, error: str) -> None:
    """A value that cannot run is set_backend's error, naming the variable (``portnn train`` prints the same line)."""
    if value.startswith("torch"):
        why = backends.get_adapter("torch").import_error()
        if why is not None:
            pytest.skip(f"torch backend unavailable: {why}")
        if backends.get_adapter("torch").xp.cuda.is_available():
            pytest.skip("this PyTorch sees a CUDA device, so torch:cuda:0 runs here")
    env = {**os.environ, "PORTNN_BACKEND": value}
    code = "import portnn as pn; pn.get_backend()"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert result.returncode == 1 and error in result.stderr.strip().splitlines()[-1], result.stderr


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
    """Only the adapters and the host edges (datasets, streamed data, CLI, files, plots, reports, MPI buffers) may name one."""
    allowed = {"backends", "datasets", "data.py", "cli.py", "fileformat.py", "serialization.py", "plot.py", "report.py"}
    allowed |= {"distributed.py"}
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


#: The lower rooms, bottom first: a module may import its own room and the rooms below, never above.
ROOMS = [
    ("portnn._array", "portnn._checks"),
    ("portnn.backends",),
    ("portnn.init", "portnn.functional"),
    ("portnn.layers",),
    ("portnn.optim",),
]
UPPER_IN_OPTIM = {"portnn.optim.schedules"}  # callbacks for fit: upstairs, though it lives in optim/


def _imports(path: Path, module: str, is_package: bool, modules: Any) -> set[str]:
    """The portnn modules (or packages) in ``modules`` that ``module`` imports anywhere, function bodies included."""
    package = module if is_package else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1]) if node.level else ""
            target = ".".join(p for p in (base, node.module or "") if p)
            # "from .. import backends" imports the module portnn.backends; "from ..init import x" the module portnn.init
            found |= {f"{target}.{a.name}" if f"{target}.{a.name}" in modules else target for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return {name for name in found if name in modules and name != module}


def test_the_lower_rooms_import_only_downwards() -> None:
    """backends, functional, layers and optim never import a room above theirs, not even inside a function: no cycles."""
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = ("portnn", *path.relative_to(PACKAGE).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        modules[".".join(parts[:-1] if is_package else parts)] = (path, is_package)

    def room(name: str) -> int | None:
        if name in UPPER_IN_OPTIM:
            return None
        for level, prefixes in enumerate(ROOMS):
            if any(name == p or name.startswith(p + ".") for p in prefixes):
                return level
        return None

    offenders, edges = [], {}
    for module, (path, is_package) in sorted(modules.items()):
        level = room(module)
        if level is None:
            continue
        edges[module] = _imports(path, module, is_package, modules)
        for target in sorted(edges[module]):
            if room(target) is None or room(target) > level:
                offenders.append(f"{module} imports {target}")
    assert not offenders, "\n".join(offenders)

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(t == goal or (t not in seen and not seen.add(t) and reaches(t, goal, seen)) for t in edges.get(start, ()))

    loops = sorted(f"{m} -> {t}" for m in edges for t in edges[m] if reaches(t, m, set()))
    assert not loops, "import cycles among the lower rooms (an edge on each):\n" + "\n".join(loops)

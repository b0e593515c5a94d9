"""The GPU check without a GPU: the fixture's device option, benchmarks/gpu_check.sh and bench_gpu.py's no-GPU path."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import ALL_BACKENDS, ROOT, _case_id, _skip_reason, parse_backends

SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"


def _bench_gpu() -> Any:
    spec = importlib.util.spec_from_file_location("bench_gpu", ROOT / "benchmarks" / "bench_gpu.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up while the class is made
    spec.loader.exec_module(module)
    return module


# -- the device option of PORTNN_BACKENDS ----------------------------------------------------
@pytest.mark.parametrize("unset", [None, "", " , "])
def test_no_selection_is_every_backend_on_its_default_device(unset: str | None) -> None:
    assert parse_backends(unset) == list(ALL_BACKENDS.items())


def test_an_entry_may_name_a_device_after_a_colon() -> None:
    assert parse_backends("numpy, torch:cuda ,cupy:cuda:1") == [("numpy", None), ("torch", "cuda"), ("cupy", "cuda:1")]
    assert parse_backends("array_api_strict") == [("array_api_strict", "device1")]  # its default device, as before


def test_ids_stay_the_backend_name_on_the_default_device() -> None:
    assert [_case_id(n, d) for n, d in ALL_BACKENDS.items()] == list(ALL_BACKENDS)
    assert _case_id("torch", "cuda") == "torch:cuda"
    assert _case_id("array_api_strict", "device2") == "array_api_strict:device2"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("numpy,jax", "unknown backend 'jax'; choose from"),
        ("torch:", "'torch:' has an empty device; write torch or torch:DEVICE"),
        ("torch,torch:cuda", "names 'torch' twice"),
    ],
)
def test_a_wrong_selection_says_what_to_write(text: str, message: str) -> None:
    with pytest.raises(pytest.UsageError, match=message.replace("(", r"\(")):
        parse_backends(text)


def test_an_unavailable_device_gives_a_skip_reason() -> None:
    reason = _skip_reason("array_api_strict", "device9")
    assert reason is not None and "array_api_strict backend on device 'device9' unavailable" in reason
    assert "'device1' or 'device2'" in reason  # the adapter's words: which devices exist
    assert _skip_reason("array_api_strict", "device2") is None


def test_torch_cuda_skips_with_a_reason_where_no_gpu_is_seen() -> None:
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        assert _skip_reason("torch", "cuda") is None
    else:
        assert "torch backend on device 'cuda' unavailable" in _skip_reason("torch", "cuda")


def test_the_case_fixture_skips_a_missing_device_and_runs_the_others(tmp_path: Path) -> None:
    """End to end: one backend-parametrised test (in a module that needs no PyTorch), on a device that exists and one not."""
    env = {**os.environ, "PORTNN_BACKENDS": "numpy,array_api_strict:device9", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-v", "-rs", "-p", "no:cacheprovider", f"--rootdir={ROOT}",
         str(ROOT / "tests" / "test_backends.py"), "-k", "test_to_numpy_from_every_backend"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "1 passed, 1 skipped" in out, out
    assert "array_api_strict backend on device 'device9' unavailable" in out, out
    assert "array_api_strict:device9: SKIPPED" in out, out  # the report header names the device too
    assert "test_to_numpy_from_every_backend[array_api_strict:device9] SKIPPED" in out, out


# -- the script --------------------------------------------------------------------------------
@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_gpu_check_script_parses_and_explains_itself() -> None:
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)
    shown = subprocess.run(["bash", str(SCRIPT), "--help"], capture_output=True, text=True, timeout=30)
    assert shown.returncode == 0 and "--dry-run" in shown.stdout and "tests-cupy" in shown.stdout
    wrong = subprocess.run(["bash", str(SCRIPT), "--gpu"], capture_output=True, text=True, timeout=30)
    assert wrong.returncode == 2 and "unknown option --gpu" in wrong.stderr


def test_bench_gpu_says_what_it_cannot_run(capsys: pytest.CaptureFixture[str]) -> None:
    bench = _bench_gpu()
    contenders = [bench.Contender(*row) for row in bench.GPU_CONTENDERS]
    if any(c.unavailable() is None for c in contenders):
        pytest.skip("a CUDA contender can run here: the no-GPU path is not taken (gpu_check.sh times them)")
    assert bench.main([]) == 0
    out = capsys.readouterr().out
    for c in contenders:
        assert f"bench_gpu: cannot run {c.label}: " in out
    assert out.rstrip().endswith("bench_gpu: no CUDA contender can run here; nothing timed")


def test_bench_gpu_refuses_wrong_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        _bench_gpu().main(["--nets", "mlp,rnn"])
    assert exc.value.code == 2 and "--nets takes mlp, cnn (got 'mlp,rnn')" in capsys.readouterr().err

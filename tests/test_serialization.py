"""The checkpoint format: round trips on and across backends, old files, model classes, damage, atomic writes, no pickle."""

from __future__ import annotations

import ast
import json
import os
import re
import struct
import subprocess
import sys
import textwrap
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import safetensors.numpy
from conftest import ALL_BACKENDS, _skip_reason

import portnn as pn
from portnn import backends, fileformat, serialization
from portnn.serialization import CheckpointError, read_file, write_file

L = pn.layers
FIXTURES = Path(__file__).parent / "fixtures"


def every_layer_model(dtype: str = "float32", seed: int = 0) -> pn.Sequential:
    """A small CNN with one layer of every kind, on the global backend."""
    return pn.Sequential(
        [
            L.RandomTranslation(1, seed=5),
            L.Conv2d(1, 4, 3, padding=1, init="glorot_uniform", dtype=dtype),
            L.BatchNorm2d(4, dtype=dtype),
            L.ReLU(),
            L.MaxPool2d(2),
            L.Conv2d(4, 4, (3, 1), stride=(1, 2), bias=False, init=pn.init.normal(0.2), dtype=dtype),
            L.AvgPool2d(2, 1),
            L.Dropout(0.25),
            L.Flatten(),
            L.Linear(4, 6, init="torch", dtype=dtype),
            L.BatchNorm1d(6, momentum=None, dtype=dtype),
            L.LeakyReLU(0.1),
            L.Tanh(),
            L.Linear(6, 5, dtype=dtype),
            L.Sigmoid(),
            L.Linear(5, 3, bias=False, dtype=dtype),
            L.Softmax(),
        ],
        seed=seed,
        input_shape=(1, 8, 8),
    )


def pool_model(dtype: str = "float32") -> pn.Sequential:
    return pn.Sequential([L.Conv2d(1, 2, 3, dtype=dtype), L.GlobalAvgPool2d(), L.Linear(2, 2, dtype=dtype)], seed=1)


def sequence_model(dtype: str = "float32", seed: int = 0) -> pn.Sequential:
    """Tokens (batch, time) to logits (batch, time, 3), and a pooled head: one layer of every sequence kind."""
    return pn.Sequential(
        [
            L.Embedding(10, 4, padding_idx=0, dtype=dtype),
            L.PositionalEmbedding(6, 4, init=pn.init.normal(0.2), dtype=dtype),
            L.Linear(4, 4, dtype=dtype),
            L.Permute((2, 1)),
            L.GlobalAvgPool1d(),
            L.Linear(4, 3, dtype=dtype),
        ],
        seed=seed,
    )


def images(n: int = 6, dtype: str = "float32") -> np.ndarray:
    return np.random.default_rng(0).normal(size=(n, 1, 8, 8)).astype(dtype)


def train_a_little(model: pn.Sequential, dtype: str = "float32") -> None:
    """A few training passes, so that BatchNorm's running statistics and count are not their initial values."""
    backend = model.backend
    x = backend.adapter.from_numpy(images(dtype=dtype), backend.device)
    for _ in range(3):
        model.forward(x, training=True)


def host_state(model: pn.Sequential) -> dict[str, np.ndarray]:
    return {name: backends.to_numpy(value).copy() for name, value in model.state_dict().items()}


def assert_same_bytes(actual: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    assert sorted(actual) == sorted(expected)
    for name in expected:
        a, e = actual[name], expected[name]
        assert (a.dtype, a.shape) == (e.dtype, e.shape), f"{name}: {a.dtype}{a.shape} vs {e.dtype}{e.shape}"
        assert a.tobytes() == e.tobytes(), f"{name} differs"


def predict(model: pn.Sequential, dtype: str = "float32") -> np.ndarray:
    backend = model.backend
    return backends.to_numpy(model(backend.adapter.from_numpy(images(dtype=dtype), backend.device)))


# -- round trips ----------------------------------------------------------------------
def test_round_trip_every_layer(case: Any, tmp_path: Path) -> None:
    model = every_layer_model()
    train_a_little(model)
    assert int(backends.to_numpy(model.state_dict()["2.num_batches_tracked"])) == 3
    path = tmp_path / "model.safetensors"
    model.save(path)
    loaded = pn.load(path)
    assert loaded.backend.name == case.name and loaded.backend.device == case.device
    assert loaded.get_config() == model.get_config()
    assert repr(loaded) == repr(model)
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in model.layers]
    assert_same_bytes(host_state(loaded), host_state(model))
    np.testing.assert_array_equal(predict(loaded), predict(model))
    # the seeds of the random layers come back, so training draws the same numbers
    assert [loaded.layers[i].seed for i in (0, 7)] == [model.layers[i].seed for i in (0, 7)]
    # and the file also loads as weights only into a model built in code
    fresh = every_layer_model(seed=9)
    fresh.load_weights(path)
    assert_same_bytes(host_state(fresh), host_state(model))


def test_round_trip_sequence_layers(case: Any, tmp_path: Path) -> None:
    model = sequence_model()
    model.save(tmp_path / "seq.safetensors")
    loaded = pn.load(tmp_path / "seq.safetensors")
    assert loaded.get_config() == model.get_config() and repr(loaded) == repr(model)
    assert_same_bytes(host_state(loaded), host_state(model))
    tokens = case.asarray(np.random.default_rng(0).integers(0, 10, size=(3, 5)), "int64")
    np.testing.assert_array_equal(backends.to_numpy(loaded(tokens)), backends.to_numpy(model(tokens)))


def test_round_trip_global_pool_and_weights_file(case: Any, tmp_path: Path) -> None:
    model = pool_model()
    model.save_weights(tmp_path / "w.safetensors")
    other = pn.Sequential([L.Conv2d(1, 2, 3), L.GlobalAvgPool2d(), L.Linear(2, 2)], seed=2)
    other.load_weights(str(tmp_path / "w.safetensors"))
    assert_same_bytes(host_state(other), host_state(model))
    _, meta = read_file(tmp_path / "w.safetensors")
    assert meta["kind"] == "weights" and "architecture" not in meta
    assert meta["layer_names"] == ["conv2d", "globalavgpool2d", "linear"]


def _targets() -> list[Any]:
    params = []
    for name, device in ALL_BACKENDS.items():
        why = _skip_reason(name)
        marks = [pytest.mark.skip(reason=f"load target {why}")] if why else []
        params.append(pytest.param(name, device, id=f"to-{name}", marks=marks))
    return params


@pytest.mark.parametrize(("target", "device"), _targets())
def test_saved_on_one_backend_loads_on_every_other(case: Any, target: str, device: Any, tmp_path: Path) -> None:
    model = every_layer_model()
    train_a_little(model)
    path = tmp_path / f"from-{case.name}.safetensors"
    model.save(path)
    _, meta = read_file(path)
    assert meta["backend"] == str(case.backend)
    loaded = pn.load(path, backend=target, device=device)
    assert loaded.backend.name == target
    for p in loaded.parameters():
        assert backends.adapter_for(p.data).name == target
    assert loaded.get_config() == model.get_config()
    assert_same_bytes(host_state(loaded), host_state(model))
    np.testing.assert_allclose(predict(loaded), predict(model), rtol=2e-4, atol=2e-5)


def test_float64_stays_float64(case: Any, tmp_path: Path) -> None:
    if not case.supports("float64"):
        pytest.skip(f"{case.name} has no float64")
    model = every_layer_model("float64")
    train_a_little(model, "float64")
    model.save(tmp_path / "f64.safetensors")
    loaded = pn.load(tmp_path / "f64.safetensors")
    assert loaded.dtype == "float64"
    assert read_file(tmp_path / "f64.safetensors")[1]["dtype"] == "float64"
    for layer in loaded.get_config()["layers"]:
        assert layer["config"].get("dtype", "float64") == "float64"
    state = host_state(loaded)
    assert state["1.weight"].dtype == np.float64 and state["2.num_batches_tracked"].dtype == np.int64
    assert_same_bytes(state, host_state(model))
    np.testing.assert_array_equal(predict(loaded, "float64"), predict(model, "float64"))


# -- the low-level primitives ---------------------------------------------------------
def test_write_file_read_file_any_tensors_and_meta(tmp_path: Path) -> None:
    tensors = {
        "z.scalar": np.array(7, dtype=np.int64),
        "a.f64": np.linspace(0, 1, 6).reshape(2, 3),
        "rng": np.array([2**64 - 1, 3], dtype=np.uint64),
        "mask": np.array([True, False]),
        "empty": np.zeros((0, 3), dtype=np.float32),
        "strided": np.arange(12, dtype=np.int32).reshape(3, 4)[:, ::2],
    }
    meta = {"step": 12, "lr": 0.001, "ok": True, "none": None, "nested": {"list": [1, "two", [3.5]]}, "big": 2**100}
    path = tmp_path / "sub" / "dir" / "state.safetensors"
    write_file(path, tensors, meta)
    back, meta_back = read_file(path)
    assert meta_back == meta
    assert sorted(back) == sorted(tensors)
    for name, value in tensors.items():
        assert back[name].dtype == value.dtype and back[name].shape == value.shape
        np.testing.assert_array_equal(back[name], value)
    _, header = _split(path.read_bytes())
    md = header["__metadata__"]
    assert md["format"] == "portnn" and md["format_version"] == "1" and md["portnn_version"] == pn.__version__
    assert md["checksum"].startswith("sha256:") and json.loads(md["meta"]) == meta


def test_the_format_records_the_version_its_caller_gives(tmp_path: Path) -> None:
    path = tmp_path / "v.safetensors"
    fileformat.write_file(path, {"w": np.ones(2)}, {"a": 1}, portnn_version="9.8.7")
    assert _split(path.read_bytes())[1]["__metadata__"]["portnn_version"] == "9.8.7"
    assert fileformat.read_file(path)[1] == {"a": 1}
    for bad in ("", None, 1):
        with pytest.raises(TypeError, match=rf"write_file.*portnn_version must be a non-empty str.*got {bad!r}"):
            fileformat.write_file(path, {"w": np.ones(2)}, {}, portnn_version=bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="portnn_version"):
        fileformat.write_file(path, {"w": np.ones(2)}, {})  # type: ignore[call-arg]
    # serialization's write_file is the format's, with this portnn's version
    serialization.write_file(path, {"w": np.ones(2)}, {})
    assert _split(path.read_bytes())[1]["__metadata__"]["portnn_version"] == pn.__version__


def test_serialization_re_exports_the_format() -> None:
    for name in ("CheckpointError", "read_file", "write_bytes", "FORMAT", "FORMAT_VERSION"):
        assert getattr(serialization, name) is getattr(fileformat, name), name
    assert pn.CheckpointError is fileformat.CheckpointError


def test_write_file_refuses_what_it_cannot_store(tmp_path: Path) -> None:
    path = tmp_path / "x.safetensors"
    with pytest.raises(TypeError, match=r"write_file.*tensor 'w' is a .*list.*portnn.to_numpy"):
        write_file(path, {"w": [1.0, 2.0]}, {})
    with pytest.raises(TypeError, match="meta must hold only JSON values"):
        write_file(path, {"w": np.ones(2)}, {"f": object()})
    with pytest.raises(TypeError, match="meta must hold only JSON values"):
        write_file(path, {"w": np.ones(2)}, {"x": float("nan")})
    with pytest.raises(ValueError, match="tensor name '__metadata__' is not allowed"):
        write_file(path, {"__metadata__": np.ones(2)}, {})
    with pytest.raises(TypeError, match="dtype object"):
        write_file(path, {"w": np.array([None])}, {})
    assert list(tmp_path.iterdir()) == []


# -- damaged and foreign files --------------------------------------------------------
def _split(data: bytes) -> tuple[int, dict[str, Any]]:
    (n,) = struct.unpack("<Q", data[:8])
    return n, json.loads(data[8 : 8 + n])


def _good_file(tmp_path: Path) -> Path:
    path = tmp_path / "good.safetensors"
    with pn.use_backend("numpy"):
        model = pn.Sequential([L.Linear(3, 4), L.BatchNorm1d(4), L.ReLU(), L.Linear(4, 2)], seed=0)
    train = np.random.default_rng(1).normal(size=(5, 3)).astype(np.float32)
    model.forward(train, training=True)
    model.save(path)
    return path


def _victim() -> pn.Sequential:
    with pn.use_backend("numpy"):
        return pn.Sequential([L.Linear(3, 4), L.BatchNorm1d(4), L.ReLU(), L.Linear(4, 2)], seed=7)


def _with_metadata(path: Path, tmp_path: Path, **changes: str | None) -> Path:
    """A copy of ``path`` rewritten with plain safetensors, its ``__metadata__`` entries changed."""
    data = path.read_bytes()
    _, header = _split(data)
    metadata = dict(header["__metadata__"])
    for key, value in changes.items():
        if value is None:
            metadata.pop(key, None)
        else:
            metadata[key] = value
    out = tmp_path / "edited.safetensors"
    out.write_bytes(safetensors.numpy.save(safetensors.numpy.load(data), metadata=metadata))
    return out


def _flip(data: bytes, i: int, mask: int = 0x01) -> bytes:
    return data[:i] + bytes([data[i] ^ mask]) + data[i + 1 :]


def _damaged(kind: str, good: Path, tmp_path: Path) -> Path:
    data = good.read_bytes()
    n, header = _split(data)
    out = tmp_path / f"{kind}.safetensors"
    if kind == "empty":
        out.write_bytes(b"")
    elif kind == "cut-in-length-field":
        out.write_bytes(data[:5])
    elif kind == "cut-in-header":
        out.write_bytes(data[: 8 + n // 2])
    elif kind == "cut-after-header":
        out.write_bytes(data[: 8 + n])
    elif kind == "cut-mid-data":
        out.write_bytes(data[: 8 + n + (len(data) - 8 - n) // 2])
    elif kind == "cut-last-byte":
        out.write_bytes(data[:-1])
    elif kind == "flipped-data-byte":
        out.write_bytes(_flip(data, len(data) - 10))
    elif kind == "flipped-header-json-byte":
        out.write_bytes(_flip(data, 8 + data[8 : 8 + n].index(b'"format"') + 3, 0xFF))
    elif kind == "random-bytes":
        out.write_bytes(np.random.default_rng(3).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    elif kind == "text":
        out.write_bytes(b"these are not the weights you are looking for\n" * 20)
    elif kind == "npz":
        out = tmp_path / "old.npz"
        np.savez(out, **{"0.weight": np.ones((4, 3), np.float32)})
    elif kind == "foreign-safetensors":
        safetensors.numpy.save_file({"0.weight": np.ones((4, 3), np.float32)}, str(out))
    elif kind == "other-format":
        out = _with_metadata(good, tmp_path, format="pt")
    elif kind == "format-version-999":
        out = _with_metadata(good, tmp_path, format_version="999")
    elif kind == "malformed-meta-json":
        out = _with_metadata(good, tmp_path, meta='{"architecture": [1, 2')
    elif kind == "checksum-missing":
        out = _with_metadata(good, tmp_path, checksum=None)
    elif kind == "missing":
        out = tmp_path / "nowhere.safetensors"
    elif kind == "folder":
        out = tmp_path / "a-folder.safetensors"
        out.mkdir()
    else:
        raise AssertionError(kind)
    return out


DAMAGE = {
    "missing": "no such file",
    "folder": "is a folder",
    "empty": "the file is empty",
    "cut-in-length-field": "too short for a safetensors file: truncated",
    "cut-in-header": "truncated in its header",
    "cut-after-header": "the file is truncated: its tensor data ends",
    "cut-mid-data": "the file is truncated: its tensor data ends",
    "cut-last-byte": "the file is truncated: its tensor data ends",
    "flipped-data-byte": "checksum mismatch",
    "flipped-header-json-byte": "header is not valid JSON",
    "random-bytes": "not a portnn checkpoint",
    "text": "not a portnn checkpoint: a text file",
    "npz": r"a zip archive \(a NumPy \.npz",
    "foreign-safetensors": r"a safetensors file that portnn did not write \(no __metadata__",
    "other-format": r"a safetensors file that portnn did not write \(format='pt'",
    "format-version-999": r"written by a newer portnn .*format_version 999.*upgrade portnn",
    "malformed-meta-json": "malformed JSON metadata",
    "checksum-missing": "checksum mismatch",
}


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_damaged_or_foreign_file_raises_checkpoint_error_and_leaves_the_model(kind: str, tmp_path: Path) -> None:
    path = _damaged(kind, _good_file(tmp_path), tmp_path)
    expected = DAMAGE[kind]
    with pytest.raises(CheckpointError, match=expected) as info:
        read_file(path)
    assert str(path) in str(info.value)
    with pytest.raises(CheckpointError, match=expected) as info:
        pn.load(path)
    assert str(path) in str(info.value)
    model = _victim()
    before = host_state(model)
    arrays = [b.data for _, b in (*model.named_parameters(), *model.named_buffers())]
    with pytest.raises(CheckpointError, match=expected):
        model.load_weights(path)
    assert_same_bytes(host_state(model), before)
    assert all(b.data is a for (_, b), a in zip((*model.named_parameters(), *model.named_buffers()), arrays))
    assert isinstance(info.value, ValueError)


def test_every_single_byte_flip_in_the_header_is_caught(tmp_path: Path) -> None:
    data = _good_file(tmp_path).read_bytes()
    n, _ = _split(data)
    missed = []
    for i in range(8 + n):  # checked in memory: read_file is this decoding after reading the bytes
        for mask in (0x01, 0x20, 0xFF):
            try:
                fileformat._decode(_flip(data, i, mask), "flipped")
            except CheckpointError:
                continue
            missed.append((i, mask, data[i : i + 1]))
    assert missed == []


def test_every_single_byte_flip_in_the_data_fails_the_checksum(tmp_path: Path) -> None:
    data = _good_file(tmp_path).read_bytes()
    n, _ = _split(data)
    for i in range(8 + n, len(data)):
        with pytest.raises(CheckpointError, match="checksum mismatch"):
            fileformat._decode(_flip(data, i), "flipped")


def test_architecture_naming_an_unknown_layer_is_refused(tmp_path: Path) -> None:
    good = _good_file(tmp_path)
    tensors, meta = read_file(good)
    for evil in ("os.system", "Evil", "Layer", "WeightedLayer", "__import__"):
        meta["architecture"]["layers"][2]["class_name"] = evil
        path = tmp_path / "evil.safetensors"
        write_file(path, tensors, meta)
        with pytest.raises(CheckpointError, match=rf"{path}.*{evil!r} is not a portnn layer"):
            pn.load(path)
    meta["architecture"]["layers"][2] = {"class_name": "ReLU", "config": {"inplace": True, "name": "relu"}}
    write_file(path, tensors, meta)
    with pytest.raises(CheckpointError, match=rf"{path}: the architecture cannot be rebuilt.*ReLU"):
        pn.load(path)


def test_weights_that_do_not_fit_the_architecture(tmp_path: Path) -> None:
    good = _good_file(tmp_path)
    tensors, meta = read_file(good)
    tensors["0.weight"] = np.zeros((5, 3), np.float32)
    write_file(tmp_path / "bad.safetensors", tensors, meta)
    with pytest.raises(CheckpointError, match=r"bad\.safetensors.*0\.weight: \(5, 3\) in the file, \(4, 3\) in the model"):
        pn.load(tmp_path / "bad.safetensors")


def test_load_of_a_weights_only_file_says_so(tmp_path: Path) -> None:
    _victim().save_weights(tmp_path / "w.safetensors")
    with pytest.raises(CheckpointError, match="holds weights only.*load_weights"):
        pn.load(tmp_path / "w.safetensors")


def test_load_weights_into_another_model_lists_every_misfit(tmp_path: Path) -> None:
    path = _good_file(tmp_path)
    with pn.use_backend("numpy"):
        other = pn.Sequential([L.Linear(3, 5), L.ReLU(), L.Linear(5, 2), L.Linear(2, 2)], seed=3)
    before = host_state(other)
    with pytest.raises(CheckpointError) as info:
        other.load_weights(path)
    message = str(info.value)
    assert str(path) in message
    assert "missing from the file: ['2.weight', '2.bias']" in message
    assert "not in the model: ['1.bias', '1.num_batches_tracked', '1.running_mean', '1.running_var', '1.weight']" in message
    assert "0.weight: (4, 3) in the file, (5, 3) in the model; 0.bias: (4,) in the file, (5,) in the model" in message
    assert "3.weight: (2, 4) in the file, (2, 2) in the model" in message
    assert "3.bias" not in message  # it fits
    assert_same_bytes(host_state(other), before)


def test_layers_that_cannot_be_described_raise_naming_them(tmp_path: Path) -> None:
    def my_init(rng: Any, shape: tuple[int, ...], fan_in: int, fan_out: int) -> Any:
        return rng.normal(0.0, 0.1, shape)

    model = pn.Sequential([L.Linear(3, 2, init=my_init)])
    with pytest.raises(TypeError, match=r"Linear.get_config \(Linear\(3, 2\), name='linear'\): init is .*my_init"):
        model.save(tmp_path / "m.safetensors")

    class Scale(L.Layer):
        def __init__(self, factor: float) -> None:
            super().__init__()
            self._factor = factor

        def forward(self, x: Any, *, training: bool = False, input_grad: bool = True) -> Any:
            return x * self._factor, lambda dy: dy * self._factor

    with pytest.raises(TypeError, match=r"Scale.get_config.*takes 'factor' but the layer keeps no attribute"):
        Scale(2.0).get_config()

    class Double(L.ReLU):
        pass

    with pytest.raises(TypeError, match=r"layer 1 \(Double\(\), name='double'\).*cannot rebuild.*save_weights"):
        pn.Sequential([L.Linear(3, 2), Double()]).save(tmp_path / "m.safetensors")
    pn.Sequential([L.Linear(3, 2), Double()]).save_weights(tmp_path / "w.safetensors")  # weights only: fine
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.safetensors"]


def test_init_names_and_factories_round_trip() -> None:
    for init in ("he_normal", "kaiming_uniform", "torch", "zeros", "normal", pn.init.uniform(-0.1, 0.3), pn.init.orthogonal(2.0)):
        layer = L.Linear(4, 3, init=init, seed=0)
        rebuilt = L.Linear.from_config(layer.get_config())
        assert rebuilt.init.__name__ == layer.init.__name__
        a, b = rebuilt.init(backends.host_rng(1), (3, 4), 4, 3), layer.init(backends.host_rng(1), (3, 4), 4, 3)
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="unknown init 'eval\\(1\\)'"):
        L.Linear.from_config({**L.Linear(4, 3).get_config(), "init": "eval(1)"})


# -- model classes, and files from before they were named -----------------------------
@pytest.fixture
def registry(monkeypatch: Any) -> dict[str, type]:
    """The model registry, restored after the test: classes a test registers do not leak into others."""
    monkeypatch.setattr(serialization, "_MODELS", dict(serialization._MODELS))
    return serialization._MODELS


def test_sequential_is_registered_and_files_name_it(tmp_path: Path) -> None:
    assert serialization._MODELS["Sequential"] is pn.Sequential
    model = _victim()
    model.save(tmp_path / "m.safetensors")
    model.save_weights(tmp_path / "w.safetensors")
    for name in ("m", "w"):
        assert read_file(tmp_path / f"{name}.safetensors")[1]["model_class"] == "Sequential"
    assert serialization.model_meta(model)["model_class"] == "Sequential"


def test_a_file_from_before_model_class_loads_as_a_sequential(case: Any) -> None:
    """A file written by portnn 0.1.0 before files named their model class (committed, never regenerated)."""
    path = FIXTURES / "sequential-0.1.0.safetensors"
    tensors, meta = read_file(path)
    assert meta["kind"] == "model" and "model_class" not in meta
    model = pn.load(path)
    assert type(model) is pn.Sequential and model.backend.name == case.name
    assert [type(layer).__name__ for layer in model.layers] == ["Linear", "BatchNorm1d", "ReLU", "Linear"]
    assert_same_bytes(host_state(model), tensors)
    x = np.random.default_rng(4).normal(size=(5, 3)).astype(np.float32)
    h = x @ tensors["0.weight"].T + tensors["0.bias"]  # the same forward written out in NumPy, BatchNorm in eval mode
    h = (h - tensors["1.running_mean"]) / np.sqrt(tensors["1.running_var"] + np.float32(1e-5)) * tensors["1.weight"]
    h = np.maximum(h + tensors["1.bias"], 0)
    expected = h @ tensors["3.weight"].T + tensors["3.bias"]
    np.testing.assert_allclose(backends.to_numpy(model.predict(case.asarray(x))), expected, rtol=1e-5, atol=1e-6)
    fresh = pn.Sequential([L.Linear(3, 4), L.BatchNorm1d(4), L.ReLU(), L.Linear(4, 2)], seed=5)
    fresh.load_weights(path)
    assert_same_bytes(host_state(fresh), tensors)


def test_a_file_naming_an_unknown_model_class_is_refused_without_importing_it(tmp_path: Path) -> None:
    tensors, meta = read_file(_good_file(tmp_path))
    path = tmp_path / "evil.safetensors"
    for evil in ("os.system", "this", "portnn.model.Sequential", "Layer", "__import__", "", None, ["Sequential"]):
        write_file(path, tensors, {**meta, "model_class": evil})
        before = set(sys.modules)
        with pytest.raises(CheckpointError) as info:
            pn.load(path)
        message = str(info.value)
        assert message.startswith(f"load: {path}: the file holds a model of class {evil!r}, which is not a registered"), message
        assert "registered: Sequential" in message and "@portnn.serialization.register_model" in message
        assert set(sys.modules) == before


def test_a_registered_model_class_round_trips(case: Any, registry: dict[str, type], tmp_path: Path) -> None:
    @serialization.register_model
    class Tower(pn.Sequential):
        def depth(self) -> int:
            return len(self.layers)

    model = Tower([L.Linear(3, 4), L.BatchNorm1d(4), L.ReLU(), L.Linear(4, 2)], seed=0)
    train = case.asarray(np.random.default_rng(1).normal(size=(5, 3)), "float32")
    model.forward(train, training=True)
    model.save(tmp_path / "tower.safetensors")
    assert read_file(tmp_path / "tower.safetensors")[1]["model_class"] == "Tower"
    loaded = pn.load(tmp_path / "tower.safetensors")
    assert type(loaded) is Tower and loaded.depth() == 4 and loaded.backend.name == case.name
    assert_same_bytes(host_state(loaded), host_state(model))
    del registry["Tower"]  # a new session that has not imported the class: refused, by name
    with pytest.raises(CheckpointError, match="class 'Tower', which is not a registered model class"):
        pn.load(tmp_path / "tower.safetensors")


def test_an_unregistered_model_class_saves_weights_but_not_a_model(registry: dict[str, type], tmp_path: Path) -> None:
    class Plain(pn.Sequential):
        pass

    with pn.use_backend("numpy"):
        model = Plain([L.Linear(3, 2)], seed=0)
    with pytest.raises(TypeError, match=r"Plain\.save: the model is a .*Plain, a class pn\.load does not know.*register_model.*"):
        model.save(tmp_path / "m.safetensors")
    assert list(tmp_path.iterdir()) == []
    model.save_weights(tmp_path / "w.safetensors")
    assert read_file(tmp_path / "w.safetensors")[1]["model_class"] == "Plain"
    # a training checkpoint of it carries no architecture, and pn.load says what to do
    meta = serialization.model_meta(model)
    assert meta["architecture"] is None and meta["model_class"] == "Plain"
    state = {f"model.{k}": v for k, v in host_state(model).items()}
    write_file(tmp_path / "ck.safetensors", state, {"kind": "training", **meta})
    with pytest.raises(CheckpointError, match="a training checkpoint of a model that portnn cannot rebuild.*load_weights"):
        pn.load(tmp_path / "ck.safetensors")
    other = Plain([L.Linear(3, 2)], seed=1)
    other.load_weights(tmp_path / "ck.safetensors")
    assert_same_bytes(host_state(other), host_state(model))
    serialization.register_model(Plain)
    assert serialization.model_meta(model)["architecture"] == model.get_config()
    model.save(tmp_path / "m.safetensors")
    assert type(pn.load(tmp_path / "m.safetensors")) is Plain


def test_register_model_refuses_what_load_could_not_build(registry: dict[str, type]) -> None:
    with pytest.raises(TypeError, match="register_model: expected a class"):
        serialization.register_model(pn.Sequential())  # type: ignore[arg-type]

    class NoConfig:
        def get_config(self) -> dict[str, Any]:
            return {}

    with pytest.raises(TypeError, match=r"register_model: .*NoConfig has no from_config"):
        serialization.register_model(NoConfig)

    class Sequential(pn.Sequential):  # same name, another class
        pass

    with pytest.raises(ValueError, match=r"has the name 'Sequential' of the registered portnn\.model\.Sequential.*rename"):
        serialization.register_model(Sequential)
    assert registry["Sequential"] is pn.Sequential and "NoConfig" not in registry
    assert serialization.register_model(pn.Sequential) is pn.Sequential

    def define() -> type:
        class Again(pn.Sequential):
            pass

        return Again

    first, second = define(), define()
    serialization.register_model(first)
    serialization.register_model(second)  # the same definition run again (a reloaded module, a notebook cell)
    assert registry["Again"] is second


# -- atomic writes --------------------------------------------------------------------
@pytest.mark.parametrize("failing", ["replace", "fsync", "write"])
def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp(failing: str, tmp_path: Path, monkeypatch: Any) -> None:
    path = _good_file(tmp_path)
    old = path.read_bytes()

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise OSError(f"simulated failure in {failing}")

    if failing == "write":
        real_fdopen = os.fdopen

        class Failing:
            def __init__(self, f: Any) -> None:
                self.f = f

            def __enter__(self) -> Any:
                self.f.__enter__()
                return self

            def __exit__(self, *exc: Any) -> Any:
                return self.f.__exit__(*exc)

            def write(self, data: bytes) -> int:
                self.f.write(data[: len(data) // 2])  # half the bytes reach the disk, then the disk fills up
                raise OSError("simulated failure in write")

        monkeypatch.setattr(os, "fdopen", lambda *a, **k: Failing(real_fdopen(*a, **k)))
    else:
        monkeypatch.setattr(os, failing, boom)
    with pytest.raises(OSError, match=f"simulated failure in {failing}"):
        _victim().save(path)
    monkeypatch.undo()
    assert path.read_bytes() == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.safetensors"]
    read_file(path)  # still whole


def test_a_write_replaces_the_file_whole(tmp_path: Path) -> None:
    path = _good_file(tmp_path)
    model = _victim()
    model.save(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.safetensors"]
    assert_same_bytes(read_file(path)[0], host_state(model))


# -- no pickle ------------------------------------------------------------------------
@pytest.mark.parametrize("module", ["fileformat.py", "serialization.py", "_resume.py", "transfer.py"])
def test_no_pickle_anywhere_on_the_load_path(module: str) -> None:
    source = (Path(pn.__file__).parent / module).read_text()
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & {"pickle", "cPickle", "_pickle", "dill", "joblib", "shelve", "marshal", "torch", "importlib"}
    for forbidden in ("allow_pickle=True", "torch.load", "pickle.load", "eval(", "exec(", "__import__"):
        assert forbidden not in source, f"{module} contains {forbidden}"


# -- what a file declares is checked against what it holds, before anything is allocated ----
def _crafted_file(tmp_path: Path) -> Path:
    """A few hundred bytes, checksummed, whose architecture declares a Linear(100000, 100000) in float64: 74.5 GiB."""
    with pn.use_backend("numpy"):
        model = pn.Sequential([L.Linear(2, 2, dtype="float64")], seed=0)
    path = tmp_path / "crafted.safetensors"
    model.save(path)
    tensors, meta = read_file(path)
    meta["architecture"]["layers"][0]["config"].update(in_features=100_000, out_features=100_000)
    write_file(path, tensors, meta)
    return path


CRAFTED = textwrap.dedent(
    """
    import resource, sys
    resource.setrlimit(resource.RLIMIT_AS, (3 * 2**30, 3 * 2**30))  # a few GiB: a refusal needs none of it
    import portnn as pn
    try:
        pn.load(sys.argv[1], backend="numpy")
    except pn.CheckpointError as exc:
        print("refused:", exc)
    """
)


@pytest.mark.skipif(sys.platform == "win32", reason="the address-space limit of the child process needs the resource module")
def test_a_crafted_architecture_is_refused_before_its_weights_are_allocated(tmp_path: Path) -> None:
    path = _crafted_file(tmp_path)
    assert path.stat().st_size < 2048
    script = tmp_path / "load.py"
    script.write_text(CRAFTED)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, str(script), str(path)], capture_output=True, text=True, timeout=120, env=env)
    assert run.returncode == 0, run.stderr[-2000:]  # not a MemoryError under the limit
    assert "refused:" in run.stdout
    expected = r"declares 10000100000 parameter and buffer values up to layer 0 \(Linear\), but the file holds 6"
    assert re.search(expected, run.stdout)


def test_a_config_not_in_get_config_s_form_is_refused_before_building(tmp_path: Path) -> None:
    path = _crafted_file(tmp_path)
    tensors, meta = read_file(path)
    meta["architecture"]["layers"][0]["config"].update(in_features="many", out_features=2)
    write_file(path, tensors, meta)
    with pytest.raises(CheckpointError, match=r"config of layer 0 \(Linear\) does not say its size.*'many' is not a size"):
        pn.load(path)


def test_every_layer_declares_its_size_in_its_config() -> None:
    """The count read from a config alone equals the values the built layer holds, for every class pn.load can build."""
    with pn.use_backend("numpy"):
        built = [*every_layer_model().layers, *pool_model().layers, L.BatchNorm1d(3, affine=False),
                 L.BatchNorm2d(5, track_running_stats=False), L.Linear(3, 2, bias=False),
                 L.MultiHeadAttention(8, 2), L.MultiHeadAttention(6, 3, bias=False), *sequence_model().layers,
                 L.LayerNorm((2, 3)), L.LayerNorm(4, bias=False), L.LayerNorm(3, elementwise_affine=False), L.Conv1d(2, 3, 3),
                 L.GELU(), L.SiLU(), L.LSTM(3, 4, num_layers=2), L.GRU(2, 3, bias=False),
                 L.Residual([L.Linear(3, 3), L.BatchNorm1d(3)]), L.Parallel(L.Linear(3, 2), [L.Linear(3, 1)])]  # fmt: skip
    for layer in built:
        held = sum(int(np.prod(b.shape)) for _, b in (*layer.named_parameters(), *layer.named_buffers()))
        assert serialization._declared_values(type(layer), layer.get_config()) == held, repr(layer)
    assert {type(layer).__name__ for layer in built} == set(serialization._registry())  # a new layer class joins this list


def test_a_foreign_file_is_refused_from_its_first_bytes(tmp_path: Path) -> None:
    """A large file that is not a checkpoint is never read whole: its first bytes are enough to refuse it."""
    path = tmp_path / "video.mp4"
    with open(path, "wb") as f:
        f.write(b"\x00\x00\x00\x18ftypmp42" + bytes(52))
        f.truncate(600 * 2**20)  # 600 MiB, sparse: no disk space taken
    peak = _peak_memory_to_refuse(path, "not a portnn checkpoint")
    assert peak < 2**20, f"{peak} bytes allocated to refuse a foreign file"


def _peak_memory_to_refuse(path: Path, match: str) -> int:
    """The most memory (bytes, Python's allocations) that read_file takes to refuse ``path`` with ``match``."""
    tracemalloc.start()
    try:
        with pytest.raises(CheckpointError, match=match):
            read_file(path)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_foreign_safetensors_file_is_refused_from_its_header(tmp_path: Path) -> None:
    """Its header says it is not portnn's: its data is never read."""
    path = tmp_path / "foreign.safetensors"
    safetensors.numpy.save_file({"w": np.zeros((1024, 1024, 8), np.float32)}, str(path))  # 32 MiB of data
    peak = _peak_memory_to_refuse(path, "a safetensors file that portnn did not write")
    assert peak < 2**20, f"{peak} bytes allocated to refuse a foreign safetensors file"


def test_trailing_bytes_after_the_data_are_refused(tmp_path: Path) -> None:
    path = _good_file(tmp_path)
    path.write_bytes(path.read_bytes() + b"\x00" * 16)
    with pytest.raises(CheckpointError, match="16 bytes follow the end of its tensor data"):
        read_file(path)


# -- a saved model keeps what compile() was given, as Keras's does ----------------------------
def test_a_loaded_model_evaluates_and_trains_without_compile(case: Any, tmp_path: Path) -> None:
    x = np.random.default_rng(0).normal(size=(40, 3)).astype(np.float32)
    y = np.arange(40) % 2
    model = pn.Sequential([L.Linear(3, 4), L.ReLU(), L.Linear(4, 2)], seed=0)
    model.compile(loss=pn.losses.CrossEntropy(label_smoothing=0.1), optimizer=pn.optim.Adam(lr=0.005, amsgrad=True))
    model.fit(x, y, epochs=2, verbose=0)
    model.save(tmp_path / "model.safetensors")
    loaded = pn.load(tmp_path / "model.safetensors")
    assert repr(loaded._loss) == "CrossEntropy(label_smoothing=0.1)"
    assert loaded._optimizer.hyperparameters() == model._optimizer.hyperparameters()
    assert loaded.evaluate(x, y)["loss"] == pytest.approx(model.evaluate(x, y)["loss"], rel=1e-6)
    assert loaded.fit(x, y, epochs=1, verbose=0).epoch == [0]
    # a training checkpoint holds the same, so pn.load of one evaluates too
    model.fit(x, y, epochs=1, verbose=0, checkpoint=tmp_path / "run")
    assert pn.load(tmp_path / "run" / "checkpoint.safetensors").evaluate(x, y)["loss"] > 0
    # a model never compiled loads without a loss, as before
    bare = pn.Sequential([L.Linear(3, 2)], seed=0)
    bare.save(tmp_path / "bare.safetensors")
    assert pn.load(tmp_path / "bare.safetensors")._loss is None


def test_a_saved_loss_is_looked_up_among_portnn_s_never_imported(tmp_path: Path) -> None:
    model = pn.Sequential([L.Linear(3, 2)], seed=0).compile(loss="mse", optimizer="sgd")
    model.save(tmp_path / "m.safetensors")
    tensors, meta = read_file(tmp_path / "m.safetensors")
    assert meta["compile"] == {"loss": {"class_name": "MSE", "config": {"reduction": "mean"}},
                               "optimizer": {"class_name": "SGD", "config": pn.optim.SGD().hyperparameters()}}  # fmt: skip
    for evil in ("os.system", "Loss", "__import__"):
        meta["compile"]["loss"]["class_name"] = evil
        write_file(tmp_path / "m.safetensors", tensors, meta)
        with pytest.raises(CheckpointError, match=rf"its loss {evil!r} is not one of portnn's"):
            pn.load(tmp_path / "m.safetensors")
    meta["compile"]["loss"] = {"class_name": "MSE", "config": {"reduction": "median"}}
    write_file(tmp_path / "m.safetensors", tensors, meta)
    with pytest.raises(CheckpointError, match=r"its loss MSE\(.*\) cannot be rebuilt: MSE: reduction must be"):
        pn.load(tmp_path / "m.safetensors")


def test_a_model_without_parameters_saves_a_file_with_no_tensors_and_loads_it(tmp_path: Path) -> None:
    """A file of metadata alone (safetensors 0.4.0-0.4.3 wrote its header broken: the floor is 0.4.4)."""
    model = pn.Sequential([pn.layers.ReLU(), pn.layers.Flatten()], input_shape=(2, 3))
    model.save(tmp_path / "empty.safetensors")
    loaded = pn.load(tmp_path / "empty.safetensors")
    assert loaded.get_config() == model.get_config() and loaded.state_dict() == {}

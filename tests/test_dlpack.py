"""Arrays of another library reach a model through DLPack, in place, where the devices allow it.

A torch CPU tensor handed to a NumPy model is shared, not copied (the NumPy array the model
reads *is* the tensor's memory); an array on another device is refused with a message that
names both devices and the fix. CUDA cannot run here, so a DLPack producer that reports a
CUDA device stands in for a GPU array, and torch's ``meta`` device (which DLPack cannot name)
for a device DLPack cannot reach.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import portnn as pn
from portnn import backends
from portnn.backends.torch import TorchAdapter

torch = pytest.importorskip("torch", reason="the DLPack tests hand torch tensors to models: pip install torch==2.13.0")


def _model() -> pn.Sequential:
    return pn.Sequential([pn.layers.Linear(4, 8), pn.layers.ReLU(), pn.layers.Linear(8, 3)], seed=0)


class HostProducer:
    """An array of a library portnn has no adapter for: it speaks DLPack only (over a NumPy array)."""

    def __init__(self, a: np.ndarray) -> None:
        self._a = a

    def __dlpack__(self, **kwargs: Any) -> Any:
        return self._a.__dlpack__(**kwargs)

    def __dlpack_device__(self) -> Any:
        return self._a.__dlpack_device__()


class CudaProducer:
    """A DLPack producer on CUDA device 1: what a CuPy array or a CUDA tensor says. Never exported here."""

    def __dlpack__(self, **kwargs: Any) -> Any:
        raise AssertionError("a CUDA array must not be exported into a CPU model")

    def __dlpack_device__(self) -> tuple[int, int]:
        return (2, 1)


def test_a_torch_cpu_tensor_is_shared_with_a_numpy_model_not_copied() -> None:
    with pn.use_backend("numpy"):
        model = _model()
        t = torch.randn(6, 4)
        x = backends.as_backend_array(t, model.backend, what="x")
        assert isinstance(x, np.ndarray) and np.shares_memory(x, t.numpy())
        t[0, 0] = 123.0  # one memory: the model sees the tensor's writes
        assert x[0, 0] == 123.0


def test_fit_evaluate_predict_take_torch_tensors_without_a_host_round_trip(monkeypatch: pytest.MonkeyPatch) -> None:
    x = np.random.default_rng(0).normal(size=(32, 4)).astype(np.float32)
    y = np.arange(32) % 3
    with pn.use_backend("numpy"):
        expected_model, model = _model(), _model()
        kw = {"loss": pn.losses.CrossEntropy(), "batch_size": 8, "epochs": 2, "verbose": 0}
        expected = expected_model.fit(x, y, optimizer=pn.optim.SGD(lr=0.1), **kw)
        tx, ty = torch.from_numpy(x.copy()), torch.from_numpy(y.copy())

        def no_host_copy(*args: Any, **kwargs: Any) -> Any:
            raise AssertionError("the tensor went through a host copy")

        # every other way to the host is closed: portnn's (to_numpy) and NumPy's (__array__)
        monkeypatch.setattr(TorchAdapter, "to_numpy", no_host_copy)
        monkeypatch.setattr(torch.Tensor, "__array__", no_host_copy)
        history = model.fit(tx, ty, optimizer=pn.optim.SGD(lr=0.1), **kw)
        assert history["loss"] == expected["loss"]  # bit for bit: the same numbers were read
        assert model.evaluate(tx, ty) == expected_model.evaluate(x, y)
        np.testing.assert_array_equal(model.predict(tx), expected_model.predict(x))


@pytest.mark.parametrize("dtype", [torch.float64, torch.int64, torch.bool])
def test_other_dtypes_are_shared_then_cast_like_host_data(dtype: Any) -> None:
    with pn.use_backend("numpy"):
        model = _model()
        t = (torch.arange(12).reshape(3, 4) % 3).to(dtype)
        np.testing.assert_array_equal(model.predict(t), model.predict(t.numpy()))


def test_an_array_of_a_library_without_an_adapter_is_shared_through_dlpack() -> None:
    with pn.use_backend("numpy"):
        model = _model()
        a = np.random.default_rng(1).normal(size=(5, 4)).astype(np.float32)
        x = backends.as_backend_array(HostProducer(a), model.backend)
        assert np.shares_memory(x, a)
        np.testing.assert_array_equal(model.predict(HostProducer(a)), model.predict(a))


def test_a_torch_cpu_tensor_into_each_backend(case: Any) -> None:
    """Shared where the model's device is the host CPU (NumPy, torch, array-api-strict's CPU_DEVICE); refused on device1."""
    t = torch.randn(5, 4)
    if case.name == "array_api_strict":  # the model on the fake device1: DLPack cannot reach it
        with pytest.raises(TypeError, match=r"torch array on cpu .* live on array_api_strict:device1: another device"):
            backends.as_backend_array(t, case.backend)
        cpu = pn.backends._resolve("array_api_strict", "CPU_DEVICE")
        shared = backends.as_backend_array(t, cpu)
        assert np.shares_memory(np.asarray(shared), t.numpy())
        return
    x = backends.as_backend_array(t, case.backend)
    assert case.backend.adapter.owns(x)
    assert np.shares_memory(backends.to_numpy(x), t.numpy())


def test_numpy_data_into_a_torch_model_is_shared_too() -> None:
    a = np.ones((3, 4), dtype=np.float32)
    t = backends.as_backend_array(a, pn.backends._resolve("torch", "cpu"))
    assert isinstance(t, torch.Tensor) and np.shares_memory(t.numpy(), a)


def test_an_array_on_a_cuda_device_into_a_cpu_model_names_both_devices_and_the_fix() -> None:
    with pn.use_backend("numpy"):
        model = _model()
        with pytest.raises(TypeError) as info:
            model.predict(CudaProducer())
    message = str(info.value)
    assert "Sequential.predict: x is a test_dlpack.CudaProducer array on cuda:1" in message
    assert "live on numpy:cpu: another device" in message
    assert "Copy the data to the host first" in message and "move the model to its device" in message


def test_a_torch_tensor_on_a_device_dlpack_cannot_name_is_refused() -> None:
    with pn.use_backend("numpy"):
        model = _model()
        with pytest.raises(TypeError) as info:
            model.predict(torch.empty(5, 4, device="meta"))
    message = str(info.value)
    assert "x is a torch array on meta but the model's parameters live on numpy:cpu" in message
    assert "portnn.backends.to_numpy(x)" in message and "model.to('torch', device='meta')" in message


def test_device2_data_into_a_device1_model_stays_an_error_naming_both_devices() -> None:
    import array_api_strict as xs

    with pn.use_backend("array_api_strict", "device1"):
        model = _model()
    with pytest.raises(TypeError) as info:
        model.predict(xs.ones((2, 4), device=xs.Device("device2")))
    message = str(info.value)
    assert "x is a array_api_strict array on device2" in message and "array_api_strict:device1" in message
    assert "x.to_device(model.backend.device)" in message and "model.to('array_api_strict', device='device2')" in message


def test_the_adapters_say_which_devices_dlpack_reaches() -> None:
    assert backends.get_adapter("numpy").dlpack_device("cpu") == (1, 0)
    assert backends.get_adapter("torch").dlpack_device("cpu") == (1, 0)
    assert backends.get_adapter("torch").dlpack_device("meta") is None
    strict = backends.get_adapter("array_api_strict")
    assert strict.dlpack_device("CPU_DEVICE") == (1, 0)
    assert strict.dlpack_device("device1") is None and strict.dlpack_device("device2") is None

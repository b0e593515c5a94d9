"""Backend selection and the per-library adapters.

The global backend (a :class:`contextvars.ContextVar`) decides only where *new* arrays are
born when there is no input to follow: parameters at construction, host data handed to a
model, loaded weights. Every operation infers its namespace and device from its inputs.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ._base import Adapter, BackendUnavailableError
from .array_api_strict import StrictAdapter
from .cupy import CupyAdapter
from .ndonnx import NdonnxAdapter
from .numpy import NumpyAdapter
from .torch import TorchAdapter

__all__ = [
    "Adapter",
    "Backend",
    "BackendUnavailableError",
    "adapter_for",
    "available_backends",
    "get_adapter",
    "get_backend",
    "set_backend",
    "to_numpy",
    "use_backend",
]

#: Every adapter portnn knows, by name: the backends, and ndonnx (an export target: its arrays record an ONNX graph).
_ADAPTERS: dict[str, Adapter] = {
    a.name: a for a in (NumpyAdapter(), CupyAdapter(), TorchAdapter(), StrictAdapter(), NdonnxAdapter())
}
_ALIASES = {"np": "numpy", "cp": "cupy", "pytorch": "torch", "strict": "array_api_strict"}
NAMES = (*(name for name, a in _ADAPTERS.items() if a.trainable), "auto")


@dataclass(frozen=True)
class Backend:
    """A backend and a device on it: where new arrays are born."""

    adapter: Adapter
    device: Any

    @property
    def name(self) -> str:
        return self.adapter.name

    @property
    def xp(self) -> Any:
        return self.adapter.xp

    def __str__(self) -> str:
        return f"{self.name}:{self.adapter.device_name(self.device)}"


def get_adapter(name: str) -> Adapter:
    """Return the adapter called ``name`` (``"numpy"``, ``"cupy"``, ``"torch"``, ``"array_api_strict"``; ``"ndonnx"``)."""
    key = _ALIASES.get(name, name)
    if key not in _ADAPTERS:
        raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(map(repr, NAMES))}")
    return _ADAPTERS[key]


def _backend_adapter(name: str) -> Adapter:
    """:func:`get_adapter`, refusing an adapter on which models cannot live (an export target)."""
    adapter = get_adapter(name)
    if not adapter.trainable:
        raise ValueError(
            f"{adapter.name!r} is not a backend: its arrays record an ONNX graph for model.export_onnx(...), and a model "
            f"cannot live or train on them; choose one of {', '.join(map(repr, NAMES))}"
        )
    return adapter


def adapter_for(x: Any) -> Adapter:
    """Return the adapter of the library that owns array ``x``."""
    adapter = _OWNER.get(type(x))
    if adapter is None:
        adapter = next((a for a in _ADAPTERS.values() if a.owns(x)), None)
        if adapter is None:
            raise TypeError(
                f"expected an array of {', '.join(n for n in NAMES if n != 'auto')}; got {type(x).__module__}.{type(x).__name__}"
            )
        _OWNER[type(x)] = adapter
    return adapter


#: The adapter of each array type met so far (ownership goes by type): optimizers ask once per array per step.
_OWNER: dict[type, Adapter] = {}


def to_numpy(x: Any) -> Any:
    """Move any supported array to the host as a NumPy array: the one way out of a device."""
    return adapter_for(x).to_numpy(x)


def _resolve(name: str, device: Any = None) -> Backend:
    if name == "auto":
        cupy = _ADAPTERS["cupy"]
        adapter = cupy if cupy.is_available() else _ADAPTERS["numpy"]
        return Backend(adapter, adapter.device(device if adapter is cupy else None))
    adapter = _backend_adapter(name)
    why = adapter.import_error()
    if why is not None:
        hint = (
            " Use set_backend('auto') to take CuPy when a CUDA GPU works and NumPy otherwise." if adapter.name == "cupy" else ""
        )
        raise BackendUnavailableError(f"backend {adapter.name!r} is unavailable: {why}.{hint}")
    return Backend(adapter, adapter.device(device))


_current: contextvars.ContextVar[Backend | None] = contextvars.ContextVar("portnn_backend", default=None)

#: The environment variable that sets the starting backend: ``name`` or ``name:device``.
ENV_VAR = "PORTNN_BACKEND"


def _environment() -> tuple[str | None, str, str | None]:
    """``PORTNN_BACKEND`` as ``(its value, backend name, device)``, split at the first colon.

    ``"torch:cuda:0"`` is torch on ``cuda:0``; unset or empty is ``(None, "numpy", None)``. The
    one parser of the variable: :func:`get_backend` and ``portnn train`` read it the same way.
    """
    value = os.environ.get(ENV_VAR, "").strip() or None
    name, _, device = (value or "numpy").partition(":")
    return value, name.strip(), device.strip() or None


def _environment_error(value: str | None, exc: Exception) -> Exception:
    """``exc`` (from resolving ``PORTNN_BACKEND``'s value) again, its message prefixed with the variable."""
    return type(exc)(f"{ENV_VAR}={value!r} (name or name:device): {exc}")


def get_backend() -> Backend:
    """Return the current :class:`Backend` (name, device, namespace).

    Without a call to :func:`set_backend` it is taken from the ``PORTNN_BACKEND`` environment
    variable (``name`` or ``name:device``, e.g. ``torch:cuda:0``), else NumPy. A value that
    cannot run here raises the error :func:`set_backend` would, naming the variable.
    """
    backend = _current.get()
    if backend is None:
        value, name, device = _environment()
        try:
            backend = _resolve(name, device)
        except (BackendUnavailableError, ValueError) as exc:
            raise _environment_error(value, exc) from exc
        _current.set(backend)
    return backend


def set_backend(name: str, device: Any = None) -> Backend:
    """Choose where new arrays are born: ``"numpy"``, ``"cupy"``, ``"torch"``, ``"array_api_strict"`` or ``"auto"``.

    Parameters
    ----------
    name
        The backend. ``"auto"`` takes CuPy when a CUDA device works, else NumPy.
    device
        A device of that backend: ``"cuda:1"`` (cupy, torch), ``"device1"`` (array_api_strict).
        None takes the backend's default device.

    Returns
    -------
    Backend
        The backend now in force.

    Raises
    ------
    BackendUnavailableError
        When the library is missing or, for CuPy, no CUDA device works.

    Examples
    --------
    >>> import portnn as pn
    >>> pn.set_backend("numpy").name
    'numpy'
    """
    backend = _resolve(name, device)
    _current.set(backend)
    return backend


@contextlib.contextmanager
def use_backend(name: str, device: Any = None) -> Iterator[Backend]:
    """Use a backend inside a ``with`` block; the previous one comes back on exit, exceptions included.

    Examples
    --------
    >>> import portnn as pn
    >>> with pn.use_backend("numpy") as b:
    ...     print(b.name)
    numpy
    """
    token = _current.set(_resolve(name, device))
    try:
        yield _current.get()
    finally:
        _current.reset(token)


def available_backends() -> list[str]:
    """Names of the backends that can run here (CuPy only where a CUDA device works)."""
    return [name for name, adapter in _ADAPTERS.items() if adapter.trainable and adapter.is_available()]


def host_rng(seed: Any = None) -> Any:
    """A seeded host generator (NumPy's PCG64): the one source of initial weights and shuffling.

    Drawing on the host makes the same seed give the same model and batches on every backend.
    """
    import numpy as np

    return np.random.default_rng(seed)


def _describe(x: Any) -> str:
    try:
        adapter = adapter_for(x)
    except TypeError:
        return type(x).__name__
    return f"{adapter.name} array on {adapter.device_name(_device_of(x))}"


def _device_of(x: Any) -> Any:
    from array_api_compat import device

    return device(x)


def as_backend_array(x: Any, backend: Backend, *, what: str = "x", where: str = "") -> Any:
    """Bring data handed to a model onto the model's backend and device.

    NumPy arrays, Python sequences and NumPy-convertible objects (host data) are copied onto
    ``backend``'s device (no copy for NumPy on NumPy, nor for torch on the CPU). Arrays already
    on that backend and device pass through. An array of another library on the model's device
    is taken in place through DLPack, without a copy (a torch CPU tensor into a NumPy model, a
    CuPy array into a torch model on the same GPU). Anything else, an array on another device
    (or on array-api-strict's fake devices, which stand for one), raises a TypeError that names
    both devices and says how to move the data or the model.

    Examples
    --------
    >>> import numpy as np
    >>> import portnn as pn
    >>> from portnn.backends import as_backend_array
    >>> host = np.ones((2, 3), dtype=np.float32)
    >>> as_backend_array(host, pn.get_backend()) is host
    True
    """
    import numpy as np

    adapter = backend.adapter
    if adapter.owns(x):
        dev = _device_of(x)
        if adapter.name == "numpy" or dev == backend.device:
            return x
        raise TypeError(
            f"{where}{what} is a {_describe(x)} but the model's parameters live on "
            f"{backend.name}:{adapter.device_name(backend.device)}. Move the data with "
            f"{what}.to_device(model.backend.device) or move the model with "
            f"model.to({backend.name!r}, device={adapter.device_name(dev)!r})."
        )
    if isinstance(x, np.ndarray | np.generic) or not hasattr(x, "__array_namespace__") and not hasattr(x, "__dlpack__"):
        try:
            host = np.asarray(x)
        except Exception as exc:
            raise TypeError(
                f"{where}{what} is ragged or not numeric, so it is not an array ({exc}); pass a rectangular numeric array"
            ) from exc
        if host.dtype == object:
            raise TypeError(
                f"{where}{what} is ragged or not numeric (NumPy made an object array); pass a rectangular numeric array"
            )
        return adapter.from_numpy(host, backend.device)
    return _from_dlpack(x, backend, what=what, where=where)


#: DLPack's device types (``DLDeviceType``), for messages about arrays of libraries portnn has no adapter for.
_DLPACK_DEVICES = {1: "cpu", 2: "cuda", 3: "cuda_host", 4: "opencl", 7: "vulkan", 8: "metal", 10: "rocm", 13: "cuda_managed"}


def _from_dlpack(x: Any, backend: Backend, *, what: str, where: str) -> Any:
    """``x``, an array of another library, on ``backend`` through DLPack when both are on one device; else a TypeError."""
    adapter = backend.adapter
    model_at = f"{backend.name}:{adapter.device_name(backend.device)}"
    try:
        source = adapter_for(x)
    except TypeError:
        source = None
    if source is not None:
        dev = _device_of(x)
        here, described = source.dlpack_device(dev), _describe(x)
        fix = (
            f"Copy the data to the host first (portnn.backends.to_numpy({what})) or move the model with "
            f"model.to({source.name!r}, device={source.device_name(dev)!r})"
        )
    else:  # a library portnn has no adapter for: DLPack alone says where the array is
        try:
            kind, index = x.__dlpack_device__()
            here = (int(kind), int(index))
        except Exception:
            here = None
        name = _DLPACK_DEVICES.get(here[0], f"DLPack device type {here[0]}") if here else "a device DLPack cannot name"
        described = f"{type(x).__module__.split('.')[0]}.{type(x).__name__} array on {name}"
        described += f":{here[1]}" if here and here[0] != 1 else ""
        fix = "Copy the data to the host first with its own library (as a NumPy array), or move the model to its device"
    target = adapter.dlpack_device(backend.device)
    if here is None or here != target:
        raise TypeError(
            f"{where}{what} is a {described} but the model's parameters live on {model_at}: another device, whose memory "
            f"DLPack cannot share. {fix}."
        )
    try:
        return adapter.from_dlpack(x, backend.device)
    except (BufferError, RuntimeError, TypeError, ValueError) as exc:
        raise TypeError(
            f"{where}{what} is a {described}, on the model's device ({model_at}), but DLPack cannot share it ({exc}). "
            f"Copy it to the host first (portnn.backends.to_numpy({what}))."
        ) from exc


def adapter_for_name(x: Any) -> str:
    try:
        return adapter_for(x).name
    except TypeError:
        return type(x).__module__.split(".")[0]

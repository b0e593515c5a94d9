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

_ADAPTERS: dict[str, Adapter] = {a.name: a for a in (NumpyAdapter(), CupyAdapter(), TorchAdapter(), StrictAdapter())}
_ALIASES = {"np": "numpy", "cp": "cupy", "pytorch": "torch", "strict": "array_api_strict"}
NAMES = (*_ADAPTERS, "auto")


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
    """Return the adapter called ``name`` (``"numpy"``, ``"cupy"``, ``"torch"``, ``"array_api_strict"``)."""
    key = _ALIASES.get(name, name)
    if key not in _ADAPTERS:
        raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(map(repr, NAMES))}")
    return _ADAPTERS[key]


def adapter_for(x: Any) -> Adapter:
    """Return the adapter of the library that owns array ``x``."""
    adapter = _OWNER.get(type(x))
    if adapter is None:
        adapter = next((a for a in _ADAPTERS.values() if a.owns(x)), None)
        if adapter is None:
            raise TypeError(f"expected an array of {', '.join(_ADAPTERS)}; got {type(x).__module__}.{type(x).__name__}")
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
    adapter = get_adapter(name)
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
    return [name for name, adapter in _ADAPTERS.items() if adapter.is_available()]


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
    ``backend``'s device (no copy for NumPy on NumPy). Arrays already on that backend and
    device pass through. Arrays of another library or device raise a TypeError that says how
    to move them: host data is the only thing moved implicitly.
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
    raise TypeError(
        f"{where}{what} is a {_describe(x)} but the model's parameters live on "
        f"{backend.name}:{adapter.device_name(backend.device)}. Pass NumPy data (portnn.backends.to_numpy(x)) "
        f"or move the model with model.to({adapter_for_name(x)!r})."
    )


def adapter_for_name(x: Any) -> str:
    try:
        return adapter_for(x).name
    except TypeError:
        return type(x).__module__.split(".")[0]

"""The counting NumPy array of :class:`portnn.testing.OpCounter` (here: only the backends name NumPy)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

#: The counters in force (innermost last): each has ``count(name)``, ``count_read(name)`` and ``_depth``.
ACTIVE: list[Any] = []

#: Namespace functions that make views (no kernel): not counted.
_VIEWS = ("reshape", "swapaxes", "transpose", "permute_dims", "expand_dims", "squeeze", "broadcast_to", "moveaxis")
_TRACED: list[Any] = []


def traced_class() -> Any:
    """The counting subclass of ``numpy.ndarray`` (made once, on first use: NumPy is imported only then)."""
    if _TRACED:
        return _TRACED[0]
    import numpy as np

    def plain(x: Any) -> Any:
        return x.view(np.ndarray) if isinstance(x, Traced) else x

    def plain_all(values: Any) -> Any:
        if isinstance(values, (list, tuple)):
            return type(values)(plain_all(v) for v in values)
        return plain(values)

    def advanced(key: Any) -> bool:
        keys = key if isinstance(key, tuple) else (key,)
        return any(isinstance(k, (np.ndarray, list)) for k in keys)

    class Traced(np.ndarray):
        @staticmethod
        def wrap(x: Any) -> Any:
            if isinstance(x, np.generic):
                x = np.asarray(x)
            if isinstance(x, np.ndarray) and not isinstance(x, Traced):
                return x.view(Traced)
            if isinstance(x, tuple):
                return tuple(Traced.wrap(v) for v in x)
            return x

        @staticmethod
        def unwrap(x: Any) -> Any:
            return plain(x)

        def _run(self, name: str, call: Callable[[], Any]) -> Any:
            counter = ACTIVE[-1] if ACTIVE else None
            if counter is None:
                return call()
            counter.count(name)
            counter._depth += 1
            try:
                return call()
            finally:
                counter._depth -= 1

        def __array_ufunc__(self, ufunc: Any, method: str, *inputs: Any, **kwargs: Any) -> Any:
            out = kwargs.get("out")
            if out is not None:
                kwargs["out"] = tuple(plain(o) for o in out)
            args = [plain(x) for x in inputs]
            name = ufunc.__name__ if method == "__call__" else f"{ufunc.__name__}.{method}"
            result = self._run(name, lambda: getattr(ufunc, method)(*args, **kwargs))
            if out is not None:
                return out[0] if len(out) == 1 else out
            return Traced.wrap(result)

        def __array_function__(self, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
            call = lambda: func(*plain_all(args), **{k: plain_all(v) for k, v in kwargs.items()})  # noqa: E731
            if func.__name__ in _VIEWS:  # a view: no kernel
                return Traced.wrap(call())
            return Traced.wrap(self._run(func.__name__, call))

        def __getitem__(self, key: Any) -> Any:
            key = plain_all(key)
            if advanced(key):
                return Traced.wrap(self._run("getitem", lambda: plain(self)[key]))
            return Traced.wrap(super().__getitem__(key))

        def __setitem__(self, key: Any, value: Any) -> None:
            key, value = plain_all(key), plain(value)
            self._run("setitem", lambda: plain(self).__setitem__(key, value))

        def astype(self, *args: Any, **kwargs: Any) -> Any:
            return Traced.wrap(self._run("astype", lambda: plain(self).astype(*args, **kwargs)))

        def copy(self, *args: Any, **kwargs: Any) -> Any:
            return Traced.wrap(self._run("copy", lambda: plain(self).copy(*args, **kwargs)))

        def _read(self, name: str, call: Callable[[], Any]) -> Any:
            counter = ACTIVE[-1] if ACTIVE else None
            if counter is not None:
                counter.count_read(name)
            return call()

        def __float__(self) -> float:
            return self._read("float", lambda: float(plain(self)))

        def __int__(self) -> int:
            return self._read("int", lambda: int(plain(self)))

        def __index__(self) -> int:
            return self._read("index", lambda: plain(self).__index__())

        def __bool__(self) -> bool:
            return self._read("bool", lambda: bool(plain(self)))

        def item(self, *args: Any) -> Any:
            return self._read("item", lambda: plain(self).item(*args))

        def tolist(self) -> Any:
            return self._read("tolist", lambda: plain(self).tolist())

        def __format__(self, spec: str) -> str:
            return self._read("format", lambda: format(plain(self), spec))

        def __dlpack__(self, *args: Any, **kwargs: Any) -> Any:
            return self._read("dlpack", lambda: plain(self).__dlpack__(*args, **kwargs))

    _TRACED.append(Traced)
    return Traced


#: PyTorch functions that compute nothing on the device (metadata, views): not counted.
_TORCH_FREE = frozenset(
    "__get__ __set__ dim size numel stride is_contiguous element_size data_ptr result_type can_cast is_floating_point "
    "is_complex __len__ __hash__ view view_as reshape reshape_as permute transpose t expand expand_as unsqueeze squeeze "
    "flatten unflatten as_strided narrow select unbind detach requires_grad_ get_device type __reduce_ex__ "
    "__deepcopy__ __setstate__ __array_namespace__ __dlpack_device__ swapaxes movedim moveaxis broadcast_to "
    "is_same_size is_set_to storage_offset untyped_storage __contains__ __iter__".split()
)
#: PyTorch functions that bring values to the host (a wait for the device on a GPU).
_TORCH_READS = frozenset("item __float__ __int__ __bool__ __index__ tolist numpy __format__ __repr__ __dlpack__ cpu".split())


def torch_mode(counter: Any) -> Any:
    """A ``TorchFunctionMode`` that counts every PyTorch call on any tensor (nested calls not again) into ``counter``."""
    import torch
    from torch.overrides import TorchFunctionMode

    class Counting(TorchFunctionMode):
        def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            name = getattr(func, "__name__", repr(func))
            if name in _TORCH_READS:
                counter.count_read(name)
            elif name == "__getitem__":
                key = args[1] if len(args) > 1 else None
                keys = key if isinstance(key, tuple) else (key,)
                if any(isinstance(k, (torch.Tensor, list)) for k in keys):
                    counter.count("getitem")
            elif name not in _TORCH_FREE:
                counter.count(name)
            return func(*args, **(kwargs or {}))

    return Counting()

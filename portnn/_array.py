"""Small array-API helpers shared by the core: namespace inference with clear errors, dtypes.

The bottom of the import graph: it imports no other portnn module.
"""

from __future__ import annotations

from typing import Any

from array_api_compat import array_namespace, device, is_array_api_obj

__all__ = ["dtype_name", "namespace", "resolve_dtype", "scalar"]

FLOAT_DTYPES = ("float32", "float64")


def namespace(*arrays: Any, where: str = "") -> Any:
    """Return the array namespace of ``arrays``; raise a TypeError that names ``where`` if they mix libraries."""
    for a in arrays:
        if a is not None and not is_array_api_obj(a):
            raise TypeError(
                f"{where}got a {type(a).__name__}, not an array; pass an array (np.asarray(x, dtype='float32')). "
                "model.fit/evaluate/predict take lists and other host data and convert them"
            )
    try:
        return array_namespace(*arrays)
    except TypeError as exc:
        kinds = sorted({f"{type(a).__module__.split('.')[0]}.{type(a).__name__}" for a in arrays if a is not None})
        raise TypeError(
            f"{where}got arrays from different libraries ({', '.join(kinds)}); "
            "put inputs and parameters on one backend (model.to(...), or portnn.backends.to_numpy(x))"
        ) from exc


def dtype_name(dtype: Any) -> str:
    """Name of a dtype of any library (``numpy.float32``, ``torch.float32``, ``"float32"`` -> ``"float32"``)."""
    if isinstance(dtype, str):
        return dtype
    name = getattr(dtype, "name", None)  # numpy dtypes, array_api_strict dtypes
    if isinstance(name, str):
        return name
    name = getattr(dtype, "__name__", None)  # numpy scalar types (np.float32)
    if isinstance(name, str):
        return name
    return str(dtype).rsplit(".", 1)[-1]  # torch.float32


def resolve_dtype(xp: Any, dtype: Any) -> Any:
    """The ``xp`` dtype object for a dtype of any library or a name; float32 when None."""
    name = "float32" if dtype is None else dtype_name(dtype)
    if name not in FLOAT_DTYPES:
        raise ValueError(f"portnn parameters are float32 or float64; got dtype={dtype!r}")
    return getattr(xp, name)


def scalar(xp: Any, value: float, like: Any) -> Any:
    """A 0-d array of ``like``'s dtype and device holding ``value``."""
    return xp.asarray(value, dtype=like.dtype, device=device(like))

"""Small array-API helpers shared by the core: namespace inference with clear errors, dtypes."""

from __future__ import annotations

import operator
from typing import Any

from array_api_compat import array_namespace, device, is_array_api_obj

__all__ = ["check_float", "check_input", "describe", "dtype_name", "namespace", "resolve_dtype", "scalar"]

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


def describe(x: Any) -> str:
    """``"a torch array on cpu"``-style words for where array ``x`` lives, for error messages."""
    from .backends import _describe

    return _describe(x)


def check_float(where: str, x: Any) -> Any:
    """Check that ``x`` is a real floating array (what every layer takes); return its namespace.

    Layers never convert: integer, boolean, complex or string input raises a TypeError naming
    the layer (``where``), the dtype received and the cast. ``Sequential.fit/evaluate/predict``
    convert integer and boolean data to the model's float dtype before any layer sees it.
    """
    xp = namespace(x, where=f"{where}: ")
    if not xp.isdtype(x.dtype, "real floating"):
        raise TypeError(
            f"{where} got input of dtype {dtype_name(x.dtype)}: expected float32 or float64; cast it "
            "(xp.astype(x, xp.float32)) — model.fit/predict/evaluate convert integer and boolean data for you"
        )
    return xp


def check_input(where: str, x: Any, param: Any) -> Any:
    """Check that ``x`` can meet parameter array ``param``: same library, device and dtype.

    Returns the namespace. Errors name the layer (``where``), what was received and the fix.
    """
    if is_array_api_obj(x):
        try:
            array_namespace(x, param)
        except TypeError:
            from .backends import adapter_for_name

            raise TypeError(
                f"{where}: got arrays from different libraries: the input is a {describe(x)}, the parameters are a "
                f"{describe(param)}; move the input (portnn.backends.to_numpy(x) for NumPy) or the layer "
                f"(layer.to({adapter_for_name(x)!r}))"
            ) from None
    xp = namespace(x, param, where=f"{where}: ")
    if device(x) != device(param):
        raise ValueError(
            f"{where} got input on device {device(x)!r} but its parameters are on {device(param)!r}; "
            "move the input with x.to_device(...) or the model with model.to(backend, device=...)"
        )
    if x.dtype != param.dtype:
        raise TypeError(
            f"{where} got input of dtype {dtype_name(x.dtype)} but its parameters are "
            f"{dtype_name(param.dtype)}; cast the input (xp.astype(x, xp.{dtype_name(param.dtype)})) — "
            "model.fit/predict/evaluate do this for you"
        )
    return xp


def check_int(where: str, name: str, value: Any, minimum: int = 1) -> int:
    """``value`` as an int; a ValueError naming ``where`` unless it is an integer (NumPy ints too, not bools) >= ``minimum``.

    A float with a whole value gets the hint to pass the int (``batch_size=2.0`` -> ``batch_size=2``).
    """
    try:
        number = operator.index(value) if not isinstance(value, bool) else None
    except TypeError:
        number = None
    if number is None or number < minimum:
        whole = isinstance(value, float) and value.is_integer() and value >= minimum
        hint = f" (a {type(value).__name__}; pass {name}={int(value) if whole else max(minimum, 1)})" if number is None else ""
        raise ValueError(f"{where}: {name} must be an integer >= {minimum}; got {value!r}{hint}")
    return number

"""Small array-API helpers shared by the core: namespace inference with clear errors, dtypes.

The bottom of the import graph: it imports no other portnn module.
"""

from __future__ import annotations

import math
import numbers
import operator
from typing import Any

from array_api_compat import array_namespace, device, is_array_api_obj

__all__ = ["check_bool", "check_int", "check_number", "dtype_name", "namespace", "resolve_dtype", "scalar"]

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


def check_number(where: str, name: str, value: Any, *, minimum: float = -math.inf, maximum: float = math.inf) -> float:
    """``value`` as a float; a ValueError naming ``where`` unless it is a finite real number in ``[minimum, maximum]``.

    NumPy scalars (``np.float32(0.1)``, ``np.int64(2)``) are numbers; bools are not.

    Examples
    --------
    >>> check_number("fit", "l2", 0.5, minimum=0.0)
    0.5
    >>> check_number("fit", "l2", True, minimum=0.0)
    Traceback (most recent call last):
    ...
    ValueError: fit: l2 must be a finite number >= 0; got True (type bool)
    """
    ok = isinstance(value, numbers.Real) and not _is_bool(value)
    number = float(value) if ok else math.nan
    if not (math.isfinite(number) and minimum <= number <= maximum):
        bounds = " and ".join(f"{op} {bound:g}" for op, bound in ((">=", minimum), ("<=", maximum)) if math.isfinite(bound))
        kind = f" (type {type(value).__name__})" if not ok else ""
        raise ValueError(f"{where}: {name} must be a finite number{' ' + bounds if bounds else ''}; got {value!r}{kind}")
    return number


def check_bool(where: str, name: str, value: Any) -> bool:
    """``value`` as a bool; a TypeError naming ``where`` unless it is True or False (a NumPy bool too).

    Examples
    --------
    >>> check_bool("fit", "shuffle", False)
    False
    >>> check_bool("fit", "shuffle", "no")
    Traceback (most recent call last):
    ...
    TypeError: fit: shuffle must be True or False; got 'no' (type str)
    """
    if not _is_bool(value):
        raise TypeError(f"{where}: {name} must be True or False; got {value!r:.60} (type {type(value).__name__})")
    return bool(value)


def _is_bool(value: Any) -> bool:
    """A Python bool, or a 0-d boolean scalar of an array library (``np.bool_``), found without importing one."""
    if isinstance(value, bool):
        return True
    dtype = getattr(value, "dtype", None)
    return getattr(value, "shape", None) == () and dtype_name(dtype) == "bool" if dtype is not None else False

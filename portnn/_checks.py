"""Argument checks for public constructors and functions: type, range and finiteness, at the call.

One rule everywhere: a number is a Python ``int``/``float``, a NumPy scalar (``np.int64(3)``,
``np.float32(0.5)``) or a 0-d array of a real dtype (NumPy, PyTorch, array-api-strict...);
a bool is never a number, nor is a str, a list or a complex. A flag is ``True``/``False``
(NumPy's ``np.True_`` too), never ``1``/``"yes"``. What a check returns is a plain Python
``int``/``float``/``bool``, so configs, reprs and state dicts stay free of NumPy types.

Errors name the owner (class or function), the argument, the value received and what is
expected: ``"Linear: in_features must be a positive int; got 0"``. A value of the wrong kind
raises :class:`ArgumentTypeError` (a ``TypeError`` that is also a ``ValueError``, as these
checks raised ValueErrors before); a number out of range, NaN or infinite, a ``ValueError``.

The bottom of the import graph, beside ``_array``: it imports nothing of portnn.
"""

from __future__ import annotations

import math
import numbers
import operator
from collections.abc import Callable
from typing import Any

__all__ = [
    "ArgumentTypeError",
    "as_flag",
    "as_int",
    "as_real",
    "check_flag",
    "check_int",
    "check_int_pair",
    "check_number",
    "check_seed",
]

#: Seeds are ints in [0, SEED_LIMIT): what NumPy, PyTorch and CuPy generators all take.
SEED_LIMIT = 2**63


class ArgumentTypeError(TypeError, ValueError):
    """An argument of the wrong kind: a ``TypeError``, and a ``ValueError`` for code that caught the older errors.

    Examples
    --------
    >>> from portnn._checks import ArgumentTypeError, check_int
    >>> try:
    ...     check_int("Linear", "in_features", True)
    ... except TypeError as exc:
    ...     print(exc)
    Linear: in_features must be an integer >= 1; got True (a bool)
    >>> issubclass(ArgumentTypeError, ValueError)
    True
    """


def _dtype_name(value: Any) -> str:
    """The dtype name of an array-like (``"float32"``, ``"bool"``), ``""`` for anything else."""
    dtype = getattr(value, "dtype", None)
    if dtype is None:
        return ""
    name = getattr(dtype, "name", None)
    return name if isinstance(name, str) else str(dtype).rsplit(".", 1)[-1]


def _is_0d(value: Any) -> bool:
    shape = getattr(value, "shape", None)
    try:
        return shape is not None and len(shape) == 0
    except TypeError:
        return False


def as_int(value: Any) -> int | None:
    """``value`` as an int when it is an integer (NumPy ints and 0-d integer arrays too, bools not); else None.

    Examples
    --------
    >>> import numpy as np
    >>> from portnn._checks import as_int
    >>> as_int(3), as_int(np.int64(3)), as_int(np.array(3)), as_int(True), as_int(3.0)
    (3, 3, 3, None, None)
    """
    if isinstance(value, (bool, str, bytes)) or _dtype_name(value) == "bool":
        return None
    try:
        return operator.index(value)
    except TypeError:
        return None


def as_real(value: Any) -> float | None:
    """``value`` as a float when it is a real number (NumPy scalars and 0-d real arrays too, bools not); else None.

    NaN and infinities are returned as they are: the finiteness check is the caller's.

    Examples
    --------
    >>> import numpy as np
    >>> from portnn._checks import as_real
    >>> as_real(0.5), as_real(np.float32(0.5)), as_real(np.array(2)), as_real("0.5"), as_real(np.True_)
    (0.5, 0.5, 2.0, None, None)
    """
    if isinstance(value, (bool, str, bytes)):
        return None
    if isinstance(value, numbers.Real):
        return float(value)
    if _is_0d(value) and _dtype_name(value).startswith(("float", "int", "uint", "bfloat")):
        try:
            return float(value)
        except (TypeError, ValueError):
            return None
    return None


def as_flag(value: Any) -> bool | None:
    """``value`` as a bool when it is ``True``/``False`` (``np.True_``, 0-d boolean arrays too); else None.

    Examples
    --------
    >>> import numpy as np
    >>> from portnn._checks import as_flag
    >>> as_flag(True), as_flag(np.False_), as_flag(1), as_flag("yes")
    (True, False, None, None)
    """
    if isinstance(value, bool):
        return value
    if _is_0d(value) and _dtype_name(value) == "bool":
        return bool(value)
    return None


def _kind(value: Any, name: str, *, integer: bool = False, fix: str = "") -> str:
    """Why ``value`` is of the wrong kind, and the fix: ``" (a float; pass n=2)"``, ``" (a bool; pass lr=0.01)"``."""
    kind = "bool" if as_flag(value) is not None else type(value).__name__
    notes = [f"{'an' if kind[:1] in 'aeiou' else 'a'} {kind}"]
    number = as_real(value)
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            number = None
    if number is not None and math.isfinite(number) and (not integer or number.is_integer()):
        shown = int(number) if integer else number
        notes.append(f"pass the number {name}={shown!r}, not text" if isinstance(value, str) else f"pass {name}={shown!r}")
    elif fix:
        notes.append(fix)
    return f" ({'; '.join(notes)})"


def check_int(
    where: str,
    name: str,
    value: Any,
    minimum: int | None = 1,
    *,
    maximum: int | None = None,
    expected: str | None = None,
    allow_none: bool = False,
) -> Any:
    """``value`` as an int; raise naming ``where`` and ``name`` unless it is an integer in ``[minimum, maximum]``.

    NumPy integers and 0-d integer arrays count as integers; bools and floats (even ``2.0``,
    which gets the hint ``pass name=2``) do not. ``allow_none`` lets None through (returned
    as None). ``expected`` words the rule (default: ``"an integer >= 1"``).

    Examples
    --------
    >>> import numpy as np
    >>> from portnn._checks import check_int
    >>> check_int("StepLR", "step_size", np.int64(3))
    3
    >>> check_int("StepLR", "step_size", 2.0)
    Traceback (most recent call last):
    ...
    portnn._checks.ArgumentTypeError: StepLR: step_size must be an integer >= 1; got 2.0 (a float; pass step_size=2)
    """
    if value is None and allow_none:
        return None
    if expected is None:
        if minimum is None:
            expected = "an integer" if maximum is None else f"an integer <= {maximum}"
        else:
            expected = f"an integer >= {minimum}" if maximum is None else f"an integer in {minimum}..{maximum}"
        expected += " or None" if allow_none else ""
    number = as_int(value)
    if number is None:
        raise ArgumentTypeError(f"{where}: {name} must be {expected}; got {value!r}{_kind(value, name, integer=True)}")
    if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
        raise ValueError(f"{where}: {name} must be {expected}; got {value!r}")
    return number


def check_number(
    where: str,
    name: str,
    value: Any,
    ok: Callable[[float], bool] | None = None,
    expected: str = "a finite number",
    *,
    fix: str = "",
    finite: bool = True,
    allow_none: bool = False,
) -> Any:
    """``value`` as a float; raise naming ``where`` and ``name`` unless it is a real number for which ``ok`` holds.

    NaN is always refused; infinities unless ``finite=False``. ``expected`` words the rule
    and ``fix`` is added to the message (``"pass a finite step size such as lr=0.01"``).

    Examples
    --------
    >>> import numpy as np
    >>> from portnn._checks import check_number
    >>> check_number("SGD", "momentum", np.float32(0.5), lambda v: 0 <= v < 1, "a number in [0, 1)")
    0.5
    >>> check_number("SGD", "momentum", float("nan"), lambda v: 0 <= v < 1, "a number in [0, 1)")
    Traceback (most recent call last):
    ...
    ValueError: SGD: momentum must be a number in [0, 1); got nan
    """
    if value is None and allow_none:
        return None
    number = as_real(value)
    if number is None:
        raise ArgumentTypeError(f"{where}: {name} must be {expected}; got {value!r}{_kind(value, name, fix=fix)}")
    if math.isnan(number) or (finite and math.isinf(number)) or (ok is not None and not ok(number)):
        raise ValueError(f"{where}: {name} must be {expected}; got {value!r}" + (f" ({fix})" if fix else ""))
    return number


def check_flag(where: str, name: str, value: Any, *, allow_none: bool = False) -> Any:
    """``value`` as a bool; an :class:`ArgumentTypeError` naming ``where`` unless it is True or False (None if allowed).

    Examples
    --------
    >>> import numpy as np
    >>> from portnn._checks import check_flag
    >>> check_flag("Linear", "bias", np.True_)
    True
    >>> check_flag("Linear", "bias", "no")
    Traceback (most recent call last):
    ...
    portnn._checks.ArgumentTypeError: Linear: bias must be True or False; got 'no' (a str)
    """
    if value is None and allow_none:
        return None
    flag = as_flag(value)
    if flag is None:
        expected = "True, False or None" if allow_none else "True or False"
        kind = type(value).__name__
        raise ArgumentTypeError(
            f"{where}: {name} must be {expected}; got {value!r} ({'an' if kind[:1] in 'aeiou' else 'a'} {kind})"
        )
    return flag


def check_seed(where: str, name: str, value: Any) -> int | None:
    """``value`` as an int seed in ``[0, 2**63)``, or None (fresh entropy); raise naming ``where`` otherwise.

    Examples
    --------
    >>> from portnn._checks import check_seed
    >>> check_seed("Dropout", "seed", None), check_seed("Dropout", "seed", 7)
    (None, 7)
    >>> check_seed("Dropout", "seed", -1)
    Traceback (most recent call last):
    ...
    ValueError: Dropout: seed must be None or an integer in 0..2**63-1; got -1
    """
    return check_int(where, name, value, 0, maximum=SEED_LIMIT - 1, expected="None or an integer in 0..2**63-1", allow_none=True)


def check_int_pair(where: str, name: str, value: Any, minimum: int = 1) -> tuple[int, int]:
    """``value`` (an int, or a pair of ints: ``(along H, along W)``) as a pair of ints >= ``minimum``.

    NumPy ints count; bools, floats and other lengths do not. The message is that of
    :func:`portnn.functional.conv.pair`.

    Examples
    --------
    >>> import numpy as np
    >>> from portnn._checks import check_int_pair
    >>> check_int_pair("Conv2d(1, 8)", "kernel_size", np.int64(3)), check_int_pair("Conv2d(1, 8)", "padding", (0, 1), 0)
    ((3, 3), (0, 1))
    """
    items = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    numbers_ = tuple(as_int(v) for v in items)
    kind = "positive ints" if minimum >= 1 else f"ints >= {minimum}"
    message = f"{where}: {name} must be an int or a pair of {kind}; got {name}={value!r}"
    if len(numbers_) != 2 or any(n is None for n in numbers_):
        raise ArgumentTypeError(message)
    if any(n < minimum for n in numbers_):  # type: ignore[operator]
        raise ValueError(message)
    return numbers_  # type: ignore[return-value]

"""Proof tools for your own layers, ops and models: the checks portnn's own tests run, public.

A hand-written backward pass is easy to get subtly wrong: a derivative off by a factor, a
gradient never accumulated, a mean where the forward took a sum. These checks find such bugs
the way portnn proves its own ops:

- **float64 central differences**: each gradient from your ``backward`` is compared with
  ``(L(x + eps) - L(x - eps)) / (2 eps)`` on NumPy in float64, element by element (a random
  sample of large arrays, plus one random direction over all elements);
- **an independent oracle**: optionally the same computation in PyTorch autograd (a
  ``torch.nn`` module, whose weights are copied in by their ``state_dict`` names, or a
  function);
- **parity on every installed backend**: NumPy, PyTorch, CuPy where a GPU works, and
  array-api-strict with the layer on its fake device ``device1`` (which raises when arrays of
  two devices meet), each in float32 and float64, against the float64 NumPy reference;
  results must also have the backend's namespace, device and dtype.

Every check raises an ``AssertionError`` that names what failed (which input or parameter,
backend, dtype, training mode) and its worst element: index, expected value, value got and
the tolerance. They run inside pytest or anywhere else, and return a :class:`CheckReport`
of what was checked and what was skipped (a backend that is not installed). The tutorial in
``docs/testing-tutorial.md`` writes a layer and checks it.

The functions here name no array library: NumPy (the reference), PyTorch (the oracle) and the
others are reached through :mod:`portnn.backends`.
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from array_api_compat import array_namespace
from array_api_compat import device as device_of

from . import backends as _backends
from ._array import dtype_name
from .backends import _counting
from .layers.base import Layer, Parameter, RandomLayer

__all__ = [
    "BACKENDS",
    "FD_TOLERANCE",
    "ORACLE_TOLERANCE",
    "TOLERANCES",
    "TRAINING_TOLERANCES",
    "CheckReport",
    "OpCounter",
    "assert_close",
    "backends_under_test",
    "check_layer",
    "check_model",
    "check_op",
]

#: The backends a check runs on and the device each uses: array-api-strict on its fake ``device1``,
#: so that an op which makes an array on the default device fails loudly.
BACKENDS: dict[str, Any] = {"numpy": None, "array_api_strict": "device1", "torch": "cpu", "cupy": None}

#: ``(rtol, atol)`` of results in each dtype against the float64 NumPy reference:
#: ``|got - expected| <= atol + rtol * |expected|``, element by element.
TOLERANCES: dict[str, tuple[float, float]] = {"float32": (2e-4, 2e-5), "float64": (1e-10, 1e-12)}
#: ``(rtol, atol)`` of a gradient against float64 central differences with ``eps = 1e-6``, which carry
#: about ``1e-16 * |L| / eps`` of rounding.
FD_TOLERANCE: tuple[float, float] = (1e-6, 1e-7)
#: ``(rtol, atol)`` of the float64 reference against the PyTorch oracle in float64: forward, and gradients (and buffers).
ORACLE_TOLERANCE: dict[str, tuple[float, float]] = {"forward": (1e-12, 1e-12), "gradient": (1e-10, 1e-12)}
#: ``(rtol, atol)`` of a whole model's losses, weights and predictions after a few optimizer steps, against the
#: float64 NumPy run: float32's; float64's allow rounding differences to grow a little with the steps (measured: 30
#: SGD steps with momentum stay under 3% of these, on NumPy, PyTorch and array-api-strict).
TRAINING_TOLERANCES: dict[str, tuple[float, float]] = {"float32": (2e-4, 2e-5), "float64": (1e-9, 1e-11)}

#: ``op(*arrays) -> (y, vjp)``: ``vjp(dy)`` returns the gradients of the differentiable arrays, in order.
Op = Callable[..., tuple[Any, Callable[[Any], Sequence[Any]]]]


# -- reports and comparisons ----------------------------------------------------------------------
@dataclass
class CheckReport:
    """What a check compared (each with its worst error as a fraction of its tolerance) and what it skipped, and why."""

    name: str
    checked: list[tuple[str, float]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"{self.name}: {len(self.checked)} comparisons passed"]
        lines += [f"  {what}: worst {ratio:.2g} of the tolerance" for what, ratio in self.checked]
        lines += [f"  skipped: {why}" for why in self.skipped]
        return "\n".join(lines)


def _xp() -> Any:
    """NumPy's array-API namespace, reached through its adapter (this module names no array library)."""
    return _backends.get_adapter("numpy").xp


def _host(a: Any) -> Any:
    """Any array, Python number or nested list as a NumPy array."""
    try:
        return _backends.to_numpy(a)
    except TypeError:  # not an array of a backend: host data
        return _xp().asarray(a)


def _compare(what: str, got: Any, expected: Any, rtol: float, atol: float, *, sources: tuple[str, str]) -> float:
    """The worst ``|got - expected| / (atol + rtol |expected|)``; past 1, an AssertionError that shows the worst element."""
    xp = _xp()
    got, expected = _host(got), _host(expected)
    if tuple(got.shape) != tuple(expected.shape):
        raise AssertionError(f"{what}: shape {tuple(got.shape)} ({sources[1]}), expected {tuple(expected.shape)} ({sources[0]})")
    if got.size == 0:
        return 0.0
    g64 = xp.reshape(xp.astype(got, xp.float64), (-1,))
    e64 = xp.reshape(xp.astype(expected, xp.float64), (-1,))
    err, tol = xp.abs(g64 - e64), atol + rtol * xp.abs(e64)
    bad = ~(err <= tol)  # NaN is never close
    if not bool(xp.any(bad)):
        return float(xp.max(xp.where(tol > 0, err / xp.where(tol > 0, tol, 1.0), 0.0)))
    excess = xp.where(xp.isnan(err - tol), xp.inf, err - tol)
    flat = int(xp.argmax(excess))
    g, e = float(g64[flat]), float(e64[flat])
    raise AssertionError(
        f"{what}: {int(xp.sum(bad))} of {got.size} elements differ; the worst, at index {_unravel(flat, tuple(got.shape))}: "
        f"expected {e:.10g} ({sources[0]}), got {g:.10g} ({sources[1]}), |diff| {abs(g - e):.3g} > tolerance "
        f"{atol + rtol * abs(e):.3g} (atol {atol:g} + rtol {rtol:g} * |expected|)"
    )


def _unravel(flat: int, shape: tuple[int, ...]) -> tuple[int, ...]:
    index = []
    for size in reversed(shape):
        index.append(flat % size)
        flat //= size
    return tuple(reversed(index))


def assert_close(
    actual: Any,
    expected: Any,
    *,
    dtype: str | None = None,
    backend: Any = None,
    rtol: float | None = None,
    atol: float | None = None,
    what: str = "result",
) -> float:
    """Check ``actual``'s library, device, dtype and shape, then its values against ``expected``, element by element.

    Parameters
    ----------
    actual
        An array of any backend.
    expected
        The reference: an array of any backend (usually NumPy float64) or nested lists.
    dtype
        The dtype ``actual`` must have (``"float32"``...), which also picks the default
        tolerances from :data:`TOLERANCES`. None: ``actual``'s own.
    backend
        A :class:`portnn.Backend`, a backend name (on its device of :data:`BACKENDS`) or a
        ``(name, device)`` pair that ``actual`` must belong to. None: not checked.
    rtol, atol
        ``|actual - expected| <= atol + rtol * |expected|``; defaults from :data:`TOLERANCES`.
    what
        What ``actual`` is, for the message.

    Returns
    -------
    float
        The worst error as a fraction of the tolerance (at most 1).

    Raises
    ------
    AssertionError
        Naming the wrong library, device, dtype or shape, or the worst element: its index,
        the expected value, the value got and the tolerance, and how many elements differ.

    Examples
    --------
    >>> import numpy as np
    >>> from portnn.testing import assert_close
    >>> assert_close(np.float32([1.0, 2.0]), [1.0, 2.00001], dtype="float32") <= 1
    True
    >>> assert_close(np.float32([1.0, 2.5]), [1.0, 2.0], dtype="float32")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    AssertionError: result: 1 of 2 elements differ; the worst, at index (1,): expected 2 (expected), got 2.5 (float32), ...
    """
    name = dtype_name(actual.dtype) if dtype is None else dtype
    if backend is not None:
        target = _backend(backend)
        if not target.adapter.owns(actual):
            raise AssertionError(
                f"{what}: expected a {target.name} array, got a {type(actual).__module__}.{type(actual).__name__}"
            )
        if device_of(actual) != target.device:
            raise AssertionError(f"{what}: on device {device_of(actual)!r}, expected {target.device!r}")
    if dtype_name(actual.dtype) != name:
        raise AssertionError(f"{what}: dtype {dtype_name(actual.dtype)}, expected {name}")
    default = TOLERANCES.get(name, TOLERANCES["float64"])
    rtol = default[0] if rtol is None else rtol
    atol = default[1] if atol is None else atol
    return _compare(what, actual, expected, rtol, atol, sources=("expected", name))


# -- backends ---------------------------------------------------------------------------------------
def backends_under_test(names: Iterable[Any] | None = None) -> tuple[list[tuple[str, Any]], list[str]]:
    """The ``(name, device)`` pairs a check runs on, and why the others are skipped.

    ``names`` lists backend names (each on its device of :data:`BACKENDS`) or ``(name, device)``
    pairs; None takes every backend of :data:`BACKENDS`, or those that the ``PORTNN_BACKENDS``
    environment variable names (``numpy,torch``), as portnn's own test suite does. A backend
    that cannot run here is skipped, with the reason.

    Examples
    --------
    >>> from portnn.testing import backends_under_test
    >>> backends_under_test(["numpy", ("array_api_strict", "device2")])
    ([('numpy', None), ('array_api_strict', 'device2')], [])
    """
    if names is None:
        chosen = os.environ.get("PORTNN_BACKENDS")
        names = [n.strip() for n in chosen.split(",") if n.strip()] if chosen else list(BACKENDS)
    runs, skipped = [], []
    for entry in names:
        name, device = (entry, BACKENDS.get(entry)) if isinstance(entry, str) else tuple(entry)
        why = _backends.get_adapter(name).import_error()
        if why is None:
            runs.append((name, device))
        else:
            skipped.append(f"{name}: {why}")
    return runs, skipped


def _backend(spec: Any) -> _backends.Backend:
    if isinstance(spec, _backends.Backend):
        return spec
    name, device = (spec, BACKENDS.get(spec)) if isinstance(spec, str) else spec
    return _backends._resolve(name, device)


def _to(backend: _backends.Backend, a: Any, dtype: str) -> Any:
    """Host array ``a`` onto ``backend``: floats in ``dtype``, integers as int64, booleans as they are."""
    a = _host(a)
    kind = {"b": "bool", "i": "int64", "u": "int64"}.get(a.dtype.kind, dtype)
    return backend.adapter.from_numpy(a.astype(kind, copy=True), backend.device)


def _where(backend: _backends.Backend, dtype: str) -> str:
    return f"{backend.name} ({backend.adapter.device_name(backend.device)}) in {dtype}"


# -- the engine: an op ``f(*arrays) -> (y, vjp)`` on every backend -------------------------------------
@dataclass
class _Subject:
    """What is checked: ``op_for(backend, dtype)`` gives the op there; ``inputs`` are float64 host arrays."""

    name: str
    op_for: Callable[[_backends.Backend, str], Op]
    inputs: list[Any]
    labels: list[str]
    extra: list[Any] = field(default_factory=list)


def _value(op: Op, arrays: list[Any], dy: Any) -> float:
    """``sum(y * dy)``: the scalar whose gradient the op's ``vjp(dy)`` returns."""
    return float((_host(op(*arrays)[0]) * dy).sum())


def _reference(subject: _Subject, dy: Any) -> tuple[Any, list[Any]]:
    """The op on NumPy in float64: its output, and the gradients of the differentiable inputs for upstream ``dy``."""
    with _backends.use_backend("numpy"):
        y, vjp = subject.op_for(_backend("numpy"), "float64")(*subject.inputs, *subject.extra)
        grads = list(vjp(dy))
    if len(grads) != len(subject.labels):
        raise AssertionError(f"{subject.name}: backward returned {len(grads)} gradients for {len(subject.labels)} inputs")
    for label, g in zip(subject.labels, grads):
        if g is None:
            raise AssertionError(
                f"{subject.name}: backward gave {label} no gradient (None); a layer adds each parameter's gradient "
                "with Parameter.accumulate(...) in its backward"
            )
    return _host(y), [_host(g) for g in grads]


def _finite_differences(
    subject: _Subject, dy: Any, grads: list[Any], report: CheckReport, *, eps: float, samples: int | None, seed: int,
    mode: str = "",
) -> None:  # fmt: skip
    """Every gradient against float64 central differences: each element (or ``samples`` of them and one random direction)."""
    rtol, atol = FD_TOLERANCE
    rng = _backends.host_rng(seed)
    sources = ("central differences", "backward")
    with _backends.use_backend("numpy"):
        op = subject.op_for(_backend("numpy"), "float64")
        arrays = [_host(a).copy() for a in (*subject.inputs, *subject.extra)]
        for k, label in enumerate(subject.labels):
            a, n = arrays[k], arrays[k].size
            flat = a.reshape(-1)  # a view: writing it perturbs the input
            chosen = list(range(n)) if samples is None or n <= samples else sorted(rng.choice(n, samples, replace=False).tolist())
            numeric = []
            for i in chosen:
                old = float(flat[i])
                flat[i] = old + eps
                plus = _value(op, arrays, dy)
                flat[i] = old - eps
                minus = _value(op, arrays, dy)
                flat[i] = old
                numeric.append((plus - minus) / (2 * eps))
            what = f"{subject.name}{mode}: gradient of {label} against float64 central differences"
            analytic = _xp().asarray([float(grads[k].reshape(-1)[i]) for i in chosen])
            numeric_ = _xp().asarray(numeric)
            if len(chosen) == n:  # every element: indices in the array's own shape
                analytic, numeric_ = analytic.reshape(a.shape), numeric_.reshape(a.shape)
            else:
                what += f" (a sample of {len(chosen)} elements; the index below counts them, at flat indices {chosen[:6]}...)"
            worst = _compare(what, analytic, numeric_, rtol, atol, sources=sources)
            if len(chosen) < n:  # every element at once, along a random direction v: d/dt L(a + t v) = <grad, v>
                v = rng.normal(size=a.shape)
                base = a.copy()
                a[...] = base + eps * v
                plus = _value(op, arrays, dy)
                a[...] = base - eps * v
                minus = _value(op, arrays, dy)
                a[...] = base
                what = f"{subject.name}{mode}: gradient of {label} along a random direction, against float64 central differences"
                numeric_v, analytic_v = (plus - minus) / (2 * eps), float((grads[k] * v).sum())
                # the rounding of n elements' differences adds up: atol grows like sqrt(n)
                worst = max(worst, _compare(what, analytic_v, numeric_v, rtol, atol * math.sqrt(n), sources=sources))
            report.checked.append((f"central differences{mode}: {label} ({len(chosen)} of {n} elements)", worst))


def _cases(
    runs: list[tuple[str, Any]], dtypes: Sequence[str], report: CheckReport, label: Callable[[str], str]
) -> Iterable[tuple[str, _backends.Backend, str, str]]:
    """``(name, backend, dtype, where)`` for each run and dtype, ``where = label("<backend> in <dtype>")``.

    A float64 the device lacks goes to ``report.skipped`` instead.
    """
    for name, device in runs:
        backend = _backend((name, device))
        for dtype in dtypes:
            where = label(_where(backend, dtype))
            if dtype == "float64" and not backend.adapter.supports_float64(backend.device):
                report.skipped.append(f"{where}: the device has no float64")
                continue
            yield name, backend, dtype, where


def _parity(
    subject: _Subject, dy: Any, y_ref: Any, grads: list[Any], runs: list[tuple[str, Any]], dtypes: Sequence[str],
    report: CheckReport, mode: str = "", after: Callable[[_backends.Backend, str], float] | None = None,
) -> None:  # fmt: skip
    """The op on each backend and dtype against the float64 NumPy reference, namespace, device and dtype checked."""
    for name, backend, dtype, where in _cases(runs, dtypes, report, lambda on: f"{subject.name}{mode} on {on}"):
        rtol, atol = TOLERANCES[dtype]
        with _backends.use_backend(name, backend.device):
            op = subject.op_for(backend, dtype)
            args = [_to(backend, a, dtype) for a in (*subject.inputs, *subject.extra)]
            try:
                y, vjp = op(*args)
                got = list(vjp(_to(backend, dy, dtype)))
            except Exception as exc:
                raise AssertionError(f"{where}: raised {type(exc).__name__}: {exc}") from exc
            worst = assert_close(y, y_ref, dtype=dtype, backend=backend, rtol=rtol, atol=atol, what=f"{where}: output")
            for label, g, ref in zip(subject.labels, got, grads):
                if g is None:
                    raise AssertionError(f"{where}: backward gave {label} no gradient (None)")
                what = f"{where}: gradient of {label}"
                worst = max(worst, assert_close(g, ref, dtype=dtype, backend=backend, rtol=rtol, atol=atol, what=what))
            if after is not None:
                worst = max(worst, after(backend, dtype))
        report.checked.append((f"{name} {dtype}{mode}: output and gradients against NumPy float64", worst))


def _oracle_check(
    subject: _Subject, dy: Any, y_ref: Any, grads: list[Any], run: Callable[[list[Any]], Any], report: CheckReport,
    mode: str = "",
) -> None:  # fmt: skip
    """``run(tensors) -> (y, grads_after_backward, buffers)`` in PyTorch, float64 with autograd, against the reference.

    ``tensors`` are the inputs as torch tensors (the differentiable ones requiring grad);
    ``grads_after_backward()`` returns the gradients, one per label, once ``y.backward(dy)``
    has run; ``buffers()`` returns ``{name: (portnn's, the oracle's)}`` to compare, or ``{}``.
    """
    adapter = _backends.get_adapter("torch")
    why = adapter.import_error()
    if why is not None:
        report.skipped.append(f"{subject.name}{mode}: the PyTorch oracle ({why})")
        return
    cpu = adapter.device("cpu")
    tensors = []
    for k, a in enumerate((*subject.inputs, *subject.extra)):
        a = _host(a)
        t = adapter.from_numpy(a.astype("int64" if a.dtype.kind in "iu" else "float64", copy=True), cpu)
        tensors.append(t.requires_grad_(True) if k < len(subject.labels) else t)
    y, get_grads, buffers = run(tensors)
    y.backward(adapter.from_numpy(_host(dy).astype("float64"), cpu))
    sources = ("PyTorch autograd", "portnn")
    where = f"{subject.name}{mode}"
    worst = _compare(f"{where}: output against the PyTorch oracle", y_ref, y, *ORACLE_TOLERANCE["forward"], sources=sources)
    for label, g, theirs in zip(subject.labels, grads, get_grads()):
        if theirs is None:
            raise AssertionError(f"{where}: the oracle gives {label} no gradient: it does not use it")
        what = f"{where}: gradient of {label} against the PyTorch oracle"
        worst = max(worst, _compare(what, g, theirs, *ORACLE_TOLERANCE["gradient"], sources=sources))
    for name, (mine, theirs) in buffers().items():
        what = f"{where}: buffer '{name}' after the forward, against the PyTorch oracle"
        worst = max(worst, _compare(what, mine, theirs, *ORACLE_TOLERANCE["gradient"], sources=sources))
    report.checked.append((f"PyTorch oracle{mode}: output and gradients", worst))


def _function_oracle(oracle: Callable[..., Any], n: int) -> Callable[[list[Any]], Any]:
    """An oracle function of all the inputs: the gradients are those of the tensors it was given."""

    def run(tensors: list[Any]) -> Any:
        return oracle(*tensors), (lambda: [t.grad for t in tensors[:n]]), dict

    return run


# -- ops ----------------------------------------------------------------------------------------------
def check_op(
    op: Op,
    inputs: Sequence[Any],
    *,
    n_diff: int | None = None,
    extra: Sequence[Any] = (),
    oracle: Callable[..., Any] | None = None,
    finite_differences: bool = True,
    backends: Iterable[Any] | None = None,
    dtypes: Sequence[str] = ("float32", "float64"),
    dy: Any = None,
    samples: int | None = None,
    eps: float = 1e-6,
    seed: int = 0,
    name: str | None = None,
) -> CheckReport:
    """Check an op ``op(*arrays) -> (y, vjp)``, where ``vjp(dy)`` returns the gradients of the first ``n_diff`` arrays.

    :mod:`portnn.functional`'s contract (wrap a function whose backward returns a tuple with
    Nones). The op on NumPy in float64 is the reference; then, each part switchable:

    - ``finite_differences``: every gradient against float64 central differences of
      ``sum(y * dy)`` (:data:`FD_TOLERANCE`), element by element (``samples`` random elements
      of larger arrays plus one random direction; None checks every element);
    - ``oracle``: the same op on torch tensors in float64 with autograd (e.g.
      ``torch.nn.functional.linear``), to :data:`ORACLE_TOLERANCE`;
    - ``backends``: the op on each backend (:func:`backends_under_test`; ``()`` for none) in
      each of ``dtypes``, against the reference (:data:`TOLERANCES`), as arrays of that
      backend, device and dtype.

    Parameters
    ----------
    op
        ``op(*inputs, *extra) -> (y, vjp)``.
    inputs
        Host arrays (NumPy; float64 for the differentiable ones); the first ``n_diff`` (all
        by default) are differentiated.
    extra
        Arrays that are not differentiated (targets, indices, running statistics): integers
        go to every backend as int64, floats in the dtype checked.
    dy
        The upstream gradient (NumPy, ``y``'s shape); standard normal from ``seed`` by default.

    Returns
    -------
    CheckReport

    Raises
    ------
    AssertionError
        Naming the input, backend and dtype, and the worst element with its tolerance.

    Examples
    --------
    >>> import numpy as np
    >>> from portnn import functional as F
    >>> from portnn.testing import check_op
    >>> def tanh(x):
    ...     y, backward = F.tanh(x)
    ...     return y, lambda dy: (backward(dy),)
    >>> report = check_op(tanh, [np.linspace(-2.0, 2.0, 12).reshape(3, 4)], backends=["numpy"])
    >>> for what, _ in report.checked:
    ...     print(what)
    central differences: input 0 (12 of 12 elements)
    numpy float32: output and gradients against NumPy float64
    numpy float64: output and gradients against NumPy float64
    """
    arrays = [_host(a) for a in inputs]
    n = len(arrays) if n_diff is None else n_diff
    subject = _Subject(
        name or f"check_op({getattr(op, '__name__', 'op')})",
        lambda backend, dtype: op,
        arrays[:n],
        [f"input {k}" for k in range(n)],
        [*arrays[n:], *(_host(a) for a in extra)],
    )
    report = CheckReport(subject.name)
    if dy is None:
        with _backends.use_backend("numpy"):
            shape = tuple(_host(op(*subject.inputs, *subject.extra)[0]).shape)
        dy = _backends.host_rng(seed + 1).normal(size=shape)
    dy = _host(dy)
    y_ref, grads = _reference(subject, dy)
    if finite_differences:
        _finite_differences(subject, dy, grads, report, eps=eps, samples=samples, seed=seed)
    if oracle is not None:
        _oracle_check(subject, dy, y_ref, grads, _function_oracle(oracle, n), report)
    runs, skipped = backends_under_test(backends)
    report.skipped += skipped
    _parity(subject, dy, y_ref, grads, runs, dtypes, report)
    return report


# -- layers ---------------------------------------------------------------------------------------------
def _layers_of(obj: Any) -> list[Layer]:
    # every layer that holds state or draws numbers, nested ones (a Residual's block) included
    return [m for m in obj.modules() if m._params or m._buffers or not any(True for _ in m.children())]


def _clone(obj: Any, backend: _backends.Backend, dtype: str) -> Any:
    """A deep copy of a layer or model with every float parameter and buffer on ``backend``, in ``dtype``."""
    memo: dict[int, Any] = {}
    for layer in _layers_of(obj):
        if isinstance(layer, RandomLayer) and layer._generator is not None:
            memo[id(layer._generator)] = None  # a generator belongs to its device: the copy makes its own
    clone = copy.deepcopy(obj, memo)
    for layer in _layers_of(clone):
        for b in (*layer.parameters(), *layer.buffers()):
            if b.data is not None:
                host = _backends.to_numpy(b.data)
                b.data = backend.adapter.from_numpy(host.astype(dtype if host.dtype.kind == "f" else host.dtype), backend.device)
            if isinstance(b, Parameter):
                b.grad = None
        if isinstance(layer, RandomLayer):
            layer._generator = layer._generator_for = None
    return clone


def _fix_draws(obj: Any, seed: int) -> None:
    """Make the random layers of the copy ``obj`` draw from the host generator seeded with ``seed``, from now on.

    Every backend then drops the same elements; the draws are float32 values, exact in float64
    too, so float32 and float64 runs compare the same numbers with ``p``.
    """
    generator = _backends.host_rng(seed)

    def uniform(x: Any, shape: tuple[int, ...]) -> Any:
        host = generator.random(tuple(shape), dtype="float32").astype(dtype_name(x.dtype))
        return _backends.adapter_for(x).from_numpy(host, device_of(x))

    for layer in _layers_of(obj):
        if isinstance(layer, RandomLayer):
            layer.uniform = uniform  # an instance attribute, on the copy only


def _buffer_reset(obj: Any) -> Callable[[], None]:
    """A function that puts every buffer of ``obj`` (running statistics) back to its value now: each call of an op
    then starts from the same state, however many forwards ran before (central differences run hundreds)."""
    start = [(b, b.data) for layer in _layers_of(obj) for b in layer.buffers() if b.data is not None]

    def reset() -> None:
        for b, data in start:
            b.data = array_namespace(data).asarray(data, copy=True)

    return reset


def _layer_op(layer: Layer, names: list[str], training: bool, seed: int, *, input_grad: bool = True) -> Op:
    """``op(x, *parameters) -> (y, vjp)`` for ``layer`` (a copy, on the op's backend and dtype): a pure function of its
    arguments (the same buffers and random draws at every call)."""
    params = dict(layer.named_parameters())
    reset = _buffer_reset(layer)

    def op(x: Any, *values: Any) -> Any:
        for name, value in zip(names, values):
            params[name].data, params[name].grad = value, None
        reset()
        _fix_draws(layer, seed)
        y, backward = layer.forward(x, training=training, input_grad=input_grad)

        def vjp(dy: Any) -> list[Any]:
            dx = backward(dy)
            return [dx, *(params[name].grad for name in names)]

        return y, vjp

    return op


def check_layer(
    layer: Layer,
    input_shape: tuple[int, ...],
    *,
    oracle: Any = None,
    training: Sequence[bool] = (False, True),
    backends: Iterable[Any] | None = None,
    dtypes: Sequence[str] = ("float32", "float64"),
    make_input: Callable[[Any, tuple[int, ...]], Any] | None = None,
    samples: int | None = 256,
    eps: float = 1e-6,
    seed: int = 0,
) -> CheckReport:
    """Prove a layer's backward pass and its portability: central differences, an optional oracle, every backend.

    In each mode of ``training`` (evaluation, then training, by default) the layer runs on an
    input of ``input_shape`` (batch first) and:

    - the input gradient and each trainable parameter's gradient must match float64 central
      differences of ``sum(y * dy)`` for a random ``dy`` (:data:`FD_TOLERANCE`), element by
      element (``samples`` random elements of a larger array, plus one random direction over
      all of it; None checks every element); a parameter that gets no gradient fails;
    - with ``oracle`` (a ``torch.nn.Module``, into which the layer's parameters and buffers are
      loaded by their names, PyTorch's own; or a function ``oracle(x, **parameters)`` of torch
      tensors), the output, the gradients and, for a module, the buffers after the forward
      (running statistics) must agree in float64 (:data:`ORACLE_TOLERANCE`);
    - on every backend (:func:`backends_under_test`: array-api-strict on ``device1``) in each of
      ``dtypes``, the output, the gradients and the buffers after the forward must match the
      float64 NumPy reference (:data:`TOLERANCES`), as arrays of that backend, device and dtype;
    - the output's shape must be what :meth:`~portnn.layers.Layer.output_shape` says, and
      ``input_grad=False`` (how a model calls its first layer) must give the same parameter
      gradients.

    The checks run on copies: ``layer`` is left as it was. A layer that draws random numbers in
    training (Dropout) draws the same numbers on every backend here, from the host.

    Parameters
    ----------
    layer
        The layer, on any backend, in any dtype.
    input_shape
        The input's shape, batch first: ``(8, 5)``, ``(2, 3, 6, 6)``.
    oracle
        None, a ``torch.nn.Module`` or a function of torch tensors (see above).
    training
        The modes to check (``(False,)`` for evaluation only).
    backends
        As for :func:`backends_under_test`; ``()`` skips the parity checks.
    dtypes
        The dtypes of the parity checks.
    make_input
        ``make_input(rng, shape)`` returns the input as a NumPy array (float64); by default
        standard normal values moved at least 0.1 away from 0, since a kink (ReLU's) breaks
        central differences where an element sits on it.
    samples, eps, seed
        Elements checked per array (None: all), the central-difference step, the seed of the
        input, ``dy`` and the samples.

    Returns
    -------
    CheckReport

    Raises
    ------
    AssertionError
        Naming what failed (the input or a parameter, the mode, the backend and dtype) and the
        worst element: index, expected, got and tolerance.

    Examples
    --------
    >>> import portnn as pn
    >>> from portnn.testing import check_layer
    >>> report = check_layer(pn.layers.Linear(4, 3, seed=0), (5, 4), backends=["numpy"])
    >>> print(str(report).splitlines()[0])
    check_layer(Linear(4, 3)): 12 comparisons passed
    """
    name = f"check_layer({layer!r})"
    report = CheckReport(name)
    rng = _backends.host_rng(seed)
    x = make_input(rng, tuple(input_shape)) if make_input is not None else _away_from_zero(rng, tuple(input_shape))
    x = _host(x).astype("float64")
    names = [n for n, p in layer.named_parameters() if p.trainable and p.data is not None]
    params = dict(layer.named_parameters())
    values = [_backends.to_numpy(params[n].data).astype("float64") for n in names]
    labels = ["the input", *(f"parameter '{n}'" for n in names)]
    runs, skipped = backends_under_test(backends)
    report.skipped += skipped
    for mode in training:
        label = f", training={mode}"
        copies: dict[tuple[str, str, str], Any] = {}

        def op_for(backend: _backends.Backend, dtype: str, mode: bool = mode, copies: dict = copies) -> Op:
            key = (backend.name, str(backend.device), dtype)
            if key not in copies:
                clone = _clone(layer, backend, dtype)
                copies[key] = (clone, _layer_op(clone, names, mode, seed))
            return copies[key][1]

        subject = _Subject(name, op_for, [x, *values], labels)
        with _backends.use_backend("numpy"):
            y_shape = tuple(_host(op_for(_backend("numpy"), "float64")(x, *values)[0]).shape)
        dy = _backends.host_rng(seed + 1).normal(size=y_shape)
        y_ref, grads = _reference(subject, dy)
        _check_output_shape(layer, name + label, tuple(input_shape), y_shape)
        ref_buffers = _buffers_after_forward(layer, names, values, x, mode, seed)
        _check_without_input_grad(layer, names, values, x, dy, mode, seed, grads, name, label, report)
        _finite_differences(subject, dy, grads, report, eps=eps, samples=samples, seed=seed, mode=label)
        if oracle is not None:
            if mode and any(isinstance(lay, RandomLayer) for lay in _layers_of(layer)):
                report.skipped.append(f"{name}{label}: the oracle, which draws random numbers of its own in training")
            elif hasattr(oracle, "load_state_dict") and hasattr(oracle, "named_parameters"):
                _oracle_check(subject, dy, y_ref, grads, _module_oracle(oracle, layer, names, mode, ref_buffers), report, label)
            else:
                run = _function_oracle(lambda t, *ps: oracle(t, **dict(zip(names, ps))), len(labels))
                _oracle_check(subject, dy, y_ref, grads, run, report, label)

        def buffers_match(
            backend: _backends.Backend, dtype: str, copies: dict = copies, label: str = label, ref: dict = ref_buffers
        ) -> float:
            worst, (rtol, atol) = 0.0, TOLERANCES[dtype]
            for bname, b in copies[(backend.name, str(backend.device), dtype)][0].named_buffers():
                what = f"{name}{label} on {_where(backend, dtype)}: buffer '{bname}' after the forward"
                worst = max(worst, assert_close(b.data, ref[bname], backend=backend, rtol=rtol, atol=atol, what=what))
            return worst

        _parity(subject, dy, y_ref, grads, runs, dtypes, report, label, after=buffers_match)
    return report


def _away_from_zero(rng: Any, shape: tuple[int, ...]) -> Any:
    """Standard normal values; those within 0.1 of 0 are moved out to ±0.1 (central differences break at kinks)."""
    x = rng.normal(size=shape)
    small = abs(x) < 0.1
    return x * ~small + 0.1 * ((x >= 0) * 2.0 - 1.0) * small


def _buffers_after_forward(layer: Layer, names: list[str], values: list[Any], x: Any, mode: bool, seed: int) -> dict:
    """The buffers (running statistics) of a float64 NumPy copy of ``layer`` after one forward in ``mode``."""
    copy_ = _clone(layer, _backend("numpy"), "float64")
    with _backends.use_backend("numpy"):
        _layer_op(copy_, names, mode, seed)(x, *values)
    return {bname: _backends.to_numpy(b.data) for bname, b in copy_.named_buffers()}


def _check_output_shape(layer: Layer, where: str, input_shape: tuple[int, ...], got: tuple[int, ...]) -> None:
    said = tuple(layer.output_shape((None, *input_shape[1:])))
    fits = len(said) == len(got) and got[:1] == input_shape[:1] and all(s is None or s == g for s, g in zip(said[1:], got[1:]))
    if not fits:
        raise AssertionError(
            f"{where}: the forward gave an output of shape {got} for input {input_shape}, but output_shape says "
            f"{said}; fix compute_output_shape (the batch axis stays first)"
        )


def _check_without_input_grad(
    layer: Layer, names: list[str], values: list[Any], x: Any, dy: Any, mode: bool, seed: int, grads: list[Any],
    name: str, label: str, report: CheckReport,
) -> None:  # fmt: skip
    """With ``input_grad=False`` (a model's first layer) the parameter gradients must be the same."""
    if not names:
        return
    copy_ = _clone(layer, _backend("numpy"), "float64")
    with _backends.use_backend("numpy"):
        _, vjp = _layer_op(copy_, names, mode, seed, input_grad=False)(x, *values)
        got = vjp(dy)[1:]
    worst = 0.0
    for n, g, ref in zip(names, got, grads[1:]):
        if g is None:
            raise AssertionError(f"{name}{label}: with input_grad=False, backward gave parameter '{n}' no gradient (None)")
        what = f"{name}{label}: gradient of parameter '{n}' with input_grad=False"
        worst = max(worst, _compare(what, g, ref, 1e-12, 1e-14, sources=("input_grad=True", "input_grad=False")))
    report.checked.append((f"parameter gradients with input_grad=False{label}", worst))


def _module_oracle(module: Any, layer: Layer, names: list[str], mode: bool, ref_buffers: dict) -> Callable[[list[Any]], Any]:
    """A ``torch.nn.Module`` as the oracle: the layer's state loaded by name, in float64; gradients read from the module."""
    adapter = _backends.get_adapter("torch")
    module = copy.deepcopy(module)  # loaded with the layer's state and made float64: the caller's stays as it is

    def run(tensors: list[Any]) -> Any:
        x = tensors[0]
        state = {}
        for n, b in (*layer.named_parameters(), *layer.named_buffers()):
            host = _backends.to_numpy(b.data)
            state[n] = adapter.from_numpy(host.astype("float64" if host.dtype.kind == "f" else host.dtype, copy=True), "cpu")
        module.double()
        try:
            module.load_state_dict(state)
        except Exception as exc:
            raise AssertionError(
                f"check_layer({layer!r}): the oracle module does not take the layer's state by name: {exc}"
            ) from exc
        module.train(mode)
        module.zero_grad(set_to_none=True)
        y = module(x)
        params = dict(module.named_parameters())
        theirs = {n: b.detach().clone() for n, b in module.named_buffers()}
        return (
            y,
            lambda: [x.grad, *(params[n].grad for n in names)],
            lambda: {n: (ref_buffers[n], theirs[n]) for n in theirs if n in ref_buffers},
        )

    return run


# -- models -----------------------------------------------------------------------------------------------
def check_model(
    model: Any,
    x: Any,
    y: Any,
    *,
    loss: Any = None,
    optimizer: Any = None,
    steps: int = 3,
    batch_size: int | None = None,
    backends: Iterable[Any] | None = None,
    dtypes: Sequence[str] = ("float32", "float64"),
    samples: int | None = 64,
    eps: float = 1e-6,
    seed: int = 0,
) -> CheckReport:
    """Prove a whole model's training: the loss's gradient by central differences, then training parity on every backend.

    1. The gradient of ``loss(model(x), y)`` (training mode) with respect to every trainable
       parameter, from the model's backward and the loss's, against float64 central
       differences on NumPy (:data:`FD_TOLERANCE`; ``samples`` random elements of each
       parameter and one random direction, None for all), then against the same gradient on
       every backend and dtype (:data:`TOLERANCES`).
    2. ``steps`` optimizer steps (``zero_grad``, ``forward(training=True)``, the loss, backward,
       ``step``, on consecutive batches of ``batch_size``, the whole of ``x`` by default) on every
       backend (array-api-strict on ``device1``) and dtype: each step's loss, then every
       parameter and buffer and the evaluation-mode predictions for ``x``, against the same
       steps on NumPy in float64 (:data:`TRAINING_TOLERANCES`), as arrays of that backend,
       device and dtype.

    The model and the optimizer are left as they were: each run trains copies, from the
    model's current weights. Random layers (Dropout) draw the same numbers on every backend
    here, from the host.

    Parameters
    ----------
    model
        A :class:`portnn.Sequential`, on any backend.
    x, y
        A batch of examples and targets (host data, or arrays of the model's backend).
    loss
        A :mod:`portnn.losses` loss; by default ``CrossEntropy()`` for integer ``y``, else ``MSE()``.
    optimizer
        A :mod:`portnn.optim` optimizer (copied for each run); by default ``SGD(lr=0.1)``.
        Adaptive optimizers divide by the gradient's size: where a gradient is rounding noise
        (a bias followed by BatchNorm, which cancels it), Adam turns float32's noise into full
        steps, and the float32 runs rightly differ; check such models with SGD.
    steps, batch_size
        The optimizer steps of each run, and the examples of each step.
    backends, dtypes, samples, eps, seed
        As for :func:`check_layer`.

    Returns
    -------
    CheckReport

    Raises
    ------
    AssertionError
        Naming the parameter (``"2.weight"``), the backend, dtype and step, and the worst
        element: index, expected, got and tolerance.

    Examples
    --------
    >>> import numpy as np
    >>> import portnn as pn
    >>> from portnn.testing import check_model
    >>> model = pn.Sequential([pn.layers.Linear(3, 8), pn.layers.Tanh(), pn.layers.Linear(8, 2)], seed=0)
    >>> x, y = np.random.default_rng(0).normal(size=(16, 3)), np.arange(16) % 2
    >>> print(str(check_model(model, x, y, backends=["numpy"])).splitlines()[0])
    check_model(Sequential of 3 layers): 8 comparisons passed
    """
    from . import losses as _losses
    from . import optim as _optim

    name = f"check_model({type(model).__name__} of {len(model.layers)} layers)"
    report = CheckReport(name)
    x_host, y_host = _host(x).astype("float64"), _host(y)  # the reference computes in float64
    if y_host.dtype.kind == "f":
        y_host = y_host.astype("float64")
    if loss is None:
        loss = _losses.CrossEntropy() if y_host.dtype.kind in "iu" else _losses.MSE()
    optimizer = _optim.SGD(lr=0.1) if optimizer is None else optimizer
    names = [n for n, p in model.named_parameters() if p.trainable]
    values = [_backends.to_numpy(p.data).astype("float64") for n, p in model.named_parameters() if p.trainable]
    runs, skipped = backends_under_test(backends)
    report.skipped += skipped

    copies: dict[tuple[str, str, str], Any] = {}

    def op_for(backend: _backends.Backend, dtype: str) -> Op:
        key = (backend.name, str(backend.device), dtype)
        if key not in copies:
            copies[key] = _clone(model, backend, dtype)
        clone = copies[key]
        params = dict(clone.named_parameters())
        reset = _buffer_reset(clone)

        def op(*args: Any) -> Any:
            *vals, xb, yb = args
            for n, value in zip(names, vals):
                params[n].data, params[n].grad = value, None
            reset()
            _fix_draws(clone, seed)
            y_pred, backward = clone.forward(xb, training=True)
            value, loss_backward = loss.forward(y_pred, yb)

            def vjp(dy: Any) -> list[Any]:
                backward(loss_backward() * dy)
                return [params[n].grad for n in names]

            return value, vjp

        return op

    subject = _Subject(name, op_for, values, [f"parameter '{n}'" for n in names], [x_host, y_host])
    dy = _xp().asarray(1.0)
    y_ref, grads = _reference(subject, dy)
    _finite_differences(subject, dy, grads, report, eps=eps, samples=samples, seed=seed, mode=": the loss")
    _parity(subject, dy, y_ref, grads, runs, dtypes, report, mode=": the loss")
    reference = _train(model, optimizer, loss, _backend("numpy"), "float64", x_host, y_host, steps, batch_size, seed)
    for backend_name, backend, dtype, where in _cases(runs, dtypes, report, lambda on: f"{name}: training on {on}"):
        got = _train(model, optimizer, loss, backend, dtype, x_host, y_host, steps, batch_size, seed)
        rtol, atol = TRAINING_TOLERANCES[dtype]
        worst = 0.0
        for step, (mine, ref) in enumerate(zip(got["losses"], reference["losses"])):
            what = f"{where}: the loss of step {step}"
            worst = max(worst, assert_close(mine, ref, dtype=dtype, backend=backend, rtol=rtol, atol=atol, what=what))
        for key, ref in reference["state"].items():
            what = f"{where}: '{key}' after {steps} steps"
            worst = max(worst, assert_close(got["state"][key], ref, backend=backend, rtol=rtol, atol=atol, what=what))
        what = f"{where}: the predictions after {steps} steps"
        worst = max(worst, assert_close(got["predictions"], reference["predictions"], dtype=dtype, backend=backend,
                                        rtol=rtol, atol=atol, what=what))  # fmt: skip
        report.checked.append((f"{backend_name} {dtype}: {steps} training steps against NumPy float64", worst))
    return report


def _train(
    model: Any, optimizer: Any, loss: Any, backend: _backends.Backend, dtype: str, x: Any, y: Any, steps: int,
    batch_size: int | None, seed: int,
) -> dict[str, Any]:  # fmt: skip
    """``steps`` optimizer steps on a copy of ``model`` on ``backend`` in ``dtype``: the losses, the state, the predictions."""
    with _backends.use_backend(backend.name, backend.device):
        clone = _clone(model, backend, dtype)
        opt = copy.deepcopy(optimizer).bind(clone.parameters())
        xb, yb = _to(backend, x, dtype), _to(backend, y, dtype)
        n = int(x.shape[0])
        size = n if batch_size is None else int(batch_size)
        losses = []
        for step in range(steps):
            start = (step * size) % n
            stop = min(start + size, n)
            _fix_draws(clone, seed + step)
            opt.zero_grad()
            y_pred, backward = clone.forward(xb[start:stop, ...], training=True)
            value, loss_backward = loss.forward(y_pred, yb[start:stop, ...])
            backward(loss_backward())
            opt.step()
            losses.append(value)
        state = {k: b.data for k, b in (*clone.named_parameters(), *clone.named_buffers())}
        return {"losses": losses, "state": state, "predictions": clone.forward(xb, training=False)[0]}


# -- operation and sync counting ------------------------------------------------------------
#: The namespace's creation functions that launch work without an array argument (a fill, or a host-to-device copy).
_CREATIONS = ("asarray", "zeros", "ones", "full", "arange", "eye", "linspace", "zeros_like", "ones_like", "full_like")


class OpCounter:
    """Count the array operations and the device-to-host reads of the code run inside ``with``.

    On a GPU every array operation is a kernel launch (5-10 µs each, more than the arithmetic
    of a small network) and every read of a value on the host (``float(loss)``) waits for all
    queued work: this counter measures both on NumPy, where the same code runs the same
    operations. On PyTorch (a model on the torch backend, CPU or CUDA) every call on any tensor
    counts, through a ``TorchFunctionMode`` (views and metadata excepted; ``kernels`` and
    ``fast_paths`` do not apply). On NumPy: inside ``with OpCounter(model, optimizer) as c``, the model's parameters,
    gradients and buffers, the optimizer's state and what :meth:`track` returns are NumPy
    arrays of a counting subclass; every operation on them counts once (an operator such as
    ``@`` or ``+=``, a namespace function, ``x[...] = y``, an index by an array, ``astype``,
    ``copy``), nested calls inside a NumPy function not counted again, and so do the
    namespace's creation functions (``xp.zeros``, ``xp.asarray``, ...). Slicing, reshaping and
    transposing make views and do not count. A read to the host counts in ``reads``:
    ``float``, ``int``, ``bool``, ``.item()``, ``.tolist()``, formatting, ``__dlpack__`` and
    :func:`portnn.backends.to_numpy`. On exit the arrays become plain NumPy arrays again.

    ``fast_paths=False`` (default) switches off the NumPy adapter's own kernels
    (:data:`portnn.backends._base.KERNEL_HOOKS`: ``conv2d``, ``max_pool2d``...) while counting, so the count is that
    of the portable path that a backend without them (CuPy) runs; ``True`` counts what NumPy itself runs.
    ``kernels`` names fused optimizer updates (:data:`portnn.backends._base.OPTIMIZER_KERNELS`) to count as one
    operation each, as a backend that has them runs them: pass ``portnn.backends.cupy.OPTIMIZER_KERNELS`` to count
    CuPy's launches (the kernel's reference formula runs on NumPy, counted once).

    Attributes
    ----------
    ops, reads
        Operations and host reads so far.
    names, read_names
        The same counts by operation name (``"matmul"``, ``"add"``, ``"setitem"``...) and by kind of read.
    sites
        With ``sites=True``, the operations by the portnn module and function that issued them
        (``"functional/pooling.py:max_pool2d"``); None otherwise.

    Examples
    --------
    >>> import numpy as np
    >>> import portnn as pn
    >>> model = pn.Sequential([pn.layers.Linear(4, 3)], seed=0)
    >>> opt, loss = pn.optim.SGD(lr=0.1), pn.losses.CrossEntropy()
    >>> _ = opt.bind(model.parameters())
    >>> with pn.testing.OpCounter(model, opt) as counter:
    ...     x = counter.track(np.ones((2, 4), np.float32))
    ...     y = counter.track(np.array([0, 2]))
    ...     value, _ = model.train_step(x, y, loss, opt, validate=False)
    ...     reads = counter.reads
    ...     _ = model.train_step(x, y, loss, opt)  # validate=True: the labels' range is read (2 reads)
    >>> counter.ops > 0, reads, counter.reads
    (True, 0, 2)
    """

    def __init__(
        self,
        model: Any = None,
        optimizer: Any = None,
        *,
        fast_paths: bool = False,
        kernels: Iterable[str] = (),
        sites: bool = False,
    ) -> None:
        self.model, self.optimizer, self.fast_paths, self.kernels = model, optimizer, fast_paths, tuple(kernels)
        self.sites: dict[str, int] | None = {} if sites else None
        self._mode: Any = None
        self.ops = self.reads = 0
        self.names: dict[str, int] = {}
        self.read_names: dict[str, int] = {}
        self._depth = 0
        self._undo: list[Callable[[], None]] = []

    # -- what the traced arrays call --------------------------------------------------------
    def count(self, name: str) -> None:
        if self._depth == 0:
            self.ops += 1
            self.names[name] = self.names.get(name, 0) + 1
            if self.sites is not None:
                site = _site()
                self.sites[site] = self.sites.get(site, 0) + 1

    def count_read(self, name: str) -> None:
        if self._depth == 0:
            self.reads += 1
            self.read_names[name] = self.read_names.get(name, 0) + 1

    def snapshot(self) -> tuple[int, int]:
        """``(ops, reads)`` so far: subtract two snapshots to count a part."""
        return self.ops, self.reads

    def track(self, x: Any) -> Any:
        """``x`` as a counted array: a NumPy array as a view of the counting subclass (no copy); a tensor as it is."""
        if self._mode is not None:
            return x
        return _counting.traced_class().wrap(x)

    def _library(self) -> str:
        """The model's array library: ``"torch"`` (counted by a TorchFunctionMode) or ``"numpy"`` (the counting subclass)."""
        params = list(self.model.parameters()) if self.model is not None else list(getattr(self.optimizer, "params", []))
        name = _backends.adapter_for(params[0].data).name if params else "numpy"
        if name not in ("numpy", "torch"):
            raise TypeError(f"OpCounter counts NumPy and PyTorch arrays; the model's are {name}'s: count on NumPy or torch")
        return name

    # -- entering and leaving -----------------------------------------------------------------
    def __enter__(self) -> OpCounter:
        if not self.fast_paths:  # flat optimizer updates, as on a GPU (a CPU adapter updates parameter by parameter)
            launch_adapter = _backends.get_adapter(self._library())
            launch_adapter.launch_bound = lambda device=None: True
            self._undo.append(lambda: delattr(launch_adapter, "launch_bound"))
        if self._library() == "torch":  # every call on any tensor, through a TorchFunctionMode
            self._mode = _counting.torch_mode(self)
            self._mode.__enter__()
            _counting.ACTIVE.append(self)
            return self
        import array_api_compat.numpy as xp_numpy

        cls = _counting.traced_class()
        for name in _CREATIONS:
            original = getattr(xp_numpy, name)
            setattr(xp_numpy, name, _counted_creation(cls, name, original))
            self._undo.append(lambda name=name, original=original: setattr(xp_numpy, name, original))
        adapter = _backends.get_adapter("numpy")
        to_numpy = adapter.to_numpy

        def counted_to_numpy(x: Any) -> Any:
            if isinstance(x, cls):
                self.count_read("to_numpy")
            return to_numpy(x)

        adapter.to_numpy = counted_to_numpy
        self._undo.append(lambda: delattr(adapter, "to_numpy"))
        if not self.fast_paths:  # every kernel hook of the NumPy adapter off: the generic path a GPU runs
            from .backends._base import KERNEL_HOOKS

            for hook in KERNEL_HOOKS:
                setattr(adapter, hook, lambda *args, **kwargs: None)
                self._undo.append(lambda hook=hook: delattr(adapter, hook))
        if self.kernels:
            adapter.optimizer_kernel = self._emulated_kernel
            self._undo.append(lambda: delattr(adapter, "optimizer_kernel"))
        self._swap(cls.wrap)
        _counting.ACTIVE.append(self)
        return self

    def __exit__(self, *exc: Any) -> None:
        _counting.ACTIVE.remove(self)
        while self._undo:
            self._undo.pop()()
        if self._mode is not None:
            self._mode.__exit__(*exc)
            self._mode = None
            return
        self._swap(_counting.traced_class().unwrap)

    def _emulated_kernel(self, name: str) -> Any:
        """A fused kernel of :attr:`kernels`: its reference formula, counted as one operation."""
        if name not in self.kernels:
            return None
        from .backends._base import OPTIMIZER_KERNELS

        reference = OPTIMIZER_KERNELS[name]

        def run(*args: Any) -> None:
            self.count(f"kernel:{name}")
            self._depth += 1
            try:
                reference(*args)
            finally:
                self._depth -= 1

        return run

    def _swap(self, convert: Callable[[Any], Any]) -> None:
        """Convert the model's parameters, gradients and buffers and the optimizer's state arrays."""
        if self.optimizer is not None:  # first: parameters that are views of its flat buffers stay views of them
            self.optimizer._convert_arrays(convert)
        if self.model is not None:
            buffers = self.model.named_buffers() if hasattr(self.model, "named_buffers") else ()
            for _, p in (*self.model.named_parameters(), *buffers):
                p.data = convert(p.data)
                if getattr(p, "grad", None) is not None:
                    p.grad = convert(p.grad)


def _site() -> str:
    """The innermost portnn function on the stack outside this module: ``"functional/conv.py:conv2d"``."""
    import sys

    frame = sys._getframe(2)
    while frame is not None:
        path = frame.f_code.co_filename.replace(os.sep, "/")
        if "/portnn/" in path and not path.endswith(("/portnn/testing.py", "/portnn/backends/_counting.py")):
            return f"{path.rsplit('/portnn/', 1)[1]}:{frame.f_code.co_name}"
        frame = frame.f_back
    return "?"


def _counted_creation(cls: Any, name: str, original: Callable[..., Any]) -> Callable[..., Any]:
    def creation(*args: Any, **kwargs: Any) -> Any:
        counter = _counting.ACTIVE[-1] if _counting.ACTIVE else None
        if counter is None:
            return original(*args, **kwargs)
        counter.count(name)
        counter._depth += 1
        try:
            return cls.wrap(original(*args, **kwargs))
        finally:
            counter._depth -= 1

    return creation

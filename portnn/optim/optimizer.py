"""The optimizer protocol."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable
from typing import Any

from array_api_compat import array_namespace, device

from .. import backends
from .._checks import check_number
from ..layers.base import Parameter

__all__ = ["Optimizer", "assign", "scale_add"]


def scale_add(old: Any, *, scale: Any = None, add: Any = None) -> Any:
    """``scale * old + add`` (either part may be None), written into ``old`` where its backend allows in-place writes.

    The one place where an optimizer's update meets memory: on a backend whose adapter says
    ``inplace`` (NumPy, CuPy, PyTorch, array-api-strict) the result is computed into ``old``
    (``old *= scale; old += add``: no new array, views stay valid); elsewhere a new array is
    made and ``old`` is left alone. Either way it returns the array to keep, rounded the same.

    Examples
    --------
    >>> import numpy as np
    >>> from portnn.optim.optimizer import scale_add
    >>> m = np.array([1.0, 2.0])
    >>> scale_add(m, scale=0.5, add=np.array([1.0, 1.0])) is m, m
    (True, array([1.5, 2. ]))
    """
    if backends.adapter_for(old).inplace:
        if scale is not None:
            old *= scale
        if add is not None:
            old += add
        return old
    new = old if scale is None else scale * old
    return new if add is None else new + add


def assign(old: Any, new: Any) -> Any:
    """``new``, copied into ``old`` where its backend allows in-place writes (else ``new`` itself); returns the array to keep.

    Examples
    --------
    >>> import numpy as np
    >>> from portnn.optim.optimizer import assign
    >>> g = np.array([3.0, -3.0])
    >>> assign(g, np.clip(g, -1.0, 1.0)) is g, g
    (True, array([ 1., -1.]))
    """
    if backends.adapter_for(old).inplace:
        old[...] = new
        return old
    return new


class Optimizer:
    """Base class. Subclasses implement :meth:`_update` for one parameter.

    An optimizer may be built with its parameters (PyTorch style,
    ``SGD(model.parameters(), lr=0.1)``) or without (Keras style, ``SGD(lr=0.1)`` handed to
    ``model.fit``, which binds the model's parameters).

    State (momentum buffers…) lives beside each parameter, on its backend and device.

    Optimizers write math, the base writes memory: ``_update`` computes each new value as
    ``scale * old + add`` and stores what :func:`scale_add` returns (``p.data =
    scale_add(p.data, add=-lr * g)``), so one code path serves backends with and without
    in-place writes.
    """

    #: Update the parameters of one dtype together in flat buffers (see :meth:`step`): True; one by one: False;
    #: None (the default): where the backend's operations are launch-bound (a GPU: ``Adapter.launch_bound``).
    fuse: bool | None = None

    def __init__(self, params: Iterable[Parameter] | None = None, *, lr: float) -> None:
        self.lr = check_number(
            type(self).__name__, "lr", lr, lambda v: v > 0, "a positive number", fix="pass a finite step size such as lr=0.01"
        )
        self.params: list[Parameter] = []
        self.state: dict[int, dict[str, Any]] = {}
        self.step_count = 0
        self._forget_groups()
        if params is not None:
            self.bind(params)

    def bind(self, params: Iterable[Parameter]) -> Optimizer:
        """Attach the parameters to update (clears state). Returns self."""
        name = type(self).__name__
        if isinstance(params, Parameter) or not hasattr(params, "__iter__"):
            hint = "pass its .parameters()" if hasattr(params, "parameters") else "pass model.parameters()"
            hint = "wrap a single one in a list, [p]" if isinstance(params, Parameter) else hint
            raise TypeError(f"{name} takes a list of Parameters; got a {type(params).__name__}: {hint}")
        params = list(params)
        for i, p in enumerate(params):
            if not isinstance(p, Parameter):
                raise TypeError(
                    f"{name} takes portnn Parameters (model.parameters()); got a {type(p).__name__} at position {i}"
                    + ("; pass layer.parameters() or model.parameters()" if hasattr(p, "parameters") else "")
                )
        self.params = params
        self.state = {}
        self._forget_groups()
        return self

    def _forget_groups(self) -> None:
        self._fused_key: tuple[int, ...] | None = None
        self._groups: list[_FlatGroup] = []
        self._fused: set[int] = set()

    def zero_grad(self) -> None:
        """Forget the gradients of the last backward pass."""
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        """Update every trainable parameter that has a gradient.

        On a launch-bound device (a GPU; :attr:`fuse` decides) whose backend allows in-place
        writes, the parameters of one dtype are updated together: their ``data`` become views
        into one flat buffer, their gradients are copied into views of one flat gradient buffer,
        and :meth:`_update` runs once on the flat buffers (a handful of array operations per step
        instead of a handful per parameter; the same elementwise arithmetic, so the same bits).
        The per-parameter state arrays are views into flat state buffers, so :meth:`state_dict`
        still shows them per parameter. Arrays replaced from outside (loaded weights or state) are
        gathered again at the next step. On a CPU (NumPy, torch on the CPU), parameters whose step
        counts differ, and backends without in-place writes, the update goes parameter by
        parameter: there the gathering copy costs more than the launches it saves.
        """
        if not self.params:
            raise RuntimeError(
                f"{type(self).__name__} has no parameters: build it with model.parameters() or pass it to model.fit"
            )
        active = [p for p in self.params if p.trainable and p.grad is not None]
        for group in self._fused_groups(active):
            group.gather(self.state)
            name = self._kernel_name(group.state)
            kernel = backends.adapter_for(group.proxy.data).optimizer_kernel(name) if name else None
            if kernel is None:
                self._update(group.proxy, group.grad, group.state)  # type: ignore[arg-type]
            else:  # one fused kernel over the flat buffers (CuPy)
                kernel(group.proxy.data, group.grad, group.state, self._kernel_scalars(group.proxy, group.state))
            group.scatter(self.state)
        for p in active:
            if id(p) not in self._fused:
                self._update(p, p.grad, self.state.setdefault(id(p), {}))
        self.step_count += 1

    def gradient_buffer(self, params: list[Parameter]) -> tuple[Any, list[Any]] | None:
        """The flat gradient buffer the next :meth:`step` reads ``params``' gradients from, and its view per parameter.

        None unless ``params`` (in this order) are exactly one flat group. A gradient written
        into its view (``p.grad = views[i]``, the view itself) is not copied again by the step:
        :mod:`portnn.distributed` sums the ranks' gradients in this buffer directly.
        """
        groups = self._fused_groups(list(params))
        if len(groups) != 1 or groups[0].params != list(params):
            return None
        group = groups[0]
        if group.grad is None:
            first = params[0].data
            xp = array_namespace(first)
            group.grad = xp.empty((group.bounds[-1][1],), dtype=first.dtype, device=device(first))
            group.grad_views = group.views(group.grad)
        return group.grad, group.grad_views

    def _fused_groups(self, active: list[Parameter]) -> list[_FlatGroup]:
        """The flat groups (one per dtype) that ``active`` can be updated in; the rest go one by one."""
        if not self.fuse and (self.fuse is False or not active or not _launch_bound(active[0].data)):
            self._fused = set()
            return []
        key = tuple(id(p) for p in active)
        if key != self._fused_key:
            self._fused_key, self._groups, self._fused = key, [], set()
            by_dtype: dict[Any, list[Parameter]] = {}
            for p in active:
                if backends.adapter_for(p.data).inplace:
                    by_dtype.setdefault(p.data.dtype, []).append(p)
            for params in by_dtype.values():
                self._groups.append(_FlatGroup(params))
                self._fused.update(id(p) for p in params)
        groups = []
        for group in self._groups:
            # the same step count and state entries everywhere (a parameter unfrozen later, or state loaded for some only,
            # goes one by one: its momentum or step count is not the others')
            kinds = {_state_kind(self.state.get(id(p), {})) for p in group.params}
            if len(kinds) == 1 and backends.adapter_for(group.params[0].data).inplace:
                groups.append(group)
            else:
                self._fused.difference_update(id(p) for p in group.params)
                self._fused_key = None  # decide again next step
        return groups

    def _update(self, p: Parameter, g: Any, state: dict[str, Any]) -> None:
        """Update ``p.data`` and ``state`` for gradient ``g`` (never written to), through :func:`scale_add`."""
        raise NotImplementedError

    def _kernel_name(self, state: dict[str, Any]) -> str | None:
        """The fused kernel (:meth:`portnn.backends.Adapter.optimizer_kernel`) that can take this step from ``state``, or None."""
        return None

    def _kernel_scalars(self, p: Parameter, state: dict[str, Any]) -> dict[str, float]:
        """Ready ``state`` for the kernel :meth:`_kernel_name` named (count the step, make missing arrays); its scalars."""
        raise NotImplementedError

    def _convert_arrays(self, convert: Any) -> None:
        """Replace every state array by ``convert(array)`` (:class:`portnn.testing.OpCounter` wraps and unwraps them)."""
        for entries in self.state.values():
            for k, v in entries.items():
                if hasattr(v, "shape"):
                    entries[k] = convert(v)
        for group in self._groups:  # the flat buffers too, and views of them again
            group.convert(convert, self.state)

    # -- state ------------------------------------------------------------------------
    def hyperparameters(self) -> dict[str, Any]:
        return {"lr": self.lr}

    def state_dict(self) -> dict[str, Any]:
        """Hyperparameters, step count and per-parameter state (arrays on their device), by parameter index."""
        index = {id(p): i for i, p in enumerate(self.params)}
        return {
            "hyperparameters": self.hyperparameters(),
            "step_count": self.step_count,
            "state": {index[k]: dict(v) for k, v in self.state.items() if k in index},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (arrays are copied onto each parameter's device)."""
        per_param = state.get("state", {})
        bad = [i for i in per_param if not 0 <= int(i) < len(self.params)]
        if bad:
            raise ValueError(
                f"{type(self).__name__}.load_state_dict: state for parameter indices {bad}, but {len(self.params)} are bound"
            )
        for name, value in state.get("hyperparameters", {}).items():
            setattr(self, name, value)
        self.step_count = int(state.get("step_count", 0))
        self.state = {}
        for i, entries in per_param.items():
            p = self.params[int(i)]
            adapter = backends.adapter_for(p.data)
            self.state[id(p)] = {
                # a copy: in-place updates must not write into the caller's state (or another optimizer's)
                k: adapter.from_numpy(backends.to_numpy(v).copy(), p.device) if hasattr(v, "shape") else v
                for k, v in entries.items()
            }

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in self.hyperparameters().items())
        return f"{type(self).__name__}({args})"


def _state_kind(entries: dict[str, Any]) -> tuple[Any, ...]:
    """What must agree between parameters updated as one: the state's entries and its step count."""
    return tuple(sorted(entries)), repr(entries.get("step"))


class _FlatGroup:
    """Parameters of one dtype updated as one: flat parameter, gradient and state buffers, and a view of each per parameter."""

    def __init__(self, params: list[Parameter]) -> None:
        self.params = params
        self.shapes = [tuple(p.data.shape) for p in params]
        sizes = [math.prod(shape) for shape in self.shapes]
        self.bounds = list(zip(itertools.accumulate([0, *sizes[:-1]]), itertools.accumulate(sizes)))
        self.proxy = _FlatParameter()
        self.data_views: list[Any] = []
        self.grad: Any = None
        self.grad_views: list[Any] = []
        self.state: dict[str, Any] = {}
        self.state_views: dict[str, tuple[Any, list[Any]]] = {}  # key -> (the flat array, its views)

    def views(self, flat: Any) -> list[Any]:
        xp = array_namespace(flat)
        return [xp.reshape(flat[a:b], shape) for (a, b), shape in zip(self.bounds, self.shapes)]

    def flatten(self, arrays: list[Any]) -> Any:
        xp = array_namespace(*arrays)
        return xp.concat([xp.reshape(a, (-1,)) for a in arrays])

    def gather(self, state: dict[int, dict[str, Any]]) -> None:
        """Make the flat buffers hold the parameters, their gradients and their state (copying only what changed)."""
        params = self.params
        if not self.data_views or any(p.data is not v for p, v in zip(params, self.data_views)):
            self.proxy.data = self.flatten([p.data for p in params])
            self.data_views = self.views(self.proxy.data)
            for p, view in zip(params, self.data_views):
                p.data = view
        if self.grad is None or self.grad.shape != self.proxy.data.shape:
            self.grad = array_namespace(self.proxy.data).empty_like(self.proxy.data)
            self.grad_views = self.views(self.grad)
        if any(p.grad is not view for p, view in zip(params, self.grad_views)):
            # one concatenation of every gradient into the flat buffer (one operation, not one copy per
            # parameter): in place where the adapter can (NumPy's out=), else a new buffer and its views
            grads = [p.grad for p in params]
            if not backends.adapter_for(self.grad).concat_into(grads, self.grad):
                self.grad = self.flatten(grads)
                self.grad_views = self.views(self.grad)
        entries = [state.get(id(p), {}) for p in params]
        self.state = {}
        for key, value in entries[0].items():
            if not hasattr(value, "shape"):
                self.state[key] = value
                continue
            flat, views = self.state_views.get(key, (None, []))
            if flat is None or any(e.get(key) is not v for e, v in zip(entries, views)):
                flat = self.flatten([e[key] for e in entries])
                self.state_views[key] = (flat, self.views(flat))
            self.state[key] = flat

    def convert(self, convert: Any, state: dict[int, dict[str, Any]]) -> None:
        """Replace every flat buffer by ``convert(buffer)`` (a view of it) and every view of it by a view of that."""
        if self.proxy.data is not None:
            self.proxy.data = convert(self.proxy.data)
            self.data_views = self.views(self.proxy.data)
            for p, view in zip(self.params, self.data_views):
                p.data = view
        if self.grad is not None:
            adopted = [p.grad is view for p, view in zip(self.params, self.grad_views)]
            self.grad = convert(self.grad)
            self.grad_views = self.views(self.grad)
            for p, view, same in zip(self.params, self.grad_views, adopted):
                if same:
                    p.grad = view
        for key, (flat, _) in list(self.state_views.items()):
            flat = convert(flat)
            self.state_views[key] = (flat, self.views(flat))
            for p, view in zip(self.params, self.state_views[key][1]):
                if key in state.get(id(p), {}):
                    state[id(p)][key] = view

    def scatter(self, state: dict[int, dict[str, Any]]) -> None:
        """After the update: the per-parameter state entries are the views of the flat state (new views where it was replaced)."""
        for key, value in self.state.items():
            views = None
            if hasattr(value, "shape"):
                flat, views = self.state_views.get(key, (None, []))
                if flat is not value:
                    views = self.views(value)
                    self.state_views[key] = (value, views)
            for i, p in enumerate(self.params):
                state.setdefault(id(p), {})[key] = value if views is None else views[i]


class _FlatParameter:
    """What :meth:`Optimizer._update` sees of a flat group: its ``data``."""

    __slots__ = ("data",)

    def __init__(self) -> None:
        self.data: Any = None


def _launch_bound(x: Any) -> bool:
    """Whether ``x``'s device is launch-bound (its adapter says), where flat updates pay."""
    return backends.adapter_for(x).launch_bound(device(x))

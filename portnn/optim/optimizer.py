"""The optimizer protocol."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

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

    def __init__(self, params: Iterable[Parameter] | None = None, *, lr: float) -> None:
        self.lr = check_number(
            type(self).__name__, "lr", lr, lambda v: v > 0, "a positive number", fix="pass a finite step size such as lr=0.01"
        )
        self.params: list[Parameter] = []
        self.state: dict[int, dict[str, Any]] = {}
        self.step_count = 0
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
        return self

    def zero_grad(self) -> None:
        """Forget the gradients of the last backward pass."""
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        """Update every trainable parameter that has a gradient."""
        if not self.params:
            raise RuntimeError(
                f"{type(self).__name__} has no parameters: build it with model.parameters() or pass it to model.fit"
            )
        for p in self.params:
            if p.trainable and p.grad is not None:
                self._update(p, p.grad, self.state.setdefault(id(p), {}))
        self.step_count += 1

    def _update(self, p: Parameter, g: Any, state: dict[str, Any]) -> None:
        """Update ``p.data`` and ``state`` for gradient ``g`` (never written to), through :func:`scale_add`."""
        raise NotImplementedError

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

"""Parameters and the layer protocol."""

from __future__ import annotations

import contextvars
import inspect
import math
import numbers
import re
from collections.abc import Callable, Iterator
from typing import Any

from array_api_compat import array_namespace, is_array_api_obj
from array_api_compat import device as device_of

from .. import backends
from .. import init as initializers
from .._array import dtype_name, namespace, resolve_dtype
from .._checks import check_flag, check_int, check_seed

__all__ = [
    "Buffer",
    "InputSpec",
    "Layer",
    "Parameter",
    "RandomLayer",
    "ShapeError",
    "WeightedLayer",
    "format_shape",
]

Shape = tuple[int | None, ...]


class ShapeError(ValueError):
    """An input or a layer stack whose shapes do not fit. The message names the layer."""


def format_shape(shape: Shape | None) -> str:
    """A shape as error messages and summaries print it: ``"(batch, 784)"``.

    An unknown shape (None) is ``"?"``; an unknown size is ``batch`` on the first axis and
    ``?`` on the others; a one-axis shape keeps Python's comma, ``"(4,)"``.

    Examples
    --------
    >>> from portnn.layers.base import format_shape
    >>> format_shape((None, 784)), format_shape((32, 1, 28, 28)), format_shape((None, 8, None, None))
    ('(batch, 784)', '(32, 1, 28, 28)', '(batch, 8, ?, ?)')
    >>> format_shape((4,)), format_shape(None)
    ('(4,)', '?')
    """
    if shape is None:
        return "?"
    return _tuple_text([("batch" if axis == 0 else "?") if d is None else int(d) for axis, d in enumerate(shape)])


def _tuple_text(items: Any) -> str:
    """``items`` written as a Python tuple, without quotes: ``(batch, 784)``, ``(4,)``."""
    items = [str(i) for i in items]
    return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"


#: What an input of each dtype kind must be, and how to get there, for the messages.
_KINDS = {
    "real floating": (
        "float32 or float64",
        "cast it (xp.astype(x, xp.float32)) — model.fit/predict/evaluate convert integer and boolean data for you",
    ),
    "integral": ("an integer dtype (indices)", "cast it (xp.astype(x, xp.int64))"),
}


class InputSpec:
    """What a layer takes: the ranks and fixed sizes of its input, and the kind of its dtype.

    A layer declares it once, as ``self.input_spec`` (Keras's ``InputSpec``, Chainer's
    ``check_type_forward``); :class:`Layer` checks every input of :meth:`Layer.forward` and
    every shape walk of :meth:`Layer.output_shape` against it and words the error, so the
    layer's own code is only its math. The check reads shapes and dtypes, never values: it
    costs no device work.

    Parameters
    ----------
    *shapes
        The accepted shapes, one per accepted rank: an int is a fixed size, a str names a
        free size (``"batch"``, ``"H"``) and is how the error prints it. None given: any rank
        of at least ``min_ndim`` axes.
    min_ndim
        The fewest axes an input may have (for layers that take any rank above it, as Flatten).
    dtype
        The dtype kind, as ``xp.isdtype`` names it: ``"real floating"`` (the default; a layer
        with parameters then takes exactly their dtype) or ``"integral"`` (indices).

    Examples
    --------
    >>> from portnn.layers import InputSpec
    >>> spec = InputSpec(("batch", 4), ("batch", 4, "length"))
    >>> spec.expected()
    '(batch, 4) or (batch, 4, length)'
    >>> spec.fits((None, 4, 7)), spec.fits((8, 5)), spec.fits((8,))
    (True, False, False)
    >>> InputSpec(min_ndim=2).fits((8,))
    False
    """

    __slots__ = ("dtype", "min_ndim", "shapes")

    def __init__(self, *shapes: tuple[int | str, ...], min_ndim: int = 0, dtype: str = "real floating") -> None:
        self.shapes = tuple(tuple(s) for s in shapes)
        self.min_ndim = check_int("InputSpec", "min_ndim", min_ndim, minimum=0)
        self.dtype = dtype

    def fits(self, shape: Shape) -> bool:
        """Whether ``shape`` (None for an unknown size, which fits any) has an accepted rank and the fixed sizes."""
        if len(shape) < self.min_ndim:
            return False
        if not self.shapes:
            return True
        return any(
            len(shape) == len(spec) and all(isinstance(want, str) or d is None or d == want for d, want in zip(shape, spec))
            for spec in self.shapes
        )

    def expected(self) -> str:
        """The accepted shapes in words: ``"(batch, 784)"``, ``"(batch, 4) or (batch, 4, length)"``.

        With ``min_ndim`` alone: ``"more than 1 dimensions (batch first)"``.
        """
        if not self.shapes:
            return f"more than {self.min_ndim - 1} dimensions (batch first)"
        return " or ".join(_tuple_text(spec) for spec in self.shapes)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, InputSpec):
            return NotImplemented
        return (self.shapes, self.min_ndim, self.dtype) == (other.shapes, other.min_ndim, other.dtype)

    def __hash__(self) -> int:
        return hash((self.shapes, self.min_ndim, self.dtype))

    def __repr__(self) -> str:
        args = [repr(s) for s in self.shapes]
        args += [f"min_ndim={self.min_ndim}"] if self.min_ndim else []
        args += [f"dtype={self.dtype!r}"] if self.dtype != "real floating" else []
        return f"InputSpec({', '.join(args)})"


class Buffer:
    """An array that is part of a layer's state but not trained (BatchNorm's running statistics).

    Saved and loaded with the model and moved by ``to()``, never seen by an optimizer: layers
    list buffers in :meth:`Layer.named_buffers`. A layer replaces ``data`` as it updates it.
    """

    __slots__ = ("data", "name")

    def __init__(self, data: Any, name: str = "") -> None:
        self.data = data
        self.name = name

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    @property
    def dtype(self) -> Any:
        return self.data.dtype

    @property
    def device(self) -> Any:
        return device_of(self.data)

    @property
    def size(self) -> int:
        n = 1
        for d in self.data.shape:
            n *= d
        return n

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, shape={self.shape}, dtype={dtype_name(self.dtype)})"


class Parameter(Buffer):
    """A trainable array and the gradient accumulated for it by the last backward pass.

    ``grad`` is None until a backward pass writes it; :meth:`portnn.optim.Optimizer.zero_grad`
    sets it back to None. ``trainable = False`` freezes it: backward skips its gradient.
    ``regularize`` says whether an L2 penalty in the loss applies (weights yes, biases no).
    """

    __slots__ = ("grad", "regularize", "trainable")

    def __init__(self, data: Any, name: str = "", *, trainable: bool = True, regularize: bool | None = None) -> None:
        super().__init__(data, name)
        self.grad: Any = None
        self.trainable = check_flag("Parameter", "trainable", trainable)
        regularize = check_flag("Parameter", "regularize", regularize, allow_none=True)
        self.regularize = name == "weight" if regularize is None else regularize

    def accumulate(self, g: Any) -> None:
        """Add ``g`` to ``grad`` (gradients of a parameter used twice add up)."""
        if self.trainable:
            self.grad = g if self.grad is None else self.grad + g


class Layer:
    """Base class of every layer.

    A layer declares what it takes in ``input_spec`` (an :class:`InputSpec`; the default takes
    float arrays of any shape) and implements :meth:`call`, returning its output and a
    ``backward`` closure: ``backward(dy)`` adds the gradients of the layer's parameters to
    their ``grad`` and returns the gradient of the input. :meth:`forward` checks the input
    (:meth:`check_input`) and runs :meth:`call`; ``layer(x)`` is ``layer.forward(x)[0]``
    (inference). ``training`` switches train-time behaviour (dropout, batch statistics); with
    ``input_grad=False`` a layer may skip the input gradient and return None (the first layer
    of a model, whose input is data, saves a whole matrix product that way).

    Layers with parameters implement :meth:`reset_parameters`; layers that change shapes
    implement :meth:`compute_output_shape`. A layer with a condition the spec cannot state
    (a window that must fit) returns it from :meth:`shape_problem`, and one with advice for
    a common mistake returns it from :meth:`input_hint`: both the forward pass and
    :meth:`output_shape` use them, so a model's shape walk and a real input are refused alike.

    ``name`` identifies the layer in a model (reports, records, transfer learning): set it
    yourself, or :class:`portnn.Sequential` gives it a unique one, Keras style (``"linear"``,
    ``"relu"``, ``"linear_1"``…).
    """

    #: What :meth:`forward` and :meth:`output_shape` accept: a class attribute, or set in ``__init__`` from the arguments.
    input_spec: InputSpec = InputSpec()

    def __init__(self) -> None:
        self._params: dict[str, Parameter] = {}
        self._buffers: dict[str, Buffer] = {}
        self._children: dict[str, Any] = {}
        self.name: str | None = None

    # -- children ---------------------------------------------------------------------
    def __setattr__(self, name: str, value: Any) -> None:
        # A layer assigned as an attribute is a child, PyTorch's nn.Module style; so is every
        # layer in a list, tuple or dict attribute, read when the children are walked (a list
        # assigned empty and filled later counts, nn.ModuleList's way). Assigning something
        # else under the name unregisters it.
        self.__dict__.pop("_accepted_inputs", None)  # check_input checks the next input in full again
        children = self.__dict__.get("_children")
        if children is None:
            if isinstance(value, Layer) or _layers_in(value):
                raise AttributeError(
                    f"{type(self).__name__}: cannot assign the layer {name!r} before Layer.__init__ ran; "
                    "call super().__init__() first in __init__"
                )
        elif isinstance(value, Layer) or (isinstance(value, (list, tuple, dict)) and name not in _OWN_STATE):
            children[name] = value
        else:
            children.pop(name, None)
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        self.__dict__.pop("_accepted_inputs", None)
        self.__dict__.get("_children", {}).pop(name, None)
        object.__delattr__(self, name)

    def named_children(self) -> Iterator[tuple[str, Layer]]:
        """The direct child layers, in assignment order, with their names: ``"conv1"``, ``"blocks.0"``, ``"heads.key"``.

        A list or tuple attribute contributes its layers as ``name.0``, ``name.1``… and a dict
        ``name.key``, read now (items appended after the assignment count); one that mixes
        layers with other values raises a TypeError.
        """
        for name, value in self.__dict__.get("_children", {}).items():
            if isinstance(value, Layer):
                yield name, value
                continue
            items = list(value.items()) if isinstance(value, dict) else list(enumerate(value))
            found = _layers_in(value)
            if found and found < len(items):
                kind = type(value).__name__
                raise TypeError(
                    f"{type(self).__name__}.{name} is a {kind} that mixes layers with other values; "
                    f"a {kind} of layers registers its layers as children only when it holds nothing else: "
                    "keep the layers in an attribute of their own"
                )
            if found:
                for key, child in items:
                    if not isinstance(key, (str, int)) or isinstance(key, bool) or "." in str(key):
                        raise TypeError(
                            f"{type(self).__name__}.{name}: a dict of layers needs str keys without dots (they name "
                            f"the children {name}.key); got the key {key!r}"
                        )
                    yield f"{name}.{key}", child

    def children(self) -> Iterator[Layer]:
        """The direct child layers, in assignment order."""
        for _, child in self.named_children():
            yield child

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Layer]]:
        """This layer (named ``prefix``) and every layer under it, depth first, with dotted paths (PyTorch's names).

        Examples
        --------
        >>> import portnn as pn
        >>> block = pn.layers.Residual([pn.layers.Linear(4, 4), pn.layers.ReLU()])
        >>> [name for name, _ in block.named_modules()]
        ['', 'block', 'block.0', 'block.1']
        """
        return self._walk(prefix, remove_duplicate=True)

    def _walk(self, prefix: str, *, remove_duplicate: bool) -> Iterator[tuple[str, Layer]]:
        # depth first; remove_duplicate: each layer once, at its first path (a cycle ends there too);
        # else every use of a layer, a cycle cut where a layer would contain itself
        seen: set[int] = set()
        stack: list[tuple[str, Layer, frozenset[int]]] = [(prefix, self, frozenset())]
        while stack:
            path, layer, above = stack.pop()
            if id(layer) in (seen if remove_duplicate else above):
                continue
            seen.add(id(layer))
            yield path, layer
            under = above | {id(layer)}
            stack.extend(reversed([(f"{path}.{n}" if path else n, c, under) for n, c in layer.named_children()]))

    def modules(self) -> Iterator[Layer]:
        """This layer and every layer under it, depth first."""
        for _, layer in self.named_modules():
            yield layer

    # -- the pass ---------------------------------------------------------------------
    def forward(self, x: Any, *, training: bool = False, input_grad: bool = True) -> tuple[Any, Callable[[Any], Any]]:
        """``(y, backward)`` for input ``x``: :meth:`check_input`, then :meth:`call`."""
        self.check_input(x)
        return self.call(x, training=training, input_grad=input_grad)

    def call(self, x: Any, *, training: bool = False, input_grad: bool = True) -> tuple[Any, Callable[[Any], Any]]:
        """The layer's math on a checked input: ``(y, backward)``. Subclasses implement it."""
        raise NotImplementedError(f"{type(self).__name__} implements neither call nor forward")

    def __call__(self, x: Any) -> Any:
        return self.forward(x)[0]

    def output_shape(self, input_shape: Shape) -> Shape:
        """The output shape for ``input_shape`` (None for unknown sizes); a ShapeError naming the layer if it does not fit.

        Checks ``input_shape`` as :meth:`forward` checks an input, then asks :meth:`compute_output_shape`.
        """
        refusal = self._shape_refusal(tuple(input_shape), walk=True)
        if refusal is not None:
            raise ShapeError(refusal)
        return self.compute_output_shape(tuple(input_shape))

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        """The output shape for an ``input_shape`` that fits (the identity here); layers that change shapes override it."""
        return input_shape

    # -- the input contract -------------------------------------------------------------
    def check_input(self, x: Any) -> None:
        """Refuse ``x`` unless it fits :attr:`input_spec` and the layer's parameters.

        In order: an array (TypeError); the library and device of the parameters (TypeError,
        ValueError); the dtype kind of the spec, and for float layers with parameters their
        exact dtype (TypeError); the shape (:class:`ShapeError`). Reads only metadata: no
        device work, no array operation.

        An input accepted once is accepted again without the checks when everything they read
        is the same: the input's type, shape, dtype and device, the spec, and the reference
        parameter's type, dtype and device (a moved or cast model changes those). Any attribute
        assigned on the layer forgets what was accepted; a refusal is never remembered.
        """
        ref = self._input_reference()
        key = _input_key(x, ref, self.input_spec)
        accepted = self.__dict__.get("_accepted_inputs")
        if accepted is not None and key is not None and key in accepted:
            return
        self._check_input_uncached(x, ref)
        if key is not None:
            if accepted is None or len(accepted) >= _ACCEPTED_INPUTS_KEPT:
                accepted = self.__dict__["_accepted_inputs"] = set()  # not through __setattr__: that clears it
            accepted.add(key)

    def _check_input_uncached(self, x: Any, ref: Any) -> None:
        """:meth:`check_input`'s checks, every one, on ``x`` against the reference array ``ref`` (or None)."""
        spec = self.input_spec
        if not is_array_api_obj(x):
            namespace(x, where=f"{self!r}: ")  # raises the TypeError that says how to pass an array
        if ref is not None:
            try:
                xp = array_namespace(x, ref)
            except TypeError:
                raise TypeError(
                    f"{self!r}: got arrays from different libraries: the input is a {backends._describe(x)}, the parameters "
                    f"are a {backends._describe(ref)}; move the input (portnn.backends.to_numpy(x) for NumPy) or the layer "
                    f"(layer.to({backends.adapter_for_name(x)!r}))"
                ) from None
            if device_of(x) != device_of(ref):
                raise ValueError(
                    f"{self!r} got input on device {device_of(x)!r} but its parameters are on {device_of(ref)!r}; "
                    "move the input with x.to_device(...) or the model with model.to(backend, device=...)"
                )
        else:
            xp = array_namespace(x)
        if spec.dtype == "real floating" and ref is not None:
            if x.dtype != ref.dtype:
                raise TypeError(
                    f"{self!r} got input of dtype {dtype_name(x.dtype)} but its parameters are "
                    f"{dtype_name(ref.dtype)}; cast the input (xp.astype(x, xp.{dtype_name(ref.dtype)})) — "
                    "model.fit/predict/evaluate do this for you"
                )
        elif not xp.isdtype(x.dtype, spec.dtype):
            want, fix = _KINDS.get(spec.dtype, (f"a dtype of kind {spec.dtype!r}", "cast it"))
            raise TypeError(f"{self!r} got input of dtype {dtype_name(x.dtype)}: expected {want}; {fix}")
        refusal = self._shape_refusal(tuple(x.shape), walk=False)
        if refusal is not None:
            raise ShapeError(refusal)

    def shape_problem(self, shape: Shape) -> str | None:
        """Why ``shape``, which fits :attr:`input_spec`, still does not fit (a window larger than the image); None if it does."""
        return None

    def input_hint(self, shape: Shape) -> str:
        """Advice appended to the error for a ``shape`` that does not fit the spec, as ``" (…)"``; empty for none."""
        return ""

    def _input_reference(self) -> Any:
        """The array whose library, device and dtype inputs must share: the first parameter, else the first buffer."""
        for group in (self._params, self._buffers):
            for b in group.values():
                if b.data is not None:
                    return b.data
        return None

    def _shape_refusal(self, shape: Shape, *, walk: bool) -> str | None:
        """The error for ``shape``, or None if it fits: the wording says whether a shape walk or a real input was refused."""
        spec = self.input_spec
        if spec.fits(shape):
            problem = self.shape_problem(shape)
            if problem is None:
                return None
            hint = ""
        elif spec.shapes:
            expected, got, hint = spec.expected(), format_shape(shape), self.input_hint(shape)
            head = f"expects input of shape {expected}; got {got}" if walk else f"got input of shape {got}: expected {expected}"
            return f"{self!r} {head}{hint}"
        else:
            problem, hint = f"needs {spec.expected()}", self.input_hint(shape)
        head = "does not take" if walk else "got"
        return f"{self!r} {head} input of shape {format_shape(shape)}: {problem}{hint}"

    # -- parameters -------------------------------------------------------------------
    def add_parameter(self, name: str, data: Any, *, regularize: bool | None = None) -> Parameter:
        p = Parameter(data, name, regularize=regularize)
        self._params[name] = p
        return p

    def _named_members(self, kind: str, prefix: str) -> Iterator[tuple[str, Any]]:
        # own members first, then each layer's under it by its path (named_modules: a shared layer
        # once, at its first path); a member shared twice is listed once
        seen: set[int] = set()
        for path, layer in self.named_modules():
            for name, member in getattr(layer, kind).items():
                if id(member) not in seen:
                    seen.add(id(member))
                    yield f"{prefix}{path}.{name}" if path else prefix + name, member

    def parameters(self) -> list[Parameter]:
        """This layer's parameters, then its children's (in order)."""
        return [p for _, p in self.named_parameters()]

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        """``(name, parameter)`` pairs: own first, then each child's under its path (``"blocks.0.conv1.weight"``)."""
        yield from self._named_members("_params", prefix)

    def add_buffer(self, name: str, data: Any) -> Buffer:
        b = Buffer(data, name)
        self._buffers[name] = b
        return b

    def named_buffers(self, prefix: str = "") -> Iterator[tuple[str, Buffer]]:
        """``(name, buffer)`` pairs: own first, then each child's under its path (``"0.bn1.running_mean"``)."""
        yield from self._named_members("_buffers", prefix)

    def buffers(self) -> list[Buffer]:
        return [b for _, b in self.named_buffers()]

    def state_dict(self) -> dict[str, Any]:
        """Parameter and buffer arrays by name (``"0.weight"``, ``"2.running_mean"``…), on their device: PyTorch's naming."""
        return {name: b.data for name, b in (*self.named_parameters(), *self.named_buffers())}

    def load_state_dict(self, state: dict[str, Any], *, strict: bool = True) -> None:
        """Copy arrays (of any backend) into the parameters and buffers, on their backend, device and dtype.

        Everything is checked before anything is written: missing or unexpected names (with
        ``strict``) or a wrong shape raise and leave the model as it was.
        """
        if not isinstance(state, dict):
            raise TypeError(f"load_state_dict takes a dict of name -> array (model.state_dict()); got {type(state).__name__}")
        targets: dict[str, Buffer] = dict((*self.named_parameters(), *self.named_buffers()))
        missing = [k for k in targets if k not in state]
        unexpected = [k for k in state if k not in targets]
        if strict and (missing or unexpected):
            raise KeyError(
                f"load_state_dict: missing {missing or 'nothing'}, unexpected {unexpected or 'nothing'}; "
                "is the state from another architecture? strict=False loads the names that match"
            )
        staged = {}
        for name, value in state.items():
            if name not in targets:
                continue
            host = backends.to_numpy(value)
            b = targets[name]
            if tuple(host.shape) != b.shape:
                raise ValueError(f"load_state_dict: {name} has shape {tuple(host.shape)} in the state but {b.shape} in the model")
            adapter = backends.adapter_for(b.data)
            staged[name] = adapter.from_numpy(host.astype(dtype_name(b.dtype), copy=True), b.device)
        for name, data in staged.items():
            targets[name].data = data
            if isinstance(targets[name], Parameter):
                targets[name].grad = None

    def reset_parameters(self, rng: Any = None) -> None:
        """Draw fresh parameters from the host generator ``rng`` (None: fresh entropy): here, each nested layer's, in order.

        A layer with parameters of its own overrides it (a composite one also calls this for its
        children). Each layer is drawn once, however often it is used (:meth:`named_modules`).
        """
        done = _resetting.get()
        token = _resetting.set(set()) if done is None else None
        done = _resetting.get()
        try:
            done.add(id(self))
            for layer in self.modules():
                if id(layer) not in done:
                    done.add(id(layer))
                    layer.reset_parameters(rng)
        finally:
            if token is not None:
                _resetting.reset(token)

    def new_parameter_home(self, dtype: Any) -> backends.Backend:
        """Where a new layer's parameters are born: the global backend (its float64 support checked for ``dtype``)."""
        backend = backends.get_backend()
        if dtype_name(resolve_dtype(backend.xp, dtype)) == "float64" and not backend.adapter.supports_float64(backend.device):
            raise ValueError(f"{self!r}: backend {backend} has no float64; use dtype='float32'")
        return backend

    @property
    def min_batch_size(self) -> int:
        """The fewest examples a training batch may hold (BatchNorm: 2; a composite: its nested layers' most); fit checks it."""
        return max(
            (m.min_batch_size for m in self.modules() if m is not self and type(m).min_batch_size is not Layer.min_batch_size),
            default=1,
        )

    @property
    def trainable(self) -> bool:
        """Whether any parameter of the layer (or of a nested layer) is trained; setting it freezes or unfreezes them all."""
        if not self.__dict__.get("_children"):  # a leaf (Linear asks at every step): no walk
            return any(p.trainable for p in self._params.values())
        return any(p.trainable for m in self.modules() for p in m._params.values())

    @trainable.setter
    def trainable(self, value: bool) -> None:
        for m in self.modules():
            for p in m._params.values():
                p.trainable = bool(value)

    def to(self, backend: str, device: Any = None) -> Layer:
        """Move the parameters and buffers (the nested layers' too, each once) to another backend/device. Returns self."""
        target = backends._resolve(backend, device)
        for m in self.modules():
            for b in (*m._params.values(), *m._buffers.values()):
                b.data = target.adapter.from_numpy(backends.to_numpy(b.data).copy(), target.device)
            for p in m._params.values():
                p.grad = None
        return self

    # -- configuration ----------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        """The constructor arguments that rebuild this layer, as JSON-able values, plus its ``name``.

        The default reads, for each argument of ``__init__``, the attribute of the same name
        (tuples become lists). Layers that store an argument differently override this and
        pass the values through :meth:`config_from_signature`. A layer that cannot be
        described raises a TypeError naming it. :meth:`from_config` is the inverse.

        Examples
        --------
        >>> import portnn as pn
        >>> pn.layers.LeakyReLU(0.2).get_config()
        {'negative_slope': 0.2, 'name': None}
        >>> pn.layers.MaxPool2d(2).get_config()
        {'kernel_size': 2, 'stride': 2, 'padding': 0, 'name': None}
        """
        return self.config_from_signature()

    def config_from_signature(self, **known: Any) -> dict[str, Any]:
        """:meth:`get_config`'s default: ``known`` values, else the attribute named like each ``__init__`` argument."""
        where = f"{type(self).__name__}.get_config ({self!r}, name={self.name!r})"
        config: dict[str, Any] = {}
        params = list(inspect.signature(type(self).__init__).parameters.values())[1:]
        for param in params:
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                raise TypeError(f"{where}: __init__ takes *{param.name}, which a config cannot describe; override get_config")
            if param.name in known:
                value = known[param.name]
            elif hasattr(self, param.name):
                value = getattr(self, param.name)
            else:
                raise TypeError(
                    f"{where}: __init__ takes {param.name!r} but the layer keeps no attribute of that name; "
                    "override get_config to say how to rebuild it"
                )
            config[param.name] = _jsonable(value, f"{where}: argument {param.name!r}")
        config["name"] = self.name
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Layer:
        """Build a layer from :meth:`get_config`'s dict (lists back to tuples; ``name`` set after construction).

        Examples
        --------
        >>> import portnn as pn
        >>> layer = pn.layers.Dropout(0.3, seed=1)
        >>> pn.layers.Dropout.from_config(layer.get_config()).get_config() == layer.get_config()
        True
        """
        if not isinstance(config, dict):
            raise TypeError(f"{cls.__name__}.from_config: expected a dict of constructor arguments; got {type(config).__name__}")
        kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in config.items() if k != "name"}
        layer = cls(**kwargs)
        layer.name = config.get("name")
        return layer

    # -- text -------------------------------------------------------------------------
    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"


class RandomLayer(Layer):
    """A layer that draws random numbers at training time (Dropout, RandomTranslation).

    The numbers come from a generator the backend's adapter makes
    (:meth:`portnn.backends.Adapter.make_generator`) on the input's device, seeded by ``seed``
    (None: fresh entropy). It is made for the backend and device of the first training input
    and made again, from the same seed, if they change. :class:`portnn.Sequential` with
    ``seed=`` re-seeds it through :meth:`reset_parameters`. One seed gives the same draws on one
    backend; different backends draw different streams.
    """

    def __init__(self, *, seed: int | None = None) -> None:
        super().__init__()
        seed = check_seed(type(self).__name__, "seed", seed)
        self.seed = int(backends.host_rng().integers(2**63)) if seed is None else seed
        self._generator: Any = None
        self._generator_for: tuple[str, Any] | None = None

    def reset_parameters(self, rng: Any = None) -> None:
        """Re-seed the generator with an int drawn from the host generator ``rng`` (None: fresh entropy)."""
        self.seed = int((backends.host_rng() if rng is None else rng).integers(2**63))
        self._generator = self._generator_for = None

    def get_rng_state(self) -> Any:
        """The generator's state as a NumPy uint8 array; None before the first training draw or where the backend cannot say."""
        if self._generator is None or self._generator_for is None:
            return None
        return backends.get_adapter(self._generator_for[0]).generator_state(self._generator)

    def set_rng_state(self, state: Any, backend: backends.Backend, *, reseed: int | None = None) -> None:
        """Make the generator for ``backend`` and restore ``state`` into it (from :meth:`get_rng_state`).

        Where no state was saved, ``reseed`` (if given) seeds it from ``seed + reseed`` instead:
        fresh draws that do not repeat the interrupted run's.
        """
        seed = self.seed if state is not None or reseed is None else (self.seed + reseed) % 2**63
        self._generator = backend.adapter.make_generator(seed, backend.device)
        self._generator_for = (backend.adapter.name, backend.device)
        if state is not None:
            backend.adapter.set_generator_state(self._generator, state)

    def uniform(self, x: Any, shape: tuple[int, ...]) -> Any:
        """U[0, 1) draws of ``shape`` on ``x``'s device, in ``x``'s dtype."""
        adapter, dev = backends.adapter_for(x), device_of(x)
        if self._generator is None or self._generator_for != (adapter.name, dev):
            self._generator = adapter.make_generator(self.seed, dev)
            self._generator_for = (adapter.name, dev)
        return adapter.random_uniform(self._generator, shape, x.dtype, dev)


class WeightedLayer(Layer):
    """A layer with a ``weight`` drawn by its initialiser ``self.init`` and an optional zero ``bias`` (Linear, Conv2d).

    Subclasses give :meth:`weight_spec` and call :meth:`build_weights` at the end of ``__init__``.
    """

    init: Any

    def weight_spec(self) -> tuple[tuple[int, ...], int, int]:
        """``(weight shape, fan_in, fan_out)``; the bias has ``weight shape[0]`` elements."""
        raise NotImplementedError

    def accumulating(self, backward_fn: Callable[[Any], tuple[Any, Any, Any]]) -> Callable[[Any], Any]:
        """``backward`` for a functional op's ``(dx, dweight, dbias)``: the parameters' grads filled, ``dx`` returned."""
        weight, bias = self.weight, self.bias

        def backward(dy: Any) -> Any:
            dx, dw, db = backward_fn(dy)
            if dw is not None:
                weight.accumulate(dw)
            if db is not None and bias is not None:
                bias.accumulate(db)
            return dx

        return backward

    def build_weights(self, *, bias: bool, dtype: Any, seed: int | None) -> None:
        """Create ``weight`` (and ``bias``) on the global backend, drawn from a generator seeded with ``seed``."""
        seed = check_seed(type(self).__name__, "seed", seed)
        backend = self.new_parameter_home(dtype)
        self.weight = self.add_parameter("weight", None)
        self.bias = self.add_parameter("bias", None) if bias else None
        name = dtype_name(resolve_dtype(backend.xp, dtype))
        self._materialize(backends.host_rng(seed), backend.adapter, backend.device, name)

    def get_config(self) -> dict[str, Any]:
        """:meth:`Layer.get_config` with ``bias``, ``init`` (by name) and ``dtype`` (the weight's) as given to the constructor.

        ``seed`` is None: the weights are state, saved with the state dict. An ``init`` that is
        a callable of your own has no name to store and raises a TypeError.
        """
        where = f"{type(self).__name__}.get_config ({self!r}, name={self.name!r})"
        return self.config_from_signature(
            bias=self.bias is not None, init=_init_name(self.init, where), dtype=dtype_name(self.weight.dtype), seed=None
        )

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Layer:
        """:meth:`Layer.from_config`, reading ``init`` back from its name (a factory's too: ``"normal(0.2)"``)."""
        if isinstance(config, dict) and isinstance(config.get("init"), str):
            config = {**config, "init": _init_from_name(config["init"], f"{cls.__name__}.from_config")}
        return super().from_config(config)

    def reset_parameters(self, rng: Any = None) -> None:
        w = self.weight.data
        rng = backends.host_rng() if rng is None else rng
        self._materialize(rng, backends.adapter_for(w), self.weight.device, dtype_name(w.dtype))

    def _materialize(self, rng: Any, adapter: Any, device: Any, dtype: str) -> None:
        shape, fan_in, fan_out = self.weight_spec()
        w = self.init(rng, shape, fan_in, fan_out)
        self.weight.data, self.weight.grad = adapter.from_numpy(w.astype(dtype), device), None
        if self.bias is not None:
            b = rng.uniform(0.0, 0.0, (shape[0],))  # zeros, without naming numpy here
            self.bias.data, self.bias.grad = adapter.from_numpy(b.astype(dtype), device), None


#: Builds the chain a list of layers becomes inside a composite (:class:`portnn.Sequential`). The
#: layers room never imports the model room: :mod:`portnn.model` puts its class here when it loads.
_chain_class: type[Layer] | None = None


def as_layer(block: Any, where: str) -> Layer:
    """``block`` if it is a layer; a list or tuple of layers as a :class:`portnn.Sequential`; else a TypeError naming where."""
    if isinstance(block, Layer):
        return block
    if isinstance(block, (list, tuple)) and block and all(isinstance(b, Layer) for b in block):
        if _chain_class is None:
            raise RuntimeError(f"{where}: import portnn (which defines Sequential) before passing a list of layers")
        return _chain_class(list(block))
    got = f"{type(block).__name__} ({block!r:.80})"
    raise TypeError(f"{where} takes a layer or a non-empty list of layers; got {got}{class_hint(block)}")


def class_hint(value: Any) -> str:
    """``" (a layer class? call it: ReLU())"`` when ``value`` is a layer class rather than a layer; else empty."""
    return " (a layer class? call it: ReLU())" if isinstance(value, type) and issubclass(value, Layer) else ""


def layer_entry(layer: Layer) -> dict[str, Any]:
    """A child as a config holds it: ``{"class_name", "config"}`` (``layer_from_config`` rebuilds it)."""
    return {"class_name": type(layer).__name__, "config": layer.get_config()}


#: Attributes of every layer that are dicts of its own state, never children.
#: How many accepted inputs (type, shape, dtype, device...) a layer remembers: a train batch, a last batch, an eval batch...
_ACCEPTED_INPUTS_KEPT = 8


def _input_key(x: Any, ref: Any, spec: InputSpec) -> tuple[Any, ...] | None:
    """What :meth:`Layer.check_input` reads of ``x``, of the reference array ``ref`` and of the spec, hashable; None when not."""
    try:
        key = (type(x), tuple(x.shape), x.dtype, x.device, spec)
        if ref is not None:
            key += (type(ref), ref.dtype, ref.device)
        hash(key)
    except Exception:  # not an array, or a device/dtype that does not hash: every check, every time
        return None
    return key


_OWN_STATE = frozenset({"_params", "_buffers", "_children"})

#: The layers a :meth:`Layer.reset_parameters` walk has drawn (each once); None outside one.
_resetting: contextvars.ContextVar[set[int] | None] = contextvars.ContextVar("portnn_resetting", default=None)


def _layers_in(value: Any) -> int:
    """How many layers a list, tuple or dict holds (its values for a dict); 0 for anything else."""
    if isinstance(value, dict):
        value = value.values()
    elif not isinstance(value, (list, tuple)):
        return 0
    return sum(isinstance(v, Layer) for v in value)


def _jsonable(value: Any, where: str) -> Any:
    """``value`` as JSON types (tuples to lists, NumPy-like scalars to int/float); a TypeError naming ``where`` otherwise."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        if not math.isfinite(float(value)):
            raise TypeError(f"{where} is {value!r}, which JSON cannot hold")
        return float(value)
    if isinstance(value, (tuple, list)):
        return [_jsonable(v, where) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: _jsonable(v, where) for k, v in value.items()}
    raise TypeError(f"{where} is a {type(value).__name__} ({value!r}), which a JSON config cannot hold; override get_config")


# initialisers made by a factory are named after their call: "normal(0.2)", "uniform(-0.05, 0.05)"
_FACTORIES = {"normal": initializers.normal, "uniform": initializers.uniform, "constant": initializers.constant}
_FACTORIES["orthogonal"] = initializers.orthogonal
_CALL = re.compile(r"^(\w+)\((.*)\)$")


def _init_name(init: Any, where: str) -> str:
    """The name that :func:`_init_from_name` turns back into ``init``; a TypeError for a callable of the user's."""
    for name, known in initializers.INITIALIZERS.items():
        if known is init:
            return name
    name = getattr(init, "__name__", "")
    try:
        if _CALL.match(name) and _init_from_name(name, where).__name__ == name:
            return name  # made by a portnn.init factory
    except ValueError:
        pass
    raise TypeError(
        f"{where}: init is {init!r}, a callable of your own, which a saved architecture cannot name; "
        f"use a name from portnn.init.INITIALIZERS or a portnn.init factory, or save only the weights (save_weights)"
    )


def _init_from_name(name: str, where: str) -> Any:
    """The initialiser called ``name``: a key of ``INITIALIZERS`` or a factory call with numbers (never evaluated)."""
    if name in initializers.INITIALIZERS:
        return initializers.INITIALIZERS[name]
    match = _CALL.match(name)
    if match and match.group(1) in _FACTORIES:
        try:
            args = [float(a) for a in match.group(2).split(",")] if match.group(2).strip() else []
            return _FACTORIES[match.group(1)](*args)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{where}: cannot rebuild init {name!r}: {exc}") from None
    raise ValueError(f"{where}: unknown init {name!r}; expected a name from portnn.init.INITIALIZERS or a factory call")

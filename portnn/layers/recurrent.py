"""Recurrent layers: LSTM and GRU, batch first, with PyTorch's parameter names and gate order."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import backends
from .._array import dtype_name, resolve_dtype
from .._checks import check_flag, check_int, check_seed
from ..functional.recurrent import gru, lstm
from ..init import Initializer, get_initializer
from .base import InputSpec, Layer, Shape, _init_from_name, _init_name

__all__ = ["GRU", "LSTM"]


class _Recurrent(Layer):
    """What LSTM and GRU share: arguments, parameters per layer, the stacked pass, config and repr.

    A subclass gives ``_gates`` (rows of each weight per hidden unit) and ``_cell``, the
    function of :mod:`portnn.functional.recurrent` that runs one layer over the sequence.
    """

    _gates: int
    _cell: Callable[..., Any]

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        *,
        num_layers: int = 1,
        bias: bool = True,
        return_sequences: bool = False,
        init: str | Initializer = "torch",
        dtype: Any = "float32",
        seed: int | None = None,
    ) -> None:
        super().__init__()
        kind = type(self).__name__
        self.input_size = check_int(kind, "input_size", input_size, expected="a positive int")
        self.hidden_size = check_int(kind, "hidden_size", hidden_size, expected="a positive int")
        where = f"{kind}({self.input_size}, {self.hidden_size})"
        self.num_layers = check_int(where, "num_layers", num_layers, expected="a positive int")
        self.use_bias = check_flag(where, "bias", bias)
        self.return_sequences = check_flag(where, "return_sequences", return_sequences)
        self.input_spec = InputSpec(("batch", "time", self.input_size))
        self.init = get_initializer(init, where=f"{where}: ")
        seed = check_seed(kind, "seed", seed)
        backend = self.new_parameter_home(dtype)
        for k in range(self.num_layers):
            for name in self._names(k):
                # weights are L2 targets, biases are not (a Parameter guesses that from the name "weight" alone)
                setattr(self, name, self.add_parameter(name, None, regularize=name.startswith("weight")))
        self._materialize(backends.host_rng(seed), backend.adapter, backend.device, dtype_name(resolve_dtype(backend.xp, dtype)))

    # -- parameters -------------------------------------------------------------------
    def _names(self, k: int) -> list[str]:
        """Layer ``k``'s parameter names, PyTorch's, in its order."""
        return [f"weight_ih_l{k}", f"weight_hh_l{k}"] + ([f"bias_ih_l{k}", f"bias_hh_l{k}"] if self.use_bias else [])

    def _shapes(self, k: int) -> list[tuple[int, ...]]:
        rows = self._gates * self.hidden_size
        shapes = [(rows, self.input_size if k == 0 else self.hidden_size), (rows, self.hidden_size)]
        return shapes + ([(rows,), (rows,)] if self.use_bias else [])

    def _materialize(self, rng: Any, adapter: Any, device: Any, dtype: str) -> None:
        """Draw every parameter with ``init`` on the host, PyTorch's order and fan-in (``hidden_size``), then move it."""
        fan_out = self._gates * self.hidden_size
        for k in range(self.num_layers):
            for name, shape in zip(self._names(k), self._shapes(k)):
                p = self._params[name]
                p.data, p.grad = adapter.from_numpy(self.init(rng, shape, self.hidden_size, fan_out).astype(dtype), device), None

    def reset_parameters(self, rng: Any = None) -> None:
        ref = self.weight_ih_l0.data
        rng = backends.host_rng() if rng is None else rng
        self._materialize(rng, backends.adapter_for(ref), self.weight_ih_l0.device, dtype_name(ref.dtype))

    # -- shapes -----------------------------------------------------------------------
    def compute_output_shape(self, input_shape: Shape) -> Shape:
        if self.return_sequences:
            return (input_shape[0], input_shape[1], self.hidden_size)
        return (input_shape[0], self.hidden_size)

    def shape_problem(self, shape: Shape) -> str | None:
        if shape[1] == 0:
            return "a sequence needs at least one time step"
        return None

    def input_hint(self, shape: Shape) -> str:
        features = self.input_size
        if len(shape) == 2 and shape[1] == features:
            return f" (one time step per example? use x.reshape(-1, 1, {features}))"
        if len(shape) == 3 and shape[1] == features:
            return " (time and features swapped? recurrent layers take (batch, time, features): use x.transpose(0, 2, 1))"
        if len(shape) == 4 and shape[1] == 1 and shape[3] == features:
            return f" (images? read their rows as time steps: x.reshape(-1, {shape[2]}, {features}))"
        return ""

    # -- the pass ---------------------------------------------------------------------
    def call(self, x: Any, *, training: bool = False, input_grad: bool = True) -> tuple[Any, Callable[[Any], Any]]:
        groups = [[self._params[n] for n in self._names(k)] for k in range(self.num_layers)]
        trainable = [any(p.trainable for p in group) for group in groups]
        backwards = []
        for k, group in enumerate(groups):
            # a layer's input gradient is needed for the input, or for a trainable layer below it
            needs_dx = input_grad or any(trainable[:k])
            last = k == self.num_layers - 1
            x, backward_k = type(self)._cell(
                x, *(p.data for p in group), return_sequences=self.return_sequences or not last,
                input_grad=needs_dx, param_grad=trainable[k],
            )  # fmt: skip
            backwards.append(backward_k)

        def backward(dy: Any) -> Any:
            for group, backward_k in zip(reversed(groups), reversed(backwards)):
                if dy is None:  # nothing below wants a gradient
                    break
                dx, *grads = backward_k(dy)
                for p, g in zip(group, grads):
                    if g is not None:
                        p.accumulate(g)
                dy = dx
            return dy if input_grad else None

        return x, backward

    # -- configuration and text -------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        """The constructor's arguments, ``init`` by name and ``dtype`` the weights'; ``seed`` None (the weights are state)."""
        where = f"{type(self).__name__}.get_config ({self!r}, name={self.name!r})"
        return self.config_from_signature(
            bias=self.use_bias, init=_init_name(self.init, where), dtype=dtype_name(self.weight_ih_l0.dtype), seed=None
        )

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Layer:
        """:meth:`Layer.from_config`, reading ``init`` back from its name."""
        if isinstance(config, dict) and isinstance(config.get("init"), str):
            config = {**config, "init": _init_from_name(config["init"], f"{cls.__name__}.from_config")}
        return super().from_config(config)

    def extra_repr(self) -> str:
        text = f"{self.input_size}, {self.hidden_size}"
        text += f", num_layers={self.num_layers}" if self.num_layers != 1 else ""
        text += "" if self.use_bias else ", bias=False"
        return text + (", return_sequences=True" if self.return_sequences else "")


_DOC = """{summary}

Input (batch, time, input_size), batch first, any number of steps >= 1; the states start
at zero. The output is the last step's hidden state, (batch, hidden_size), or every step's,
(batch, time, hidden_size), with ``return_sequences=True`` (Keras's name). PyTorch's
``nn.{kind}(batch_first=True)`` returns both, and the final states besides; a portnn layer
returns one array, so choose with ``return_sequences`` (a stack of layers below the last
returns sequences to the next one).

Parameters are PyTorch's, with its names, shapes and gate order ({gates}): for each layer
``k`` (``_l0``, ``_l1``…), ``weight_ih_lk`` ({g}*hidden_size, input size of layer k),
``weight_hh_lk`` ({g}*hidden_size, hidden_size), ``bias_ih_lk`` and ``bias_hh_lk``
({g}*hidden_size,). A state dict loads into ``torch.nn.{kind}`` and back. The math, forward
and backward through time, is in :func:`portnn.functional.{cell}`.

Parameters
----------
input_size, hidden_size
    Features of each input step and of the hidden state.
num_layers
    Layers stacked, each reading the hidden states of the one below.
bias
    Whether to learn ``bias_ih`` and ``bias_hh``.
return_sequences
    Return every step's hidden state instead of the last one.
init
    Initialiser of every parameter, biases included, called with ``fan_in = hidden_size``
    (PyTorch's rule for recurrent layers): the default ``"torch"`` draws PyTorch's
    U(-1/sqrt(hidden_size), 1/sqrt(hidden_size)). A name from :data:`portnn.init.INITIALIZERS`
    or a callable ``f(rng, shape, fan_in, fan_out)``.
dtype
    ``"float32"`` (default) or ``"float64"``.
seed
    Seed of the initial parameters, drawn on the host (:func:`portnn.backends.host_rng`), so
    one seed gives the same layer on every backend. :class:`portnn.Sequential` with ``seed=``
    re-draws all layers from one generator.

Examples
--------
>>> import numpy as np
>>> import portnn as pn
>>> layer = pn.layers.{kind}(28, 16, seed=0)
>>> layer
{kind}(28, 16)
>>> x = np.zeros((4, 10, 28), dtype=np.float32)
>>> layer(x).shape, pn.layers.{kind}(28, 16, return_sequences=True, seed=0)(x).shape
((4, 16), (4, 10, 16))
>>> [(name, p.shape) for name, p in layer.named_parameters()]
[('weight_ih_l0', ({rows}, 28)), ('weight_hh_l0', ({rows}, 16)), ('bias_ih_l0', ({rows},)), ('bias_hh_l0', ({rows},))]
"""


class LSTM(_Recurrent):
    _gates = 4
    _cell = staticmethod(lstm)


class GRU(_Recurrent):
    _gates = 3
    _cell = staticmethod(gru)


LSTM.__doc__ = _DOC.format(
    summary="Long short-term memory over a sequence, PyTorch's ``nn.LSTM`` with ``batch_first=True``.",
    kind="LSTM", gates="i, f, g, o", g=4, cell="lstm", rows=64,
)  # fmt: skip
GRU.__doc__ = _DOC.format(
    summary="Gated recurrent unit over a sequence, PyTorch's ``nn.GRU`` with ``batch_first=True``; "
    "``n = tanh(W_in x + b_in + r * (W_hn h + b_hn))``.",
    kind="GRU", gates="r, z, n", g=3, cell="gru", rows=48,
)  # fmt: skip

"""Fully connected layers."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from .. import functional as F
from .._checks import check_flag, check_int
from ..init import Initializer, get_initializer
from .base import InputSpec, Shape, WeightedLayer

__all__ = ["Linear"]


class Linear(WeightedLayer):
    """``y = x @ weight.T + bias``, PyTorch's layout: ``weight`` is (out_features, in_features).

    Takes (batch, in_features), or (batch, ..., in_features) as PyTorch's ``nn.Linear`` does:
    a sequence (batch, time, features) is mapped step by step, to (batch, time, out_features).

    Parameters
    ----------
    in_features, out_features
        Sizes of each input and output row.
    bias
        Whether to learn an additive bias (initialised to zero).
    init
        Weight initialiser: a name from :data:`portnn.init.INITIALIZERS` (``"he_uniform"``,
        ``"he_normal"``, ``"glorot_uniform"``, ``"glorot_normal"``, ``"normal"``, ``"torch"``…)
        or a callable ``f(rng, shape, fan_in, fan_out)``. He suits ReLU, Glorot tanh/sigmoid.
    dtype
        ``"float32"`` (default) or ``"float64"``.
    seed
        Seed of the initial weights. :class:`portnn.Sequential` with ``seed=`` re-draws all
        layers from one generator, which is what you usually want.

    Parameters live on the backend and device in force when the layer is built
    (:func:`portnn.set_backend`).

    Examples
    --------
    >>> import numpy as np
    >>> import portnn as pn
    >>> layer = pn.layers.Linear(3, 2, seed=0)
    >>> layer(np.ones((4, 3), dtype=np.float32)).shape
    (4, 2)
    >>> layer(np.ones((4, 7, 3), dtype=np.float32)).shape  # a sequence: each of the 7 steps
    (4, 7, 2)
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        bias: bool = True,
        init: str | Initializer = "he_uniform",
        dtype: Any = "float32",
        seed: int | None = None,
    ) -> None:
        super().__init__()
        in_features = check_int("Linear", "in_features", in_features, expected="a positive int")
        out_features = check_int("Linear", "out_features", out_features, expected="a positive int")
        self.in_features = in_features
        self.out_features = out_features
        self.use_bias = check_flag("Linear", "bias", bias)
        self.input_spec = InputSpec(("batch", in_features))
        self.init = get_initializer(init, where=f"Linear({in_features}, {out_features}): ")
        self.build_weights(bias=self.use_bias, dtype=dtype, seed=seed)

    def weight_spec(self) -> tuple[tuple[int, ...], int, int]:
        return (self.out_features, self.in_features), self.in_features, self.out_features

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return (*input_shape[:-1], self.out_features)

    def _shape_refusal(self, shape: Shape, *, walk: bool) -> str | None:
        # the spec states the 2-D input (a model's first Linear fixes its example shape from it);
        # (batch, ..., in_features) fits too, mapped along the last axis as in PyTorch
        if len(shape) > 2 and shape[-1] in (None, self.in_features):
            return None
        return super()._shape_refusal(shape, walk=walk)

    def input_hint(self, shape: Shape) -> str:
        if len(shape) > 2:
            flat = math.prod(d for d in shape[1:] if d is not None)
            if None not in shape[1:] and flat == self.in_features:
                return " (add pn.layers.Flatten() before it)"
            return (
                f" (or (batch, ..., {self.in_features}): Linear maps the last axis, which has {shape[-1]} features; "
                f"give it in_features={shape[-1]}, or add pn.layers.Flatten() before it)"
            )
        return " (a single example? use x.reshape(1, -1))" if len(shape) == 1 else ""

    def call(self, x: Any, *, training: bool = False, input_grad: bool = True) -> tuple[Any, Callable[[Any], Any]]:
        w = self.weight.data
        b = self.bias.data if self.bias is not None else None
        y, backward_fn = F.linear(x, w, b, input_grad=input_grad, param_grad=self.trainable)
        return y, self.accumulating(backward_fn)

    def extra_repr(self) -> str:
        extra = "" if self.use_bias else ", bias=False"
        return f"{self.in_features}, {self.out_features}{extra}"

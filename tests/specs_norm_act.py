"""Op specs of LayerNorm, GELU, SiLU and Conv1d, for the harness in ``tests/test_ops.py``.

Each spec runs central differences in float64, PyTorch's functional op as the autograd oracle
(``layer_norm``, ``gelu`` in both forms, ``silu``, ``conv1d``) and parity on every backend
in float32 and float64. Merge with ``SPECS.update(specs_norm_act.SPECS)``. The exact GELU
takes the library's ``erf`` where it has one and Cody's portable approximation elsewhere
(array-api-strict; NumPy without SciPy), so the parity rows compare the two paths too.
``conv1d_batch_last`` is big enough for the NumPy adapter's batch-last conv2d kernel.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from opspec import Spec, layer_op

from portnn import functional as F


def _torch(name: str, **kw: Any) -> Callable[..., Any]:
    """``torch.nn.functional.<name>(*args, **kw)``, looked up lazily (torch may be missing)."""

    def call(*args: Any) -> Any:
        import torch

        return getattr(torch.nn.functional, name)(*args, **kw)

    return call


def _layer_norm(x_shape: tuple[int, ...], k: int, *, weight: bool = True, bias: bool = True, eps: float = 1e-5) -> Spec:
    shape = x_shape[len(x_shape) - k :]

    def make(r: np.random.Generator) -> list[np.ndarray]:
        # an offset and a scale per slice: the statistics differ from row to row
        x = r.normal(size=x_shape) * (0.5 + r.random(x_shape[:-k] + (1,) * k)) + r.normal(size=x_shape[:-k] + (1,) * k)
        return [x] + ([r.normal(size=shape) + 1.0] if weight else []) + ([r.normal(size=shape)] if bias else [])

    def op(x: Any, *params: Any) -> Any:
        w = params[0] if weight else None
        b = params[-1] if bias else None
        return F.layer_norm(x, shape, w, b, eps=eps)

    def oracle(x: Any, *params: Any) -> Any:
        import torch

        w = params[0] if weight else None
        b = params[-1] if bias else None
        return torch.nn.functional.layer_norm(x, shape, w, b, eps=eps)

    return Spec(make, layer_op(op), oracle, 1 + weight + bias)


def _conv1d(x_shape: tuple[int, ...], w_shape: tuple[int, ...], *, bias: bool = True, **kw: Any) -> Spec:
    def make(r: np.random.Generator) -> list[np.ndarray]:
        arrays = [r.normal(size=x_shape), r.normal(size=w_shape)]
        return arrays + [r.normal(size=w_shape[0])] if bias else arrays

    op: Callable[..., Any] = layer_op(lambda x, w, b=None: F.conv1d(x, w, b, **kw))
    return Spec(make, op, _torch("conv1d", **kw), 3 if bias else 2)


SPECS: dict[str, Spec] = {
    "layer_norm": _layer_norm((6, 5), 1),
    "layer_norm_sequence": _layer_norm((2, 3, 7), 1),  # (batch, time, features), as in a transformer
    "layer_norm_two_axes": _layer_norm((3, 2, 4, 5), 2),
    "layer_norm_no_bias": _layer_norm((4, 6), 1, bias=False),
    "layer_norm_no_affine": _layer_norm((4, 3, 5), 1, weight=False, bias=False, eps=1e-3),
    "gelu": Spec(lambda r: [3 * r.normal(size=(4, 6))], layer_op(F.gelu), _torch("gelu")),
    # the tails, where erf saturates: |x| up to 9
    "gelu_wide": Spec(lambda r: [np.linspace(-9, 9, 37).reshape(1, 37) + 0.01], layer_op(F.gelu), _torch("gelu")),
    "gelu_tanh": Spec(
        lambda r: [3 * r.normal(size=(4, 6))], layer_op(lambda x: F.gelu(x, "tanh")), _torch("gelu", approximate="tanh")
    ),
    "silu": Spec(lambda r: [4 * r.normal(size=(4, 6))], layer_op(F.silu), _torch("silu")),
    "conv1d": _conv1d((2, 3, 9), (4, 3, 3)),
    "conv1d_nobias": _conv1d((2, 3, 9), (4, 3, 3), bias=False),
    "conv1d_stride": _conv1d((2, 2, 11), (3, 2, 3), stride=2),
    "conv1d_padding": _conv1d((2, 2, 5), (3, 2, 3), padding=2),
    "conv1d_dilation": _conv1d((1, 2, 10), (2, 2, 3), dilation=3),
    "conv1d_mixed": _conv1d((1, 3, 13), (2, 3, 4), stride=3, padding=1, dilation=2),  # windows skip some inputs
    "conv1d_kernel_is_input": _conv1d((2, 2, 5), (3, 2, 5)),  # output length 1
    "conv1d_batch_last": _conv1d((16, 4, 12), (4, 4, 5), padding=2),
}

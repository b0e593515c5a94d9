"""Op specs of the pooling family and of 2-D batch norm, for the harness in ``tests/test_ops.py``.

Merge with ``SPECS.update(specs_pool.SPECS)``: each spec then gets central differences in
float64, the PyTorch autograd oracle and parity on every backend in float32 and float64.

Max-pool inputs are a random permutation of distinct values 0.05 apart: no window holds a
near-tie, so neither a finite-difference step nor float32 rounding moves an argmax.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from opspec import Spec, layer_op

from portnn._array import dtype_name
from portnn.functional.pooling import avg_pool2d, global_avg_pool2d, max_pool2d
from portnn.layers.normalization import BatchNorm2d


def distinct(r: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Values 0.05 apart, centred on 0, in random order: an input without ties or near-ties."""
    n = int(np.prod(shape))
    return (r.permutation(n).reshape(shape) - n / 2) * 0.05


def _max(kernel_size: Any, stride: Any = None, padding: Any = 0) -> Any:
    def oracle(x: Any) -> Any:
        import torch

        return torch.nn.functional.max_pool2d(x, kernel_size, stride, padding)

    return layer_op(lambda x: max_pool2d(x, kernel_size, stride=stride, padding=padding)), oracle


def _avg(kernel_size: Any, stride: Any = None, padding: Any = 0) -> Any:
    def oracle(x: Any) -> Any:
        import torch

        return torch.nn.functional.avg_pool2d(x, kernel_size, stride, padding)

    return layer_op(lambda x: avg_pool2d(x, kernel_size, stride=stride, padding=padding)), oracle


def _max_spec(shape: tuple[int, ...], *args: Any) -> Spec:
    op, oracle = _max(*args)
    return Spec(lambda r: [distinct(r, shape)], op, oracle)


def _avg_spec(shape: tuple[int, ...], *args: Any) -> Spec:
    op, oracle = _avg(*args)
    return Spec(lambda r: [r.normal(size=shape)], op, oracle)


def _batch_norm_2d(training: bool) -> Any:
    """BatchNorm2d's pass (F.batch_norm on the (N, C, H*W) view) as an op of ``x, weight, bias`` (and running stats)."""

    def op(x: Any, w: Any, b: Any, *running: Any) -> Any:
        # without running statistics in training: no buffer update that could meet arrays of another backend
        layer = BatchNorm2d(int(x.shape[1]), dtype=dtype_name(x.dtype), track_running_stats=not training)
        layer.weight.data, layer.bias.data = w, b
        if running:
            layer.running_mean.data, layer.running_var.data = running
        y, backward = layer.forward(x, training=training)

        def vjp(dy: Any) -> tuple[Any, ...]:
            return backward(dy), layer.weight.grad, layer.bias.grad

        return y, vjp

    return op


def _torch_batch_norm(x: Any, w: Any, b: Any, *running: Any) -> Any:
    import torch

    rm, rv = running or (None, None)
    return torch.nn.functional.batch_norm(x, rm, rv, w, b, training=not running, eps=1e-5)


SPECS: dict[str, Spec] = {
    "max_pool2d_k2": _max_spec((2, 3, 6, 6), 2),
    "max_pool2d_k3_s2_overlap": _max_spec((2, 2, 7, 7), 3, 2),
    "max_pool2d_k3_s1_pad1": _max_spec((2, 2, 5, 5), 3, 1, 1),
    "max_pool2d_k2_pad1": _max_spec((1, 3, 5, 4), 2, 2, 1),
    "max_pool2d_odd": _max_spec((2, 2, 7, 5), 2),  # the last row and column fall outside every window
    "max_pool2d_nonsquare": _max_spec((2, 2, 6, 7), (2, 3), (1, 2), (1, 1)),
    "max_pool2d_batch1": _max_spec((1, 4, 4, 4), 2),
    "avg_pool2d_k2": _avg_spec((2, 3, 6, 6), 2),
    "avg_pool2d_k3_s2_pad1": _avg_spec((2, 2, 7, 6), 3, 2, 1),
    "avg_pool2d_nonsquare": _avg_spec((1, 2, 5, 7), (2, 3), (1, 2), (1, 1)),
    "avg_pool2d_odd": _avg_spec((2, 2, 5, 7), 2),
    "global_avg_pool2d": Spec(lambda r: [r.normal(size=(2, 3, 4, 5))], layer_op(global_avg_pool2d), lambda x: x.mean(dim=(2, 3))),
    # training mode (batch statistics): gradients w.r.t. input, weight and bias
    "batch_norm_2d": Spec(
        lambda r: [2 * r.normal(size=(3, 4, 3, 5)) + 1, 1 + 0.5 * r.normal(size=4), r.normal(size=4)],
        _batch_norm_2d(training=True),
        _torch_batch_norm,
        3,
    ),
    # evaluation mode: the running statistics (the extra inputs) are constants
    "batch_norm_2d_eval": Spec(
        lambda r: [2 * r.normal(size=(2, 3, 4, 2)), r.normal(size=3), r.normal(size=3)],
        _batch_norm_2d(training=False),
        _torch_batch_norm,
        3,
        extra=lambda r: [r.normal(size=3), 0.5 + r.random(3)],
    ),
}

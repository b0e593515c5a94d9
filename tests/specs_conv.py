"""Op specs of the convolution family, for the harness in ``tests/test_ops.py``.

Each spec is ``conv2d`` with one combination of stride, padding, dilation and sizes, checked
with respect to input, weight and bias (finite differences in float64, PyTorch's
``torch.nn.functional.conv2d`` as the autograd oracle, parity on every backend). Merge with
``SPECS.update(specs_conv.SPECS)``. ``conv2d_batch_last`` is big enough (batch 16, a wide
im2col buffer) for the NumPy adapter's batch-last kernel to take over; the others run the
generic path everywhere.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from opspec import Spec, layer_op

from portnn.functional.conv import conv2d


def _conv(x_shape: tuple[int, ...], w_shape: tuple[int, ...], *, bias: bool = True, **kw: Any) -> Spec:
    """A conv2d spec: inputs of these shapes (bias of ``w_shape[0]``), options ``kw`` for both sides."""

    def make(r: np.random.Generator) -> list[np.ndarray]:
        arrays = [r.normal(size=x_shape), r.normal(size=w_shape)]
        return arrays + [r.normal(size=w_shape[0])] if bias else arrays

    def oracle(*args: Any) -> Any:
        import torch  # lazily: collection works without torch

        return torch.nn.functional.conv2d(*args, **kw)

    op: Callable[..., Any] = layer_op(lambda x, w, b=None: conv2d(x, w, b, **kw))
    return Spec(make, op, oracle, 3 if bias else 2)


SPECS: dict[str, Spec] = {
    "conv2d": _conv((2, 3, 6, 5), (4, 3, 3, 3)),
    "conv2d_nobias": _conv((2, 3, 6, 5), (4, 3, 3, 3), bias=False),
    "conv2d_stride": _conv((2, 2, 7, 8), (3, 2, 3, 3), stride=2),
    "conv2d_padding": _conv((2, 2, 5, 5), (3, 2, 3, 3), padding=1),
    "conv2d_dilation": _conv((2, 2, 7, 7), (2, 2, 3, 2), dilation=2),
    # batch 1, odd sizes, a non-square kernel, and a different stride, padding, dilation per axis
    "conv2d_mixed": _conv((1, 3, 7, 9), (2, 3, 2, 3), stride=(2, 1), padding=(1, 2), dilation=(1, 2)),
    "conv2d_1x1": _conv((2, 4, 3, 3), (5, 4, 1, 1)),
    "conv2d_kernel_is_input": _conv((2, 2, 3, 4), (3, 2, 3, 4)),  # output 1 x 1
    "conv2d_stride_skips": _conv((1, 2, 8, 7), (2, 2, 2, 2), stride=3),  # windows miss some inputs: dx = 0 there
    "conv2d_batch_last": _conv((16, 3, 5, 5), (8, 3, 3, 3), padding=1),
}

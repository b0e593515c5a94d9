"""Convolution layers."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from .._checks import check_flag, check_int, check_int_pair
from ..functional.conv import conv1d, conv2d
from ..init import Initializer, get_initializer
from .base import InputSpec, Shape, WeightedLayer

__all__ = ["Conv1d", "Conv2d"]


class Conv2d(WeightedLayer):
    """2-D convolution over (batch, channels, height, width) input, PyTorch's ``nn.Conv2d`` names and layout.

    ``weight`` is (out_channels, in_channels, kh, kw), ``bias`` (out_channels,); the output is
    (batch, out_channels, Ho, Wo) with ``Ho = (H + 2 * padding - dilation * (kh - 1) - 1) // stride + 1``
    (likewise ``Wo``). The math, and the memory it takes, is in
    :func:`portnn.functional.conv.conv2d`.

    Parameters
    ----------
    in_channels, out_channels
        Channels of the input and of the output.
    kernel_size, stride, padding, dilation
        Ints or ``(along H, along W)`` pairs. ``padding`` adds zeros on both sides.
    bias
        Whether to learn an additive bias (initialised to zero).
    init
        Weight initialiser, as for :class:`~portnn.layers.Linear`: a name from
        :data:`portnn.init.INITIALIZERS` or a callable ``f(rng, shape, fan_in, fan_out)``, with
        ``fan_in = in_channels * kh * kw`` and ``fan_out = out_channels * kh * kw`` (PyTorch's
        convention). The default, ``"he_uniform"`` (U(±sqrt(6 / fan_in))), is Linear's and suits
        ReLU; ``"torch"`` draws PyTorch's default weights, U(±1/sqrt(fan_in)) (PyTorch also
        draws its bias from that range; here the bias starts at zero, as in Linear).
    dtype
        ``"float32"`` (default) or ``"float64"``.
    seed
        Seed of the initial weights. :class:`portnn.Sequential` with ``seed=`` re-draws all
        layers from one generator on the host, so every backend starts from the same weights.

    Parameters live on the backend and device in force when the layer is built
    (:func:`portnn.set_backend`).

    Examples
    --------
    >>> import numpy as np
    >>> from portnn.layers.conv import Conv2d
    >>> layer = Conv2d(1, 8, 3, padding=1, seed=0)
    >>> layer
    Conv2d(1, 8, kernel_size=(3, 3), padding=(1, 1))
    >>> layer(np.ones((4, 1, 28, 28), dtype=np.float32)).shape
    (4, 8, 28, 28)
    >>> layer.output_shape((None, 1, 28, 28))
    (None, 8, 28, 28)
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        dilation: int | tuple[int, int] = 1,
        bias: bool = True,
        *,
        init: str | Initializer = "he_uniform",
        dtype: Any = "float32",
        seed: int | None = None,
    ) -> None:
        super().__init__()
        in_channels = check_int("Conv2d", "in_channels", in_channels, expected="a positive int")
        out_channels = check_int("Conv2d", "out_channels", out_channels, expected="a positive int")
        where = f"Conv2d({in_channels}, {out_channels})"
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = check_int_pair(where, "kernel_size", kernel_size)
        self.stride = check_int_pair(where, "stride", stride)
        self.padding = check_int_pair(where, "padding", padding, minimum=0)
        self.dilation = check_int_pair(where, "dilation", dilation)
        self.use_bias = check_flag(where, "bias", bias)
        self.input_spec = InputSpec(("batch", in_channels, "H", "W"))
        self.init = get_initializer(init, where=f"{where}: ")
        self.build_weights(bias=self.use_bias, dtype=dtype, seed=seed)

    def weight_spec(self) -> tuple[tuple[int, ...], int, int]:
        kh, kw = self.kernel_size
        return (self.out_channels, self.in_channels, kh, kw), self.in_channels * kh * kw, self.out_channels * kh * kw

    def _out(self, axis: int, size: int) -> int:
        k, s, p, d = self.kernel_size[axis], self.stride[axis], self.padding[axis], self.dilation[axis]
        return (size + 2 * p - d * (k - 1) - 1) // s + 1

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        out = (None if size is None else self._out(a, int(size)) for a, size in enumerate(input_shape[2:]))
        return (input_shape[0], self.out_channels, *out)

    def shape_problem(self, shape: Shape) -> str | None:
        if all(size is None or self._out(a, int(size)) >= 1 for a, size in enumerate(shape[2:])):
            return None
        span = tuple(self.dilation[a] * (self.kernel_size[a] - 1) + 1 for a in range(2))
        padded = tuple(None if shape[2 + a] is None else int(shape[2 + a]) + 2 * self.padding[a] for a in range(2))
        dilated = f" (dilated to {span})" if span != self.kernel_size else ""
        return (
            f"its padded size (H, W) = {padded} is smaller than the kernel {self.kernel_size}{dilated}; "
            "use larger inputs, more padding or a smaller kernel"
        )

    def call(self, x: Any, *, training: bool = False, input_grad: bool = True) -> tuple[Any, Callable[[Any], Any]]:
        w = self.weight.data
        b = self.bias.data if self.bias is not None else None
        y, backward_fn = conv2d(
            x, w, b, stride=self.stride, padding=self.padding, dilation=self.dilation,
            input_grad=input_grad, param_grad=self.trainable,
        )  # fmt: skip
        return y, self.accumulating(backward_fn)

    def input_hint(self, shape: Shape) -> str:
        c = self.in_channels
        if len(shape) == 2 and shape[1] is not None and shape[1] % c == 0 and math.isqrt(shape[1] // c) ** 2 == shape[1] // c:
            side = math.isqrt(shape[1] // c)
            return f" (flat images? use x.reshape(-1, {c}, {side}, {side}))"
        if len(shape) == 3:
            hints = [f"a single image? use x.reshape(1, {c}, H, W)"] if shape[0] == c else []
            hints += ["grey images without a channel axis? use x.reshape(-1, 1, H, W)"] if c == 1 else []
            return f" ({'; '.join(hints)})" if hints else ""
        if len(shape) == 4 and shape[3] == c:
            return " (channels last? portnn is NCHW: use x.transpose(0, 3, 1, 2))"
        return ""

    def extra_repr(self) -> str:
        text = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}"
        for name, default in (("stride", (1, 1)), ("padding", (0, 0)), ("dilation", (1, 1))):
            value = getattr(self, name)
            if value != default:
                text += f", {name}={value}"
        return text + ("" if self.use_bias else ", bias=False")


class Conv1d(WeightedLayer):
    """1-D convolution over (batch, channels, length) input, PyTorch's ``nn.Conv1d`` names and layout.

    ``weight`` is (out_channels, in_channels, kernel_size), ``bias`` (out_channels,); the
    output is (batch, out_channels, Lo) with ``Lo = (L + 2 * padding - dilation * (kernel_size - 1) - 1) // stride + 1``.
    The math is :func:`portnn.functional.conv1d`: :func:`~portnn.functional.conv.conv2d` on
    height-1 views, so it shares Conv2d's kernels and ONNX export.

    Parameters
    ----------
    in_channels, out_channels
        Channels of the input and of the output.
    kernel_size, stride, padding, dilation
        Ints. ``padding`` adds zeros at both ends.
    bias
        Whether to learn an additive bias (initialised to zero).
    init
        Weight initialiser, as for :class:`Conv2d`, with ``fan_in = in_channels * kernel_size``
        and ``fan_out = out_channels * kernel_size`` (PyTorch's convention); the default is
        ``"he_uniform"``, and ``"torch"`` draws PyTorch's default weights.
    dtype
        ``"float32"`` (default) or ``"float64"``.
    seed
        Seed of the initial weights (:class:`portnn.Sequential` with ``seed=`` re-draws them).

    Examples
    --------
    >>> import numpy as np
    >>> import portnn as pn
    >>> layer = pn.layers.Conv1d(2, 8, 3, padding=1, seed=0)
    >>> layer
    Conv1d(2, 8, kernel_size=3, padding=1)
    >>> layer(np.ones((4, 2, 50), dtype=np.float32)).shape
    (4, 8, 50)
    >>> layer.output_shape((None, 2, None))
    (None, 8, None)
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        dilation: int = 1,
        bias: bool = True,
        *,
        init: str | Initializer = "he_uniform",
        dtype: Any = "float32",
        seed: int | None = None,
    ) -> None:
        super().__init__()
        in_channels = check_int("Conv1d", "in_channels", in_channels, expected="a positive int")
        out_channels = check_int("Conv1d", "out_channels", out_channels, expected="a positive int")
        where = f"Conv1d({in_channels}, {out_channels})"
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = check_int(where, "kernel_size", kernel_size, expected="a positive int")
        self.stride = check_int(where, "stride", stride, expected="a positive int")
        self.padding = check_int(where, "padding", padding, minimum=0, expected="an int >= 0")
        self.dilation = check_int(where, "dilation", dilation, expected="a positive int")
        self.use_bias = check_flag(where, "bias", bias)
        self.input_spec = InputSpec(("batch", in_channels, "length"))
        self.init = get_initializer(init, where=f"{where}: ")
        self.build_weights(bias=self.use_bias, dtype=dtype, seed=seed)

    def weight_spec(self) -> tuple[tuple[int, ...], int, int]:
        k = self.kernel_size
        return (self.out_channels, self.in_channels, k), self.in_channels * k, self.out_channels * k

    def _out(self, length: int) -> int:
        return (length + 2 * self.padding - self.dilation * (self.kernel_size - 1) - 1) // self.stride + 1

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        length = input_shape[2]
        return (input_shape[0], self.out_channels, None if length is None else self._out(int(length)))

    def shape_problem(self, shape: Shape) -> str | None:
        if shape[2] is None or self._out(int(shape[2])) >= 1:
            return None
        span = self.dilation * (self.kernel_size - 1) + 1
        dilated = f" (dilated to {span})" if span != self.kernel_size else ""
        return (
            f"its padded length {int(shape[2]) + 2 * self.padding} is shorter than the kernel {self.kernel_size}{dilated}; "
            "use longer inputs, more padding or a smaller kernel"
        )

    def call(self, x: Any, *, training: bool = False, input_grad: bool = True) -> tuple[Any, Callable[[Any], Any]]:
        b = self.bias.data if self.bias is not None else None
        y, backward_fn = conv1d(
            x, self.weight.data, b, stride=self.stride, padding=self.padding, dilation=self.dilation,
            input_grad=input_grad, param_grad=self.trainable,
        )  # fmt: skip
        return y, self.accumulating(backward_fn)

    def input_hint(self, shape: Shape) -> str:
        c = self.in_channels
        if len(shape) == 2:
            hints = [f"a single sequence? use x.reshape(1, {c}, -1)"] if shape[0] == c else []
            hints += ["one channel without its axis? use x.reshape(-1, 1, L)"] if c == 1 else []
            return f" ({'; '.join(hints)})" if hints else ""
        if len(shape) == 3 and shape[2] == c:
            return " (channels last? portnn is (batch, channels, length): use x.transpose(0, 2, 1))"
        return ""

    def extra_repr(self) -> str:
        text = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}"
        for name, default in (("stride", 1), ("padding", 0), ("dilation", 1)):
            value = getattr(self, name)
            if value != default:
                text += f", {name}={value}"
        return text + ("" if self.use_bias else ", bias=False")

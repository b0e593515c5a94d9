"""Normalisation layers, and the buffers (non-trainable state) they keep."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from array_api_compat import array_namespace
from array_api_compat import device as device_of

from .. import functional as F
from .._array import dtype_name, resolve_dtype
from .._checks import check_flag, check_int, check_number
from ..functional.normalization import normalized_shape_tuple
from .base import InputSpec, Layer, Shape, format_shape

__all__ = ["BatchNorm1d", "BatchNorm2d", "LayerNorm"]


class _BatchNorm(Layer):
    """What BatchNorm1d and BatchNorm2d share: parameters, buffers, the pass on an (N, C, L) view.

    A subclass gives ``_shapes``, the input shapes it takes with ``"C"`` for the channel axis
    (its :class:`~portnn.layers.InputSpec`), as PyTorch's ``_BatchNorm`` subclasses give
    ``_check_input_dim``.

    A frozen layer (``trainable = False``, with ``affine`` and running statistics) normalises
    with its running statistics in training too and does not update them, as Keras does: the
    features a transferred network learned stay exactly as they were.
    """

    _shapes: tuple[tuple[str, ...], ...] = ()

    def __init__(
        self,
        num_features: int,
        *,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        dtype: Any = "float32",
    ) -> None:
        super().__init__()
        num_features = check_int(type(self).__name__, "num_features", num_features, expected="a positive int")
        where = f"{type(self).__name__}({num_features})"
        self.num_features = num_features
        self.eps = check_number(where, "eps", eps, lambda v: v >= 0, "a number >= 0")
        self.momentum = check_number(where, "momentum", momentum, lambda v: 0 <= v <= 1, "in [0, 1] or None", allow_none=True)
        self.affine = check_flag(where, "affine", affine)
        self.track_running_stats = check_flag(where, "track_running_stats", track_running_stats)
        self.input_spec = InputSpec(*(tuple(num_features if d == "C" else d for d in shape) for shape in self._shapes))
        backend = self.new_parameter_home(dtype)
        dt = resolve_dtype(backend.xp, dtype)
        # the scale is not an L2 target (Keras and PyTorch practice)
        self.weight = self.add_parameter("weight", None, regularize=False) if self.affine else None
        self.bias = self.add_parameter("bias", None) if self.affine else None
        if self.track_running_stats:
            self.running_mean = self.add_buffer("running_mean", None)
            self.running_var = self.add_buffer("running_var", None)
            self.num_batches_tracked = self.add_buffer("num_batches_tracked", None)
        else:
            self.running_mean = self.running_var = self.num_batches_tracked = None
        self._materialize(backend.xp, backend.device, dt)

    # -- state ------------------------------------------------------------------------
    def _materialize(self, xp: Any, device: Any, dtype: Any) -> None:
        shape = (self.num_features,)
        if self.weight is not None:
            self.weight.data, self.weight.grad = xp.ones(shape, dtype=dtype, device=device), None
            self.bias.data, self.bias.grad = xp.zeros(shape, dtype=dtype, device=device), None
        self.reset_running_stats(xp, device, dtype)

    def reset_running_stats(self, xp: Any = None, device: Any = None, dtype: Any = None) -> None:
        """Running mean back to zeros, variance to ones, batch count to 0 (on the buffers' device and dtype)."""
        if self.running_mean is None:
            return
        if xp is None:
            ref = self.running_mean.data
            xp, device, dtype = array_namespace(ref), device_of(ref), ref.dtype
        shape = (self.num_features,)
        self.running_mean.data = xp.zeros(shape, dtype=dtype, device=device)
        self.running_var.data = xp.ones(shape, dtype=dtype, device=device)
        self.num_batches_tracked.data = xp.zeros((), dtype=xp.int64, device=device)

    def reset_parameters(self, rng: Any = None) -> None:
        """Weight back to ones, bias to zeros and the running statistics reset (nothing random is drawn)."""
        ref = self._input_reference()  # the weight, else the running mean
        if ref is not None:
            self._materialize(array_namespace(ref), device_of(ref), ref.dtype)

    # -- the pass ---------------------------------------------------------------------
    @property
    def _frozen(self) -> bool:
        """Frozen with running statistics to normalise with: the layer then trains as in evaluation."""
        return self.affine and not self.trainable and self.track_running_stats

    @property
    def min_batch_size(self) -> int:
        return 1 if self._frozen else 2  # a variance over one value per channel is no statistic

    def call(self, x: Any, *, training: bool = False, input_grad: bool = True) -> tuple[Any, Callable[[Any], Any]]:
        shape = tuple(x.shape)
        if x.ndim > 3:  # per-channel statistics over N and every spatial axis: an (N, C, L) view
            # -1 for N: a batch of unknown size (x.shape[0] is None in an ONNX export) reshapes too
            x = array_namespace(x).reshape(x, (-1, shape[1], math.prod(shape[2:])))
        flat = tuple(x.shape)
        if training and self._frozen:
            training = False  # frozen (transfer learning): normalise with the running statistics, leave them be (Keras's rule)
        batch_stats = training or not self.track_running_stats
        w = self.weight.data if self.weight is not None else None
        b = self.bias.data if self.bias is not None else None
        if batch_stats:
            m = x.shape[0] * (x.shape[2] if x.ndim == 3 else 1)
            if m <= 1:
                raise ValueError(
                    f"{self!r}: Expected more than 1 value per channel when training, got input of shape {format_shape(shape)}; "
                    "use batches of 2 or more (in fit, drop_last=True skips a short last batch)"
                )
            y, backward_fn, mean, var = F.normalization.batch_norm_training(
                x, w, b, eps=self.eps, input_grad=input_grad, param_grad=self.trainable
            )
            if training and self.track_running_stats:
                self._update_running_stats(x, mean, var, m)
        else:
            rm, rv = self.running_mean.data, self.running_var.data
            y, backward_fn = F.batch_norm(
                x, w, b, mean=rm, var=rv, training=False, eps=self.eps, input_grad=input_grad, param_grad=self.trainable
            )
        weight, bias = self.weight, self.bias
        if len(shape) > 3:
            y = array_namespace(y).reshape(y, (-1, *shape[1:]))

        def backward(dy: Any) -> Any:
            if len(shape) > 3:
                dy = array_namespace(dy).reshape(dy, flat)
            dx, dw, db = backward_fn(dy)
            if dw is not None:
                weight.accumulate(dw)
                bias.accumulate(db)
            return dx if dx is None or len(shape) <= 3 else array_namespace(dx).reshape(dx, shape)

        return y, backward

    def _update_running_stats(self, x: Any, mean: Any, var: Any, m: int) -> None:
        xp = array_namespace(x)
        count = self.num_batches_tracked.data + 1
        self.num_batches_tracked.data = count
        # the cumulative average's factor stays on the device: no host sync per step
        factor = 1.0 / xp.astype(count, x.dtype) if self.momentum is None else self.momentum
        rm, rv = self.running_mean, self.running_var
        rm.data = (1.0 - factor) * rm.data + factor * mean
        unbiased = m / (m - 1)
        # a float momentum folds the unbiasing factor into it: two products of the (C,) variance, not three
        step = factor * unbiased * var if isinstance(factor, float) else factor * (var * unbiased)
        rv.data = (1.0 - factor) * rv.data + step

    # -- text -------------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        """:meth:`Layer.get_config` with ``dtype`` read from the parameters or buffers (float32 when it has none)."""
        ref = self._input_reference()  # the weight, else the running mean
        return self.config_from_signature(dtype="float32" if ref is None else dtype_name(ref.dtype))

    def extra_repr(self) -> str:
        extra = [str(self.num_features)]
        if self.eps != 1e-5:
            extra.append(f"eps={self.eps}")
        if self.momentum != 0.1:
            extra.append(f"momentum={self.momentum}")
        if not self.affine:
            extra.append("affine=False")
        if not self.track_running_stats:
            extra.append("track_running_stats=False")
        return ", ".join(extra)


class BatchNorm1d(_BatchNorm):
    """Batch normalisation of (N, C) or (N, C, L) inputs per channel, exactly as PyTorch's ``nn.BatchNorm1d``.

    In training (``model.fit``, ``forward(..., training=True)``) each channel is normalised
    with the batch mean and biased variance, and the running statistics move towards the
    batch mean and *unbiased* variance::

        running_mean = (1 - momentum) * running_mean + momentum * batch_mean
        running_var  = (1 - momentum) * running_var  + momentum * batch_var * m / (m - 1)

    where ``m`` is the number of values per channel (``N``, or ``N * L``). At evaluation
    (``predict``, ``evaluate``, ``layer(x)``) the running statistics are used instead. The
    gradients are in :func:`portnn.functional.batch_norm`.

    Parameters
    ----------
    num_features
        Number of channels ``C``.
    eps
        Added to the variance before the square root.
    momentum
        Weight of the new batch in the running statistics; None for a cumulative average
        (``1 / num_batches_tracked``), as in PyTorch.
    affine
        Learn a per-channel scale ``weight`` (ones) and shift ``bias`` (zeros).
    track_running_stats
        Keep ``running_mean`` (zeros), ``running_var`` (ones) and ``num_batches_tracked``
        (int64) buffers. Without them, batch statistics are used at evaluation too.
    dtype
        ``"float32"`` (default) or ``"float64"``.

    Parameters and buffers live on the backend and device in force when the layer is built
    (:func:`portnn.set_backend`); the buffers are listed by :meth:`named_buffers`, not by
    :meth:`named_parameters`, so no optimizer updates them.

    Examples
    --------
    >>> import numpy as np
    >>> import portnn as pn
    >>> layer = pn.layers.BatchNorm1d(3)
    >>> x = np.arange(12, dtype=np.float32).reshape(4, 3)
    >>> y, backward = layer.forward(x, training=True)
    >>> np.round(y[:, 0], 3)
    array([-1.342, -0.447,  0.447,  1.342], dtype=float32)
    >>> [name for name, _ in layer.named_buffers()]
    ['running_mean', 'running_var', 'num_batches_tracked']
    """

    _shapes = (("batch", "C"), ("batch", "C", "length"))

    def input_hint(self, shape: Shape) -> str:
        return " (a single example? use x.reshape(1, -1))" if len(shape) == 1 else ""


class BatchNorm2d(_BatchNorm):
    """Batch normalisation of (N, C, H, W) inputs per channel, exactly as PyTorch's ``nn.BatchNorm2d``.

    :class:`BatchNorm1d` on the (N, C, H·W) view of the input: each channel is normalised with
    the mean and biased variance of its ``m = N * H * W`` values in training, and the running
    statistics move towards the batch mean and *unbiased* variance (times ``m / (m - 1)``)::

        running_mean = (1 - momentum) * running_mean + momentum * batch_mean
        running_var  = (1 - momentum) * running_var  + momentum * batch_var * m / (m - 1)

    At evaluation (``predict``, ``evaluate``, ``layer(x)``) the running statistics are used
    instead. The gradients are in :func:`portnn.functional.batch_norm`.

    Parameters
    ----------
    num_features
        Number of channels ``C``.
    eps
        Added to the variance before the square root.
    momentum
        Weight of the new batch in the running statistics; None for a cumulative average
        (``1 / num_batches_tracked``), as in PyTorch.
    affine
        Learn a per-channel scale ``weight`` (ones) and shift ``bias`` (zeros).
    track_running_stats
        Keep ``running_mean`` (zeros), ``running_var`` (ones) and ``num_batches_tracked``
        (int64) buffers. Without them, batch statistics are used at evaluation too.
    dtype
        ``"float32"`` (default) or ``"float64"``.

    Parameters and buffers live on the backend and device in force when the layer is built
    (:func:`portnn.set_backend`); the buffers are listed by :meth:`named_buffers`, not by
    :meth:`named_parameters`, so no optimizer updates them.

    Examples
    --------
    >>> import numpy as np
    >>> from portnn.layers.normalization import BatchNorm2d
    >>> layer = BatchNorm2d(2)
    >>> x = np.arange(16, dtype=np.float32).reshape(2, 2, 2, 2)
    >>> y, backward = layer.forward(x, training=True)
    >>> y.shape
    (2, 2, 2, 2)
    >>> np.round(y[0, 0], 3)
    array([[-1.324, -1.083],
           [-0.843, -0.602]], dtype=float32)
    >>> layer.running_mean.data
    array([0.55, 0.95], dtype=float32)
    """

    _shapes = (("batch", "C", "H", "W"),)

    def input_hint(self, shape: Shape) -> str:
        return " (a single image? use x.reshape(1, *x.shape))" if len(shape) == 3 and shape[0] == self.num_features else ""


class LayerNorm(Layer):
    """Layer normalisation over the trailing ``normalized_shape`` axes of each example, PyTorch's ``nn.LayerNorm``.

    An input (batch, ..., \\*normalized_shape) is normalised over its last ``len(normalized_shape)``
    axes with their own mean and biased variance, then scaled by ``weight`` (ones) and shifted
    by ``bias`` (zeros), both of shape ``normalized_shape``; the same in training and
    evaluation (no running statistics). The math and its backward are
    :func:`portnn.functional.layer_norm`'s. Parameter names and shapes are PyTorch's, so a
    ``torch.nn.LayerNorm``'s ``state_dict`` loads as it is.

    Parameters
    ----------
    normalized_shape
        The sizes of the trailing axes to normalise over: an int (the feature count) or a tuple.
    eps
        Added to the variance before the square root.
    elementwise_affine
        Learn ``weight`` and ``bias``; without them the layer has no parameters.
    bias
        With ``elementwise_affine``, whether to learn ``bias`` too.
    dtype
        ``"float32"`` (default) or ``"float64"``.

    Examples
    --------
    >>> import numpy as np
    >>> import portnn as pn
    >>> layer = pn.layers.LayerNorm(4)
    >>> layer
    LayerNorm((4,))
    >>> layer(np.array([[1.0, 2.0, 3.0, 4.0]], dtype=np.float32)).round(4)
    array([[-1.3416, -0.4472,  0.4472,  1.3416]], dtype=float32)
    >>> [(name, p.shape) for name, p in layer.named_parameters()]
    [('weight', (4,)), ('bias', (4,))]
    >>> pn.layers.LayerNorm((3, 4)).output_shape((None, 10, 3, 4))
    (None, 10, 3, 4)
    """

    def __init__(
        self,
        normalized_shape: int | tuple[int, ...],
        *,
        eps: float = 1e-5,
        elementwise_affine: bool = True,
        bias: bool = True,
        dtype: Any = "float32",
    ) -> None:
        super().__init__()
        self.normalized_shape = normalized_shape_tuple(normalized_shape, "LayerNorm")
        where = f"LayerNorm({self.normalized_shape})"
        self.eps = check_number(where, "eps", eps, lambda v: v >= 0, "a number >= 0")
        self.elementwise_affine = check_flag(where, "elementwise_affine", elementwise_affine)
        self.use_bias = check_flag(where, "bias", bias)
        self.input_spec = InputSpec(min_ndim=len(self.normalized_shape) + 1)
        backend = self.new_parameter_home(dtype)
        self._dtype = dtype_name(resolve_dtype(backend.xp, dtype))
        # the scale is not an L2 target (as BatchNorm's)
        self.weight = self.add_parameter("weight", None, regularize=False) if self.elementwise_affine else None
        self.bias = self.add_parameter("bias", None) if self.elementwise_affine and self.use_bias else None
        self._materialize(backend.xp, backend.device, resolve_dtype(backend.xp, dtype))

    def _materialize(self, xp: Any, device: Any, dtype: Any) -> None:
        if self.weight is not None:
            self.weight.data, self.weight.grad = xp.ones(self.normalized_shape, dtype=dtype, device=device), None
        if self.bias is not None:
            self.bias.data, self.bias.grad = xp.zeros(self.normalized_shape, dtype=dtype, device=device), None

    def reset_parameters(self, rng: Any = None) -> None:
        """Weight back to ones and bias to zeros (nothing random is drawn)."""
        ref = self._input_reference()
        if ref is not None:
            self._materialize(array_namespace(ref), device_of(ref), ref.dtype)

    def shape_problem(self, shape: Shape) -> str | None:
        k = len(self.normalized_shape)
        trailing = tuple(shape[len(shape) - k :])
        if all(d is None or d == n for d, n in zip(trailing, self.normalized_shape)):
            return None
        fix = f"LayerNorm({trailing[0]})" if k == 1 else f"LayerNorm({trailing})"
        return (
            f"its last {k} axes {format_shape(trailing)} must equal normalized_shape {self.normalized_shape}; "
            f"normalise over the input's own trailing sizes ({fix}) or reshape the input"
        )

    def input_hint(self, shape: Shape) -> str:
        return " (a single example? use x.reshape(1, *x.shape))" if tuple(shape) == self.normalized_shape else ""

    def call(self, x: Any, *, training: bool = False, input_grad: bool = True) -> tuple[Any, Callable[[Any], Any]]:
        w = self.weight.data if self.weight is not None else None
        b = self.bias.data if self.bias is not None else None
        y, backward_fn = F.layer_norm(
            x, self.normalized_shape, w, b, eps=self.eps, input_grad=input_grad, param_grad=self.trainable
        )
        weight, bias = self.weight, self.bias

        def backward(dy: Any) -> Any:
            dx, dw, db = backward_fn(dy)
            if dw is not None:
                weight.accumulate(dw)
            if db is not None:
                bias.accumulate(db)
            return dx

        return y, backward

    def get_config(self) -> dict[str, Any]:
        """:meth:`Layer.get_config` with ``bias`` as given to the constructor and ``dtype`` (the parameters')."""
        ref = self._input_reference()
        return self.config_from_signature(bias=self.use_bias, dtype=self._dtype if ref is None else dtype_name(ref.dtype))

    def extra_repr(self) -> str:
        extra = [str(self.normalized_shape)]
        if self.eps != 1e-5:
            extra.append(f"eps={self.eps}")
        if not self.elementwise_affine:
            extra.append("elementwise_affine=False")
        elif not self.use_bias:
            extra.append("bias=False")
        return ", ".join(extra)

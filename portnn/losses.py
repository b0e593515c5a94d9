"""Loss objects: validation of targets around the stable math of :mod:`portnn.functional.losses`.

A loss is called as ``loss(y_pred, target)`` for the value, or ``loss.forward(y_pred, target)``
for ``(value, backward)`` where ``backward()`` returns the gradient of ``y_pred``. With
``reduction="mean"`` (the default) that gradient is averaged over the batch, so the learning
rate does not need dividing by the batch size.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from array_api_compat import array_namespace, size

from ._array import dtype_name, namespace
from .functional import losses as FL

__all__ = ["BinaryCrossEntropy", "CrossEntropy", "Loss", "MSE"]


class Loss:
    """Base class: subclasses implement :meth:`_forward` and :meth:`check_target`."""

    #: Whether the loss is for classification (then ``fit`` reports accuracy).
    classification = False

    def __init__(self, *, reduction: str = "mean") -> None:
        if reduction not in ("mean", "sum"):
            raise ValueError(f"{type(self).__name__}: reduction must be 'mean' or 'sum'; got {reduction!r}")
        self.reduction = reduction

    def __call__(self, y_pred: Any, target: Any) -> Any:
        return self.forward(y_pred, target)[0]

    def forward(self, y_pred: Any, target: Any, *, validate: bool = True) -> tuple[Any, Callable[[], Any]]:
        """Return ``(loss, backward)``; ``validate=False`` skips the target checks (``fit`` checks once up front)."""
        if validate:
            namespace(y_pred, target, where=f"{self!r}: ")
            self.check_target(tuple(y_pred.shape), target, values=True)
        return self._forward(y_pred, target)

    def _forward(self, y_pred: Any, target: Any) -> tuple[Any, Callable[[], Any]]:
        raise NotImplementedError

    def check_target(self, pred_shape: tuple[int, ...], target: Any, *, values: bool = True) -> None:
        """Raise a ValueError/TypeError naming the loss if ``target`` does not fit predictions of ``pred_shape``.

        ``values=True`` also checks values (a device-to-host sync on a GPU).
        """

    def correct(self, y_pred: Any, target: Any) -> Any:
        """Number of correct predictions as a 0-d array (classification losses only)."""
        raise TypeError(f"{self!r} is not a classification loss")

    def count(self, target: Any) -> int:
        """How many predictions :meth:`correct` counts over: the accuracy's denominator."""
        return int(target.shape[0])

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _same_rows(loss: Loss, pred_shape: tuple[int, ...], target: Any) -> None:
    if target.shape[0] != pred_shape[0]:
        raise ValueError(
            f"{loss!r}: predictions have {pred_shape[0]} rows but target has {target.shape[0]} (shape {tuple(target.shape)})"
        )


class CrossEntropy(Loss):
    """Softmax cross-entropy from logits (PyTorch's ``CrossEntropyLoss``).

    Parameters
    ----------
    label_smoothing
        Mix each target with the uniform distribution: ``(1 - eps) * t + eps / C``.
    reduction
        ``"mean"`` over the batch (default) or ``"sum"``.

    Targets are integer class indices of shape (N,) in ``0..C-1``, or probabilities of shape
    (N, C). The model must output logits (no Softmax at the end): the log-softmax inside is
    max-shifted and stays finite for logits of ±1e4.

    Examples
    --------
    >>> import numpy as np
    >>> import portnn as pn
    >>> round(float(pn.losses.CrossEntropy()(np.array([[2.0, 0.0]]), np.array([0]))), 4)
    0.1269
    """

    classification = True

    def __init__(self, *, label_smoothing: float = 0.0, reduction: str = "mean") -> None:
        super().__init__(reduction=reduction)
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"CrossEntropy: label_smoothing must be in [0, 1); got {label_smoothing}")
        self.label_smoothing = float(label_smoothing)

    def _forward(self, y_pred: Any, target: Any) -> tuple[Any, Callable[[], Any]]:
        return FL.cross_entropy(y_pred, target, label_smoothing=self.label_smoothing, reduction=self.reduction)

    def check_target(self, pred_shape: tuple[int, ...], target: Any, *, values: bool = True) -> None:
        if len(pred_shape) != 2:
            raise ValueError(f"{self!r} expects logits of shape (batch, classes); got {pred_shape}")
        xp = array_namespace(target)
        c = pred_shape[1]
        if xp.isdtype(target.dtype, "integral"):
            if target.ndim != 1:
                raise ValueError(
                    f"{self!r}: integer labels must have shape (batch,); got {tuple(target.shape)}"
                    + (" (one-hot labels? pass them as float probabilities, or y.argmax(axis=1))" if target.ndim == 2 else "")
                )
            _same_rows(self, pred_shape, target)
            if values and target.shape[0]:
                lo, hi = int(xp.min(target)), int(xp.max(target))
                if lo < 0 or hi >= c:
                    raise ValueError(
                        f"{self!r}: labels must be class indices in 0..{c - 1} for a model with {c} outputs; "
                        f"got values from {lo} to {hi}"
                    )
        elif xp.isdtype(target.dtype, "real floating"):
            if target.ndim != 2 or target.shape[1] != c:
                hint = " (class indices? pass them as integers: y.astype(int))" if target.ndim == 1 else ""
                if target.ndim == 1 and values and target.shape[0]:
                    fractional = int(xp.count_nonzero(xp.floor(target) != target))
                    if fractional:
                        hint = (
                            f" and {fractional} of its values are not whole numbers, so they are not class indices "
                            f"either (pass integer labels in 0..{c - 1}, or probabilities of shape (batch, {c}))"
                        )
                if target.ndim == 2:
                    hint = (
                        f" (one-hot or probabilities over {target.shape[1]} classes, but the model has {c} outputs: "
                        f"give the last layer {target.shape[1]} outputs, or encode the labels over {c} classes)"
                    )
                raise ValueError(
                    f"{self!r}: float targets are probabilities of shape (batch, {c}); got {tuple(target.shape)}{hint}"
                )
            _same_rows(self, pred_shape, target)
        else:
            raise TypeError(
                f"{self!r}: targets must be integer labels or float probabilities; got dtype {dtype_name(target.dtype)}"
            )

    def correct(self, y_pred: Any, target: Any) -> Any:
        xp = array_namespace(y_pred, target)
        if not xp.isdtype(target.dtype, "integral"):
            target = xp.argmax(target, axis=1)
        return xp.sum(xp.astype(xp.argmax(y_pred, axis=1) == target, xp.int64))

    def __repr__(self) -> str:
        return f"CrossEntropy(label_smoothing={self.label_smoothing})" if self.label_smoothing else "CrossEntropy()"


class MSE(Loss):
    """Mean squared error over all elements (PyTorch's ``MSELoss``). Targets have the predictions' shape."""

    def _forward(self, y_pred: Any, target: Any) -> tuple[Any, Callable[[], Any]]:
        return FL.mse(y_pred, target, reduction=self.reduction)

    def check_target(self, pred_shape: tuple[int, ...], target: Any, *, values: bool = True) -> None:
        _check_float_like(self, pred_shape, target)


class BinaryCrossEntropy(Loss):
    """Binary cross-entropy from logits (PyTorch's ``BCEWithLogitsLoss``), stable for any logit.

    Targets are 0/1 (or probabilities) of the predictions' shape. Predictions are logits:
    do not end the model with Sigmoid.
    """

    classification = True

    def _forward(self, y_pred: Any, target: Any) -> tuple[Any, Callable[[], Any]]:
        return FL.binary_cross_entropy_with_logits(y_pred, target, reduction=self.reduction)

    def check_target(self, pred_shape: tuple[int, ...], target: Any, *, values: bool = True) -> None:
        _check_float_like(self, pred_shape, target)
        if values and target.shape[0]:
            xp = array_namespace(target)
            lo, hi = float(xp.min(target)), float(xp.max(target))
            if lo < 0.0 or hi > 1.0:
                n_out = int(xp.count_nonzero((target < 0.0) | (target > 1.0)))
                raise ValueError(
                    f"{self!r}: targets must lie in [0, 1]; got values from {lo} to {hi} ({n_out} outside); "
                    "map labels to 0/1 (e.g. y == positive_label)"
                )

    def correct(self, y_pred: Any, target: Any) -> Any:
        xp = array_namespace(y_pred, target)
        return xp.sum(xp.astype((y_pred > 0) == (target > 0.5), xp.int64))

    def count(self, target: Any) -> int:
        return int(size(target))


def _check_float_like(loss: Loss, pred_shape: tuple[int, ...], target: Any) -> None:
    if not array_namespace(target).isdtype(target.dtype, "real floating"):
        raise TypeError(f"{loss!r}: targets must be floating point; got dtype {dtype_name(target.dtype)}")
    if tuple(target.shape) != tuple(pred_shape):
        hint = " (reshape the target to (batch, 1))" if target.ndim == 1 and len(pred_shape) == 2 and pred_shape[1] == 1 else ""
        raise ValueError(f"{loss!r}: target shape {tuple(target.shape)} does not match predictions {tuple(pred_shape)}{hint}")

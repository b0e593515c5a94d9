"""Loss objects: validation of targets around the stable math of :mod:`portnn.functional.losses`.

A loss is called as ``loss(y_pred, target)`` for the value, or ``loss.forward(y_pred, target)``
for ``(value, backward)`` where ``backward()`` returns the gradient of ``y_pred``. With
``reduction="mean"`` (the default) that gradient is averaged over the batch, so the learning
rate does not need dividing by the batch size.

Each loss states what it takes: :meth:`Loss.check_target` checks targets,
:meth:`Loss.check_predictions` the predictions' values, and :meth:`Loss.check_output_layer`
the model's last layer (CrossEntropy takes logits, so no final Softmax;
``BinaryCrossEntropy(from_logits=False)`` takes probabilities, so a final Sigmoid).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from array_api_compat import array_namespace, size

from ._array import dtype_name, namespace
from ._checks import check_flag, check_number
from .functional import losses as FL
from .layers.activations import Sigmoid, Softmax

__all__ = ["BinaryCrossEntropy", "CrossEntropy", "Loss", "MSE"]


class Loss:
    """Base class: subclasses implement :meth:`_forward` and :meth:`check_target`."""

    #: Whether the loss is for classification (then ``fit`` reports accuracy).
    classification = False

    def __init__(self, *, reduction: str = "mean") -> None:
        if not isinstance(reduction, str) or reduction not in ("mean", "sum"):
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

    def check_predictions(self, y_pred: Any) -> None:
        """Raise a ValueError naming the loss if ``y_pred`` cannot be this loss's input (checked with ``validate=True``)."""

    def check_output_layer(self, layer: Any) -> None:
        """Raise a ValueError naming the loss and the fix if a model ending with ``layer`` cannot feed this loss.

        A model calls it with its last layer (None for a model without layers) when it is
        compiled or trained: CrossEntropy refuses a final Softmax, BinaryCrossEntropy a final
        Sigmoid under ``from_logits=True`` and anything else under ``from_logits=False``.
        The base class accepts every layer.

        Examples
        --------
        >>> import portnn as pn
        >>> pn.losses.BinaryCrossEntropy().check_output_layer(pn.layers.Sigmoid())  # probabilities: fine
        >>> pn.losses.CrossEntropy().check_output_layer(pn.layers.Softmax())  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: CrossEntropy takes logits, but the model ends with Softmax, which would apply softmax twice; ...
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
    (N, C). For sequences, logits (N, T, C) take labels (N, T) or probabilities (N, T, C):
    classes last, as in Keras (PyTorch puts them second); ``"mean"`` averages over all N * T
    positions, and accuracy counts each position. The model must output logits (no Softmax at the end): the log-softmax inside is
    max-shifted, so any finite logits give PyTorch's loss (float32 logits of ±3e38 included).

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
        self.label_smoothing = check_number("CrossEntropy", "label_smoothing", label_smoothing, lambda v: 0 <= v < 1, "in [0, 1)")

    def _forward(self, y_pred: Any, target: Any) -> tuple[Any, Callable[[], Any]]:
        return FL.cross_entropy(y_pred, target, label_smoothing=self.label_smoothing, reduction=self.reduction)

    def check_target(self, pred_shape: tuple[int, ...], target: Any, *, values: bool = True) -> None:
        if len(pred_shape) < 2:
            raise ValueError(
                f"{self!r} expects logits of shape (batch, classes), or (batch, time, classes) for sequences; got {pred_shape}"
            )
        if len(pred_shape) > 2:
            self._check_sequence_target(pred_shape, target, values=values)
            return
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
                self._check_labels(xp, target, c)
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

    def _check_labels(self, xp: Any, target: Any, c: int) -> None:
        lo, hi = int(xp.min(target)), int(xp.max(target))
        if lo < 0 or hi >= c:
            raise ValueError(
                f"{self!r}: labels must be class indices in 0..{c - 1} for a model with {c} outputs; got values from {lo} to {hi}"
            )

    def _check_sequence_target(self, pred_shape: tuple[int, ...], target: Any, *, values: bool) -> None:
        """Targets of sequence logits (batch, time, classes): labels (batch, time) or probabilities of the logits' shape."""
        xp = array_namespace(target)
        c, got = pred_shape[-1], tuple(target.shape)
        if xp.isdtype(target.dtype, "integral"):
            want = pred_shape[:-1]
            if got != want:
                hint = ""
                if len(got) == len(want) and got == (pred_shape[0], *pred_shape[2:]):
                    hint = (
                        " (logits in PyTorch's (batch, classes, time) layout? here classes come last: "
                        "add pn.layers.Permute((2, 1)) at the end of the model)"
                    )
                elif got == pred_shape:
                    hint = " (one-hot labels? pass them as float probabilities, or y.argmax(axis=-1))"
                raise ValueError(
                    f"{self!r}: logits of shape {pred_shape} (batch, time, classes: classes last) take integer labels "
                    f"of shape {want}, one per position; got {got}{hint}"
                )
            if values and size(target):
                self._check_labels(xp, target, c)
        elif xp.isdtype(target.dtype, "real floating"):
            if got != pred_shape:
                hint = " (class indices? pass them as integers: y.astype(int))" if got == pred_shape[:-1] else ""
                raise ValueError(
                    f"{self!r}: float targets of logits of shape {pred_shape} are probabilities of the same shape; "
                    f"got {got}{hint}"
                )
        else:
            raise TypeError(
                f"{self!r}: targets must be integer labels or float probabilities; got dtype {dtype_name(target.dtype)}"
            )

    def check_output_layer(self, layer: Any) -> None:
        if isinstance(layer, Softmax):
            raise ValueError(
                "CrossEntropy takes logits, but the model ends with Softmax, which would apply softmax twice; "
                "remove the final Softmax layer (apply it to predict()'s output if you need probabilities)"
            )

    def correct(self, y_pred: Any, target: Any) -> Any:
        """Positions whose largest logit is the label's (every step of a sequence counts)."""
        xp = array_namespace(y_pred, target)
        if not xp.isdtype(target.dtype, "integral"):
            target = xp.argmax(target, axis=-1)
        return xp.count_nonzero(xp.argmax(y_pred, axis=-1) == target)

    def count(self, target: Any) -> int:
        """Labelled positions: the batch, times the steps of a sequence."""
        n = int(size(target))
        return n if array_namespace(target).isdtype(target.dtype, "integral") else n // max(int(target.shape[-1]), 1)

    def __repr__(self) -> str:
        return f"CrossEntropy(label_smoothing={self.label_smoothing})" if self.label_smoothing else "CrossEntropy()"


class MSE(Loss):
    """Mean squared error over all elements (PyTorch's ``MSELoss``). Targets have the predictions' shape."""

    def _forward(self, y_pred: Any, target: Any) -> tuple[Any, Callable[[], Any]]:
        return FL.mse(y_pred, target, reduction=self.reduction)

    def check_target(self, pred_shape: tuple[int, ...], target: Any, *, values: bool = True) -> None:
        _check_float_like(self, pred_shape, target)


class BinaryCrossEntropy(Loss):
    """Binary cross-entropy, from probabilities (the default) or from logits.

    Parameters
    ----------
    from_logits
        False (the default, as Keras's ``BinaryCrossentropy`` and PyTorch's ``BCELoss``): the
        predictions are probabilities in [0, 1], from a model that ends with Sigmoid; they are
        clipped to ``[1e-7, 1 - 1e-7]`` before the log, as Keras does. True (PyTorch's
        ``BCEWithLogitsLoss``): the predictions are logits, from a model without a final
        Sigmoid; the loss applies the sigmoid itself, exactly and stably for any logit. Prefer
        logits when you can: a saturated Sigmoid passes no gradient back.
    reduction
        ``"mean"`` over all elements (default) or ``"sum"``.

    Targets are 0/1 (or probabilities) of the predictions' shape. With validation on (a direct
    call, or ``forward(..., validate=True)``), predictions outside [0, 1] under
    ``from_logits=False`` raise a ValueError: they are logits. :meth:`check_output_layer`
    catches the same mistake from the model's last layer before training.

    Examples
    --------
    >>> import numpy as np
    >>> import portnn as pn
    >>> target = np.array([[1.0], [0.0]])
    >>> round(float(pn.losses.BinaryCrossEntropy()(np.array([[0.8], [0.4]]), target)), 4)  # probabilities
    0.367
    >>> round(float(pn.losses.BinaryCrossEntropy(from_logits=True)(np.array([[2.0], [-1.0]]), target)), 4)
    0.2201
    >>> pn.losses.BinaryCrossEntropy()(np.array([[2.0], [-1.0]]), target)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: BinaryCrossEntropy() takes probabilities in [0, 1] ...: they look like logits. Pass ...(from_logits=True), ...
    """

    classification = True

    def __init__(self, *, from_logits: bool = False, reduction: str = "mean") -> None:
        super().__init__(reduction=reduction)
        self.from_logits = check_flag("BinaryCrossEntropy", "from_logits", from_logits)

    def forward(self, y_pred: Any, target: Any, *, validate: bool = True) -> tuple[Any, Callable[[], Any]]:
        """Return ``(loss, backward)``; ``validate=True`` also checks that probabilities lie in [0, 1] (a sync)."""
        if validate:
            namespace(y_pred, target, where=f"{self!r}: ")
            self.check_target(tuple(y_pred.shape), target, values=True)
            self.check_predictions(y_pred)
        return self._forward(y_pred, target)

    def _forward(self, y_pred: Any, target: Any) -> tuple[Any, Callable[[], Any]]:
        if self.from_logits:
            return FL.binary_cross_entropy_with_logits(y_pred, target, reduction=self.reduction)
        return FL.binary_cross_entropy(y_pred, target, reduction=self.reduction)

    def check_predictions(self, y_pred: Any) -> None:
        """Raise a ValueError if ``from_logits=False`` and ``y_pred`` leaves [0, 1] (a device-to-host sync)."""
        if self.from_logits or size(y_pred) == 0:
            return
        xp = array_namespace(y_pred)
        lo, hi = float(xp.min(y_pred)), float(xp.max(y_pred))
        if lo < 0.0 or hi > 1.0:
            n_out = int(xp.count_nonzero((y_pred < 0.0) | (y_pred > 1.0)))
            raise ValueError(
                f"{self!r} takes probabilities in [0, 1] (from_logits=False, the default), but the predictions run from "
                f"{lo} to {hi} ({n_out} of {size(y_pred)} outside): they look like logits. "
                "Pass BinaryCrossEntropy(from_logits=True), or end the model with pn.layers.Sigmoid()"
            )

    def check_output_layer(self, layer: Any) -> None:
        if self.from_logits and isinstance(layer, Sigmoid):
            raise ValueError(
                f"{self!r} takes logits, but the model ends with Sigmoid, which would apply the sigmoid twice; "
                "remove the final Sigmoid layer, or use BinaryCrossEntropy() (from_logits=False), which takes probabilities"
            )
        if not self.from_logits and layer is not None and not isinstance(layer, Sigmoid):
            raise ValueError(
                f"{self!r} takes probabilities in [0, 1] (from_logits=False, the default), but the model ends with "
                f"{layer!r}, whose outputs are not probabilities; end the model with pn.layers.Sigmoid(), or pass "
                "BinaryCrossEntropy(from_logits=True) to train on its logits (the stabler choice)"
            )

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
        """Predictions on the right side of the threshold: 0 for logits, 0.5 for probabilities."""
        xp = array_namespace(y_pred, target)
        threshold = 0.0 if self.from_logits else 0.5
        return xp.count_nonzero((y_pred > threshold) == (target > 0.5))

    def count(self, target: Any) -> int:
        return int(size(target))

    def __repr__(self) -> str:
        return "BinaryCrossEntropy(from_logits=True)" if self.from_logits else "BinaryCrossEntropy()"


def _check_float_like(loss: Loss, pred_shape: tuple[int, ...], target: Any) -> None:
    if not array_namespace(target).isdtype(target.dtype, "real floating"):
        raise TypeError(f"{loss!r}: targets must be floating point; got dtype {dtype_name(target.dtype)}")
    if tuple(target.shape) != tuple(pred_shape):
        hint = " (reshape the target to (batch, 1))" if target.ndim == 1 and len(pred_shape) == 2 and pred_shape[1] == 1 else ""
        raise ValueError(f"{loss!r}: target shape {tuple(target.shape)} does not match predictions {tuple(pred_shape)}{hint}")

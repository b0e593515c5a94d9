"""Combinators: layers made of layers, whose backward is written once here (Thinc's ``residual``, ``concatenate``, ``add``).

:class:`Residual` adds a block's output to its input; :class:`Parallel` runs branches on the
same input and concatenates (or adds) their outputs. The children are registered as
attributes, so their parameters are named by their path (``"block.0.weight"``,
``"branches.1.0.bias"``), as PyTorch names a module's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from array_api_compat import array_namespace

from .._checks import check_int
from .base import Layer, Shape, ShapeError, as_layer, format_shape
from .base import layer_entry as _entry

__all__ = ["Parallel", "Residual"]

_MERGES = ("concat", "sum")


def _built(value: Any, where: str) -> Layer:
    """A child from a config: already rebuilt by :func:`portnn.serialization.layer_from_config` (a layer), else refused."""
    if isinstance(value, Layer):
        return value
    raise TypeError(
        f"{where}: the config's child is {value!r:.80}; rebuild composites with portnn.serialization.layer_from_config, "
        "which builds the children first"
    )


def _kind(layer: Layer) -> str:
    return type(layer).__name__ if any(True for _ in layer.children()) else repr(layer)


class Residual(Layer):
    """``y = x + f(x)``: a block with a skip connection (ResNet's), ``f`` a layer or a list of layers.

    Backward: ``dx = dy + df(dy)``, where ``df`` is the block's backward. The block must give
    an output of its input's shape; a :class:`~portnn.layers.ShapeError` names both shapes.

    Parameters
    ----------
    block
        The layer ``f``, or a list of layers (run in order, as a :class:`portnn.Sequential`).

    Examples
    --------
    >>> import numpy as np
    >>> import portnn as pn
    >>> block = pn.layers.Residual([pn.layers.Linear(4, 4), pn.layers.ReLU()])
    >>> [name for name, _ in block.named_parameters()]
    ['block.0.weight', 'block.0.bias']
    >>> x = np.ones((2, 4), dtype=np.float32)
    >>> block(x).shape
    (2, 4)
    """

    def __init__(self, block: Layer | list[Layer]) -> None:
        super().__init__()
        self.block = as_layer(block, "Residual(block)")

    def call(self, x: Any, *, training: bool = False, input_grad: bool = True) -> tuple[Any, Callable[[Any], Any]]:
        fx, back = self.block.forward(x, training=training, input_grad=input_grad)
        if tuple(fx.shape) != tuple(x.shape):
            raise ShapeError(self._mismatch(tuple(x.shape), tuple(fx.shape)))

        def backward(dy: Any) -> Any:
            dfx = back(dy)  # fills the block's parameter gradients
            return dy + dfx if input_grad else None

        return x + fx, backward

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        out = tuple(self.block.output_shape(input_shape))
        same = len(out) == len(input_shape) and all(a is None or b is None or a == b for a, b in zip(out, input_shape))
        if not same:
            raise ShapeError(self._mismatch(input_shape, out))
        return tuple(a if a is not None else b for a, b in zip(input_shape, out))

    def _mismatch(self, x_shape: Shape, fx_shape: Shape) -> str:
        return (
            f"Residual({_kind(self.block)}) computes x + block(x), but its block maps input of shape {format_shape(x_shape)} "
            f"to {format_shape(fx_shape)}; the block must keep the shape (same channels/features, stride 1, 'same' padding), "
            "or project the skip path yourself"
        )

    def get_config(self) -> dict[str, Any]:
        """``{"block": {"class_name", "config"}, "name"}``: the block's own config is nested."""
        return {"block": _entry(self.block), "name": self.name}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Residual:
        """Rebuild from :meth:`get_config` whose ``block`` :func:`portnn.serialization.layer_from_config` has built."""
        layer = cls(_built(config.get("block"), "Residual.from_config"))
        layer.name = config.get("name")
        return layer

    def extra_repr(self) -> str:
        return _kind(self.block)


class Parallel(Layer):
    """Branches run on the same input, their outputs concatenated along ``axis`` (or added): Thinc's ``concatenate``/``add``.

    Backward: ``dy`` is split along ``axis`` into each branch's part (``merge="sum"``: each
    branch gets all of ``dy``), and the input gradient is the sum of the branches' input
    gradients.

    Parameters
    ----------
    *branches
        Layers, or lists of layers (each run in order, as a :class:`portnn.Sequential`).
    merge
        ``"concat"`` (the default: outputs joined along ``axis``, Inception style) or ``"sum"``
        (outputs of one shape added).
    axis
        The axis that ``"concat"`` joins: 1, the channels of ``(N, C, H, W)`` or the features of
        ``(N, F)``, by default; negative counts from the end; never the batch axis 0.

    Examples
    --------
    >>> import numpy as np
    >>> import portnn as pn
    >>> layer = pn.layers.Parallel(pn.layers.Linear(4, 2), [pn.layers.Linear(4, 3), pn.layers.ReLU()])
    >>> layer(np.ones((5, 4), dtype=np.float32)).shape
    (5, 5)
    >>> [name for name, _ in layer.named_parameters()][:2]
    ['branches.0.weight', 'branches.0.bias']
    """

    def __init__(self, *branches: Layer | list[Layer], merge: str = "concat", axis: int = 1) -> None:
        super().__init__()
        if not branches:
            raise ValueError("Parallel takes one or more branches (layers or lists of layers); got none")
        if merge not in _MERGES:
            raise ValueError(f"Parallel: merge is {merge!r}; expected one of {list(_MERGES)}")
        self.merge = merge
        self.axis = check_int("Parallel", "axis", axis, minimum=None)
        if self.axis == 0:
            raise ValueError("Parallel: axis=0 is the batch axis, which branches cannot join along; use axis=1 (channels)")
        self.branches = [as_layer(b, f"Parallel(branch {i})") for i, b in enumerate(branches)]

    def shape_problem(self, shape: Shape) -> str | None:
        if self.merge == "concat" and not (-len(shape) <= self.axis < len(shape) and self.axis % len(shape) != 0):
            return (
                f"it joins outputs along axis {self.axis}, which is not a non-batch axis of a {len(shape)}-d input; "
                "pass axis=1 (channels of (N, C, H, W), features of (N, F)) or another axis from 1 to ndim - 1"
            )
        return None

    def call(self, x: Any, *, training: bool = False, input_grad: bool = True) -> tuple[Any, Callable[[Any], Any]]:
        outs, backs = [], []
        for branch in self.branches:
            y, back = branch.forward(x, training=training, input_grad=input_grad)
            outs.append(y)
            backs.append(back)
        self._check_outputs([tuple(y.shape) for y in outs], tuple(x.shape))
        xp = array_namespace(*outs)
        if self.merge == "sum":
            y = outs[0]
            for other in outs[1:]:
                y = y + other
            parts: Callable[[Any], list[Any]] = lambda dy: [dy] * len(backs)  # noqa: E731
        else:
            axis = self.axis % len(outs[0].shape)
            y = xp.concat(outs, axis=axis)
            bounds = [0]
            for o in outs:
                bounds.append(bounds[-1] + int(o.shape[axis]))

            def parts(dy: Any) -> list[Any]:
                lead = (slice(None),) * axis
                return [dy[(*lead, slice(a, b), ...)] for a, b in zip(bounds[:-1], bounds[1:])]

        def backward(dy: Any) -> Any:
            dx = None
            for back, part in zip(backs, parts(dy)):
                g = back(part)
                if input_grad:
                    dx = g if dx is None else dx + g
            return dx

        return y, backward

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        shapes = [tuple(b.output_shape(input_shape)) for b in self.branches]
        self._check_outputs(shapes, input_shape)
        first = shapes[0]
        if self.merge == "sum":
            return tuple(next((s[a] for s in shapes if s[a] is not None), None) for a in range(len(first)))
        axis = self.axis % len(first)
        out = []
        for a in range(len(first)):
            sizes = [s[a] for s in shapes]
            if a == axis:
                out.append(None if any(d is None for d in sizes) else sum(sizes))
            else:
                out.append(next((d for d in sizes if d is not None), None))
        return tuple(out)

    def _check_outputs(self, shapes: list[Shape], input_shape: Shape) -> None:
        """Refuse branch outputs that cannot merge: another rank, or other sizes off the joined axis (any axis for sum)."""
        rank = len(shapes[0])
        ok = all(len(s) == rank for s in shapes)
        if self.merge == "concat":
            ok = ok and -rank <= self.axis < rank and self.axis % rank != 0
        for a in range(rank if ok else 0):
            if self.merge == "concat" and a == self.axis % rank:
                continue
            if len({s[a] for s in shapes if s[a] is not None}) > 1:
                ok = False
        if ok:
            return
        join = f"concatenates them along axis {self.axis}" if self.merge == "concat" else "adds them"
        raise ShapeError(
            f"{self!r} {join}, but for input {format_shape(input_shape)} "
            f"its branches give {', '.join(format_shape(s) for s in shapes)}; "
            + ("every other axis must agree" if self.merge == "concat" else "every branch must give the same shape")
        )

    def get_config(self) -> dict[str, Any]:
        """``{"branches": [{"class_name", "config"}, ...], "merge", "axis", "name"}``."""
        return {"branches": [_entry(b) for b in self.branches], "merge": self.merge, "axis": self.axis, "name": self.name}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Parallel:
        """Rebuild from :meth:`get_config` whose ``branches`` :func:`portnn.serialization.layer_from_config` has built."""
        branches = config.get("branches")
        if not isinstance(branches, (list, tuple)):
            raise TypeError(f"Parallel.from_config: 'branches' must be a list; got {branches!r:.80}")
        layer = cls(
            *[_built(b, "Parallel.from_config") for b in branches],
            merge=config.get("merge", "concat"),
            axis=config.get("axis", 1),
        )
        layer.name = config.get("name")
        return layer

    def extra_repr(self) -> str:
        n = len(self.branches)
        axis = f", axis={self.axis}" if self.merge == "concat" else ""
        return f"{n} branch{'' if n == 1 else 'es'}, merge={self.merge!r}{axis}"

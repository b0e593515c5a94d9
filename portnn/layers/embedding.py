"""Embedding layers: learned rows picked by integer indices, and learned positions added to a sequence."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from array_api_compat import array_namespace

from .. import init as initializers
from .._checks import check_int
from ..functional.embedding import embedding, positional_embedding
from ..init import Initializer, get_initializer
from .base import InputSpec, Shape, WeightedLayer, format_shape

__all__ = ["Embedding", "PositionalEmbedding"]


class Embedding(WeightedLayer):
    """A lookup table: integer indices of any shape (batch, ...) -> their rows of ``weight``, (batch, ..., embedding_dim).

    PyTorch's ``nn.Embedding`` names and layout: ``weight`` is (num_embeddings, embedding_dim).
    The gradient of a row used several times in a batch is the sum of its uses
    (:func:`portnn.functional.embedding.index_add_rows`, a fast kernel per backend).

    Parameters
    ----------
    num_embeddings
        Size of the vocabulary: indices run over ``0..num_embeddings-1``.
    embedding_dim
        Length of each row.
    padding_idx
        A row that stays zero and gets no gradient (a padding token), as in PyTorch; a
        negative value counts from the end (``-1`` is the last row). None (default): none.
    init
        Weight initialiser: a name from :data:`portnn.init.INITIALIZERS` or a callable
        ``f(rng, shape, fan_in, fan_out)`` with ``fan_in = embedding_dim``, ``fan_out =
        num_embeddings`` (PyTorch's convention for a 2-D weight). None (the default) draws
        N(0, 1), PyTorch's (``init.normal(1.0)``).
    dtype
        ``"float32"`` (default) or ``"float64"``.
    seed
        Seed of the initial weights.

    Every forward pass checks that the indices lie in range, with one reduction over them and
    one 0-d read on the host: free next to the lookup on CPU backends, one device sync per
    step on a GPU (PyTorch's CUDA embedding asserts on the device instead). An index out of
    range raises a ValueError naming the layer, the bad values and the range; NumPy would
    otherwise wrap a negative index silently.

    Examples
    --------
    >>> import numpy as np
    >>> import portnn as pn
    >>> layer = pn.layers.Embedding(10, 3, seed=0)
    >>> layer(np.array([[1, 2, 2, 9]])).shape
    (1, 4, 3)
    """

    input_spec = InputSpec(min_ndim=1, dtype="integral")

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        *,
        padding_idx: int | None = None,
        init: str | Initializer | None = None,
        dtype: Any = "float32",
        seed: int | None = None,
    ) -> None:
        super().__init__()
        self.num_embeddings = check_int("Embedding", "num_embeddings", num_embeddings, expected="a positive int")
        self.embedding_dim = check_int("Embedding", "embedding_dim", embedding_dim, expected="a positive int")
        n = self.num_embeddings
        padding_idx = check_int(
            "Embedding", "padding_idx", padding_idx, minimum=-n, maximum=n - 1,
            expected=f"an int in -{n}..{n - 1} (a row of the table) or None", allow_none=True,
        )  # fmt: skip
        self.padding_idx = None if padding_idx is None else padding_idx % n
        where = f"Embedding({num_embeddings}, {embedding_dim}): "
        self.init = initializers.normal(1.0) if init is None else get_initializer(init, where=where)
        self.build_weights(bias=False, dtype=dtype, seed=seed)

    def weight_spec(self) -> tuple[tuple[int, ...], int, int]:
        return (self.num_embeddings, self.embedding_dim), self.embedding_dim, self.num_embeddings

    def _materialize(self, rng: Any, adapter: Any, device: Any, dtype: str) -> None:
        shape, fan_in, fan_out = self.weight_spec()
        w = self.init(rng, shape, fan_in, fan_out).astype(dtype)
        if self.padding_idx is not None:
            w[self.padding_idx] = 0  # a host array, before it moves to the backend
        self.weight.data, self.weight.grad = adapter.from_numpy(w, device), None

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return (*input_shape, self.embedding_dim)

    def input_hint(self, shape: Shape) -> str:
        return " (a single index? pass an array of shape (batch,))" if len(shape) == 0 else ""

    def call(self, x: Any, *, training: bool = False, input_grad: bool = True) -> tuple[Any, Callable[[Any], Any]]:
        xp = array_namespace(x)
        n = self.num_embeddings
        if bool(xp.any((x < 0) | (x >= n))):  # one reduction and one 0-d read (see the class docstring)
            lo, hi = int(xp.min(x)), int(xp.max(x))
            bad = int(xp.count_nonzero((x < 0) | (x >= n)))
            fix = f"give the layer num_embeddings={hi + 1} or more, or " if hi >= n else ""
            fix += f"map negative indices into 0..{n - 1} (they do not count from the end here), or " if lo < 0 else ""
            raise ValueError(
                f"{self!r} got indices from {lo} to {hi} in its input of shape {format_shape(tuple(x.shape))} "
                f"({bad} outside 0..{n - 1}): indices must lie in 0..{n - 1}; {fix}map the tokens into the "
                "vocabulary (an unknown-token index)"
            )
        weight = self.weight
        y, backward_fn = embedding(x, weight.data, padding_idx=self.padding_idx, param_grad=self.trainable)

        def backward(dy: Any) -> Any:
            _, dw = backward_fn(dy)
            if dw is not None:
                weight.accumulate(dw)
            return None  # indices have no gradient

        return y, backward

    def extra_repr(self) -> str:
        extra = "" if self.padding_idx is None else f", padding_idx={self.padding_idx}"
        return f"{self.num_embeddings}, {self.embedding_dim}{extra}"


class PositionalEmbedding(WeightedLayer):
    """A learned position table added to a sequence: (batch, time, dim) -> ``x + weight[:time]``.

    The learned positions of BERT and GPT-2 (``position_embeddings`` there; Keras-hub calls
    this layer ``PositionEmbedding``): ``weight`` is (max_length, embedding_dim) and row ``t``
    is added to every example's step ``t``. Use it after an :class:`Embedding` of the tokens
    (or the patch tokens of a vision transformer). Sequences may be shorter than
    ``max_length``, not longer.

    Parameters
    ----------
    max_length
        The longest sequence the layer takes.
    embedding_dim
        The features of each step (the last axis of the input).
    init
        Weight initialiser, as for :class:`Embedding`, with ``fan_in = embedding_dim`` and
        ``fan_out = max_length``; default ``"glorot_uniform"``, Keras-hub's.
    dtype
        ``"float32"`` (default) or ``"float64"``.
    seed
        Seed of the initial weights.

    Examples
    --------
    >>> import numpy as np
    >>> import portnn as pn
    >>> layer = pn.layers.PositionalEmbedding(16, 3, seed=0)
    >>> layer(np.zeros((2, 5, 3), dtype=np.float32)).shape
    (2, 5, 3)
    """

    def __init__(
        self,
        max_length: int,
        embedding_dim: int,
        *,
        init: str | Initializer = "glorot_uniform",
        dtype: Any = "float32",
        seed: int | None = None,
    ) -> None:
        super().__init__()
        self.max_length = check_int("PositionalEmbedding", "max_length", max_length, expected="a positive int")
        self.embedding_dim = check_int("PositionalEmbedding", "embedding_dim", embedding_dim, expected="a positive int")
        self.input_spec = InputSpec(("batch", "time", self.embedding_dim))
        self.init = get_initializer(init, where=f"PositionalEmbedding({max_length}, {embedding_dim}): ")
        self.build_weights(bias=False, dtype=dtype, seed=seed)

    def weight_spec(self) -> tuple[tuple[int, ...], int, int]:
        return (self.max_length, self.embedding_dim), self.embedding_dim, self.max_length

    def shape_problem(self, shape: Shape) -> str | None:
        if shape[1] is not None and shape[1] > self.max_length:
            return (
                f"{shape[1]} steps, more than max_length={self.max_length}; build the layer with "
                f"max_length={shape[1]} or more, or cut the sequences to {self.max_length} steps"
            )
        return None

    def input_hint(self, shape: Shape) -> str:
        if len(shape) == 2 and shape[1] == self.embedding_dim:
            return " (one sequence of steps? add the batch axis: x[None])"
        return ""

    def call(self, x: Any, *, training: bool = False, input_grad: bool = True) -> tuple[Any, Callable[[Any], Any]]:
        weight = self.weight
        y, backward_fn = positional_embedding(x, weight.data, param_grad=self.trainable)

        def backward(dy: Any) -> Any:
            dx, dw = backward_fn(dy)
            if dw is not None:
                weight.accumulate(dw)
            return dx if input_grad else None

        return y, backward

    def extra_repr(self) -> str:
        return f"{self.max_length}, {self.embedding_dim}"

"""Row lookup (embeddings) and its gradient, the sum of rows into repeated indices."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from array_api_compat import array_namespace, device

from .. import backends

#: The generic :func:`index_add_rows` builds one-hot blocks of at most this many elements (16 MiB in float32).
ONEHOT_ELEMENTS = 2**22


def index_add_rows(n_rows: int, indices: Any, values: Any, *, fast: bool = True) -> Any:
    r"""``out[i] = sum of values[m] over every m with indices[m] == i``: (n_rows, D), repeated indices accumulated.

    The gradient of a row lookup. ``indices`` is 1-D (M,) of integers in ``0..n_rows-1`` (not
    checked here), ``values`` is (M, D). The backend's adapter answers first
    (:meth:`portnn.backends.Adapter.index_add_rows`: NumPy's sort and segment sum, PyTorch's
    ``index_add_``, CuPy's ``scatter_add``); ``fast=False`` or an adapter without one takes the
    generic path, which needs no scatter: a one-hot product

    .. math:: \text{out} = \textstyle\sum_b O_b^\top V_b, \qquad (O_b)_{mi} = [\,\text{indices}_m = i\,]

    over blocks ``b`` of rows, each block's one-hot at most :data:`ONEHOT_ELEMENTS` elements.
    It costs :math:`2 M \cdot n_{rows} \cdot D` flops: fine for a few thousand rows, slow for
    a large vocabulary, which is why backends bring their own.

    Examples
    --------
    >>> import numpy as np
    >>> from portnn.functional.embedding import index_add_rows
    >>> index_add_rows(3, np.array([2, 0, 2]), np.array([[1.0], [2.0], [4.0]]), fast=False).tolist()
    [[2.0], [0.0], [5.0]]
    """
    xp = array_namespace(indices, values)
    if fast:
        out = backends.adapter_for(values).index_add_rows(n_rows, indices, values)
        if out is not None:
            return out
    m, d = int(values.shape[0]), int(values.shape[1])
    rows = xp.arange(n_rows, dtype=indices.dtype, device=device(values))
    step = max(1, ONEHOT_ELEMENTS // max(n_rows, 1))
    out = None
    for start in range(0, m, step):
        stop = min(start + step, m)
        onehot = xp.astype(indices[start:stop, None] == rows[None, :], values.dtype)
        part = onehot.T @ values[start:stop, :]
        out = part if out is None else out + part
    return xp.zeros((n_rows, d), dtype=values.dtype, device=device(values)) if out is None else out


def embedding(
    indices: Any, weight: Any, *, padding_idx: int | None = None, param_grad: bool = True
) -> tuple[Any, Callable[[Any], Any]]:
    r"""``y[..., :] = weight[indices[...], :]``: rows of ``weight`` (V, D) picked by integer ``indices`` of any shape.

    ``y`` has shape ``(*indices.shape, D)``. Indices must lie in ``0..V-1`` (the caller checks:
    :class:`portnn.layers.Embedding` does). Backward, for ``dy`` of ``y``'s shape:

    .. math:: dW_v = \textstyle\sum_{p:\ \text{indices}_p = v} dy_p, \qquad dW_{\text{padding\_idx}} = 0

    (:func:`index_add_rows`; repeated indices accumulate). The indices are not differentiable:
    ``backward(dy)`` returns ``(None, dweight)`` (``dweight`` None with ``param_grad=False``).

    Examples
    --------
    >>> import numpy as np
    >>> from portnn.functional.embedding import embedding
    >>> y, backward = embedding(np.array([[1, 1]]), np.array([[0.0, 1.0], [2.0, 3.0]]))
    >>> y.tolist(), backward(np.ones((1, 2, 2)))[1].tolist()
    ([[[2.0, 3.0], [2.0, 3.0]]], [[0.0, 0.0], [2.0, 2.0]])
    """
    xp = array_namespace(indices, weight)
    n_rows, dim = int(weight.shape[0]), int(weight.shape[1])
    shape = tuple(indices.shape)
    flat = xp.reshape(indices, (-1,))
    if flat.dtype not in (xp.int32, xp.int64):
        flat = xp.astype(flat, xp.int64)  # what every backend's index kernels take
    y = xp.reshape(xp.take(weight, flat, axis=0), (*shape, dim))

    def backward(dy: Any) -> tuple[Any, Any]:
        if not param_grad:
            return None, None
        dw = index_add_rows(n_rows, flat, xp.reshape(dy, (-1, dim)))
        if padding_idx is not None:
            keep = xp.astype(xp.arange(n_rows, device=device(dw)) != padding_idx, dw.dtype)
            dw = dw * keep[:, None]
        return None, dw

    return y, backward


def positional_embedding(x: Any, weight: Any, *, param_grad: bool = True) -> tuple[Any, Callable[[Any], tuple[Any, Any]]]:
    r"""``y = x + weight[:T]`` for ``x`` (N, T, D) and a position table ``weight`` (L, D), ``T <= L``.

    Backward, for ``dy`` (N, T, D):

    .. math:: dx = dy, \qquad dW_t = \textstyle\sum_n dy_{nt} \ (t < T), \qquad dW_t = 0 \ (t \ge T)

    ``backward(dy)`` returns ``(dx, dweight)`` (``dweight`` None with ``param_grad=False``).

    Examples
    --------
    >>> import numpy as np
    >>> from portnn.functional.embedding import positional_embedding
    >>> y, backward = positional_embedding(np.zeros((2, 1, 2)), np.array([[1.0, 2.0], [3.0, 4.0]]))
    >>> y.tolist(), backward(np.ones((2, 1, 2)))[1].tolist()
    ([[[1.0, 2.0]], [[1.0, 2.0]]], [[2.0, 2.0], [0.0, 0.0]])
    """
    xp = array_namespace(x, weight)
    steps, length = int(x.shape[1]), int(weight.shape[0])
    y = x + weight[:steps, :]

    def backward(dy: Any) -> tuple[Any, Any]:
        if not param_grad:
            return dy, None
        dw = xp.sum(dy, axis=0)
        if steps < length:
            rest = xp.zeros((length - steps, int(weight.shape[1])), dtype=dw.dtype, device=device(dw))
            dw = xp.concat([dw, rest], axis=0)
        return dy, dw

    return y, backward

"""Multi-head self-attention on batch-first sequences, forward and backward written once."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from array_api_compat import array_namespace
from array_api_compat import device as device_of

from .activations import softmax
from .dropout import dropout

__all__ = ["causal_mask", "multi_head_attention"]

Backward = Callable[[Any], tuple[Any, Any, Any, Any, Any]]


def causal_mask(xp: Any, length: int, *, dtype: Any, device: Any) -> Any:
    """The additive causal mask of ``length`` positions: 0 where position ``t`` may attend (``s <= t``), ``-inf`` after.

    PyTorch's ``nn.Transformer.generate_square_subsequent_mask(length)``.

    Examples
    --------
    >>> import numpy as np
    >>> from array_api_compat import array_namespace
    >>> from portnn.functional.attention import causal_mask
    >>> causal_mask(array_namespace(np.ones(1)), 3, dtype=np.float64, device="cpu")
    array([[  0., -inf, -inf],
           [  0.,   0., -inf],
           [  0.,   0.,   0.]])
    """
    t = xp.arange(length, device=device)
    later = xp.reshape(t, (1, length)) > xp.reshape(t, (length, 1))
    shape = (length, length)
    return xp.where(later, xp.full(shape, -math.inf, dtype=dtype, device=device), xp.zeros(shape, dtype=dtype, device=device))


def multi_head_attention(
    x: Any,
    in_proj_weight: Any,
    in_proj_bias: Any,
    out_proj_weight: Any,
    out_proj_bias: Any,
    *,
    num_heads: int,
    causal: bool = False,
    dropout_p: float = 0.0,
    u: Any = None,
    input_grad: bool = True,
    param_grad: bool = True,
) -> tuple[Any, Backward]:
    r"""Self-attention of ``x`` (batch, time, E) with ``num_heads`` heads of size ``D = E / num_heads``.

    PyTorch's ``nn.MultiheadAttention(E, num_heads, batch_first=True)`` called as
    ``mha(x, x, x, need_weights=False)``. One fused projection gives queries, keys and values,
    each split into heads (views, no copies where the namespace allows):

    .. math::

        [Q\,K\,V] = x W_{in}^\top + b_{in}, \qquad
        S = Q K^\top / \sqrt{D} + M, \qquad
        P = \operatorname{softmax}(S), \qquad
        C = \operatorname{dropout}(P)\, V, \qquad
        y = C W_{out}^\top + b_{out}

    per batch element and head, where :math:`M` is 0, or with ``causal`` the mask that is
    :math:`-\infty` where a position would attend to a later one (:func:`causal_mask`). The
    softmax subtracts each row's maximum, which is finite (every position may attend to itself),
    so masked scores become exact zeros and never NaN. Backward, for upstream ``dy``, with
    :math:`\tilde P` the dropped-out weights and :math:`m` the dropout's scaled mask:

    .. math::

        dW_{out} = dy^\top C, \quad db_{out} = \textstyle\sum dy, \quad dC = dy\, W_{out}, \quad
        dV = \tilde P^\top dC, \quad dP = (dC\, V^\top) \odot m,

        dS = P \odot (dP - \textstyle\sum_j dP_j P_j) / \sqrt{D}, \quad
        dQ = dS\, K, \quad dK = dS^\top Q,

        dW_{in} = [dQ\,dK\,dV]^\top x, \quad db_{in} = \textstyle\sum [dQ\,dK\,dV], \quad
        dx = [dQ\,dK\,dV]\, W_{in}

    (the softmax's and the dropout's backward are :func:`portnn.functional.softmax`'s and
    :func:`portnn.functional.dropout`'s).

    Parameters
    ----------
    x
        Input of shape (batch, time, E).
    in_proj_weight, in_proj_bias
        The fused query, key and value projection: (3E, E) and (3E,) (or None for no bias).
    out_proj_weight, out_proj_bias
        The output projection: (E, E) and (E,) (or None).
    num_heads
        Number of heads; must divide E.
    causal
        Whether position ``t`` attends only to positions ``<= t``.
    dropout_p, u
        Dropout on the attention weights: probability of zeroing one, and uniform draws in
        [0, 1) of shape (batch, num_heads, time, time) (ignored when ``dropout_p`` is 0 or 1).
    input_grad, param_grad
        With False, ``backward`` returns None for the input's, or for the parameters', gradients
        and skips their products.

    Returns
    -------
    y, backward
        ``y`` of ``x``'s shape; ``backward(dy)`` returns ``(dx, d in_proj_weight, d in_proj_bias,
        d out_proj_weight, d out_proj_bias)``.

    Examples
    --------
    >>> import numpy as np
    >>> from portnn.functional.attention import multi_head_attention
    >>> rng = np.random.default_rng(0)
    >>> x, w_in, w_out = rng.normal(size=(2, 5, 4)), rng.normal(size=(12, 4)), rng.normal(size=(4, 4))
    >>> y, backward = multi_head_attention(x, w_in, None, w_out, None, num_heads=2, causal=True)
    >>> dx, dw_in, db_in, dw_out, db_out = backward(np.ones_like(y))
    >>> y.shape, dx.shape, dw_in.shape, db_in
    ((2, 5, 4), (2, 5, 4), (12, 4), None)
    """
    xp = array_namespace(x, in_proj_weight, out_proj_weight)
    batch, time, embed = (int(d) for d in x.shape)
    if embed % num_heads:
        raise ValueError(f"multi_head_attention: embed_dim {embed} is not divisible by num_heads={num_heads}")
    head = embed // num_heads
    scale = 1.0 / math.sqrt(head)

    x2 = xp.reshape(x, (batch * time, embed))
    qkv = x2 @ xp.matrix_transpose(in_proj_weight)
    if in_proj_bias is not None:
        qkv += in_proj_bias  # fresh: in place
    # (batch·time, 3E) -> (3, batch, heads, time, head): views into qkv
    qkv = xp.permute_dims(xp.reshape(qkv, (batch, time, 3, num_heads, head)), (2, 0, 3, 1, 4))
    q, k, v = qkv[0, ...], qkv[1, ...], qkv[2, ...]
    scores = q @ xp.matrix_transpose(k)
    scores *= scale
    if causal:
        scores += causal_mask(xp, time, dtype=x.dtype, device=device_of(x))
    weights, softmax_backward = softmax(scores, axis=-1)
    dropped, dropout_backward = dropout(weights, u, p=dropout_p)
    context = dropped @ v  # (batch, heads, time, head)
    context = xp.reshape(xp.permute_dims(context, (0, 2, 1, 3)), (batch * time, embed))
    y = context @ xp.matrix_transpose(out_proj_weight)
    if out_proj_bias is not None:
        y += out_proj_bias
    y = xp.reshape(y, (batch, time, embed))

    def backward(dy: Any) -> tuple[Any, Any, Any, Any, Any]:
        if not (input_grad or param_grad):
            return None, None, None, None, None
        dy2 = xp.reshape(dy, (batch * time, embed))
        dw_out = xp.matrix_transpose(dy2) @ context if param_grad else None
        db_out = xp.sum(dy2, axis=0) if param_grad and out_proj_bias is not None else None
        dcontext = xp.permute_dims(xp.reshape(dy2 @ out_proj_weight, (batch, time, num_heads, head)), (0, 2, 1, 3))
        dv = xp.matrix_transpose(dropped) @ dcontext
        dscores = softmax_backward(dropout_backward(dcontext @ xp.matrix_transpose(v)))
        dscores *= scale  # fresh from the softmax's backward
        dq = dscores @ k
        dk = xp.matrix_transpose(dscores) @ q
        # (batch, heads, time, head) x3 -> (batch, time, 3, heads, head): one copy, then a view (batch·time, 3E)
        dqkv = xp.stack([xp.permute_dims(g, (0, 2, 1, 3)) for g in (dq, dk, dv)], axis=2)
        dqkv = xp.reshape(dqkv, (batch * time, 3 * embed))
        dw_in = xp.matrix_transpose(dqkv) @ x2 if param_grad else None
        db_in = xp.sum(dqkv, axis=0) if param_grad and in_proj_bias is not None else None
        dx = xp.reshape(dqkv @ in_proj_weight, (batch, time, embed)) if input_grad else None
        return dx, dw_in, db_in, dw_out, db_out

    return y, backward

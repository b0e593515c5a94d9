"""Recurrent layers' math: LSTM and GRU over a whole sequence, and back-propagation through time.

Both take batch-first input ``x`` of shape (N, T, in) and PyTorch's parameters of one layer
(``weight_ih`` (G*H, in), ``weight_hh`` (G*H, H), ``bias_ih`` and ``bias_hh`` (G*H,), with
G = 4 gates for the LSTM and 3 for the GRU, in PyTorch's gate order), start from zero states,
and return ``(y, backward)``: ``y`` is the last hidden state (N, H), or every step's (N, T, H)
with ``return_sequences=True``. ``backward(dy)`` returns
``(dx, dweight_ih, dweight_hh, dbias_ih, dbias_hh)``.

Where the time goes: the input projection of every step is one matrix product
``(T*N, in) @ weight_ih.T`` before the loop, each step adds one ``(N, H) @ weight_hh.T``, and
the gates are column blocks of one array. The backward keeps the gradient of each step's
pre-activations, and after the loop computes ``dweight_ih``, ``dweight_hh``, the biases and
``dx`` each with one product over all steps. Arrays are time-major inside, so every step's
slice is contiguous.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from array_api_compat import array_namespace

from .. import backends

__all__ = ["gru", "lstm"]

Grads = tuple[Any, Any, Any, Any, Any]
Backward = Callable[[Any], Grads]


def _check(name: str, x: Any, weight_ih: Any, weight_hh: Any, bias_ih: Any, bias_hh: Any, gates: int) -> int:
    """The hidden size, after checking that the arrays fit together; a ValueError naming ``name`` otherwise."""
    hidden = weight_hh.shape[1]
    shapes = [tuple(x.shape), tuple(weight_ih.shape), tuple(weight_hh.shape)]
    ok = x.ndim == 3 and weight_ih.ndim == 2 and weight_hh.ndim == 2
    ok = ok and weight_hh.shape[0] == gates * hidden and weight_ih.shape == (gates * hidden, x.shape[2])
    for b in (bias_ih, bias_hh):
        ok = ok and (b is None or tuple(b.shape) == (gates * hidden,))
    if (bias_ih is None) != (bias_hh is None):
        ok = False
    if not ok or x.shape[1] == 0:
        biases = [None if b is None else tuple(b.shape) for b in (bias_ih, bias_hh)]
        raise ValueError(
            f"{name}: expected x (batch, time >= 1, in), weight_ih ({gates}*H, in), weight_hh ({gates}*H, H) and both "
            f"biases ({gates}*H,) or neither; got x {shapes[0]}, weight_ih {shapes[1]}, weight_hh {shapes[2]}, "
            f"bias_ih {biases[0]}, bias_hh {biases[1]}"
        )
    return hidden


def _time_major(xp: Any, x: Any) -> Any:
    """(N, T, F) -> (T*N, F), row ``t*N + n`` being example n at step t."""
    return xp.reshape(xp.permute_dims(x, (1, 0, 2)), (-1, x.shape[2]))


def _batch_first(xp: Any, a: Any, steps: int) -> Any:
    """(T*N, F) or (T, N, F) -> (N, T, F)."""
    return xp.permute_dims(xp.reshape(a, (steps, -1, a.shape[-1])), (1, 0, 2))


def _ifog(xp: Any, a: Any, h: int, sig: float) -> Any:
    """PyTorch's (i, f, g, o) blocks along axis 0 as (i, f, o, g), the sigmoid blocks (i, f, o) times ``sig``."""
    return xp.concat([sig * a[: 2 * h, ...], sig * a[3 * h :, ...], a[2 * h : 3 * h, ...]], axis=0)


def _ifgo(xp: Any, a: Any, h: int, sig: float) -> Any:
    """The inverse of :func:`_ifog`: (i, f, o, g) blocks along axis 0 back to (i, f, g, o), sigmoid blocks times ``sig``."""
    return xp.concat([sig * a[: 2 * h, ...], a[3 * h :, ...], sig * a[2 * h : 3 * h, ...]], axis=0)


def lstm(
    x: Any,
    weight_ih: Any,
    weight_hh: Any,
    bias_ih: Any = None,
    bias_hh: Any = None,
    *,
    return_sequences: bool = False,
    input_grad: bool = True,
    param_grad: bool = True,
) -> tuple[Any, Backward]:
    r"""One LSTM layer over a batch-first sequence, from zero states; PyTorch's ``nn.LSTM`` equations and gate order.

    .. math::

        z_t &= W_{ih} x_t + b_{ih} + W_{hh} h_{t-1} + b_{hh} = [z^i, z^f, z^g, z^o] \\
        i, f, o &= \sigma(z^i), \sigma(z^f), \sigma(z^o), \qquad g = \tanh z^g \\
        c_t &= f \odot c_{t-1} + i \odot g, \qquad h_t = o \odot \tanh c_t

    Backward through time, from the last step down, with :math:`dh_t` the output's gradient at
    step t plus :math:`W_{hh}^\top dz_{t+1}` and :math:`dc_t = dc_{t+1} \odot f_{t+1}` carried down:

    .. math::

        dc_t &\mathrel{+}= dh_t \odot o \odot (1 - \tanh^2 c_t), \qquad
        do = dh_t \odot \tanh c_t, \quad di = dc_t \odot g, \quad df = dc_t \odot c_{t-1}, \quad dg = dc_t \odot i \\
        dz_t &= [di\,\sigma'(z^i), df\,\sigma'(z^f), dg\,(1 - g^2), do\,\sigma'(z^o)], \qquad \sigma' = \sigma (1 - \sigma) \\
        dW_{ih} &= \textstyle\sum_t dz_t^\top x_t, \quad dW_{hh} = \sum_{t \ge 1} dz_t^\top h_{t-1}, \quad
        db_{ih} = db_{hh} = \sum_t dz_t, \quad dx_t = dz_t W_{ih}

    Inside, the gates are kept in the order (i, f, o, g) and the sigmoid gates' rows of the
    weights are halved (exactly, a power of two), so one ``tanh`` over the (N, 4H)
    pre-activations gives all four: :math:`\sigma(z) = (1 + \tanh(z/2))/2`, which never
    overflows. The backward uses :math:`\sigma'(z) = (1 - \tanh^2(z/2))/4`.

    Parameters
    ----------
    x
        (N, T, in), T >= 1.
    weight_ih, weight_hh, bias_ih, bias_hh
        (4H, in), (4H, H), and (4H,) each or both None.
    return_sequences
        Return every step's hidden state (N, T, H) instead of the last one (N, H).
    input_grad, param_grad
        With False, ``backward`` skips ``dx`` (the product with ``weight_ih``) or the
        parameters' gradients (a frozen layer) and returns None for them; with both False it
        does no work at all.

    Returns
    -------
    y, backward
        ``backward(dy)`` (``dy`` of ``y``'s shape) returns
        ``(dx, dweight_ih, dweight_hh, dbias_ih, dbias_hh)``, None for what was not asked or
        has no bias.

    Examples
    --------
    >>> import numpy as np
    >>> from portnn.functional import lstm
    >>> rng = np.random.default_rng(0)
    >>> x, w_ih, w_hh = rng.normal(size=(2, 5, 3)), rng.normal(size=(8, 3)), rng.normal(size=(8, 2))
    >>> y, backward = lstm(x, w_ih, w_hh, return_sequences=True)
    >>> y.shape, [g.shape for g in backward(np.ones_like(y))[:3]]
    ((2, 5, 2), [(2, 5, 3), (8, 3), (8, 2)])
    """
    xp = array_namespace(x, weight_ih, weight_hh)
    h = _check("lstm", x, weight_ih, weight_hh, bias_ih, bias_hh, 4)
    fast = backends.adapter_for(x).lstm(
        x, weight_ih, weight_hh, bias_ih, bias_hh,
        return_sequences=return_sequences, input_grad=input_grad, param_grad=param_grad,
    )  # fmt: skip
    if fast is not None:  # the library's own kernel (Adapter.lstm), or None
        return fast
    steps = x.shape[1]
    x_tm = _time_major(xp, x)
    w_hh_t = _ifog(xp, weight_hh, h, sig=0.5).T  # (H, 4H): halved sigmoid rows, (i, f, o, g)
    xw = x_tm @ _ifog(xp, weight_ih, h, sig=0.5).T  # every step's input projection, (T*N, 4H)
    if bias_ih is not None:
        xw += _ifog(xp, bias_ih + bias_hh, h, sig=0.5)  # xw is fresh: in place
    xw = xp.reshape(xw, (steps, -1, 4 * h))
    acts, sigs, cells, tanh_cells, hiddens = [], [], [], [], []
    hid = cell = None
    for t in range(steps):
        # fresh arrays are updated in place (+=, *=): fewer temporaries in the hot loop
        if hid is None:
            z = xw[t, ...]
        else:
            z = hid @ w_hh_t
            z += xw[t, ...]
        a = xp.tanh(z)
        sig = a[:, : 3 * h] * 0.5
        sig += 0.5  # i, f, o
        i, f, o, g = sig[:, :h], sig[:, h : 2 * h], sig[:, 2 * h :], a[:, 3 * h :]
        if cell is None:
            cell = i * g
        else:
            cell = f * cell
            cell += i * g
        tc = xp.tanh(cell)
        hid = o * tc
        acts.append(a)
        sigs.append(sig)
        cells.append(cell)
        tanh_cells.append(tc)
        hiddens.append(hid)
    y = _batch_first(xp, xp.stack(hiddens), steps) if return_sequences else hid

    def backward(dy: Any) -> Grads:
        if not (input_grad or param_grad):
            return None, None, None, None, None
        dys = xp.permute_dims(dy, (1, 0, 2)) if return_sequences else None
        w_hh_back = _ifog(xp, weight_hh, h, sig=0.25)  # (4H, H): sigma' = (1 - a^2) / 4, the 1/4 folded in
        us = [None] * steps  # each step's (1 - a^2) * [di, df, do, dg]: dz with the sigmoid rows times 4
        dh = dc = None
        for t in range(steps - 1, -1, -1):
            if return_sequences:
                dh = dys[t, ...] if dh is None else dys[t, ...] + dh
            elif dh is None:
                dh = dy
            sig, a, tc = sigs[t], acts[t], tanh_cells[t]
            i, f, o, g = sig[:, :h], sig[:, h : 2 * h], sig[:, 2 * h :], a[:, 3 * h :]
            dct = dh * o
            dct *= 1.0 - tc * tc
            if dc is not None:
                dct += dc
            df = dct * cells[t - 1] if t > 0 else xp.zeros_like(dct)
            u = xp.concat([dct * g, df, dh * tc, dct * i], axis=1)
            u *= 1.0 - a * a
            us[t] = u
            if t > 0:
                dh = u @ w_hh_back
                dc = dct * f
        u_all = xp.stack(us)  # (T, N, 4H)
        u_flat = xp.reshape(u_all, (-1, 4 * h))
        dx = _batch_first(xp, u_flat @ _ifog(xp, weight_ih, h, sig=0.25), steps) if input_grad else None
        if not param_grad:
            return dx, None, None, None, None
        dw_ih = _ifgo(xp, u_flat.T @ x_tm, h, sig=0.25)
        if steps > 1:
            h_prev = xp.reshape(xp.stack(hiddens[:-1]), (-1, h))
            dw_hh = _ifgo(xp, xp.reshape(u_all[1:, ...], (-1, 4 * h)).T @ h_prev, h, sig=0.25)
        else:
            dw_hh = xp.zeros_like(weight_hh)
        db = _ifgo(xp, xp.sum(u_flat, axis=0), h, sig=0.25) if bias_ih is not None else None
        return dx, dw_ih, dw_hh, db, (None if db is None else xp.asarray(db, copy=True))

    return y, backward


def gru(
    x: Any,
    weight_ih: Any,
    weight_hh: Any,
    bias_ih: Any = None,
    bias_hh: Any = None,
    *,
    return_sequences: bool = False,
    input_grad: bool = True,
    param_grad: bool = True,
) -> tuple[Any, Backward]:
    r"""One GRU layer over a batch-first sequence, from a zero state; PyTorch's ``nn.GRU`` equations and gate order.

    .. math::

        a_t &= W_{ih} x_t + b_{ih} = [a^r, a^z, a^n], \qquad m_t = W_{hh} h_{t-1} + b_{hh} = [m^r, m^z, m^n] \\
        r, z &= \sigma(a^r + m^r), \sigma(a^z + m^z), \qquad n = \tanh(a^n + r \odot m^n) \\
        h_t &= (1 - z) \odot n + z \odot h_{t-1}

    Backward through time, from the last step down, with :math:`dh_t` the output's gradient at
    step t plus what step t+1 sends back:

    .. math::

        d\hat n &= dh_t \odot (1 - z) \odot (1 - n^2), \qquad
        d\hat r = d\hat n \odot m^n\,\sigma'(\cdot), \qquad d\hat z = dh_t \odot (h_{t-1} - n)\,\sigma'(\cdot) \\
        da_t &= [d\hat r, d\hat z, d\hat n], \qquad dm_t = [d\hat r, d\hat z, d\hat n \odot r], \qquad
        dh_{t-1} = dh_t \odot z + dm_t W_{hh} \\
        dW_{ih} &= \textstyle\sum_t da_t^\top x_t, \quad dW_{hh} = \sum_{t \ge 1} dm_t^\top h_{t-1}, \quad
        db_{ih} = \sum_t da_t, \quad db_{hh} = \sum_t dm_t, \quad dx_t = da_t W_{ih}

    with :math:`\sigma' = \sigma (1 - \sigma)` of the gate's own value. The sigmoid gates'
    rows are halved inside, so ``tanh`` computes them: :math:`\sigma(s) = (1 + \tanh(s/2))/2`.

    Parameters, returns: as for :func:`lstm`, with 3H rows (r, z, n) for 4H.

    Examples
    --------
    >>> import numpy as np
    >>> from portnn.functional import gru
    >>> rng = np.random.default_rng(0)
    >>> x, w_ih, w_hh, b = rng.normal(size=(2, 5, 3)), rng.normal(size=(6, 3)), rng.normal(size=(6, 2)), np.zeros(6)
    >>> y, backward = gru(x, w_ih, w_hh, b, b)
    >>> y.shape, [g.shape for g in backward(np.ones_like(y))]
    ((2, 2), [(2, 5, 3), (6, 3), (6, 2), (6,), (6,)])
    """
    xp = array_namespace(x, weight_ih, weight_hh)
    h = _check("gru", x, weight_ih, weight_hh, bias_ih, bias_hh, 3)
    steps = x.shape[1]
    x_tm = _time_major(xp, x)

    def halve_rz(a: Any) -> Any:
        return xp.concat([0.5 * a[: 2 * h, ...], a[2 * h :, ...]], axis=0)

    xw = x_tm @ halve_rz(weight_ih).T  # (T*N, 3H), r and z halved
    w_hh_t = halve_rz(weight_hh).T  # (H, 3H)
    b_hn = None
    if bias_ih is not None:
        # b_hr and b_hz add to the input projection; b_hn stays inside r * (W_hn h + b_hn)
        xw += halve_rz(bias_ih) + xp.concat([0.5 * bias_hh[: 2 * h], xp.zeros_like(bias_hh[2 * h :])])
        b_hn = bias_hh[2 * h :]
    xw = xp.reshape(xw, (steps, -1, 3 * h))
    gates, news, hns, hiddens = [], [], [], []
    hid = None
    for t in range(steps):
        a = xw[t, ...]
        if hid is None:  # h_0 = 0: W_hh h_0 = 0
            s, hn = a[:, : 2 * h], b_hn
        else:
            m = hid @ w_hh_t
            s = a[:, : 2 * h] + m[:, : 2 * h]
            hn = m[:, 2 * h :] if b_hn is None else m[:, 2 * h :] + b_hn
        rz = 0.5 * xp.tanh(s) + 0.5
        r, z = rz[:, :h], rz[:, h:]
        n = xp.tanh(a[:, 2 * h :] if hn is None else a[:, 2 * h :] + r * hn)
        hid = n - z * n if hid is None else n + z * (hid - n)
        gates.append(rz)
        news.append(n)
        hns.append(hn)
        hiddens.append(hid)
    y = _batch_first(xp, xp.stack(hiddens), steps) if return_sequences else hid

    def backward(dy: Any) -> Grads:
        if not (input_grad or param_grad):
            return None, None, None, None, None
        dys = xp.permute_dims(dy, (1, 0, 2)) if return_sequences else None
        das, dms = [None] * steps, [None] * steps
        dh = None
        for t in range(steps - 1, -1, -1):
            if return_sequences:
                dh = dys[t, ...] if dh is None else dys[t, ...] + dh
            elif dh is None:
                dh = dy
            rz, n, hn = gates[t], news[t], hns[t]
            r, z = rz[:, :h], rz[:, h:]
            dn = dh * (1.0 - z) * (1.0 - n * n)
            dz = dh * (hiddens[t - 1] - n) if t > 0 else -(dh * n)
            dr = dn * hn if hn is not None else xp.zeros_like(dn)
            drz = xp.concat([dr, dz], axis=1) * rz * (1.0 - rz)
            das[t] = xp.concat([drz, dn], axis=1)
            dms[t] = xp.concat([drz, dn * r], axis=1)
            if t > 0:
                dh = dh * z + dms[t] @ weight_hh
        da = xp.reshape(xp.stack(das), (-1, 3 * h))
        dx = _batch_first(xp, da @ weight_ih, steps) if input_grad else None
        if not param_grad:
            return dx, None, None, None, None
        dm_all = xp.stack(dms)
        if steps > 1:
            h_prev = xp.reshape(xp.stack(hiddens[:-1]), (-1, h))
            dw_hh = xp.reshape(dm_all[1:, ...], (-1, 3 * h)).T @ h_prev
        else:
            dw_hh = xp.zeros_like(weight_hh)
        if bias_ih is None:
            return dx, da.T @ x_tm, dw_hh, None, None
        return dx, da.T @ x_tm, dw_hh, xp.sum(da, axis=0), xp.sum(xp.reshape(dm_all, (-1, 3 * h)), axis=0)

    return y, backward

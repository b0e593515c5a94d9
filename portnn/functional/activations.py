"""Elementwise activations and softmax. Each returns ``(y, backward)`` with ``backward(dy) -> dx``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from array_api_compat import array_namespace, device

from .. import backends
from .._array import scalar

Backward = Callable[[Any], Any]


#: ReLU's zero per namespace, dtype and device: made on the device once, not at every call.
_ZEROS: dict[tuple[str, str, str], Any] = {}


def _zero(xp: Any, like: Any) -> Any:
    if "ndonnx" in xp.__name__:  # an ONNX graph's constant: made in the graph being traced
        return scalar(xp, 0.0, like)
    key = (xp.__name__, str(like.dtype), str(device(like)))
    zero = _ZEROS.get(key)
    if zero is None:
        zero = _ZEROS[key] = scalar(xp, 0.0, like)
    return zero


def relu(x: Any) -> tuple[Any, Backward]:
    r"""``max(x, 0)``; backward: :math:`dx = dy \cdot [x > 0]`.

    Examples
    --------
    >>> import numpy as np
    >>> from portnn.functional import relu
    >>> relu(np.array([-1.0, 2.0]))[0]
    array([0., 2.])
    """
    fast = backends.adapter_for(x).relu(x)  # the library's own kernel (Adapter.relu), or None
    if fast is not None:
        return fast
    xp = array_namespace(x)
    y = xp.maximum(x, _zero(xp, x))

    def backward(dy: Any) -> Any:
        return dy * xp.astype(y > 0, dy.dtype)

    return y, backward


def leaky_relu(x: Any, negative_slope: float = 0.01) -> tuple[Any, Backward]:
    r"""``x`` where positive, ``negative_slope * x`` elsewhere; backward: :math:`dx = dy \cdot (s + (1-s)[x > 0])`."""
    xp = array_namespace(x)
    slope = xp.astype(x > 0, x.dtype) * (1.0 - negative_slope) + negative_slope
    y = x * slope

    def backward(dy: Any) -> Any:
        return dy * slope

    return y, backward


def sigmoid(x: Any) -> tuple[Any, Backward]:
    r""":math:`\sigma(x) = (1 + \tanh(x/2)) / 2`, which never overflows; backward: :math:`dx = dy\,\sigma(1-\sigma)`."""
    xp = array_namespace(x)
    y = 0.5 * xp.tanh(0.5 * x) + 0.5

    def backward(dy: Any) -> Any:
        return dy * y * (1.0 - y)

    return y, backward


def tanh(x: Any) -> tuple[Any, Backward]:
    r""":math:`\tanh x`; backward: :math:`dx = dy\,(1 - y^2)`."""
    xp = array_namespace(x)
    y = xp.tanh(x)

    def backward(dy: Any) -> Any:
        return dy * (1.0 - y * y)

    return y, backward


def softmax(x: Any, axis: int = -1) -> tuple[Any, Backward]:
    r"""Softmax along ``axis`` (max-shifted, so extreme inputs do not overflow).

    Backward: :math:`dx = y \odot (dy - \sum_j dy_j y_j)`.
    """
    xp = array_namespace(x)
    e = xp.exp(x - xp.max(x, axis=axis, keepdims=True))
    y = e / xp.sum(e, axis=axis, keepdims=True)

    def backward(dy: Any) -> Any:
        return y * (dy - xp.sum(dy * y, axis=axis, keepdims=True))

    return y, backward


# W. J. Cody, "Rational Chebyshev approximations for the error function", Math. Comp. 23 (1969) 631-637,
# the coefficients of his CALERF: erf on |x| <= 0.46875, then erfc(x) = exp(-x^2) R(x) on (0.46875, 4] and beyond
_ERF_A = (3.16112374387056560e00, 1.13864154151050156e02, 3.77485237685302021e02, 3.20937758913846947e03, 1.85777706184603153e-1)
_ERF_B = (2.36012909523441209e01, 2.44024637934444173e02, 1.28261652607737228e03, 2.84423683343917062e03)
_ERF_C = (
    5.64188496988670089e-1, 8.88314979438837594e00, 6.61191906371416295e01, 2.98635138197400131e02, 8.81952221241769090e02,
    1.71204761263407058e03, 2.05107837782607147e03, 1.23033935479799725e03, 2.15311535474403846e-8,
)  # fmt: skip
_ERF_D = (
    1.57449261107098347e01, 1.17693950891312499e02, 5.37181101862009858e02, 1.62138957456669019e03, 3.29079923573345963e03,
    4.36261909014324716e03, 3.43936767414372164e03, 1.23033935480374942e03,
)  # fmt: skip
_ERF_P = (3.05326634961232344e-1, 3.60344899949804439e-1, 1.25781726111229246e-1, 1.60837851487422766e-2,
          6.58749161529837803e-4, 1.63153871373020978e-2)  # fmt: skip
_ERF_Q = (2.56852019228982242e00, 1.87295284992346047e00, 5.27905102951428412e-1, 6.05183413124413191e-2,
          2.33520497626869185e-3)  # fmt: skip
_RSQRT_PI = 0.56418958354775628695
_SQRT_2_OVER_PI = 0.79788456080286535588
_RSQRT_2PI = 0.39894228040143267794
_RSQRT_2 = 0.70710678118654752440


def _ratio(t: Any, num: tuple[float, ...], den: tuple[float, ...]) -> Any:
    """Cody's ``(((num[-1] t + num[0]) t + num[1]) t + ...) / ((t + den[0]) t + ...)``, by Horner's rule."""
    xnum, xden = num[-1] * t, t
    for a, b in zip(num[: len(den) - 1], den[:-1]):
        xnum, xden = (xnum + a) * t, (xden + b) * t
    return (xnum + num[len(den) - 1]) / (xden + den[-1])


def erf_portable(x: Any) -> Any:
    r"""The error function :math:`\mathrm{erf}(x) = \frac{2}{\sqrt\pi}\int_0^x e^{-t^2}\,dt` with array-API operations only.

    W. J. Cody's rational Chebyshev approximations (Math. Comp. 23, 1969; his CALERF): on
    :math:`|x| \le 0.46875`, :math:`\mathrm{erf}(x) = x\,P(x^2)/Q(x^2)`; beyond,
    :math:`\mathrm{erf}(x) = \mathrm{sign}(x)\,(1 - e^{-x^2} R(|x|))` with a rational
    :math:`R` in :math:`|x|` up to 4 and in :math:`1/x^2` above, and :math:`e^{-x^2}` split as
    Cody does so that rounding :math:`x^2` costs nothing. Every branch runs on the whole
    array (inputs clamped into its interval, so none overflows or divides by zero) and
    ``xp.where`` picks: about 40 elementwise passes, no data-dependent control flow. Within a
    few units in the last place in float64 (tested against ``torch.special.erf``).

    Examples
    --------
    >>> import numpy as np
    >>> from portnn.functional.activations import erf_portable
    >>> erf_portable(np.array([-1.0, 0.0, 0.5, 3.0]))
    array([-0.84270079,  0.        ,  0.52049988,  0.99997791])
    """
    xp = array_namespace(x)
    y = xp.abs(x)
    small = xp.minimum(y, scalar(xp, 0.46875, x))
    z = small * small
    inner = _ratio(z, _ERF_A, _ERF_B) * x  # erf itself, for |x| <= 0.46875
    mid = xp.clip(y, 0.46875, 4.0)
    big = xp.clip(y, 4.0, 27.0)  # erfc(27) is below float64's smallest number: 27 is infinity here
    q = 1.0 / (big * big)
    r = xp.where(y <= 4.0, _ratio(mid, _ERF_C, _ERF_D), (_RSQRT_PI - q * _ratio(q, _ERF_P, _ERF_Q)) / big)
    outer = xp.minimum(y, scalar(xp, 27.0, x))
    head = xp.trunc(outer * 16.0) / 16.0  # exp(-y^2) = exp(-head^2) exp(-(y - head)(y + head)), head exact in 4 bits
    erfc = xp.exp(-head * head) * xp.exp(-(outer - head) * (outer + head)) * r
    return xp.where(y <= 0.46875, inner, xp.sign(x) * (1.0 - erfc))


def erf(x: Any) -> Any:
    r"""The error function, elementwise: the library's own kernel where it has one, else :func:`erf_portable`.

    PyTorch (``torch.special.erf``), CuPy (``cupyx.scipy.special.erf``), NumPy with SciPy
    installed (``scipy.special.erf``) and ONNX export in float32 (an ``Erf`` node) have one
    (:meth:`portnn.backends.Adapter.erf`); array-api-strict, NumPy without SciPy and the
    standard have none, and get Cody's approximation, equal to the kernels to float64 rounding.

    Examples
    --------
    >>> import numpy as np
    >>> from portnn.functional import erf
    >>> erf(np.array([0.0, 1.0], dtype=np.float32))
    array([0.       , 0.8427008], dtype=float32)
    """
    fast = backends.adapter_for(x).erf(x)
    return erf_portable(x) if fast is None else fast


def gelu(x: Any, approximate: str = "none") -> tuple[Any, Backward]:
    r"""The Gaussian error linear unit, PyTorch's ``gelu``: :math:`x\,\Phi(x)`, or its tanh approximation.

    ``approximate="none"``: :math:`y = x\,\Phi(x)`, :math:`\Phi(x) = \tfrac12\big(1 + \mathrm{erf}(x/\sqrt2)\big)`
    (:func:`erf`), and :math:`dx = dy\,\big(\Phi(x) + x\,\varphi(x)\big)` with
    :math:`\varphi(x) = e^{-x^2/2}/\sqrt{2\pi}`.

    ``approximate="tanh"``: :math:`y = \tfrac12 x (1 + t)`, :math:`t = \tanh u`,
    :math:`u = \sqrt{2/\pi}\,(x + 0.044715 x^3)`, and
    :math:`dx = dy\,\big(\tfrac12 (1 + t) + \tfrac12 x (1 - t^2)\sqrt{2/\pi}\,(1 + 3 \cdot 0.044715 x^2)\big)`.

    Examples
    --------
    >>> import numpy as np
    >>> from portnn.functional import gelu
    >>> gelu(np.array([-1.0, 0.0, 2.0]))[0]
    array([-0.15865525,  0.        ,  1.95449974])
    >>> gelu(np.array([-1.0, 0.0, 2.0]), "tanh")[0]
    array([-0.15880801,  0.        ,  1.95459769])
    """
    xp = array_namespace(x)
    if approximate == "tanh":
        t = xp.tanh(_SQRT_2_OVER_PI * (x + 0.044715 * (x * x * x)))
        half = 0.5 + 0.5 * t
        y = x * half

        def backward_tanh(dy: Any) -> Any:
            return dy * (half + (0.5 * _SQRT_2_OVER_PI) * x * (1.0 - t * t) * (1.0 + (3 * 0.044715) * (x * x)))

        return y, backward_tanh
    if approximate != "none":
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh' (PyTorch's names); got {approximate!r}")
    cdf = 0.5 + 0.5 * erf(x * _RSQRT_2)
    y = x * cdf

    def backward(dy: Any) -> Any:
        near = xp.clip(x, -40.0, 40.0)  # x phi(x) is 0 beyond (below 1e-300); unclamped, x * x overflows for huge x
        return dy * (cdf + near * (_RSQRT_2PI * xp.exp(-0.5 * (near * near))))

    return y, backward


def silu(x: Any) -> tuple[Any, Backward]:
    r"""The sigmoid linear unit (swish), PyTorch's ``silu``: :math:`y = x\,\sigma(x)`.

    :math:`\sigma(x) = (1 + \tanh(x/2))/2` never overflows, so any finite ``x`` gives a finite
    ``y`` (``x`` for large positive, ``-0`` for large negative). Backward:
    :math:`dx = dy\,\sigma(x)\,\big(1 + x\,(1 - \sigma(x))\big)`.

    Examples
    --------
    >>> import numpy as np
    >>> from portnn.functional import silu
    >>> silu(np.array([-1e4, -1.0, 0.0, 2.0]))[0]
    array([-0.        , -0.26894142,  0.        ,  1.76159416])
    """
    xp = array_namespace(x)
    s = 0.5 * xp.tanh(0.5 * x) + 0.5
    y = x * s

    def backward(dy: Any) -> Any:
        return dy * (s * (1.0 + x * (1.0 - s)))

    return y, backward

"""RMSprop, with momentum and the centered variant."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from array_api_compat import array_namespace

from .._checks import check_flag, check_number
from ..layers.base import Parameter
from .optimizer import Optimizer, scale_add

__all__ = ["RMSprop"]


class RMSprop(Optimizer):
    r"""RMSprop exactly as PyTorch's ``torch.optim.RMSprop`` (``maximize=False``).

    .. math::
        g \leftarrow g + \lambda\theta, \quad
        v \leftarrow \alpha v + (1-\alpha)\,g^2, \quad
        \bar g \leftarrow \alpha \bar g + (1-\alpha)\,g \text{ (centered)},

        d = \sqrt{v - \bar g^2} + \epsilon \text{ if centered else } \sqrt{v} + \epsilon, \quad
        b \leftarrow \mu b + g/d, \quad
        \theta \leftarrow \theta - \eta\,b \;(\theta - \eta\,g/d \text{ when } \mu = 0)

    with :math:`v, \bar g, b` starting at 0. ``eps`` is added outside the square root.

    Parameters
    ----------
    params
        Parameters to update, or None to let ``model.fit`` bind the model's.
    lr
        Learning rate :math:`\eta`.
    alpha
        Smoothing constant :math:`\alpha` of the squared-gradient average, in [0, 1].
    eps
        :math:`\epsilon`, added to the denominator.
    weight_decay
        L2 coefficient :math:`\lambda` added to the gradient.
    momentum
        :math:`\mu`; 0 for none.
    centered
        Normalise by an estimate of the gradient's variance instead of its second moment.

    Notes
    -----
    State per parameter: ``step`` (a Python int), ``square_avg``, and ``momentum_buffer`` /
    ``grad_avg`` when momentum / centering is on: arrays of the parameter's dtype on its device.

    Examples
    --------
    >>> import numpy as np
    >>> import portnn as pn
    >>> w = pn.layers.Parameter(np.array([1.0, -2.0]))
    >>> opt = pn.optim.RMSprop([w], lr=0.01, alpha=0.75)
    >>> w.grad = np.array([0.5, -0.5])
    >>> opt.step()
    >>> w.data.round(6)  # v = (1 - alpha) g**2 = g**2 / 4: a step of lr * g / (|g| / 2)
    array([ 0.98, -1.98])
    """

    def __init__(
        self,
        params: Iterable[Parameter] | None = None,
        *,
        lr: float = 0.01,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        centered: bool = False,
    ) -> None:
        self.alpha = check_number("RMSprop", "alpha", alpha, lambda v: 0 <= v <= 1, "a number in [0, 1]")
        self.eps = check_number("RMSprop", "eps", eps, lambda v: v >= 0, "a finite number >= 0")
        self.weight_decay = check_number("RMSprop", "weight_decay", weight_decay, lambda v: v >= 0, "a finite number >= 0")
        self.momentum = check_number("RMSprop", "momentum", momentum, lambda v: v >= 0, "a finite number >= 0")
        self.centered = check_flag("RMSprop", "centered", centered)
        super().__init__(params, lr=lr)

    def hyperparameters(self) -> dict[str, Any]:
        return {
            "lr": self.lr,
            "alpha": self.alpha,
            "eps": self.eps,
            "weight_decay": self.weight_decay,
            "momentum": self.momentum,
            "centered": self.centered,
        }

    def _update(self, p: Parameter, g: Any, state: dict[str, Any]) -> None:
        xp = array_namespace(p.data, g)
        alpha = self.alpha
        if "step" not in state:
            state["step"] = 0
            state["square_avg"] = xp.zeros_like(p.data)
        state["step"] += 1
        if self.weight_decay:
            g = g + self.weight_decay * p.data

        v = state["square_avg"] = scale_add(state["square_avg"], scale=alpha, add=(1 - alpha) * (g * g))
        if self.centered:
            g_avg = state.get("grad_avg")
            g_avg = xp.zeros_like(p.data) if g_avg is None else g_avg
            g_avg = state["grad_avg"] = scale_add(g_avg, add=(1 - alpha) * (g - g_avg))
            denom = xp.sqrt(v - g_avg * g_avg) + self.eps
        else:
            denom = xp.sqrt(v) + self.eps

        if self.momentum > 0:
            buf = state.get("momentum_buffer")
            buf = xp.zeros_like(p.data) if buf is None else buf
            step = state["momentum_buffer"] = scale_add(buf, scale=self.momentum, add=g / denom)
        else:
            step = g / denom
        p.data = scale_add(p.data, add=-self.lr * step)

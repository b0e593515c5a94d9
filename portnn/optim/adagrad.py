"""AdaGrad: per-coordinate learning rates from the sum of squared gradients."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from array_api_compat import array_namespace

from .._checks import check_number
from ..layers.base import Parameter
from .optimizer import Optimizer, scale_add

__all__ = ["AdaGrad", "Adagrad"]


class AdaGrad(Optimizer):
    r"""AdaGrad exactly as PyTorch's ``torch.optim.Adagrad`` (dense gradients, ``maximize=False``).

    .. math::
        g \leftarrow g + \lambda\theta, \quad
        \tilde\eta = \frac{\eta}{1 + (t-1)\,\delta}, \quad
        s \leftarrow s + g^2, \quad
        \theta \leftarrow \theta - \tilde\eta\,\frac{g}{\sqrt{s} + \epsilon}

    with :math:`t` the parameter's step count (from 1) and :math:`s` starting at
    ``initial_accumulator_value``. ``Adagrad`` (PyTorch's spelling) is the same class.

    Parameters
    ----------
    params
        Parameters to update, or None to let ``model.fit`` bind the model's.
    lr
        Learning rate :math:`\eta`.
    lr_decay
        :math:`\delta`: the learning rate decays as :math:`1/(1 + (t-1)\delta)`.
    weight_decay
        L2 coefficient :math:`\lambda` added to the gradient.
    initial_accumulator_value
        Starting value of the sum of squares :math:`s`.
    eps
        :math:`\epsilon`, added to the denominator.

    Notes
    -----
    State per parameter: ``step`` (a Python int) and ``sum``, an array of the parameter's
    dtype on its device.

    Examples
    --------
    >>> import numpy as np
    >>> import portnn as pn
    >>> w = pn.layers.Parameter(np.array([1.0, -2.0]))
    >>> opt = pn.optim.AdaGrad([w], lr=0.1)
    >>> w.grad = np.array([0.5, -0.5])
    >>> opt.step()
    >>> w.data.round(6)  # s = g**2, so the first step is lr * sign(g)
    array([ 0.9, -1.9])
    """

    def __init__(
        self,
        params: Iterable[Parameter] | None = None,
        *,
        lr: float = 0.01,
        lr_decay: float = 0.0,
        weight_decay: float = 0.0,
        initial_accumulator_value: float = 0.0,
        eps: float = 1e-10,
    ) -> None:
        name = type(self).__name__
        self.lr_decay = check_number(name, "lr_decay", lr_decay, lambda v: v >= 0, "a finite number >= 0")
        self.weight_decay = check_number(name, "weight_decay", weight_decay, lambda v: v >= 0, "a finite number >= 0")
        self.initial_accumulator_value = check_number(
            name, "initial_accumulator_value", initial_accumulator_value, lambda v: v >= 0, "a finite number >= 0"
        )
        self.eps = check_number(name, "eps", eps, lambda v: v >= 0, "a finite number >= 0")
        super().__init__(params, lr=lr)

    def hyperparameters(self) -> dict[str, Any]:
        return {
            "lr": self.lr,
            "lr_decay": self.lr_decay,
            "weight_decay": self.weight_decay,
            "initial_accumulator_value": self.initial_accumulator_value,
            "eps": self.eps,
        }

    def _update(self, p: Parameter, g: Any, state: dict[str, Any]) -> None:
        xp = array_namespace(p.data, g)
        if "step" not in state:
            state["step"] = 0
            state["sum"] = xp.full_like(p.data, self.initial_accumulator_value)
        step = state["step"] = state["step"] + 1
        if self.weight_decay:
            g = g + self.weight_decay * p.data
        clr = self.lr / (1 + (step - 1) * self.lr_decay)
        s = state["sum"] = scale_add(state["sum"], add=g * g)
        p.data = scale_add(p.data, add=-clr * (g / (xp.sqrt(s) + self.eps)))


#: PyTorch's spelling.
Adagrad = AdaGrad

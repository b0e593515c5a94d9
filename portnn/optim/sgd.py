"""Stochastic gradient descent with momentum, Nesterov momentum and weight decay."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .._checks import check_flag, check_number
from ..layers.base import Parameter
from .optimizer import Optimizer, scale_add

__all__ = ["SGD"]


class SGD(Optimizer):
    r"""SGD exactly as PyTorch's ``torch.optim.SGD`` (dampening 0).

    .. math::
        g \leftarrow g + \lambda\,\theta, \qquad
        b \leftarrow \mu\,b + g \;(b_1 = g), \qquad
        \theta \leftarrow \theta - \eta\,(g + \mu b \text{ if Nesterov else } b)

    ``g`` is the batch-averaged gradient, so ``lr`` does not depend on the batch size.

    Parameters
    ----------
    params
        Parameters to update, or None to let ``model.fit`` bind the model's.
    lr
        Learning rate :math:`\eta`.
    momentum
        :math:`\mu`; 0 for plain SGD.
    nesterov
        Nesterov momentum (needs ``momentum > 0``).
    weight_decay
        L2 coefficient :math:`\lambda` added to the gradient (biases included, as in PyTorch).

    Examples
    --------
    >>> import portnn as pn
    >>> model = pn.Sequential([pn.layers.Linear(4, 2)], seed=0)
    >>> opt = pn.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    """

    def __init__(
        self,
        params: Iterable[Parameter] | None = None,
        *,
        lr: float = 0.01,
        momentum: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
    ) -> None:
        self.momentum = check_number("SGD", "momentum", momentum, lambda v: 0 <= v < 1, "a number in [0, 1)")
        self.weight_decay = check_number("SGD", "weight_decay", weight_decay, lambda v: v >= 0, "a finite number >= 0")
        self.nesterov = check_flag("SGD", "nesterov", nesterov)
        if self.nesterov and self.momentum <= 0:
            raise ValueError("SGD: nesterov=True needs momentum > 0")
        super().__init__(params, lr=lr)

    def hyperparameters(self) -> dict[str, Any]:
        return {"lr": self.lr, "momentum": self.momentum, "nesterov": self.nesterov, "weight_decay": self.weight_decay}

    def _update(self, p: Parameter, g: Any, state: dict[str, Any]) -> None:
        if self.weight_decay:
            g = g + self.weight_decay * p.data
        if self.momentum:
            buf = state.get("momentum_buffer")
            # the first buffer is a copy: g may be the parameter's grad array
            buf = state["momentum_buffer"] = g * 1.0 if buf is None else scale_add(buf, scale=self.momentum, add=g)
            g = g + self.momentum * buf if self.nesterov else buf
        p.data = scale_add(p.data, add=-self.lr * g)

    def _kernel_name(self, state: dict[str, Any]) -> str | None:
        if not self.momentum:
            return "sgd"
        return "sgd_momentum" if "momentum_buffer" in state else None  # the first step copies the gradient: generic

    def _kernel_scalars(self, p: Parameter, state: dict[str, Any]) -> dict[str, float]:
        return {
            "weight_decay": self.weight_decay,
            "momentum": self.momentum,
            "nesterov": 1.0 if self.nesterov else 0.0,
            "neg_lr": -self.lr,
        }

"""Adam and AdamW (decoupled weight decay), with the AMSGrad variant."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from array_api_compat import array_namespace

from .._checks import ArgumentTypeError, as_real, check_flag, check_number
from ..layers.base import Parameter
from .optimizer import Optimizer, scale_add

__all__ = ["Adam", "AdamW"]


class Adam(Optimizer):
    r"""Adam exactly as PyTorch's ``torch.optim.Adam`` (``maximize=False``).

    .. math::
        g \leftarrow g + \lambda\theta, \quad
        m \leftarrow \beta_1 m + (1-\beta_1)\,g, \quad
        v \leftarrow \beta_2 v + (1-\beta_2)\,g^2, \quad
        \hat v \leftarrow \max(\hat v, v) \text{ if AMSGrad else } v,

        \theta \leftarrow \theta - \frac{\eta}{1-\beta_1^t}\,
        \frac{m}{\sqrt{\hat v}/\sqrt{1-\beta_2^t} + \epsilon}

    with :math:`t` the parameter's step count (from 1) and :math:`m, v, \hat v` starting at 0.

    Parameters
    ----------
    params
        Parameters to update, or None to let ``model.fit`` bind the model's.
    lr
        Learning rate :math:`\eta`.
    betas
        Decay rates :math:`(\beta_1, \beta_2)` of the first and second moment averages, in [0, 1).
    eps
        :math:`\epsilon`, added to the denominator.
    weight_decay
        L2 coefficient :math:`\lambda` added to the gradient (see :class:`AdamW` for decoupled decay).
    amsgrad
        Normalise by the running maximum of :math:`v` (AMSGrad).

    Notes
    -----
    State per parameter: ``step`` (a Python int, as PyTorch keeps it on the host),
    ``exp_avg``, ``exp_avg_sq`` and, with AMSGrad, ``max_exp_avg_sq``: arrays of the
    parameter's dtype on its device.

    Examples
    --------
    >>> import numpy as np
    >>> import portnn as pn
    >>> w = pn.layers.Parameter(np.array([1.0, -2.0]))
    >>> opt = pn.optim.Adam([w], lr=0.1)
    >>> w.grad = np.array([0.5, -0.5])
    >>> opt.step()
    >>> w.data.round(6)  # the first step moves each weight by lr against its gradient's sign
    array([ 0.9, -1.9])
    """

    #: AdamW sets this: decay the weights directly instead of adding to the gradient.
    _decoupled = False

    def __init__(
        self,
        params: Iterable[Parameter] | None = None,
        *,
        lr: float = 0.001,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
    ) -> None:
        name = type(self).__name__
        self.betas = _check_betas(name, betas)
        self.eps = check_number(name, "eps", eps, lambda v: v >= 0, "a finite number >= 0")
        self.weight_decay = check_number(name, "weight_decay", weight_decay, lambda v: v >= 0, "a finite number >= 0")
        self.amsgrad = check_flag(name, "amsgrad", amsgrad)
        super().__init__(params, lr=lr)

    def hyperparameters(self) -> dict[str, Any]:
        return {
            "lr": self.lr,
            "betas": tuple(self.betas),
            "eps": self.eps,
            "weight_decay": self.weight_decay,
            "amsgrad": self.amsgrad,
        }

    def _update(self, p: Parameter, g: Any, state: dict[str, Any]) -> None:
        xp = array_namespace(p.data, g)
        beta1, beta2 = self.betas
        step = self._advance(p, state)
        if self.weight_decay and self._decoupled:
            p.data = scale_add(p.data, scale=1 - self.lr * self.weight_decay)
        elif self.weight_decay:
            g = g + self.weight_decay * p.data

        m = state["exp_avg"] = scale_add(state["exp_avg"], add=(1 - beta1) * (g - state["exp_avg"]))
        v = state["exp_avg_sq"] = scale_add(state["exp_avg_sq"], scale=beta2, add=(1 - beta2) * (g * g))
        if self.amsgrad:
            v_max = state.get("max_exp_avg_sq")
            v = state["max_exp_avg_sq"] = v * 1.0 if v_max is None else xp.maximum(v_max, v)

        step_size = self.lr / (1 - beta1**step)
        denom = xp.sqrt(v) / (1 - beta2**step) ** 0.5 + self.eps
        p.data = scale_add(p.data, add=-step_size * (m / denom))

    def _kernel_name(self, state: dict[str, Any]) -> str | None:
        return None if self.amsgrad else "adam"

    @staticmethod
    def _advance(p: Parameter, state: dict[str, Any]) -> int:
        """The step about to be taken (1, 2, ...), the moment buffers made at the first: for the generic and the fused update."""
        if "step" not in state:
            xp = array_namespace(p.data)
            state["step"] = 0
            state["exp_avg"] = xp.zeros_like(p.data)
            state["exp_avg_sq"] = xp.zeros_like(p.data)
        state["step"] += 1
        return state["step"]

    def _kernel_scalars(self, p: Parameter, state: dict[str, Any]) -> dict[str, float]:
        beta1, beta2 = self.betas
        step = self._advance(p, state)
        decoupled = bool(self.weight_decay and self._decoupled)
        return {
            "decay": 1 - self.lr * self.weight_decay if decoupled else 1.0,
            "weight_decay": 0.0 if self._decoupled else self.weight_decay,
            "one_minus_beta1": 1 - beta1,
            "beta2": beta2,
            "one_minus_beta2": 1 - beta2,
            "neg_step_size": -(self.lr / (1 - beta1**step)),
            "bias_correction2_sqrt": (1 - beta2**step) ** 0.5,
            "eps": self.eps,
        }


def _check_betas(owner: str, betas: Any) -> tuple[float, float]:
    """``betas`` as a pair of floats; a TypeError unless it is a pair of numbers, a ValueError unless both lie in [0, 1)."""
    message = f"{owner}: betas must be two numbers in [0, 1); got {betas!r}"
    try:
        pair = [as_real(b) for b in betas] if not isinstance(betas, (str, bytes)) else []
    except TypeError:
        pair = []
    if len(pair) != 2 or None in pair:
        raise ArgumentTypeError(message)
    if not all(0 <= b < 1 for b in pair):  # NaN fails too
        raise ValueError(message)
    return pair[0], pair[1]


class AdamW(Adam):
    r"""AdamW exactly as PyTorch's ``torch.optim.AdamW``: Adam with decoupled weight decay.

    Before the Adam step (without the L2 term in the gradient) the weights shrink:

    .. math::
        \theta \leftarrow \theta\,(1 - \eta\lambda)

    Parameters
    ----------
    params
        Parameters to update, or None to let ``model.fit`` bind the model's.
    lr
        Learning rate :math:`\eta`.
    betas
        Decay rates :math:`(\beta_1, \beta_2)` of the moment averages, in [0, 1).
    eps
        :math:`\epsilon`, added to the denominator.
    weight_decay
        Decoupled decay coefficient :math:`\lambda` (0.01 by default, as in PyTorch).
    amsgrad
        Normalise by the running maximum of the second moment (AMSGrad).

    Examples
    --------
    >>> import numpy as np
    >>> import portnn as pn
    >>> w = pn.layers.Parameter(np.array([1.0, -2.0]))
    >>> opt = pn.optim.AdamW([w], lr=0.1, weight_decay=0.5)
    >>> w.grad = np.array([0.5, -0.5])
    >>> opt.step()
    >>> w.data.round(6)  # shrunk by 1 - lr * weight_decay = 0.95, then the Adam step
    array([ 0.85, -1.8 ])
    """

    _decoupled = True

    def __init__(
        self,
        params: Iterable[Parameter] | None = None,
        *,
        lr: float = 0.001,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.01,
        amsgrad: bool = False,
    ) -> None:
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad)

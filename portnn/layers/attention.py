"""Attention layers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import backends
from .. import init as initializers
from .._array import dtype_name, resolve_dtype
from .._checks import ArgumentTypeError, as_real, check_flag, check_int
from ..functional.attention import multi_head_attention
from ..init import Initializer, get_initializer
from .base import InputSpec, RandomLayer, Shape, _init_from_name, _init_name

__all__ = ["MultiHeadAttention"]


class MultiHeadAttention(RandomLayer):
    """Multi-head self-attention on batch-first sequences (batch, time, embed_dim), as PyTorch's.

    ``MultiHeadAttention(E, H)`` computes what ``torch.nn.MultiheadAttention(E, H,
    batch_first=True)`` called as ``mha(x, x, x, need_weights=False)`` does, and holds its
    parameters under the same ``state_dict`` names: ``in_proj_weight`` (3E, E) and
    ``in_proj_bias`` (3E,), the fused query, key and value projections, and
    ``out_proj.weight`` (E, E) and ``out_proj.bias`` (E,). The math is
    :func:`portnn.functional.attention.multi_head_attention`. Sequences may have any length;
    the output has the input's shape.

    Parameters
    ----------
    embed_dim
        Size E of each position's vector, in and out.
    num_heads
        Number of heads H; each attends in ``E / H`` dimensions, so H must divide E.
    dropout
        Probability of zeroing each attention weight in training (inverted dropout on the
        softmax's output, as PyTorch's); 0 (the default) or evaluation: none.
    bias
        Whether the projections learn biases (initialised to zero).
    causal
        Whether position ``t`` attends only to positions ``<= t``: PyTorch's
        ``attn_mask=nn.Transformer.generate_square_subsequent_mask(T)``.
    init
        ``"torch"`` (the default) draws as PyTorch does: Glorot (Xavier) uniform for
        ``in_proj_weight``, PyTorch's ``nn.Linear`` default for ``out_proj.weight``. Another
        name from :data:`portnn.init.INITIALIZERS`, or a callable ``f(rng, shape, fan_in,
        fan_out)``, draws both weights (fans ``(E, 3E)`` and ``(E, E)``).
    dtype
        ``"float32"`` (default) or ``"float64"``.
    seed
        Seed of the initial weights and of the dropout generator (None: fresh entropy).
        :class:`portnn.Sequential` with ``seed=`` re-draws both from the model's seed.

    Notes
    -----
    Dropout masks are drawn as :class:`Dropout`'s are: by a generator the backend's adapter
    makes on the input's device, seeded by ``seed``; one seed gives the same masks on one
    backend.

    Examples
    --------
    >>> import numpy as np
    >>> import portnn as pn
    >>> mha = pn.layers.MultiHeadAttention(8, 2, causal=True, seed=0)
    >>> mha
    MultiHeadAttention(8, 2, causal=True)
    >>> [name for name, _ in mha.named_parameters()]
    ['in_proj_weight', 'in_proj_bias', 'out_proj.weight', 'out_proj.bias']
    >>> x = np.ones((3, 5, 8), dtype=np.float32)
    >>> y, backward = mha.forward(x)
    >>> y.shape, backward(np.ones_like(y)).shape, mha.in_proj_weight.grad.shape
    ((3, 5, 8), (3, 5, 8), (24, 8))
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        *,
        dropout: float = 0.0,
        bias: bool = True,
        causal: bool = False,
        init: str | Initializer = "torch",
        dtype: Any = "float32",
        seed: int | None = None,
    ) -> None:
        where = "MultiHeadAttention"
        self.embed_dim = check_int(where, "embed_dim", embed_dim, expected="a positive int")
        self.num_heads = check_int(where, "num_heads", num_heads, expected="a positive int")
        if self.embed_dim % self.num_heads:
            divisors = [h for h in range(1, self.embed_dim + 1) if self.embed_dim % h == 0]
            shown = ", ".join(map(str, divisors[:12])) + (", …" if len(divisors) > 12 else "")
            raise ValueError(
                f"MultiHeadAttention(embed_dim={self.embed_dim}, num_heads={self.num_heads}): embed_dim must be divisible "
                f"by num_heads (each head takes embed_dim / num_heads dimensions); {self.embed_dim} / {self.num_heads} "
                f"is not an integer: choose num_heads among {shown}, or another embed_dim"
            )
        rule = f"{where}: dropout is the probability of zeroing an attention weight, so 0 <= dropout <= 1"
        rate = as_real(dropout)
        if rate is None:
            raise ArgumentTypeError(f"{rule}; got dropout={dropout!r} (a {type(dropout).__name__})")
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"{rule}; got dropout={dropout!r}")
        self.dropout = float(rate)
        self.use_bias = check_flag(where, "bias", bias)
        self.causal = check_flag(where, "causal", causal)
        self.init = get_initializer(init, where=f"MultiHeadAttention({self.embed_dim}, {self.num_heads}): ")
        super().__init__(seed=seed)
        self.input_spec = InputSpec(("batch", "time", self.embed_dim))
        backend = self.new_parameter_home(dtype)
        self.in_proj_weight = self.add_parameter("in_proj_weight", None, regularize=True)
        self.in_proj_bias = self.add_parameter("in_proj_bias", None) if self.use_bias else None
        self.out_proj_weight = self.add_parameter("out_proj.weight", None, regularize=True)
        self.out_proj_bias = self.add_parameter("out_proj.bias", None) if self.use_bias else None
        name = dtype_name(resolve_dtype(backend.xp, dtype))
        self._materialize(backends.host_rng(self.seed), backend.adapter, backend.device, name)

    def _materialize(self, rng: Any, adapter: Any, device: Any, dtype: str) -> None:
        """Draw the weights from the host generator ``rng``, zero the biases, and put them on ``device`` in ``dtype``."""
        e = self.embed_dim
        if self.init is initializers.torch_default:  # torch's _reset_parameters: Xavier in, nn.Linear's default out
            w_in = initializers.glorot_uniform(rng, (3 * e, e), e, 3 * e)
        else:
            w_in = self.init(rng, (3 * e, e), e, 3 * e)
        w_out = self.init(rng, (e, e), e, e)
        for p, host in ((self.in_proj_weight, w_in), (self.out_proj_weight, w_out)):
            p.data, p.grad = adapter.from_numpy(host.astype(dtype), device), None
        for p, size in ((self.in_proj_bias, 3 * e), (self.out_proj_bias, e)):
            if p is not None:
                p.data, p.grad = adapter.from_numpy(initializers.zeros(rng, (size,), 0, 0).astype(dtype), device), None

    def reset_parameters(self, rng: Any = None) -> None:
        """Draw fresh weights from the host generator ``rng`` (None: fresh entropy), then re-seed the dropout generator."""
        rng = backends.host_rng() if rng is None else rng
        w = self.in_proj_weight.data
        self._materialize(rng, backends.adapter_for(w), self.in_proj_weight.device, dtype_name(w.dtype))
        super().reset_parameters(rng)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return tuple(input_shape)

    def input_hint(self, shape: Shape) -> str:
        if len(shape) == 2 and shape[-1] == self.embed_dim:
            return " (one sequence? use x.reshape(1, time, embed_dim))"
        if len(shape) == 3 and shape[1] == self.embed_dim:
            return " (features before time? the input is (batch, time, embed_dim): use x.transpose(0, 2, 1))"
        if len(shape) == 3 and shape[-1] is not None:
            return f" (each position has {shape[-1]} features, the last axis: build the layer with embed_dim={shape[-1]})"
        return ""

    def call(self, x: Any, *, training: bool = False, input_grad: bool = True) -> tuple[Any, Callable[[Any], Any]]:
        p = self.dropout if training else 0.0
        u = None
        if 0.0 < p < 1.0:
            batch, time = int(x.shape[0]), int(x.shape[1])
            u = self.uniform(x, (batch, self.num_heads, time, time))
        params = (self.in_proj_weight, self.in_proj_bias, self.out_proj_weight, self.out_proj_bias)
        y, backward_fn = multi_head_attention(
            x,
            *(None if q is None else q.data for q in params),
            num_heads=self.num_heads,
            causal=self.causal,
            dropout_p=p,
            u=u,
            input_grad=input_grad,
            param_grad=self.trainable,
        )

        def backward(dy: Any) -> Any:
            dx, *grads = backward_fn(dy)
            for param, g in zip(params, grads):
                if param is not None and g is not None:
                    param.accumulate(g)
            return dx

        return y, backward

    def get_config(self) -> dict[str, Any]:
        """The constructor's arguments: ``init`` by name, ``dtype`` the weights', ``seed`` the dropout generator's."""
        where = f"MultiHeadAttention.get_config ({self!r}, name={self.name!r})"
        return self.config_from_signature(
            bias=self.use_bias, init=_init_name(self.init, where), dtype=dtype_name(self.in_proj_weight.dtype)
        )

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> MultiHeadAttention:
        """:meth:`Layer.from_config`, reading ``init`` back from its name."""
        if isinstance(config, dict) and isinstance(config.get("init"), str):
            config = {**config, "init": _init_from_name(config["init"], f"{cls.__name__}.from_config")}
        return super().from_config(config)

    def extra_repr(self) -> str:
        extra = f", dropout={self.dropout}" if self.dropout else ""
        extra += "" if self.use_bias else ", bias=False"
        extra += ", causal=True" if self.causal else ""
        return f"{self.embed_dim}, {self.num_heads}{extra}"

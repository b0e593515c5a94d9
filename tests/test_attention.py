"""MultiHeadAttention: gradients, every backend, PyTorch's nn.MultiheadAttention as the oracle, dropout, saving.

``check_layer`` runs float64 central differences for the input and every parameter, the
PyTorch oracle (``nn.MultiheadAttention(E, H, batch_first=True)`` called on ``(x, x, x)`` with
the causal mask where asked, its weights loaded by their ``state_dict`` names) and parity on
NumPy, array-api-strict (``device1``) and PyTorch in float32 and float64. With dropout, its
training mode draws fixed masks from the host, so the central differences check that the
gradient flows through the kept attention weights only.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import portnn as pn
from portnn.functional.attention import causal_mask, multi_head_attention
from portnn.layers import MultiHeadAttention, ShapeError
from portnn.testing import backends_under_test, check_layer

try:
    import torch
except ImportError:  # the oracle is left out; the other checks run
    torch = None


def twin(embed_dim: int, num_heads: int, *, bias: bool = True, causal: bool = False) -> Any:
    """PyTorch's layer, called as self-attention with the causal mask where asked; its state_dict names are ours."""
    if torch is None:
        return None

    class SelfAttention(torch.nn.MultiheadAttention):
        def forward(self, x: Any) -> Any:  # type: ignore[override]
            mask = None
            if causal:
                mask = torch.nn.Transformer.generate_square_subsequent_mask(x.shape[1], dtype=x.dtype)
            return super().forward(x, x, x, need_weights=False, attn_mask=mask)[0]

    return SelfAttention(embed_dim, num_heads, bias=bias, batch_first=True)


def numpy_layer(*args: Any, **kw: Any) -> MultiHeadAttention:
    with pn.use_backend("numpy"):
        return MultiHeadAttention(*args, **kw)


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_gradients_backends_and_torch_oracle(bias: bool, causal: bool) -> None:
    layer = numpy_layer(8, 2, bias=bias, causal=causal, seed=0)
    report = check_layer(layer, (2, 5, 8), oracle=twin(8, 2, bias=bias, causal=causal))
    checked = [what for what, _ in report.checked]
    names = ["in_proj_weight", "out_proj.weight"] + (["in_proj_bias", "out_proj.bias"] if bias else [])
    for name in names:
        assert any(f"training=False: parameter '{name}'" in w and "central differences" in w for w in checked), name
    if torch is not None:
        assert "PyTorch oracle, training=False: output and gradients" in checked
    for backend, _ in backends_under_test()[0]:
        for dtype in ("float32", "float64"):
            assert any(w.startswith(f"{backend} {dtype}, training=False") for w in checked), (backend, dtype, checked)
    assert all(ratio <= 1 for _, ratio in report.checked)


def test_dropout_gradients_flow_through_kept_weights_only() -> None:
    """Training with fixed draws: central differences and every backend agree with the backward, which uses the mask."""
    layer = numpy_layer(6, 3, dropout=0.4, causal=True, seed=1)
    report = check_layer(layer, (2, 4, 6), training=(True,))
    checked = [what for what, _ in report.checked]
    assert any("central differences, training=True: the input" in w for w in checked)
    assert all(ratio <= 1 for _, ratio in report.checked)


@pytest.mark.skipif(torch is None, reason="PyTorch is the oracle")
@pytest.mark.parametrize("time", [1, 2, 17])
@pytest.mark.parametrize("heads", [1, 4])
def test_equals_torch_for_any_length_and_head_count(time: int, heads: int) -> None:
    """Forward and every gradient, float64, one to many positions, one head or several."""
    layer = numpy_layer(8, heads, causal=time > 1, dtype="float64", seed=2)
    module = twin(8, heads, causal=time > 1).double()
    module.load_state_dict({n: torch.from_numpy(p.data.copy()) for n, p in layer.named_parameters()})
    rng = np.random.default_rng(3)
    x, dy = rng.normal(size=(3, time, 8)), rng.normal(size=(3, time, 8))
    y, backward = layer.forward(x)
    dx = backward(dy)
    xt = torch.from_numpy(x).requires_grad_()
    yt = module(xt)
    (yt * torch.from_numpy(dy)).sum().backward()
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-10, atol=1e-12)
    theirs = dict(module.named_parameters())
    for name, p in layer.named_parameters():
        np.testing.assert_allclose(p.grad, theirs[name].grad.numpy(), rtol=1e-10, atol=1e-12, err_msg=name)


@pytest.mark.skipif(torch is None, reason="PyTorch is the oracle")
def test_causal_equals_torch_is_causal_and_attends_only_backwards() -> None:
    layer = numpy_layer(4, 2, causal=True, dtype="float64", seed=4)
    x = np.random.default_rng(5).normal(size=(2, 6, 4))
    module = torch.nn.MultiheadAttention(4, 2, batch_first=True).double()
    module.load_state_dict({n: torch.from_numpy(p.data.copy()) for n, p in layer.named_parameters()})
    xt = torch.from_numpy(x)
    mask = torch.nn.Transformer.generate_square_subsequent_mask(6, dtype=torch.float64)
    with torch.no_grad():
        theirs = module(xt, xt, xt, need_weights=False, attn_mask=mask, is_causal=True)[0].numpy()
    np.testing.assert_allclose(layer(x), theirs, rtol=1e-12, atol=1e-13)
    # a change at position 3 leaves positions 0..2 exactly as they were
    changed = x.copy()
    changed[:, 3:] += 10.0
    assert np.array_equal(layer(changed)[:, :3], layer(x)[:, :3])
    assert not np.allclose(layer(changed)[:, 3:], layer(x)[:, 3:])


def test_masked_scores_give_no_nan_even_for_extreme_inputs(case: Any) -> None:
    """Scores of ±1e4 in float32: the max-subtracted softmax and the -inf mask give finite outputs and gradients."""
    layer = MultiHeadAttention(4, 1, causal=True, seed=6)
    x = case.asarray(np.random.default_rng(7).normal(size=(2, 5, 4)) * 300.0, "float32")
    y, backward = layer.forward(x, training=True)
    dx = backward(case.xp.ones_like(y))
    for a in (y, dx, *(p.grad for p in layer.parameters())):
        assert bool(case.xp.all(case.xp.isfinite(a)))


def test_causal_mask_is_torch_s_square_subsequent_mask(case: Any) -> None:
    mask = causal_mask(case.xp, 4, dtype=case.xp.float32, device=case.device)
    expected = np.triu(np.full((4, 4), -np.inf, dtype=np.float32), k=1)
    assert np.array_equal(pn.to_numpy(mask), expected)


# -- dropout ----------------------------------------------------------------------------------------------
def test_dropout_is_exact_at_evaluation_and_with_rate_zero(case: Any) -> None:
    x = case.asarray(np.random.default_rng(8).normal(size=(2, 5, 8)), "float32")
    with_dropout = MultiHeadAttention(8, 2, dropout=0.5, seed=9)
    without = MultiHeadAttention(8, 2, seed=9)
    reference = pn.to_numpy(without(x))
    assert np.array_equal(pn.to_numpy(with_dropout(x)), reference)  # evaluation
    assert np.array_equal(pn.to_numpy(without.forward(x, training=True)[0]), reference)  # rate 0


def test_dropout_is_determined_by_the_seed(case: Any) -> None:
    x = case.asarray(np.random.default_rng(10).normal(size=(2, 5, 8)), "float32")

    def draws(seed: int) -> list[Any]:
        layer = MultiHeadAttention(8, 2, dropout=0.5, seed=seed)
        return [pn.to_numpy(layer.forward(x, training=True)[0]) for _ in range(2)]

    first, again, other = draws(11), draws(11), draws(12)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not np.array_equal(first[0], first[1])  # the generator moves on
    assert not np.array_equal(first[0], other[0])


def test_dropout_keeps_the_expected_output() -> None:
    """Inverted dropout: over many draws the training output averages to the evaluation output (within 5 standard errors)."""
    layer = numpy_layer(8, 2, dropout=0.3, dtype="float64", seed=13)
    x = np.random.default_rng(14).normal(size=(2, 6, 8))
    runs = np.stack([layer.forward(x, training=True)[0] for _ in range(2000)])
    error = np.abs(runs.mean(axis=0) - layer(x))
    assert np.all(error <= 5 * runs.std(axis=0) / math.sqrt(len(runs)) + 1e-12)
    assert runs.std(axis=0).min() > 0  # the draws do vary


def test_dropping_every_weight_leaves_the_bias_and_no_gradient_through_attention() -> None:
    """dropout=1: every attention weight is dropped, so y is out_proj.bias and nothing flows back to x or in_proj."""
    layer = numpy_layer(4, 2, dropout=1.0, dtype="float64", seed=15)
    layer.out_proj_bias.data[:] = [1.0, -2.0, 3.0, 0.5]
    y, backward = layer.forward(np.ones((2, 3, 4)), training=True)
    assert np.array_equal(y, np.broadcast_to(layer.out_proj_bias.data, (2, 3, 4)))
    dx = backward(np.ones((2, 3, 4)))
    assert not dx.any() and not layer.in_proj_weight.grad.any() and not layer.in_proj_bias.grad.any()
    assert np.array_equal(layer.out_proj_bias.grad, np.full(4, 6.0))


def test_dropout_draws_one_mask_per_attention_weight() -> None:
    """The functional form with hand-made draws equals the layer with the same draws (mask shape: batch, heads, T, T)."""
    layer = numpy_layer(4, 2, dropout=0.5, dtype="float64", seed=16)
    x = np.random.default_rng(17).normal(size=(3, 5, 4))
    u = np.random.default_rng(18).random((3, 2, 5, 5))
    layer.uniform = lambda like, shape: u if tuple(shape) == u.shape else pytest.fail(f"drew {shape}")
    got = layer.forward(x, training=True)[0]
    weights = [p.data for p in layer.parameters()]
    expected = multi_head_attention(x, *weights, num_heads=2, dropout_p=0.5, u=u)[0]
    assert np.array_equal(got, expected)


# -- parameters, freezing, initialisation -----------------------------------------------------------------
def test_parameter_names_shapes_and_torch_initialisation() -> None:
    layer = numpy_layer(64, 4, seed=19)
    shapes = {n: tuple(p.shape) for n, p in layer.named_parameters()}
    assert shapes == {"in_proj_weight": (192, 64), "in_proj_bias": (192,), "out_proj.weight": (64, 64), "out_proj.bias": (64,)}
    w_in, w_out = layer.in_proj_weight.data, layer.out_proj_weight.data
    xavier, linear = math.sqrt(6 / (64 + 192)), 1 / math.sqrt(64)
    assert np.abs(w_in).max() <= xavier and np.abs(w_in).max() > 0.9 * xavier
    assert np.abs(w_out).max() <= linear and np.abs(w_out).max() > 0.9 * linear
    assert not layer.in_proj_bias.data.any() and not layer.out_proj_bias.data.any()
    assert [p.regularize for p in layer.parameters()] == [True, False, True, False]
    assert w_in.dtype == np.float32
    if torch is not None:  # torch's own layer: the same names and shapes
        theirs = {n: tuple(t.shape) for n, t in torch.nn.MultiheadAttention(64, 4).state_dict().items()}
        assert theirs == shapes
    other = numpy_layer(8, 2, init="he_normal", bias=False, seed=19)
    assert [n for n, _ in other.named_parameters()] == ["in_proj_weight", "out_proj.weight"]


def test_a_model_seed_redraws_weights_and_dropout_seed() -> None:
    def build() -> pn.Sequential:
        with pn.use_backend("numpy"):
            return pn.Sequential([MultiHeadAttention(8, 2, dropout=0.2)], seed=20)

    a, b = build(), build()
    assert a.layers[0].seed == b.layers[0].seed
    for (_, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        assert np.array_equal(p.data, q.data)


def test_a_frozen_layer_skips_its_parameter_gradients(case: Any) -> None:
    x = case.asarray(np.random.default_rng(21).normal(size=(2, 4, 8)), "float32")
    live, frozen = MultiHeadAttention(8, 2, seed=22), MultiHeadAttention(8, 2, seed=22)
    frozen.trainable = False
    dy = case.xp.ones_like(x)
    dx_live = live.forward(x)[1](dy)
    dx_frozen = frozen.forward(x)[1](dy)
    case.assert_close(dx_frozen, pn.to_numpy(dx_live), dtype="float32")
    assert all(p.grad is None for p in frozen.parameters())
    assert frozen.forward(x, input_grad=False)[1](dy) is None
    first = MultiHeadAttention(8, 2, seed=22)
    assert first.forward(x, input_grad=False)[1](dy) is None  # a first layer: no input gradient, parameter gradients yes
    for p, q in zip(first.parameters(), live.parameters()):
        case.assert_close(p.grad, pn.to_numpy(q.grad), dtype="float32")


# -- errors -----------------------------------------------------------------------------------------------
def test_embed_dim_must_be_divisible_by_num_heads() -> None:
    with pytest.raises(ValueError, match=r"MultiHeadAttention\(embed_dim=10, num_heads=3\).*divisible.*1, 2, 5, 10"):
        MultiHeadAttention(10, 3)


@pytest.mark.parametrize(
    ("shape", "words"),
    [
        (
            (2, 5, 6),
            r"got input of shape \(2, 5, 6\): expected \(batch, time, 8\) \(each position has 6 features, the last "
            r"axis: build the layer with embed_dim=6\)",
        ),
        (
            (2, 8, 5),
            r"got input of shape \(2, 8, 5\): expected \(batch, time, 8\) \(features before time\? .* x.transpose\(0, 2, 1\)\)",
        ),
        ((5, 8), r"got input of shape \(5, 8\): expected \(batch, time, 8\) \(one sequence\? use x.reshape\(1, time"),
        ((2, 3, 5, 8), r"got input of shape \(2, 3, 5, 8\): expected \(batch, time, 8\)"),
    ],
)
def test_wrong_shapes_raise_shape_error(shape: tuple[int, ...], words: str) -> None:
    layer = numpy_layer(8, 2)
    with pytest.raises(ShapeError, match=r"MultiHeadAttention\(8, 2\) " + words):
        layer(np.ones(shape, dtype=np.float32))
    with pytest.raises(ShapeError, match=r"MultiHeadAttention\(8, 2\) expects input of shape \(batch, time, 8\)"):
        layer.output_shape((None, *shape[1:]))
    assert layer.output_shape((None, 7, 8)) == (None, 7, 8)


# -- saving -----------------------------------------------------------------------------------------------
def test_config_round_trip_and_save_load(case: Any, tmp_path: Path) -> None:
    layer = MultiHeadAttention(8, 2, dropout=0.25, bias=False, causal=True, init="glorot_normal", dtype="float64", seed=23)
    config = layer.get_config()
    assert config == {
        "embed_dim": 8, "num_heads": 2, "dropout": 0.25, "bias": False, "causal": True, "init": "glorot_normal",
        "dtype": "float64", "seed": 23, "name": None,
    }  # fmt: skip
    assert MultiHeadAttention.from_config(config).get_config() == config
    assert repr(layer) == "MultiHeadAttention(8, 2, dropout=0.25, bias=False, causal=True)"
    model = pn.Sequential([MultiHeadAttention(8, 2, causal=True, dtype="float64")], seed=24, input_shape=(5, 8))
    path = tmp_path / "attention.portnn"
    model.save(path)
    loaded = pn.load(path)
    x = case.asarray(np.random.default_rng(25).normal(size=(3, 5, 8)), "float64")
    case.assert_close(loaded.predict(x), pn.to_numpy(model.predict(x)), dtype="float64")
    assert loaded.layers[0].get_config() == model.layers[0].get_config()

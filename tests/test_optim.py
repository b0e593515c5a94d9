"""Optimizers and gradient clipping: torch.optim's trajectories on every backend, state, errors."""

from __future__ import annotations

import functools
import math
import re
from typing import Any

import numpy as np
import pytest
from array_api_compat import device

import portnn as pn
from portnn.layers import Linear, Parameter, ReLU

try:
    import torch
except ImportError:
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch not installed: the oracle needs torch (torch.optim)")

SHAPES = [(3, 4), (4,)]
STEPS = 20

#: (optimizer name in both pn.optim and torch.optim, keyword arguments): every state variant of each.
CONFIGS = [
    ("SGD", {"lr": 0.1}),
    ("SGD", {"lr": 0.1, "momentum": 0.9}),
    ("SGD", {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01}),
    ("Adagrad", {}),
    ("Adagrad", {"lr": 0.1, "lr_decay": 0.05, "weight_decay": 0.01, "initial_accumulator_value": 0.1, "eps": 1e-6}),
    ("RMSprop", {}),
    ("RMSprop", {"momentum": 0.9, "weight_decay": 0.01}),
    ("RMSprop", {"centered": True}),
    ("RMSprop", {"lr": 0.001, "alpha": 0.9, "eps": 1e-6, "momentum": 0.5, "centered": True, "weight_decay": 0.1}),
    ("Adam", {}),
    ("Adam", {"lr": 0.01, "amsgrad": True}),
    ("Adam", {"lr": 0.01, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.1}),
    ("AdamW", {}),
    ("AdamW", {"lr": 0.01, "betas": (0.5, 0.9), "weight_decay": 0.1, "amsgrad": True}),
]
IDS = [f"{name}-" + ("-".join(f"{k}={v}" for k, v in kw.items()) or "defaults") for name, kw in CONFIGS]

#: The configuration of each optimizer with the most state (for the float32, rebinding and state_dict tests).
FULL = {
    "SGD": CONFIGS[2],
    "Adagrad": CONFIGS[4],
    "RMSprop": CONFIGS[8],
    "Adam": ("Adam", {"lr": 0.01, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.1, "amsgrad": True}),
    "AdamW": CONFIGS[13],
}


def problem(seed: int = 0) -> tuple[list[np.ndarray], list[list[np.ndarray]]]:
    """Initial parameters and STEPS gradients per parameter, of varying scale (so AMSGrad's max matters)."""
    r = np.random.default_rng(seed)
    init = [r.normal(size=s) for s in SHAPES]
    grads = [[r.normal(size=s) * r.uniform(0.1, 2.0) for s in SHAPES] for _ in range(STEPS)]
    return init, grads


def torch_trajectory(config: tuple[str, dict[str, Any]]) -> list[list[np.ndarray]]:
    """torch.optim's float64 parameters after each step, fed the gradients of :func:`problem`."""
    return _torch_trajectory(config[0], tuple(config[1].items()))


@functools.cache
def _torch_trajectory(name: str, items: tuple[tuple[str, Any], ...]) -> list[list[np.ndarray]]:
    kwargs = dict(items)
    init, grads = problem()
    tparams = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in init]
    topt = getattr(torch.optim, name)(tparams, **kwargs)
    out = []
    for g_t in grads:
        for tp, g in zip(tparams, g_t):
            tp.grad = torch.from_numpy(g.copy())
        topt.step()
        out.append([tp.detach().numpy().copy() for tp in tparams])
    return out


def run(case: Any, config: tuple[str, dict[str, Any]], dtype: str, steps: int = STEPS) -> tuple[list[Parameter], Any]:
    """Follow torch's trajectory with pn.optim on ``case``'s backend, comparing after every step."""
    name, kwargs = config
    init, grads = problem()
    params = [Parameter(case.asarray(a, dtype), f"p{i}") for i, a in enumerate(init)]
    opt = getattr(pn.optim, name)(params, **kwargs)
    expected = torch_trajectory(config)
    for t in range(steps):
        for p, g in zip(params, grads[t]):
            p.grad = case.asarray(g, dtype)
        opt.step()
        for i, p in enumerate(params):
            case.assert_close(p.data, expected[t][i], dtype=dtype, err_msg=f"{name}{kwargs}: parameter {i} after step {t + 1}")
            # the optimizer must not write into the gradient it was given
            np.testing.assert_array_equal(pn.to_numpy(p.grad), grads[t][i].astype(dtype))
    return params, opt


def assert_state_on(case: Any, opt: Any, dtype: str) -> None:
    """Every state array is the backend's, on the parameter's device, of the parameter's dtype and shape."""
    state = opt.state_dict()["state"]
    assert sorted(state) == list(range(len(opt.params)))
    for i, entries in state.items():
        for key, value in entries.items():
            where = f"{type(opt).__name__} state[{i}][{key!r}]"
            if key == "step":
                assert type(value) is int and value == opt.step_count, where
                continue
            assert case.backend.adapter.owns(value), f"{where} is a {type(value)}"
            assert device(value) == case.device, f"{where} on {device(value)}, expected {case.device}"
            assert pn._array.dtype_name(value.dtype) == dtype, f"{where} has dtype {value.dtype}, expected {dtype}"
            assert tuple(value.shape) == opt.params[i].shape, where


# -- torch parity ---------------------------------------------------------------------------


@needs_torch
@pytest.mark.parametrize("index", range(len(CONFIGS)), ids=IDS)
def test_follows_torch_optim_float64(case: Any, index: int) -> None:
    if not case.supports("float64"):
        pytest.skip(f"{case.name} has no float64")
    run(case, CONFIGS[index], "float64")


@needs_torch
@pytest.mark.parametrize("name", list(FULL))
def test_float32_state_stays_float32_on_the_parameters_device(case: Any, name: str) -> None:
    params, opt = run(case, FULL[name], "float32", steps=5)
    for p in params:
        assert pn._array.dtype_name(p.dtype) == "float32" and p.device == case.device
    assert_state_on(case, opt, "float32")


@needs_torch
@pytest.mark.parametrize("name", list(FULL))
def test_rebinding_path_when_the_backend_has_no_inplace_writes(case: Any, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """Backends whose adapter says no in-place writes get new arrays, and the same trajectory."""
    if not case.supports("float64"):
        pytest.skip(f"{case.name} has no float64")
    monkeypatch.setattr(case.backend.adapter, "inplace", False)
    init, grads = problem()
    params = [Parameter(case.asarray(a, "float64")) for a in init]
    before = [p.data for p in params]
    opt_name, kwargs = FULL[name]
    opt = getattr(pn.optim, opt_name)(params, **kwargs)
    for g_t in grads:
        for p, g in zip(params, g_t):
            p.grad = case.asarray(g, "float64")
        opt.step()
    for p, start, a, expected in zip(params, before, init, torch_trajectory(FULL[name])[-1]):
        assert p.data is not start
        np.testing.assert_array_equal(pn.to_numpy(start), a)  # the old arrays were left alone
        case.assert_close(p.data, expected, dtype="float64")
    assert_state_on(case, opt, "float64")


@pytest.mark.parametrize("name", list(FULL))
def test_inplace_backends_keep_the_parameter_and_state_arrays(case: Any, name: str) -> None:
    """Where the adapter allows in-place writes, a step writes into the arrays it has: no new parameter or state array."""
    assert case.backend.adapter.inplace
    init, grads = problem()
    params = [Parameter(case.asarray(a, "float32")) for a in init]
    opt_name, kwargs = FULL[name]
    opt = getattr(pn.optim, opt_name)(params, **kwargs)
    arrays: list[Any] = []
    for t in range(3):
        for p, g in zip(params, grads[t]):
            p.grad = case.asarray(g, "float32")
        opt.step()
        # AMSGrad's running maximum is a fresh xp.maximum each step, as in the rebinding path
        now = [p.data for p in params] + [
            v for i in sorted(opt.state) for k, v in sorted(opt.state[i].items()) if k not in ("step", "max_exp_avg_sq")
        ]
        assert not arrays or all(a is b for a, b in zip(arrays, now, strict=True)), f"{name}: step {t + 1} made new arrays"
        arrays = now


# -- state ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(FULL))
def test_state_dict_round_trip(case: Any, name: str) -> None:
    """5 steps, save, load into a fresh optimizer (default arguments) on copies: the next 5 steps agree."""
    dtype = "float64" if case.supports("float64") else "float32"
    opt_name, kwargs = FULL[name]
    init, grads = problem(seed=1)
    params = [Parameter(case.asarray(a, dtype)) for a in init]
    opt = getattr(pn.optim, opt_name)(params, **kwargs)

    def step(opt: Any, t: int) -> None:
        for p, g in zip(opt.params, grads[t]):
            p.grad = case.asarray(g, dtype)
        opt.step()

    for t in range(5):
        step(opt, t)
    saved = opt.state_dict()
    copies = [Parameter(case.asarray(pn.to_numpy(p.data), dtype)) for p in params]
    fresh = getattr(pn.optim, opt_name)(copies)
    fresh.load_state_dict(saved)
    assert fresh.hyperparameters() == opt.hyperparameters()
    assert repr(fresh) == repr(opt)
    assert fresh.step_count == 5
    assert_state_on(case, fresh, dtype)
    for t in range(5, 10):
        step(opt, t)
        step(fresh, t)
    for p, q in zip(params, copies):
        np.testing.assert_array_equal(pn.to_numpy(q.data), pn.to_numpy(p.data))
    for i, entries in opt.state_dict()["state"].items():
        for key, value in entries.items():
            other = fresh.state_dict()["state"][i][key]
            if key == "step":
                assert other == value == 10
            else:
                np.testing.assert_array_equal(pn.to_numpy(other), pn.to_numpy(value), err_msg=f"{name} {key}")


def test_hyperparameters_defaults_and_alias() -> None:
    assert pn.optim.Adagrad is pn.optim.AdaGrad
    assert pn.optim.AdaGrad().hyperparameters() == {
        "lr": 0.01,
        "lr_decay": 0.0,
        "weight_decay": 0.0,
        "initial_accumulator_value": 0.0,
        "eps": 1e-10,
    }
    assert pn.optim.RMSprop().hyperparameters() == {
        "lr": 0.01,
        "alpha": 0.99,
        "eps": 1e-8,
        "weight_decay": 0.0,
        "momentum": 0.0,
        "centered": False,
    }
    adam = {"lr": 0.001, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0, "amsgrad": False}
    assert pn.optim.Adam().hyperparameters() == adam
    assert pn.optim.AdamW().hyperparameters() == {**adam, "weight_decay": 0.01}
    assert repr(pn.optim.AdamW(lr=0.01)) == "AdamW(lr=0.01, betas=(0.9, 0.999), eps=1e-08, weight_decay=0.01, amsgrad=False)"
    for cls in (pn.optim.AdaGrad, pn.optim.RMSprop, pn.optim.Adam, pn.optim.AdamW):
        assert issubclass(cls, pn.optim.Optimizer)


# -- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: pn.optim.Adam(lr=-1), "Adam: lr must be a positive number; got -1"),
        (lambda: pn.optim.Adam(betas=(0.9, 1.2)), "Adam: betas must be two numbers in [0, 1); got (0.9, 1.2)"),
        (lambda: pn.optim.AdamW(betas=(-0.1, 0.9)), "AdamW: betas must be two numbers in [0, 1); got (-0.1, 0.9)"),
        (lambda: pn.optim.Adam(betas=0.9), "Adam: betas must be two numbers in [0, 1); got 0.9"),
        (lambda: pn.optim.Adam(betas=(0.9, 0.99, 0.5)), "Adam: betas must be two numbers in [0, 1); got (0.9, 0.99, 0.5)"),
        (lambda: pn.optim.Adam(eps=-1e-8), "Adam: eps must be a finite number >= 0; got -1e-08"),
        (lambda: pn.optim.AdamW(weight_decay=-0.01), "AdamW: weight_decay must be a finite number >= 0; got -0.01"),
        (lambda: pn.optim.Adam(eps=math.nan), "Adam: eps must be a finite number >= 0; got nan"),
        (lambda: pn.optim.RMSprop(alpha=1.5), "RMSprop: alpha must be a number in [0, 1]; got 1.5"),
        (lambda: pn.optim.RMSprop(alpha="0.9"), "RMSprop: alpha must be a number in [0, 1]; got '0.9'"),
        (lambda: pn.optim.RMSprop(momentum=-0.9), "RMSprop: momentum must be a finite number >= 0; got -0.9"),
        (lambda: pn.optim.RMSprop(eps=-1), "RMSprop: eps must be a finite number >= 0; got -1"),
        (lambda: pn.optim.RMSprop(lr=0), "RMSprop: lr must be a positive number; got 0"),
        (lambda: pn.optim.Adagrad(lr_decay=-0.1), "AdaGrad: lr_decay must be a finite number >= 0; got -0.1"),
        (lambda: pn.optim.AdaGrad(weight_decay=-1), "AdaGrad: weight_decay must be a finite number >= 0; got -1"),
        (
            lambda: pn.optim.AdaGrad(initial_accumulator_value=-0.1),
            "AdaGrad: initial_accumulator_value must be a finite number >= 0; got -0.1",
        ),
        (lambda: pn.optim.clip_grad_norm_([], max_norm=-1), "clip_grad_norm_: max_norm must be a number >= 0; got -1"),
        (lambda: pn.optim.clip_grad_norm_([], 1.0, norm_type=0), "clip_grad_norm_: norm_type must be a number > 0"),
        (lambda: pn.optim.clip_grad_value_([], clip_value=-0.5), "clip_grad_value_: clip_value must be a number >= 0; got -0.5"),
    ],
)
def test_bad_arguments_are_named(make: Any, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        make()


def test_clipping_takes_parameters_only() -> None:
    with pytest.raises(TypeError, match="clip_grad_norm_ takes portnn Parameters"):
        pn.optim.clip_grad_norm_([np.ones(3)], 1.0)
    with pytest.raises(TypeError, match="clip_grad_value_ takes portnn Parameters"):
        pn.optim.clip_grad_value_([np.ones(3)], 1.0)


# -- clipping ---------------------------------------------------------------------------------------


def grad_params(case: Any, dtype: str, scale: float = 1.0) -> tuple[list[Parameter], list[np.ndarray | None]]:
    """Three parameters with gradients and one without."""
    r = np.random.default_rng(3)
    grads: list[np.ndarray | None] = [
        r.normal(size=(3, 4)) * scale,
        None,
        r.normal(size=(5,)) * scale,
        r.normal(size=(2, 2)) * scale,
    ]
    params = []
    for g in grads:
        p = Parameter(case.asarray(np.zeros(() if g is None else g.shape), dtype))
        p.grad = None if g is None else case.asarray(g, dtype)
        params.append(p)
    return params, grads


@needs_torch
@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, math.inf])
def test_clip_grad_norm_matches_torch(case: Any, norm_type: float) -> None:
    dtype = "float64" if case.supports("float64") else "float32"
    params, grads = grad_params(case, dtype)
    tparams = []
    for g in grads:
        tp = torch.zeros(() if g is None else g.shape, dtype=torch.float64, requires_grad=True)
        tp.grad = None if g is None else torch.from_numpy(g.copy())
        tparams.append(tp)
    expected = torch.nn.utils.clip_grad_norm_(tparams, max_norm=0.5, norm_type=norm_type)
    total = pn.optim.clip_grad_norm_(params, max_norm=0.5, norm_type=norm_type)
    case.assert_close(total, expected.numpy(), dtype=dtype)
    assert float(pn.to_numpy(total)) > 0.5  # so the gradients were scaled
    for p, tp in zip(params, tparams):
        if tp.grad is None:
            assert p.grad is None
        else:
            case.assert_close(p.grad, tp.grad.numpy(), dtype=dtype)
    # after clipping the global norm is max_norm (up to the 1e-6 guard)
    again = float(pn.to_numpy(pn.optim.clip_grad_norm_(params, max_norm=1e9, norm_type=norm_type)))
    assert again == pytest.approx(0.5, rel=1e-5)


def test_clip_grad_norm_below_the_limit_changes_nothing(case: Any) -> None:
    params, grads = grad_params(case, "float32", scale=1e-3)
    total = pn.optim.clip_grad_norm_(params, max_norm=1.0)
    host = [g for g in grads if g is not None]
    expected = math.sqrt(sum(float(np.sum(g.astype(np.float32).astype(np.float64) ** 2)) for g in host))
    case.assert_close(total, np.asarray(expected), dtype="float32")
    for p, g in zip(params, grads):
        if g is None:
            assert p.grad is None
        else:
            case.assert_close(p.grad, g.astype(np.float32), dtype="float32")
            np.testing.assert_array_equal(pn.to_numpy(p.grad), g.astype(np.float32))


def test_clip_grad_norm_without_gradients_is_zero(case: Any) -> None:
    p = Parameter(case.asarray(np.ones(3), "float32"))
    total = pn.optim.clip_grad_norm_(p, max_norm=1.0)  # a single Parameter is accepted too
    case.assert_close(total, np.asarray(0.0), dtype="float32")
    assert p.grad is None


def test_clip_grad_value(case: Any) -> None:
    params, grads = grad_params(case, "float32")
    assert pn.optim.clip_grad_value_(params, clip_value=0.7) is None
    for p, g in zip(params, grads):
        if g is None:
            assert p.grad is None
        else:
            case.assert_close(p.grad, np.clip(g.astype(np.float32), -0.7, 0.7), dtype="float32")


# -- end to end -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["Adam", "AdamW", "RMSprop", "AdaGrad"])
def test_fit_with_adaptive_optimizers_lowers_the_loss(case: Any, name: str) -> None:
    r = np.random.default_rng(0)
    x = r.normal(size=(96, 6))
    y = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0.5)
    model = pn.Sequential([Linear(6, 16), ReLU(), Linear(16, 3)], seed=0)
    opt = getattr(pn.optim, name)(lr=0.01)
    history = model.fit(x, y, loss=pn.losses.CrossEntropy(), optimizer=opt, epochs=6, batch_size=16, seed=0, verbose=0)
    assert history["loss"][-1] < 0.8 * history["loss"][0], history["loss"]
    assert_state_on(case, opt, "float32")

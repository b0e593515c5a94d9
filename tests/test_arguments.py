"""Every numeric or flag argument of every public constructor and function of the lower rooms, walked from one table.

Each row of ``TABLE`` names an argument (``"optim.SGD", "momentum"``), how to call its owner with a
value for it (the other arguments valid), its kind and a good value, and the out-of-range values
for it. From the kind come the values of the wrong type (a bool, a str, a list, None...) and the
NumPy spellings of the good value (``np.int64``, ``np.float32``, a 0-d array). The tests check:

- every wrong type raises a TypeError, every NaN, infinity or out-of-range value a ValueError
  (and not a TypeError), each at the call and with a message naming the owner, the argument
  and the value received;
- every NumPy spelling of the good value is accepted and has the effect of the Python value:
  the same attributes, reprs, configs and results, with no NumPy scalar kept;
- every parameter of every public class and function of ``portnn.layers``, ``portnn.optim``,
  ``portnn.optim.schedules``, ``portnn.callbacks``, ``portnn.losses``, ``portnn.init``,
  ``portnn.metrics`` and ``portnn.datasets.toy`` has a row here or is in ``NOT_NUMERIC`` (with the
  reason): a new argument fails ``test_every_public_argument_has_a_row`` until it is classified.
"""

from __future__ import annotations

import inspect
import math
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import portnn as pn
from portnn import callbacks, init, layers, losses, metrics, optim
from portnn.datasets import toy
from portnn.optim import schedules

NAN, INF = float("nan"), float("inf")
NOWHERE = Path(tempfile.gettempdir()) / "portnn-arguments-never-written.csv"  # CSVLogger checks it, never writes it


@dataclass(frozen=True)
class Arg:
    """One argument: ``call(value)`` calls its owner with ``value`` for it."""

    owner: str  # "optim.SGD": the module's short name and the public name
    name: str
    kind: str  # "int", "real", "flag", "seed", "pair" (an int or a pair of ints), "betas" (a pair of reals)
    call: Callable[[Any], Any]
    good: Any
    bad: tuple[Any, ...] = ()  # values of the right type that are out of range: ValueError
    none: bool = False  # None is accepted
    inf: bool = False  # +inf is accepted (norm_type=inf, max_norm=inf)

    @property
    def id(self) -> str:
        return f"{self.owner}.{self.name}"

    @property
    def short(self) -> str:
        """The name the messages use: ``"SGD"``, ``"moons"``."""
        return self.owner.split(".")[-1]


def wrong_types(arg: Arg) -> list[Any]:
    """Values of the wrong kind for ``arg``: TypeError."""
    values: list[Any] = [] if arg.none else [None]
    if arg.kind in ("int", "pair", "seed"):
        g = arg.good if arg.kind != "pair" else 2
        values += [True, np.True_, float(g) + 0.5, float(g), np.float64(g), str(g), [g, g, g] if arg.kind == "pair" else [g]]
        values += [(g, float(g)), (g, True)] if arg.kind == "pair" else []
    elif arg.kind == "real":
        values += [True, np.True_, str(arg.good), [arg.good], complex(arg.good, 1), b"1"]
    elif arg.kind == "flag":
        values += [1, 0, np.int64(1), "yes", "False", 1.0, [True]]
    elif arg.kind == "betas":
        values += [0.9, "ab", (0.9,), (0.9, 0.99, 0.5), (0.9, True), (0.9, "0.99"), (0.9, None)]
    return values


def out_of_range(arg: Arg) -> list[Any]:
    """Values of the right type that ``arg`` refuses: ValueError (and not TypeError)."""
    values = list(arg.bad)
    if arg.kind == "real":
        values += [NAN, -INF] + ([] if arg.inf else [INF])
    elif arg.kind == "seed":
        values += [-1, 2**63]
    elif arg.kind == "betas":
        values += [(NAN, 0.9), (0.9, INF)]
    return values


def numpy_spellings(arg: Arg) -> list[Any]:
    """The good value as NumPy scalars and 0-d arrays: accepted, with the effect of ``arg.good``."""
    g = arg.good
    if arg.kind in ("int", "seed"):
        out = [np.int64(g), np.int32(g), np.array(g)]
        return out + ([np.uint8(g)] if 0 <= g < 256 else [])
    if arg.kind == "pair":
        return [np.int64(g), (np.int64(g), np.int32(g)), np.array(g), [np.int16(g), g]]
    if arg.kind == "real":
        out = [np.float64(g), np.float32(g), np.array(g), np.array(g, dtype=np.float32)]
        return out + ([np.int64(int(g)), np.array(int(g))] if float(g).is_integer() else [])
    if arg.kind == "flag":
        return [np.bool_(g), np.array(g)]
    if arg.kind == "betas":
        return [(np.float32(g[0]), np.float64(g[1])), np.array(g), [np.array(g[0]), g[1]]]
    raise AssertionError(arg.kind)


# -- the calls -------------------------------------------------------------------------------
L, O, S, C = layers, optim, schedules, callbacks
X4 = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
Y3 = np.array([0, 1, 2, 2, 1, 0])
SCORES3 = np.random.default_rng(1).normal(size=(6, 3))
PROBS = np.array([0.9, 0.2, 0.6, 0.7, 0.1, 0.4])
Y2 = np.array([1, 0, 0, 1, 0, 1])


def loader(**kw: Any) -> Any:
    """A DataLoader over six examples with ``kw``, seeded unless ``kw`` gives a seed."""
    return pn.data.DataLoader((X4, Y3), **{"seed": 0, **kw})


def clipped(fn: Callable[..., Any], **kw: Any) -> Any:
    """``fn`` on two parameters with gradients: its result and the clipped gradients."""
    ps = [L.Parameter(np.zeros(3)), L.Parameter(np.zeros(2))]
    ps[0].grad, ps[1].grad = np.array([3.0, -4.0, 12.0]), np.array([0.5, -2.0])
    return fn(ps, **kw), [p.grad for p in ps]


def metric(name: str, y_true: Any, y_pred: Any, **kw: Any) -> Any:
    """The metric called ``name``; top_k_accuracy with k=1."""
    return getattr(metrics, name)(y_true, y_pred, **({"k": 1} if name == "top_k_accuracy" else {}), **kw)


def drawn(initializer: Any) -> Any:
    """An initialiser's name and what it draws from a fixed generator."""
    return initializer.__name__, initializer(pn.backends.host_rng(0), (3, 4), 4, 3)


def real_rows(owner: str, call: Callable[..., Any], **specs: Any) -> list[Arg]:
    """``Arg(owner, name, "real", ...)`` for each ``name=(good, bad...)``."""
    return [Arg(owner, name, "real", lambda v, n=name: call(**{n: v}), good, tuple(bad)) for name, (good, *bad) in specs.items()]


def flag_rows(owner: str, call: Callable[..., Any], *names: str, good: bool = False) -> list[Arg]:
    return [Arg(owner, name, "flag", lambda v, n=name: call(**{n: v}), good) for name in names]


# fmt: off
TABLE: list[Arg] = [
    # -- layers ----------------------------------------------------------------------------------------
    Arg("layers.Linear", "in_features", "int", lambda v: L.Linear(v, 3, seed=0), 4, (0, -1)),
    Arg("layers.Linear", "out_features", "int", lambda v: L.Linear(4, v, seed=0), 3, (0,)),
    Arg("layers.Linear", "bias", "flag", lambda v: L.Linear(4, 3, bias=v, seed=0), False),
    Arg("layers.Linear", "seed", "seed", lambda v: L.Linear(4, 3, seed=v), 7, none=True),
    Arg("layers.Conv2d", "in_channels", "int", lambda v: L.Conv2d(v, 3, 3, seed=0), 2, (0,)),
    Arg("layers.Conv2d", "out_channels", "int", lambda v: L.Conv2d(2, v, 3, seed=0), 3, (0,)),
    Arg("layers.Conv2d", "kernel_size", "pair", lambda v: L.Conv2d(2, 3, v, seed=0), 3, (0, (3, 0), -1)),
    Arg("layers.Conv2d", "stride", "pair", lambda v: L.Conv2d(2, 3, 3, v, seed=0), 2, (0, (1, -1))),
    Arg("layers.Conv2d", "padding", "pair", lambda v: L.Conv2d(2, 3, 3, 1, v, seed=0), 1, (-1, (0, -2))),
    Arg("layers.Conv2d", "dilation", "pair", lambda v: L.Conv2d(2, 3, 3, dilation=v, seed=0), 2, (0,)),
    Arg("layers.Conv2d", "bias", "flag", lambda v: L.Conv2d(2, 3, 3, bias=v, seed=0), False),
    Arg("layers.Conv2d", "seed", "seed", lambda v: L.Conv2d(2, 3, 3, seed=v), 7, none=True),
    *(
        row
        for pool in ("MaxPool2d", "AvgPool2d")
        for row in (
            Arg(f"layers.{pool}", "kernel_size", "pair", lambda v, p=pool: getattr(L, p)(v), 3, (0, (2, -1))),
            Arg(f"layers.{pool}", "stride", "pair", lambda v, p=pool: getattr(L, p)(3, v), 2, (0, (1, 0)), none=True),
            Arg(f"layers.{pool}", "padding", "pair", lambda v, p=pool: getattr(L, p)(3, 1, v), 1, (-1, 2, (0, 2))),
        )
    ),
    *(
        row
        for bn in ("BatchNorm1d", "BatchNorm2d")
        for row in (
            Arg(f"layers.{bn}", "num_features", "int", lambda v, b=bn: getattr(L, b)(v), 3, (0, -2)),
            *real_rows(f"layers.{bn}", lambda b=bn, **kw: getattr(L, b)(3, **kw), eps=(0.25, -1e-5)),
            Arg(f"layers.{bn}", "momentum", "real", lambda v, b=bn: getattr(L, b)(3, momentum=v), 0.5, (-0.1, 1.5), none=True),
            *flag_rows(f"layers.{bn}", lambda b=bn, **kw: getattr(L, b)(3, **kw), "affine", "track_running_stats"),
        )
    ),
    *(
        row
        for rnn in ("LSTM", "GRU")
        for row in (
            Arg(f"layers.{rnn}", "input_size", "int", lambda v, r=rnn: getattr(L, r)(v, 3, seed=0), 4, (0, -1)),
            Arg(f"layers.{rnn}", "hidden_size", "int", lambda v, r=rnn: getattr(L, r)(4, v, seed=0), 3, (0,)),
            Arg(f"layers.{rnn}", "num_layers", "int", lambda v, r=rnn: getattr(L, r)(4, 3, num_layers=v, seed=0), 2, (0,)),
            *flag_rows(f"layers.{rnn}", lambda r=rnn, **kw: getattr(L, r)(4, 3, seed=0, **kw), "bias", "return_sequences"),
            Arg(f"layers.{rnn}", "seed", "seed", lambda v, r=rnn: getattr(L, r)(4, 3, seed=v), 7, none=True),
        )
    ),
    Arg("layers.Dropout", "p", "real", lambda v: L.Dropout(v, seed=0), 0.25, (-0.1, 1.5)),
    Arg("layers.Dropout", "seed", "seed", lambda v: L.Dropout(0.5, seed=v), 7, none=True),
    Arg("layers.MultiHeadAttention", "embed_dim", "int", lambda v: L.MultiHeadAttention(v, 2, seed=0), 4, (0, -2, 5)),
    Arg("layers.MultiHeadAttention", "num_heads", "int", lambda v: L.MultiHeadAttention(4, v, seed=0), 2, (0, -1, 3)),
    Arg("layers.MultiHeadAttention", "dropout", "real", lambda v: L.MultiHeadAttention(4, 2, dropout=v, seed=0), 0.25,
        (-0.1, 1.5)),
    *flag_rows("layers.MultiHeadAttention", lambda **kw: L.MultiHeadAttention(4, 2, seed=0, **kw), "bias", "causal"),
    Arg("layers.MultiHeadAttention", "seed", "seed", lambda v: L.MultiHeadAttention(4, 2, seed=v), 7, none=True),
    Arg("layers.RandomTranslation", "max_shift", "int", lambda v: L.RandomTranslation(v, seed=0), 2, (-1,)),
    Arg("layers.RandomTranslation", "seed", "seed", lambda v: L.RandomTranslation(2, seed=v), 7, none=True),
    Arg("layers.LeakyReLU", "negative_slope", "real", lambda v: L.LeakyReLU(v), 0.25),
    Arg("layers.Softmax", "axis", "int", lambda v: L.Softmax(v), -1),
    Arg("layers.Flatten", "start_dim", "int", lambda v: L.Flatten(v), 2, (0, -1)),
    Arg("layers.Embedding", "num_embeddings", "int", lambda v: L.Embedding(v, 3, seed=0), 5, (0, -1)),
    Arg("layers.Embedding", "embedding_dim", "int", lambda v: L.Embedding(5, v, seed=0), 3, (0,)),
    Arg("layers.Embedding", "padding_idx", "int", lambda v: L.Embedding(5, 3, padding_idx=v, seed=0), 1, (5, -6), none=True),
    Arg("layers.Embedding", "seed", "seed", lambda v: L.Embedding(5, 3, seed=v), 7, none=True),
    Arg("layers.PositionalEmbedding", "max_length", "int", lambda v: L.PositionalEmbedding(v, 3, seed=0), 5, (0, -1)),
    Arg("layers.PositionalEmbedding", "embedding_dim", "int", lambda v: L.PositionalEmbedding(5, v, seed=0), 3, (0,)),
    Arg("layers.PositionalEmbedding", "seed", "seed", lambda v: L.PositionalEmbedding(5, 3, seed=v), 7, none=True),
    Arg("layers.InputSpec", "min_ndim", "int", lambda v: L.InputSpec(min_ndim=v), 2, (-1,)),
    Arg("layers.Parameter", "trainable", "flag", lambda v: L.Parameter(np.zeros(2), "weight", trainable=v), False),
    Arg("layers.Parameter", "regularize", "flag", lambda v: L.Parameter(np.zeros(2), "weight", regularize=v), False, none=True),
    *real_rows("layers.LayerNorm", lambda **kw: L.LayerNorm(3, **kw), eps=(0.25, -1e-5)),
    *flag_rows("layers.LayerNorm", lambda **kw: L.LayerNorm(3, **kw), "elementwise_affine", "bias"),
    Arg("layers.Conv1d", "in_channels", "int", lambda v: L.Conv1d(v, 3, 3, seed=0), 2, (0,)),
    Arg("layers.Conv1d", "out_channels", "int", lambda v: L.Conv1d(2, v, 3, seed=0), 3, (0,)),
    Arg("layers.Conv1d", "kernel_size", "int", lambda v: L.Conv1d(2, 3, v, seed=0), 3, (0, -1)),
    Arg("layers.Conv1d", "stride", "int", lambda v: L.Conv1d(2, 3, 3, v, seed=0), 2, (0,)),
    Arg("layers.Conv1d", "padding", "int", lambda v: L.Conv1d(2, 3, 3, 1, v, seed=0), 1, (-1,)),
    Arg("layers.Conv1d", "dilation", "int", lambda v: L.Conv1d(2, 3, 3, dilation=v, seed=0), 2, (0,)),
    Arg("layers.Conv1d", "bias", "flag", lambda v: L.Conv1d(2, 3, 3, bias=v, seed=0), False),
    Arg("layers.Conv1d", "seed", "seed", lambda v: L.Conv1d(2, 3, 3, seed=v), 7, none=True),
    # -- optimizers ------------------------------------------------------------------------------------
    Arg("optim.Optimizer", "lr", "real", lambda v: O.Optimizer(lr=v), 0.5, (0, -1)),
    *real_rows("optim.SGD", O.SGD, lr=(0.5, 0, -0.1), momentum=(0.5, -0.5, 1.0), weight_decay=(0.5, -1)),
    *flag_rows("optim.SGD", O.SGD, "nesterov"),
    *(
        row
        for adam in ("Adam", "AdamW")
        for row in (
            *real_rows(f"optim.{adam}", getattr(O, adam), lr=(0.5, 0), eps=(0.5, -1e-8), weight_decay=(0.5, -0.01)),
            Arg(f"optim.{adam}", "betas", "betas", lambda v, a=adam: getattr(O, a)(betas=v), (0.5, 0.75),
                ((0.9, 1.0), (-0.1, 0.9))),
            *flag_rows(f"optim.{adam}", getattr(O, adam), "amsgrad"),
        )
    ),
    *real_rows("optim.RMSprop", O.RMSprop, lr=(0.5, 0), alpha=(0.5, -0.1, 1.5), eps=(0.5, -1), weight_decay=(0.5, -1),
               momentum=(0.5, -0.9)),
    *flag_rows("optim.RMSprop", O.RMSprop, "centered"),
    *real_rows("optim.AdaGrad", O.AdaGrad, lr=(0.5, 0), lr_decay=(0.5, -0.1), weight_decay=(0.5, -1),
               initial_accumulator_value=(0.5, -0.1), eps=(0.5, -1)),
    Arg("optim.clip_grad_norm_", "max_norm", "real", lambda v: clipped(O.clip_grad_norm_, max_norm=v), 0.5, (-1,), inf=True),
    Arg("optim.clip_grad_norm_", "norm_type", "real", lambda v: clipped(O.clip_grad_norm_, max_norm=1.0, norm_type=v), 1.0,
        (0, -2), inf=True),
    Arg("optim.clip_grad_value_", "clip_value", "real", lambda v: clipped(O.clip_grad_value_, clip_value=v), 0.5, (-0.5,),
        inf=True),
    # -- schedules -------------------------------------------------------------------------------------
    Arg("schedules.StepLR", "step_size", "int", lambda v: S.StepLR(step_size=v), 2, (0,)),
    *real_rows("schedules.StepLR", lambda **kw: S.StepLR(step_size=2, **kw), gamma=(0.5, 0, -1)),
    *real_rows("schedules.ExponentialLR", S.ExponentialLR, gamma=(0.5, 0, -0.5)),
    Arg("schedules.CosineAnnealingLR", "T_max", "int", lambda v: S.CosineAnnealingLR(T_max=v), 4, (0,)),
    *real_rows("schedules.CosineAnnealingLR", lambda **kw: S.CosineAnnealingLR(T_max=4, **kw), eta_min=(0.25, -1)),
    Arg("schedules.CosineAnnealingLR", "warmup_epochs", "int", lambda v: S.CosineAnnealingLR(T_max=4, warmup_epochs=v), 1,
        (-1, 4)),
    *real_rows("schedules.LinearLR", S.LinearLR, start_factor=(0.5, 0, 1.5), end_factor=(0.5, -0.1, 1.5)),
    Arg("schedules.LinearLR", "total_iters", "int", lambda v: S.LinearLR(total_iters=v), 4, (0,)),
    *real_rows("schedules.OneCycleLR", lambda **kw: S.OneCycleLR(**{"max_lr": 0.1, "total_steps": 10, **kw}), max_lr=(0.5, 0),
               pct_start=(0.5, -0.1, 1.5), base_momentum=(0.5, -0.1, 1.0), max_momentum=(0.75, 1.0), div_factor=(25.0, 0),
               final_div_factor=(4.0, 0, -1)),
    Arg("schedules.OneCycleLR", "total_steps", "int", lambda v: S.OneCycleLR(max_lr=0.1, total_steps=v, epochs=2,
        steps_per_epoch=5), 10, (0,), none=True),
    # epochs and steps_per_epoch make the length, or may be None where total_steps gives it (they are checked all the same)
    Arg("schedules.OneCycleLR", "epochs", "int", lambda v: S.OneCycleLR(max_lr=0.1, epochs=v, steps_per_epoch=5,
        total_steps=10 if v is None else None), 2, (0,), none=True),
    Arg("schedules.OneCycleLR", "steps_per_epoch", "int", lambda v: S.OneCycleLR(max_lr=0.1, epochs=2, steps_per_epoch=v,
        total_steps=10 if v is None else None), 5, (0,), none=True),
    *flag_rows("schedules.OneCycleLR", lambda **kw: S.OneCycleLR(max_lr=0.1, total_steps=10, **kw), "cycle_momentum",
               "three_phase"),
    *real_rows("schedules.ReduceLROnPlateau", S.ReduceLROnPlateau, factor=(0.5, 0, 1, 1.5), min_delta=(0.5,),
               min_lr=(0.5, -1)),
    Arg("schedules.ReduceLROnPlateau", "patience", "int", lambda v: S.ReduceLROnPlateau(patience=v), 2, (-1,)),
    Arg("schedules.ReduceLROnPlateau", "cooldown", "int", lambda v: S.ReduceLROnPlateau(cooldown=v), 1, (-1,)),
    *real_rows("schedules.Backtracking", S.Backtracking, factor=(2.0, 1, 0.5), tolerance=(0.5, -1, -2), min_lr=(0.5, -1)),
    Arg("schedules.Backtracking", "every", "int", lambda v: S.Backtracking(every=v), 4, (0,), none=True),
    # -- callbacks -------------------------------------------------------------------------------------
    *real_rows("callbacks.EarlyStopping", C.EarlyStopping, min_delta=(0.5,)),
    Arg("callbacks.EarlyStopping", "baseline", "real", lambda v: C.EarlyStopping(baseline=v), 0.5, none=True),
    Arg("callbacks.EarlyStopping", "patience", "int", lambda v: C.EarlyStopping(patience=v), 2, (-1,)),
    Arg("callbacks.EarlyStopping", "start_from_epoch", "int", lambda v: C.EarlyStopping(start_from_epoch=v), 1, (-1,)),
    *flag_rows("callbacks.EarlyStopping", C.EarlyStopping, "restore_best_weights"),
    *real_rows("callbacks.ModelCheckpoint", lambda **kw: C.ModelCheckpoint("w.safetensors", **kw), min_delta=(0.5,)),
    *flag_rows("callbacks.ModelCheckpoint", lambda **kw: C.ModelCheckpoint("w.safetensors", **kw), "save_best_only",
               "save_weights_only"),
    *flag_rows("callbacks.CSVLogger", lambda **kw: C.CSVLogger(NOWHERE, **kw), "append"),
    # -- losses ----------------------------------------------------------------------------------------
    *real_rows("losses.CrossEntropy", losses.CrossEntropy, label_smoothing=(0.25, -0.1, 1.0)),
    *flag_rows("losses.BinaryCrossEntropy", losses.BinaryCrossEntropy, "from_logits"),
    # -- initialisers ----------------------------------------------------------------------------------
    Arg("init.normal", "std", "real", lambda v: drawn(init.normal(v)), 0.5, (-1,)),
    Arg("init.uniform", "low", "real", lambda v: drawn(init.uniform(v, 0.5)), -0.5, (1.0,)),
    Arg("init.uniform", "high", "real", lambda v: drawn(init.uniform(-0.5, v)), 0.5, (-1.0,)),
    Arg("init.constant", "value", "real", lambda v: drawn(init.constant(v)), 0.5),
    Arg("init.orthogonal", "gain", "real", lambda v: drawn(init.orthogonal(v)), 0.5),
    # -- metrics ---------------------------------------------------------------------------------------
    *(
        row
        for fn in ("accuracy", "confusion_matrix", "precision_recall_f1", "per_class_accuracy", "top_k_accuracy")
        for row in (
            Arg(f"metrics.{fn}", "threshold", "real", lambda v, f=fn: metric(f, Y2, PROBS, threshold=v), 0.5, none=True),
            Arg(f"metrics.{fn}", "validate", "flag", lambda v, f=fn: metric(f, Y3, SCORES3, validate=v), False),
        )
    ),
    Arg("metrics.top_k_accuracy", "k", "int", lambda v: metrics.top_k_accuracy(Y3, SCORES3, k=v), 2, (0, 4, -1)),
    *(
        Arg(f"metrics.{fn}", "num_classes", "int", lambda v, f=fn: getattr(metrics, f)(Y3, Y3, num_classes=v), 4, (0, -1),
            none=True)
        for fn in ("confusion_matrix", "precision_recall_f1", "per_class_accuracy")
    ),
    # -- toy data sets ---------------------------------------------------------------------------------
    *(
        row
        for fn in ("two_gaussians", "ball_and_cup", "shifted_cubics", "moons", "bullseye", "shifted_sinusoids", "spirals", "sine")
        for row in (
            Arg(f"toy.{fn}", "n" if fn == "sine" else "n_per_class", "int", lambda v, f=fn: getattr(toy, f)(v), 5, (0, -5)),
            Arg(f"toy.{fn}", "noise", "real", lambda v, f=fn: getattr(toy, f)(5, noise=v), 0.5, (-0.1,)),
            Arg(f"toy.{fn}", "seed", "seed", lambda v, f=fn: getattr(toy, f)(5, seed=v), 7, none=True),
        )
    ),
    Arg("toy.bullseye", "n_classes", "int", lambda v: toy.bullseye(5, n_classes=v), 3, (1, 4)),
    Arg("toy.shifted_sinusoids", "n_classes", "int", lambda v: toy.shifted_sinusoids(5, n_classes=v), 3, (1, 4)),
    Arg("toy.spirals", "n_classes", "int", lambda v: toy.spirals(5, n_classes=v), 3, (1, 0)),
    Arg("toy.parity_bits", "n_bits", "int", lambda v: toy.parity_bits(v), 3, (0, toy.MAX_BITS + 1)),
    Arg("layers.Parallel", "axis", "int", lambda v: L.Parallel(L.ReLU(), axis=v), -1, (0,)),
    Arg("data.DataLoader", "batch_size", "int", lambda v: repr(loader(batch_size=v)), 4, (0, -1)),
    Arg("data.DataLoader", "prefetch", "int", lambda v: loader(prefetch=v).prefetch, 3, (-1,)),
    Arg("data.DataLoader", "seed", "seed", lambda v: loader(seed=v).state_dict(), 7, none=True),
    *flag_rows("data.DataLoader", lambda **kw: repr(loader(**kw)), "shuffle", "drop_last"),
    Arg("data.RandomShift", "max_shift", "int", lambda v: repr(pn.data.RandomShift(v)), 2, (-1,)),
    *real_rows("data.RandomFlip", lambda **kw: repr(pn.data.RandomFlip(**kw)), p=(0.5, -0.1, 1.5)),
]
# fmt: on

#: Parameters that are not numbers or flags, each with why: their own tests check them.
NOT_NUMERIC: dict[str, str] = {
    "data.DataLoader.dataset": "arrays, a dataset or an iterable (tests/test_data.py)",
    "data.DataLoader.transform": "a callable (tests/test_data.py)",
    "data.Compose.transforms": "a list of callables",
    **{f"layers.{c}.init": "an initialiser name or callable" for c in ("Linear", "Conv2d")},
    **{f"layers.{c}.dtype": "a dtype name" for c in ("Linear", "Conv2d")},
    "layers.MultiHeadAttention.init": "an initialiser name or callable",
    "layers.MultiHeadAttention.dtype": "a dtype name",
    **{f"layers.{c}.dtype": "a dtype name" for c in ("BatchNorm1d", "BatchNorm2d")},
    **{f"layers.{c}.init": "an initialiser name or callable" for c in ("LSTM", "GRU")},
    **{f"layers.{c}.dtype": "a dtype name" for c in ("LSTM", "GRU")},
    "layers.InputSpec.dtype": "a dtype kind name",
    **{f"layers.{c}.init": "an initialiser name or callable" for c in ("Embedding", "PositionalEmbedding")},
    **{f"layers.{c}.dtype": "a dtype name" for c in ("Embedding", "PositionalEmbedding")},
    "layers.Permute.dims": "a permutation of 1..k (tests/test_embedding.py checks it)",
    "layers.LayerNorm.normalized_shape": "an int or a tuple of ints (tests/test_layers_new.py)",
    "layers.LayerNorm.dtype": "a dtype name",
    "layers.Conv1d.init": "an initialiser name or callable",
    "layers.Conv1d.dtype": "a dtype name",
    "layers.GELU.approximate": "'none' or 'tanh'",
    "layers.Buffer.data": "an array",
    "layers.Buffer.name": "a name",
    "layers.Parameter.data": "an array",
    "layers.Parameter.name": "a name",
    "layers.format_shape.shape": "a shape to print",
    **{f"optim.{c}.params": "parameters (bind checks them)" for c in ("Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "AdaGrad")},
    "optim.clip_grad_norm_.parameters": "parameters",
    "optim.clip_grad_value_.parameters": "parameters",
    **{
        f"schedules.{c}.{p}": "the optimizer, or a choice among names"
        for c in ("LRScheduler", "StepLR", "ExponentialLR", "CosineAnnealingLR", "LinearLR", "OneCycleLR")
        for p in ("optimizer", "interval")
    },
    "schedules.OneCycleLR.anneal_strategy": "'cos' or 'linear'",
    "schedules.ReduceLROnPlateau.optimizer": "the optimizer",
    "schedules.ReduceLROnPlateau.monitor": "a log key",
    "schedules.ReduceLROnPlateau.mode": "'auto', 'min' or 'max'",
    "callbacks.CallbackList.callbacks": "callbacks",
    "callbacks.Snapshot.model": "a model",
    "callbacks.Snapshot.optimizer": "an optimizer",
    "callbacks.EarlyStopping.monitor": "a log key",
    "callbacks.EarlyStopping.mode": "'auto', 'min' or 'max'",
    "callbacks.ModelCheckpoint.filepath": "a path template",
    "callbacks.ModelCheckpoint.monitor": "a log key",
    "callbacks.ModelCheckpoint.mode": "'auto', 'min' or 'max'",
    "callbacks.ModelCheckpoint.save_freq": "'epoch'",
    "callbacks.CSVLogger.filename": "a path",
    "callbacks.CSVLogger.separator": "one character",
    **{f"losses.{c}.reduction": "'mean' or 'sum'" for c in ("Loss", "CrossEntropy", "MSE", "BinaryCrossEntropy")},
    "init.get_initializer.init": "a name or a callable",
    "init.get_initializer.where": "text for messages",
    **{
        f"init.{f}.{p}": "the initialiser protocol f(rng, shape, fan_in, fan_out): layers call it with checked sizes"
        for f in (
            "glorot_normal",
            "glorot_uniform",
            "he_normal",
            "he_uniform",
            "lecun_normal",
            "lecun_uniform",
            "ones",
            "torch_default",
            "zeros",
        )
        for p in ("rng", "shape", "fan_in", "fan_out")
    },
    **{f"metrics.PrecisionRecallF1.{p}": "a result, not an argument" for p in ("precision", "recall", "f1", "support")},
    **{
        f"metrics.{f}.{p}": "arrays (checked by the metric)"
        for f in ("accuracy", "confusion_matrix", "precision_recall_f1", "per_class_accuracy", "top_k_accuracy")
        for p in ("y_true", "scores" if f == "top_k_accuracy" else "y_pred")
    },
    "metrics.precision_recall_f1.average": "None, 'micro', 'macro' or 'weighted'",
    "toy.parity_bits.rule": "'odd' or 'xor'",
    "toy.load.name": "a data set's name",
    "layers.Residual.block": "a layer or a list of layers (test_nesting checks it)",
    "layers.Parallel.merge": "'concat' or 'sum'",
}

#: Where the public names live, and how the table names them.
MODULES = {
    "layers": layers,
    "optim": optim,
    "schedules": schedules,
    "callbacks": callbacks,
    "losses": losses,
    "init": init,
    "metrics": metrics,
    "toy": toy,
    "data": pn.data,
}


def public_parameters() -> dict[str, inspect.Parameter]:
    """``{"owner.name": parameter}`` for every named parameter of every public class and function of ``MODULES``."""
    found: dict[str, inspect.Parameter] = {}
    seen: set[int] = set()
    for short, module in MODULES.items():
        for name in module.__all__:
            obj = getattr(module, name)
            if id(obj) in seen or not callable(obj) or (isinstance(obj, type) and issubclass(obj, BaseException)):
                continue  # an alias (Adagrad is AdaGrad), a table (toy.DATASETS), an exception
            seen.add(id(obj))
            for p in inspect.signature(obj).parameters.values():
                if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                    found[f"{short}.{name}.{p.name}"] = p
    return found


def effect(result: Any) -> Any:
    """What a call made, comparable with ``==`` and sensitive to NumPy scalars kept (through ``repr``)."""
    if isinstance(result, (tuple, list)):
        return [effect(r) for r in result]
    if isinstance(result, layers.Buffer):
        return (type(result).__name__, repr(result), _plain_attributes(result))
    if hasattr(result, "shape") and hasattr(result, "dtype"):
        host = pn.to_numpy(result)
        return ("array", host.dtype.name, host.shape, host.tolist())
    if isinstance(result, layers.Layer):
        return ("layer", repr(result), repr(result.get_config()), _plain_attributes(result))
    if isinstance(result, optim.Optimizer):
        return ("optimizer", repr(result), repr(result.hyperparameters()), _plain_attributes(result))
    if hasattr(result, "__slots__") or hasattr(result, "__dict__"):
        return (type(result).__name__, _plain_attributes(result))
    return repr(result)


def _plain_attributes(obj: Any) -> str:
    names = sorted(set(getattr(obj, "__dict__", {})) | {s for c in type(obj).__mro__ for s in getattr(c, "__slots__", ())})
    kept = {}
    for name in names:
        value = getattr(obj, name, None)
        if (
            value is None
            or isinstance(value, (bool, int, float, str, tuple, layers.InputSpec))
            or (isinstance(value, list) and all(isinstance(v, (int, float, str, tuple)) for v in value))
        ):
            kept[name] = value
    return repr(kept)


def _call(arg: Arg, value: Any) -> Any:
    with pn.use_backend("numpy"), np.errstate(all="ignore"):
        return arg.call(value)


def _check_message(arg: Arg, value: Any, exc: BaseException) -> None:
    message = str(exc)
    for part in (arg.short, arg.name, repr(value)):
        assert part in message, f"{arg.id}={value!r}: the message {message!r} does not name {part!r}"


def _cases(pick: Callable[[Arg], list[Any]]) -> list[Any]:
    return [pytest.param(arg, value, id=f"{arg.id}={value!r}") for arg in TABLE for value in pick(arg)]


# -- the tests -------------------------------------------------------------------------------------
@pytest.mark.parametrize(("arg", "value"), _cases(wrong_types))
def test_a_wrong_type_is_a_type_error_naming_the_argument(arg: Arg, value: Any) -> None:
    with pytest.raises(TypeError) as info:
        _call(arg, value)
    _check_message(arg, value, info.value)


@pytest.mark.parametrize(("arg", "value"), _cases(out_of_range))
def test_nan_infinite_or_out_of_range_is_a_value_error_naming_the_argument(arg: Arg, value: Any) -> None:
    with pytest.raises(ValueError) as info:
        _call(arg, value)
    assert not isinstance(info.value, TypeError), f"{arg.id}={value!r}: a right-typed value raised a TypeError: {info.value}"
    _check_message(arg, value, info.value)


@pytest.mark.parametrize(("arg", "value"), _cases(numpy_spellings))
def test_numpy_scalars_are_accepted_with_the_effect_of_python_numbers(arg: Arg, value: Any) -> None:
    assert effect(_call(arg, value)) == effect(_call(arg, arg.good))


@pytest.mark.parametrize("arg", [pytest.param(arg, id=arg.id) for arg in TABLE if arg.none])
def test_none_where_it_is_allowed(arg: Arg) -> None:
    _call(arg, None)


@pytest.mark.parametrize("arg", [pytest.param(arg, id=arg.id) for arg in TABLE if arg.inf])
def test_infinity_where_it_means_something(arg: Arg) -> None:
    _call(arg, INF)


def test_every_public_argument_has_a_row() -> None:
    """A parameter added to a public class or function fails here until it gets a row in TABLE or in NOT_NUMERIC."""
    params = public_parameters()
    rows = {arg.id for arg in TABLE}
    assert len(rows) == len(TABLE), "an argument has two rows"
    missing = sorted(set(params) - rows - set(NOT_NUMERIC))
    assert not missing, f"arguments without a row in TABLE (numbers, flags) or NOT_NUMERIC (with the reason): {missing}"
    stale = sorted((rows | set(NOT_NUMERIC)) - set(params))
    assert not stale, f"rows for arguments that no public signature has: {stale}"
    both = sorted(rows & set(NOT_NUMERIC))
    assert not both, f"arguments both in TABLE and NOT_NUMERIC: {both}"


def test_the_table_covers_every_kind_of_mistake() -> None:
    """The walk is not vacuous: the generated cases are many and of every kind."""
    assert len(TABLE) > 150
    assert {arg.kind for arg in TABLE} == {"int", "real", "flag", "seed", "pair", "betas"}
    assert sum(len(wrong_types(a)) + len(out_of_range(a)) + len(numpy_spellings(a)) for a in TABLE) > 1500


@pytest.mark.parametrize(
    ("make", "value"),
    [
        pytest.param(lambda v: layers.Linear(v, 3, seed=0), "int", id="int"),
        pytest.param(lambda v: optim.SGD(lr=v), "real", id="real"),
        pytest.param(lambda v: layers.Linear(4, 3, bias=v, seed=0), "flag", id="flag"),
    ],
)
def test_0d_arrays_of_other_libraries_count_as_numbers(make: Callable[[Any], Any], value: str) -> None:
    import array_api_strict as xs

    torch = pytest.importorskip("torch", reason="torch is not installed: its 0-d tensors are checked with it")
    good = {"int": 4, "real": 0.5, "flag": False}[value]
    for spelled in (xs.asarray(good), torch.tensor(good)):
        assert effect(make(spelled)) == effect(make(good)), spelled


def test_math_inf_is_a_number_where_allowed_and_not_elsewhere() -> None:
    norm, _ = clipped(optim.clip_grad_norm_, max_norm=1.0, norm_type=math.inf)
    assert float(norm) == 12.0
    with pytest.raises(ValueError, match=r"SGD: lr must be a positive number; got inf"):
        optim.SGD(lr=math.inf)


def test_a_model_built_and_trained_with_numpy_numbers_is_the_python_one() -> None:
    """The rule on one model: NumPy scalars build the same model and config, and train it the same way."""

    def run(numbers: tuple[Any, ...]) -> tuple[Any, Any]:
        n_in, n_hidden, p, lr, momentum, step, gamma = numbers
        model = pn.Sequential([layers.Linear(n_in, n_hidden), layers.Dropout(p), layers.ReLU(), layers.Linear(8, 3)], seed=0)
        optimizer = optim.SGD(lr=lr, momentum=momentum)
        history = model.fit(X4, Y3, loss=losses.CrossEntropy(), optimizer=optimizer, epochs=3, batch_size=2, verbose=0,
                            callbacks=[schedules.StepLR(step_size=step, gamma=gamma)])  # fmt: skip
        return model.get_config(), (history["loss"], history["lr"])

    with pn.use_backend("numpy"):
        spelled = run((np.int64(4), np.int32(8), np.float32(0.25), np.float32(0.5), np.array(0.5), np.int64(2), np.float64(0.5)))
        assert spelled == run((4, 8, 0.25, 0.5, 0.5, 2, 0.5))

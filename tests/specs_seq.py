"""Op specs of the sequence family, for the harness in ``tests/test_ops.py``.

Merged with ``SPECS.update(specs_seq.SPECS)``: each spec then gets central differences in
float64, the PyTorch autograd oracle and parity on every backend in float32 and float64.

Embedding specs differentiate the table (the indices are integer extras) with indices that
repeat many times, so the gradient's accumulation of repeated rows is what is checked.
``padding_idx`` is a convention, not a derivative (its row gets no gradient), so central
differences cannot check it: tests/test_embedding.py checks it against PyTorch and every backend.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from opspec import Spec, layer_op, loss_op

from portnn import functional as F
from portnn import losses as L
from portnn.functional.embedding import embedding, positional_embedding
from portnn.functional.pooling import global_avg_pool1d
from portnn.layers import Permute


def _repeated(shape: tuple[int, ...], n_rows: int) -> Any:
    """Indices of ``shape`` into ``n_rows`` rows where a few rows come back many times (and one row never)."""

    def make(r: np.random.Generator) -> list[np.ndarray]:
        return [r.choice([0, 2, 2, 2, 3, n_rows - 1, n_rows - 1], size=shape)]

    return make


def _nnf() -> Any:
    import torch

    return torch.nn.functional


def _seq_labels(r: np.random.Generator) -> list[np.ndarray]:
    return [r.integers(0, 4, size=(3, 5))]


def _seq_probs(r: np.random.Generator) -> list[np.ndarray]:
    p = r.random((3, 5, 4))
    return [p / p.sum(axis=-1, keepdims=True)]


def _flat_ce(**kw: Any) -> Any:
    """PyTorch's cross_entropy on the flattened (batch * time, classes): the oracle of sequence logits."""

    def oracle(z: Any, t: Any) -> Any:
        flat_t = t.reshape(-1) if t.dim() == 2 else t.reshape(-1, t.shape[-1])
        return _nnf().cross_entropy(z.reshape(-1, z.shape[-1]), flat_t, **kw)

    return oracle


SPECS: dict[str, Spec] = {
    # Linear on (batch, ..., in_features), PyTorch's F.linear
    "linear_3d": Spec(
        lambda r: [r.normal(size=(2, 5, 4)), r.normal(size=(3, 4)), r.normal(size=3)],
        layer_op(F.linear),
        lambda x, w, b: _nnf().linear(x, w, b),
        3,
    ),
    "linear_4d_nobias": Spec(
        lambda r: [r.normal(size=(2, 3, 2, 4)), r.normal(size=(3, 4))], layer_op(F.linear), lambda x, w: _nnf().linear(x, w), 2
    ),
    # the table is the differentiable input; heavily repeated indices
    "embedding": Spec(
        lambda r: [r.normal(size=(6, 3))],
        layer_op(lambda w, idx: embedding(idx, w)),
        lambda w, idx: _nnf().embedding(idx, w),
        extra=_repeated((4, 7), 6),
    ),
    "embedding_1d_indices": Spec(
        lambda r: [r.normal(size=(5, 4))],
        layer_op(lambda w, idx: embedding(idx, w)),
        lambda w, idx: _nnf().embedding(idx, w),
        extra=_repeated((9,), 5),
    ),
    "positional_embedding": Spec(
        lambda r: [r.normal(size=(3, 4, 5)), r.normal(size=(6, 5))],
        layer_op(positional_embedding),
        lambda x, w: x + w[: x.shape[1]],
        2,
    ),
    "positional_embedding_full_length": Spec(
        lambda r: [r.normal(size=(2, 6, 3)), r.normal(size=(6, 3))],
        layer_op(positional_embedding),
        lambda x, w: x + w,
        2,
    ),
    # sequence logits (batch, time, classes), classes last: the mean over every position
    "ce_seq": Spec(lambda r: [3 * r.normal(size=(3, 5, 4))], loss_op(L.CrossEntropy()), _flat_ce(), extra=_seq_labels),
    "ce_seq_sum": Spec(
        lambda r: [3 * r.normal(size=(3, 5, 4))],
        loss_op(L.CrossEntropy(reduction="sum")),
        _flat_ce(reduction="sum"),
        extra=_seq_labels,
    ),
    "ce_seq_smooth": Spec(
        lambda r: [3 * r.normal(size=(3, 5, 4))],
        loss_op(L.CrossEntropy(label_smoothing=0.1)),
        _flat_ce(label_smoothing=0.1),
        extra=_seq_labels,
    ),
    "ce_seq_probs": Spec(lambda r: [3 * r.normal(size=(3, 5, 4))], loss_op(L.CrossEntropy()), _flat_ce(), extra=_seq_probs),
    "permute_21": Spec(lambda r: [r.normal(size=(2, 3, 5))], layer_op(Permute((2, 1)).forward), lambda x: x.permute(0, 2, 1)),
    "permute_312": Spec(
        lambda r: [r.normal(size=(2, 3, 4, 5))], layer_op(Permute((3, 1, 2)).forward), lambda x: x.permute(0, 3, 1, 2)
    ),
    "global_avg_pool1d": Spec(lambda r: [r.normal(size=(2, 3, 5))], layer_op(global_avg_pool1d), lambda x: x.mean(dim=2)),
}

"""The networks of ``portnn train``'s presets, as functions that build them (torchvision's ``models``, Keras's ``applications``).

Each returns a :class:`portnn.Sequential` built from :mod:`portnn.layers` — read them as examples of
composing layers: ``build_resnet`` stacks :class:`~portnn.L.Residual` blocks, ``build_vit`` is a
vision transformer of :class:`~portnn.L.MultiHeadAttention` blocks, ``build_lstm`` reads an
image's rows as time steps.

Examples
--------
>>> import portnn as pn
>>> model = pn.models.build_resnet((1, 28, 28), [8, 16], 10, seed=0)
>>> model.output_shape
(None, 10)
>>> pn.models.build_vit((1, 28, 28), 10, width=16, depth=1, heads=2, seed=0).output_shape
(None, 10)
"""

from __future__ import annotations

from collections.abc import Sequence

from . import layers as L
from .layers import Layer
from .model import Sequential

__all__ = ["build_cnn", "build_lstm", "build_mlp", "build_resnet", "build_strided_cnn", "build_vit"]


def build_mlp(n_in: int, hidden: Sequence[int], n_out: int, *, dropout: float = 0.0, seed: int | None = None) -> Sequential:
    """Linear-ReLU(-Dropout) blocks for each hidden size, then a Linear head giving logits."""
    layers: list[Layer] = []
    for n_prev, n_next in zip([n_in, *hidden], hidden):
        layers += [L.Linear(n_prev, n_next), L.ReLU()]
        if dropout:
            layers.append(L.Dropout(dropout))
    layers.append(L.Linear([n_in, *hidden][-1], n_out))
    return Sequential(layers, seed=seed)


def build_cnn(
    image: tuple[int, int, int],
    channels: Sequence[int],
    hidden: Sequence[int],
    n_out: int,
    *,
    dropout: float = 0.0,
    augment: int = 0,
    seed: int | None = None,
) -> Sequential:
    """Optional random shifts; per block 3x3 conv (padding 1), BatchNorm2d, ReLU, 2x2 max-pool; Linear-ReLU(-Dropout); logits."""
    c, h, w = image
    layers: list[Layer] = [L.RandomTranslation(augment)] if augment else []
    for c_out in channels:
        layers += [
            L.Conv2d(c, c_out, 3, padding=1),
            L.BatchNorm2d(c_out),
            L.ReLU(),
            L.MaxPool2d(2),
        ]
        c, h, w = c_out, h // 2, w // 2
    layers.append(L.Flatten())
    n_prev = c * h * w
    for n_next in hidden:
        layers += [L.Linear(n_prev, n_next), L.ReLU()]
        if dropout:
            layers.append(L.Dropout(dropout))
        n_prev = n_next
    layers.append(L.Linear(n_prev, n_out))
    return Sequential(layers, seed=seed, input_shape=image)


def build_resnet(
    image: tuple[int, int, int], channels: Sequence[int], n_out: int, *, augment: int = 0, seed: int | None = None
) -> Sequential:
    """Optional random shifts; a 3x3 conv stem with BatchNorm, ReLU and 2x2 max-pool; per stage after the first a 3x3
    conv to its width (BatchNorm, ReLU, 2x2 max-pool); in every stage a residual block (two 3x3 convs with BatchNorm,
    ``x + f(x)``) and a ReLU; global average pooling; Linear logits."""
    layers: list[Layer] = [L.RandomTranslation(augment)] if augment else []
    c = image[0]
    for width in channels:
        layers += [L.Conv2d(c, width, 3, padding=1), L.BatchNorm2d(width), L.ReLU(), L.MaxPool2d(2)]
        block = [L.Conv2d(width, width, 3, padding=1), L.BatchNorm2d(width), L.ReLU()]
        block += [L.Conv2d(width, width, 3, padding=1), L.BatchNorm2d(width)]
        layers += [L.Residual(block), L.ReLU()]
        c = width
    layers += [L.GlobalAvgPool2d(), L.Linear(c, n_out)]
    return Sequential(layers, seed=seed, input_shape=image)


def build_vit(
    image: tuple[int, int, int],
    n_out: int,
    *,
    patch: int = 7,
    width: int = 64,
    depth: int = 4,
    heads: int = 4,
    augment: int = 0,
    seed: int | None = None,
) -> Sequential:
    """A vision transformer: optional random shifts; ``patch`` x ``patch`` patches to tokens of ``width`` (a strided conv),
    learned positions; ``depth`` pre-norm blocks of self-attention and a GELU MLP (twice the width), each residual;
    LayerNorm, the mean over tokens, Linear logits."""
    c, h, w = image
    tokens = (h // patch) * (w // patch)
    layers: list[Layer] = [L.RandomTranslation(augment)] if augment else []
    layers += [L.Conv2d(c, width, patch, stride=patch), L.Flatten(start_dim=2), L.Permute((2, 1))]
    layers.append(L.PositionalEmbedding(tokens, width))
    for _ in range(depth):
        layers.append(L.Residual([L.LayerNorm(width), L.MultiHeadAttention(width, heads)]))
        layers.append(L.Residual([L.LayerNorm(width), L.Linear(width, 2 * width), L.GELU(), L.Linear(2 * width, width)]))
    layers += [L.LayerNorm(width), L.Permute((2, 1)), L.GlobalAvgPool1d(), L.Linear(width, n_out)]
    return Sequential(layers, seed=seed, input_shape=image)


def build_strided_cnn(
    image: tuple[int, int, int], channels: Sequence[int], hidden: Sequence[int], n_out: int, *, seed: int | None = None
) -> Sequential:
    """A CNN without pooling, cheap on a CPU: a 4x4 conv of stride 2 (padding 1) and ReLU, then per further width a
    2x2 conv of stride 2, BatchNorm2d and ReLU (each halves the image); Linear-ReLU blocks; Linear logits."""
    c, h, w = image
    layers: list[Layer] = []
    for i, c_out in enumerate(channels):
        layers += [L.Conv2d(c, c_out, 4, stride=2, padding=1), L.ReLU()] if i == 0 else [
            L.Conv2d(c, c_out, 2, stride=2), L.BatchNorm2d(c_out), L.ReLU()
        ]  # fmt: skip
        c, h, w = c_out, h // 2, w // 2
    layers.append(L.Flatten())
    n_prev = c * h * w
    for n_next in hidden:
        layers += [L.Linear(n_prev, n_next), L.ReLU()]
        n_prev = n_next
    layers.append(L.Linear(n_prev, n_out))
    return Sequential(layers, seed=seed, input_shape=image)


def build_lstm(steps: tuple[int, int], hidden: int, n_out: int, *, seed: int | None = None) -> Sequential:
    """An LSTM reading ``steps`` = (time, features) (an image's rows as time steps); Linear logits on its last state."""
    return Sequential([L.LSTM(steps[1], hidden), L.Linear(hidden, n_out)], seed=seed, input_shape=steps)

"""Layers: objects that own parameters and call :mod:`portnn.functional`."""

from .activations import LeakyReLU, ReLU, Sigmoid, Softmax, Tanh
from .attention import MultiHeadAttention
from .augment import RandomTranslation
from .base import Buffer, InputSpec, Layer, Parameter, ShapeError, format_shape
from .conv import Conv2d
from .dense import Linear
from .dropout import Dropout
from .embedding import Embedding, PositionalEmbedding
from .normalization import BatchNorm1d, BatchNorm2d
from .pooling import AvgPool2d, GlobalAvgPool1d, GlobalAvgPool2d, MaxPool2d
from .reshape import Flatten, Permute

__all__ = [
    "AvgPool2d",
    "BatchNorm1d",
    "BatchNorm2d",
    "Buffer",
    "Conv2d",
    "Dropout",
    "Embedding",
    "Flatten",
    "GlobalAvgPool1d",
    "GlobalAvgPool2d",
    "InputSpec",
    "Layer",
    "LeakyReLU",
    "Linear",
    "MaxPool2d",
    "MultiHeadAttention",
    "Parameter",
    "Permute",
    "PositionalEmbedding",
    "RandomTranslation",
    "ReLU",
    "ShapeError",
    "Sigmoid",
    "Softmax",
    "Tanh",
    "format_shape",
]

"""Layers: objects that own parameters and call :mod:`portnn.functional`."""

from .activations import GELU, LeakyReLU, ReLU, Sigmoid, SiLU, Softmax, Tanh
from .attention import MultiHeadAttention
from .augment import RandomTranslation
from .base import Buffer, InputSpec, Layer, Parameter, ShapeError, format_shape
from .combinators import Parallel, Residual
from .conv import Conv1d, Conv2d
from .dense import Linear
from .dropout import Dropout
from .embedding import Embedding, PositionalEmbedding
from .normalization import BatchNorm1d, BatchNorm2d, LayerNorm
from .pooling import AvgPool2d, GlobalAvgPool1d, GlobalAvgPool2d, MaxPool2d
from .recurrent import GRU, LSTM
from .reshape import Flatten, Permute

__all__ = [
    "AvgPool2d",
    "BatchNorm1d",
    "BatchNorm2d",
    "Buffer",
    "Conv1d",
    "Conv2d",
    "Dropout",
    "Embedding",
    "Flatten",
    "GELU",
    "GRU",
    "GlobalAvgPool1d",
    "GlobalAvgPool2d",
    "InputSpec",
    "LSTM",
    "LayerNorm",
    "Layer",
    "LeakyReLU",
    "Linear",
    "MaxPool2d",
    "MultiHeadAttention",
    "Parallel",
    "Parameter",
    "Permute",
    "PositionalEmbedding",
    "RandomTranslation",
    "ReLU",
    "Residual",
    "ShapeError",
    "SiLU",
    "Sigmoid",
    "Softmax",
    "Tanh",
    "format_shape",
]

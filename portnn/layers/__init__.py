"""Layers: objects that own parameters and call :mod:`portnn.functional`."""

from .activations import GELU, LeakyReLU, ReLU, Sigmoid, SiLU, Softmax, Tanh
from .augment import RandomTranslation
from .base import Buffer, InputSpec, Layer, Parameter, ShapeError, format_shape
from .conv import Conv1d, Conv2d
from .dense import Linear
from .dropout import Dropout
from .normalization import BatchNorm1d, BatchNorm2d, LayerNorm
from .pooling import AvgPool2d, GlobalAvgPool2d, MaxPool2d
from .reshape import Flatten

__all__ = [
    "AvgPool2d",
    "BatchNorm1d",
    "BatchNorm2d",
    "Buffer",
    "Conv1d",
    "Conv2d",
    "Dropout",
    "Flatten",
    "GELU",
    "GlobalAvgPool2d",
    "InputSpec",
    "LayerNorm",
    "Layer",
    "LeakyReLU",
    "Linear",
    "MaxPool2d",
    "Parameter",
    "RandomTranslation",
    "ReLU",
    "ShapeError",
    "SiLU",
    "Sigmoid",
    "Softmax",
    "Tanh",
    "format_shape",
]

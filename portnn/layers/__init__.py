"""Layers: objects that own parameters and call :mod:`portnn.functional`."""

from .activations import LeakyReLU, ReLU, Sigmoid, Softmax, Tanh
from .augment import RandomTranslation
from .base import Buffer, InputSpec, Layer, Parameter, ShapeError, format_shape
from .combinators import Parallel, Residual
from .conv import Conv2d
from .dense import Linear
from .dropout import Dropout
from .normalization import BatchNorm1d, BatchNorm2d
from .pooling import AvgPool2d, GlobalAvgPool2d, MaxPool2d
from .reshape import Flatten

__all__ = [
    "AvgPool2d",
    "BatchNorm1d",
    "BatchNorm2d",
    "Buffer",
    "Conv2d",
    "Dropout",
    "Flatten",
    "GlobalAvgPool2d",
    "InputSpec",
    "Layer",
    "LeakyReLU",
    "Linear",
    "MaxPool2d",
    "Parallel",
    "Parameter",
    "RandomTranslation",
    "ReLU",
    "Residual",
    "ShapeError",
    "Sigmoid",
    "Softmax",
    "Tanh",
    "format_shape",
]

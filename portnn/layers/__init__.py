"""Layers: objects that own parameters and call :mod:`portnn.functional`."""

from .activations import LeakyReLU, ReLU, Sigmoid, Softmax, Tanh
from .augment import RandomTranslation
from .base import Buffer, InputSpec, Layer, Parameter, ShapeError, format_shape
from .conv import Conv2d
from .dense import Linear
from .dropout import Dropout
from .normalization import BatchNorm1d, BatchNorm2d
from .pooling import AvgPool2d, GlobalAvgPool2d, MaxPool2d
from .recurrent import GRU, LSTM
from .reshape import Flatten

__all__ = [
    "AvgPool2d",
    "BatchNorm1d",
    "BatchNorm2d",
    "Buffer",
    "Conv2d",
    "Dropout",
    "Flatten",
    "GRU",
    "GlobalAvgPool2d",
    "InputSpec",
    "LSTM",
    "Layer",
    "LeakyReLU",
    "Linear",
    "MaxPool2d",
    "Parameter",
    "RandomTranslation",
    "ReLU",
    "ShapeError",
    "Sigmoid",
    "Softmax",
    "Tanh",
    "format_shape",
]

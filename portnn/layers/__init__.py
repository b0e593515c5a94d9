"""Layers: objects that own parameters and call :mod:`portnn.functional`."""

from .activations import LeakyReLU, ReLU, Sigmoid, Softmax, Tanh
from .base import Buffer, Layer, Parameter, ShapeError
from .dense import Linear
from .dropout import Dropout
from .normalization import BatchNorm1d
from .reshape import Flatten

__all__ = [
    "BatchNorm1d",
    "Buffer",
    "Dropout",
    "Flatten",
    "Layer",
    "LeakyReLU",
    "Linear",
    "Parameter",
    "ReLU",
    "ShapeError",
    "Sigmoid",
    "Softmax",
    "Tanh",
]

"""Layers: objects that own parameters and call :mod:`portnn.functional`."""

from .activations import LeakyReLU, ReLU, Sigmoid, Softmax, Tanh
from .base import Layer, Parameter, ShapeError
from .dense import Linear
from .reshape import Flatten

__all__ = ["Flatten", "Layer", "LeakyReLU", "Linear", "Parameter", "ReLU", "ShapeError", "Sigmoid", "Softmax", "Tanh"]

"""Optimizers. Gradients arrive averaged over the batch (the losses' ``mean`` reduction)."""

from .optimizer import Optimizer
from .sgd import SGD

__all__ = ["SGD", "Optimizer"]

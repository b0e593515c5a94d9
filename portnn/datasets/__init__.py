"""Datasets: MNIST, Fashion-MNIST, CIFAR-10 and image CSVs, loaded as NumPy arrays.

Uses only the standard library and NumPy (plus tqdm, if installed, for
download progress bars).  Convert to another backend after loading.
"""

from __future__ import annotations

from . import toy
from ._errors import DatasetError
from ._idx import read_idx
from .cifar10 import load_cifar10
from .csv import load_csv
from .mnist import default_cache_dir, load_fashion_mnist, load_mnist

__all__ = [
    "DatasetError",
    "default_cache_dir",
    "load_cifar10",
    "load_csv",
    "load_fashion_mnist",
    "load_mnist",
    "read_idx",
    "toy",
]

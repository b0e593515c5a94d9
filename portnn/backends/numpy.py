"""NumPy adapter: the CPU backend and the host format every other backend converts through."""

from __future__ import annotations

from typing import Any

import array_api_compat.numpy as xp_numpy
import numpy as np

from ._base import Adapter


class NumpyAdapter(Adapter):
    name = "numpy"
    inplace = True

    @property
    def xp(self) -> Any:
        return xp_numpy

    def default_device(self) -> Any:
        return "cpu"

    def device(self, name: Any = None) -> Any:
        if name not in (None, "cpu"):
            raise ValueError(f"the numpy backend has one device, 'cpu'; got device={name!r}")
        return "cpu"

    def owns(self, x: Any) -> bool:
        return isinstance(x, (np.ndarray, np.generic))

    def from_numpy(self, a: Any, device: Any = None) -> Any:
        self.device(device)
        return np.asarray(a)

    def to_numpy(self, x: Any) -> Any:
        return np.asarray(x)

    def make_generator(self, seed: int, device: Any = None) -> Any:
        self.device(device)
        return np.random.Generator(np.random.PCG64(seed))

    def random_uniform(self, generator: Any, shape: tuple[int, ...], dtype: Any, device: Any = None) -> Any:
        return generator.random(tuple(shape), dtype=dtype)  # float32 draws stay float32

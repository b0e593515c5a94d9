"""A state dict on disk: a portnn ``.safetensors`` file, written atomically, read with checks and without pickle.

Thin wrappers of :func:`portnn.serialization.write_file` and
:func:`~portnn.serialization.read_file` for a bare name -> array mapping. Models have
:meth:`portnn.Sequential.save_weights` and :meth:`~portnn.Sequential.save` instead. (portnn
used to write ``.npz`` files here; it no longer reads them.)

Examples
--------
>>> import os, tempfile
>>> import numpy as np
>>> from portnn.io import load_state, save_state
>>> path = os.path.join(tempfile.mkdtemp(), "state.safetensors")
>>> save_state(path, {"0.weight": np.eye(2, dtype=np.float32)})
>>> load_state(path)["0.weight"].dtype
dtype('float32')
"""

from __future__ import annotations

import os
from typing import Any

from . import backends
from .serialization import read_file, write_file

__all__ = ["load_state", "save_state"]


def save_state(path: str | os.PathLike[str], state: dict[str, Any]) -> None:
    """Write ``state`` (name -> array of any backend, moved to the host) to ``path`` atomically."""
    write_file(path, {name: backends.to_numpy(value) for name, value in state.items()}, {"kind": "state"})


def load_state(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read the arrays of any portnn file as NumPy arrays; a :class:`~portnn.serialization.CheckpointError` if it is damaged."""
    return read_file(path)[0]

"""portnn: neural networks from scratch, one hand-written backprop for NumPy, CuPy and any array-API library.

Examples
--------
>>> import portnn as pn
>>> pn.set_backend("numpy").name
'numpy'
>>> model = pn.Sequential([pn.layers.Linear(784, 128), pn.layers.ReLU(), pn.layers.Linear(128, 10)], seed=0)
"""

from . import (
    backends,
    callbacks,
    data,
    datasets,
    diagnostics,
    distributed,
    functional,
    init,
    layers,
    losses,
    metrics,
    models,
    onnx,
    optim,
    plot,
    report,
    testing,
    training,
)
from ._threads import get_num_threads, limit_threads, set_num_threads
from ._version import __version__
from .backends import (
    Backend,
    BackendUnavailableError,
    available_backends,
    get_backend,
    set_backend,
    to_numpy,
    use_backend,
)
from .model import Sequential
from .optim import schedules as _schedules  # noqa: F401  (makes pn.optim.schedules available)
from .serialization import CheckpointError, load
from .training import History

__all__ = [
    "Backend",
    "BackendUnavailableError",
    "CheckpointError",
    "History",
    "Sequential",
    "__version__",
    "available_backends",
    "backends",
    "callbacks",
    "data",
    "datasets",
    "diagnostics",
    "distributed",
    "functional",
    "get_backend",
    "get_num_threads",
    "init",
    "layers",
    "limit_threads",
    "load",
    "losses",
    "metrics",
    "models",
    "onnx",
    "optim",
    "plot",
    "report",
    "serialization",
    "set_backend",
    "set_num_threads",
    "testing",
    "to_numpy",
    "training",
    "use_backend",
]

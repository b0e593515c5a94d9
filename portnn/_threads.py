"""How many threads BLAS and OpenMP use while portnn works, chosen for the load on the machine.

OpenBLAS starts one worker thread per core, and its workers spin while they wait for work. On
a machine where other processes keep the cores busy, a matrix product then waits for workers
that are not running: a step of the LeNet-like CNN took 360 ms instead of 15 ms on a loaded
2-core machine. portnn therefore chooses the thread count for its own work, once per
:meth:`~portnn.Sequential.fit` (and per :meth:`~portnn.Sequential.evaluate` or
:meth:`~portnn.Sequential.predict` of more than one batch), and puts the previous limits back
when it returns. The rule, first match wins:

1. ``PORTNN_NUM_THREADS=n``: ``n`` threads while portnn works (``auto``: the rule below;
   ``off``: portnn never changes the thread count).
2. The user chose: :func:`set_num_threads` was called, ``OMP_NUM_THREADS``,
   ``OPENBLAS_NUM_THREADS`` or ``MKL_NUM_THREADS`` is set, or a BLAS pool already runs fewer
   threads than there are usable cores (a ``threadpoolctl`` limit): portnn changes nothing.
   Usable cores: the CPU affinity, at most a container's CPU quota (cgroup ``cpu.max``).
3. Otherwise one thread per core that other processes leave free (a core at least 3/4 idle
   over the last ~0.05 s, measured from ``/proc/stat`` less this process's own CPU time), at
   least one: all cores on an idle machine, one when every core is busy. Without ``/proc/stat``
   (macOS, Windows) the 1-minute load average stands in for the busy cores where there is one;
   elsewhere portnn changes nothing.

:func:`set_num_threads` is the explicit, process-wide setting (as ``torch.set_num_threads``),
also used by :func:`portnn.distributed.init` for one thread per rank. ``import portnn`` changes
nothing. The limits go through ``threadpoolctl`` (a dependency of portnn); without it portnn
leaves the pools as they are.

Examples
--------
>>> import portnn as pn
>>> with pn.limit_threads(1) as choice:  # what fit does, here with an explicit count
...     choice.threads
1
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
import math
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

__all__ = ["THREAD_VARIABLES", "ThreadChoice", "choose", "get_num_threads", "limit_threads", "set_num_threads", "usable_cores"]

#: Environment variables that fix the BLAS/OpenMP thread count (then portnn leaves it alone).
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
#: portnn's own setting: a thread count, ``auto`` (the default) or ``off``.
ENVIRONMENT = "PORTNN_NUM_THREADS"
#: How long the load is sampled when no recent sample exists (seconds).
WINDOW = 0.05
#: A sample older than this is not used as the start of the next measurement (seconds).
MAX_AGE = 2.0

_explicit: int | None = None  # what set_num_threads last set
_active: contextvars.ContextVar[ThreadChoice | None] = contextvars.ContextVar("portnn_threads", default=None)
_controller: Any = None  # a threadpoolctl.ThreadpoolController, remade when modules were imported since
_controller_modules = -1
_sample: tuple[float, float, float, float] | None = None  # (time, busy ticks, all ticks, own CPU seconds)


@dataclass(frozen=True)
class ThreadChoice:
    """What portnn chose: ``threads`` per BLAS/OpenMP pool while it works (None: left as they were), and why."""

    threads: int | None
    reason: str


#: Where a container's CPU quota is read: cgroup v2's ``cpu.max``, v1's quota and period.
CGROUP_FILES = ("/sys/fs/cgroup/cpu.max", "/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "/sys/fs/cgroup/cpu/cpu.cfs_period_us")


def _quota() -> float | None:
    """The cores a cgroup CPU quota allows (``docker --cpus=2``: 2.0), or None without a quota."""
    v2, v1_quota, v1_period = CGROUP_FILES
    try:
        with open(v2) as f:
            quota, period = f.read().split()[:2]
    except (OSError, ValueError):
        try:
            with open(v1_quota) as f, open(v1_period) as g:
                quota, period = f.read().strip(), g.read().strip()
        except OSError:
            return None
    try:
        cores = int(quota) / int(period)
    except (ValueError, ZeroDivisionError):
        return None  # "max": no quota
    return cores if cores > 0 else None


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity (else ``os.cpu_count()``), at most a container's CPU quota."""
    try:
        cores = max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        cores = max(1, os.cpu_count() or 1)
    quota = _quota()
    return max(1, min(cores, math.ceil(quota))) if quota is not None else cores


def _threadpoolctl() -> Any:
    """A ``ThreadpoolController`` over the libraries loaded now, or None without threadpoolctl."""
    global _controller, _controller_modules
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    if _controller is None or _controller_modules != len(sys.modules):  # a new import may have loaded a library
        _controller, _controller_modules = ThreadpoolController(), len(sys.modules)
    return _controller


def _blas_threads(controller: Any) -> list[int]:
    return [lib["num_threads"] for lib in controller.info() if lib["user_api"] == "blas"]


def _ticks() -> tuple[float, float, float, float] | None:
    """(time, busy ticks, all ticks) summed over this process's cores from ``/proc/stat``, and its own CPU seconds."""
    try:
        with open("/proc/stat") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    try:
        cores = os.sched_getaffinity(0)
    except (AttributeError, OSError):
        cores = None
    busy = total = 0
    for line in lines:
        if not line.startswith("cpu") or line.startswith("cpu "):
            continue
        name, *fields = line.split()
        if cores is not None and int(name[3:]) not in cores:
            continue
        values = [int(v) for v in fields[:8]]  # user nice system idle iowait irq softirq steal
        idle = values[3] + values[4]
        busy += sum(values) - idle
        total += sum(values)
    own = os.times()
    return time.monotonic(), busy, total, own.user + own.system


def busy_cores(window: float = WINDOW) -> float | None:
    """How many of this process's cores other processes keep busy (None: the OS does not say).

    From ``/proc/stat``: the busy share of the cores since the last sample (taken at the last
    call, when it is between ``window`` and :data:`MAX_AGE` seconds old; else over ``window``
    seconds from now), less this process's own CPU time. Elsewhere the 1-minute load average.
    """
    global _sample
    now = _ticks()
    if now is None:
        try:
            return float(os.getloadavg()[0])
        except (AttributeError, OSError):
            return None
    start = _sample
    if start is None or not window <= now[0] - start[0] <= MAX_AGE:
        start = now
        time.sleep(window)
        now = _ticks()
        assert now is not None
    _sample = now
    elapsed, ticks = now[0] - start[0], now[2] - start[2]
    if ticks <= 0 or elapsed <= 0:
        return 0.0
    cores = usable_cores()  # under a quota, busy ticks of the host's other tenants count against it: conservative
    busy = cores * (now[1] - start[1]) / ticks
    own = (now[3] - start[3]) / elapsed
    return min(float(cores), max(0.0, busy - own))


def setting() -> str:
    """``PORTNN_NUM_THREADS`` as written (lower case, stripped; empty when unset)."""
    return os.environ.get(ENVIRONMENT, "").strip().lower()


def _check_count(where: str, n: Any) -> int:
    if isinstance(n, bool) or not isinstance(n, int) and not hasattr(n, "__index__"):
        raise TypeError(f"{where}: expected a whole number of threads (>= 1); got {n!r} of type {type(n).__name__}")
    n = int(n.__index__())
    if n < 1:
        raise ValueError(f"{where}: the number of threads must be at least 1; got {n}")
    return n


def user_choice() -> str | None:
    """Why the thread count is the user's (set_num_threads, an environment variable, a limited pool), or None."""
    if _explicit is not None:
        return f"set_num_threads({_explicit}) chose for the process"
    for name in THREAD_VARIABLES:
        if os.environ.get(name):
            return f"{name}={os.environ[name]} is set"
    controller = _threadpoolctl()
    if controller is not None:
        blas = _blas_threads(controller)
        if blas and min(blas) < usable_cores():
            return f"a BLAS pool already runs {min(blas)} of {usable_cores()} threads (a threadpoolctl limit?)"
    return None


def choose(n: int | None = None) -> ThreadChoice:
    """The thread count portnn would use for its work now (see the module's rule), and why.

    ``n`` asks for that count (it wins over everything else). Measures the load when the rule
    comes to it (at most ~0.05 s).
    """
    if n is not None:
        return ThreadChoice(_check_count("limit_threads", n), "asked for")
    value = setting()
    if value == "off":
        return ThreadChoice(None, f"{ENVIRONMENT}=off: the pools are left as they are")
    if value not in ("", "auto"):
        if not value.isdigit() or int(value) < 1:
            raise ValueError(
                f"{ENVIRONMENT}={os.environ[ENVIRONMENT]!r}: expected a number of threads (>= 1), 'auto' or 'off'; "
                "fix or unset the environment variable"
            )
        return ThreadChoice(int(value), f"{ENVIRONMENT}={value}")
    why = user_choice()
    if why is not None:
        return ThreadChoice(None, f"{why}: left as the user chose")
    if _threadpoolctl() is None:
        return ThreadChoice(None, "threadpoolctl is not installed: the pools are left as they are")
    busy = busy_cores()
    if busy is None:
        return ThreadChoice(None, "the OS does not tell the load: the pools are left as they are")
    cores = usable_cores()
    threads = max(1, math.floor(cores - busy + 0.25))  # a core counts as free when at least 3/4 idle
    return ThreadChoice(threads, f"{busy:.1f} of {cores} cores busy with other work")


def _apply(threads: int) -> Any:
    """Limit every BLAS/OpenMP pool (and PyTorch's, if imported) to ``threads``; returns what undoes it."""
    torch = sys.modules.get("torch")
    before = torch.get_num_threads() if torch is not None else None  # before threadpoolctl limits its OpenMP
    controller = _threadpoolctl()
    limiter = controller.limit(limits=threads) if controller is not None else None
    if torch is not None:
        torch.set_num_threads(threads)

    def restore() -> None:
        if limiter is not None:
            limiter.restore_original_limits()
        if torch is not None and before is not None:
            torch.set_num_threads(before)

    return restore


@contextlib.contextmanager
def limit_threads(n: int | None = None) -> Iterator[ThreadChoice]:
    """Within the block, BLAS and OpenMP pools (and PyTorch's) run the threads portnn chose; restored after.

    What ``fit``, and ``evaluate``/``predict`` of more than one batch, do around their work: use it
    around a loop of your own (``model.train_step`` in a ``for``). ``n`` asks for that many
    threads; None applies portnn's rule (``PORTNN_NUM_THREADS``, then the user's own choice, then
    the cores other processes leave free). Inside a block already opened (``evaluate`` within
    ``fit``) it changes nothing. Yields the :class:`ThreadChoice`.

    Examples
    --------
    >>> import portnn as pn
    >>> with pn.limit_threads(2) as choice:
    ...     print(choice.threads, pn.get_num_threads() <= 2)
    2 True
    """
    outer = _active.get()
    if outer is not None and n is None:
        yield outer
        return
    choice = choose(n)
    restore = _apply(choice.threads) if choice.threads is not None else None
    token = _active.set(choice)
    try:
        yield choice
    finally:
        _active.reset(token)
        if restore is not None:
            restore()


def around_inference(method: Callable[..., Any]) -> Callable[..., Any]:
    """``method(self, x, ..., batch_size=...)`` under :func:`limit_threads` when ``x`` holds more than one batch.

    One batch is too little work for the thread count to matter, and too little to pay the
    load measurement (~0.05 s when no recent sample exists).
    """
    default = inspect.signature(method).parameters["batch_size"].default

    @functools.wraps(method)
    def call(self: Any, x: Any, *args: Any, **kwargs: Any) -> Any:
        shape = getattr(x, "shape", None)
        batch = kwargs.get("batch_size", default)
        big = bool(shape) and isinstance(batch, int) and shape[0] > batch
        with limit_threads() if big else contextlib.nullcontext():
            return method(self, x, *args, **kwargs)

    return call


def set_num_threads(n: int) -> None:
    """Give BLAS and OpenMP ``n`` threads in this process from now on (``torch.set_num_threads``'s habit).

    Process-wide and explicit: sets ``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS`` and
    ``MKL_NUM_THREADS`` to ``n`` (for libraries loaded later and child processes), limits the
    pools of the libraries loaded now (threadpoolctl) and PyTorch's if imported. ``fit`` and
    inference then change nothing. ``import portnn`` never calls it; ``portnn.distributed.init``
    calls it with 1 unless the user chose.

    Examples
    --------
    >>> import portnn as pn
    >>> pn.set_num_threads(1)  # doctest: +SKIP
    >>> pn.get_num_threads()  # doctest: +SKIP
    1
    """
    global _explicit
    n = _check_count("set_num_threads", n)
    for name in THREAD_VARIABLES:
        os.environ[name] = str(n)
    controller = _threadpoolctl()
    if controller is not None:
        controller.limit(limits=n)  # kept: not restored
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(n)
    _explicit = n


def get_num_threads() -> int:
    """The threads BLAS uses now (the most of any loaded BLAS pool; else the environment's count or the cores).

    Examples
    --------
    >>> import portnn as pn
    >>> pn.get_num_threads() >= 1
    True
    """
    controller = _threadpoolctl()
    blas = _blas_threads(controller) if controller is not None else []
    if blas:
        return max(blas)
    for name in THREAD_VARIABLES:
        if os.environ.get(name, "").strip().isdigit():
            return max(1, int(os.environ[name]))
    return usable_cores()

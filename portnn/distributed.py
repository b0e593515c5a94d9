"""Data-parallel training across MPI ranks (mpi4py): one model per rank, gradients summed every step.

Launch one process per rank with ``mpiexec`` and pass ``distributed=True`` to
:meth:`portnn.Sequential.fit` (or ``portnn train --distributed``), which trains with the
:class:`DataParallel` strategy (the same methods as :class:`portnn.training.LocalStrategy`)::

    mpiexec -n 2 portnn train --distributed
    mpiexec -n 2 python my_script.py       # model.fit(..., distributed=True) inside

What ``fit`` does on every rank (see ``docs/distributed.md``):

* before anything else, one ``allgather`` compares what each rank was given (data shape and dtype,
  batch size, epochs, architecture, optimizer, the position a resume starts from...): ranks that
  differ all raise the same :class:`RunMismatchError`, naming what differs, instead of hanging;
* the parameters, buffers and the shuffling generator are broadcast from rank 0 once, so every
  rank starts from the same model and draws the same permutation every epoch;
* each step takes a *global* batch of ``size * batch_size`` examples of that permutation and each
  rank trains on its contiguous slice of it (a short last batch is split as evenly as possible);
* after the backward pass every rank packs its gradients into one flat buffer, weighted by
  ``local batch / global batch`` (1 for ``reduction="sum"`` losses), and one buffer-based
  ``Allreduce(SUM)`` makes every rank's gradient that of the mean over the global batch: ``N``
  ranks with batch ``B`` take the step one process takes with batch ``N * B``;
* loss and accuracy are summed over the ranks; validation is sharded and summed; floating
  buffers (BatchNorm running statistics) are averaged at the end of every epoch;
* only rank 0 prints and writes checkpoints; a rank that raises prints its rank and error to
  stderr and calls ``MPI.Abort``, which ends the whole job instead of leaving it hanging.

mpi4py is imported only here, and only when a communicator is made: ``import portnn`` never
needs it. Install it with ``pip install "portnn[mpi]"`` (mpi4py and MPICH from PyPI).

Examples
--------
Without ``mpiexec`` the world is one rank, and ``fit(distributed=True)`` trains as usual:

>>> import portnn as pn  # doctest: +SKIP
>>> comm = pn.distributed.init()  # doctest: +SKIP
>>> comm.rank, comm.size  # doctest: +SKIP
(0, 1)
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import Any

import numpy as np

from . import _threads, backends

__all__ = [
    "GPU_PATHS",
    "Communicator",
    "DataParallel",
    "RunMismatchError",
    "cuda_aware_mpi",
    "init",
    "limit_blas_threads",
    "world",
]

#: How CuPy gradients travel: ``"auto"`` (CUDA-aware MPI when detected, else ``"host"``),
#: ``"cuda-aware"`` (device buffers handed to MPI), ``"host"`` (staged through pinned host memory),
#: ``"nccl"`` (``cupy.cuda.nccl``, the communicator set up over MPI).
GPU_PATHS = ("auto", "cuda-aware", "host", "nccl")
#: Environment variables that already fix the BLAS thread count (then portnn leaves it alone).
THREAD_VARIABLES = _threads.THREAD_VARIABLES
_MISSING = (
    'portnn.distributed needs mpi4py and an MPI library: pip install "portnn[mpi]" '
    "(mpi4py and MPICH from PyPI), then launch with mpiexec -n N"
)
_world: Communicator | None = None


class RunMismatchError(ValueError):
    """The ranks of a distributed ``fit`` were given different runs; raised on every rank, before any step.

    Every rank compares the same gathered configurations, so every rank raises this error at
    the same point and none waits in a collective: the job ends without ``MPI.Abort``.
    """


def _mpi() -> Any:
    """``mpi4py.MPI`` (initialises MPI on first import), or an ImportError that says what to install."""
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise ImportError(f"{_MISSING} ({exc})") from exc
    return MPI


def limit_blas_threads(n: int = 1) -> bool:
    """Give each rank ``n`` BLAS/OpenMP threads, unless the user chose (the rule of :func:`portnn.limit_threads`).

    When no thread count was chosen (no ``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS``,
    ``MKL_NUM_THREADS`` or ``PORTNN_NUM_THREADS``, no :func:`portnn.set_num_threads`, no pool
    already limited), calls :func:`portnn.set_num_threads` with ``n``: the variables (for child
    processes and libraries loaded later), the pools of libraries already loaded (threadpoolctl)
    and PyTorch's. Ranks on one machine otherwise start one thread per core each and
    oversubscribe the cores. Returns whether it changed anything.
    """
    if _threads.user_choice() is not None or _threads.setting() not in ("", "auto"):
        return False
    _threads.set_num_threads(n)
    return True


def cuda_aware_mpi() -> bool | None:
    """Whether the MPI library says it can read and write CUDA device memory (None: it does not say).

    ``PORTNN_CUDA_AWARE_MPI=1`` (or ``0``) overrides the answer. Otherwise asks the loaded MPI
    library through ``MPIX_Query_cuda_support()`` (Open MPI, MPICH >= 4.1), then MPICH's
    ``MPIX_GPU_query_support``. MPICH from PyPI is built without CUDA and answers 0.
    """
    forced = os.environ.get("PORTNN_CUDA_AWARE_MPI")
    if forced is not None:
        return forced.strip().lower() in ("1", "true", "yes")
    _mpi()
    import ctypes

    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "libmpi" in line and "/" in line}
    except OSError:
        return None
    for path in sorted(paths):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        if hasattr(lib, "MPIX_Query_cuda_support"):
            return bool(lib.MPIX_Query_cuda_support())
        if hasattr(lib, "MPIX_GPU_query_support"):
            answer = ctypes.c_int(0)
            if lib.MPIX_GPU_query_support(0, ctypes.byref(answer)) == 0:  # 0: MPIX_GPU_SUPPORT_CUDA
                return bool(answer.value)
    return None


class Communicator:
    """The ranks of an MPI communicator, and the collective steps of data-parallel training.

    Parameters
    ----------
    comm
        An ``mpi4py`` communicator (default ``MPI.COMM_WORLD``).
    gpu
        How CuPy gradients travel, one of :data:`GPU_PATHS`; default ``$PORTNN_DISTRIBUTED_GPU``,
        else ``"auto"``. NumPy gradients are always reduced in place in host memory, and other
        backends' are staged through the host.
    blas_threads
        Threads per rank for BLAS (:func:`limit_blas_threads`); None leaves them as they are.

    Attributes
    ----------
    rank, size
        This process's rank and the number of ranks.
    gradient_path
        How the last gradient reduction travelled: ``"numpy"`` (host buffer, in place),
        ``"cuda-aware"``, ``"nccl"``, ``"host"`` (staged), or None before the first.

    Examples
    --------
    >>> comm = Communicator()  # doctest: +SKIP
    >>> comm.shard(0, 10)      # one rank: the whole batch  # doctest: +SKIP
    (0, 10)
    """

    def __init__(self, comm: Any = None, *, gpu: str | None = None, blas_threads: int | None = 1) -> None:
        MPI = _mpi()
        gpu = os.environ.get("PORTNN_DISTRIBUTED_GPU", "auto") if gpu is None else gpu
        if gpu not in GPU_PATHS:
            raise ValueError(f"Communicator: gpu must be one of {GPU_PATHS}; got {gpu!r}")
        if blas_threads is not None:
            limit_blas_threads(blas_threads)
        self.MPI = MPI
        self.comm = MPI.COMM_WORLD if comm is None else comm
        self.rank: int = self.comm.Get_rank()
        self.size: int = self.comm.Get_size()
        self.gpu = gpu
        self.gradient_path: str | None = None
        self._global_batch = 0
        self._buffer: Any = None  # the flat gradient buffer, reused while shape, dtype and device stay
        self._host: Any = None  # its host copy, for staging
        self._nccl: Any = None

    @property
    def is_root(self) -> bool:
        """Whether this is rank 0, the rank that prints and writes."""
        return self.rank == 0

    def __repr__(self) -> str:
        return f"Communicator(rank={self.rank}, size={self.size}, gpu={self.gpu!r})"

    # -- sharding -----------------------------------------------------------------------
    def shard(self, start: int, stop: int) -> tuple[int, int]:
        """This rank's contiguous part ``[lo, hi)`` of the global batch ``[start, stop)``.

        The parts of the ranks, in rank order, tile the batch; sizes differ by at most one
        (a rank gets an empty part only when the batch has fewer examples than there are ranks).
        The global size is kept for the weights of :meth:`allreduce_gradients`.
        """
        m = stop - start
        self._global_batch = m
        return start + m * self.rank // self.size, start + m * (self.rank + 1) // self.size

    # -- collectives ------------------------------------------------------------------
    def allgather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj`` (small, picklable), in rank order, on every rank: one ``allgather``."""
        return list(self.comm.allgather(obj))

    def broadcast_model(self, model: Any, rng: Any = None) -> None:
        """Copy rank 0's parameters and buffers (and the state of ``rng``, a NumPy generator) to every rank.

        Arrays are packed per dtype into one host buffer and sent with one ``Bcast`` each.
        """
        named = [*model.named_parameters(), *model.named_buffers()]
        groups: dict[str, list[Any]] = {}
        for name, b in named:
            groups.setdefault(np.dtype(backends.to_numpy(b.data).dtype).str, []).append((name, b))
        for dtype, members in sorted(groups.items()):
            host = [np.array(backends.to_numpy(b.data), copy=True, order="C") for _, b in members]  # 0-d stays 0-d
            flat = np.concatenate([h.reshape(-1) for h in host]) if host else np.empty(0, dtype)
            self.comm.Bcast(flat, root=0)
            offset = 0
            for (_, b), h in zip(members, host):
                part = flat[offset : offset + h.size].reshape(h.shape)
                offset += h.size
                b.data = backends.adapter_for(b.data).from_numpy(part.copy(), b.device)
        if rng is not None:
            rng.bit_generator.state = self.comm.bcast(rng.bit_generator.state, root=0)

    def allreduce_gradients(
        self, params: list[Any], local_batch: int, *, mean: bool = True, into: tuple[Any, list[Any]] | None = None
    ) -> None:
        """Replace every parameter's ``grad`` by the gradient of the global batch, on every rank.

        Each rank's gradients are packed into one flat buffer scaled by ``local_batch / global
        batch`` (``mean``: the loss averages over the batch; 1 for summed losses), summed with one
        ``Allreduce``, and unpacked as views of the buffer. A parameter without a gradient here
        (this rank's part of the batch was empty) contributes zeros. ``into`` is the
        optimizer's flat gradient buffer and its views
        (:meth:`portnn.optim.Optimizer.gradient_buffer`): the sum is made there, and the
        optimizer's step reads it without copying the gradients again.
        """
        if not params:
            return
        first = params[0]
        if len({str(p.dtype) for p in params}) != 1:
            raise TypeError(
                f"allreduce_gradients: the trainable parameters have dtypes {sorted({str(p.dtype) for p in params})}; "
                "distributed training needs one dtype for all of them"
            )
        adapter = backends.adapter_for(first.data)
        if self.size == 1:  # nothing to exchange: the local gradient is the global one
            self.gradient_path = self._path_for(adapter.name)
            return
        xp = adapter.xp
        total = sum(p.size for p in params)
        key = (total, str(first.dtype), adapter.name, str(first.device))
        if into is not None and tuple(into[0].shape) == (total,) and into[0].dtype == first.dtype:
            buf, views = into
        else:
            if self._buffer is None or self._buffer[0] != key:
                self._buffer = (key, xp.empty((total,), dtype=first.dtype, device=first.device))
            buf, views = self._buffer[1], None
        weight = local_batch / self._global_batch if mean and self._global_batch else 1.0
        offset = 0
        for p in params:
            if p.grad is None:
                buf[offset : offset + p.size] = 0.0
            elif weight == 1.0:
                buf[offset : offset + p.size] = xp.reshape(p.grad, (-1,))
            else:
                buf[offset : offset + p.size] = xp.reshape(p.grad, (-1,)) * weight
            offset += p.size
        summed = self._sum(buf)
        if summed is buf and views is not None:  # summed in place in the optimizer's buffer: its own views
            for p, view in zip(params, views):
                p.grad = view
            return
        offset = 0
        for p in params:
            p.grad = xp.reshape(summed[offset : offset + p.size], p.shape)
            offset += p.size

    def allreduce_sums(self, values: list[float]) -> list[float]:
        """Sum a few numbers (loss sums, counts) over the ranks, in float64 on the host."""
        host = np.asarray(values, dtype=np.float64)
        if self.size > 1:
            self.comm.Allreduce(self.MPI.IN_PLACE, host, op=self.MPI.SUM)
        return [float(v) for v in host]

    def average_buffers(self, model: Any) -> None:
        """Average the floating buffers (BatchNorm running statistics) over the ranks; others are left alone."""
        if self.size == 1:
            return
        for _, b in model.named_buffers():
            host = np.array(backends.to_numpy(b.data), copy=True, order="C")  # keeps the shape, 0-d included
            if host.dtype.kind != "f":
                continue
            self.comm.Allreduce(self.MPI.IN_PLACE, host, op=self.MPI.SUM)
            host /= self.size
            b.data = backends.adapter_for(b.data).from_numpy(host, b.device)

    def sum_arrays(self, arrays: list[Any]) -> list[Any]:
        """Sum host arrays over the ranks (float64, one ``Allreduce``); None where a rank has none yet counts as zeros.

        Every rank passes the same number of entries; an entry may be None on some ranks (a rank whose
        shards were empty), and comes back None only where it is None on every rank.
        """
        if self.size == 1:
            return [None if a is None else np.asarray(a, dtype=np.float64) for a in arrays]
        shapes = [None if a is None else tuple(np.shape(a)) for a in arrays]
        agreed = [next((s for s in column if s is not None), None) for column in zip(*self.comm.allgather(shapes))]
        parts = [
            np.zeros(s, np.float64) if a is None else np.asarray(a, dtype=np.float64)
            for a, s in zip(arrays, agreed)
            if s is not None
        ]
        flat = np.concatenate([p.reshape(-1) for p in parts]) if parts else np.empty(0, np.float64)
        self.comm.Allreduce(self.MPI.IN_PLACE, flat, op=self.MPI.SUM)
        out, offset = [], 0
        for s in agreed:
            if s is None:
                out.append(None)
                continue
            size = int(np.prod(s, dtype=np.int64))
            out.append(flat[offset : offset + size].reshape(s))
            offset += size
        return out

    def abort(self, exc: BaseException, code: int = 1) -> None:
        """With more than one rank: print this rank's error to stderr and end the whole job (``MPI.Abort``).

        Other ranks would otherwise wait forever in their next collective. With one rank, returns
        (the caller re-raises).
        """
        if self.size == 1:
            return
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        sys.stdout.flush()
        print(
            f"portnn.distributed: rank {self.rank} of {self.size} failed, aborting the job:\n{text}",
            file=sys.stderr,
            flush=True,
        )
        self.comm.Abort(code)

    # -- moving the gradient buffer ----------------------------------------------------
    def _sum(self, buf: Any) -> Any:
        """Sum ``buf`` over the ranks; returns the array holding the result (``buf`` itself, or a new one)."""
        MPI = self.MPI
        adapter = backends.adapter_for(buf)
        if adapter.name == "numpy":
            self.gradient_path = "numpy"
            if self.size > 1:
                self.comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
            return buf
        if adapter.name == "cupy":
            return self._sum_cupy(buf, adapter)
        # Other libraries (PyTorch, array-api-strict): through a host copy.
        self.gradient_path = "host"
        if self.size == 1:
            return buf
        host = np.array(adapter.to_numpy(buf), copy=True, order="C")
        self.comm.Allreduce(MPI.IN_PLACE, host, op=MPI.SUM)
        return adapter.from_numpy(host, buf.device)

    def _path_for(self, library: str) -> str:
        if library == "numpy":
            return "numpy"
        if library == "cupy":
            return self.gradient_path if self.gradient_path in ("cuda-aware", "host", "nccl") else self._cupy_path()
        return "host"

    def _cupy_path(self) -> str:
        if self.gpu != "auto":
            return self.gpu
        return "cuda-aware" if cuda_aware_mpi() else "host"

    def _sum_cupy(self, buf: Any, adapter: Any) -> Any:
        import cupy

        MPI = self.MPI
        path = self.gradient_path = self._path_for("cupy")
        if self.size == 1:
            return buf
        if path == "nccl":
            from cupy.cuda import nccl

            if self._nccl is None:
                uid = self.comm.bcast(nccl.get_unique_id() if self.is_root else None, root=0)
                with buf.device:
                    self._nccl = nccl.NcclCommunicator(self.size, uid, self.rank)
            kind = {"float32": nccl.NCCL_FLOAT32, "float64": nccl.NCCL_FLOAT64, "float16": nccl.NCCL_FLOAT16}[buf.dtype.name]
            stream = cupy.cuda.get_current_stream()
            self._nccl.allReduce(buf.data.ptr, buf.data.ptr, buf.size, kind, nccl.NCCL_SUM, stream.ptr)
            return buf  # queued on the current stream, like the kernels that read it next
        if path == "cuda-aware":
            cupy.cuda.get_current_stream().synchronize()  # MPI reads device memory outside CuPy's stream
            self.comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
            return buf
        # Staged through a reused pinned host buffer: device -> host, Allreduce, host -> device.
        if self._host is None or self._host.shape != buf.shape or self._host.dtype != buf.dtype:
            import cupyx

            self._host = cupyx.empty_pinned(buf.shape, dtype=buf.dtype)
        buf.get(out=self._host)  # waits for the copy
        self.comm.Allreduce(MPI.IN_PLACE, self._host, op=MPI.SUM)
        buf.set(self._host)
        return buf


class DataParallel:
    """The strategy of a data-parallel :meth:`~portnn.training.Trainer.fit` across the ranks of ``comm``.

    It has the methods of :class:`portnn.training.LocalStrategy`, which the training loop calls;
    here each one is the collective that keeps the ranks in step.
    """

    def __init__(self, comm: Communicator) -> None:
        self.comm = comm
        self.size, self.rank, self.is_root = comm.size, comm.rank, comm.is_root
        self._seeds: dict[Any, int] = {}

    def __repr__(self) -> str:
        return f"DataParallel({self.comm!r})"

    def check_same_run(self, run: dict[str, Any], notes: dict[str, str] | None = None) -> None:
        """Compare every rank's ``run`` (see :meth:`portnn.training.LocalStrategy.check_same_run`) in one collective.

        Ranks given a different data size, batch size, number of epochs, dtype, architecture,
        optimizer, resume position... would otherwise wait on each other for ever, or end in a
        raw MPI truncation error. Each rank gathers all the configurations and raises the same
        :class:`RunMismatchError`, naming every differing key with rank 0's value and the other
        ranks' (and the ``notes`` about it, such as where a checkpoint was looked for).
        """
        gathered = self.comm.allgather({"run": run, "notes": notes or {}})
        first = gathered[0]["run"]
        parts = []
        for key in dict.fromkeys(k for g in gathered for k in g["run"]):
            differ = [r for r, g in enumerate(gathered) if g["run"].get(key) != first.get(key)]
            if not differ:
                continue
            note0 = gathered[0]["notes"].get(key)
            for r in differ[:3]:
                label, a, b = _shown(key, first.get(key), gathered[r]["run"].get(key))
                note = gathered[r]["notes"].get(key)
                parts.append(
                    f"{label}: rank 0 has {a}"
                    + (f" ({note0})" if note0 else "")
                    + f", rank {r} has {b}"
                    + (f" ({note})" if note else "")
                )
            if len(differ) > 3:
                parts.append(f"{key}: {len(differ) - 3} more ranks differ from rank 0")
            if key == "resume":
                parts[-1] += (
                    " (a checkpoint that only some ranks see, on a node-local disk? put it where every rank reads it, "
                    "or copy it to every node)"
                )
        if parts:
            raise RunMismatchError(
                f"fit(distributed): the {self.size} ranks were not given the same run, so they would wait on each other "
                f"for ever: {'; '.join(parts)}. Every rank must call fit with the same data and arguments"
            )

    def setup(self, model: Any, rng: Any) -> None:
        """Rank 0's parameters, buffers and shuffling state to every rank; each rank its own dropout stream."""
        self.comm.broadcast_model(model, rng)
        self._seeds = reseed_random_layers(model, self.rank)

    def teardown(self, model: Any) -> None:
        restore_seeds(self._seeds)
        self._seeds = {}

    def shard(self, start: int, stop: int) -> tuple[int, int]:
        return self.comm.shard(start, stop)

    def reduce_gradients(self, model: Any, local_batch: int, *, mean: bool) -> None:
        params = [p for p in model.parameters() if p.trainable]
        optimizer = getattr(model, "_optimizer", None)  # fit's: the sum is made in its flat gradient buffer
        into = optimizer.gradient_buffer(params) if self.size > 1 and hasattr(optimizer, "gradient_buffer") else None
        self.comm.allreduce_gradients(params, local_batch, mean=mean, into=into)

    def reduce_step(self, value: float, correct: Any, stop: bool) -> tuple[float, Any, bool]:
        """The global batch's loss sum and correct count, and whether any rank asked to stop: one small allreduce."""
        value, correct, stops = self.comm.allreduce_sums([value, float(correct), float(stop)])
        return value, int(correct), stops > 0

    def agree(self, stop: bool) -> bool:
        return self.comm.allreduce_sums([float(stop)])[0] > 0 if self.size > 1 else stop

    def sync_buffers(self, model: Any) -> None:
        self.comm.average_buffers(model)

    def sum_arrays(self, arrays: list[Any]) -> list[Any]:
        return self.comm.sum_arrays(arrays)

    def evaluate(self, evaluate: Any, X: Any, Y: Any, loss: Any) -> dict[str, float]:
        """``evaluate(X, Y)``'s loss (and accuracy) with each rank evaluating its contiguous share, summed."""
        n = X.shape[0]
        parts = max(1, min(self.size, n // 2))  # no rank evaluates a single example (BatchNorm without running statistics)
        lo, hi = (n * self.rank // parts, n * (self.rank + 1) // parts) if self.rank < parts else (n, n)
        sums = [0.0, 0.0, 0.0, 0.0]  # loss sum, examples, correct, counted predictions
        if hi > lo:
            logs = evaluate(X[lo:hi, ...], Y[lo:hi, ...])
            sums[:2] = [logs["loss"] * (hi - lo), hi - lo]
            if loss.classification:
                count = loss.count(Y[lo:hi, ...])
                sums[2:] = [logs["accuracy"] * count, count]
        loss_sum, seen, correct, counted = self.comm.allreduce_sums(sums)
        out = {"loss": loss_sum / max(seen, 1)}
        if loss.classification:
            out["accuracy"] = correct / max(counted, 1)
        return out

    def abort(self, exc: BaseException) -> None:
        if isinstance(exc, RunMismatchError):
            return  # every rank raises it at the same point: none is left waiting
        self.comm.abort(exc)


def _shown(key: str, a: Any, b: Any) -> tuple[str, str, str]:
    """``(label, a, b)`` for an error: lists show their first difference (``layers[2]``), long values are cut."""
    if isinstance(a, list) and isinstance(b, list):
        i = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), None)
        if i is None:
            return f"{key} (how many)", f"{len(a)}", f"{len(b)}"
        return f"{key}[{i}]", _cut(a[i]), _cut(b[i])
    return key, _cut(a), _cut(b)


def _cut(value: Any, limit: int = 120) -> str:
    text = repr(value) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[: limit - 1] + "…"


def init(*, gpu: str | None = None, blas_threads: int | None = 1) -> Communicator:
    """The communicator of all ranks (``MPI.COMM_WORLD``), made once per process.

    Sets one BLAS thread per rank unless the environment chose (:func:`limit_blas_threads`);
    ``gpu`` picks how CuPy gradients travel (:data:`GPU_PATHS`). Raises ImportError naming
    ``pip install "portnn[mpi]"`` without mpi4py.
    """
    global _world
    if _world is None:
        _world = Communicator(gpu=gpu, blas_threads=blas_threads)
    elif gpu is not None:
        _world.gpu = gpu
    return _world


def world() -> Communicator:
    """The communicator made by :func:`init` (made now with the defaults if there is none)."""
    return init() if _world is None else _world


def resolve(distributed: Any) -> Communicator | None:
    """``fit``'s ``distributed`` argument as a communicator: None/False: none; True: :func:`world`."""
    if distributed is None or distributed is False:
        return None
    if distributed is True:
        return world()
    if isinstance(distributed, Communicator):
        return distributed
    raise TypeError(f"fit: distributed must be None, True or a portnn.distributed.Communicator; got {type(distributed).__name__}")


def reseed_random_layers(model: Any, rank: int) -> dict[Any, int]:
    """Give ranks other than 0 their own dropout/augmentation streams (seed + rank), so their masks differ.

    Returns the layers' own seeds, for :func:`restore_seeds` when the fit ends: the offset holds
    for this fit only and does not pile up over fits.
    """
    from .layers.base import RandomLayer

    seeds = {layer: layer.seed for layer in model.modules() if isinstance(layer, RandomLayer)}  # nested too, each once
    if rank != 0:
        for layer, seed in seeds.items():
            layer.seed = (seed + 7919 * rank) % 2**63
            layer._generator = layer._generator_for = None
    return seeds


def restore_seeds(seeds: dict[Any, int]) -> None:
    """Put back the seeds :func:`reseed_random_layers` returned (the generators keep their streams)."""
    for layer, seed in seeds.items():
        layer.seed = seed

"""Data that does not fit in memory: a :class:`DataLoader` that streams batches, prefetched, exactly resumable.

``fit``, ``evaluate`` and ``predict`` take, besides whole arrays:

- a memory-mapped array (``np.load(path, mmap_mode="r")``): read batch by batch on the host,
  each batch copied to the model's device on its own, never the whole array;
- a :class:`DataLoader` over an indexable source (arrays, memory-mapped or not; a dataset with
  ``__len__`` and ``__getitem__`` returning one example, as PyTorch's ``Dataset``) or over an
  iterable of ``(x, y)`` batches, with shuffling from its own seeded generator, ``drop_last`` and
  per-batch transforms (:class:`RandomShift`, :class:`RandomFlip`, written against the array API
  and run on the model's device);
- a plain Python generator of ``(x, y)`` batches (one pass, and no resume: it has no state).

Batches are assembled in a background thread, a bounded queue ahead of the training thread
(:func:`prefetch`); an error there is raised in the training thread naming the batch, and the
thread ends when training ends, fails or is interrupted. A loader's :meth:`DataLoader.state_dict`
is its seed, epoch and position: the epoch's order and every transform's random draws are
functions of them, so a run killed mid-epoch and resumed from a checkpoint ends bit-identical to
one never interrupted.

PyTorch users know ``DataLoader(dataset, batch_size, shuffle, drop_last)``; Keras users know
``keras.utils.PyDataset``: ``fit(loader)`` takes no ``y`` (the loader yields it), and
``validation_data=`` takes a loader too.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from array_api_compat import array_namespace, device

from . import backends
from ._checks import check_flag, check_int, check_number, check_seed

__all__ = ["BatchError", "Compose", "DataLoader", "RandomFlip", "RandomShift"]


class BatchError(ValueError):
    """A batch of a streamed source is not what the batches before it were, or could not be made: the message names it."""


# -- the loader ---------------------------------------------------------------------------


class DataLoader:
    """Batches of a dataset, in an order drawn from the loader's own seeded generator: PyTorch's ``DataLoader``.

    Parameters
    ----------
    dataset
        One of: an array or a tuple of arrays of the same length (``(x, y)``; NumPy arrays,
        memory-mapped arrays from ``np.load(..., mmap_mode="r")``, arrays of any backend): a
        batch is the same rows of each; an object with ``__len__`` and ``__getitem__(i)``
        returning one example (an array or a tuple of arrays, as PyTorch's ``Dataset``), stacked
        into batches; an iterable of ready batches (``(x, y)`` tuples), with ``batch_size=None``:
        an object whose ``__iter__`` starts a new pass each time (resumable: a resumed pass skips
        the batches already trained on), or a generator (one pass, not resumable).
    batch_size
        Examples per batch (None for an iterable of batches).
    shuffle
        A new order every epoch, a function of ``seed`` and the epoch (indexable datasets only).
    drop_last
        Skip the last batch of an epoch when it is smaller than ``batch_size``.
    seed
        Seed of the shuffling and of the transforms' draws (default: drawn from the OS, then
        kept in :meth:`state_dict`).
    transform
        ``transform(x, y, rng) -> (x, y)`` applied to every batch once it is on the model's
        device (``rng``: a NumPy ``Generator`` of that batch's own, so the draws do not depend
        on which thread runs it). :class:`RandomShift`, :class:`RandomFlip`, :class:`Compose`.
        It must keep the number of examples and give batches of one shape.
    prefetch
        Batches assembled ahead in a background thread (0: in the training thread).

    Examples
    --------
    >>> import numpy as np
    >>> import portnn as pn
    >>> x, y = np.random.default_rng(0).normal(size=(100, 4)), np.arange(100) % 3
    >>> loader = pn.data.DataLoader((x, y), batch_size=32, shuffle=True, seed=0)
    >>> len(loader), [len(xb) for xb, yb in loader]
    (4, [32, 32, 32, 4])
    >>> model = pn.Sequential([pn.layers.Linear(4, 3)], seed=0)
    >>> history = model.fit(loader, loss=pn.losses.CrossEntropy(), optimizer=pn.optim.SGD(lr=0.1), epochs=2, verbose=0)
    >>> loader.state_dict()["epoch"]  # the pass above, then two epochs of fit
    3
    """

    def __init__(
        self,
        dataset: Any,
        batch_size: int | None = 32,
        *,
        shuffle: bool = False,
        drop_last: bool = False,
        seed: int | None = None,
        transform: Callable[[Any, Any, Any], tuple[Any, Any]] | None = None,
        prefetch: int = 2,
    ) -> None:
        where = "DataLoader"
        self.dataset = dataset
        self.shuffle = check_flag(where, "shuffle", shuffle)
        self.drop_last = check_flag(where, "drop_last", drop_last)
        self.prefetch = check_int(where, "prefetch", prefetch, minimum=0)
        if transform is not None and not callable(transform):
            raise TypeError(f"{where}: transform must be callable as transform(x, y, rng) -> (x, y); got {transform!r:.80}")
        self.transform = transform
        self.kind, self._arrays = _kind_of(dataset)
        if self.kind == "batches":
            if batch_size is not None:
                raise ValueError(
                    f"{where}: {type(dataset).__name__} is an iterable of ready batches, so batch_size={batch_size!r} "
                    "cannot apply; pass batch_size=None (or give an indexable dataset to be cut into batches)"
                )
            if shuffle:
                raise ValueError(
                    f"{where}: an iterable of batches cannot be shuffled (it has no indices); pass shuffle=False or an "
                    "indexable dataset"
                )
            self.batch_size = None
        else:
            if batch_size is None:
                raise TypeError(f"{where}: batch_size=None is for an iterable of ready batches; pass an int >= 1")
            self.batch_size = check_int(where, "batch_size", batch_size)
        seed = check_seed(where, "seed", seed)
        self.seed = int(np.random.SeedSequence().entropy % 2**63) if seed is None else seed
        self.epoch = 0  # the epoch the next batch belongs to
        self.batch = 0  # batches of that epoch already handed out
        self._one_shot = self.kind == "batches" and iter(dataset) is dataset
        self._passes = 0  # passes started over a generator (it gives one)

    # -- sizes --------------------------------------------------------------------------
    @property
    def n(self) -> int | None:
        """Examples per epoch (None for an iterable of batches)."""
        if self.kind == "arrays":
            return int(self._arrays[0].shape[0])
        if self.kind == "examples":
            return len(self.dataset)
        return None

    def __len__(self) -> int:
        """Batches per epoch. An iterable of batches has one only when it has ``__len__`` itself."""
        n = self.n
        if n is None:
            if hasattr(self.dataset, "__len__"):
                return len(self.dataset)
            raise TypeError(f"DataLoader over a {type(self.dataset).__name__}: the number of batches is not known in advance")
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    @property
    def steps(self) -> int | None:
        """``len(self)``, or None when it is not known in advance."""
        try:
            return len(self)
        except TypeError:
            return None

    @property
    def resumable(self) -> bool:
        """Whether a pass can start again at a given batch (every source but a generator)."""
        return not self._one_shot

    # -- state -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """``{"seed", "epoch", "batch", "examples"}``: where the loader is; the order and draws follow from it.

        A generator has no state to save: a TypeError says so.
        """
        if self._one_shot:
            raise TypeError(
                f"DataLoader over a generator ({type(self.dataset).__name__}) cannot be resumed: a generator cannot start "
                "again at a given batch. Pass an indexable dataset (arrays, memory-mapped arrays, a Dataset) or an object "
                "whose __iter__ starts a new pass each time"
            )
        return {"seed": self.seed, "epoch": self.epoch, "batch": self.batch, "examples": self.n}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Go back to ``state`` (from :meth:`state_dict`); a state of a loader over other data is refused."""
        self.state_dict()  # a generator refuses
        if not isinstance(state, dict) or set(state) != {"seed", "epoch", "batch", "examples"}:
            raise ValueError(f"DataLoader.load_state_dict: expected a dict from state_dict(); got {state!r:.120}")
        for key in ("seed", "epoch", "batch"):
            value = state[key]
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"DataLoader.load_state_dict: {key}={value!r:.40} is not an integer >= 0")
        if state["examples"] != self.n:
            raise ValueError(
                f"DataLoader.load_state_dict: the state is of a loader over {state['examples']} examples; this one has "
                f"{self.n}: load it into a loader over the same data"
            )
        steps = self.steps
        if steps is not None and state["batch"] > steps:
            raise ValueError(f"DataLoader.load_state_dict: batch {state['batch']} is past the {steps} batches of an epoch")
        self.seed, self.epoch, self.batch = state["seed"], state["epoch"], state["batch"]

    # -- batches ----------------------------------------------------------------------------
    def order(self, epoch: int) -> Any:
        """The example order of ``epoch`` (None without shuffling): a function of the seed and the epoch only."""
        if not self.shuffle:
            return None
        return np.random.default_rng([self.seed, epoch]).permutation(self.n)

    def batch_rng(self, epoch: int, batch: int) -> Any:
        """The NumPy generator a transform draws from for one batch: a function of the seed, the epoch and the batch."""
        return np.random.default_rng([self.seed, epoch, batch, 1])

    def _host_batches(self, epoch: int, start: int) -> Iterator[tuple[Any, ...]]:
        """The host batches of ``epoch`` from batch ``start`` on, each a tuple of arrays."""
        if self.kind == "batches":
            if self._one_shot:
                self._passes += 1
                if self._passes > 1:
                    raise BatchError(
                        f"DataLoader: the generator {type(self.dataset).__name__} was already read to its end: a generator "
                        "gives one pass; for more epochs pass an object whose __iter__ starts a new pass, or arrays"
                    )
            for b, item in enumerate(self.dataset):
                if b >= start:
                    yield item if isinstance(item, tuple) else tuple(item) if isinstance(item, list) else (item,)
            return
        n, size = self.n, self.batch_size
        order = self.order(epoch)
        stop_at = self.steps
        for b in range(start, stop_at):
            lo, hi = b * size, min((b + 1) * size, n)
            idx = slice(lo, hi) if order is None else order[lo:hi]
            if self.kind == "arrays":
                yield tuple(_take(a, idx) for a in self._arrays)
            else:
                items = [self.dataset[int(i)] for i in (range(lo, hi) if order is None else idx)]
                yield _stack(items, b)

    def batches(
        self, convert: Callable[[tuple[Any, ...]], tuple[Any, ...]] | None = None, *, advance: bool = True,
        device_stream: Any = None,
    ) -> Any:  # fmt: skip
        """An iterator of this epoch's remaining batches, each a tuple ``(x, y)`` (or ``(x,)``), prefetched.

        ``convert`` brings a host batch to the model's device (in the background thread); the
        transform follows it. Each batch handed out advances :attr:`batch`; the epoch ends (and
        :attr:`epoch` advances) when the iterator is read to its end, or with :meth:`end_epoch`.
        ``advance=False`` reads a pass from the epoch's start without moving the loader
        (validation); ``device_stream`` is :func:`prefetch`'s. Close the iterator (``.close()``)
        to stop the thread early.
        """
        epoch, start = self.epoch, (self.batch if advance else 0)
        checker = _Consistency()

        def produce() -> Iterator[tuple[Any, ...]]:
            for b, host in enumerate(self._host_batches(epoch, start), start=start):
                checker.check(host, b, "the source")
                out = convert(host) if convert is not None else host
                if self.transform is not None:
                    out = _apply(self.transform, out, self.batch_rng(epoch, b), b)
                    checker.check(out, b, "the transform", before=host)
                yield out

        return _Handout(self, prefetch(produce(), self.prefetch, first=start, device_stream=device_stream), advance)

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        """This epoch's remaining batches on the host (transformed, if a transform is given)."""
        return iter(self.batches())

    def end_epoch(self) -> None:
        """Move to the next epoch's first batch."""
        self.epoch += 1
        self.batch = 0

    def __repr__(self) -> str:
        size = f"batch_size={self.batch_size}" if self.batch_size is not None else "batches as given"
        return f"DataLoader({self.kind}, {size}, shuffle={self.shuffle}, drop_last={self.drop_last}, seed={self.seed})"


class _Handout:
    """The batches of one pass, counted into the loader as they are handed out."""

    def __init__(self, loader: DataLoader, source: Any, advance: bool) -> None:
        self.loader, self.source, self.advance = loader, source, advance

    def __iter__(self) -> _Handout:
        return self

    def __next__(self) -> tuple[Any, ...]:
        try:
            item = next(self.source)
        except StopIteration:
            if self.advance:
                self.loader.end_epoch()
            raise
        if self.advance:
            self.loader.batch += 1
        return item

    def close(self) -> None:
        self.source.close()

    def __del__(self) -> None:  # a loop left with break: its thread ends when the iterator is dropped
        try:
            self.source.close()
        except Exception:  # noqa: BLE001 - nothing to report from a finaliser
            pass


# -- prefetching --------------------------------------------------------------------------

_DONE = object()


class _Failed:
    def __init__(self, exc: BaseException, index: int) -> None:
        self.exc, self.index = exc, index


class _Prefetcher:
    """The items of ``items`` made in a background thread, at most ``depth`` ahead; an error comes out in order."""

    def __init__(self, items: Iterator[Any], depth: int, first: int, device_stream: Any = None) -> None:
        self.items, self.first, self.device_stream = items, first, device_stream
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self.stop = threading.Event()
        self.finished = False
        self.thread = threading.Thread(target=self._work, name="portnn-prefetch", daemon=True)
        self.thread.start()

    def _put(self, item: Any) -> bool:
        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _work(self) -> None:
        index = self.first
        try:
            stream, done = _copy_stream(self.device_stream)
            with stream:  # CuPy: this thread's copies and transforms on a stream of their own (the adapter's)
                for item in self.items:
                    done()  # the batch is whole on the device before the training thread sees it
                    if not self._put(item):
                        return
                    index += 1
        except BaseException as exc:  # noqa: BLE001 - handed to the training thread
            self._put(_Failed(exc, index))
            return
        finally:
            close = getattr(self.items, "close", None)
            if close is not None and self.stop.is_set():
                try:
                    close()
                except Exception:  # noqa: BLE001 - a generator stopped mid-way; nothing to report
                    pass
        self._put(_DONE)

    def __iter__(self) -> _Prefetcher:
        return self

    def __next__(self) -> Any:
        if self.finished:
            raise StopIteration
        item = self.queue.get()
        if item is _DONE:
            self.close()
            raise StopIteration
        if isinstance(item, _Failed):
            self.close()
            raise _named(item.exc, item.index) from item.exc
        return item

    def close(self) -> None:
        """Stop the thread (it ends at its next batch) and wait for it."""
        self.finished = True
        self.stop.set()
        self.thread.join()

    def __del__(self) -> None:
        self.stop.set()


class _Inline:
    """The same contract as :class:`_Prefetcher`, in the calling thread."""

    def __init__(self, items: Iterator[Any], first: int) -> None:
        self.items, self.index = items, first

    def __iter__(self) -> _Inline:
        return self

    def __next__(self) -> Any:
        try:
            item = next(self.items)
        except StopIteration:
            raise
        except BaseException as exc:
            raise _named(exc, self.index) from exc
        self.index += 1
        return item

    def close(self) -> None:
        close = getattr(self.items, "close", None)
        if close is not None:
            close()


def prefetch(items: Iterator[Any], depth: int = 2, *, first: int = 0, device_stream: Any = None) -> Any:
    """``items`` made ``depth`` ahead in a background thread (``depth=0``: in this thread).

    ``device_stream``, the model's backend, lets its adapter (CuPy's) run the thread's work, the copies to the device among
    it, on a CUDA stream of its own, synchronised before each item is handed over, so the copy
    of the next batch overlaps the training step of this one.

    An exception raised while making item ``k`` is raised in the consuming thread when it
    reaches that item, as a :class:`BatchError` naming the batch (``first + k``) unless it already
    is one (KeyboardInterrupt and other non-``Exception`` errors pass unchanged). ``close()``
    stops the thread: the loop calls it when training ends, fails or is interrupted.
    """
    return _Prefetcher(items, depth, first, device_stream) if depth > 0 else _Inline(items, first)


def _copy_stream(backend: Any) -> tuple[Any, Callable[[], None]]:
    """The copy stream ``backend``'s adapter gives (:meth:`portnn.backends.Adapter.copy_stream`), or nothing to do."""
    found = None if backend is None else backend.adapter.copy_stream(backend.device)
    return (contextlib.nullcontext(), lambda: None) if found is None else found


def _named(exc: BaseException, index: int) -> BaseException:
    if isinstance(exc, BatchError) or not isinstance(exc, Exception):
        return exc
    return BatchError(f"batch {index}: making it raised {type(exc).__name__}: {exc}")


# -- checks -----------------------------------------------------------------------------


class _Consistency:
    """Every batch of a pass has the parts, trailing shapes and dtypes of the first one."""

    def __init__(self) -> None:
        self.first: dict[str, tuple[int, tuple[tuple[int, ...], ...], tuple[str, ...]]] = {}

    def check(self, batch: tuple[Any, ...], index: int, what: str, before: tuple[Any, ...] | None = None) -> None:
        shapes = tuple(tuple(int(d) for d in getattr(a, "shape", ())) for a in batch)
        if any(len(s) == 0 for s in shapes):
            raise BatchError(f"batch {index}: {what} gave a part that is not an array of examples (shapes {list(shapes)})")
        n = shapes[0][0]
        if before is not None:
            was = tuple(tuple(int(d) for d in a.shape) for a in before)
            if n != was[0][0] or len(shapes) != len(was) or any(s != w for s, w in zip(shapes[1:], was[1:])):
                raise BatchError(
                    f"batch {index}: the transform returned shapes {list(shapes)} for a batch of shapes {list(was)}; a "
                    "transform must keep the number of examples and the targets"
                )
        if any(s[0] != n for s in shapes):
            raise BatchError(f"batch {index}: {what} gave parts of different lengths (shapes {list(shapes)})")
        dtypes = tuple(str(getattr(a, "dtype", "?")).rpartition(".")[2] for a in batch)
        key = (len(batch), tuple(s[1:] for s in shapes), dtypes)
        seen = self.first.setdefault(what, (index, *key))
        if seen[1:] != key:
            then = ", ".join(f"{s} {d}" for s, d in zip(seen[2], seen[3]))
            now = ", ".join(f"{s} {d}" for s, d in zip(key[1], key[2]))
            raise BatchError(
                f"batch {index}: {what} changed what a batch holds: examples of ({now}) after ({then}) in batch {seen[0]}; "
                "every batch must hold the same parts, example shapes and dtypes"
            )


def _apply(transform: Any, batch: tuple[Any, ...], rng: Any, index: int) -> tuple[Any, ...]:
    x, y = (batch[0], batch[1]) if len(batch) > 1 else (batch[0], None)
    out = transform(x, y, rng)
    if not (isinstance(out, tuple) and len(out) == 2):
        raise BatchError(f"batch {index}: the transform returned a {type(out).__name__}; it must return (x, y)")
    return (out[0], out[1]) if len(batch) > 1 else (out[0],)


def _kind_of(dataset: Any) -> tuple[str, tuple[Any, ...]]:
    """``("arrays", arrays)``, ``("examples", ())`` or ``("batches", ())``; a TypeError for anything else."""
    parts = dataset if isinstance(dataset, tuple) else (dataset,) if hasattr(dataset, "shape") else None
    if parts is not None and parts and all(hasattr(a, "shape") and len(a.shape) >= 1 for a in parts):
        lengths = [int(a.shape[0]) for a in parts]
        if len(set(lengths)) != 1:
            raise ValueError(f"DataLoader: the arrays have {lengths} examples; they must have as many")
        if lengths[0] == 0:
            raise ValueError("DataLoader: the arrays hold no examples; pass at least one")
        return "arrays", tuple(parts)
    if hasattr(dataset, "__getitem__") and hasattr(dataset, "__len__") and not isinstance(dataset, (str, bytes, dict)):
        if len(dataset) == 0:
            raise ValueError(f"DataLoader: the dataset {type(dataset).__name__} holds no examples")
        return "examples", ()
    if hasattr(dataset, "__iter__") and not isinstance(dataset, (str, bytes, dict)):
        return "batches", ()
    raise TypeError(
        f"DataLoader: cannot read batches from a {type(dataset).__name__}; pass arrays (x, y), a dataset with __len__ and "
        "__getitem__, or an iterable of (x, y) batches"
    )


def _take(a: Any, idx: Any) -> Any:
    """Rows ``idx`` (a slice or NumPy indices) of ``a``: read from the file for a memory-mapped array, nothing else."""
    if isinstance(a, np.ndarray):
        if isinstance(idx, slice):
            return in_memory(a[idx])
        # np.take gathers whole rows (a copy in memory, as a[idx] makes) a third faster than fancy indexing
        # through np.memmap.__getitem__; the same rows, bit for bit
        return np.take(a.view(np.ndarray) if isinstance(a, np.memmap) else a, idx, axis=0)
    if isinstance(idx, slice):
        return a[idx, ...]
    xp = array_namespace(a)
    return xp.take(a, backends.adapter_for(a).from_numpy(idx, device(a)), axis=0)


def _stack(items: list[Any], index: int) -> tuple[Any, ...]:
    items = [item if isinstance(item, tuple) else (item,) for item in items]
    if len({len(item) for item in items}) != 1:
        raise BatchError(f"batch {index}: the dataset's examples have different numbers of parts")
    try:
        return tuple(np.stack([np.asarray(part) for part in parts]) for parts in zip(*items))
    except ValueError as exc:
        raise BatchError(f"batch {index}: the dataset's examples cannot be stacked ({exc}); they must share a shape") from None


def is_memmap(x: Any) -> bool:
    """Whether ``x`` is a NumPy memory-mapped array (``np.load(..., mmap_mode=...)`` or ``np.memmap``)."""
    return isinstance(x, np.memmap)


# -- transforms ---------------------------------------------------------------------------


class RandomShift:
    """Shift each image (N, C, H, W) by up to ``max_shift`` pixels in each direction, filling with zeros.

    The same as torchvision's ``RandomCrop(H, padding=max_shift)`` (zero padding, then a crop
    at a random offset), without the padded copy: one gather on the device
    (:func:`portnn.functional.translate`).

    Examples
    --------
    >>> import numpy as np
    >>> import portnn as pn
    >>> x = np.ones((2, 1, 4, 4), dtype=np.float32)
    >>> xs, y = pn.data.RandomShift(1)(x, None, np.random.default_rng(0))
    >>> xs.shape
    (2, 1, 4, 4)
    """

    def __init__(self, max_shift: int = 4) -> None:
        self.max_shift = check_int("RandomShift", "max_shift", max_shift, minimum=0, expected="an int >= 0")

    def __call__(self, x: Any, y: Any, rng: Any) -> tuple[Any, Any]:
        from .functional import translate

        if len(x.shape) != 4:
            raise ValueError(f"RandomShift: x has shape {tuple(x.shape)}; expected images (N, C, H, W)")
        shifts = rng.integers(-self.max_shift, self.max_shift + 1, size=(2, x.shape[0]))
        sy, sx = (backends.adapter_for(x).from_numpy(s, device(x)) for s in shifts)
        return translate(x, sy, sx, input_grad=False)[0], y

    def __repr__(self) -> str:
        return f"RandomShift({self.max_shift})"


class RandomFlip:
    """Mirror each image (N, ..., W) left to right with probability ``p``.

    Examples
    --------
    >>> import numpy as np
    >>> import portnn as pn
    >>> x = np.arange(6.0).reshape(2, 1, 1, 3)
    >>> pn.data.RandomFlip(p=1.0)(x, None, np.random.default_rng(0))[0][:, 0, 0]
    array([[2., 1., 0.],
           [5., 4., 3.]])
    """

    def __init__(self, p: float = 0.5) -> None:
        self.p = float(check_number("RandomFlip", "p", p, lambda v: 0.0 <= v <= 1.0, "a probability in [0, 1]"))

    def __call__(self, x: Any, y: Any, rng: Any) -> tuple[Any, Any]:
        xp = array_namespace(x)
        flip = rng.random(x.shape[0]) < self.p  # drawn on the host; a boolean mask on the device (no float64 there)
        mask = backends.adapter_for(x).from_numpy(flip, device(x))
        mask = xp.reshape(mask, (x.shape[0],) + (1,) * (len(x.shape) - 1))
        return xp.where(mask, xp.flip(x, axis=-1), x), y  # each value chosen, never computed: inf stays inf

    def __repr__(self) -> str:
        return f"RandomFlip(p={self.p})"


class Compose:
    """Transforms applied in order, each with the batch's generator."""

    def __init__(self, transforms: list[Any]) -> None:
        self.transforms = list(transforms)

    def __call__(self, x: Any, y: Any, rng: Any) -> tuple[Any, Any]:
        for t in self.transforms:
            x, y = t(x, y, rng)
        return x, y

    def __repr__(self) -> str:
        return f"Compose({self.transforms!r})"


def in_memory(rows: Any) -> Any:
    """Rows of a NumPy (memory-mapped) array as a writable array in memory: read here, in this thread, not later."""
    if isinstance(rows, np.memmap) or not rows.flags.writeable:  # a view of the file (a slice): read it now
        return np.array(rows)
    return rows  # rows gathered by an index array are a copy in memory already


def is_host_array(x: Any) -> bool:
    """Whether ``x`` is a NumPy array (memory-mapped or not)."""
    return isinstance(x, np.ndarray)

"""What ``fit(record=True)`` keeps: per-layer gradient norms and how often each unit is active."""

from __future__ import annotations

import math
from typing import Any

from array_api_compat import array_namespace

from . import backends
from .diagnostics import active_counts, active_threshold
from .layers.base import Layer


class Recorder:
    """Collects, during :meth:`portnn.Sequential.fit`, the records kept in ``History.records``.

    - ``"step"``: the global steps (0-based) at which gradient norms were taken (every ``every`` steps);
    - ``"grad_norm"``: layer name -> the L2 norm of all its parameters' gradients at those steps;
    - ``"active_fraction"``: activation-layer name -> one NumPy array per epoch, for each unit
      the fraction of the examples of that epoch's recorded steps on which it was active.

    Both are taken on the recorded steps only. Gradient norms stay on the device until the end
    of the epoch (no sync per step); the activity counts are one comparison and one column sum
    per activation layer and recorded step (about 10% of an MNIST MLP epoch when every step is
    recorded, 1% at ``every=10``).
    """

    def __init__(self, model: Any, every: int = 1) -> None:
        self.model, self.every = model, every
        self.weighted = [layer for layer in model.layers if layer.trainable]  # frozen layers have no gradients
        self.watched = {i: t for i, layer in enumerate(model.layers) if (t := active_threshold(layer)) is not None}
        self.records: dict[str, Any] = {
            "step": [],
            "grad_norm": {layer.name: [] for layer in self.weighted},
            "active_fraction": {model.layers[i].name: [] for i in self.watched},
        }
        self._norms: list[tuple[str, Any]] = []  # (layer name, squared norm on the device) since the last flush
        self._counts: dict[int, Any] = {}
        self._examples = 0
        self._recording = False

    def before_step(self, step: int) -> None:
        """Say which global step comes next (0-based): only every ``every``-th one is recorded."""
        self._recording = step % self.every == 0

    def observe(self, i: int, layer: Layer, out: Any) -> None:
        """Called by the forward pass with each layer's output (training batches only)."""
        threshold = self.watched.get(i)
        if threshold is not None and self._recording:
            counts = active_counts(out, threshold)
            self._counts[i] = counts if i not in self._counts else self._counts[i] + counts
            if i == next(iter(self.watched)):
                self._examples += out.shape[0]

    def after_step(self, step: int) -> None:
        """Take the gradient norms after the backward pass of global step ``step``, if it is a recorded one."""
        if not self._recording:
            return
        self.records["step"].append(step)
        for layer in self.weighted:
            grads = [p.grad for p in layer.parameters() if p.grad is not None]
            if grads:
                xp = array_namespace(*grads)
                self._norms.append((layer.name, sum(xp.sum(g * g) for g in grads)))
            else:
                self._norms.append((layer.name, None))  # no gradient this step: NaN in the records

    def flush(self) -> None:
        """Bring the gradient norms kept on the device to the host: one transfer (once per epoch)."""
        present = [squared for _, squared in self._norms if squared is not None]
        host = iter(backends.to_numpy(array_namespace(*present).stack(present)).tolist() if present else [])
        for name, squared in self._norms:
            self.records["grad_norm"][name].append(math.nan if squared is None else math.sqrt(next(host)))
        self._norms = []

    def reduce(self, comm: Any, *, keep: bool = True) -> None:
        """Sum this epoch's activity counts and example count over the ranks of ``comm`` (distributed fit).

        Every rank calls it. ``keep=False``: this rank drops the sums afterwards (another rank, the one
        writing a checkpoint, keeps them), so that the next reduction counts every example once.
        """
        if comm is None or comm.size == 1:
            return
        order = list(self.watched)
        counts = [self._counts.get(i) for i in order]
        summed = comm.sum_arrays([None if c is None else backends.to_numpy(c) for c in counts] + [[float(self._examples)]])
        if not keep:
            self.clear_partial()
            return
        backend = self.model.backend
        self._counts = {
            i: backend.adapter.from_numpy(total.astype(self.model.dtype), backend.device)
            for i, total in zip(order, summed)
            if total is not None
        }
        self._examples = int(summed[-1][0])

    def clear_partial(self) -> None:
        """Forget this epoch's activity counts so far (kept by another rank)."""
        self._counts, self._examples = {}, 0

    def end_epoch(self, comm: Any = None) -> None:
        """Close the epoch's records; with ``comm`` (a distributed fit, every rank calls it) the counts of all ranks."""
        self.flush()
        self.reduce(comm)
        for i in self.watched:
            name = self.model.layers[i].name
            counts = self._counts.get(i)
            if counts is not None:  # None only for an epoch that ran no step (resumed at its very end)
                self.records["active_fraction"][name].append(backends.to_numpy(counts).astype("float64") / max(self._examples, 1))
        self._counts, self._examples = {}, 0

    # -- for training checkpoints ---------------------------------------------------------
    def state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """``(JSON-able part, host arrays)`` of everything recorded so far, including this epoch's partial counts."""
        self.flush()
        tensors = {}
        for name, per_epoch in self.records["active_fraction"].items():
            for e, fraction in enumerate(per_epoch):
                tensors[f"active_fraction.{name}.{e}"] = fraction
        for i, counts in self._counts.items():
            tensors[f"counts.{self.model.layers[i].name}"] = backends.to_numpy(counts)
        meta = {
            "step": self.records["step"],
            "grad_norm": self.records["grad_norm"],
            "epochs": {name: len(v) for name, v in self.records["active_fraction"].items()},
            "examples": self._examples,
        }
        return meta, tensors

    def state_problem(self, meta: Any, tensors: dict[str, Any]) -> str | None:
        """What keeps a saved :meth:`state` from fitting this recorder's model, in words; None when it fits.

        Checked before a resume writes anything: the recorded steps, one gradient norm per step
        for each trainable layer, and the activity of each activation layer (one array of units
        per epoch, and this epoch's partial counts) under this model's layer names.
        """
        if not isinstance(meta, dict):
            return "the records are not a JSON object"
        step, norms, epochs, examples = meta.get("step"), meta.get("grad_norm"), meta.get("epochs"), meta.get("examples")
        if not (isinstance(step, list) and all(_count(s) for s in step)):
            return "the recorded steps are not a list of integers >= 0"
        if not _count(examples):
            return f"the example count {examples!r:.40} is not an integer >= 0"
        weighted = [layer.name for layer in self.weighted]
        if not isinstance(norms, dict) or sorted(norms) != sorted(weighted):
            kept = sorted(norms) if isinstance(norms, dict) else norms
            return f"gradient norms are kept for {kept!r:.80}, not {sorted(weighted)}"
        for name, values in norms.items():
            if not (isinstance(values, list) and len(values) == len(step) and all(_number(v) for v in values)):
                return f"the gradient norms of {name!r} are not {len(step)} numbers, one per recorded step"
        watched = [self.model.layers[i].name for i in self.watched]
        if not isinstance(epochs, dict) or sorted(epochs) != sorted(watched) or not all(_count(n) for n in epochs.values()):
            return f"activity is kept for {epochs!r:.80}, not for {sorted(watched)} with a count of epochs each"
        for name, n in epochs.items():
            arrays = [tensors.get(f"active_fraction.{name}.{e}") for e in range(n)]
            count = tensors.get(f"counts.{name}")
            shapes = {tuple(getattr(a, "shape", ())) for a in [*arrays, *([count] if count is not None else [])]}
            if any(a is None for a in arrays):
                return f"the activity of {name!r} lacks some of its {n} epochs"
            if len(shapes) > 1 or any(len(s) != 1 for s in shapes):
                return f"the activity arrays of {name!r} are not one vector of units ({sorted(shapes)})"
        return None

    def load_state(self, meta: dict[str, Any], tensors: dict[str, Any]) -> None:
        self.records["step"] = list(meta["step"])
        self.records["grad_norm"] = {k: list(v) for k, v in meta["grad_norm"].items()}
        self.records["active_fraction"] = {
            name: [tensors[f"active_fraction.{name}.{e}"] for e in range(n)] for name, n in meta["epochs"].items()
        }
        self._examples = int(meta["examples"])
        backend = self.model.backend
        self._counts = {
            i: backend.adapter.from_numpy(tensors[key], backend.device)
            for i in self.watched
            if (key := f"counts.{self.model.layers[i].name}") in tensors
        }


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)

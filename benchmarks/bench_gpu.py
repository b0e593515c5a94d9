"""Epoch times on a CUDA GPU: portnn on CuPy, portnn on torch CUDA tensors, and native PyTorch CUDA.

What it measures
----------------
Seconds per MNIST training epoch (60000 images, shuffled, float32) for two nets, each
trained by three contenders that do the same work:

``portnn-cupy``
    ``model.fit(x, y, epochs=1, verbose=0)`` with the CuPy backend on ``cuda:0``.
``portnn-torch-cuda``
    the same ``fit`` with the torch backend on ``cuda`` (portnn's own backward, torch tensors).
``torch-cuda``
    native PyTorch: ``torch.nn`` modules, autograd, ``torch.optim``, a ``randperm`` shuffle on
    the GPU and index batches; PyTorch's defaults otherwise (its TF32 settings are printed).

The nets are those of ``portnn train``:

``mlp``
    the default preset: 784-1024-10 ReLU MLP, SGD (lr 0.1, momentum 0.9), batch 128; a whole
    epoch is timed.
``cnn``
    ``--preset cnn``'s net (two 3x3 conv blocks of 16 and 32 channels with BatchNorm, ReLU
    and 2x2 max-pool; Linear 128, ReLU, Dropout 0.2; logits), Adam (lr 1e-3), batch 128,
    WITHOUT its RandomTranslation augmentation (PyTorch has no such layer; left out of all
    three alike). Only ``--cnn-steps`` steps are timed (an epoch on the first
    ``steps x 128`` images).

Where fewer than an epoch's 469 steps are timed (the CNN, or ``--limit``), the epoch time is
the median time per step times 469, and marked with ``*``.

The data (flattened or channels-first, scaled to [0, 1]) is put on the device once, before
timing, as each contender's user would. Every timing synchronizes the device before
reading the clock, at both ends. Per net the contenders alternate round-robin (one untimed
warm-up round of a few steps, which also compiles CuPy's kernels, then ``--repeats`` timed
rounds); the table shows the median. Afterwards each contender's test accuracy is printed
(not timed) to show that all three really train.

Paper target: portnn-cupy within 1.2x of torch-cuda per epoch, for each net: the script
prints the ratio and PASS or MISS (a MISS is a measurement, not an error: exit status 0).

Without a GPU it prints which contenders it cannot run and why, and exits 0 with the line
``bench_gpu: no CUDA contender can run here; nothing timed``. ``--cpu`` runs the same harness
with CPU stand-ins (portnn-numpy, portnn-torch-cpu, torch-cpu) on ``--limit`` images, to
check the script itself on a machine without a GPU; the 1.2x target is not judged there.

How to run, from the repository root::

    python benchmarks/bench_gpu.py                          # on a CUDA machine: both nets, 3 rounds
    python benchmarks/bench_gpu.py --nets mlp --repeats 1   # quicker
    python benchmarks/bench_gpu.py --cpu --limit 1024 --cnn-steps 2 --repeats 1   # the harness, on the CPU

MNIST is read, never downloaded, from ``--data-dir``, else ``$PORTNN_DATA_DIR``, else
``../shared/datasets/mnist`` next to the repository. Exit status: 0 when it ran (or had
nothing it could run), 2 when MNIST is missing or an option is wrong.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import portnn as pn
from portnn import backends
from portnn.cli import PRESETS, build_cnn, build_mlp

TARGET = 1.2
STEPS_PER_EPOCH = -(-60000 // 128)
DEFAULT_DATA_DIR = Path(__file__).resolve().parents[1] / ".." / "shared" / "datasets" / "mnist"
NETS = ("mlp", "cnn")


@dataclass
class Contender:
    """One way of training: ``kind`` is ``portnn`` (on ``backend``) or ``torch`` (native), on ``device``."""

    label: str
    kind: str
    backend: str | None
    device: str | None
    times: dict[str, list[float]] = field(default_factory=dict)
    accuracy: dict[str, float] = field(default_factory=dict)

    def unavailable(self) -> str | None:
        """Why this contender cannot run here, or None."""
        if self.kind == "portnn":
            adapter = backends.get_adapter(self.backend)
            why = adapter.import_error()
            if why is None:
                try:
                    adapter.device(self.device)
                except (ValueError, RuntimeError) as exc:
                    why = str(exc)
            return why
        try:
            import torch
        except ImportError as exc:
            return f"PyTorch is not importable ({exc})"
        if str(self.device).startswith("cuda") and not torch.cuda.is_available():
            return f"this PyTorch {torch.__version__} build sees no CUDA device (torch.cuda.is_available() is False)"
        return None


GPU_CONTENDERS = (
    ("portnn-cupy", "portnn", "cupy", "cuda:0"),
    ("portnn-torch-cuda", "portnn", "torch", "cuda"),
    ("torch-cuda", "torch", None, "cuda"),
)
CPU_CONTENDERS = (
    ("portnn-numpy", "portnn", "numpy", None),
    ("portnn-torch-cpu", "portnn", "torch", "cpu"),
    ("torch-cpu", "torch", None, "cpu"),
)


# -- data ---------------------------------------------------------------------------------
def load_data(data_dir: str | None, limit: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """MNIST images as float32 (N, 1, 28, 28) in [0, 1] and int64 labels; exits 2 when the files are absent."""
    data_dir = data_dir or os.environ.get("PORTNN_DATA_DIR") or str(DEFAULT_DATA_DIR)
    try:
        (x_train, y_train), (x_test, y_test) = pn.datasets.load_mnist(data_dir, download=False)
    except pn.datasets.DatasetError as exc:
        print(f"bench_gpu: MNIST not found; pass --data-dir or set PORTNN_DATA_DIR.\n{exc}", file=sys.stderr)
        raise SystemExit(2) from exc
    if limit is not None:
        x_train, y_train = x_train[:limit], y_train[:limit]
        x_test, y_test = x_test[:limit], y_test[:limit]

    def prepare(x: np.ndarray) -> np.ndarray:
        return x.reshape(len(x), 1, 28, 28).astype(np.float32) / np.float32(255)

    return prepare(x_train), y_train.astype(np.int64), prepare(x_test), y_test.astype(np.int64)


def net_inputs(net: str, x: np.ndarray) -> np.ndarray:
    """The images as ``net`` takes them: flat rows for the MLP, channels first for the CNN."""
    return x.reshape(len(x), 28 * 28) if net == "mlp" else x


# -- portnn -------------------------------------------------------------------------------
def portnn_net(net: str) -> pn.Sequential:
    """The net of ``portnn train`` (the CNN without its augmentation), built on the current backend."""
    preset = PRESETS[net]
    if net == "mlp":
        return build_mlp(28 * 28, preset["hidden"], 10, dropout=preset["dropout"], seed=0)
    return build_cnn((1, 28, 28), preset["channels"], preset["hidden"], 10, dropout=preset["dropout"], seed=0)


def portnn_optimizer(net: str) -> pn.optim.Optimizer:
    preset = PRESETS[net]
    if preset["optimizer"] == "sgd":
        return pn.optim.SGD(lr=preset["lr"], momentum=preset["momentum"])
    return pn.optim.Adam(lr=preset["lr"])


def run_portnn(c: Contender, net: str, x: np.ndarray, y: np.ndarray, xt: np.ndarray, yt: np.ndarray) -> float:
    """Seconds for one ``fit`` epoch over (x, y) on the contender's backend; also records test accuracy."""
    with pn.use_backend(c.backend, c.device) as backend:
        adapter = backend.adapter
        xd, yd = adapter.from_numpy(net_inputs(net, x), backend.device), adapter.from_numpy(y, backend.device)
        model, optimizer = portnn_net(net), portnn_optimizer(net)
        adapter.synchronize(backend.device)
        start = time.perf_counter()
        model.fit(xd, yd, loss=pn.losses.CrossEntropy(), optimizer=optimizer, epochs=1, batch_size=128, seed=0, verbose=0)
        adapter.synchronize(backend.device)
        seconds = time.perf_counter() - start
        logits = model.predict(adapter.from_numpy(net_inputs(net, xt), backend.device))
        c.accuracy[net] = float(np.mean(np.argmax(backends.to_numpy(logits), axis=1) == yt))
    return seconds


# -- native PyTorch -----------------------------------------------------------------------
def torch_net(net: str) -> Any:
    import torch.nn as tnn

    preset = PRESETS[net]
    if net == "mlp":
        return tnn.Sequential(tnn.Linear(28 * 28, preset["hidden"][0]), tnn.ReLU(), tnn.Linear(preset["hidden"][0], 10))
    layers: list[Any] = []
    c, side = 1, 28
    for width in preset["channels"]:
        layers += [tnn.Conv2d(c, width, 3, padding=1), tnn.BatchNorm2d(width), tnn.ReLU(), tnn.MaxPool2d(2)]
        c, side = width, side // 2
    hidden = preset["hidden"][0]
    layers += [tnn.Flatten(), tnn.Linear(c * side * side, hidden), tnn.ReLU(), tnn.Dropout(preset["dropout"])]
    layers.append(tnn.Linear(hidden, 10))
    return tnn.Sequential(*layers)


def run_torch(c: Contender, net: str, x: np.ndarray, y: np.ndarray, xt: np.ndarray, yt: np.ndarray) -> float:
    """Seconds for one native PyTorch epoch over (x, y) on the contender's device; also records test accuracy."""
    import torch

    device = torch.device(c.device)
    torch.manual_seed(0)
    model = torch_net(net).to(device)
    preset = PRESETS[net]
    if preset["optimizer"] == "sgd":
        optimizer = torch.optim.SGD(model.parameters(), lr=preset["lr"], momentum=preset["momentum"])
    else:
        optimizer = torch.optim.Adam(model.parameters(), lr=preset["lr"])
    xd = torch.from_numpy(net_inputs(net, x)).to(device)
    yd = torch.from_numpy(y).to(device)
    generator = torch.Generator(device=device).manual_seed(0)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    model.train()
    sync()
    start = time.perf_counter()
    order = torch.randperm(len(xd), device=device, generator=generator)
    loss_sum = torch.zeros((), device=device)
    for i in range(0, len(xd), 128):
        idx = order[i : i + 128]
        loss = torch.nn.functional.cross_entropy(model(xd[idx]), yd[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum += loss.detach()
    sync()
    seconds = time.perf_counter() - start
    model.eval()
    with torch.no_grad():
        logits = model(torch.from_numpy(net_inputs(net, xt)).to(device))
    c.accuracy[net] = float((logits.argmax(dim=1).cpu().numpy() == yt).mean())
    return seconds


def run(c: Contender, net: str, *data: np.ndarray) -> float:
    return (run_portnn if c.kind == "portnn" else run_torch)(c, net, *data)


# -- the report ---------------------------------------------------------------------------
def verdict(ratio: float, cpu: bool) -> str:
    if cpu:
        return "not judged (CPU stand-ins)"
    return "PASS" if ratio <= TARGET else "MISS"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nets", default="mlp,cnn", help="comma-separated: mlp, cnn (default both)")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds per net (default 3)")
    parser.add_argument("--cnn-steps", type=int, default=100, help="CNN steps timed per round (default 100)")
    parser.add_argument("--warmup-steps", type=int, default=5, help="steps of the untimed warm-up round (default 5)")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--limit", type=int, default=None, help="train on the first N images only (default: all 60000)")
    parser.add_argument("--cpu", action="store_true", help="CPU stand-ins for the three contenders: checks the harness")
    args = parser.parse_args(argv)
    nets = [n.strip() for n in args.nets.split(",") if n.strip()]
    bad = [n for n in nets if n not in NETS]
    if bad or not nets or min(args.repeats, args.cnn_steps, args.warmup_steps) < 1:
        parser.error(f"--nets takes {', '.join(NETS)} (got {args.nets!r}); --repeats, --cnn-steps, --warmup-steps >= 1")

    table = CPU_CONTENDERS if args.cpu else GPU_CONTENDERS
    contenders = [Contender(*row) for row in table]
    runnable = []
    for c in contenders:
        why = c.unavailable()
        if why:
            print(f"bench_gpu: cannot run {c.label}: {why}")
        else:
            runnable.append(c)
    if not runnable:
        print("bench_gpu: no CUDA contender can run here; nothing timed")
        return 0

    x, y, xt, yt = load_data(args.data_dir, args.limit)
    versions = [f"portnn {pn.__version__}", f"numpy {np.__version__}"]
    for module in ("cupy", "torch"):
        try:
            versions.append(f"{module} {__import__(module).__version__}")
        except ImportError:
            pass
    print("bench_gpu: " + ", ".join(versions) + f"; {len(x)} training images")
    try:
        import torch

        if torch.cuda.is_available():
            print(
                f"bench_gpu: {torch.cuda.get_device_name(0)}; torch TF32 matmul "
                f"{torch.backends.cuda.matmul.allow_tf32}, cuDNN TF32 {torch.backends.cudnn.allow_tf32}"
            )
    except ImportError:
        pass

    for net in nets:
        n_timed = len(x) if net == "mlp" else min(len(x), args.cnn_steps * 128)
        warm = min(len(x), args.warmup_steps * 128)
        for c in runnable:  # one untimed short round: CuPy compiles its kernels, cuDNN picks algorithms
            run(c, net, x[:warm], y[:warm], xt, yt)
        for _ in range(args.repeats):
            for c in runnable:
                c.times.setdefault(net, []).append(run(c, net, x[:n_timed], y[:n_timed], xt, yt))
        steps = -(-n_timed // 128)
        print(f"\n{net}: {steps} steps of batch 128 timed per round, median of {args.repeats} rounds")
        ref = contenders[-1] if contenders[-1] in runnable else None  # native PyTorch
        header = f"  {'contender':<20}{'ms/step':>10}{'s/epoch':>10}{'vs ' + (ref.label if ref else '-'):>16}{'test acc':>10}"
        print(header)
        for c in runnable:
            per_step = statistics.median(c.times[net]) / steps
            epoch = per_step * STEPS_PER_EPOCH
            ratio = per_step / (statistics.median(ref.times[net]) / steps) if ref else float("nan")
            scaled = "" if steps == STEPS_PER_EPOCH else "*"
            print(f"  {c.label:<20}{per_step * 1e3:>10.2f}{epoch:>9.2f}{scaled:1}{ratio:>15.2f}x{c.accuracy[net]:>10.4f}")
        if steps != STEPS_PER_EPOCH:
            print(f"  * {STEPS_PER_EPOCH} steps x the median ms/step (a full epoch of 60000 images)")
        first = contenders[0] if contenders[0] in runnable else None  # portnn on CuPy (NumPy with --cpu)
        if first is not None and ref is not None:
            ratio = statistics.median(first.times[net]) / statistics.median(ref.times[net])
            print(f"TARGET {net}: {first.label} / {ref.label} = {ratio:.2f}x (target <= {TARGET}x): {verdict(ratio, args.cpu)}")
        else:
            missing = ", ".join(c.label for c in contenders if c not in runnable)
            print(f"TARGET {net}: not judged ({missing} could not run)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""How fast is one training step of a transformer block in portnn, next to PyTorch on the CPU?

What it measures
----------------
One pre-norm transformer block at batch 64, 64 tokens, width 128, 4 heads (the issue's
reference): ``x + MHA(LayerNorm(x))`` then ``x + Linear(GELU(Linear(LayerNorm(x))))`` (MLP
width 512, GELU tanh form), a mean-squared error against a fixed target, one Adam step. Per
step: forward, backward, update.

``portnn``  ``model.train_step`` on the NumPy backend, float32 — the block built from
            ``Residual``, ``LayerNorm``, ``MultiHeadAttention``, ``Linear`` and ``GELU``.
``torch``   the same block in ``torch.nn`` (``MultiheadAttention(batch_first=True)``), the
            same weights (loaded from portnn's ``state_dict``), ``torch.optim.Adam``, CPU,
            float32, default threads.

The contenders alternate for ``--repeats`` rounds of ``--steps`` steps after a warm-up; the
table gives the median milliseconds per step and the ratio. Target: portnn <= 1.5x torch.
With ``--profile`` it also prints where portnn's time goes (cProfile, by own time).

How to run, from the repository root::

    python benchmarks/bench_transformer.py
    python benchmarks/bench_transformer.py --repeats 3 --steps 10 --profile
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time

import numpy as np
from _profile import print_profile

import portnn as pn

BATCH, TOKENS, WIDTH, HEADS = 64, 64, 128, 4


def portnn_block(seed: int = 0) -> pn.Sequential:
    L = pn.layers
    return pn.Sequential(
        [
            L.Residual([L.LayerNorm(WIDTH), L.MultiHeadAttention(WIDTH, HEADS)]),
            L.Residual([L.LayerNorm(WIDTH), L.Linear(WIDTH, 4 * WIDTH), L.GELU(approximate="tanh"), L.Linear(4 * WIDTH, WIDTH)]),
        ],
        seed=seed,
        input_shape=(TOKENS, WIDTH),
    )


def torch_block(model: pn.Sequential):  # noqa: ANN201 - torch is optional
    import torch

    class Attention(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.mha = torch.nn.MultiheadAttention(WIDTH, HEADS, batch_first=True)

        def forward(self, x):  # noqa: ANN001, ANN202
            return self.mha(x, x, x, need_weights=False)[0]

    class Residual(torch.nn.Module):
        def __init__(self, block: torch.nn.Module) -> None:
            super().__init__()
            self.block = block

        def forward(self, x):  # noqa: ANN001, ANN202
            return x + self.block(x)

    net = torch.nn.Sequential(
        Residual(torch.nn.Sequential(torch.nn.LayerNorm(WIDTH), Attention())),
        Residual(
            torch.nn.Sequential(
                torch.nn.LayerNorm(WIDTH),
                torch.nn.Linear(WIDTH, 4 * WIDTH),
                torch.nn.GELU(approximate="tanh"),
                torch.nn.Linear(4 * WIDTH, WIDTH),
            )
        ),
    )
    names = [name for name, _ in net.state_dict().items()]
    values = list(model.state_dict().values())
    assert len(names) == len(values), (names, list(model.state_dict()))
    net.load_state_dict({n: torch.from_numpy(np.array(v)) for n, v in zip(names, values)})  # same order, same tensors
    return net


def run_portnn(model: pn.Sequential, opt: pn.optim.Adam, batches: list[tuple[np.ndarray, np.ndarray]]) -> float:
    loss = pn.losses.MSE()
    start = time.perf_counter()
    for x, y in batches:
        model.train_step(x, y, loss, opt, validate=False)
    return (time.perf_counter() - start) / len(batches)


def run_torch(net, opt, batches) -> float:  # noqa: ANN001
    import torch

    start = time.perf_counter()
    for x, y in batches:
        opt.zero_grad()
        torch.nn.functional.mse_loss(net(x), y).backward()
        opt.step()
    return (time.perf_counter() - start) / len(batches)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args(argv)

    rng = np.random.default_rng(0)
    xs = rng.standard_normal((args.steps, BATCH, TOKENS, WIDTH), dtype=np.float32)
    ys = rng.standard_normal((args.steps, BATCH, TOKENS, WIDTH), dtype=np.float32)
    batches = list(zip(xs, ys))
    try:
        import torch

        torch_batches = [(torch.from_numpy(x), torch.from_numpy(y)) for x, y in batches]
        print(f"numpy {np.__version__}, torch {torch.__version__} ({torch.get_num_threads()} threads)")
    except ImportError as exc:
        torch = None
        print(f"torch unavailable ({exc}): timing portnn alone")

    model = portnn_block()
    opt = pn.optim.Adam(model.parameters(), lr=1e-3)
    net = topt = None
    if torch is not None:
        net = torch_block(portnn_block())
        topt = torch.optim.Adam(net.parameters(), lr=1e-3)
        with torch.no_grad():  # the same function: outputs agree before timing
            gap = np.max(np.abs(net(torch_batches[0][0]).numpy() - pn.to_numpy(model.predict(xs[0]))))
        print(f"max |portnn - torch| on one batch: {gap:.2e}")
    run_portnn(model, opt, batches[:2])  # warm-up
    if torch is not None:
        run_torch(net, topt, torch_batches[:2])
    times: dict[str, list[float]] = {"portnn": [], "torch": []}
    for _ in range(args.repeats):
        gc.collect()
        times["portnn"].append(run_portnn(model, opt, batches))
        if torch is not None:
            gc.collect()
            times["torch"].append(run_torch(net, topt, torch_batches))

    p = statistics.median(times["portnn"]) * 1e3
    print(f"\ntransformer block train step, batch {BATCH}, {TOKENS} tokens, width {WIDTH}, {HEADS} heads,")
    print(f"median of {args.repeats} x {args.steps} steps")
    print("| contender | ms/step |")
    print("|---|---:|")
    print(f"| portnn (numpy) | {p:.2f} |")
    if times["torch"]:
        t = statistics.median(times["torch"]) * 1e3
        print(f"| torch (CPU) | {t:.2f} |")
        print(f"\nportnn / torch = {p / t:.2f}x  (target <= 1.50x: {'PASS' if p / t <= 1.5 else 'MISS'})")

    if args.profile:
        print_profile(lambda: run_portnn(model, opt, batches))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

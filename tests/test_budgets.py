"""Operation and sync budgets of a training step (issue 13), counted by :class:`portnn.testing.OpCounter` on NumPy.

On a GPU every array operation is a kernel launch and every read of a value on the host a wait
for the device. The counts are those of the portable path (the NumPy adapter's own kernels
off) with CuPy's fused optimizer kernels counted as the one launch each they are there.
``benchmarks/bench_ops.py`` prints the same table.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import portnn as pn
from portnn.backends._base import OPTIMIZER_KERNELS
from portnn.backends.cupy import OPTIMIZER_KERNELS as CUPY_KERNELS
from portnn.cli import build_cnn
from portnn.layers import Parameter
from portnn.testing import OpCounter

BATCH = 128


def mlp() -> pn.Sequential:
    return pn.Sequential([pn.layers.Linear(784, 1024), pn.layers.ReLU(), pn.layers.Linear(1024, 10)], seed=0)


def cnn() -> pn.Sequential:
    """``portnn train --preset cnn``'s network without its augmentation layer."""
    return build_cnn((1, 28, 28), [16, 32], [128], 10, dropout=0.2, augment=0, seed=0)


def data(shape: tuple[int, ...], n: int = BATCH) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.random((n, *shape), dtype=np.float32), rng.integers(0, 10, n)


def one_step(model: Any, opt: Any, shape: tuple[int, ...], kernels: tuple[str, ...] = ()) -> OpCounter:
    """The counter of one train_step (the third: the optimizer's state and the generic path's constants exist)."""
    loss = pn.losses.CrossEntropy()
    opt.bind(model.parameters())
    x, y = data(shape)
    model.train_step(x, y, loss, opt, validate=False)
    with OpCounter(model, opt, kernels=kernels):  # the generic path's constants (made once per device) exist
        model.train_step(x, y, loss, opt, validate=False)
    with OpCounter(model, opt, kernels=kernels, sites=True) as counter:
        model.train_step(counter.track(x), counter.track(y), loss, opt, validate=False)
    return counter


def by_file(counter: OpCounter, prefix: str) -> int:
    return sum(n for site, n in counter.sites.items() if site.startswith(prefix))


# -- the budgets -------------------------------------------------------------------------------


def test_mlp_adam_step_within_40_launches() -> None:
    """MLP 784-1024-10 with Adam: <= 40 operations (89 before the flat buffers and the fused loss); no host read."""
    counter = one_step(mlp(), pn.optim.Adam(lr=1e-3), (784,), CUPY_KERNELS)
    assert counter.ops <= 40, (counter.ops, counter.sites)
    assert counter.reads == 0, counter.read_names
    # the optimizer: one concatenation of the gradients into the flat buffer, then one kernel
    assert by_file(counter, "optim/") == 1 + 1, counter.sites
    assert counter.names.get("kernel:adam") == 1


def test_mlp_adam_generic_path_count() -> None:
    """Without fused kernels (NumPy, torch): Adam is 13 operations over the flat buffer, not 13 per parameter."""
    counter = one_step(mlp(), pn.optim.Adam(lr=1e-3), (784,))
    assert by_file(counter, "optim/") == 1 + 13, counter.sites
    assert counter.ops <= 45, (counter.ops, counter.sites)


def test_cross_entropy_with_labels_is_14_operations() -> None:
    counter = one_step(mlp(), pn.optim.SGD(lr=0.1), (784,), CUPY_KERNELS)
    assert by_file(counter, "functional/losses.py") == 14, counter.sites  # 19 with the one-hot


def test_cnn_adam_step_budget_reached() -> None:
    """The 2-conv BatchNorm CNN with Adam: <= 130 operations (220 on the generic path before, 247-337 before that), no host read.

    129 today: BatchNorm 52 (moments 8, forward 12, backward 18, running statistics 14), max-pool 10
    (forward 4, backward 6), convolution 27 (col2im 10), ReLU 12, the loss 14, Linear 10, Dropout 2,
    the optimizer 2 (one concatenation of the 12 gradients, one kernel).
    """
    counter = one_step(cnn(), pn.optim.Adam(lr=1e-3), (1, 28, 28), CUPY_KERNELS)
    assert counter.reads == 0, counter.read_names
    assert by_file(counter, "optim/") == 1 + 1, counter.sites  # one concatenation of 12 gradients, one kernel
    assert by_file(counter, "functional/pooling.py") <= 10, counter.sites  # 72 with a pass per kernel offset
    assert counter.ops <= 130, (counter.ops, sorted(counter.sites.items(), key=lambda kv: -kv[1]))


def test_the_counter_switches_every_numpy_kernel_off() -> None:
    """The count is the generic path's (a GPU's launches), not NumPy's own kernels'; fast_paths=True counts those."""
    generic = one_step(cnn(), pn.optim.Adam(lr=1e-3), (1, 28, 28), CUPY_KERNELS)
    assert not any(site.startswith("backends/numpy.py") for site in generic.sites), generic.sites
    model, opt = cnn(), pn.optim.Adam(lr=1e-3)
    opt.bind(model.parameters())
    x, y = data((1, 28, 28))
    loss = pn.losses.CrossEntropy()
    model.train_step(x, y, loss, opt, validate=False)
    with OpCounter(model, opt, fast_paths=True, sites=True) as counter:
        model.train_step(counter.track(x), counter.track(y), loss, opt, validate=False)
    assert any(site.startswith("backends/numpy.py") for site in counter.sites), counter.sites


# -- no host read inside fit's steps ---------------------------------------------------------------


class _Reads(pn.callbacks.Callback):
    """Host reads between consecutive batch starts (on_train_batch_begin needs no loss: no sync forced)."""

    def __init__(self, counter: OpCounter) -> None:
        self.counter, self.at = counter, []

    def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
        self.at.append(self.counter.reads)


def small_fit(steps_per_execution: Any, callbacks: Any = (), steps: int = 12, **kwargs: Any) -> tuple[Any, list[int]]:
    model = pn.Sequential([pn.layers.Linear(6, 8), pn.layers.ReLU(), pn.layers.Linear(8, 3)], seed=0)
    rng = np.random.default_rng(1)
    x, y = rng.random((8 * steps, 6), dtype=np.float32), rng.integers(0, 3, 8 * steps)
    opt = pn.optim.Adam(lr=1e-2)
    with OpCounter(model) as counter:
        reads = _Reads(counter)
        history = model.fit(counter.track(x), counter.track(y), loss=pn.losses.CrossEntropy(), optimizer=opt, epochs=2,
                            batch_size=8, verbose=0, callbacks=[reads, *callbacks], shuffle=True,
                            steps_per_execution=steps_per_execution, **kwargs)  # fmt: skip
    deltas = [b - a for a, b in zip(reads.at, reads.at[1:])]
    return history, deltas


def test_fit_reads_the_losses_every_n_steps_only() -> None:
    history, deltas = small_fit(4)
    # within an epoch of 12 steps: one read (the stacked losses) after steps 4 and 8, none in the others
    first_epoch = deltas[:11]
    assert first_epoch == [0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0], deltas
    assert len(history["loss"]) == 2


def test_a_callback_that_needs_batch_losses_gets_them_every_step() -> None:
    seen = []
    log = pn.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: seen.append(logs["loss"]))
    _, deltas = small_fit("auto", [log])
    assert len(seen) == 24 and all(isinstance(v, float) for v in seen)
    assert all(d >= 1 for d in deltas[:11]), deltas


def test_schedules_need_no_batch_losses() -> None:
    schedule = pn.optim.schedules.CosineAnnealingLR(T_max=24, interval="step")
    assert not schedule.needs_batch_logs and not pn.callbacks.CallbackList([schedule]).needs_batch_logs
    _, deltas = small_fit(4, [schedule])
    assert deltas[:11] == [0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0], deltas


@pytest.mark.parametrize("n", [1, 5, "auto"])
def test_the_epoch_loss_is_the_same_bits_whatever_the_read_interval(n: Any) -> None:
    reference, _ = small_fit(1)
    history, _ = small_fit(n)
    assert history["loss"] == reference["loss"]
    assert history["accuracy"] == reference["accuracy"]


class _Poison(pn.callbacks.Callback):
    """Before batch ``at`` of the first epoch, a weight becomes NaN (needs no batch losses: no sync forced)."""

    def __init__(self, at: int) -> None:
        self.at = at

    def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
        if batch == self.at and self.model is not None:
            self.model.layers[0].weight.data[0, 0] = float("nan")


@pytest.mark.parametrize("n", [1, 4, "auto"])
def test_a_nan_names_the_first_bad_step(n: Any) -> None:
    with pytest.raises(FloatingPointError, match=r"in epoch 1, step 6 \(batch 40:48\)"):
        small_fit(n, [_Poison(5)])


def test_steps_per_execution_is_checked() -> None:
    with pytest.raises(ValueError, match="steps_per_execution"):
        small_fit(0)
    with pytest.raises(TypeError, match="steps_per_execution"):
        small_fit("often")


# -- the fused optimizer paths equal the per-parameter path ------------------------------------------

OPTIMIZERS = {
    "sgd": lambda: pn.optim.SGD(lr=0.1),
    "sgd-momentum-wd": lambda: pn.optim.SGD(lr=0.1, momentum=0.9, weight_decay=1e-2),
    "nesterov": lambda: pn.optim.SGD(lr=0.1, momentum=0.9, nesterov=True),
    "adam-l2": lambda: pn.optim.Adam(lr=1e-2, weight_decay=1e-2),
    "adamw": lambda: pn.optim.AdamW(lr=1e-2),
    "amsgrad": lambda: pn.optim.Adam(lr=1e-2, amsgrad=True),
    "rmsprop": lambda: pn.optim.RMSprop(lr=1e-2, momentum=0.5, centered=True),
    "adagrad": lambda: pn.optim.AdaGrad(lr=1e-1),
}


def trajectory(case: Any, make: Any, *, fuse: bool, kernels: tuple[str, ...] = (), steps: int = 4) -> Any:
    rng = np.random.default_rng(2)
    shapes = [(3, 4), (4,), (2, 3, 2), (1,)]
    params = [Parameter(case.asarray(rng.standard_normal(s), "float32")) for s in shapes]
    grads = [[rng.standard_normal(s).astype(np.float32) for s in shapes] for _ in range(steps)]
    opt = make()
    opt.fuse = fuse
    opt.bind(params)
    with OpCounter(kernels=kernels) if kernels else _nothing():
        for g_t in grads:
            for p, g in zip(params, g_t):
                p.grad = case.asarray(g, "float32")
            opt.step()
    state = {(i, k): pn.to_numpy(v) for i, e in opt.state_dict()["state"].items() for k, v in e.items() if k != "step"}
    return [pn.to_numpy(p.data) for p in params], state, opt


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_flat_buffers_give_the_same_bits(case: Any, name: str) -> None:
    """One flat buffer per dtype (parameters and state are views into it) = the per-parameter path, bit for bit."""
    if not case.backend.adapter.inplace:
        pytest.skip(f"{case.name} has no in-place writes: always the per-parameter path")
    fused_params, fused_state, opt = trajectory(case, OPTIMIZERS[name], fuse=True)
    params, state, _ = trajectory(case, OPTIMIZERS[name], fuse=False)
    assert opt._groups, "the flat path did not run"
    for a, b in zip(fused_params, params, strict=True):
        np.testing.assert_array_equal(a, b)
    assert fused_state.keys() == state.keys()
    for key in state:
        np.testing.assert_array_equal(fused_state[key], state[key], err_msg=str(key))


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_kernel_references_equal_the_generic_update(name: str) -> None:
    """The formula every fused kernel must compute (run on NumPy) gives the generic path's bits."""
    numpy_case = _NumpyCase()
    fused_params, fused_state, _ = trajectory(numpy_case, OPTIMIZERS[name], fuse=True, kernels=tuple(OPTIMIZER_KERNELS))
    params, state, _ = trajectory(numpy_case, OPTIMIZERS[name], fuse=False)
    for a, b in zip(fused_params, params, strict=True):
        np.testing.assert_array_equal(a, b)
    for key in state:
        np.testing.assert_array_equal(fused_state[key], state[key], err_msg=str(key))


class _NumpyCase:
    def asarray(self, a: Any, dtype: str) -> Any:
        return np.asarray(a, dtype=dtype)


def test_cupy_kernels_equal_the_generic_update() -> None:
    """On a GPU: CuPy's ElementwiseKernels against the generic path (equal up to fused multiply-adds)."""
    if "cupy" not in pn.backends.available_backends():
        pytest.skip("cupy backend unavailable: no CUDA device")
    import cupy

    class CupyCase:
        def asarray(self, a: Any, dtype: str) -> Any:
            return cupy.asarray(np.asarray(a, dtype=dtype))

    for name in ("sgd", "sgd-momentum-wd", "nesterov", "adam-l2", "adamw"):
        fused_params, fused_state, opt = trajectory(CupyCase(), OPTIMIZERS[name], fuse=True)
        params, state, _ = trajectory(CupyCase(), OPTIMIZERS[name], fuse=False)
        for a, b in zip(fused_params, params, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7, err_msg=name)
        for key in state:
            np.testing.assert_allclose(fused_state[key], state[key], rtol=1e-6, atol=1e-7, err_msg=f"{name} {key}")


def test_replaced_parameters_are_gathered_again() -> None:
    """Weights loaded from outside (a new array) join the flat buffer at the next step; the old view is not updated."""
    params = [Parameter(np.ones((2, 2), np.float32)), Parameter(np.ones(3, np.float32))]
    opt = pn.optim.SGD(params, lr=0.5)
    for p in params:
        p.grad = np.ones(p.shape, np.float32)
    opt.step()
    params[0].data = np.full((2, 2), 10.0, np.float32)
    opt.step()
    np.testing.assert_array_equal(params[0].data, np.full((2, 2), 9.5, np.float32))
    np.testing.assert_array_equal(params[1].data, np.zeros(3, np.float32))
    assert params[0].data.base is params[1].data.base


def test_the_counter_puts_plain_arrays_back() -> None:
    model, opt = mlp(), pn.optim.Adam(lr=1e-3)
    counter = one_step(model, opt, (784,))
    assert counter.ops > 0
    for _, p in model.named_parameters():
        assert type(p.data) is np.ndarray
    for entries in opt.state.values():
        assert all(type(v) is np.ndarray for v in entries.values() if hasattr(v, "shape"))
    model.train_step(*data((784,)), pn.losses.CrossEntropy(), opt)  # and training goes on


# -- distributed: the ranks' sum made in the optimizer's flat gradient buffer -----------------------


class _SumComm:
    """An mpi4py-like communicator of 2 ranks whose other rank contributes ``others`` to every sum."""

    def __init__(self, others: np.ndarray) -> None:
        self.others, self.calls = others, 0

    def Get_rank(self) -> int:
        return 1

    def Get_size(self) -> int:
        return 2

    def Allreduce(self, sendbuf: Any, recvbuf: Any, op: Any = None) -> None:
        self.calls += 1
        recvbuf += self.others


def test_gradients_are_summed_in_the_optimizers_buffer() -> None:
    pytest.importorskip("mpi4py")
    model = pn.Sequential([pn.layers.Linear(3, 2), pn.layers.ReLU(), pn.layers.Linear(2, 1)], seed=0)
    params = model.parameters()
    opt = pn.optim.SGD(params, lr=0.5)
    opt.fuse = True  # the flat path, as on a GPU (on NumPy the default updates parameter by parameter)
    rng = np.random.default_rng(0)
    grads = [rng.normal(size=p.shape).astype(np.float32) for p in params]
    others = rng.normal(size=sum(p.size for p in params)).astype(np.float32)
    comm = pn.distributed.Communicator(_SumComm(others), blas_threads=None)
    comm.shard(0, 4)
    for p, g in zip(params, grads):
        p.grad = g.copy()
    flat, views = opt.gradient_buffer(params)
    comm.allreduce_gradients(params, 2, mean=True, into=(flat, views))
    assert all(p.grad is v for p, v in zip(params, views))  # the sum's own views: the step copies nothing
    before = [np.array(p.data) for p in params]
    with OpCounter(model, opt) as counter:
        opt.step()
    # one concatenation: the parameters' (the first step gathers them); the gradients are not copied
    assert counter.names.get("concat", 0) + counter.names.get("concatenate", 0) == 1, counter.names
    offset = 0
    for p, g, old in zip(params, grads, before):
        summed = g * np.float32(0.5) + others[offset : offset + p.size].reshape(p.shape)
        np.testing.assert_allclose(p.data, old - 0.5 * summed, rtol=1e-6)
        offset += p.size
    for p, g in zip(params, grads):  # gradients of their own: the step concatenates them into the buffer (once)
        p.grad = g.copy()
    with OpCounter(model, opt) as counter:
        opt.step()
    assert counter.names.get("concat", 0) + counter.names.get("concatenate", 0) == 1, counter.names


def test_a_parameter_unfrozen_later_keeps_the_others_momentum() -> None:
    """Parameters whose state differs (one joins after two steps) are updated one by one: same bits as without fusion."""
    results = []
    for fuse in (True, False):
        rng = np.random.default_rng(3)
        params = [Parameter(rng.standard_normal((3, 2)).astype(np.float32)) for _ in range(3)]
        params[2].trainable = False
        opt = pn.optim.SGD(params, lr=0.1, momentum=0.9)
        opt.fuse = fuse
        for t in range(5):
            if t == 2:
                params[2].trainable = True
            for p in params:
                p.grad = rng.standard_normal((3, 2)).astype(np.float32) if p.trainable else None
            opt.step()
        results.append([np.array(p.data) for p in params])
    for a, b in zip(*results, strict=True):
        np.testing.assert_array_equal(a, b)


def test_counting_on_torch() -> None:
    """On the torch backend every call on any tensor counts (a TorchFunctionMode): the same step, PyTorch's count.

    45 where NumPy counts 41: array-api-compat's torch wrappers add a few (``take_along_axis``'s index check,
    ``astype``'s ``to``).
    """
    pytest.importorskip("torch", reason="counting on the torch backend needs PyTorch: pip install torch==2.13.0")
    with pn.use_backend("torch"):
        model, opt, loss = mlp(), pn.optim.Adam(lr=1e-3), pn.losses.CrossEntropy()
        opt.bind(model.parameters())
        opt.fuse = True  # the flat path a GPU takes, from the warm-up on (torch on the CPU updates parameter by parameter)
        x, y = (pn.backends.as_backend_array(a, model.backend) for a in data((784,)))
        for _ in range(2):
            model.train_step(x, y, loss, opt, validate=False)
        with OpCounter(model, opt, sites=True) as counter:
            value, _ = model.train_step(counter.track(x), counter.track(y), loss, opt, validate=False)
            assert counter.reads == 0, counter.read_names
            float(value)
        assert counter.reads == 1 and counter.read_names == {"__float__": 1}
        assert 40 <= counter.ops <= 45, (counter.ops, counter.names)
        assert by_file(counter, "optim/") == 1 + 13, counter.sites
        model.train_step(x, y, loss, opt)  # the mode is gone: training goes on

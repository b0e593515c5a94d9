"""Layers made of layers: registration and names, Residual and Parallel through the op harness, and nested models
through fit, freeze, to, save/load, transfer, summary, resume, records and PyTorch state dicts."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import portnn as pn
from portnn.layers import (
    BatchNorm1d,
    BatchNorm2d,
    Conv2d,
    Dropout,
    Flatten,
    Layer,
    Linear,
    Parallel,
    ReLU,
    Residual,
    ShapeError,
)
from portnn.testing import check_layer

torch = pytest.importorskip("torch", reason="torch.nn modules are the oracles here: pip install torch==2.13.0")
nn = torch.nn


# -- registration and names -------------------------------------------------------------------------
class Block(Layer):
    """A composite of the user's: children as attributes, a list of layers, and a parameter of its own."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = self.add_parameter("scale", np.ones((1,), dtype=np.float32), regularize=False)
        self.fc1 = Linear(3, 4, seed=0)
        self.acts = [ReLU(), ReLU()]
        self.fc2 = Linear(4, 3, seed=1)


def test_children_register_in_assignment_order_with_pytorch_names():
    block = Block()
    assert [n for n, _ in block.named_children()] == ["fc1", "acts.0", "acts.1", "fc2"]
    assert [n for n, _ in block.named_parameters()] == ["scale", "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
    assert [n for n, _ in block.named_parameters("0.")][:2] == ["0.scale", "0.fc1.weight"]
    assert [n for n, _ in block.named_modules()] == ["", "fc1", "acts.0", "acts.1", "fc2"]
    assert list(block.children()) == [block.fc1, *block.acts, block.fc2]
    assert len(block.parameters()) == 5
    block.fc2 = None  # replaced by something else: no longer a child
    assert [n for n, _ in block.named_children()] == ["fc1", "acts.0", "acts.1"]


def test_a_layer_assigned_before_init_is_refused_with_the_fix():
    class Early(Layer):
        def __init__(self) -> None:
            self.fc = Linear(2, 2)
            super().__init__()

    with pytest.raises(AttributeError, match=r"Early: cannot assign the layer 'fc' before Layer.__init__.*super\(\).__init__"):
        Early()


def test_dotted_parameter_names_of_a_layer_still_work_nested():
    class Attn(Layer):
        def __init__(self) -> None:
            super().__init__()
            self.add_parameter("out_proj.weight", np.zeros((2, 2), dtype=np.float32))

    model = pn.Sequential([Residual(Attn())])
    assert list(model.state_dict()) == ["0.block.out_proj.weight"]
    model.load_state_dict({"0.block.out_proj.weight": np.ones((2, 2))})
    assert pn.to_numpy(model.layers[0].block._params["out_proj.weight"].data).sum() == 4


def test_trainable_to_reset_and_min_batch_size_recurse():
    block = Residual([Linear(3, 3, seed=0), BatchNorm1d(3), Dropout(0.1, seed=0)])
    assert block.min_batch_size == 2 and block.trainable
    block.trainable = False
    assert not any(p.trainable for p in block.parameters()) and not block.trainable
    block.trainable = True
    before = pn.to_numpy(block.block.layers[0].weight.data).copy()
    block.reset_parameters(np.random.default_rng(5))
    after = pn.to_numpy(block.block.layers[0].weight.data)
    assert not np.array_equal(before, after)
    again = Residual([Linear(3, 3, seed=0), BatchNorm1d(3), Dropout(0.1, seed=0)])
    again.reset_parameters(np.random.default_rng(5))  # children drawn from the generator in order: reproducible
    np.testing.assert_array_equal(pn.to_numpy(again.block.layers[0].weight.data), after)
    assert again.block.layers[2].seed == block.block.layers[2].seed
    block.to("array_api_strict", "device1")
    assert all("array_api_strict" in str(type(b.data)) or "strict" in type(b.data).__module__ for b in block.buffers())
    assert all(b.device == block.parameters()[0].device for b in (*block.parameters(), *block.buffers()))


# -- the combinators through the harness --------------------------------------------------------------
class TorchResidual(nn.Module):
    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.block = block

    def forward(self, x):
        return x + self.block(x)


class TorchParallel(nn.Module):
    def __init__(self, *branches: nn.Module, merge: str = "concat", axis: int = 1) -> None:
        super().__init__()
        self.branches = nn.ModuleList(branches)
        self.merge, self.axis = merge, axis

    def forward(self, x):
        outs = [b(x) for b in self.branches]
        return torch.cat(outs, dim=self.axis) if self.merge == "concat" else sum(outs)


def test_residual_conv_block_matches_torch_and_differences_on_every_backend():
    layer = Residual([Conv2d(2, 2, 3, padding=1, seed=0), BatchNorm2d(2), ReLU(), Conv2d(2, 2, 3, padding=1, seed=1)])
    oracle = TorchResidual(
        nn.Sequential(nn.Conv2d(2, 2, 3, padding=1), nn.BatchNorm2d(2), nn.ReLU(), nn.Conv2d(2, 2, 3, padding=1))
    )
    check_layer(layer, (3, 2, 5, 5), oracle=oracle, samples=64)


def test_residual_with_dropout_checks_in_training():
    check_layer(Residual([Linear(4, 4, seed=0), Dropout(0.3, seed=0)]), (5, 4), samples=64)


@pytest.mark.parametrize("merge", ["concat", "sum"])
def test_parallel_matches_torch_and_differences_on_every_backend(merge):
    width = 3 if merge == "sum" else 2
    layer = Parallel(Linear(4, 3, seed=0), [Linear(4, width, seed=1), ReLU()], merge=merge)
    oracle = TorchParallel(nn.Linear(4, 3), nn.Sequential(nn.Linear(4, width), nn.ReLU()), merge=merge)
    check_layer(layer, (6, 4), oracle=oracle, samples=64)


def test_parallel_concat_on_channels_of_images():
    layer = Parallel(Conv2d(2, 3, 1, seed=0), Conv2d(2, 1, 3, padding=1, seed=1), axis=-3)
    oracle = TorchParallel(nn.Conv2d(2, 3, 1), nn.Conv2d(2, 1, 3, padding=1), axis=-3)
    check_layer(layer, (2, 2, 4, 4), oracle=oracle, samples=64)
    assert layer.output_shape((None, 2, 4, 4)) == (None, 4, 4, 4)


def test_residual_refuses_a_block_that_changes_the_shape_naming_both_shapes():
    layer = Residual([Linear(4, 3)])
    with pytest.raises(ShapeError, match=r"Residual\(Sequential\).*input of shape \(batch, 4\) to \(batch, 3\)"):
        layer.output_shape((None, 4))
    with pytest.raises(ShapeError, match=r"Residual.*\(5, 4\) to \(5, 3\)"):
        layer(np.ones((5, 4), dtype=np.float32))
    with pytest.raises(ShapeError, match=r"Parallel\(2 branches, merge='sum'\) adds them.*\(batch, 2\), \(batch, 3\)"):
        Parallel(Linear(4, 2), Linear(4, 3), merge="sum").output_shape((None, 4))
    with pytest.raises(ValueError, match="axis=0 is the batch axis"):
        Parallel(Linear(4, 2), axis=0)
    with pytest.raises(TypeError, match=r"Residual\(block\) takes a layer.*a layer class\? call it"):
        Residual(ReLU)


# -- nested models through everything ------------------------------------------------------------------
RNG = np.random.default_rng(0)
X = RNG.normal(size=(40, 2, 6, 6)).astype(np.float32)
Y = np.arange(40) % 3


def nested(seed: int = 0) -> pn.Sequential:
    return pn.Sequential(
        [
            Conv2d(2, 4, 3, padding=1),
            Residual(
                pn.Sequential([Conv2d(4, 4, 3, padding=1), BatchNorm2d(4), ReLU(), Conv2d(4, 4, 3, padding=1), BatchNorm2d(4)])
            ),
            ReLU(),
            Parallel(Conv2d(4, 2, 1), [Conv2d(4, 3, 1), ReLU()]),
            Flatten(),
            Residual([Linear(180, 180), Dropout(0.3)]),
            Linear(180, 3),
        ],
        seed=seed,
        input_shape=(2, 6, 6),
    )


def fit(model, **kwargs):
    return model.fit(X, Y, loss="sparse_categorical_crossentropy", optimizer=pn.optim.Adam(lr=1e-2), epochs=2,
                     batch_size=8, verbose=0, **kwargs)  # fmt: skip


def host(model) -> dict[str, np.ndarray]:
    return {k: pn.to_numpy(v).copy() for k, v in model.state_dict().items()}


def test_a_nested_model_fits_evaluates_and_names_its_state():
    model = nested()
    names = list(model.state_dict())
    assert "1.block.0.weight" in names and "1.block.1.running_mean" in names and "3.branches.1.0.bias" in names
    assert "5.block.0.weight" in names
    before = host(model)
    history = fit(model)
    assert np.isfinite(history["loss"]).all()
    after = host(model)
    assert all(not np.array_equal(before[k], after[k]) for k in names if k.endswith("weight"))
    loss, accuracy = model.evaluate(X, Y)
    assert 0 <= accuracy <= 1
    assert model.output_shape == (None, 3) and model.layers[1].block.output_shape((None, 4, 6, 6)) == (None, 4, 6, 6)


def test_a_frozen_composite_keeps_its_weights_and_unfreezes():
    model = nested()
    model.freeze(1)
    frozen = {k: v for k, v in host(model).items() if k.startswith("1.")}
    fit(model)
    assert all(np.array_equal(frozen[k], host(model)[k]) for k in frozen)  # running statistics too
    model.unfreeze(1)
    assert all(p.trainable for p in model.layers[1].parameters())


def test_a_nested_model_moves_and_gives_the_same_predictions(case):
    model = nested()
    expected = model.predict(X, to_numpy=True)
    model.to(case.name, case.device)
    np.testing.assert_allclose(model.predict(case.asarray(X), to_numpy=True), expected, rtol=1e-4, atol=1e-5)
    fit(model)


def test_save_load_weights_and_transfer_of_a_nested_model(tmp_path: Path):
    model = nested()
    fit(model)
    model.save(tmp_path / "m.safetensors")
    loaded = pn.load(tmp_path / "m.safetensors")
    assert loaded.get_config() == model.get_config()
    np.testing.assert_array_equal(loaded.predict(X, to_numpy=True), model.predict(X, to_numpy=True))
    other = nested(seed=1)
    other.load_weights(tmp_path / "m.safetensors")
    assert all(np.array_equal(a, b) for a, b in zip(host(other).values(), host(model).values()))
    fresh = nested(seed=2)
    report = fresh.load_layers(tmp_path / "m.safetensors", ["residual", "parallel"])
    assert len(report.loaded) == 2
    np.testing.assert_array_equal(host(fresh)["1.block.3.weight"], host(model)["1.block.3.weight"])
    assert not np.array_equal(host(fresh)["0.weight"], host(model)["0.weight"])


def test_summary_is_a_tree_with_parameter_counts():
    text = nested().summary(print_fn=None)
    lines = text.splitlines()
    residual = next(i for i, line in enumerate(lines) if line.startswith("1  Residual"))
    assert re.match(r"^\s+block: Sequential\(5 layers\)\s+312$", lines[residual + 1])
    assert re.match(r"^\s+0: Conv2d\(4, 4, kernel_size=\(3, 3\), padding=\(1, 1\)\)\s+148$", lines[residual + 2])
    assert lines[residual + 2].index("0:") > lines[residual + 1].index("block:")  # indented under its parent
    assert "Total params: 33," in text


def test_resume_of_a_nested_model_is_bit_identical(tmp_path: Path):
    class Interrupt(pn.callbacks.Callback):
        def __init__(self) -> None:
            self.seen = 0

        def on_batch_end(self, batch, logs):
            self.seen += 1
            if self.seen == 7:
                raise KeyboardInterrupt

    reference = nested()
    ref = fit(reference, record=True)
    with pytest.raises(KeyboardInterrupt):
        fit(nested(), checkpoint=tmp_path, checkpoint_every=3, callbacks=[Interrupt()], record=True)
    meta = pn.fileformat.read_file(tmp_path / "checkpoint.safetensors")[1]
    assert list(meta["rng_layers"]) == ["residual_1.block.1"]  # the nested Dropout, by its dotted path
    resumed = nested()
    history = fit(resumed, checkpoint=tmp_path, resume=tmp_path, record=True)
    assert all(np.array_equal(a, b) for a, b in zip(host(reference).values(), host(resumed).values(), strict=True))
    assert history.history["loss"] == ref.history["loss"]
    assert history.records["grad_norm"] == ref.records["grad_norm"] and set(ref.records["grad_norm"]) >= {"residual"}


# -- PyTorch state dicts, both ways ----------------------------------------------------------------------
class BasicBlock(Layer):
    """ResNet's basic block, as a user writes it: children named as torchvision names them."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = BatchNorm2d(channels)
        self.relu = ReLU()
        self.conv2 = Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = BatchNorm2d(channels)

    def call(self, x, *, training=False, input_grad=True):
        backs = []
        h = x
        for i, layer in enumerate([self.conv1, self.bn1, self.relu, self.conv2, self.bn2]):
            h, back = layer.forward(h, training=training, input_grad=input_grad or i > 0)
            backs.append(back)
        y, relu_back = self.relu.forward(x + h, training=training)

        def backward(dy):
            d = relu_back(dy)
            dh = d
            for back in reversed(backs):
                dh = back(dh)
            return d + dh if input_grad else None

        return y, backward


class TorchBasicBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x):
        return self.relu(x + self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x))))))


def test_state_dict_moves_to_and_from_the_torch_module():
    ours = pn.Sequential([BasicBlock(3), BasicBlock(3)], seed=0)
    fit_x = np.random.default_rng(1).normal(size=(6, 3, 5, 5)).astype(np.float32)
    ours.fit(fit_x, fit_x, loss="mse", optimizer="adam", epochs=1, batch_size=3, verbose=0)  # running statistics move
    theirs = nn.Sequential(TorchBasicBlock(3), TorchBasicBlock(3))
    assert set(ours.state_dict()) == set(theirs.state_dict())
    theirs.load_state_dict({k: torch.tensor(pn.to_numpy(v)) for k, v in ours.state_dict().items()})
    theirs.eval()
    with torch.no_grad():
        expected = theirs(torch.tensor(fit_x)).numpy()
    np.testing.assert_allclose(ours.predict(fit_x, to_numpy=True), expected, rtol=1e-5, atol=1e-5)
    # and back: a torch module's weights into a fresh portnn model
    torch.manual_seed(0)
    source = nn.Sequential(TorchBasicBlock(3), TorchBasicBlock(3))
    source.train()
    with torch.no_grad():
        source(torch.randn(4, 3, 5, 5))  # running statistics of its own
    source.eval()
    fresh = pn.Sequential([BasicBlock(3), BasicBlock(3)], seed=1)
    fresh.load_state_dict({k: v.numpy() for k, v in source.state_dict().items()})
    with torch.no_grad():
        expected = source(torch.tensor(fit_x)).numpy()
    np.testing.assert_allclose(fresh.predict(fit_x, to_numpy=True), expected, rtol=1e-5, atol=1e-5)
    check_layer(BasicBlock(2), (3, 2, 4, 4), oracle=TorchBasicBlock(2), samples=48)


# -- the documented pattern --------------------------------------------------------------------------------
def test_the_documented_composite_layer_runs_as_written():
    doc = (Path(__file__).parent.parent / "docs" / "composite-layers.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", doc, flags=re.S)
    assert blocks, "docs/composite-layers.md has no python block"
    code = blocks[0]
    assert len([line for line in code.splitlines() if line.strip()]) <= 20, "the pattern is meant to fit in 20 lines"
    namespace: dict = {}
    exec(compile(code, "docs/composite-layers.md", "exec"), namespace)  # it ends with its own check_layer call
    assert "report" in namespace and namespace["report"] is not None


def test_a_nested_model_exports_to_onnx(tmp_path: Path):
    pytest.importorskip("ndonnx")
    onnxruntime = pytest.importorskip("onnxruntime")
    model = nested()
    fit(model)
    proto = model.export_onnx(tmp_path / "m.onnx", (2, 6, 6))
    assert {e.key: e.value for e in proto.metadata_props}["portnn_graph"] == "batched"
    (y,) = onnxruntime.InferenceSession(str(tmp_path / "m.onnx")).run(None, {"input": X[:5]})
    np.testing.assert_allclose(y, model.predict(X[:5], to_numpy=True), rtol=1e-4, atol=1e-5)


# -- MPI data parallelism: nested parameters reduced, nested buffers averaged, nested dropout reseeded -------------
WORKER = """
import sys
import numpy as np
import portnn as pn
from portnn.layers import BatchNorm1d, Dropout, Linear, Parallel, ReLU, Residual

def plain():
    return pn.Sequential([Linear(6, 8), Residual([Linear(8, 8), ReLU()]), Parallel(Linear(8, 2), [Linear(8, 3), ReLU()]),
                          Linear(5, 3)], seed=0)

def noisy():
    return pn.Sequential([Linear(6, 8), Residual([Linear(8, 8), BatchNorm1d(8), Dropout(0.3)]), Linear(8, 3)], seed=0)

rng = np.random.default_rng(0)
x, y = rng.normal(size=(64, 6)), rng.integers(0, 3, size=64)
kw = dict(loss="sparse_categorical_crossentropy", epochs=2, verbose=0)
batch, out = int(sys.argv[1]), sys.argv[2]
distributed = batch == 8
rank = pn.distributed.init().rank if distributed else 0
for make in (plain, noisy):
    if make is noisy and not distributed:
        break
    model = make()
    model.fit(x, y, optimizer=pn.optim.SGD(lr=0.1), batch_size=batch, distributed=distributed or None, **kw)
    np.savez(f"{out}/{make.__name__}{rank}.npz", **{k: pn.to_numpy(v) for k, v in model.state_dict().items()})
"""


def test_two_ranks_reduce_and_sync_the_state_of_nested_layers(tmp_path: Path):
    import os
    import shutil
    import subprocess
    import sys

    pytest.importorskip("mpi4py")
    mpiexec = Path(sys.executable).parent / "mpiexec"
    mpiexec = str(mpiexec) if mpiexec.exists() else shutil.which("mpiexec")
    if mpiexec is None:
        pytest.skip('no mpiexec found beside Python or on PATH; pip install "portnn[mpi]"')
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    run = subprocess.run([mpiexec, "-n", "2", sys.executable, str(script), "8", str(tmp_path)],
                         capture_output=True, text=True, timeout=120, env=env)  # fmt: skip
    assert run.returncode == 0, run.stderr
    (tmp_path / "single").mkdir()
    single = subprocess.run([sys.executable, str(script), "16", str(tmp_path / "single")],
                            capture_output=True, text=True, timeout=120, env=env)  # fmt: skip
    assert single.returncode == 0, single.stderr
    for name in ("plain", "noisy"):
        rank0, rank1 = np.load(tmp_path / f"{name}0.npz"), np.load(tmp_path / f"{name}1.npz")
        assert any(".block." in k for k in rank0)
        for k in rank0:
            np.testing.assert_array_equal(rank0[k], rank1[k], err_msg=f"{name}: {k} differs between the ranks")
    one, two = np.load(tmp_path / "single" / "plain0.npz"), np.load(tmp_path / "plain0.npz")
    assert sorted(one) == sorted(two)
    for k in one:  # two ranks of 8 = one process with batches of 16 (float32: summed in another order)
        np.testing.assert_allclose(two[k], one[k], rtol=1e-5, atol=1e-6, err_msg=k)


def test_each_rank_reseeds_the_dropout_nested_in_a_composite():
    model = pn.Sequential([Residual([Linear(4, 4), Dropout(0.5, seed=3)])])
    dropout = model.layers[0].block.layers[1]
    seeds = pn.distributed.reseed_random_layers(model, rank=1)
    assert seeds == {dropout: 3} and dropout.seed != 3
    pn.distributed.restore_seeds(seeds)
    assert dropout.seed == 3


def test_a_config_nested_too_deep_is_refused_before_anything_is_built():
    from portnn import serialization

    entry: dict = {"class_name": "ReLU", "config": {"name": None}}
    for _ in range(serialization.MAX_NESTING + 5):
        entry = {"class_name": "Residual", "config": {"block": entry, "name": None}}
    with pytest.raises(ValueError, match=r"layers nest more than 64 deep"):
        serialization.layer_from_config(entry["class_name"], entry["config"])
    with pytest.raises(ValueError, match=r"nest more than 64 deep"):
        serialization._declared_values(Residual, entry["config"])
    shallow = {"class_name": "Residual", "config": {"block": {"class_name": "ReLU", "config": {"name": "r"}}, "name": "res"}}
    built = serialization.layer_from_config(shallow["class_name"], shallow["config"])
    assert isinstance(built, Residual) and built.block.name == "r" and built.name == "res"


def test_check_model_proves_a_nested_model_with_dropout_on_every_backend():
    model = pn.Sequential(
        [Linear(4, 6), Residual([Linear(6, 6), BatchNorm1d(6), Dropout(0.2)]), Parallel(Linear(6, 2), [Linear(6, 1), ReLU()]),
         Linear(3, 3)], seed=0,
    )  # fmt: skip
    x, y = np.random.default_rng(0).normal(size=(12, 4)), np.arange(12) % 3
    pn.testing.check_model(model, x, y, steps=2)  # the nested Dropout draws the same masks on every backend


# -- shared layers, late children, nested Sequential as a layer, shapes -------------------------------------
def test_a_layer_used_twice_is_refused_by_save_naming_both_paths_and_its_weights_round_trip(tmp_path: Path):
    def shared_models() -> list[tuple[pn.Sequential, str, str]]:
        lin, other = Linear(4, 4, seed=0), Linear(4, 4, seed=1)
        return [
            (pn.Sequential([Parallel(lin, lin)], seed=0), "0.branches.0", "0.branches.1"),
            (pn.Sequential([other, ReLU(), Residual(other)], seed=0), "0", "2.block"),
        ]

    x = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
    for (model, first, second), (fresh, _, _) in zip(shared_models(), shared_models()):
        why = pn.serialization.unsaveable(model)
        assert why is not None and f"used twice, at {first!r} and {second!r}" in why and "save_weights" in why
        with pytest.raises(TypeError, match=re.escape(f"at {first!r} and {second!r}")):
            model.save(tmp_path / "m.safetensors")
        assert not (tmp_path / "m.safetensors").exists()
        # save_weights/load_weights work: each shared weight once, under its first path; still shared after loading
        assert list(model.state_dict()) == [f"{first}.weight", f"{first}.bias"]
        for p in model.parameters():
            p.data = p.data + 1
        model.save_weights(tmp_path / "w.safetensors")
        fresh.load_weights(tmp_path / "w.safetensors")
        np.testing.assert_array_equal(fresh.predict(x, to_numpy=True), model.predict(x, to_numpy=True))
        assert len(fresh.parameters()) == 2


class Late(Layer):
    """Children in a list assigned empty and filled later, and in a dict."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks: list[Layer] = []
        self.blocks.append(Linear(4, 4, seed=0))
        self.heads = {"a": Linear(4, 2, seed=1), "b": Linear(4, 3, seed=2)}

    def call(self, x, *, training=False, input_grad=True):
        h, back = self.blocks[0].forward(x, training=training, input_grad=input_grad)
        return h, back


def test_a_list_filled_after_assignment_and_a_dict_of_layers_register_their_children():
    layer = Late()
    assert [n for n, _ in layer.named_parameters()] == [
        "blocks.0.weight",
        "blocks.0.bias",
        "heads.a.weight",
        "heads.a.bias",
        "heads.b.weight",
        "heads.b.bias",
    ]
    layer.blocks.append(Linear(4, 4, seed=3))  # after construction too, as nn.ModuleList's append
    assert "blocks.1.weight" in dict(layer.named_parameters())
    layer.trainable = False
    assert not any(p.trainable for p in layer.blocks[1].parameters())
    model = pn.Sequential([layer], seed=0)
    assert sum(p.size for p in model.parameters()) == 2 * 20 + 10 + 15
    layer.mixed = [Linear(2, 2), 3]
    with pytest.raises(TypeError, match=r"Late\.mixed is a list that mixes layers with other values"):
        list(layer.named_children())
    del layer.mixed
    layer.bad = {1.5: Linear(2, 2)}
    with pytest.raises(TypeError, match=r"Late\.bad: a dict of layers needs str keys"):
        list(layer.named_children())


class Stem(Layer):
    """A user's composite that calls a nested Sequential's forward as it would any layer's."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = Linear(4, 4, seed=0)
        self.body = pn.Sequential([Linear(4, 4, seed=1), ReLU()])

    def call(self, x, *, training=False, input_grad=True):
        h, back_fc = self.fc.forward(x, training=training, input_grad=input_grad)
        y, back_body = self.body.forward(h, training=training)
        return y, lambda dy: back_fc(back_body(dy))


def test_a_nested_sequential_forward_defaults_to_the_input_gradient_as_every_layer():
    check_layer(Stem(), (5, 4), oracle=None, samples=24)
    model = pn.Sequential([Linear(4, 4, seed=0), ReLU()])
    x = np.ones((2, 4), np.float32)
    assert model.forward(x)[1](np.ones((2, 4), np.float32)).shape == (2, 4)
    assert model.forward(x, input_grad=False)[1](np.ones((2, 4), np.float32)) is None  # train_step's path
    outer = pn.Sequential([Stem(), Linear(4, 2)], seed=0)
    y = np.arange(8) % 2
    xs = np.random.default_rng(0).normal(size=(8, 4))
    outer.fit(xs, y, loss=pn.losses.CrossEntropy(), optimizer=pn.optim.SGD(lr=0.1), epochs=1, verbose=0)


def test_every_nested_walk_visits_a_shared_layer_once_under_its_first_name():
    from portnn import _resume, distributed, testing

    drop = Dropout(0.5, seed=3)
    model = pn.Sequential([Linear(4, 4), drop, Residual([drop, Linear(4, 4)])], seed=0)
    assert list(_resume.random_layers(model)) == ["dropout"]
    assert list(distributed.reseed_random_layers(model, 0)) == [drop]
    layers = testing._layers_of(model)
    assert len(layers) == len({id(m) for m in layers}) == 3


def test_reset_trainable_to_and_min_batch_size_visit_a_shared_layer_once_and_end_on_a_cycle():
    lin = Linear(4, 4)
    shared = pn.Sequential([lin, Residual(lin), Linear(4, 4)], seed=0)
    plain = pn.Sequential([Linear(4, 4), Linear(4, 4)], seed=0)
    # the shared layer is drawn once: the next layer gets the draws it gets without sharing
    np.testing.assert_array_equal(pn.to_numpy(shared.layers[2].weight.data), pn.to_numpy(plain.layers[1].weight.data))
    np.testing.assert_array_equal(pn.to_numpy(lin.weight.data), pn.to_numpy(plain.layers[0].weight.data))

    class Loop(Layer):
        def __init__(self) -> None:
            super().__init__()
            self.fc = Linear(2, 2)
            self.norm = BatchNorm1d(2)

    loop = Loop()
    loop.again = loop  # a cycle
    loop.fc.again = loop
    assert [n for n, _ in loop.named_parameters()] == ["fc.weight", "fc.bias", "norm.weight", "norm.bias"]
    assert loop.min_batch_size == 2
    loop.trainable = False
    assert not loop.trainable
    loop.to("numpy")
    loop.reset_parameters(np.random.default_rng(0))


def test_a_layer_class_gets_the_same_hint_from_sequential_and_the_combinators():
    hint = "(a layer class? call it: ReLU())"
    for build in (lambda: pn.Sequential([ReLU]), lambda: Residual(ReLU), lambda: Parallel(ReLU)):
        with pytest.raises(TypeError, match=re.escape(hint)):
            build()
    config = {"input_size": 2, "hidden_size": 3, "bias": "yes"}
    with pytest.raises(TypeError, match="bias is 'yes', not true or false"):
        pn.serialization._declared_values(pn.layers.LSTM, config)


def test_output_shape_of_a_model_without_input_shape_keeps_the_sequence_axes():
    import copy
    import pickle

    layers = [Linear(8, 4), ReLU(), Linear(4, 3)]
    model = pn.Sequential(layers, seed=0)
    assert model.output_shape == None  # noqa: E711  a Linear takes (batch, ..., 8): the rank is not fixed
    assert model.output_shape((None, 5, 8)) == (None, 5, 3)
    assert model.predict(np.ones((2, 5, 8), np.float32)).shape == (2, 5, 3)
    text = model.summary(print_fn=None)
    assert "(batch, ..., 4)" in text and "(batch, ..., 3)" in text and "(batch, 3)" not in text
    built = pn.Sequential([Linear(8, 4), ReLU(), Linear(4, 3)], input_shape=(8,))
    assert built.output_shape == (None, 3) and "(batch, 3)" in built.summary(print_fn=None)
    # copies and pickles are the plain value
    assert copy.deepcopy(built.output_shape) == (None, 3) and copy.copy(built.output_shape) == (None, 3)
    assert pickle.loads(pickle.dumps(built.output_shape)) == (None, 3)
    assert copy.deepcopy(model.output_shape) is None and pickle.loads(pickle.dumps(model.output_shape)) is None
    assert copy.deepcopy(built).output_shape == (None, 3)

"""Transfer learning: load_layers by name, index or mapping, from files, checkpoints and models; freeze; replace the head."""

from __future__ import annotations

import numpy as np
import pytest

import portnn as pn
from portnn.serialization import CheckpointError

X = np.random.default_rng(2).normal(size=(64, 1, 8, 8)).astype(np.float32)


def cnn(n_out: int, seed: int) -> pn.Sequential:
    return pn.Sequential(
        [
            pn.layers.Conv2d(1, 4, 3, padding=1),
            pn.layers.BatchNorm2d(4),
            pn.layers.ReLU(),
            pn.layers.MaxPool2d(2),
            pn.layers.Flatten(),
            pn.layers.Linear(64, n_out),
        ],
        seed=seed,
    )


def trained_source() -> pn.Sequential:
    model = cnn(3, seed=0)
    model.fit(X, np.arange(64) % 3, loss=pn.losses.CrossEntropy(), optimizer=pn.optim.SGD(lr=0.1), epochs=1, verbose=0)
    return model


def same(a, b) -> bool:
    return pn.to_numpy(a.data).tobytes() == pn.to_numpy(b.data).tobytes()


@pytest.mark.parametrize("via", ["model", "file", "checkpoint"])
def test_matching_layers_load_and_the_new_head_is_skipped_with_a_reason(tmp_path, via):
    source = trained_source()
    if via == "file":
        source.save(tmp_path / "source.safetensors")
        where = tmp_path / "source.safetensors"
    elif via == "checkpoint":
        source.fit(X, np.arange(64) % 3, epochs=1, verbose=0, checkpoint=tmp_path)
        where = tmp_path
    else:
        where = source
    target = cnn(5, seed=1)
    report = target.load_layers(where)
    assert [t for t, _, _ in report.loaded] == ["conv2d", "batchnorm2d"]
    assert report.skipped == [
        ("linear", "shapes differ: weight (5, 64) here, (3, 64) in the source; bias (5,) here, (3,) in the source")
    ]
    for i in (0, 1):
        for name, b in (*target.layers[i].named_parameters(), *target.layers[i].named_buffers()):
            assert same(b, dict((*source.layers[i].named_parameters(), *source.layers[i].named_buffers()))[name]), name
    np.testing.assert_array_equal(pn.to_numpy(target.layers[5].weight.data), pn.to_numpy(cnn(5, seed=1).layers[5].weight.data))
    assert "loaded 2 layers" in str(report) and "skipped 1" in str(report)


def test_explicit_layers_must_fit_and_nothing_is_loaded_otherwise():
    source, target = trained_source(), cnn(5, seed=1)
    before = pn.to_numpy(target.layers[0].weight.data).copy()
    with pytest.raises(ValueError, match=r"cannot load linear .*weight \(5, 64\) here, \(3, 64\)"):
        target.load_layers(source, ["conv2d", "linear"])
    np.testing.assert_array_equal(pn.to_numpy(target.layers[0].weight.data), before)
    report = target.load_layers(source, [0])
    assert [(t, s) for t, s, _ in report.loaded] == [("conv2d", "conv2d")]


def test_a_mapping_loads_between_differently_named_layers():
    source = trained_source()
    target = pn.Sequential([pn.layers.Conv2d(1, 4, 3, padding=1)], seed=3)
    target.layers[0].name = "features"
    report = target.load_layers(source, {"features": 0})
    assert [(t, s) for t, s, _ in report.loaded] == [("features", "conv2d")]
    assert same(target.layers[0].weight, source.layers[0].weight)
    with pytest.raises(KeyError, match="no layer named 'nope'"):
        target.load_layers(source, {"features": "nope"})


def test_any_object_with_layers_is_a_source():
    source = trained_source()

    class Features:  # not a Sequential: load_layers reads only .layers
        def __init__(self, layers):
            self.layers = layers

    target = cnn(5, seed=1)
    report = target.load_layers(Features(source.layers[:2]))
    assert [(t, s) for t, s, _ in report.loaded] == [("conv2d", "conv2d"), ("batchnorm2d", "batchnorm2d")]
    assert report.skipped == [("linear", "no layer of that name in the source")]
    assert same(target.layers[0].weight, source.layers[0].weight)
    assert same(target.layers[1].running_mean, source.layers[1].running_mean)


def test_loading_onto_another_backend(case):
    source = trained_source()
    target = cnn(3, seed=1).to(case.name, case.device)
    report = target.load_layers(source)
    assert len(report.loaded) == 3
    assert case.backend.adapter.owns(target.layers[0].weight.data)
    np.testing.assert_array_equal(pn.to_numpy(target.predict(X)), pn.to_numpy(source.predict(X)))


def test_freeze_replace_head_fine_tune():
    source = trained_source()
    model = cnn(3, seed=1)
    model.load_layers(source)
    model.pop()
    model.add(pn.layers.Linear(64, 2))
    model.freeze("conv2d", "batchnorm2d")
    conv = pn.to_numpy(model.layers[0].weight.data).copy()
    bn = {k: pn.to_numpy(v).copy() for k, v in model.state_dict().items() if k.startswith("1.")}
    y = (np.arange(64) % 2).astype(np.int64)
    history = model.fit(X, y, loss=pn.losses.CrossEntropy(), optimizer=pn.optim.Adam(lr=0.01), epochs=3, verbose=0)
    np.testing.assert_array_equal(pn.to_numpy(model.layers[0].weight.data), conv)
    for k, v in bn.items():  # a frozen BatchNorm keeps its scale, shift and running statistics
        np.testing.assert_array_equal(pn.to_numpy(model.state_dict()[k]), v, err_msg=k)
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert model.layers[-1].name == "linear"
    model.unfreeze()
    assert all(layer.trainable for layer in model.layers if layer.parameters())


def test_bad_sources(tmp_path):
    model = cnn(3, seed=1)
    with pytest.raises(TypeError, match=r"source must be a model with \.layers \(a Sequential\) or the path.*got int"):
        model.load_layers(42)
    (tmp_path / "junk.safetensors").write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="junk.safetensors"):
        model.load_layers(tmp_path / "junk.safetensors")
    with pytest.raises(IndexError, match="out of range"):
        model.load_layers(trained_source(), {0: 17})


def test_pop_on_an_empty_model():
    with pytest.raises(IndexError, match="no layers"):
        pn.Sequential().pop()


def test_a_file_whose_layer_names_were_edited_is_refused_and_nothing_loads(tmp_path):
    path = tmp_path / "source.safetensors"
    trained_source().save(path)
    tensors, meta = pn.serialization.read_file(path)
    meta["layer_names"] = [["conv2d"], {"a": 1}]
    pn.serialization.write_file(path, tensors, meta)
    model = cnn(3, seed=1)
    before = {k: pn.to_numpy(v).copy() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError, match="names its layers .* not as distinct strings"):
        model.load_layers(path)
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(pn.to_numpy(value), before[name], err_msg=name)

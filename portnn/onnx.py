"""ONNX export through the array API: the model's own forward, run on arrays that record a graph.

`ndonnx <https://github.com/Quantco/ndonnx>`_ implements the array API standard on lazy arrays:
each operation adds a node to an ONNX graph. portnn's layers compute with
``xp = array_namespace(x)``, so running a model's evaluation-mode forward on an ndonnx input,
with its parameters and buffers as graph constants, *is* the export: no layer has an exporter
of its own. Where an op needs help, the ndonnx adapter gives it
(:class:`portnn.backends.ndonnx.NdonnxAdapter`: ``conv2d`` as one ONNX ``Conv`` node in float32).

The graph takes a batch of any size. A model whose layers all run on arrays whose batch size
is unknown (``x.shape[0] is None``, as the standard allows) is traced once into a batched
graph: every portnn layer does (pooling, BatchNorm with running statistics and Flatten reshape with
``-1`` for the batch and make new arrays by broadcasting against their input, not from a batch size).
A layer that needs the batch size as a number (a layer of your own that reads
``int(x.shape[0])``) makes the export trace one example of static shape instead, checked to
depend on no other example of the batch, and wrap it in an ONNX ``Scan`` over the batch
axis: the same numbers, one example at a time. ``portnn_graph`` in the model's metadata says
which (``"batched"`` or ``"per-example"``).

Needs ``pip install portnn[onnx]`` (ndonnx, and onnxruntime to run the result).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from . import backends
from ._version import __version__
from .layers.base import Layer, ShapeError, format_shape

__all__ = ["OnnxExportError", "export", "to_onnx"]


class OnnxExportError(ValueError):
    """A model that cannot be exported: the message names the layer and why."""


def _require() -> tuple[Any, Any]:
    why = backends.get_adapter("ndonnx").import_error()
    if why is not None:
        raise ImportError(f"ONNX export runs the model on ndonnx arrays: {why}")
    import ndonnx
    import onnx

    return ndonnx, onnx


def to_onnx(
    model: Any, input_shape: tuple[int, ...] | None = None, *, input_name: str = "input", output_name: str = "output"
) -> Any:
    """The ONNX graph of ``model``'s evaluation-mode forward (an ``onnx.ModelProto``), for batches of any size.

    Parameters
    ----------
    model
        A :class:`portnn.Sequential` (on any backend; its weights are copied into the graph
        in its dtype, float32 or float64).
    input_shape
        The shape of one example, without the batch axis: ``(784,)``, ``(1, 28, 28)``. None
        takes the model's ``input_shape``, or the first layer's fixed sizes (a Linear's
        ``in_features``).
    input_name, output_name
        Names of the graph's input (shape ``(batch, *input_shape)``) and output.

    Returns
    -------
    onnx.ModelProto
        Checked with ``onnx.checker``; its metadata ``portnn_graph`` is ``"batched"`` or
        ``"per-example"`` (see :mod:`portnn.onnx`).

    Raises
    ------
    OnnxExportError
        When a layer cannot be exported: the message names the layer, its position and why.
    ImportError
        Without ndonnx (``pip install portnn[onnx]``).

    Examples
    --------
    >>> import portnn as pn
    >>> from portnn.onnx import to_onnx
    >>> model = pn.Sequential([pn.layers.Linear(4, 8), pn.layers.ReLU(), pn.layers.Linear(8, 3)], seed=0)
    >>> graph = to_onnx(model)
    >>> [d.dim_param or d.dim_value for d in graph.graph.input[0].type.tensor_type.shape.dim]
    ['batch', 4]
    """
    ndx, onnx = _require()
    where = f"{type(model).__name__}.export_onnx"
    shape = _example_shape(model, input_shape, where)
    dtype = model.dtype
    first = model.layers[0] if model.layers else None
    if first is not None and first.input_spec.dtype != "real floating":
        raise OnnxExportError(f"{where}: layer 0 ({first!r}) takes {first.input_spec.dtype} inputs; only float inputs export")
    batched = per_example = None
    with _constants(model, ndx):
        try:
            x = ndx.argument(shape=("batch", *shape), dtype=getattr(ndx, dtype))
            graph, form = ndx.build({input_name: x}, {output_name: _trace(model, x)}), "batched"
        except _LayerFailure as failure:
            batched = failure
    if batched is not None:
        per_example = _mixes_examples(model, shape, dtype)
        if per_example is None:
            with _constants(model, ndx):
                try:
                    x = ndx.argument(shape=("batch", *shape), dtype=getattr(ndx, dtype))
                    graph, form = ndx.build({input_name: x}, {output_name: _scan(model, x, shape, ndx)}), "per-example"
                except _LayerFailure as failure:
                    per_example = failure
        if per_example is not None:
            raise OnnxExportError(_refusal(model, where, batched, per_example)) from per_example.cause
    _name_batch_axis(graph, output_name, _output_shape(model, shape))
    graph.producer_name, graph.producer_version = "portnn", __version__
    graph.doc_string = f"{model!r}\nexported by portnn {__version__} from the evaluation-mode forward ({form} graph)"
    entry = graph.metadata_props.add()
    entry.key, entry.value = "portnn_graph", form
    onnx.checker.check_model(graph)
    return graph


def export(
    model: Any,
    path: str | os.PathLike[str],
    input_shape: tuple[int, ...] | None = None,
    *,
    input_name: str = "input",
    output_name: str = "output",
) -> Any:
    """Write :func:`to_onnx`'s graph to ``path`` (atomically: a temporary file renamed over it) and return it.

    Examples
    --------
    >>> import os, tempfile
    >>> import portnn as pn
    >>> from portnn.onnx import export
    >>> model = pn.Sequential([pn.layers.Linear(4, 3)], seed=0)
    >>> path = os.path.join(tempfile.mkdtemp(), "model.onnx")
    >>> graph = export(model, path)
    >>> import onnxruntime, numpy as np
    >>> session = onnxruntime.InferenceSession(path)
    >>> x = np.ones((5, 4), dtype=np.float32)
    >>> bool(np.abs(session.run(None, {"input": x})[0] - model.predict(x, to_numpy=True)).max() < 1e-5)
    True
    """
    graph = to_onnx(model, input_shape, input_name=input_name, output_name=output_name)
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(graph.SerializeToString())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return graph


# -- the traces ---------------------------------------------------------------------------------
class _LayerFailure(Exception):
    """Layer ``index`` raised ``cause`` while the forward ran on ndonnx arrays (or mixes the examples of a batch)."""

    def __init__(self, index: int, layer: Layer, cause: BaseException | None, reason: str, *, mixes: bool = False) -> None:
        super().__init__(reason)
        self.index, self.layer, self.cause, self.reason, self.mixes = index, layer, cause, reason, mixes


def _trace(model: Any, x: Any) -> Any:
    """Run every layer's evaluation-mode forward on ``x`` (an ndonnx array); a _LayerFailure names the one that raised."""
    for i, layer in enumerate(model.layers):
        try:
            y = layer.forward(x, training=False, input_grad=False)[0]
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
            if "propagated value" in str(exc):  # ndonnx's word for a value known only when the graph runs
                reason = (
                    "it reads on the host the value of an array that depends on the input (bool(), float(), int(), "
                    f"to_numpy), a value the ONNX graph has only when it runs ({reason})"
                )
            raise _LayerFailure(i, layer, exc, reason) from exc
        if not backends.get_adapter("ndonnx").owns(y):
            raise _LayerFailure(
                i, layer, None, f"its forward returned a {type(y).__module__}.{type(y).__name__}, not an array of its input's "
                "library: it leaves the array API (a host conversion, or arrays made without the input's namespace)"
            )  # fmt: skip
        x = y
    return x


def _scan(model: Any, x: Any, shape: tuple[int, ...], ndx: Any) -> Any:
    """An ONNX ``Scan`` over the batch axis of ``x`` whose body is the forward traced on one example of static shape."""
    import spox.opset.ai.onnx.v21 as op  # ndonnx's own opset: one graph, one version of the standard ops

    failure: list[_LayerFailure] = []

    def body(example: Any) -> list[Any]:
        one = ndx.reshape(ndx.asarray(example), (1, *shape))
        try:
            y = _trace(model, one)
        except _LayerFailure as exc:
            failure.append(exc)
            raise
        return [ndx.squeeze(y, axis=0).unwrap_spox()]

    try:
        (y,) = op.scan([x.unwrap_spox()], body=body, num_scan_inputs=1)
    except Exception:
        if failure:
            raise failure[0] from None
        raise
    return ndx.asarray(y)


def _mixes_examples(model: Any, shape: tuple[int, ...], dtype: str) -> _LayerFailure | None:
    """The first layer whose evaluation output for one example depends on the others in its batch, or None.

    Checked on the model's own backend: each layer's output for a batch of three random
    inputs against its outputs for each example alone (a graph traced on one example is
    right only for layers that pass).
    """
    backend = model.backend
    xp = backend.xp
    rtol, atol = {"float32": (1e-4, 1e-5), "float64": (1e-10, 1e-12)}[dtype]
    x = backend.adapter.from_numpy(backends.host_rng(0).normal(size=(3, *shape)).astype(dtype), backend.device)
    for i, layer in enumerate(model.layers):
        try:
            y = layer.forward(x, training=False, input_grad=False)[0]
            alone = xp.concat([layer.forward(x[k : k + 1, ...], training=False, input_grad=False)[0] for k in range(3)], axis=0)
        except Exception as exc:
            return _LayerFailure(i, layer, exc, f"on one example at a time it raised {type(exc).__name__}: {exc}", mixes=True)
        if not bool(xp.all(xp.abs(alone - y) <= atol + rtol * xp.abs(y))):
            return _LayerFailure(
                i, layer, None, "its output for one example depends on the other examples of the batch (batch statistics?), "
                "so it cannot run one example at a time", mixes=True,
            )  # fmt: skip
        x = y
    return None


def _refusal(model: Any, where: str, batched: _LayerFailure, per_example: _LayerFailure) -> str:
    layer = per_example.layer
    text = f"{where}: layer {per_example.index} ({layer!r}) cannot be exported: {per_example.reason}"
    if (batched.index, batched.reason) != (per_example.index, per_example.reason):
        text += f"; on a batch of unknown size, layer {batched.index} ({batched.layer!r}) raised {batched.reason}"
    if per_example.mixes:
        return (
            text + ". A layer whose evaluation output mixes the examples of a batch exports only in a batched graph, "
            "which needs every layer to run on a batch of unknown size (x.shape[0] is None); BatchNorm exports with "
            "its running statistics (track_running_stats=True)"
        )
    return (
        text + ". An exported forward must use only the array API on its input's namespace (xp = array_namespace(x)): "
        "no host conversion (float(), to_numpy), no random draws at evaluation, no library-specific calls"
    )


def _output_shape(model: Any, shape: tuple[int, ...]) -> Any:
    out: Any = (None, *shape)
    for layer in model.layers:
        out = layer.output_shape(out)
    return out


def _name_batch_axis(graph: Any, name: str, shape: Any) -> None:
    """Declare the output's shape ``(batch, ...)`` where the trace left it unknown (a matrix product's If node does)."""
    (output,) = [o for o in graph.graph.output if o.name == name]
    dims = output.type.tensor_type.shape.dim
    if len(dims) != len(shape) or any(d is None for d in shape[1:]):
        return
    for dim, size in zip(dims, ("batch", *shape[1:])):
        if isinstance(size, str):
            dim.dim_param = size
        else:
            dim.dim_value = int(size)


@contextmanager
def _constants(model: Any, ndx: Any) -> Iterator[None]:
    """Every parameter and buffer of ``model`` as an ndonnx constant (a host copy) inside the block; restored after."""
    saved: list[tuple[Any, Any]] = []
    try:
        for layer in model.layers:
            for b in (*layer.parameters(), *layer.buffers()):
                saved.append((b, b.data))
                b.data = ndx.asarray(backends.to_numpy(b.data))
        yield
    finally:
        for b, data in saved:
            b.data = data


def _example_shape(model: Any, input_shape: tuple[int, ...] | None, where: str) -> tuple[int, ...]:
    """The shape of one example: ``input_shape``, the model's, or the first layer's fixed sizes; checked against the layers."""
    if input_shape is None:
        known = getattr(model, "input_shape", None)
        spec = model.layers[0].input_spec.shapes if model.layers else ()
        if known is not None:
            input_shape = tuple(known[1:])
        elif len(spec) == 1 and all(isinstance(d, int) for d in spec[0][1:]):
            input_shape = tuple(spec[0][1:])
        else:
            raise OnnxExportError(
                f"{where}: the model does not say the shape of its examples; pass input_shape, the shape of one example "
                "without the batch axis, e.g. input_shape=(1, 28, 28)"
            )
    if isinstance(input_shape, int) or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in input_shape):
        raise OnnxExportError(f"{where}: input_shape must be a tuple of positive ints (one example); got {input_shape!r}")
    shape: Any = (None, *input_shape)
    for i, layer in enumerate(model.layers):
        try:
            shape = layer.output_shape(shape)
        except ShapeError as exc:
            raise OnnxExportError(
                f"{where}: input_shape={tuple(input_shape)} (examples of shape {format_shape((None, *input_shape))}) "
                f"does not fit layer {i} ({layer!r}): {exc}"
            ) from None
    return tuple(input_shape)

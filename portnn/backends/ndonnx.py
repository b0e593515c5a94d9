"""ndonnx adapter: arrays that record an ONNX graph, for :func:`portnn.onnx.export`. An export target, not a backend.

`ndonnx <https://github.com/Quantco/ndonnx>`_ implements the array API standard on lazy arrays:
each operation adds a node to an ONNX graph instead of computing. portnn's layers run on them
unchanged (they take ``xp = array_namespace(x)``), so exporting a model is running its
evaluation-mode forward on an ndonnx input. This adapter lets the core recognise ndonnx arrays
(:func:`portnn.backends.adapter_for`) and gives the ops that need help a kernel of their own:
``conv2d`` becomes one ONNX ``Conv`` node in float32. Models cannot live or train here
(``trainable = False``): there is no backward pass and nothing random is drawn.
"""

from __future__ import annotations

import functools
from typing import Any

from ._base import Adapter


@functools.cache
def _probe() -> str | None:
    try:
        import ndonnx  # noqa: F401
    except Exception as exc:
        return f"ndonnx is not installed or failed to import ({exc}); install portnn[onnx]"
    return None


def _no_backward(dy: Any) -> Any:
    raise NotImplementedError("ndonnx arrays record an evaluation-mode forward for ONNX export; they have no backward pass")


class NdonnxAdapter(Adapter):
    name = "ndonnx"
    inplace = False
    trainable = False

    def import_error(self) -> str | None:
        return _probe()

    @property
    def xp(self) -> Any:
        import ndonnx

        return ndonnx

    def default_device(self) -> Any:
        import ndonnx

        return ndonnx.__array_namespace_info__().default_device()

    def device(self, name: Any = None) -> Any:
        if name is not None and name != self.default_device():
            raise ValueError(f"ndonnx arrays have one device (the ONNX runtime chooses where it runs); got device={name!r}")
        return self.default_device()

    def device_name(self, device: Any) -> str:
        return "onnx"

    def supports_float64(self, device: Any = None) -> bool:
        return True

    def owns(self, x: Any) -> bool:
        return type(x).__module__.startswith("ndonnx")

    def from_numpy(self, a: Any, device: Any = None) -> Any:
        """A constant of the graph holding ``a``."""
        import ndonnx

        return ndonnx.asarray(a)

    def to_numpy(self, x: Any) -> Any:
        """The value of ``x`` when it is known while the graph is built (a constant); a ValueError otherwise."""
        try:
            return x.unwrap_numpy()
        except ValueError as exc:
            raise ValueError(
                "this ndonnx array depends on the graph's input, so it has no value until the ONNX graph runs; "
                f"an exported forward cannot bring it to the host ({exc})"
            ) from None

    def make_generator(self, seed: int, device: Any = None) -> Any:
        raise NotImplementedError(
            "ndonnx records the evaluation-mode forward for ONNX export: a layer cannot draw random numbers there "
            "(Dropout and RandomTranslation are the identity at evaluation)"
        )

    def random_uniform(self, generator: Any, shape: tuple[int, ...], dtype: Any, device: Any = None) -> Any:
        return self.make_generator(0, device)

    def conv2d(
        self,
        x: Any,
        weight: Any,
        bias: Any,
        *,
        stride: tuple[int, int],
        padding: tuple[int, int],
        dilation: tuple[int, int],
        input_grad: bool,
        param_grad: bool = True,
    ) -> tuple[Any, Any] | None:
        """One ONNX ``Conv`` node (PyTorch's conv2d, same layout) in float32; None in float64.

        onnxruntime has no float64 ``Conv`` kernel, so float64 models take the generic
        im2col path, which records slices and a matrix product.
        """
        import ndonnx

        if x.dtype != ndonnx.float32:
            return None
        import spox.opset.ai.onnx.v21 as op  # the opset ndonnx builds its graphs with

        (kh, kw), (ph, pw) = tuple(int(d) for d in weight.shape[2:]), padding
        inputs = [x.unwrap_spox(), weight.unwrap_spox()] + ([] if bias is None else [bias.unwrap_spox()])
        y = op.conv(*inputs, kernel_shape=[kh, kw], strides=list(stride), pads=[ph, pw, ph, pw], dilations=list(dilation))
        return ndonnx.asarray(y), _no_backward

    def erf(self, x: Any) -> Any:
        """One ONNX ``Erf`` node in float32; None in float64, which onnxruntime has no ``Erf`` kernel for."""
        import ndonnx

        if x.dtype != ndonnx.float32:
            return None
        import spox.opset.ai.onnx.v21 as op

        return ndonnx.asarray(op.erf(x.unwrap_spox()))

"""CuPy adapter: CUDA GPUs. Imported lazily; CuPy installs and imports on machines without a GPU."""

from __future__ import annotations

import functools
from typing import Any

from ._base import Adapter


@functools.cache
def _probe() -> str | None:
    try:
        import cupy
    except Exception as exc:  # ImportError, or a broken CUDA install
        return f"CuPy is not installed or failed to import ({exc}); install portnn[cupy]"
    try:
        if not cupy.is_available():
            return "CuPy is installed but finds no usable CUDA device (cupy.is_available() is False)"
    except Exception as exc:
        return f"CuPy could not query CUDA ({exc})"
    return None


class CupyAdapter(Adapter):
    name = "cupy"
    inplace = True

    def import_error(self) -> str | None:
        return _probe()

    @property
    def xp(self) -> Any:
        import array_api_compat.cupy as xp_cupy

        return xp_cupy

    def default_device(self) -> Any:
        import cupy

        return cupy.cuda.Device()

    def device(self, name: Any = None) -> Any:
        import cupy

        if name is None:
            return self.default_device()
        if isinstance(name, cupy.cuda.Device):
            return name
        if isinstance(name, int):
            return cupy.cuda.Device(name)
        text = str(name)
        if text in ("cuda", "gpu"):
            return cupy.cuda.Device()
        for prefix in ("cuda:", "gpu:"):
            if text.startswith(prefix) and text[len(prefix) :].isdigit():
                return cupy.cuda.Device(int(text[len(prefix) :]))
        raise ValueError(f"the cupy backend takes devices like 'cuda:0' or 0; got device={name!r}")

    def device_name(self, device: Any) -> str:
        return f"cuda:{device.id}"

    def owns(self, x: Any) -> bool:
        from array_api_compat import is_cupy_array

        return is_cupy_array(x)

    def from_numpy(self, a: Any, device: Any = None) -> Any:
        import cupy

        with self.device(device):
            return cupy.asarray(a)

    def to_numpy(self, x: Any) -> Any:
        return x.get()

    def dlpack_device(self, device: Any) -> tuple[int, int] | None:
        import cupy

        with self.device(device):
            kind, index = cupy.empty(0).__dlpack_device__()  # kDLCUDA, or kDLROCM on AMD builds
        return int(kind), int(index)

    def from_dlpack(self, x: Any, device: Any = None) -> Any:
        import cupy

        with self.device(device):
            return cupy.from_dlpack(x)

    def make_generator(self, seed: int, device: Any = None) -> Any:
        import cupy

        with self.device(device):  # the XORWOW state is allocated on the current device
            return cupy.random.default_rng(seed)

    def random_uniform(self, generator: Any, shape: tuple[int, ...], dtype: Any, device: Any = None) -> Any:
        with self.device(device):
            return generator.random(tuple(shape), dtype=dtype)

    def generator_state(self, generator: Any) -> Any:
        return None  # CuPy's random states cannot be serialized (its docs say so); a resumed run re-seeds (see fit)

    def synchronize(self, device: Any = None) -> None:
        self.device(device).synchronize()

    # -- fast kernels (see Adapter.index_add_rows) ------------------------------------------
    def index_add_rows(self, n_rows: int, indices: Any, values: Any) -> Any:
        import cupy
        import cupyx

        with values.device:
            out = cupy.zeros((n_rows, values.shape[1]), dtype=values.dtype)
            # atomic adds on the GPU: duplicates accumulate (float sums may differ in the last bits run to run)
            cupyx.scatter_add(out, indices, values)
        return out

    def copy_stream(self, device: Any = None) -> tuple[Any, Any]:
        import cupy

        with self.device(device):
            stream = cupy.cuda.Stream(non_blocking=True)
        return stream, stream.synchronize

    def optimizer_kernel(self, name: str) -> Any:
        """One ``ElementwiseKernel`` per fused optimizer update (Chainer's Adam kernel is the model)."""
        source = _KERNELS.get(name)
        if source is None:
            return None
        kernel = _elementwise(name)
        arrays, scalars = source[0], source[1]

        def run(param: Any, grad: Any, state: dict[str, Any], s: dict[str, float]) -> None:
            t = param.dtype.type
            kernel(grad, *(t(s[k]) for k in scalars), param, *(state[k] for k in arrays))

        return run

    def erf(self, x: Any) -> Any:
        import cupyx.scipy.special

        return cupyx.scipy.special.erf(x)


#: The fused optimizer updates (see ``portnn.backends._base.OPTIMIZER_KERNELS`` for the formula each must equal):
#: the state arrays it writes, its scalars (each of the parameter's dtype) and the CUDA body.
_KERNELS: dict[str, tuple[tuple[str, ...], tuple[str, ...], str]] = {
    "adam": (
        ("exp_avg", "exp_avg_sq"),
        ("decay", "weight_decay", "one_minus_beta1", "beta2", "one_minus_beta2", "neg_step_size",
         "bias_correction2_sqrt", "eps"),
        """
        T g = grad;
        if (decay != (T)1) param *= decay;
        if (weight_decay != (T)0) g = g + weight_decay * param;
        exp_avg += one_minus_beta1 * (g - exp_avg);
        exp_avg_sq *= beta2;
        exp_avg_sq += one_minus_beta2 * (g * g);
        param += neg_step_size * (exp_avg / (sqrt(exp_avg_sq) / bias_correction2_sqrt + eps));
        """,
    ),
    "sgd": (
        (),
        ("weight_decay", "neg_lr"),
        """
        T g = grad;
        if (weight_decay != (T)0) g = g + weight_decay * param;
        param += neg_lr * g;
        """,
    ),
    "sgd_momentum": (
        ("momentum_buffer",),
        ("weight_decay", "momentum", "nesterov", "neg_lr"),
        """
        T g = grad;
        if (weight_decay != (T)0) g = g + weight_decay * param;
        momentum_buffer *= momentum;
        momentum_buffer += g;
        g = nesterov != (T)0 ? g + momentum * momentum_buffer : momentum_buffer;
        param += neg_lr * g;
        """,
    ),
}  # fmt: skip


#: The names of the fused optimizer updates this adapter runs as one kernel each.
OPTIMIZER_KERNELS = tuple(_KERNELS)


@functools.cache
def _elementwise(name: str) -> Any:
    import cupy

    arrays, scalars, body = _KERNELS[name]
    inputs = ", ".join(["T grad", *(f"T {k}" for k in scalars)])
    outputs = ", ".join(["T param", *(f"T {k}" for k in arrays)])
    return cupy.ElementwiseKernel(inputs, outputs, body, f"portnn_{name}")

"""The adapter protocol: what each array library must provide beyond the array API standard."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from array_api_compat import array_namespace

from .._array import dtype_name


class BackendUnavailableError(RuntimeError):
    """Raised when a backend is asked for but cannot run on this machine."""


class Adapter:
    """One array library's non-standard parts.

    The core of portnn is written against the array API standard and infers its
    namespace from its inputs. An adapter holds what the standard leaves out:
    turning device names into device objects, moving host (NumPy) data in and
    out, a seeded random generator, synchronisation for timing, and what the
    library can do (``supports_float64``, ``inplace``), and optional fast kernels for hot
    loops (``conv2d``, ``conv2d_im2col``, ``relu``, ``max_pool2d``, ``batch_moments``,
    ``batch_norm``, ``index_add_rows``) that return None where the library has none.

    Subclasses set the class attributes and override the methods that differ.

    Random numbers on the device: train-time randomness (dropout masks) is drawn where
    the data lives, from a generator the adapter makes and the layer keeps::

        gen = adapter.make_generator(seed, device)
        u = adapter.random_uniform(gen, (32, 128), x.dtype, device)  # U[0, 1), on device

    ``random_uniform`` returns an array of this library on ``device`` with ``dtype`` (float32
    or float64, the input's): no host round trip and no float64 creep. One seed gives one
    stream per backend; the streams of different backends differ (PCG64 on NumPy, XORWOW on
    CuPy, PyTorch's own generators), except NumPy and array-api-strict, which share the host
    PCG64. The default here draws on the host with NumPy's PCG64 and copies the draws to
    ``device`` with :meth:`from_numpy`: right for host-backed test libraries
    (array-api-strict); device libraries override both methods.
    """

    #: The name used by :func:`portnn.set_backend`.
    name: str = ""
    #: Whether arrays support in-place operators (``a -= b``) that keep views valid.
    inplace: bool = True
    #: Whether models can live and train on this library. False for an export target (ndonnx,
    #: whose arrays record an ONNX graph): :func:`portnn.set_backend` and
    #: :func:`portnn.available_backends` offer only the adapters that can.
    trainable: bool = True

    # -- availability -----------------------------------------------------------------
    def import_error(self) -> str | None:
        """Return why the library cannot be used here, or None when it can."""
        return None

    def is_available(self) -> bool:
        return self.import_error() is None

    # -- the namespace and devices ----------------------------------------------------
    @property
    def xp(self) -> Any:
        """The array-API-compatible namespace (through array-api-compat)."""
        raise NotImplementedError

    def default_device(self) -> Any:
        raise NotImplementedError

    def device(self, name: Any = None) -> Any:
        """Turn a device name (or None for the default, or a device object) into a device."""
        if name is None:
            return self.default_device()
        return name

    def device_name(self, device: Any) -> str:
        return str(device)

    def supports_float64(self, device: Any = None) -> bool:
        return True

    def launch_bound(self, device: Any = None) -> bool:
        """Whether each array operation on ``device`` costs a launch that fewer, bigger operations save (a GPU).

        The optimizers update all parameters of a dtype in flat buffers where it is (a handful of
        kernels a step instead of a handful per parameter); on a CPU, where an operation costs its
        memory traffic, gathering the gradients into one buffer is a copy that saves nothing, so
        they update parameter by parameter. True here (array-api-strict, the GPU's stand-in in the
        tests, runs what a GPU runs); the CPU libraries say False.
        """
        return True

    def owns(self, x: Any) -> bool:
        """Whether ``x`` is an array of this library."""
        raise NotImplementedError

    # -- host transfer ----------------------------------------------------------------
    def from_numpy(self, a: Any, device: Any = None) -> Any:
        """Copy a NumPy array onto ``device`` (no copy where the memory can be shared)."""
        raise NotImplementedError

    def to_numpy(self, x: Any) -> Any:
        """Return ``x`` as a NumPy array on the host (a copy for device memory)."""
        raise NotImplementedError

    # -- DLPack: arrays of another library, without a host round trip --------------------
    def dlpack_device(self, device: Any) -> tuple[int, int] | None:
        """``device`` as DLPack names it, ``(device type, id)`` (``(1, 0)`` is the host CPU, ``(2, k)`` CUDA device k).

        None where DLPack cannot reach the device: then no array of another library is taken
        in place (the default; array-api-strict's fake devices say so too).
        """
        return None

    def from_dlpack(self, x: Any, device: Any = None) -> Any:
        """An array of this library on ``device`` that shares the memory of ``x`` (another library's array).

        Called only when :meth:`dlpack_device` of ``device`` equals the DLPack device of ``x``.
        Raises what the library raises when ``x`` cannot be exported (a torch tensor that
        requires grad, say).
        """
        raise NotImplementedError(f"the {self.name} adapter takes no DLPack arrays")

    # -- random numbers ---------------------------------------------------------------
    def make_generator(self, seed: int, device: Any = None) -> Any:
        """A random generator seeded with the int ``seed``, drawing onto ``device``.

        Keep it with the device it was made for: a generator belongs to one device.
        """
        import numpy as np

        return np.random.Generator(np.random.PCG64(seed))

    def random_uniform(self, generator: Any, shape: tuple[int, ...], dtype: Any, device: Any = None) -> Any:
        """Uniform draws in [0, 1) of ``shape`` and float ``dtype`` (this library's), born on ``device``."""
        host = generator.random(shape, dtype=_float_name(dtype_name(dtype)))
        return self.from_numpy(host, device)

    def generator_state(self, generator: Any) -> Any:
        """The state of a generator from :meth:`make_generator` as a NumPy uint8 array (None: cannot be captured).

        Training checkpoints store it, so that a resumed run draws the same dropout masks.
        """
        import json

        import numpy as np

        return np.frombuffer(json.dumps(generator.bit_generator.state).encode(), dtype=np.uint8).copy()

    def set_generator_state(self, generator: Any, state: Any) -> None:
        """Restore a state returned by :meth:`generator_state` into ``generator``."""
        import json

        generator.bit_generator.state = json.loads(bytes(state).decode())

    def synchronize(self, device: Any = None) -> None:
        """Wait for queued device work to finish (for timing). No-op on synchronous backends."""

    # -- optional fast kernels --------------------------------------------------------
    # Each returns None here, and the core runs its generic array-API path. An override
    # computes the same function on the same device in the input's dtype (equal up to the
    # rounding of a different summation order), and may return None for arguments it does
    # not speed up.
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
        """A fast :func:`portnn.functional.conv.conv2d` for this library: ``(y, backward)``, or None.

        Called with checked arguments (shapes that fit, one dtype, pairs of ints, an output
        of at least 1 x 1); ``backward(dy)`` returns ``(dx, dweight, dbias)`` as the generic
        path does (``dweight``/``dbias`` None with ``param_grad=False``).
        """
        return None

    def conv2d_im2col(
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
        """The generic im2col path of :func:`portnn.functional.conv.conv2d` in this library's own terms, or None.

        Asked where :meth:`conv2d` returned None; the same arguments and results, and the
        generic path's values bit for bit (the same layout, products and sums in the same
        order): what it may change is memory traffic (``out=``, reused buffers).
        """
        return None

    def relu(self, x: Any) -> tuple[Any, Any] | None:
        """A fast :func:`portnn.functional.relu` for this library: ``(y, backward)``, or None.

        ``y = max(x, 0)`` and ``backward(dy) = dy * [y > 0]`` with the generic path's values
        (bit for bit: the same elementwise operations), dtypes and shapes.
        """
        return None

    def lstm(
        self,
        x: Any,
        weight_ih: Any,
        weight_hh: Any,
        bias_ih: Any,
        bias_hh: Any,
        *,
        return_sequences: bool,
        input_grad: bool,
        param_grad: bool,
    ) -> tuple[Any, Any] | None:
        """A fast :func:`portnn.functional.lstm` for this library: ``(y, backward)``, or None.

        Called with checked arguments; the generic path's results up to the rounding of a
        different summation order (its products may be fused or laid out otherwise), dtypes and
        shapes, ``backward(dy)`` returning ``(dx, dweight_ih, dweight_hh, dbias_ih, dbias_hh)``
        as it does.
        """
        return None

    def max_pool2d(
        self,
        x: Any,
        kernel_size: tuple[int, int],
        stride: tuple[int, int],
        padding: tuple[int, int],
        out: tuple[int, int],
        input_grad: bool = True,
    ) -> tuple[Any, Any] | None:
        """A fast :func:`portnn.functional.pooling.max_pool2d` for this library: ``(y, backward)``, or None.

        Called with checked arguments; ``out`` is the output (Ho, Wo). ``backward(dy)`` returns
        ``dx`` (None with ``input_grad=False``). Bit for bit the generic path's values, ties and
        NaN included (the same comparisons in the same order); None for arguments it does not
        speed up.
        """
        return None

    def batch_moments(self, x: Any) -> tuple[Any, Any] | None:
        """A fast :func:`portnn.functional.batch_moments` (per-channel mean and biased variance), or None.

        Called for ``x`` of shape (N, C) or (N, C, L); the generic path's values bit for bit.
        """
        return None

    def batch_norm(
        self,
        x: Any,
        weight: Any,
        bias: Any,
        *,
        mean: Any,
        var: Any,
        training: bool,
        eps: float,
        input_grad: bool,
        param_grad: bool,
    ) -> tuple[Any, Any] | None:
        """A fast :func:`portnn.functional.batch_norm` for this library: ``(y, backward)``, or None.

        Called with checked arguments (``x`` (N, C) or (N, C, L), ``mean`` and ``var`` given);
        the generic path's results bit for bit (the same operations in the same order).
        """
        return None

    def index_add_rows(self, n_rows: int, indices: Any, values: Any) -> Any:
        """A fast ``out[indices[m]] += values[m]`` into ``n_rows`` zero rows, or None (the core's generic path).

        ``indices`` is a 1-D int32/int64 array of M row numbers in ``0..n_rows-1`` (checked by the
        caller), repeated indices included; ``values`` is (M, D) on the same device. Returns
        ``out`` of shape (n_rows, D) and ``values``' dtype, where every repeated index
        accumulates (the gradient of an embedding's row lookup). A plain ``out[idx] += v``
        keeps one of the duplicates on NumPy and is undefined in the array API standard.
        """
        return None

    def concat_into(self, arrays: list[Any], out: Any) -> bool:
        """Write the arrays, flattened and one after the other, into the 1-D ``out`` in one operation; False if it cannot.

        The optimizers gather the gradients into their flat gradient buffer with it; False (the
        default) makes them concatenate into a new buffer instead (the same values).
        """
        return False

    def copy_stream(self, device: Any = None) -> tuple[Any, Callable[[], None]] | None:
        """A stream for a background thread's host-to-device copies and how to wait for it, or None.

        ``(context, synchronize)``: the prefetch thread of :mod:`portnn.data` runs its copies
        inside ``context`` and calls ``synchronize()`` before it hands a batch over, so the copy of
        the next batch overlaps the step on this one. None (the default): copies run in order.
        """
        return None

    def optimizer_kernel(self, name: str) -> Callable[[Any, Any, dict[str, Any], dict[str, float]], None] | None:
        """A fused optimizer update ``name`` (see :data:`OPTIMIZER_KERNELS`) as one kernel, or None (the generic path).

        The optimizers call it on their flat buffers (:meth:`portnn.optim.Optimizer.step`):
        ``kernel(param, grad, state, scalars)`` writes ``param`` and the arrays of ``state`` in
        place and only reads ``grad``; ``scalars`` are Python floats. It must compute what
        :data:`OPTIMIZER_KERNELS`'s reference does, element by element (the same formulas, so
        equal up to the rounding of the device's fused multiply-adds).
        """
        return None

    def erf(self, x: Any) -> Any:
        """The error function of ``x`` elementwise by this library's own kernel (same dtype and device), or None.

        None (the default) where the library has none: :func:`portnn.functional.erf` then
        evaluates W. J. Cody's rational approximations with array-API operations.
        """
        return None

    def __repr__(self) -> str:
        return f"<portnn backend {self.name!r}>"


def _float_name(name: str) -> str:
    """Check that ``name`` is a float dtype the generators can draw (float32 or float64)."""
    if name not in ("float32", "float64"):
        raise TypeError(f"random_uniform draws float32 or float64; got dtype {name}")
    return name


# -- fused optimizer updates: the formulas each kernel computes, in array-API operations ---------------


def _adam_reference(param: Any, grad: Any, state: dict[str, Any], s: dict[str, float]) -> None:
    """Adam/AdamW (no AMSGrad), PyTorch's order of operations: what ``portnn.optim.Adam`` computes per parameter."""
    xp = array_namespace(param, grad)
    g = grad
    if s["decay"] != 1.0:  # AdamW's decoupled decay
        param *= s["decay"]
    if s["weight_decay"]:  # Adam's L2 term
        g = g + s["weight_decay"] * param
    m, v = state["exp_avg"], state["exp_avg_sq"]
    m += s["one_minus_beta1"] * (g - m)
    v *= s["beta2"]
    v += s["one_minus_beta2"] * (g * g)
    param += s["neg_step_size"] * (m / (xp.sqrt(v) / s["bias_correction2_sqrt"] + s["eps"]))


def _sgd_reference(param: Any, grad: Any, state: dict[str, Any], s: dict[str, float]) -> None:
    """SGD without momentum, with L2 weight decay: what ``portnn.optim.SGD`` computes per parameter."""
    g = grad + s["weight_decay"] * param if s["weight_decay"] else grad
    param += s["neg_lr"] * g


def _sgd_momentum_reference(param: Any, grad: Any, state: dict[str, Any], s: dict[str, float]) -> None:
    """SGD with (Nesterov) momentum after the first step (the buffer exists), with L2 weight decay."""
    g = grad + s["weight_decay"] * param if s["weight_decay"] else grad
    buf = state["momentum_buffer"]
    buf *= s["momentum"]
    buf += g
    g = g + s["momentum"] * buf if s["nesterov"] else buf
    param += s["neg_lr"] * g


#: The fused optimizer updates an adapter may provide (:meth:`Adapter.optimizer_kernel`), by name, each with the
#: reference it must equal: array-API operations in the order of the generic per-parameter path.
OPTIMIZER_KERNELS: dict[str, Callable[[Any, Any, dict[str, Any], dict[str, float]], None]] = {
    "adam": _adam_reference,
    "sgd": _sgd_reference,
    "sgd_momentum": _sgd_momentum_reference,
}

#: The adapter's kernel hooks (each returns None for the core's generic path): what
#: :class:`portnn.testing.OpCounter` switches off to count the portable path a GPU runs.
KERNEL_HOOKS: tuple[str, ...] = (
    "conv2d",
    "conv2d_im2col",
    "relu",
    "max_pool2d",
    "batch_moments",
    "batch_norm",
    "index_add_rows",
    "concat_into",
    "lstm",
)

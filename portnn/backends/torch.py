"""PyTorch adapter: CPU or CUDA tensors through array-api-compat (no autograd is used)."""

from __future__ import annotations

import functools
from typing import Any

from ._base import Adapter


@functools.cache
def _probe() -> str | None:
    try:
        import torch  # noqa: F401
    except Exception as exc:
        return f"PyTorch is not installed or failed to import ({exc})"
    return None


class TorchAdapter(Adapter):
    name = "torch"
    inplace = True

    def import_error(self) -> str | None:
        return _probe()

    @property
    def xp(self) -> Any:
        import array_api_compat.torch as xp_torch

        return xp_torch

    def default_device(self) -> Any:
        import torch

        return torch.device("cpu")

    def device(self, name: Any = None) -> Any:
        import torch

        if name is None:
            return self.default_device()
        try:
            dev = torch.device(name)
        except (RuntimeError, TypeError) as exc:
            raise ValueError(f"the torch backend takes devices like 'cpu' or 'cuda:0'; got device={name!r}") from exc
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device={name!r}: this PyTorch build sees no CUDA device; use 'cpu'")
        return torch.device("cuda", torch.cuda.current_device()) if dev.type == "cuda" and dev.index is None else dev

    def supports_float64(self, device: Any = None) -> bool:
        return self.device(device).type != "mps"

    def launch_bound(self, device: Any = None) -> bool:
        return self.device(device).type != "cpu"

    def owns(self, x: Any) -> bool:
        from array_api_compat import is_torch_array

        return is_torch_array(x)

    def from_numpy(self, a: Any, device: Any = None) -> Any:
        import torch

        return torch.as_tensor(a, device=self.device(device))

    def to_numpy(self, x: Any) -> Any:
        return x.detach().cpu().numpy()

    def dlpack_device(self, device: Any) -> tuple[int, int] | None:
        import torch

        dev = self.device(device)
        if dev.type not in ("cpu", "cuda"):
            return None  # mps, xla...: no DLPack device of their own
        kind, index = torch.empty(0, device=dev).__dlpack_device__()
        return int(kind), int(index)

    def from_dlpack(self, x: Any, device: Any = None) -> Any:
        import torch

        return torch.from_dlpack(x)

    def make_generator(self, seed: int, device: Any = None) -> Any:
        import torch

        return torch.Generator(device=self.device(device)).manual_seed(seed)

    def random_uniform(self, generator: Any, shape: tuple[int, ...], dtype: Any, device: Any = None) -> Any:
        import torch

        return torch.rand(tuple(shape), generator=generator, dtype=dtype, device=self.device(device))

    def generator_state(self, generator: Any) -> Any:
        return generator.get_state().numpy().copy()

    def set_generator_state(self, generator: Any, state: Any) -> None:
        import torch

        generator.set_state(torch.from_numpy(state.copy()))

    def erf(self, x: Any) -> Any:
        import torch

        return torch.special.erf(x)

    def synchronize(self, device: Any = None) -> None:
        import torch

        dev = self.device(device)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    # -- fast kernels (see Adapter.index_add_rows) ------------------------------------------
    def index_add_rows(self, n_rows: int, indices: Any, values: Any) -> Any:
        import torch

        out = torch.zeros((n_rows, values.shape[1]), dtype=values.dtype, device=values.device)
        # deterministic on the CPU; on CUDA the adds are atomic, so float sums may differ in the last bits run to run
        return out.index_add_(0, indices, values)

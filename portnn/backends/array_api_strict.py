"""array-api-strict adapter: the portability proof on a machine without a GPU.

Its fake devices (``"device1"``, ``"device2"``) raise when arrays of two devices meet, so a
suite that passes with parameters on ``device1`` never mixes devices by accident.
"""

from __future__ import annotations

import functools
from typing import Any

from ._base import Adapter


@functools.cache
def _probe() -> str | None:
    try:
        import array_api_strict  # noqa: F401
    except Exception as exc:
        return f"array-api-strict is not installed ({exc}); install portnn[test]"
    return None


class StrictAdapter(Adapter):
    name = "array_api_strict"
    inplace = True

    def import_error(self) -> str | None:
        return _probe()

    @property
    def xp(self) -> Any:
        import array_api_strict

        return array_api_strict

    def default_device(self) -> Any:
        import array_api_strict

        return array_api_strict.Device("CPU_DEVICE")

    def device(self, name: Any = None) -> Any:
        import array_api_strict

        if name is None:
            return self.default_device()
        if isinstance(name, array_api_strict.Device):
            return name
        try:
            return array_api_strict.Device(str(name))
        except ValueError as exc:
            raise ValueError(
                f"the array_api_strict backend takes devices 'CPU_DEVICE', 'device1' or 'device2'; got device={name!r}"
            ) from exc

    def device_name(self, device: Any) -> str:
        return str(device._device) if hasattr(device, "_device") else str(device)

    def owns(self, x: Any) -> bool:
        return type(x).__module__.startswith("array_api_strict")

    def from_numpy(self, a: Any, device: Any = None) -> Any:
        import array_api_strict

        return array_api_strict.asarray(a, device=self.device(device))

    def to_numpy(self, x: Any) -> Any:
        import array_api_strict
        import numpy as np

        return np.asarray(x.to_device(array_api_strict.Device("CPU_DEVICE")))

    def dlpack_device(self, device: Any) -> tuple[int, int] | None:
        # The fake devices hold host memory and DLPack calls them the CPU; by contract they are
        # separate devices, so that a model on device1 never takes other memory in place.
        return (1, 0) if self.device_name(self.device(device)) == "CPU_DEVICE" else None

    def from_dlpack(self, x: Any, device: Any = None) -> Any:
        import array_api_strict

        return array_api_strict.from_dlpack(x, device=self.device(device))

    # make_generator / random_uniform: the Adapter defaults (host PCG64, copied to the device)

"""The ``tank`` driver: a level gauge whose level falls a little every tick (a simulated
peer: the walk-through is about the wiring, not a protocol). Writing ``level_pct`` refills."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Literal

from pydantic import Field

from drivers.base import (
    DeviceConfig,
    Driver,
    DriverContext,
    TaskFactory,
    UnknownPoint,
    WriteFailed,
)
from gateway.model import DeviceStatus, Sample, Value


class TankDevice(DeviceConfig):
    type: Literal["tank"]
    interval: float = Field(0.02, gt=0, description="Seconds between readings.")
    drain_pct: float = Field(5.0, gt=0, description="Level lost per reading, percent.")


class TankDriver(Driver):
    def __init__(self, devices: Sequence[TankDevice], ctx: DriverContext) -> None:
        super().__init__(devices, ctx)
        self.level = {d.id: 100.0 for d in devices}

    def tasks(self) -> Iterable[tuple[str, TaskFactory]]:
        for device in self.devices.values():
            yield f"poll[{device.id}]", lambda d=device: self.poll(d)

    async def poll(self, device: TankDevice) -> None:
        self.ctx.set_status(device.id, DeviceStatus.ONLINE, "gauge answers")
        while True:
            level = self.level[device.id] = max(0.0, self.level[device.id] - device.drain_pct)
            await self.ctx.emit([Sample(device.id, "level_pct", self.ctx.clock.now_ms(), level)])
            await self.ctx.clock.sleep(device.interval)

    async def write(self, device: str, point: str, value: Value) -> Any:
        if point != "level_pct":
            raise UnknownPoint(device, f"no point {point!r}; a tank has level_pct")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise WriteFailed(device, f"level_pct takes a number, not {value!r}")
        self.level[device] = float(value)
        return self.level[device]


"""Fixtures: a real pymodbus simulator on a free loopback port, and a driver runner."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from drivers.modbus.config import ModbusDeviceConfig
from drivers.modbus.driver import ModbusDriver
from drivers.modbus.simulator import ModbusSimulator, unit_of
from drivers.testing import RecordingContext


def device(**kw: Any) -> ModbusDeviceConfig:
    base: dict[str, Any] = {"id": "dev", "host": "127.0.0.1", "port": 1, "interval": 0.2,
                            "timeout": 0.3}
    base.update(kw)
    return ModbusDeviceConfig.model_validate(base)


@asynccontextmanager
async def serving(*cfgs: ModbusDeviceConfig, **kw: Any) -> AsyncIterator[
        tuple[ModbusSimulator, list[ModbusDeviceConfig]]]:
    """Start a simulator for the devices and return them re-pointed at its port."""
    sim = ModbusSimulator([unit_of(c) for c in cfgs], **kw)
    port = await sim.start()
    try:
        yield sim, [c.model_copy(update={"port": port}) for c in cfgs]
    finally:
        await sim.stop()


@asynccontextmanager
async def running(cfgs: list[ModbusDeviceConfig], ctx: RecordingContext | None = None
                  ) -> AsyncIterator[tuple[ModbusDriver, RecordingContext]]:
    """Run a driver's tasks (without in-process simulators) until the block exits."""
    ctx = ctx or RecordingContext()
    drv = ModbusDriver(cfgs, ctx)
    tasks = [asyncio.create_task(f(), name=n) for n, f in drv.tasks() if not n.startswith(
        "modbus-sim")]
    try:
        yield drv, ctx
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for t in tasks:  # a poller must never have died on its own
            assert t.cancelled(), f"task {t.get_name()} ended: {t}"
        await drv.close()


def latest(ctx: RecordingContext, point: str) -> Any:
    return next(s for s in reversed(ctx.samples) if s.point == point)


Waiter = Callable[[RecordingContext], bool]



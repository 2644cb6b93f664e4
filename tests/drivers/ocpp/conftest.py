"""Fixtures: a real OCPP central system (the driver's websocket server on 127.0.0.1, port 0)
with a RecordingContext, and simulated charge points that connect to it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from drivers.ocpp.config import OcppDeviceConfig
from drivers.ocpp.driver import OcppDriver
from drivers.ocpp.security import hash_password
from drivers.ocpp.simulator import SimCharger
from drivers.testing import RecordingContext

PASSWORD = "correct-horse-battery-staple"
_HASH = hash_password(PASSWORD)


def charger(cid: str, **kw: Any) -> OcppDeviceConfig:
    return OcppDeviceConfig(id=cid, type="ocpp", password_hash=_HASH, **kw)


def server(**settings: Any) -> OcppDeviceConfig:
    base = {"host": "127.0.0.1", "port": 0, "call_timeout": 2.0}
    return OcppDeviceConfig.model_validate(
        {"id": "csms", "type": "ocpp", "role": "server", "server": {**base, **settings}}
    )


@dataclass
class Gateway:
    driver: OcppDriver
    ctx: RecordingContext
    task: asyncio.Task[None]
    sims: list[SimCharger] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.driver.server.port}/ocpp"

    def sim(self, cid: str, version: str = "1.6", password: str | None = PASSWORD,
            **kw: Any) -> SimCharger:
        sim = SimCharger(cid, version, self.url, password=password, **kw)
        self.sims.append(sim)
        return sim

    def command(self, name: str) -> Callable[..., Any]:
        cmd = next(c for c in self.driver.commands() if c.name == name)

        async def run(**args: Any) -> Any:
            return await cmd.handler(cmd.args_model.model_validate(args))

        return run

    async def stop(self) -> None:
        for sim in self.sims:
            await sim.disconnect()
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        await self.driver.close()


async def start_gateway(devices: list[OcppDeviceConfig],
                        ctx: RecordingContext | None = None) -> Gateway:
    ctx = ctx or RecordingContext()
    driver = OcppDriver(devices, ctx)
    task = asyncio.create_task(driver.server.run())
    await asyncio.wait_for(driver.server.ready.wait(), 5)
    return Gateway(driver, ctx, task)


@pytest.fixture
async def make_gateway() -> AsyncIterator[Callable[..., Any]]:
    started: list[Gateway] = []

    async def make(devices: list[OcppDeviceConfig], ctx: RecordingContext | None = None) -> Gateway:
        gw = await start_gateway(devices, ctx)
        started.append(gw)
        return gw

    yield make
    for gw in started:
        await gw.stop()

"""Helpers for the OPC-UA driver tests: build device configs, run the driver like the runtime
does, pick values out of a RecordingContext."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from drivers.opcua.config import OpcuaDeviceConfig
from drivers.opcua.driver import OpcuaDriver
from drivers.testing import RecordingContext


def device(url: str, groups: list[dict[str, Any]], **extra: Any) -> OpcuaDeviceConfig:
    raw: dict[str, Any] = {
        "id": extra.pop("id", "inv-1"),
        "type": "opcua",
        "url": url,
        "watchdog_interval": 0.5,
        "request_timeout": 2,
        "reconnect": {"initial_delay": 0.2, "max_delay": 1.0},
        "groups": groups,
    }
    raw.update(extra)
    return OpcuaDeviceConfig.model_validate(raw)


@contextlib.asynccontextmanager
async def running(
    *configs: OpcuaDeviceConfig, state_dir: Path | None = None
) -> AsyncIterator[tuple[OpcuaDriver, RecordingContext]]:
    """Run every driver task as the runtime would, and cancel them afterwards."""
    ctx = RecordingContext(state_dir=state_dir)
    driver = OpcuaDriver(list(configs), ctx)
    tasks = [asyncio.create_task(factory(), name=name) for name, factory in driver.tasks()]
    try:
        yield driver, ctx
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for task in tasks:  # the contract: a task never ends by itself
            assert task.cancelled(), f"task {task.get_name()} ended on its own"
        await driver.close()


def values(ctx: RecordingContext, point: str) -> list[Any]:
    return [s.value for s in ctx.samples if s.point == point]

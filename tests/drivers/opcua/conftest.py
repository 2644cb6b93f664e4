"""Shared fixture: a real asyncua server (the inverter simulator) on a free loopback port."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio

from drivers.opcua.simulator import InverterSimulator


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def sim() -> AsyncIterator[InverterSimulator]:
    """One simulator per test module; tests drive values with ``sim.set`` (no auto steps)."""
    server = InverterSimulator(period=3600)
    await server.start()
    yield server
    await server.stop()

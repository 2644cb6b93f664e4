"""RTU on a serial line (a socat pty pair) and RTU framing over TCP, with two units sharing it."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pymodbus.framer import FramerType

from drivers.base import WriteResult
from drivers.modbus.config import ModbusDeviceConfig
from drivers.modbus.simulator import ModbusSimulator, unit_of
from drivers.testing import RecordingContext
from gateway.clock import SystemClock
from gateway.model import DeviceStatus, Quality
from tests.support.wait import wait_until

from .support import device, latest, running


class CountingClock(SystemClock):
    """Real time; counts the sleeps the driver takes on it (its retries)."""

    sleeps = 0

    async def sleep(self, seconds: float) -> None:
        self.sleeps += 1
        await super().sleep(seconds)

POINTS = [
    {"name": "v", "function": "input", "address": 0, "type": "float32", "unit": "V"},
    {"name": "sp", "function": "holding", "address": 4, "type": "int16", "writable": True},
]


@pytest.fixture
async def pty_pair(tmp_path: Path) -> AsyncIterator[tuple[str, str]]:
    if shutil.which("socat") is None:
        if os.environ.get("CI"):  # CI installs it: missing there is a failure
            pytest.fail("socat is not installed (.ci/run installs it)")
        pytest.skip("socat is not installed (apt-get install socat)")
    a, b = tmp_path / "gw", tmp_path / "dev"
    proc = await asyncio.create_subprocess_exec(
        "socat", f"pty,raw,echo=0,link={a}", f"pty,raw,echo=0,link={b}",
        stderr=asyncio.subprocess.DEVNULL,
    )
    await wait_until(lambda: a.exists() and b.exists(), 5, what="socat's ptys")
    yield str(a), str(b)
    proc.terminate()
    await proc.wait()


async def test_rtu_over_a_serial_pty_with_two_units(pty_pair: tuple[str, str]) -> None:
    gw, dev = pty_pair
    serial = {"port": gw, "baudrate": 38400, "inter_frame_delay": 0.002}
    cfgs = [
        ModbusDeviceConfig.model_validate({"id": f"m{u}", "transport": "rtu", "serial": serial,
                                           "unit": u, "interval": 0.1, "timeout": 0.5,
                                           "points": POINTS})
        for u in (1, 2)
    ]
    sim = ModbusSimulator([unit_of(c) for c in cfgs], serial_port=dev, baudrate=38400)
    await sim.start()
    try:
        async with running(cfgs) as (drv, ctx):
            assert list(drv.pollers) == [f"rtu://{gw}"]
            await ctx.wait_for(lambda c: {s.device for s in c.samples} == {"m1", "m2"}, 10)
            assert await drv.write("m2", "sp", -7) == WriteResult(-7)
            await ctx.wait_for(
                lambda c: any(s.device == "m2" and s.point == "sp" and s.value == -7
                              for s in c.samples), 5)
            assert ctx.status_of("m1") is DeviceStatus.ONLINE
            assert 200 < latest(ctx, "v").value < 260
            assert all(s.quality is Quality.GOOD for s in ctx.samples)
    finally:
        await sim.stop()
    log = sim.log
    assert all(log[i][0] == "recv" and log[i + 1][0] == "send" for i in range(0, len(log) - 1, 2))


async def test_rtu_framing_over_tcp_gateway() -> None:
    cfgs = [device(id=f"m{u}", unit=u, transport="rtu-over-tcp", points=POINTS) for u in (3, 4)]
    sim = ModbusSimulator([unit_of(c) for c in cfgs], framer=FramerType.RTU)
    port = await sim.start()
    cfgs = [c.model_copy(update={"port": port}) for c in cfgs]
    try:
        async with running(cfgs) as (drv, ctx):
            assert list(drv.pollers) == [f"rtu+tcp://127.0.0.1:{port}"]
            await ctx.wait_for(lambda c: {s.device for s in c.samples} == {"m3", "m4"}, 5)
            assert all(s.quality is Quality.GOOD for s in ctx.samples)
    finally:
        await sim.stop()


def test_devices_on_one_line_must_agree_on_settings() -> None:
    from drivers.modbus.driver import ModbusDriver
    from drivers.testing import RecordingContext

    a = device(id="a", unit=1, points=POINTS)
    with pytest.raises(ValueError, match="both use unit 1"):
        ModbusDriver([a, device(id="b", unit=1, points=POINTS)], RecordingContext())


async def test_serial_port_that_rejects_settings_is_offline_not_fatal(
    pty_pair: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    gw, _dev = pty_pair  # a pty refuses even parity: termios error at open
    cfg = ModbusDeviceConfig.model_validate({
        "id": "m1", "transport": "rtu", "serial": {"port": gw, "parity": "E"},
        "reconnect_max": 0.2, "points": POINTS})
    clock = CountingClock()
    async with running([cfg], RecordingContext(clock=clock)) as (_drv, ctx):
        await ctx.wait_for(lambda c: c.status_of("m1") is DeviceStatus.OFFLINE, 5)
        # keeps retrying (backoff sleeps on the driver's clock) without dying (running()
        # checks that no task ended)
        retries = clock.sleeps
        await wait_until(lambda: clock.sleeps >= retries + 3, 10, what="three more retries")
    assert any("cannot connect" in r.message for r in caplog.records)

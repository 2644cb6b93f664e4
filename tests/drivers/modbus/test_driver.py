"""The driver against real pymodbus servers: polling, failures, shared buses, writes."""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import socket
import time

import pytest
from pymodbus.constants import ExcCodes

from drivers.base import NotWritable, UnknownPoint, WriteFailed, WriteResult
from drivers.modbus.config import POINT
from drivers.modbus.datatypes import Function
from drivers.modbus.simulator import ModbusSimulator, unit_of
from gateway.model import DeviceStatus, Quality

from .support import device, latest, running, serving

METER = [
    {"name": "voltage", "function": "input", "address": 0, "type": "float32", "unit": "V"},
    {"name": "current", "function": "input", "address": 2, "type": "float32", "unit": "A"},
    {"name": "status", "function": "holding", "address": 10, "type": "uint16",
     "enum": {0: "ok", 1: "fault"}},
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_polls_and_emits_raw_status_code_with_maps_on_model() -> None:
    cfg = device(points=METER)
    async with serving(cfg) as (sim, [cfg]), running([cfg]) as (drv, ctx):
        sim.set_point(1, "status", 1)
        await ctx.wait_for(lambda c: len(c.batches) >= 2, 5)
        assert ctx.status_of("dev") is DeviceStatus.ONLINE
        assert latest(ctx, "status").value == 1
        assert 200 < latest(ctx, "voltage").value < 260
        status = cfg.all_points()["status"]
        assert status.describe_code(1) == ["fault"]
        # one request per table: the planner merged the two input floats
        assert drv.requests_per_cycle() == 2


async def test_exception_reply_marks_points_bad_and_device_stays_online(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cfg = device(points=METER)
    async with serving(cfg) as (sim, [cfg]), running([cfg]) as (_drv, ctx):
        await ctx.wait_for(lambda c: len(c.batches) >= 1, 5)
        sim.fail[1] = ExcCodes.ILLEGAL_ADDRESS
        n = len(ctx.batches)
        await ctx.wait_for(lambda c: len(c.batches) >= n + 3, 5)
        bad = ctx.batches[-1]
        assert {s.quality for s in bad} == {Quality.BAD}
        assert all(s.value is None for s in bad)
        assert ctx.status_of("dev") is DeviceStatus.ONLINE
        warnings = [r for r in caplog.records if "exception code 2" in r.getMessage()]
        assert len(warnings) == 2  # once per block, not once per cycle
        del sim.fail[1]
        n = len(ctx.batches)
        await ctx.wait_for(lambda c: len(c.batches) >= n + 2, 5)
        assert {s.quality for s in ctx.batches[-1]} == {Quality.GOOD}


async def test_unreadable_range_on_device_splits_the_plan() -> None:
    points = [{"name": "a", "address": 0}, {"name": "b", "address": 4}]
    hole = [{"function": "holding", "start": 2, "end": 2}]
    sim_cfg = device(points=points, unreadable=hole)
    async with serving(sim_cfg) as (_sim, [served]):
        naive = served.model_copy(update={"unreadable": []})
        async with running([naive]) as (drv, ctx):
            # not configured: the refused block is bisected, the hole learned, both points good
            await ctx.wait_for(lambda c: len(c.batches) >= 1, 5)
            assert {s.quality for s in ctx.batches[0]} == {Quality.GOOD}
            assert drv.requests_per_cycle() == 2
        async with running([served]) as (drv, ctx):
            await ctx.wait_for(lambda c: len(c.batches) >= 1, 5)
            assert drv.requests_per_cycle() == 2
            assert {s.quality for s in ctx.batches[0]} == {Quality.GOOD}


async def test_offline_after_timeouts_then_recovery_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="drivers.modbus")
    cfg = device(points=METER, timeout=0.2, interval=0.1, offline_after=2, reconnect_max=0.4)
    async with serving(cfg) as (sim, [cfg]), running([cfg]) as (_drv, ctx):
        await ctx.wait_for(lambda c: c.status_of("dev") is DeviceStatus.ONLINE, 5)
        sim.delay[1] = math.inf
        await ctx.wait_for(lambda c: c.status_of("dev") is DeviceStatus.OFFLINE, 5)
        assert any(s.quality is Quality.BAD and s.value is None for s in ctx.samples)
        offline = [r for r in caplog.records if "is offline after 2 failed cycles" in r.message]
        assert len(offline) == 1 and offline[0].levelno == logging.WARNING
        assert "unit 1 on tcp://127.0.0.1" in offline[0].message
        sim.delay[1] = 0
        await ctx.wait_for(lambda c: c.status_of("dev") is DeviceStatus.ONLINE, 5)
        assert any("dev (unit 1 on tcp://127.0.0.1" in r.message and "back online" in r.message
                   for r in caplog.records)
        n = len(ctx.batches)
        await ctx.wait_for(lambda c: len(c.batches) > n, 5)
        assert {s.quality for s in ctx.batches[-1]} == {Quality.GOOD}
        assert [s for _, s, _ in ctx.statuses] == [
            DeviceStatus.ONLINE, DeviceStatus.OFFLINE, DeviceStatus.ONLINE]


async def test_bus_down_then_server_appears(caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    cfg = device(points=METER, port=port, reconnect_max=0.3)
    async with running([cfg]) as (_drv, ctx):
        await ctx.wait_for(lambda c: c.status_of("dev") is DeviceStatus.OFFLINE, 5)
        assert any("is down" in r.message and "check the address" in r.message
                   for r in caplog.records)
        sim = ModbusSimulator([unit_of(cfg)], port=port)
        await sim.start()
        try:
            await ctx.wait_for(lambda c: c.status_of("dev") is DeviceStatus.ONLINE, 5)
            # and the server vanishing again is survived, too
            await sim.stop()
            await ctx.wait_for(lambda c: c.status_of("dev") is DeviceStatus.OFFLINE, 5)
        finally:
            await sim.stop()


async def test_shared_bus_never_interleaves_requests() -> None:
    a = device(id="a", unit=1, points=METER, interval=0.01)
    b = device(id="b", unit=2, points=METER, interval=0.01)
    writable = {"name": "setpoint", "address": 20, "type": "int32", "writable": True}
    a = a.model_copy(update={"points": [*a.points, POINT.validate_python(writable)]})
    async with serving(a, b) as (sim, [a, b]), running([a, b]) as (drv, ctx):
        assert len(drv.pollers) == 1  # one connection, one loop
        writes = [drv.write("a", "setpoint", i) for i in range(20)]
        await asyncio.gather(*writes)
        await ctx.wait_for(lambda c: {s.device for s in c.samples} == {"a", "b"}, 5)
        await ctx.wait_for(lambda c: len(c.batches) >= 30, 5)
    log = list(sim.log)
    assert len(log) > 60
    for i in range(0, len(log) - 1, 2):
        recv, send = log[i], log[i + 1]
        assert recv[0] == "recv" and send[0] == "send" and recv[1] == send[1], log[i:i + 4]
    assert {unit for _, unit, _ in log} == {1, 2}


async def test_dead_unit_does_not_stall_its_neighbour() -> None:
    good = device(id="good", unit=1, points=METER, interval=0.1, timeout=0.3)
    dead = device(id="dead", unit=2, points=METER, interval=0.1, timeout=0.3, retries=0,
                  reconnect_max=1.0)
    async with serving(good, dead) as (sim, [good, dead]):
        sim.delay[2] = math.inf
        async with running([good, dead]) as (_drv, ctx):
            start = time.monotonic()
            await ctx.wait_for(lambda c: c.status_of("dead") is DeviceStatus.OFFLINE, 5)
            n = len(ctx.batches)  # watch the good unit through several of the dead one's timeouts
            await ctx.wait_for(lambda c: sum(b[0].device == "good" for b in c.batches[n:]) >= 8,
                               10)
            elapsed = time.monotonic() - start
    stamps = [b[0].ts_ms for b in ctx.batches if b[0].device == "good"]
    gaps = [(b - a) / 1000 for a, b in itertools.pairwise(stamps)]
    assert max(gaps) <= 0.1 + 0.3 + 0.25, gaps  # interval + the dead unit's one timeout
    assert len(stamps) >= elapsed / 0.4
    assert all(s.quality is Quality.GOOD for s in ctx.samples if s.device == "good")


async def test_writes_register_multi_register_coil_and_bit() -> None:
    points = [
        {"name": "limit", "address": 0, "type": "int16", "scale": 0.1, "writable": True,
         "readback": True},
        {"name": "power", "address": 2, "type": "float32", "order": "CDAB", "writable": True,
         "readback": True},
        {"name": "relay", "function": "coil", "address": 5, "type": "bool", "writable": True,
         "readback": True},
        {"name": "flag", "address": 8, "type": "bool", "bit": 4, "writable": True},
        {"name": "energy", "function": "input", "address": 0, "type": "uint32"},
    ]
    cfg = device(points=points)
    async with serving(cfg) as (sim, [cfg]), running([cfg]) as (drv, _ctx):
        assert await drv.write("dev", "limit", -12.3) == WriteResult(-12.3, -12.3, read_back=True)
        assert sim.get_registers(1, Function.HOLDING, 0, 1) == [(-123) & 0xFFFF]
        back = await drv.write("dev", "power", 1.5)
        assert back.readback == 1.5
        assert sim.get_registers(1, Function.HOLDING, 2, 2) == [0x0000, 0x3FC0]
        assert (await drv.write("dev", "relay", True)).readback is True
        assert sim.get_registers(1, Function.COIL, 5, 1) == [1]
        sim.set_registers(1, Function.HOLDING, 8, [0b1])
        await drv.write("dev", "flag", True)
        assert sim.get_registers(1, Function.HOLDING, 8, 1) == [0b10001]
        await drv.write("dev", "flag", False)
        assert sim.get_registers(1, Function.HOLDING, 8, 1) == [0b1]
        with pytest.raises(NotWritable, match=r"'energy' \(input 0\) is read-only"):
            await drv.write("dev", "energy", 1)
        with pytest.raises(UnknownPoint, match="no point"):
            await drv.write("dev", "nope", 1)
        with pytest.raises(WriteFailed, match="does not fit"):
            await drv.write("dev", "limit", 99999)
        with pytest.raises(WriteFailed, match="not a boolean"):
            await drv.write("dev", "relay", "maybe")
        sim.fail[1] = ExcCodes.ILLEGAL_VALUE
        with pytest.raises(WriteFailed, match="exception code 3"):
            await drv.write("dev", "limit", 1)

"""Big sites start fast: plans shared per device shape, a cheap simulator, no failed connects.

Issue 15: 200 devices x 125 points must give a first datapoint within 2 s of start. The figure
itself is measured by ``bench/first_datapoint.py``; these tests pin the mechanisms behind it.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import types
from typing import Any

import pytest

import drivers.modbus.simulator as simulator
from drivers.modbus.config import AddressRange, ModbusDeviceConfig
from drivers.modbus.datatypes import Function
from drivers.modbus.driver import ModbusDriver
from drivers.modbus.simulator import ModbusSimulator, _moving, unit_of
from drivers.testing import RecordingContext
from gateway.model import DeviceStatus, Quality

from .support import device


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# Every kind of point the simulator moves: byte orders, widths, signs, scales, offsets, units
# (energy counters rise), and the slow-path kinds (bits, strings, status codes, writable).
MAP: list[dict[str, Any]] = [
    {"name": "u16", "address": 0, "type": "uint16", "scale": 0.1, "unit": "V"},
    {"name": "i16", "address": 1, "type": "int16", "scale": 0.01, "offset": -400.0},
    {"name": "u32", "address": 2, "type": "uint32", "unit": "W"},
    {"name": "u32cdab", "address": 4, "type": "uint32", "order": "CDAB", "scale": 0.001},
    {"name": "i32dcba", "address": 6, "type": "int32", "order": "DCBA", "unit": "var"},
    {"name": "f32", "address": 8, "type": "float32", "unit": "Hz"},
    {"name": "f32badc", "address": 10, "type": "float32", "order": "BADC", "scale": 2.0},
    {"name": "f64", "address": 12, "type": "float64", "order": "ABCDEFGH", "unit": "kWh"},
    {"name": "f64sw", "address": 16, "type": "float64", "order": "GHEFCDAB"},
    {"name": "u64", "address": 20, "type": "uint64", "unit": "Wh"},
    {"name": "i16clamp", "address": 24, "type": "int16", "scale": 0.0001, "unit": "W"},
    {"name": "flag", "address": 25, "type": "bool", "bit": 3},
    {"name": "text", "address": 26, "type": "string", "length": 3},
    {"name": "state", "address": 29, "type": "uint16", "enum": {2: "run", 5: "stop"}},
    {"name": "faults", "address": 30, "type": "uint16", "bitmask": {0: "hot"}},
    {"name": "setpoint", "address": 31, "type": "uint16", "writable": True},
    {"name": "inp", "address": 3, "function": "input", "type": "float32", "order": "CDAB"},
    {"name": "coil", "address": 7, "function": "coil", "type": "bool"},
]


async def test_tick_writes_what_moving_and_set_point_write() -> None:
    """The precomputed tick is the general path (_moving + set_point), register for register."""
    cfg = device(unit=1, points=MAP)
    fast, slow = ModbusSimulator([unit_of(cfg)]), ModbusSimulator([unit_of(cfg)])
    await fast.start()
    await slow.start()
    clock = types.SimpleNamespace(monotonic=lambda: 1234.5)
    real = simulator.time
    simulator.time = clock  # type: ignore[assignment]
    moved = 0
    try:
        for sim in (fast, slow):
            sim._t0 = 17.25
        fast.tick()
        t = 1234.5 - 17.25
        for i, p in enumerate(slow.units[1].points):  # the general path, point by point
            if not (p.function is Function.HOLDING and p.writable):
                slow.set_point(1, p.name, _moving(p, t, i))
        for p in fast.units[1].points:
            got = fast.get_registers(1, p.function, p.address, p.count)
            assert got == slow.get_registers(1, p.function, p.address, p.count), p.name
            moved += any(got)
    finally:
        simulator.time = real
        await fast.stop()
        await slow.stop()
    assert moved >= len(MAP) - 4  # not all zeros: values really moved


async def test_devices_of_one_shape_share_one_plan() -> None:
    points = [{"name": f"p{i}", "address": 2 * i, "type": "float32"} for i in range(50)]
    same = [device(id=f"m{i}", unit=i + 1, points=points) for i in range(5)]
    other = device(id="other", unit=9, points=[*points[:-1], {**points[-1], "unit": "V"}])
    slower = device(id="slower", unit=10, points=points, interval=5)
    drv = ModbusDriver([*same, other, slower], RecordingContext())
    blocks = [drv.states[c.id].groups[0].blocks for c in same]
    assert all(b == blocks[0] for b in blocks)
    first = [block for _f, block in blocks[0]]
    for b in blocks[1:]:  # the very same immutable blocks (readers, decoders) ...
        assert all(x is y for (_f, x), y in zip(b, first, strict=True))
    groups = [drv.states[c.id].groups[0] for c in same]
    assert len({id(g) for g in groups}) == len(groups)  # ... in groups of their own
    assert len({id(g.blocks) for g in groups}) == len(groups)
    # a point differing in any field (here its unit), or other settings: a plan of its own
    own = drv.states["other"].groups[0].blocks
    assert [(b.address, b.count) for _f, b in own] == [(b.address, b.count) for b in first]
    assert own[0][1] is not first[0]
    assert drv.states["other"].groups[0].blocks[0][1].spans[-1].item.point.unit == "V"
    assert drv.states["slower"].groups[0].interval == 5
    assert drv.requests_per_cycle() == 7  # 50 float32 = 100 registers: one read per device


async def test_a_learned_hole_replans_only_its_device() -> None:
    """Sharing a plan must not share a learned hole: only the refusing device reads around it."""
    points = [{"name": f"p{i}", "address": i} for i in range(10)]
    port = free_port()
    cfgs = [device(id=f"m{i}", unit=i + 1, port=port, points=points, timeout=1.0)
            for i in range(2)]
    units = [unit_of(c) for c in cfgs]
    units[0].unreadable = [AddressRange(start=5, end=5)]  # unit 1 refuses address 5
    sim = ModbusSimulator(units, port=port)
    await sim.start()
    ctx = RecordingContext()
    drv = ModbusDriver(cfgs, ctx)
    tasks = [asyncio.create_task(f()) for _n, f in drv.tasks()]
    try:
        await ctx.wait_for(lambda c: len(drv.states["m0"].groups[0].blocks) == 2
                           and any(s.device == "m1" for s in c.samples), 10)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await drv.close()
        await sim.stop()
    assert len(drv.states["m1"].groups[0].blocks) == 1
    assert all(s.quality is Quality.GOOD for s in ctx.samples if s.device == "m1")


async def test_pollers_wait_for_a_slow_simulator_to_listen(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A simulator that takes a while to start (a big site's register maps) is waited for:
    the first connect succeeds, no 'bus is down' warning, no backoff before the first sample."""
    start = ModbusSimulator.start

    async def slow_start(self: ModbusSimulator) -> int:
        await asyncio.sleep(1.0)  # longer than any fixed head start
        return await start(self)

    monkeypatch.setattr(ModbusSimulator, "start", slow_start)
    port = free_port()
    cfgs = [ModbusDeviceConfig.model_validate(
        {"id": f"m{i}", "host": "127.0.0.1", "port": port, "unit": i + 1,
         "profile": "eastron-sdm630", "simulate": True, "interval": 0.2}) for i in range(3)]
    ctx = RecordingContext()
    drv = ModbusDriver(cfgs, ctx)
    tasks = [asyncio.create_task(f()) for _n, f in drv.tasks()]
    try:
        await ctx.wait_for(lambda c: all(c.status_of(f"m{i}") is DeviceStatus.ONLINE
                                         for i in range(3)), 10)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await drv.close()
    assert all(s.quality is Quality.GOOD for s in ctx.samples)
    assert [st for _d, st, _r in ctx.statuses] == [DeviceStatus.ONLINE] * 3
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING
                and r.name.startswith("drivers.modbus")]


async def test_a_simulator_that_cannot_start_keeps_no_poller_waiting(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The port is taken: the simulator fails at once and the poller goes on to connect and
    report the device offline, well before its wait for the simulator would time out."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cfg = ModbusDeviceConfig.model_validate(
            {"id": "m", "host": "127.0.0.1", "port": port, "unit": 1, "timeout": 0.2,
             "profile": "eastron-sdm630", "simulate": True, "interval": 0.2,
             "offline_after": 1})
        ctx = RecordingContext()
        drv = ModbusDriver([cfg], ctx)
        tasks = {n: asyncio.create_task(f()) for n, f in drv.tasks()}
        try:
            await ctx.wait_for(lambda c: c.status_of("m") is DeviceStatus.OFFLINE, 10)
            sim = tasks[f"modbus-sim[127.0.0.1:{port}]"]
            assert sim.done() and "Could not start listen" in str(sim.exception())
        finally:
            for t in tasks.values():
                t.cancel()
            await asyncio.gather(*tasks.values(), return_exceptions=True)
            await drv.close()
    assert not [r for r in caplog.records if "simulator is not listening" in r.getMessage()]


async def test_a_cancel_swallowed_inside_a_read_still_stops_the_poller(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Python 3.11's wait_for (pymodbus awaits replies with it) can lose a cancel that lands as
    the reply arrives. The poller must stop anyway, or a shutdown or a bench run hangs."""
    from drivers.modbus.bus import Bus

    real_read = Bus.read_block  # what the poller reads with
    swallowed: list[bool] = []
    reading = asyncio.Event()

    async def read(self: Bus, *args: Any, **kwargs: Any) -> Any:
        reading.set()
        try:
            await asyncio.sleep(0.3)
        except asyncio.CancelledError:  # lost, as in the race
            swallowed.append(True)
        reading.clear()
        return await real_read(self, *args, **kwargs)

    monkeypatch.setattr(Bus, "read_block", read)
    port = free_port()
    cfg = device(port=port, unit=1, points=[{"name": "v", "address": 0}], interval=0.05)
    sim = ModbusSimulator([unit_of(cfg)], port=port)
    await sim.start()
    ctx = RecordingContext()
    drv = ModbusDriver([cfg], ctx)
    [(_name, run)] = [(n, f) for n, f in drv.tasks()]
    task = asyncio.create_task(run())
    try:
        await ctx.wait_for(lambda c: len(c.samples) >= 2, 5)
        await asyncio.wait_for(reading.wait(), 5)
        task.cancel()  # lands inside a read, and is lost there
        done, _ = await asyncio.wait({task}, timeout=3)
        assert swallowed
        assert task in done and task.cancelled()
    finally:
        task.cancel()
        await asyncio.wait({task}, timeout=2)  # bounded: the old poller never stopped here
        await drv.close()
        await sim.stop()


async def test_a_poller_cancelled_between_polls_leaves_no_timer_behind() -> None:
    """The poller's sleep between polls is a bare future and a timer (no asyncio.sleep): a
    cancel there stops the task at once and takes the timer with it, so nothing fires on a
    cancelled future later (the loop would report an error in a callback)."""
    port = free_port()
    cfg = device(port=port, unit=1, points=[{"name": "v", "address": 0}], interval=0.3)
    sim = ModbusSimulator([unit_of(cfg)], port=port)
    await sim.start()
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    ctx = RecordingContext()
    drv = ModbusDriver([cfg], ctx)
    [(_name, run)] = [(n, f) for n, f in drv.tasks()]
    task = asyncio.create_task(run())
    try:
        await ctx.wait_for(lambda c: len(c.samples) >= 1, 5)
        await asyncio.sleep(0.05)  # inside the 0.3 s wait for the next poll
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=0.2)
        assert task in done and task.cancelled()
        await asyncio.sleep(0.4)  # past the cancelled wait's deadline
        assert errors == []
        assert len(ctx.samples) == 1
    finally:
        loop.set_exception_handler(None)
        task.cancel()
        await asyncio.wait({task}, timeout=2)
        await drv.close()
        await sim.stop()

"""The bus poller's schedule: earliest deadline first, ties to the first listed pair, kept in
a heap so a cycle costs O(n log n) on a bus of n devices (it was a min() over every pair per
poll, O(n^2) per cycle). Checked against the old min() rule, and on a real bus of many units."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from drivers.modbus.plans import PollGroup
from drivers.modbus.poller import BusPoller, DeviceState
from drivers.testing import RecordingContext
from gateway.clock import FakeClock

from .support import device, running, serving

POLL_COST = 0.0013  # seconds each poll takes on the fake clock


class _Done(Exception):
    pass


class _Bus:
    connected = True
    key = "fake"


class RecordingPoller(BusPoller):
    """Polls nothing: records (device, interval, time) and spends POLL_COST of fake time."""

    def __init__(self, devices: list[DeviceState], clock: FakeClock, limit: int) -> None:
        super().__init__(_Bus(), devices, RecordingContext(clock=clock))  # type: ignore[arg-type]
        self.clock, self.limit = clock, limit
        self.polled: list[tuple[str, float, float]] = []

    async def _load_holes(self, state: DeviceState) -> None:
        return None

    async def poll_group(self, state: DeviceState, group: PollGroup) -> None:
        self.polled.append((state.cfg.id, group.interval, self.clock.monotonic()))
        self.clock.advance(POLL_COST)
        if len(self.polled) >= self.limit:
            raise _Done


def devices(n: int) -> list[DeviceState]:
    shapes: list[tuple[float, ...]] = [(1.0,), (1.0, 5.0), (0.5, 60.0), (2.0,), (0.25,)]
    out = []
    for i in range(n):
        cfg = device(id=f"d{i:04d}", unit=1 + i % 247, points=[{"name": "p", "address": 0}])
        out.append(DeviceState(cfg, [PollGroup(iv, []) for iv in shapes[i % len(shapes)]]))
    return out


def reference(states: list[DeviceState], limit: int) -> list[tuple[str, float, float]]:
    """The old rule, verbatim: min() over every (device, group) by next_due."""
    clock = FakeClock()
    now = clock.monotonic()
    for s in states:
        for g in s.groups:
            g.next_due = now
    out: list[tuple[str, float, float]] = []
    while len(out) < limit:
        state, group = min(((s, g) for s in states for g in s.groups),
                           key=lambda sg: sg[1].next_due)
        delay = group.next_due - clock.monotonic()
        if delay > 0:
            clock.advance(delay)
        out.append((state.cfg.id, group.interval, clock.monotonic()))
        clock.advance(POLL_COST)
        now = clock.monotonic()
        group.next_due += group.interval
        if group.next_due < now:
            group.next_due = now + group.interval
    return out


async def run(states: list[DeviceState], limit: int) -> RecordingPoller:
    poller = RecordingPoller(states, FakeClock(), limit)
    with contextlib.suppress(_Done):
        await poller.run()
    return poller


async def test_same_order_and_times_as_the_min_rule_with_mixed_intervals() -> None:
    # 40 devices x 1-2 groups at 1.3 ms a poll: the 0.25 s and 0.5 s groups overrun (cycles
    # skipped) and the slow groups interleave, so ties and overruns are both exercised
    limit = 3000
    want = reference(devices(40), limit)
    got = (await run(devices(40), limit)).polled
    assert got == want
    assert len({d for d, _i, _t in got}) == 40


async def test_a_poll_costs_the_same_on_a_bus_of_many_devices() -> None:
    async def cpu_per_poll(n: int) -> float:
        states = devices(n)
        limit = 4 * n
        start = time.process_time()
        await run(states, limit)
        return (time.process_time() - start) / limit

    few = min([await cpu_per_poll(50) for _ in range(3)])
    many = min([await cpu_per_poll(2000) for _ in range(3)])
    # a min() over every pair made the 2,000-device poll ~50x dearer here; a heap adds log n
    assert many < 4 * few, (few, many)


async def test_many_devices_on_one_bus_are_polled_in_turn() -> None:
    n = 100
    cfgs = [device(id=f"m{u:03d}", unit=u, interval=1.0, timeout=1.0,
                   points=[{"name": "p", "address": 0}, {"name": "q", "address": 1}])
            for u in range(1, n + 1)]
    async with serving(*cfgs) as (sim, served), running(served) as (_drv, ctx):
        await ctx.wait_for(lambda c: len(c.batches) >= 3 * n, 30)
    units: list[Any] = [u for way, u, _fc in sim.log if way == "recv"]
    # one request per device per cycle, in the configured order, cycle after cycle
    assert units[:3 * n] == list(range(1, n + 1)) * 3
    per_device = {d: sum(b[0].device == d for b in ctx.batches) for d in (c.id for c in cfgs)}
    assert min(per_device.values()) >= 3 and max(per_device.values()) <= 4 + 1


def test_heap_order_breaks_ties_by_listing() -> None:
    states = devices(5)
    got = asyncio.run(run(states, 7)).polled
    # all due at 0: the first listed pairs go first, device by device, group by group
    assert [(d, i) for d, i, _t in got] == [
        ("d0000", 1.0), ("d0001", 1.0), ("d0001", 5.0), ("d0002", 0.5), ("d0002", 60.0),
        ("d0003", 2.0), ("d0004", 0.25)]

"""Learned holes against a real pymodbus server that refuses some registers (exception 2).

The device config does not know the holes: the driver must find them by bisecting refused
blocks, plan around them with the fewest requests, keep every good point good, remember them
across restarts, and read them again after ``hole_reprobe``.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

import pytest
from pymodbus.constants import ExcCodes

from drivers.modbus.bus import ExceptionReply
from drivers.modbus.config import AddressRange, ModbusDeviceConfig
from drivers.modbus.datatypes import Function
from drivers.modbus.holes import bisect
from drivers.modbus.simulator import ModbusSimulator, SimUnit
from drivers.testing import RecordingContext
from gateway.model import Batch, Quality
from tests.support.app import running_app
from tests.support.wait import wait_until

from .support import device, running, serving

SIZES = {"uint16": 1, "int32": 2, "float32": 2, "uint64": 4}


class CountingContext(RecordingContext):
    """Records, with every batch, how many requests the server had received from its unit
    by then (the bus is serialized, so that is every request of the cycles emitted so far)."""

    def __init__(self, sim: ModbusSimulator, units: dict[str, int]) -> None:
        super().__init__()
        self.sim, self.units = sim, units
        self.requests_at: dict[str, list[int]] = {}

    async def emit(self, batch: Batch) -> None:
        if batch:
            unit = self.units[batch[0].device]
            sent = sum(1 for kind, u, _fc in self.sim.log if kind == "recv" and u == unit)
            self.requests_at.setdefault(batch[0].device, []).append(sent)
        await super().emit(batch)

    def per_cycle(self, device: str) -> list[int]:
        counts = self.requests_at[device]
        return [b - a for a, b in zip([0, *counts], counts, strict=False)]


def random_map(rng: random.Random, unit: int) -> tuple[dict[str, Any], set[int]]:
    """A device of non-overlapping holding points, with holes at random places."""
    points, addr = [], rng.randint(0, 5)
    for i in range(rng.randint(3, 14)):
        kind = rng.choice(list(SIZES))
        points.append({"name": f"p{i}", "address": addr, "type": kind})
        addr += SIZES[kind] + rng.choice([0, 0, 0, 1, 2, 3, 5, 9])
    end = addr
    holes = {rng.randrange(0, end) for _ in range(rng.randint(1, 4))}
    # A generous reply timeout: fifty devices share one bus and the server runs on the
    # test's own event loop, so a loaded machine that starves the loop for longer than
    # device()'s 0.3 s makes a read time out, which shows the good points of that block BAD
    # for one cycle (a transport failure, not a learned hole). The server answers at once,
    # so the timeout never adds time when the loop runs.
    cfg = {"id": f"d{unit}", "unit": unit, "points": points, "interval": 0.05,
           "max_gap": rng.randint(0, 10), "max_registers": rng.randint(8, 40), "timeout": 10}
    return cfg, holes


def minimum_requests(cfg: ModbusDeviceConfig, holes: set[int]) -> int:
    """Fewest reads of every readable point that touch no hole, from first principles."""
    spans = sorted((p.address, p.address + p.count) for p in cfg.points
                   if not any(p.address <= h < p.address + p.count for h in holes))

    def fits(i: int, j: int) -> bool:
        lo, hi = spans[i][0], spans[j][1]
        if hi - lo > cfg.max_registers or any(lo <= h < hi for h in holes):
            return False
        return all(spans[k + 1][0] - spans[k][1] <= cfg.max_gap for k in range(i, j))

    best = [0] + [len(spans) + 1] * len(spans)  # best[j]: reads for the first j spans
    for j in range(1, len(spans) + 1):
        best[j] = min(best[i] + 1 for i in range(j) if fits(i, j - 1))
    return best[-1]


def sim_unit(cfg: ModbusDeviceConfig, holes: set[int]) -> SimUnit:
    refused = [AddressRange(function=Function.HOLDING, start=a, end=a) for a in sorted(holes)]
    return SimUnit(cfg.unit, list(cfg.points), refused, animate=False)


def on_hole(cfg: ModbusDeviceConfig, holes: set[int]) -> set[str]:
    return {p.name for p in cfg.points
            if any(p.address <= h < p.address + p.count for h in holes)}


async def test_fifty_random_maps_learn_the_minimal_plan_and_never_blind_a_good_point(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rng = random.Random(20261201)
    maps = [random_map(rng, unit) for unit in range(1, 51)]
    cfgs = [device(**cfg) for cfg, _ in maps]
    holes = {cfg.id: h for cfg, (_, h) in zip(cfgs, maps, strict=True)}
    sim = ModbusSimulator([sim_unit(c, holes[c.id]) for c in cfgs])
    port = await sim.start()
    cfgs = [c.model_copy(update={"port": port}) for c in cfgs]
    ctx = CountingContext(sim, {c.id: c.unit for c in cfgs})
    try:
        async with running(cfgs, ctx) as (drv, _ctx):
            await ctx.wait_for(
                lambda c: all(len(ctx.requests_at.get(d.id, [])) >= 5 for d in cfgs), 60)
    finally:
        await sim.stop()

    learned_any = 0
    for cfg in cfgs:
        bad = on_hole(cfg, holes[cfg.id])
        batches = [b for b in ctx.batches if b[0].device == cfg.id]
        for b in batches:  # every cycle, the first included: good points good, holes bad
            assert sorted(s.point for s in b) == sorted(p.name for p in cfg.points)
            for s in b:
                want = Quality.BAD if s.point in bad else Quality.GOOD
                assert s.quality is want, (cfg.id, s, sorted(holes[cfg.id]))
        minimum = minimum_requests(cfg, holes[cfg.id])
        per_cycle = ctx.per_cycle(cfg.id)
        assert per_cycle[2:5] == [minimum] * 3, (cfg.id, per_cycle, minimum)
        assert {a for _f, a in drv.states[cfg.id].holes.refused_at} <= holes[cfg.id]
        learned_any += per_cycle[0] > minimum
    assert learned_any >= 25, "the maps are too easy to show anything"
    learned = [r.getMessage() for r in caplog.records if "refuses to read" in r.getMessage()]
    assert len(learned) == len(set(learned)), "a hole was reported twice"
    assert all(r.levelno == logging.WARNING for r in caplog.records
               if "refuses to read" in r.getMessage())


async def test_learned_holes_survive_a_restart_and_are_read_again_when_due(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="drivers.modbus")
    points = [{"name": "a", "address": 0}, {"name": "on_hole", "address": 2},
              {"name": "b", "address": 4}]
    cfg = device(points=points)
    assert cfg.hole_reprobe == 3600  # hourly unless configured
    sim = ModbusSimulator([sim_unit(cfg, {2})])
    port = await sim.start()
    cfg = cfg.model_copy(update={"port": port})
    ctx = CountingContext(sim, {"dev": 1})
    kv = ctx.kv("modbus")
    try:
        async with running([cfg], ctx):
            await ctx.wait_for(lambda c: len(c.batches) >= 3, 5)
        assert ctx.per_cycle("dev")[1:3] == [2, 2]  # a and b; the hole and its point unread
        assert [a for a, _ts in kv.data["holes/dev"]["holding"]] == [2]
        assert sum("refuses to read holding 2 even alone" in r.getMessage()
                   for r in caplog.records) == 1
        caplog.clear()
        n = len(ctx.batches)
        async with running([cfg], ctx):  # a restart: the stored hole is planned around at once
            await ctx.wait_for(lambda c: len(c.batches) >= n + 2, 5)
        assert ctx.per_cycle("dev")[n:n + 2] == [2, 2]
        assert not any("refuses to read" in r.getMessage() for r in caplog.records)
        assert any("reads go around holding 2, learned unreadable by an earlier run"
                   in r.getMessage() for r in caplog.records)
        assert {s.point: s.quality for s in ctx.batches[n]} == {
            "a": Quality.GOOD, "b": Quality.GOOD, "on_hole": Quality.BAD}
    finally:
        await sim.stop()

    # new firmware implements register 2: the hole is read again once due, and forgotten
    healed = ModbusSimulator([sim_unit(cfg, set())], port=port)
    await healed.start()
    ctx.sim = healed
    quick = cfg.model_copy(update={"hole_reprobe": 0.2})
    try:
        async with running([quick], ctx):
            await ctx.wait_for(lambda c: c.batches[-1][0].quality is Quality.GOOD and all(
                s.quality is Quality.GOOD for s in c.batches[-1]), 5)
            m = len(ctx.requests_at["dev"])
            await ctx.wait_for(lambda c: len(c.requests_at["dev"]) >= m + 2, 5)
        assert ctx.per_cycle("dev")[-1] == 1  # one read of all three again
        assert "holes/dev" not in kv.data
        assert any("answers holding 2 again" in r.getMessage() for r in caplog.records)
    finally:
        await healed.stop()


async def test_a_device_that_refuses_everything_teaches_nothing() -> None:
    """Booting devices answer exception 2 to every read: that must not become holes."""
    cfg = device(points=[{"name": "a", "address": 0}, {"name": "b", "address": 3}])
    async with serving(cfg) as (sim, [cfg]):
        sim.fail[1] = ExcCodes.ILLEGAL_ADDRESS
        async with running([cfg]) as (drv, ctx):
            await ctx.wait_for(lambda c: len(c.batches) >= 4, 5)
            assert not drv.states["dev"].holes
            assert "holes/dev" not in ctx.kv("modbus").data
            received = len(sim.log)
            await ctx.wait_for(lambda c: len(c.batches) >= 6, 5)
            assert len(sim.log) - received <= 2 * 2 * 2  # no bisection per cycle: 1 read each
            del sim.fail[1]
            await ctx.wait_for(lambda c: all(s.quality is Quality.GOOD
                                             for s in c.batches[-1]), 5)
            assert drv.requests_per_cycle() == 1


async def test_bisect_finds_every_refused_address_in_few_requests() -> None:
    holes = {3, 4, 17}
    calls = []

    async def read(address: int, count: int) -> list[int]:
        calls.append((address, count))
        if any(address <= h < address + count for h in holes):
            raise ExceptionReply("dev", "exception code 2", 2)
        return list(range(address, address + count))

    values, refused = await bisect(read, 0, 24)
    assert refused == [3, 4, 17]
    assert values == {a: a for a in range(25) if a not in holes}
    assert len(calls) <= 2 * 3 * 5  # two halves per level, log2(25) levels, three holes


async def test_learned_holes_are_kept_in_the_gateway_database_across_restarts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="drivers.modbus")
    points = [{"name": "a", "address": 0}, {"name": "on_hole", "address": 2},
              {"name": "b", "address": 4}]
    sim = ModbusSimulator([sim_unit(device(points=points), {2})])
    port = await sim.start()
    site = {"devices": [{"id": "dev", "type": "modbus", "host": "127.0.0.1", "port": port,
                         "interval": 0.1, "points": points}]}

    async def logged(text: str) -> None:
        await wait_until(lambda: any(text in r.getMessage() for r in caplog.records), 10,
                         what=repr(text))

    try:
        async with running_app(site, tmp_path) as app:
            await logged("refuses to read holding 2 even alone")
            stored = await app.store.kv("modbus").get("holes/dev")
            assert [a for a, _ts in stored["holding"]] == [2]
        assert any(fc > 0x80 for _kind, _u, fc in sim.log)  # the refusals were seen
        caplog.clear()
        async with running_app(site, tmp_path):  # the same state directory: a restart
            await logged("reads go around holding 2, learned unreadable by an earlier run")
            n = len(sim.log)
            # a few cycles, to show nothing is learned again
            await wait_until(lambda: len(sim.log) >= n + 2 * 6, 10, what="six more cycles")
        assert [kind for kind, _u, fc in sim.log[n:] if fc > 0x80] == []  # no refused read
        assert not any("refuses to read" in r.getMessage() for r in caplog.records)
    finally:
        await sim.stop()


class BrokenStore(RecordingContext):
    def kv(self, namespace: str) -> Any:
        raise OSError("database disk image is malformed")


async def test_a_failing_store_does_not_stop_polling_or_learning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cfg = device(points=[{"name": "a", "address": 0}, {"name": "b", "address": 4}])
    sim = ModbusSimulator([sim_unit(cfg, {2})])
    port = await sim.start()
    cfg = cfg.model_copy(update={"port": port})
    try:
        async with running([cfg], BrokenStore()) as (drv, ctx):
            await ctx.wait_for(lambda c: len(c.batches) >= 3, 5)
            assert all(s.quality is Quality.GOOD for s in ctx.samples)
            assert drv.requests_per_cycle() == 2  # learned, kept in memory
    finally:
        await sim.stop()
    problems = [r.getMessage() for r in caplog.records if "cannot" in r.getMessage()]
    assert any("cannot load its learned unreadable registers" in m for m in problems)
    assert any("cannot store its learned unreadable registers" in m for m in problems)

"""A poll whose every value is good reaches the pipeline as a PollBatch: the samples, and the
same values as columns in the order of a names tuple that stays the same object from poll to
poll (the history and the live-value cache key on it). A poll with a bad value is a plain
list, and the pipeline hands the batches to its processors and observers as they came."""

from __future__ import annotations

from pathlib import Path

from gateway.clock import SystemClock
from gateway.model import Committed, PollBatch, Quality, Sample
from gateway.pipeline import Pipeline
from gateway.store import Store
from tests.drivers.modbus.support import device, running, serving

METER = [
    {"name": "voltage", "function": "input", "address": 0, "type": "float32"},
    {"name": "current", "function": "input", "address": 2, "type": "float32"},
    {"name": "status", "function": "holding", "address": 10, "type": "uint16"},
]


def assert_columns_match(batch: PollBatch) -> None:
    assert list(batch) == [Sample(batch.device, n, batch.ts_ms, v)
                           for n, v in zip(batch.names, batch.values, strict=True)]
    assert all(s.quality is Quality.GOOD for s in batch)


async def test_good_polls_carry_columns_and_a_bad_value_does_not() -> None:
    cfg = device(points=METER)
    async with serving(cfg) as (sim, [cfg]), running([cfg]) as (_drv, ctx):
        sim.set_point(1, "status", 3)
        await ctx.wait_for(lambda c: len(c.batches) >= 3, 5)
        good = ctx.batches[1:3]
        assert all(type(b) is PollBatch for b in good), [type(b) for b in good]
        assert not any(b.made for b in good)  # the driver made no Sample: columns only
        for b in good:
            assert_columns_match(b)
        # two blocks (input and holding) merged, in order, into one names tuple kept
        assert good[0].names == ("voltage", "current", "status")
        assert good[0].names is good[1].names
        seen = len(ctx.batches)
        sim.set_point(1, "voltage", float("nan"))  # a device's "not available"
        await ctx.wait_for(lambda c: len(c.batches) >= seen + 2, 5)
        bad = ctx.batches[-1]
        assert type(bad) is list
        assert {s.point: s.quality for s in bad}["voltage"] is Quality.BAD


async def test_the_pipeline_hands_on_the_batches_as_they_came(tmp_path: Path) -> None:
    store = Store(tmp_path / "p.db")
    await store.open()
    try:
        pipeline = Pipeline(store, SystemClock())
        seen: list[Committed] = []
        pipeline.add_observer(lambda batch, _seq: seen.append(batch))  # type: ignore[arg-type]
        columns = PollBatch("m", 5, ("a", "b"), [1.0, 2.0])
        plain = [Sample("n", "a", 6, None, Quality.BAD)]
        await pipeline.put(columns)
        await pipeline.put(plain)
        assert await pipeline.commit_once() == 3
        [batch] = seen
        assert batch.parts[0] is columns and batch.parts[1] == plain
        assert list(batch) == [Sample("m", "a", 5, 1.0), Sample("m", "b", 5, 2.0), *plain]
    finally:
        await store.close()

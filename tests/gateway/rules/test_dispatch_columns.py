"""A poll that comes as a PollBatch (columns) reaches exactly the rules a plain list of the
same samples reaches, in the same order: which of its points some rule reads is kept per names
tuple and device, and follows a new names tuple (a re-planned map) and a rebuilt index."""

from __future__ import annotations

from typing import Any

from gateway.model import Committed, PollBatch, Sample, Value

from .conftest import MakeHarness
from .harness import Harness, devices

SECTION = {"alarms": [
    {"name": "hot-a", "devices": ["a"], "point": "t", "condition": {"op": ">", "value": 10}},
    {"name": "volts-b", "devices": ["b"], "point": "v", "condition": {"op": ">", "value": 250}},
]}


def poll(device: str, names: tuple[str, ...], ts: int, values: list[Value]) -> PollBatch:
    return PollBatch(device, ts, names, values)


async def run(h: Harness, batch: list[Sample]) -> list[Any]:
    assert h.store is not None
    async with h.store.transaction() as tx:
        await h.engine.process(batch, tx)
    return [(e.type, e.body["rule"], e.body["device"], e.body.get("value"))
            for e in await h.events("alarm_created", "alarm_resolved")]


async def test_polls_reach_the_rules_a_plain_list_reaches(make_harness: MakeHarness) -> None:
    plain_h = await make_harness(SECTION, devices("a", "b", "c"))
    cols_h = await make_harness(SECTION, devices("a", "b", "c"))
    names = ("t", "v", "x")
    ts = plain_h.clock.now_ms()
    parts: list[list[Sample]] = [
        poll("c", names, ts, [99, 999, 1]),       # no rule selects c
        poll("a", names, ts, [11, 999, 1]),       # raises hot-a (v is not a's)
        [Sample("b", "v", ts, 251)],              # a plain part: raises volts-b
        poll("b", names, ts + 1, [99, 240, 1]),   # ... and this poll clears it
        poll("a", names, ts + 1, [5, 1, 1]),      # clears hot-a
    ]
    want = await run(plain_h, [s for p in parts for s in p])
    assert want == [("alarm_created", "hot-a", "a", 11), ("alarm_created", "volts-b", "b", 251),
                    ("alarm_resolved", "volts-b", "b", None),
                    ("alarm_resolved", "hot-a", "a", None)]
    assert await run(cols_h, Committed.of(parts)) == want
    assert cols_h.engine.stats.evaluated == plain_h.engine.stats.evaluated == 4


async def test_a_new_names_tuple_or_index_is_read_again(make_harness: MakeHarness) -> None:
    h = await make_harness(SECTION, devices("a"))
    ts = h.clock.now_ms()
    await run(h, Committed.of([poll("a", ("x", "y"), ts, [99, 99])]))  # t not in this map
    assert h.engine.stats.evaluated == 0
    got = await run(h, Committed.of([poll("a", ("x", "t"), ts, [99, 99])]))  # re-planned
    assert got == [("alarm_created", "hot-a", "a", 99)]
    names = ("t",)
    await run(h, Committed.of([poll("a", names, ts + 1, [1])]))  # cleared
    h.engine.index = {}  # a rebuilt index without the rule: the poll's entry is read again
    await run(h, Committed.of([poll("a", names, ts + 2, [99])]))
    assert h.engine.stats.evaluated == 2

"""The engine's per-batch dispatch: a batch is filtered to the points some rule reads, and
each sample of those reaches exactly the rules of its own device and point, in batch order."""

from __future__ import annotations

from gateway.model import Sample

from .conftest import MakeHarness
from .harness import devices


async def test_only_the_samples_a_rule_reads_reach_it_in_order(make_harness: MakeHarness) -> None:
    section = {"alarms": [
        {"name": "hot-a", "devices": ["a"], "point": "t", "condition": {"op": ">", "value": 10}},
        {"name": "volts-b", "devices": ["b"], "point": "v",
         "condition": {"op": ">", "value": 250}},
    ]}
    h = await make_harness(section, devices("a", "b", "c"))
    assert h.engine.points == {"t", "v"}
    ts = h.clock.now_ms()
    batch = [Sample(dev, point, ts, value) for dev, point, value in [
        ("c", "t", 99),     # a point some rule reads, on a device no rule selects
        ("b", "t", 99),     # point t, but b's rule reads v
        ("a", "v", 999),    # point v, but a's rule reads t
        ("a", "x", 99),     # a point no rule reads
        *[("b", f"p{i}", 999) for i in range(50)],
        ("a", "t", 11),     # raises hot-a
        ("b", "v", 251),    # raises volts-b
        ("b", "v", 240),    # ... and its next sample in the batch clears it
    ]]
    await h.feed(*batch)
    assert h.engine.stats.evaluated == 3  # c.t, b.t, a.v, a.x and the p* are not evaluated
    events = [(e.type, e.body["rule"], e.body["device"])
              for e in await h.events("alarm_created", "alarm_resolved")]
    assert events == [("alarm_created", "hot-a", "a"), ("alarm_created", "volts-b", "b"),
                      ("alarm_resolved", "volts-b", "b")]

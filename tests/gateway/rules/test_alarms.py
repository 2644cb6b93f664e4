"""Alarm rules, driven by a FakeClock on a real store file (see harness.py)."""

from __future__ import annotations

import math
from typing import Any

import pytest

from gateway.model import DeviceStatus, Quality, Sample
from tests.gateway.rules.conftest import MakeHarness
from tests.gateway.rules.harness import devices

BAD = Quality.BAD
T0 = 1_700_000_000_000


def _rule(**kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"name": "hi", "devices": ["m1"], "point": "v",
                            "condition": {"op": ">", "value": 10}}
    base.update(kw)
    return base


# (id, rule overrides, steps [(seconds to advance, value[, quality])], expected lifecycle,
#  expected count in the last event)
THRESHOLD_CASES: list[tuple[str, dict[str, Any], list[tuple[Any, ...]], str, int | None]] = [
    ("raises at once without for", {}, [(0, 11)], "C", 1),
    ("for: raises only after it elapsed", {"for": 10},
     [(0, 11), (5, 12), (4.9, 12), (0.1, 12)], "C", 1),
    ("for: a dip restarts the window", {"for": 10},
     [(0, 11), (5, 9), (5, 11), (5, 11), (4, 11)], "", None),
    ("for: the window restarted and completed", {"for": 10},
     [(0, 11), (5, 9), (5, 11), (5, 11), (5, 11)], "C", 1),
    ("no deadband: every crossing is a new alarm", {}, [(0, 11), (1, 9), (1, 11)], "CRC", 1),
    ("deadband: oscillation raises once and merges", {"deadband": 2},
     [(0, 11), (1, 9.5), (1, 11), (1, 9.5), (1, 11), (1, 8.5)], "C", 3),
    ("deadband: resolves once past it", {"deadband": 2},
     [(0, 11), (1, 9.5), (1, 11), (1, 8)], "CR", 2),
    ("explicit clear condition", {"clear": {"op": "<", "value": 5}},
     [(0, 11), (1, 8), (1, 12), (1, 4.9)], "CR", 2),
    ("clear_for holds the resolve back", {"clear_for": 5},
     [(0, 11), (1, 9), (4, 9), (1, 9)], "CR", 1),
    ("clear_for: a relapse restarts it", {"clear_for": 5},
     [(0, 11), (1, 9), (3, 11), (3, 9), (3, 9)], "C", 2),
    ("outside a range with deadband",
     {"condition": {"op": "outside", "range": [200, 250]}, "deadband": 2},
     [(0, 260), (1, 249), (1, 255), (1, 240)], "CR", 2),
    ("inside a range", {"condition": {"op": "inside", "range": [0, 1]}},
     [(0, 5), (1, 0.5), (1, 3)], "CR", 1),
    ("== on a boolean", {"condition": {"op": "==", "value": 1}}, [(0, True), (1, False)],
     "CR", 1),
    ("!=", {"condition": {"op": "!=", "value": 0}}, [(0, 0), (1, 3), (1, 0)], "CR", 1),
    ("<= low limit", {"condition": {"op": "<=", "value": 5}, "deadband": 1},
     [(0, 5), (1, 5.5), (1, 6.1)], "CR", 1),
    ("bad quality never raises", {}, [(0, 11, BAD), (1, 50, Quality.UNCERTAIN)], "", None),
    ("bad quality never resolves", {}, [(0, 11), (1, 0, BAD)], "C", 1),
    ("NaN and Inf are ignored", {}, [(0, math.nan), (1, math.inf), (1, -math.inf)], "", None),
    ("strings and None are ignored", {}, [(0, "11"), (1, None)], "", None),
]


@pytest.mark.parametrize(("rule", "steps", "lifecycle", "count"),
                         [c[1:] for c in THRESHOLD_CASES], ids=[c[0] for c in THRESHOLD_CASES])
async def test_threshold_table(make_harness: MakeHarness, rule: dict[str, Any],
                               steps: list[tuple[Any, ...]], lifecycle: str,
                               count: int | None) -> None:
    h = await make_harness({"alarms": [_rule(**rule)]}, devices("m1"))
    for step in steps:
        h.clock.advance(step[0])
        await h.feed(("m1", "v", step[1]), quality=step[2] if len(step) > 2 else Quality.GOOD)
    evs = await h.events("alarm_created", "alarm_resolved")
    assert "".join("C" if e.type == "alarm_created" else "R" for e in evs) == lifecycle
    if count is not None:
        last = evs[-1]
        if last.type == "alarm_resolved":
            assert last.body["count"] == count
            assert last.body["last_value"] == steps[-1][1]
        else:
            [alarm] = h.engine.book.open.values()
            assert alarm.count == count and last.body["count"] == 1


async def test_created_and_resolved_bodies_and_ids(make_harness: MakeHarness) -> None:
    rule = _rule(**{"for": 10, "severity": "critical",
                    "message": "{device} {point} = {value} above {threshold}"})
    h = await make_harness({"alarms": [rule]}, devices("m1"))
    await h.feed(("m1", "v", 11))
    h.clock.advance(10)
    await h.feed(("m1", "v", 12))
    h.clock.advance(3)
    await h.feed(("m1", "v", 1))
    created, resolved = await h.events("alarm_created", "alarm_resolved")
    assert set(created.body) == {"alarm_id", "rule", "kind", "severity", "device", "point",
                                 "code", "message", "value", "started_ts", "count"}
    assert set(resolved.body) == {"alarm_id", "rule", "kind", "severity", "device", "point",
                                  "code", "message", "started_ts", "resolved_ts", "count",
                                  "last_value"}
    assert created.body["started_ts"] == T0 and created.ts_ms == T0 + 10_000
    assert created.body["message"] == "m1 v = 12 above 10.0"
    assert created.body["severity"] == "critical" and created.body["kind"] == "threshold"
    assert resolved.body["resolved_ts"] == T0 + 13_000
    assert resolved.body["alarm_id"] == created.body["alarm_id"]
    assert created.id != resolved.id


async def test_restart_keeps_state_and_resolution_comes(make_harness: MakeHarness) -> None:
    section = {"alarms": [_rule(deadband=2)]}
    h = await make_harness(section, devices("m1"))
    await h.feed(("m1", "v", 11))
    h.clock.advance(1)
    await h.feed(("m1", "v", 9))
    h.clock.advance(1)
    await h.feed(("m1", "v", 12))  # re-trigger: count 2
    [created] = await h.events("alarm_created")
    await h.restart()
    assert len(h.engine.book.open) == 1
    for v in (13, 9.5, 14):  # still open; one more re-trigger after the restart
        h.clock.advance(1)
        await h.feed(("m1", "v", v))
    assert len(await h.events("alarm_created")) == 1
    await h.restart()
    h.clock.advance(1)
    await h.feed(("m1", "v", 1))
    [resolved] = await h.events("alarm_resolved")
    assert resolved.body["alarm_id"] == created.body["alarm_id"]
    assert resolved.body["count"] == 3 and resolved.body["last_value"] == 1
    await h.restart()
    assert h.engine.book.open == {}


async def test_open_alarm_sets_device_status_by_severity(make_harness: MakeHarness) -> None:
    section = {"status_severity": "major",
               "alarms": [_rule(severity="major"),
                          _rule(name="warn", severity="warning",
                                condition={"op": ">", "value": 5})]}
    h = await make_harness(section, devices("m1"))
    await h.link("m1", DeviceStatus.ONLINE)
    await h.feed(("m1", "v", 7))  # only the warning: the status stays online
    assert h.tracker.current("m1") is DeviceStatus.ONLINE
    h.clock.advance(1)
    await h.feed(("m1", "v", 11))
    assert h.tracker.current("m1") is DeviceStatus.ALARM
    await h.link("m1", DeviceStatus.OFFLINE)  # offline wins over alarm
    await h.link("m1", DeviceStatus.ONLINE)
    h.clock.advance(1)
    await h.feed(("m1", "v", 1))
    changes = [(e.body["old_status"], e.body["new_status"])
               for e in await h.events("device_status_changed")]
    assert changes == [(None, "online"), ("online", "alarm"), ("alarm", "offline"),
                       ("offline", "alarm"), ("alarm", "online")]


async def test_maintenance_suppresses_alarms(make_harness: MakeHarness) -> None:
    h = await make_harness({"alarms": [_rule()]}, devices("m1", "m2"))
    assert h.store is not None
    async with h.store.transaction() as tx:
        await h.tracker.set_maintenance(tx, "m1", True, "service", h.clock.now_ms())
    await h.feed(("m1", "v", 50))
    assert await h.events("alarm_created") == []
    assert h.engine.book.stats.suppressed == 1
    assert h.tracker.current("m1") is DeviceStatus.MAINTENANCE
    async with h.store.transaction() as tx:
        await h.tracker.set_maintenance(tx, "m1", False, "done", h.clock.now_ms())
    h.clock.advance(1)
    await h.feed(("m1", "v", 50))
    assert len(await h.events("alarm_created")) == 1
    await h.restart()  # the maintenance flag is persisted
    assert "m1" not in h.tracker.maintenance


async def test_rules_select_by_glob_tag_and_profile(make_harness: MakeHarness) -> None:
    devs = [*devices("inv-1", "inv-2", profile="sungrow"), *devices("meter-1", tags=["main"])]
    section = {"alarms": [
        _rule(name="glob", devices=["inv-*"]),
        _rule(name="tag", devices=[], tags=["main"]),
        _rule(name="profile", devices=[], profiles=["sungrow"]),
        _rule(name="and", devices=["inv-1"], profiles=["other"]),
    ]}
    h = await make_harness(section, devs)
    await h.feed(("inv-1", "v", 11), ("inv-2", "v", 11), ("meter-1", "v", 11))
    got = sorted((e.body["rule"], e.device) for e in await h.events("alarm_created"))
    assert got == [("glob", "inv-1"), ("glob", "inv-2"), ("profile", "inv-1"),
                   ("profile", "inv-2"), ("tag", "meter-1")]


async def test_stale(make_harness: MakeHarness) -> None:
    section = {"alarms": [{"name": "st", "kind": "stale", "devices": ["m1"], "point": "v",
                           "after": 30}]}
    h = await make_harness(section, devices("m1"))
    await h.feed(("m1", "v", 1))
    h.clock.advance(20)
    await h.feed(("m1", "v", 1), quality=BAD)  # a bad value does not count as fresh
    await h.tick()
    assert await h.events("alarm_created") == []
    h.clock.advance(10)
    await h.tick()
    [created] = await h.events("alarm_created")
    assert created.body["started_ts"] == T0 + 30_000
    h.clock.advance(5)
    await h.tick()
    assert len(await h.events("alarm_created")) == 1
    await h.feed(("m1", "v", 2))
    [resolved] = await h.events("alarm_resolved")
    assert resolved.body["last_value"] == 2


async def test_offline(make_harness: MakeHarness) -> None:
    section = {"alarms": [{"name": "off", "kind": "offline", "devices": ["m1"], "for": 10,
                           "severity": "critical"}]}
    h = await make_harness(section, devices("m1"))
    await h.link("m1", DeviceStatus.ONLINE)
    await h.link("m1", DeviceStatus.OFFLINE)
    h.clock.advance(5)
    await h.tick()
    assert await h.events("alarm_created") == []
    h.clock.advance(5)
    await h.tick()
    [created] = await h.events("alarm_created")
    assert created.body["kind"] == "offline" and created.body["started_ts"] == T0
    assert h.tracker.current("m1") is DeviceStatus.OFFLINE
    await h.restart()
    h.clock.advance(60)
    await h.tick()  # still offline after the restart: no second alarm
    assert len(await h.events("alarm_created")) == 1
    await h.link("m1", DeviceStatus.ONLINE)
    assert len(await h.events("alarm_resolved")) == 1
    assert h.tracker.current("m1") is DeviceStatus.ONLINE


async def test_rate(make_harness: MakeHarness) -> None:
    section = {"alarms": [{"name": "ramp", "kind": "rate", "devices": ["m1"], "point": "t",
                           "window": 60, "condition": {"op": ">", "value": 10},
                           "deadband": 2}]}
    h = await make_harness(section, devices("m1"))
    value = 20.0
    for _ in range(10):  # +1 per 10 s = 6/min
        await h.feed(("m1", "t", value))
        h.clock.advance(10)
        value += 1
    assert await h.events("alarm_created") == []
    for _ in range(8):  # +3 per 10 s = 18/min
        value += 2
        await h.feed(("m1", "t", value))
        h.clock.advance(10)
        value += 1
    [created] = await h.events("alarm_created")
    assert created.body["value"] > 10
    for _ in range(10):  # flat
        await h.feed(("m1", "t", value))
        h.clock.advance(10)
    [resolved] = await h.events("alarm_resolved")
    assert resolved.body["last_value"] <= 8


async def test_rate_sees_values_below_the_threshold(make_harness: MakeHarness) -> None:
    """The condition is on the rate: raw values that do not meet it still count."""
    section = {"alarms": [{"name": "ramp", "kind": "rate", "devices": ["m1"], "point": "t",
                           "window": 60, "condition": {"op": ">", "value": 10}}]}
    h = await make_harness(section, devices("m1"))
    for value in (0, 3, 6, 9):  # +3 per 10 s = 18/min (after half a window), all < 10
        await h.feed(("m1", "t", value))
        h.clock.advance(10)
    [created] = await h.events("alarm_created")
    assert created.body["value"] == pytest.approx(18)
    assert created.ts_ms == T0 + 30_000


async def test_fault_bits_one_alarm_per_bit(make_harness: MakeHarness) -> None:
    section = {"alarms": [{"name": "flt", "kind": "fault", "mode": "bitmask",
                           "devices": ["inv"], "point": "faults", "severity": "critical",
                           "codes": {0: "over temperature", 3: "fan failure"}}]}
    h = await make_harness(section, devices("inv"))
    await h.feed(("inv", "faults", 0b1011))  # bit 1 is not listed: ignored
    created = await h.new_events("alarm_created")
    assert sorted((e.body["code"], e.body["message"]) for e in created) == [
        ("0", "inv faults: over temperature (code 0)"), ("3", "inv faults: fan failure (code 3)")]
    h.clock.advance(1)
    await h.feed(("inv", "faults", 0b1011))
    await h.feed(("inv", "faults", 0b1000))
    [resolved] = await h.new_events("alarm_resolved")
    assert resolved.body["code"] == "0"
    await h.restart()
    await h.feed(("inv", "faults", 0b1000))
    assert await h.new_events() == []
    await h.feed(("inv", "faults", 0))
    assert [e.body["code"] for e in await h.new_events("alarm_resolved")] == ["3"]


async def test_fault_enum_codes(make_harness: MakeHarness) -> None:
    section = {"alarms": [{"name": "code", "kind": "fault", "devices": ["inv"],
                           "point": "state", "codes": {5: "grid fault"}, "ok": [0, 1]}]}
    h = await make_harness(section, devices("inv"))
    await h.feed(("inv", "state", 1), ("inv", "state", 5))
    await h.feed(Sample("inv", "state", T0 + 1, 7.0), Sample("inv", "state", T0 + 2, 0))
    await h.feed(Sample("inv", "state", T0 + 3, "x"))
    got = [(e.type[6:], e.body["code"]) for e in await h.events("alarm_created",
                                                                 "alarm_resolved")]
    assert got == [("created", "5"), ("resolved", "5"), ("created", "7"), ("resolved", "7")]
    assert h.engine.stats.ignored_non_numeric == 1


async def test_index_skips_unmatched_samples(make_harness: MakeHarness) -> None:
    h = await make_harness({"alarms": [_rule()]}, devices("m1", "m2"))
    await h.feed(("m2", "v", 50), ("m1", "other", 50), ("m1", "v", 1))
    assert h.engine.stats.evaluated == 1
    assert await h.events() == []


# ``for``/``clear_for`` windows closed by the tick when no sample comes to close them.
# (id, rule overrides, samples {second: value | (value, quality)}, expected events
#  [(C|R, second of the event, value (C) or last_value (R), started_ts second)])
TickCase = tuple[str, dict[str, Any], dict[float, Any], list[tuple[str, float, Any, float]]]
TICK_CASES: list[TickCase] = [
    ("for: samples stop mid-window, raised when it elapses", {"for": 10},
     {0: 11, 3: 12}, [("C", 10, 12, 0)]),
    ("for: a 60 s poll with for 10 raises at 10 s, not at the next poll", {"for": 10},
     {0: 11, 60: 11}, [("C", 10, 11, 0)]),
    ("for: a dip inside the window cancels it", {"for": 10}, {0: 11, 5: 9}, []),
    ("for: the window restarts at the return", {"for": 10},
     {0: 11, 5: 9, 6: 11}, [("C", 16, 11, 6)]),
    ("for: bad quality after the crossing does not hold it back", {"for": 10},
     {0: 11, 2: (50, BAD)}, [("C", 10, 11, 0)]),
    ("clear_for: samples stop mid-window, resolved when it elapses", {"clear_for": 5},
     {0: 11, 3: 9}, [("C", 0, 11, 0), ("R", 8, 9, 0)]),
    ("clear_for: a relapse cancels the resolve", {"clear_for": 5},
     {0: 11, 3: 9, 5: 11}, [("C", 0, 11, 0)]),
    ("for and clear_for, both by the tick", {"for": 10, "clear_for": 5},
     {0: 11, 12: 9}, [("C", 10, 11, 0), ("R", 17, 9, 0)]),
    ("rate: the pending rate is raised by the tick",
     {"kind": "rate", "window": 60, "for": 10}, {0: 0, 30: 10}, [("C", 40, 20, 30)]),
]


@pytest.mark.parametrize(("rule", "samples", "expected"), [c[1:] for c in TICK_CASES],
                         ids=[c[0] for c in TICK_CASES])
async def test_tick_closes_windows(make_harness: MakeHarness, rule: dict[str, Any],
                                   samples: dict[float, Any],
                                   expected: list[tuple[str, float, Any, float]]) -> None:
    h = await make_harness({"alarms": [_rule(**rule)]}, devices("m1"))
    by_ms = {round(t * 1000): v for t, v in samples.items()}
    end = max(by_ms) + 25_000
    for ms in range(0, end + 1, 500):  # a tick every 0.5 s, after that instant's sample
        if ms:
            h.clock.advance(0.5)
        if ms in by_ms:
            v, q = by_ms[ms] if isinstance(by_ms[ms], tuple) else (by_ms[ms], Quality.GOOD)
            await h.feed(("m1", "v", v), quality=q)
        await h.tick()
    evs = await h.events("alarm_created", "alarm_resolved")
    got = [("C" if e.type == "alarm_created" else "R", (e.ts_ms - T0) / 1000,
            e.body["value" if e.type == "alarm_created" else "last_value"],
            (e.body["started_ts"] - T0) / 1000) for e in evs]
    assert got == expected
    assert h.engine.waiting == set()  # every window got closed (raised, resolved, cancelled)

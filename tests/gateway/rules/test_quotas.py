"""Energy quotas: periods in the site timezone (DST, month ends), counter resets, rollover,
implausible jumps, gaps, one event per threshold per period, persistence."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.model import Sample
from gateway.rules.config import Quota
from gateway.rules.quotas import CounterTracker, QuotaState, period_of
from tests.gateway.rules.conftest import MakeHarness
from tests.gateway.rules.harness import devices

H = 3_600_000
BERLIN = ZoneInfo("Europe/Berlin")


def utc_ms(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)


def quota(**kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"name": "q", "devices": ["m1"], "period": "day",
                            "budget_kwh": 10, "thresholds": [100]}
    base.update(kw)
    return base


def counter(ts: int, wh: float, device: str = "m1") -> Sample:
    return Sample(device, "energy_wh", ts, wh)


def test_periods_follow_local_midnights_across_dst() -> None:
    spring = period_of(utc_ms("2024-03-31T12:00+00:00"), "day", BERLIN)
    assert (spring.end_ms - spring.start_ms) == 23 * H
    autumn = period_of(utc_ms("2024-10-27T12:00+00:00"), "day", BERLIN)
    assert (autumn.end_ms - autumn.start_ms) == 25 * H
    week = period_of(utc_ms("2024-03-31T12:00+00:00"), "week", BERLIN)  # a Sunday
    assert week.key == "2024-03-25" and week.last.isoformat() == "2024-03-31"
    assert week.end_ms - week.start_ms == (7 * 24 - 1) * H
    # 00:30 on Feb 1 in Tokyo is still January in UTC
    feb = period_of(utc_ms("2024-01-31T15:30+00:00"), "month", ZoneInfo("Asia/Tokyo"))
    assert feb.key == "2024-02-01" and feb.last.isoformat() == "2024-02-29"
    leap = period_of(utc_ms("2024-02-29T23:59+00:00"), "month", ZoneInfo("UTC"))
    assert leap.key == "2024-02-01"


async def _hourly_day(make_harness: MakeHarness, day_start: str, hours: int) -> list[Any]:
    """1 kWh per hour from a Berlin midnight for ``hours`` hours; returns the events."""
    section = {"quotas": [quota(budget_kwh=24, thresholds=[100, 104])]}
    h = await make_harness(section, devices("m1"), timezone="Europe/Berlin")
    t = utc_ms(day_start)
    for i in range(hours + 2):
        await h.feed(counter(t + i * H, 5000 + i * 1000))
    return await h.events("quota_exceeded")


async def test_dst_short_day_23_kwh(make_harness: MakeHarness) -> None:
    events = await _hourly_day(make_harness, "2024-03-30T23:00+00:00", 23)
    # 23 kWh on March 31 (23 h) is below 24 kWh; April 1 reaches 100 % after 24 h.
    assert [(e.body["period_start"], e.body["threshold_pct"]) for e in events] == []


async def test_dst_long_day_fires_both_thresholds(make_harness: MakeHarness) -> None:
    events = await _hourly_day(make_harness, "2024-10-26T22:00+00:00", 25)
    got = [(e.body["period_start"], e.body["period_end"], e.body["threshold_pct"],
            e.body["usage_kwh"]) for e in events]
    assert got == [("2024-10-27", "2024-10-27", 100, 24.0),
                   ("2024-10-27", "2024-10-27", 104, 25.0)]


async def test_gap_over_month_end_is_split_by_time(make_harness: MakeHarness) -> None:
    section = {"quotas": [quota(period="month", budget_kwh=10, thresholds=[50, 100])]}
    h = await make_harness(section, devices("m1"), timezone="Asia/Tokyo")
    jan = utc_ms("2024-01-31T13:00+00:00")  # 22:00 JST
    await h.feed(counter(jan, 0), counter(jan + H, 9500))  # 9.5 kWh in January
    # no data from 23:00 to 01:00 JST, then +2 kWh: one hour in each month
    await h.feed(counter(jan + 3 * H, 11500))
    events = await h.events("quota_exceeded")
    got = [(e.body["period_start"], e.body["period_end"], e.body["threshold_pct"])
           for e in events]
    assert got == [("2024-01-01", "2024-01-31", 50), ("2024-01-01", "2024-01-31", 100)]
    assert events[-1].body["usage_kwh"] == 10.5
    [usage] = [s.usage() for s in h.engine.quotas.states.values()]
    assert usage["period_start"] == "2024-02-01" and usage["usage_kwh"] == 1.0


async def test_each_threshold_once_per_period_across_restart(make_harness: MakeHarness) -> None:
    section = {"quotas": [quota(budget_kwh=1, thresholds=[80, 100, 120])]}
    h = await make_harness(section, devices("m1"))
    t = utc_ms("2024-05-10T00:00+00:00")
    wh = 0.0
    for i in range(1, 10):  # 100 Wh every 10 minutes
        wh += 100
        await h.feed(counter(t + i * 600_000, wh))
    assert [e.body["threshold_pct"] for e in await h.events("quota_exceeded")] == [80]
    await h.restart()
    for i in range(10, 20):
        wh += 100
        await h.feed(counter(t + i * 600_000, wh))
    pcts = [e.body["threshold_pct"] for e in await h.events("quota_exceeded")]
    assert pcts == [80, 100, 120]
    # everything after the first reading (the baseline); the restart lost nothing
    assert h.engine.quotas.states["q"].usage_wh == 1800
    next_day = utc_ms("2024-05-11T00:00+00:00")
    await h.feed(counter(next_day + 600_000, wh + 10), counter(next_day + H, wh + 900))
    got = [(e.body["period_start"], e.body["threshold_pct"])
           for e in await h.events("quota_exceeded")]
    assert got[3:] == [("2024-05-11", 80)]


async def test_checkpoint_then_crash_counts_everything(make_harness: MakeHarness) -> None:
    section = {"quotas": [quota(budget_kwh=100)], "checkpoint_interval": 3600}
    h = await make_harness(section, devices("m1"))
    t = utc_ms("2024-05-10T01:00+00:00")
    await h.feed(counter(t, 1000), counter(t + 60_000, 1500))
    await h.checkpoint()
    await h.feed(counter(t + 120_000, 2000))  # never checkpointed: lost in the "crash"
    await h.restart()
    assert h.engine.quotas.states["q"].usage_wh == 500
    await h.feed(counter(t + 180_000, 2600))  # the delta from the saved baseline covers it
    assert h.engine.quotas.states["q"].usage_wh == 1600


async def test_reset_rollover_and_implausible_jump(make_harness: MakeHarness) -> None:
    section = {"quotas": [
        quota(name="plain", devices=["a"], budget_kwh=100),
        quota(name="checked", devices=["b"], budget_kwh=100, max_power_w=60_000),
        quota(name="wrap", devices=["c"], budget_kwh=100, counter_max=65_536),
        quota(name="kwh", devices=["d"], budget_kwh=100, energy_unit="kWh",
              max_power_w=60_000),
    ]}
    h = await make_harness(section, devices("a", "b", "c", "d"))
    t = utc_ms("2024-05-10T01:00+00:00")
    m = 60_000
    for dev in "ab":
        await h.feed(counter(t, 5000, dev), counter(t + m, 5600, dev),  # +600
                     counter(t + 2 * m, 300, dev),  # reset: 300 since the reset
                     counter(t + 3 * m, 800, dev))  # +500
    # b also sees a meter replaced by one at 9 000 000 Wh (an implausible jump: dropped)
    await h.feed(counter(t + 4 * m, 9_000_000, "b"), counter(t + 5 * m, 9_000_400, "b"))
    await h.feed(counter(t, 65_000, "c"), counter(t + m, 500, "c"))
    await h.feed(Sample("d", "energy_wh", t, 12.5), Sample("d", "energy_wh", t + m, 12.9),
                 Sample("d", "energy_wh", t + 2 * m, 11_000.0))
    states = h.engine.quotas.states
    assert states["plain"].usage_wh == 1100  # a reset counts nothing without max_power_w
    assert states["checked"].usage_wh == 1800  # 600 + 300 + 500 + 400
    assert states["wrap"].usage_wh == 1036
    assert abs(states["kwh"].usage_wh - 400) < 1e-6
    stats = h.engine.quotas.stats
    assert stats.resets == 2 and stats.rollovers == 1 and stats.implausible == 2


async def test_power_integration_with_gap(make_harness: MakeHarness) -> None:
    section = {"quotas": [quota(energy_point=None, power_point="power_w", max_gap_s=120,
                                budget_kwh=1, thresholds=[50, 100])]}
    h = await make_harness(section, devices("m1"))
    t = utc_ms("2024-05-10T01:00+00:00")
    p = [Sample("m1", "power_w", t + i * 60_000, w) for i, w in
         enumerate([1000, 2000, 2000, float("nan"), 3000])]
    await h.feed(*p)
    # trapezoids: 25 + 33.3; NaN ignored; then the 3000 W sample comes 2 min later (ok)
    usage = h.engine.quotas.states["q"].usage_wh
    assert abs(usage - (1500 / 60 + 2000 / 60 + 2500 * 2 / 60)) < 1e-9
    await h.feed(Sample("m1", "power_w", t + 10 * 60_000, 3000))  # 6 min gap: nothing
    assert h.engine.quotas.states["q"].usage_wh == usage
    assert h.engine.quotas.stats.gaps == 1


async def test_quota_action_in_event(make_harness: MakeHarness) -> None:
    section = {"quotas": [quota(budget_kwh=1, thresholds=[80, 100, 120],
                                action={"at_pct": 100,
                                        "limit_charging": {"power_w": 3700}})]}
    h = await make_harness(section, devices("m1"))
    t = utc_ms("2024-05-10T01:00+00:00")
    await h.feed(counter(t, 0), counter(t + H, 900), counter(t + 2 * H, 1300))
    actions = [e.body["action"] for e in await h.events("quota_exceeded")]
    assert actions == [None, {"limit_charging": {"power_w": 3700, "chargers": []}}, None]
    assert [(q.name, p) for q, p in h.engine.quotas.actions] == [("q", 3700)]


async def test_per_device_and_group_quotas(make_harness: MakeHarness) -> None:
    section = {"quotas": [quota(name="each", devices=["m*"], per_device=True),
                          quota(name="sum", devices=["m*"])]}
    h = await make_harness(section, devices("m1", "m2"))
    t = utc_ms("2024-05-10T01:00+00:00")
    for dev, wh in (("m1", 100), ("m2", 300)):
        await h.feed(counter(t, 0, dev), counter(t + H, wh, dev))
    states = h.engine.quotas.states
    assert states["each[m1]"].usage_wh == 100 and states["each[m2]"].usage_wh == 300
    assert states["sum"].usage_wh == 400


# -- property: the accumulator within one period --------------------------------------

readings = st.lists(
    st.tuples(
        st.integers(1, 600_000),  # ms since the previous reading
        st.one_of(
            st.floats(0, 5000),  # normal consumption (Wh)
            st.floats(-1e6, -1),  # a reset / replacement downwards
            st.floats(1e5, 1e7),  # a jump
        ),
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(readings, st.sampled_from([None, 50_000.0]), st.sampled_from([None, 1e6]))
def test_usage_is_monotonic_and_the_sum_of_valid_deltas(
    steps: list[tuple[int, float]], max_power: float | None, counter_max: float | None
) -> None:
    cfg = Quota.model_validate(quota(period="month", budget_kwh=1e9, max_power_w=max_power,
                                     counter_max=counter_max))
    start = utc_ms("2024-05-01T00:00+00:00")
    q = QuotaState("q", cfg, ["m1"], ZoneInfo("UTC"), lambda *_: None)
    q.advance_to(start)
    tracker = CounterTracker(1.0, counter_max, max_power)
    t, value = start, 1000.0
    tracker.step(value, t)
    expected = 0.0
    previous_usage = 0.0
    for dt, change in steps:
        t += dt
        value = max(0.0, value + change)
        r = tracker.step(value, t)
        if r is not None:
            wh, t0 = r
            assert wh >= 0 and t0 < t
            if max_power is not None:
                assert wh <= max_power * (t - t0) / H * 1.1 + 1
            expected += wh
            q.add(wh, t0, t)
        assert q.usage_wh >= previous_usage
        previous_usage = q.usage_wh
    assert abs(q.usage_wh - expected) <= 1e-6 * max(1.0, expected)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 600_000), st.floats(0, 5000)), max_size=60))
def test_clean_counter_usage_equals_last_minus_first(steps: list[tuple[int, float]]) -> None:
    cfg = Quota.model_validate(quota(period="month", budget_kwh=1e9))
    start = utc_ms("2024-05-01T00:00+00:00")
    q = QuotaState("q", cfg, ["m1"], ZoneInfo("UTC"), lambda *_: None)
    q.advance_to(start)
    tracker = CounterTracker()
    t, value = start, 42.0
    tracker.step(value, t)
    for dt, inc in steps:
        t += dt
        value += inc
        r = tracker.step(value, t)
        if r is not None:
            q.add(r[0], r[1], t)
    assert abs(q.usage_wh - (value - 42.0)) <= 1e-6 * max(1.0, value)


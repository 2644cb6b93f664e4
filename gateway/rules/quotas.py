"""Energy quotas: usage per calendar period (site timezone) from counters or integrated power.

How readings become usage (the rules, in order):

- Only GOOD finite numbers count. A timestamp not after the previous reading is dropped.
- Counter delta ``d = new - previous`` (in Wh after the unit).
  - ``d < 0`` with ``counter_max`` set, previous in the upper half and new in the lower half:
    a **rollover**, ``d = counter_max - previous + new``.
  - other ``d < 0``: a **reset or meter replacement**. The new reading is counted as the
    energy since the reset only when it is plausible (``max_power_w`` set and the reading is
    at most ``max_power_w * dt``); otherwise nothing is counted. Either way the new reading is
    the new baseline. So a replaced meter starting at 12 345 kWh never counts that jump.
  - ``d > max_power_w * dt * 1.1`` (+ one count): an **implausible jump**, dropped and
    counted; the new reading becomes the baseline (the jump is never counted later).
- Power (W), only for devices that have delivered no counter reading: trapezoid between two
  readings, negative power counted as 0, nothing across a gap longer than ``max_gap_s``.
- A delta covers the time since the previous reading. When that interval spans a period
  boundary (a gap over midnight, a restart) it is **split in proportion to time**; the share
  of a period that is already closed is dropped (counted), never added to the current one.
- State (usage, fired thresholds and each meter's baseline) is saved together every
  ``checkpoint_interval`` and on every threshold or period change; after a crash the counter
  baseline and the usage are consistent, so the next delta covers the lost seconds exactly.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from gateway.events import QUOTA_EXCEEDED
from gateway.model import Event, Quality, Sample, event_id
from gateway.rules.config import Quota
from gateway.store import Store, Tx

log = logging.getLogger(__name__)

_MS_PER_H = 3_600_000
_GOOD = Quality.GOOD


@dataclass(frozen=True, slots=True)
class Period:
    start_ms: int
    end_ms: int  # exclusive
    start: date
    last: date  # inclusive: the period's last day

    @property
    def key(self) -> str:
        return self.start.isoformat()


def period_of(ts_ms: int, period: str, tz: ZoneInfo) -> Period:
    """The calendar day, ISO week (Monday first) or month holding ``ts_ms`` in ``tz``.
    DST days are 23 or 25 hours long: boundaries are local midnights, not multiples of 24 h."""
    day = datetime.fromtimestamp(ts_ms / 1000, tz).date()
    if period == "day":
        start, nxt = day, day + timedelta(days=1)
    elif period == "week":
        start = day - timedelta(days=day.weekday())
        nxt = start + timedelta(days=7)
    else:
        start = day.replace(day=1)
        nxt = (start + timedelta(days=32)).replace(day=1)

    def ms(d: date) -> int:
        return int(datetime.combine(d, time(), tz).timestamp() * 1000)

    return Period(ms(start), ms(nxt), start, nxt - timedelta(days=1))


@dataclass
class MeterStats:
    resets: int = 0
    rollovers: int = 0
    implausible: int = 0
    out_of_order: int = 0
    gaps: int = 0


class CounterTracker:
    """Cumulative counter readings -> valid energy deltas (see the module docstring)."""

    def __init__(self, scale: float = 1.0, counter_max: float | None = None,
                 max_power_w: float | None = None, stats: MeterStats | None = None) -> None:
        self.scale = scale
        self.counter_max = counter_max
        self.max_power_w = max_power_w
        self.stats = stats or MeterStats()
        self.last: float | None = None
        self.last_ts = 0

    def _limit_wh(self, dt_ms: int) -> float:
        assert self.max_power_w is not None
        return self.max_power_w * dt_ms / _MS_PER_H * 1.1 + self.scale

    def step(self, value: float, ts: int) -> tuple[float, int] | None:
        """Returns (delta Wh, start of the interval it covers) or None."""
        last, last_ts = self.last, self.last_ts
        if last is None:
            self.last, self.last_ts = value, ts
            return None
        if ts <= last_ts:
            self.stats.out_of_order += 1
            return None
        dt = ts - last_ts
        d = value - last
        if d < 0:
            cmax = self.counter_max
            if cmax is not None and last > cmax / 2 and value < cmax / 2:
                d = cmax - last + value
                self.stats.rollovers += 1
            else:
                self.stats.resets += 1
                plausible = (self.max_power_w is not None and value >= 0
                             and value * self.scale <= self._limit_wh(dt))
                d = value if plausible else 0.0
        wh = d * self.scale
        self.last, self.last_ts = value, ts
        if self.max_power_w is not None and wh > self._limit_wh(dt):
            self.stats.implausible += 1
            return None
        return wh, last_ts


class PowerIntegrator:
    """Power readings (W) -> energy (Wh) by the trapezoid rule, not across long gaps."""

    def __init__(self, max_gap_s: float, stats: MeterStats | None = None) -> None:
        self.max_gap_ms = max_gap_s * 1000
        self.stats = stats or MeterStats()
        self.last: float | None = None
        self.last_ts = 0

    def step(self, power_w: float, ts: int) -> tuple[float, int] | None:
        last, last_ts = self.last, self.last_ts
        if last is not None and ts <= last_ts:
            self.stats.out_of_order += 1
            return None
        self.last, self.last_ts = power_w, ts
        if last is None:
            return None
        dt = ts - last_ts
        if dt > self.max_gap_ms:
            self.stats.gaps += 1
            return None
        return (max(last, 0.0) + max(power_w, 0.0)) / 2 * dt / _MS_PER_H, last_ts


class QuotaState:
    """Usage of one budget (one device, or a group's sum) in the current period."""

    def __init__(self, name: str, cfg: Quota, devices: list[str], tz: ZoneInfo,
                 on_exceeded: Callable[[QuotaState, float, int], None]) -> None:
        self.name = name
        self.cfg = cfg
        self.devices = devices
        self.tz = tz
        self.budget_wh = cfg.budget_kwh * 1000
        self.thresholds = list(cfg.thresholds)
        self._on_exceeded = on_exceeded
        self.period: Period | None = None
        self.usage_wh = 0.0
        self.fired: set[float] = set()
        self.action_done = False
        self.dropped_wh = 0.0  # shares of closed periods (late data, long gaps)
        self.dirty = False
        self.transition = False
        self._next_wh = math.inf
        self._start = self._end = 0

    def _enter(self, period: Period) -> None:
        self.period = period
        self._start, self._end = period.start_ms, period.end_ms
        self.usage_wh = 0.0
        self.fired = set()
        self.action_done = False
        self._rearm()
        self.dirty = self.transition = True

    def _rearm(self) -> None:
        nxt = [t for t in self.thresholds if t not in self.fired]
        self._next_wh = min(nxt) * self.budget_wh / 100 if nxt else math.inf

    def advance_to(self, ts: int) -> None:
        """Move into the period holding ``ts`` if it is later than the current one."""
        if self.period is None or ts >= self._end:
            self._enter(period_of(ts, self.cfg.period, self.tz))

    def add(self, wh: float, t0: int, t1: int) -> None:
        """Attribute ``wh`` consumed between ``t0`` and ``t1`` (ms, t0 < t1)."""
        if self._start <= t0 and t1 < self._end:  # the common case: one period
            self.usage_wh += wh
            self.dirty = True
            if self.usage_wh >= self._next_wh:
                self._check(t1)
            return
        if self.period is None:
            self._enter(period_of(t1, self.cfg.period, self.tz))
        if t1 < self._start:
            self.dropped_wh += wh
            return
        span = t1 - t0
        while True:
            lo = max(t0, self._start)
            hi = min(t1, self._end)
            if lo > t0 and t0 < self._start:
                self.dropped_wh += wh * (min(self._start, t1) - t0) / span
                t0 = self._start
            if hi > lo:
                self.usage_wh += wh * (hi - lo) / span
                self.dirty = True
                self._check(hi - 1)
            if t1 < self._end:
                return
            t0 = self._end
            self._enter(period_of(self._end, self.cfg.period, self.tz))

    def _check(self, ts: int) -> None:
        pct = self.usage_wh * 100 / self.budget_wh
        for t in self.thresholds:
            if t <= pct and t not in self.fired:
                self.fired.add(t)
                self.transition = True
                self._on_exceeded(self, t, ts)
        self._rearm()

    def snapshot(self, meters: dict[str, Any]) -> dict[str, Any]:
        p = self.period
        return {"start_ms": p.start_ms if p else None, "usage_wh": self.usage_wh,
                "fired": sorted(self.fired), "action_done": self.action_done,
                "dropped_wh": self.dropped_wh, "meters": meters}

    def restore(self, state: dict[str, Any]) -> None:
        if state.get("start_ms") is None:
            return
        self.period = period_of(int(state["start_ms"]), self.cfg.period, self.tz)
        self._start, self._end = self.period.start_ms, self.period.end_ms
        self.usage_wh = float(state["usage_wh"])
        self.fired = set(state["fired"])
        self.action_done = bool(state.get("action_done"))
        self.dropped_wh = float(state.get("dropped_wh", 0.0))
        self._rearm()

    def usage(self) -> dict[str, Any]:
        p = self.period
        return {"quota": self.name, "devices": self.devices, "period": self.cfg.period,
                "period_start": p.key if p else None,
                "period_end": p.last.isoformat() if p else None,
                "usage_kwh": round(self.usage_wh / 1000, 6), "budget_kwh": self.cfg.budget_kwh,
                "usage_pct": round(self.usage_wh * 100 / self.budget_wh, 3),
                "thresholds_fired": sorted(self.fired),
                "dropped_kwh": round(self.dropped_wh / 1000, 6)}


class CounterOrPower:
    """The persisted state of an energy source read from a counter, or integrated from power
    while no counter reading came (a quota's meter, the history's energy per device)."""

    counter: CounterTracker
    power: PowerIntegrator
    has_counter: bool

    def snapshot(self) -> dict[str, Any]:
        c, p = self.counter, self.power
        return {"c": [c.last, c.last_ts], "p": [p.last, p.last_ts], "h": self.has_counter}

    def restore(self, state: dict[str, Any]) -> None:
        self.counter.last, self.counter.last_ts = state["c"]
        self.power.last, self.power.last_ts = state["p"]
        self.has_counter = bool(state["h"])


class Meter(CounterOrPower):
    """One device feeding one quota: a counter, and power as a fallback."""

    def __init__(self, quota: QuotaState, cfg: Quota, stats: MeterStats) -> None:
        self.quota = quota
        self.counter = CounterTracker(1000.0 if cfg.energy_unit == "kWh" else 1.0,
                                      cfg.counter_max, cfg.max_power_w, stats)
        self.power = PowerIntegrator(cfg.max_gap_s, stats)
        self.has_counter = False
        self.stats = stats

    @staticmethod
    def _number(s: Sample) -> float | None:
        q = s[4]
        if q is not _GOOD and q != "good":
            return None
        v = s[3]
        if type(v) is not float and type(v) is not int:
            return None
        if v != v or v in (math.inf, -math.inf):
            return None
        return v

    def feed_counter(self, s: Sample) -> None:
        q, v = s[4], s[3]
        if (q is not _GOOD and q != "good") or (type(v) is not float and type(v) is not int):
            return
        if v != v or v == math.inf or v == -math.inf:
            return
        self.has_counter = True
        r = self.counter.step(v, s[2])
        if r is not None and r[0] > 0:
            self.quota.add(r[0], r[1], s[2])

    def feed_power(self, s: Sample) -> None:
        if self.has_counter:
            return
        v = self._number(s)
        if v is None:
            return
        r = self.power.step(v, s[2])
        if r is not None and r[0] > 0:
            self.quota.add(r[0], r[1], s[2])



class QuotaEngine:
    def __init__(self, quotas: Iterable[Quota], devices: Iterable[Any], tz: ZoneInfo) -> None:
        self.tz = tz
        self.stats = MeterStats()
        self.states: dict[str, QuotaState] = {}
        self.meters: dict[str, dict[str, Meter]] = {}
        self.handlers: list[tuple[str, str, Callable[[Sample], None]]] = []
        self.events: list[Event] = []
        self.actions: list[tuple[QuotaState, float]] = []
        devices = list(devices)
        for cfg in quotas:
            selected = [d.id for d in devices if cfg.matches(d)]
            if not selected:
                log.warning("quota %s selects no device; check its devices/tags/profiles",
                            cfg.name)
            groups = [[d] for d in selected] if cfg.per_device else [selected]
            for group in groups:
                name = f"{cfg.name}[{group[0]}]" if cfg.per_device else cfg.name
                state = QuotaState(name, cfg, group, tz, self._exceeded)
                self.states[name] = state
                self.meters[name] = {}
                for dev in group:
                    meter = Meter(state, cfg, self.stats)
                    self.meters[name][dev] = meter
                    if cfg.energy_point:
                        self.handlers.append((dev, cfg.energy_point, meter.feed_counter))
                    if cfg.power_point:
                        self.handlers.append((dev, cfg.power_point, meter.feed_power))

    def _exceeded(self, q: QuotaState, pct: float, ts: int) -> None:
        p = q.period
        assert p is not None
        action = q.cfg.action
        act: dict[str, Any] | None = None
        if action is not None and pct >= action.at_pct and not q.action_done:
            q.action_done = True
            if action.limit_charging is not None:
                act = {"limit_charging": action.limit_charging.model_dump()}
                self.actions.append((q, action.limit_charging.power_w))
        usage_pct = q.usage_wh * 100 / q.budget_wh
        self.events.append(Event(
            QUOTA_EXCEEDED,
            {"quota": q.name, "devices": q.devices, "period": q.cfg.period,
             "period_start": p.key, "period_end": p.last.isoformat(), "threshold_pct": pct,
             "usage_kwh": round(q.usage_wh / 1000, 6), "budget_kwh": q.cfg.budget_kwh,
             "usage_pct": round(usage_pct, 3), "action": act},
            q.devices[0] if len(q.devices) == 1 else None, ts,
            event_id(QUOTA_EXCEEDED, q.name, p.key, pct),
        ))
        log.warning("quota %s: %.1f %% of %.1f kWh used in the %s from %s (threshold %g %%)",
                    q.name, usage_pct, q.cfg.budget_kwh, q.cfg.period, p.key, pct)

    async def load(self, store: Store) -> None:
        for name, raw in await store.query("SELECT quota, state FROM rules_quotas"):
            state = self.states.get(name)
            if state is None:
                continue
            data = json.loads(raw)
            state.restore(data)
            for dev, meter_state in data.get("meters", {}).items():
                meter = self.meters[name].get(dev)
                if meter is not None:
                    meter.restore(meter_state)

    def advance_to(self, now: int) -> None:
        for state in self.states.values():
            state.advance_to(now)

    async def flush(self, tx: Tx, now_ms: int, checkpoint: bool) -> None:
        """Write events, and the state of quotas that crossed a threshold or a period (or,
        at a checkpoint, of every quota that changed)."""
        events, self.events = self.events, []
        if events:
            await tx.add_events(events)
        for name, state in self.states.items():
            if not (state.transition or (checkpoint and state.dirty)) or state.period is None:
                continue
            meters = {dev: m.snapshot() for dev, m in self.meters[name].items()}
            await tx.execute(
                "INSERT OR REPLACE INTO rules_quotas VALUES (?, ?, ?, ?)",
                (name, state.period.key, json.dumps(state.snapshot(meters)), now_ms),
            )
            state.dirty = state.transition = False

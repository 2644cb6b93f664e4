"""Per (rule, device) state machines. ``feed(sample)`` is on the ingest path: it is a bound
method stored in the engine's (device, point) index, does a few comparisons, and touches the
:class:`AlarmBook` only on a transition.

Threshold semantics (rate uses the same on its computed rate):
- only GOOD samples with a finite number count; bad/uncertain quality neither raises nor
  resolves, NaN/Inf and non-numbers are ignored and counted;
- the condition must hold continuously for ``for`` seconds (sample time) before the alarm is
  raised; its ``started_ts`` is when the condition first held;
- it resolves when the clear condition holds (for ``clear_for`` s). The clear condition is
  ``clear`` if given, else the negated condition moved by ``deadband`` (hysteresis). A value
  that crosses back into the raise condition without having cleared is a re-trigger: it is
  merged into the open alarm (count + 1), never a new alarm.
- ``for``/``clear_for`` windows are also closed by the clock: a state with an open window
  joins the engine's ``waiting`` set, and the engine's tick promotes it once the window has
  elapsed in clock time since the sample that opened it was processed, using the last good
  value. So a condition met just before the samples stop (or by a 60 s poll with ``for: 10``)
  is raised on time, not at the next sample or never. The window is measured on the clock
  rather than against sample timestamps so that a replayed batch of old samples, or a device
  clock that is off, cannot close a window early.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from gateway.model import Quality, Sample, Value
from gateway.rules.alarms import Alarm, AlarmBook
from gateway.rules.config import (
    Condition,
    FaultRule,
    OfflineRule,
    RateRule,
    StaleRule,
    ThresholdRule,
)
from gateway.rules.converters import decode_fault

log = logging.getLogger(__name__)

_GOOD = Quality.GOOD
_INF = math.inf
Pred = Callable[[float], bool]


@dataclass
class EvalStats:
    evaluated: int = 0  # samples that matched at least one rule or quota
    ignored_quality: int = 0
    ignored_nonfinite: int = 0
    ignored_non_numeric: int = 0


def _always(v: float) -> bool:
    return True


def compile_condition(c: Condition) -> Pred:
    t = c.value if c.value is not None else 0.0
    lo, hi = c.range if c.range is not None else (0.0, 0.0)
    preds: dict[str, Pred] = {
        ">": lambda v: v > t, ">=": lambda v: v >= t, "<": lambda v: v < t,
        "<=": lambda v: v <= t, "==": lambda v: v == t, "!=": lambda v: v != t,
        "outside": lambda v: v < lo or v > hi, "inside": lambda v: lo <= v <= hi,
    }
    return preds[c.op]


def compile_clear(c: Condition, deadband: float, clear: Condition | None) -> Pred:
    """The resolve predicate: explicit ``clear``, else the condition negated past the
    deadband (for ``> t``: ``v <= t - deadband``)."""
    if clear is not None:
        return compile_condition(clear)
    t, d = (c.value if c.value is not None else 0.0), deadband
    lo, hi = c.range if c.range is not None else (0.0, 0.0)
    preds: dict[str, Pred] = {
        ">": lambda v: v <= t - d, ">=": lambda v: v < t - d, "<": lambda v: v >= t + d,
        "<=": lambda v: v > t + d, "==": lambda v: abs(v - t) > d,
        "!=": lambda v: abs(v - t) <= d,
        "outside": lambda v: lo + d <= v <= hi - d, "inside": lambda v: v < lo - d or v > hi + d,
    }
    return preds[c.op]


def render(template: str, fields: dict[str, Any]) -> str:
    try:
        return template.format_map(fields)
    except (ValueError, TypeError, KeyError, IndexError):
        # e.g. '{value:.1f}' with a string value: keep the alarm, lose only the formatting.
        return f"{fields.get('rule')}: {fields.get('device')} {fields.get('point')} = " \
               f"{fields.get('value')}"


class _Base:
    kind = "threshold"

    def __init__(self, rule: Any, device: str, device_name: str, book: AlarmBook,
                 stats: EvalStats) -> None:
        self.rule = rule
        self.device = device
        self.device_name = device_name
        self.book = book
        self.stats = stats
        self.point: str | None = getattr(rule, "point", None)

    def fields(self, value: Value, **extra: Any) -> dict[str, Any]:
        cond: Condition | None = getattr(self.rule, "condition", None)
        low, high = (cond.range if cond is not None and cond.range else (None, None))
        return {"device": self.device, "device_name": self.device_name, "point": self.point,
                "value": value, "threshold": cond.value if cond is not None else None,
                "low": low, "high": high, "rule": self.rule.name,
                "severity": self.rule.severity.value, "code": "", "text": "",
                "after": getattr(self.rule, "after", None),
                "window": getattr(self.rule, "window", None), **extra}

    def raise_(self, value: Value, ts: int, started: int, code: str = "",
               default_msg: str = "", **extra: Any) -> Alarm | None:
        fields = self.fields(value, code=code, **extra)
        message = render(self.rule.message or default_msg, fields)
        return self.book.raise_(self.rule.name, self.kind, self.rule.severity.value,
                                self.device, self.point, code, message, value, ts, started)


class ThresholdState(_Base):

    def __init__(self, rule: ThresholdRule | RateRule, device: str, device_name: str,
                 book: AlarmBook, stats: EvalStats, clock_ms: Callable[[], int],
                 waiting: set[ThresholdState]) -> None:
        super().__init__(rule, device, device_name, book, stats)
        self.raise_if = compile_condition(rule.condition)
        #: the ingest fast path skips a value when nothing is open or pending and this is
        #: false; rate rules need every value (their condition applies to the rate)
        self.gate: Pred = self.raise_if
        self.clear_if = compile_clear(rule.condition, rule.deadband, rule.clear)
        self.for_ms = int(rule.for_ * 1000)
        self.clear_for_ms = int(rule.clear_for * 1000)
        self.clock_ms = clock_ms
        self.waiting = waiting
        self.pending: int | None = None  # sample ts the raise condition first held
        self.pending_at = 0  # clock ms when that sample was processed
        self.clear_since: int | None = None
        self.clear_at = 0
        self.last_value = 0.0  # the last good value evaluated (the rate, for rate rules)
        self.alarm = book.open.get((rule.name, device, ""))
        self.active = self.alarm is not None

    def feed(self, s: Sample) -> None:
        q = s[4]
        if q is not _GOOD and q != "good":
            self.stats.ignored_quality += 1
            return
        v = s[3]
        tv = type(v)
        if tv is not float and tv is not int:
            if tv is bool:
                v = int(v)  # type: ignore[arg-type]
            else:
                self.stats.ignored_non_numeric += 1
                return
        elif tv is float and (v != v or v == _INF or v == -_INF):
            self.stats.ignored_nonfinite += 1
            return
        if self.alarm is None and self.pending is None and not self.gate(
                v):  # type: ignore[arg-type]
            return  # the common case: all quiet
        self.evaluate(v, s[2])  # type: ignore[arg-type]

    def evaluate(self, v: float, ts: int) -> None:
        self.last_value = v
        alarm = self.alarm
        if alarm is None or not alarm.open:
            if self.raise_if(v):
                if self.pending is None:
                    self.pending = ts
                    if self.for_ms:
                        self.pending_at = self.clock_ms()
                        self.waiting.add(self)
                if ts - self.pending >= self.for_ms:
                    self.alarm = self.raise_(v, ts, self.pending,
                                             default_msg=self.default_message())
                    self.active = True
                    self.clear_since = None
            else:
                self.pending = None
            return
        alarm.last_value = v
        alarm.last_ts = ts
        if self.clear_if(v):
            self.active = self.raise_if(v)
            if self.clear_since is None:
                self.clear_since = ts
                if self.clear_for_ms:
                    self.clear_at = self.clock_ms()
                    self.waiting.add(self)
            if ts - self.clear_since >= self.clear_for_ms:
                self._resolve(alarm, ts)
            return
        self.clear_since = None
        now_active = self.raise_if(v)
        if now_active and not self.active:
            self.book.retrigger(alarm, v, ts)
        self.active = now_active

    def _resolve(self, alarm: Alarm, ts: int) -> None:
        self.book.resolve(alarm, ts)
        self.alarm = None
        self.pending = self.clear_since = None
        self.active = False

    def tick(self, now: int) -> bool:
        """Close a ``for``/``clear_for`` window that elapsed on the clock with no sample to
        close it. Returns whether a window is still open (stay in the waiting set)."""
        alarm = self.alarm
        if alarm is None or not alarm.open:
            if self.pending is None:
                return False
            if now - self.pending_at < self.for_ms:
                return True
            # None under maintenance: the window stays open, as on the sample path.
            self.alarm = self.raise_(self.last_value, now, self.pending,
                                     default_msg=self.default_message())
            if self.alarm is None:
                return True
            self.active = True
            self.clear_since = None
            return False
        if self.clear_since is None:
            return False
        if now - self.clear_at < self.clear_for_ms:
            return True
        self._resolve(alarm, now)
        return False

    def default_message(self) -> str:
        c = self.rule.condition
        if c.range is not None:
            return "{device} {point} = {value} " + c.op + " [{low}, {high}]"
        return "{device} {point} = {value} " + c.op + " {threshold}"


class RateState(ThresholdState):
    """The condition applies to the change per minute, taken between the oldest sample in
    the last ``window`` seconds and the newest, once they span at least half the window."""

    kind = "rate"

    def __init__(self, rule: RateRule, device: str, device_name: str, book: AlarmBook,
                 stats: EvalStats, clock_ms: Callable[[], int],
                 waiting: set[ThresholdState]) -> None:
        super().__init__(rule, device, device_name, book, stats, clock_ms, waiting)
        self.gate = _always
        self.window_ms = int(rule.window * 1000)
        self.min_span_ms = self.window_ms // 2
        self.history: deque[tuple[int, float]] = deque()

    def evaluate(self, v: float, ts: int) -> None:
        hist = self.history
        if hist and ts <= hist[-1][0]:
            return  # out of order or repeated timestamp: no rate from it
        hist.append((ts, v))
        while ts - hist[0][0] > self.window_ms:
            hist.popleft()
        t0, v0 = hist[0]
        if ts - t0 < self.min_span_ms:
            return
        super().evaluate((v - v0) * 60_000 / (ts - t0), ts)

    def default_message(self) -> str:
        return "{device} {point} changes {value:.3g}/min (" + self.rule.condition.op + \
               " {threshold})"


class FaultState(_Base):
    """One alarm per active code; codes that are no longer active resolve."""

    kind = "fault"

    def __init__(self, rule: FaultRule, device: str, device_name: str, book: AlarmBook,
                 stats: EvalStats, codes: Mapping[int, str]) -> None:
        super().__init__(rule, device, device_name, book, stats)
        self.fault: FaultRule = rule
        self.codes = codes  # the rule's, or the point's map on this device (engine)
        self.last: Value = object()  # type: ignore[assignment]
        self.ok = frozenset(rule.ok)

    def feed(self, s: Sample) -> None:
        q = s[4]
        if q is not _GOOD and q != "good":
            self.stats.ignored_quality += 1
            return
        v = s[3]
        if v == self.last and type(v) is type(self.last):
            return  # same code word as before: nothing can change
        try:
            active = decode_fault(v, self.fault.mode, self.codes, self.ok)
        except ValueError:
            self.stats.ignored_non_numeric += 1
            return
        self.last = v
        ts = s[2]
        codes = {str(c): text for c, text in active.items()}
        for alarm in self.book.of(self.rule.name, self.device):
            if alarm.code not in codes:
                alarm.last_value = v
                self.book.resolve(alarm, ts)
        for code, text in codes.items():
            if (self.rule.name, self.device, code) not in self.book.open:
                self.raise_(v, ts, ts, code=code, text=text,
                            default_msg="{device} {point}: {text} (code {code})")


class StaleState(_Base):
    kind = "stale"

    def __init__(self, rule: StaleRule, device: str, device_name: str, book: AlarmBook,
                 stats: EvalStats, now_ms: int) -> None:
        super().__init__(rule, device, device_name, book, stats)
        self.after_ms = int(rule.after * 1000)
        self.last_good = now_ms
        self.alarm = book.open.get((rule.name, device, ""))

    def feed(self, s: Sample) -> None:
        q = s[4]
        if q is not _GOOD and q != "good":
            return
        v = s[3]
        if type(v) is float and (v != v or v == _INF or v == -_INF):
            return
        if s[2] > self.last_good:
            self.last_good = s[2]
        alarm = self.alarm
        if alarm is not None and alarm.open:
            alarm.last_value = v
            self.book.resolve(alarm, s[2])
            self.alarm = None

    def tick(self, now: int) -> None:
        if (self.alarm is None or not self.alarm.open) and now - self.last_good >= self.after_ms:
            self.alarm = self.raise_(None, now, self.last_good + self.after_ms,
                                     default_msg="{device} {point}: no good value for {after} s")


class OfflineState(_Base):
    kind = "offline"

    def __init__(self, rule: OfflineRule, device: str, device_name: str, book: AlarmBook,
                 stats: EvalStats) -> None:
        super().__init__(rule, device, device_name, book, stats)
        self.for_ms = int(rule.for_ * 1000)
        self.since: int | None = None
        self.alarm = book.open.get((rule.name, device, ""))

    def update(self, offline: bool, now: int) -> None:
        alarm = self.alarm if self.alarm is not None and self.alarm.open else None
        if not offline:
            self.since = None
            if alarm is not None:
                alarm.last_value = "online"
                self.book.resolve(alarm, now)
                self.alarm = None
            return
        if self.since is None:
            self.since = now
        if alarm is None and now - self.since >= self.for_ms:
            self.alarm = self.raise_("offline", now, self.since,
                                     default_msg="{device} is offline")

"""The rules engine: a pipeline BatchProcessor that evaluates alarm rules and quotas.

At build time every rule and quota is expanded over the devices it selects, and each
(device, point) gets the tuple of ``feed`` functions interested in it, in a two-level dict
``index[device][point]``. A batch is first filtered in C down to the samples of a point that
some rule or quota reads (``points``), so a sample nobody cares about costs a set lookup
without a Python step; one that matches costs two dict lookups and its handlers' few
comparisons. A poll that came as a :class:`~gateway.model.PollBatch` is not filtered sample
by sample: which of its positions some rule reads is kept per names tuple and device. Nothing
is written per sample: the alarm book and the quota engine queue transitions, which are
written once per batch inside its transaction.

Time: sample-driven rules use sample timestamps (``for``, rate windows), so replayed or
buffered data evaluates as it happened. Stale and offline rules, ``for``/``clear_for`` windows
that no sample closes (samples stopped or are rare), and moving quotas into a new period when
no data comes, run on the engine's tick with ``clock.now_ms()``.
"""

from __future__ import annotations

import logging
import operator
from collections.abc import Callable, Iterable, Mapping
from itertools import compress
from typing import Any
from zoneinfo import ZoneInfo

from gateway.clock import Clock
from gateway.errors import StartupError
from gateway.model import Batch, DeviceStatus, Event, PollBatch, Sample
from gateway.rules.alarms import AlarmBook
from gateway.rules.config import (
    SEVERITY_RANK,
    FaultRule,
    OfflineRule,
    RateRule,
    RulesSection,
    StaleRule,
    ThresholdRule,
)
from gateway.rules.converters import AlarmSignal, Converter, converters
from gateway.rules.evaluators import (
    EvalStats,
    FaultState,
    OfflineState,
    RateState,
    StaleState,
    ThresholdState,
)
from gateway.rules.quotas import QuotaEngine
from gateway.status import DeviceStatusService
from gateway.store import Store, Tx

log = logging.getLogger(__name__)

Handler = Callable[[Sample], None]
_POINT = operator.itemgetter(1)
_NONE: dict[str, tuple[Handler, ...]] = {}
#: (names tuple, device) entries kept of which points of a poll some rule reads
_WATCHED_MAX = 4_096

#: A period is not closed by the clock until this long after its end, so late samples of
#: the old period still count there.
_PERIOD_GRACE_MS = 60_000


def fault_codes(rule: FaultRule, device: Any) -> Mapping[int, str]:
    """The code texts of a fault rule on one device: the rule's own ``codes``, else the
    point's ``enum``/``bitmask`` map (per ``mode``) from the device config. Any device model
    offering ``all_points() -> {name: point}`` with those maps qualifies (the Modbus one
    resolves profile points there). Neither: a StartupError naming the rule, device and
    point, rather than an alarm with no text for every code."""
    if rule.codes is not None:
        return rule.codes
    all_points = getattr(device, "all_points", None)
    point = all_points().get(rule.point) if callable(all_points) else None
    maps: dict[str, Mapping[int, str]] = {
        m: getattr(point, m, None) or {} for m in ("enum", "bitmask")}
    if maps[rule.mode]:
        return dict(maps[rule.mode])
    other = "bitmask" if rule.mode == "enum" else "enum"
    where = f"point {rule.point!r} of device {device.id!r}"
    if maps[other]:
        article = "an" if other == "enum" else "a"
        hint = f"{where} has {article} {other} map: set `mode: {other}` on the rule"
    elif not callable(all_points):
        hint = (f"device {device.id!r} (type {device.type}) has no point maps: give the rule "
                "`codes: {code: text}`, or `codes: {}` to raise on any code")
    elif point is None:
        hint = (f"device {device.id!r} defines no point {rule.point!r} (a sunspec map is only "
                "known at run time): give the rule `codes`, or fix `point`")
    else:
        hint = f"add `{rule.mode}:` to {where}, or give the rule `codes`"
    raise StartupError(f"alarm rule {rule.name!r} (kind fault, mode {rule.mode}) has no "
                       f"`codes` and {where} defines no {rule.mode} map", hint)


class RuleEngine:
    def __init__(self, section: RulesSection, devices: Iterable[Any], tracker: DeviceStatusService,
                 clock: Clock, timezone: str = "UTC") -> None:
        self.section = section
        self.clock = clock
        self.tracker = tracker
        self.devices = [d for d in devices if getattr(d, "enabled", True)]
        self.book = AlarmBook(tracker, section.status_severity.value)
        self.stats = EvalStats()
        self.quotas = QuotaEngine(section.quotas, self.devices, ZoneInfo(timezone))
        self.index: dict[str, dict[str, tuple[Handler, ...]]] = {}
        #: every point name in ``index``: the batch filter
        self.points: frozenset[str] = frozenset()
        #: (id(names), device) -> (names, the index read, [(position, handlers)]) of polls
        self._watched: dict[tuple[int, str], tuple[tuple[str, ...], Any,
                                                   list[tuple[int, tuple[Handler, ...]]]]] = {}
        self.stale: list[StaleState] = []
        #: threshold/rate states with an open for/clear_for window, closed by the tick
        self.waiting: set[ThresholdState] = set()
        self.offline: dict[str, list[OfflineState]] = {}
        self.converters: dict[str, Converter] = {}
        self.converter_errors = 0
        self.signals_ignored = 0
        self._last_checkpoint = clock.monotonic()

    async def load(self, store: Store) -> None:
        """Load persisted alarms and quota usage, then build the evaluators around them."""
        await self.book.load(store)
        await self.quotas.load(store)
        self._build()

    def _build(self) -> None:
        now = self.clock.now_ms()
        clock_ms = self.clock.now_ms
        index: dict[str, dict[str, list[Handler]]] = {}

        def add(device: str, point: str, fn: Handler) -> None:
            index.setdefault(device, {}).setdefault(point, []).append(fn)

        for rule in self.section.alarms:
            if not rule.enabled:
                continue
            matched = [d for d in self.devices if rule.matches(d)]
            if not matched:
                log.warning("alarm rule %s selects no device; check its devices/tags/profiles",
                            rule.name)
            for dev in matched:
                name = dev.name or dev.id
                if isinstance(rule, RateRule):
                    add(dev.id, rule.point, RateState(rule, dev.id, name, self.book,
                                                      self.stats, clock_ms,
                                                      self.waiting).feed)
                elif isinstance(rule, ThresholdRule):
                    add(dev.id, rule.point, ThresholdState(rule, dev.id, name, self.book,
                                                           self.stats, clock_ms,
                                                           self.waiting).feed)
                elif isinstance(rule, FaultRule):
                    add(dev.id, rule.point, FaultState(rule, dev.id, name, self.book,
                                                       self.stats, fault_codes(rule, dev)).feed)
                elif isinstance(rule, StaleRule):
                    st = StaleState(rule, dev.id, name, self.book, self.stats, now)
                    self.stale.append(st)
                    add(dev.id, rule.point, st.feed)
                elif isinstance(rule, OfflineRule):
                    self.offline.setdefault(dev.id, []).append(
                        OfflineState(rule, dev.id, name, self.book, self.stats))
        for device, point, fn in self.quotas.handlers:
            add(device, point, fn)
        self.index = {dev: {p: tuple(fns) for p, fns in points.items()}
                      for dev, points in index.items()}
        self.points = frozenset(p for points in self.index.values() for p in points)
        wanted = self.section.converters
        self.converters = {n: fn for n, fn in converters().items()
                           if wanted is None or n in wanted}
        for name in set(wanted or ()) - set(self.converters):
            log.warning("rules.converters names %r but no converter is registered for it; "
                        "known: %s", name, ", ".join(sorted(converters())) or "none")

    # -- BatchProcessor ----------------------------------------------------------------

    async def process(self, batch: Batch, tx: Tx) -> None:
        matched = 0
        for part in getattr(batch, "parts", None) or [batch]:
            if type(part) is PollBatch:
                matched += self._process_poll(part)
            else:
                matched += self._process_samples(part)
        self.stats.evaluated += matched
        await self.flush(tx)

    def _process_samples(self, batch: Batch) -> int:
        index = self.index
        matched = 0
        # Only the samples of a point some rule reads, picked in C (most points have none).
        for s in compress(batch, map(self.points.__contains__, map(_POINT, batch))):
            handlers = index.get(s[0], _NONE).get(s[1])
            if handlers is None:
                continue
            matched += 1
            for fn in handlers:
                fn(s)
        return matched

    def _process_poll(self, part: PollBatch) -> int:
        """A poll's columns: which of its points some rule reads is known per names tuple
        and device (kept beside the index it was read from), so only those samples are
        looked at. Those samples are made from the columns one by one: the poll's others
        are never made."""
        names, index = part.names, self.index
        key = (id(names), part.device)
        entry = self._watched.get(key)
        if entry is None or entry[0] is not names or entry[1] is not index:
            handlers = index.get(part.device, _NONE)
            watched = [(i, handlers[name]) for i, name in enumerate(names) if name in handlers]
            if len(self._watched) >= _WATCHED_MAX:
                self._watched.clear()
            entry = self._watched[key] = (names, index, watched)
        device, ts, values = part.device, part.ts_ms, part.values
        for i, fns in entry[2]:
            s = Sample(device, names[i], ts, values[i])
            for fn in fns:
                fn(s)
        return len(entry[2])

    async def on_status(self, device: str, old: DeviceStatus | None, new: DeviceStatus,
                        tx: Tx) -> None:
        states = self.offline.get(device)
        if states:
            now = self.clock.now_ms()
            offline = self.tracker.link.get(device) is DeviceStatus.OFFLINE
            for st in states:
                st.update(offline, now)
            await self.flush(tx)

    async def on_events(self, events: list[Event], tx: Tx) -> None:
        """Events added through the pipeline (driver events): convert external alarms."""
        for event in events:
            fn = self.converters.get(event.type)
            if fn is None:
                continue
            try:
                signals = list(fn(event))
            except Exception:
                self.converter_errors += 1
                log.exception("alarm converter %s failed on event %s; the event is kept, "
                              "no alarm derived from it (fix the converter)",
                              event.type, event.id)
                continue
            for sig in signals:
                self.apply_signal(sig, event.ts_ms)
        await self.flush(tx)

    def apply_signal(self, sig: AlarmSignal, default_ts: int) -> None:
        ts = sig.ts_ms if sig.ts_ms is not None else default_ts
        if sig.scope is not None:
            for alarm in self.book.of(sig.rule, sig.device):
                if alarm.code.startswith(sig.scope) and not (sig.active and
                                                             alarm.code == sig.code):
                    self.book.resolve(alarm, ts, "replaced" if sig.active else "cleared")
        if sig.active:
            severity = sig.severity
            if severity not in SEVERITY_RANK:
                self.signals_ignored += 1
                log.warning("alarm signal from %s for %s has unknown severity %r; using major "
                            "(fix the converter)", sig.rule, sig.device, severity)
                severity = "major"
            self.book.raise_(sig.rule, "external", severity, sig.device, sig.point, sig.code,
                             sig.message or f"{sig.device}: {sig.code}", sig.value, ts)
        elif sig.scope is None:
            found = self.book.open.get((sig.rule, sig.device, sig.code))
            if found is not None:
                self.book.resolve(found, ts, "cleared")

    # -- time-driven rules -------------------------------------------------------------

    def tick(self, now: int) -> None:
        if self.waiting:
            self.waiting.difference_update([st for st in list(self.waiting)
                                            if not st.tick(now)])
        for st in self.stale:
            st.tick(now)
        link = self.tracker.link
        for device, states in self.offline.items():
            offline = link.get(device) is DeviceStatus.OFFLINE
            for off in states:
                off.update(offline, now)
        self.quotas.advance_to(now - _PERIOD_GRACE_MS)

    @property
    def pending(self) -> bool:
        q = self.quotas
        return self.book.pending or bool(q.events) or any(
            s.transition for s in q.states.values())

    async def flush(self, tx: Tx, *, force_checkpoint: bool = False) -> None:
        now = self.clock.now_ms()
        mono = self.clock.monotonic()
        checkpoint = force_checkpoint or (
            mono - self._last_checkpoint >= self.section.checkpoint_interval)
        if checkpoint:
            self._last_checkpoint = mono
        if self.book.pending:
            await self.book.flush(tx, now)
        await self.quotas.flush(tx, now, checkpoint)

    def describe(self) -> dict[str, Any]:
        s, q = self.stats, self.quotas.stats
        return {
            "open_alarms": len(self.book.open),
            "indexed_points": sum(len(p) for p in self.index.values()),
            "evaluated": s.evaluated, "ignored_quality": s.ignored_quality,
            "ignored_nonfinite": s.ignored_nonfinite,
            "ignored_non_numeric": s.ignored_non_numeric,
            "alarms_created": self.book.stats.created, "alarms_resolved": self.book.stats.resolved,
            "alarms_retriggered": self.book.stats.retriggered,
            "alarms_suppressed": self.book.stats.suppressed,
            "converter_errors": self.converter_errors,
            "counter_resets": q.resets, "counter_rollovers": q.rollovers,
            "implausible_jumps": q.implausible, "out_of_order": q.out_of_order,
            "power_gaps": q.gaps,
        }

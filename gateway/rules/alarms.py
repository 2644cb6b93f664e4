"""Open alarms: one per (rule, device, code), persisted, with an event per lifecycle step.

The evaluators call :meth:`AlarmBook.raise_`, :meth:`AlarmBook.retrigger` and
:meth:`AlarmBook.resolve` synchronously from the per-sample loop; those only change memory and
queue SQL and events. :meth:`AlarmBook.flush` then writes them inside the transaction that
commits the batch which caused them, so an alarm and its cause are durable together. Only
transitions are written; the last value of an open alarm is kept in memory and saved with the
next transition.

Ids are stable: ``alarm_id = event_id(rule, device, code, started_ts)`` and each event's id
derives from the alarm id and the event type, so replaying after a crash inserts nothing twice.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from gateway.events import ALARM_ACKNOWLEDGED, ALARM_CREATED, ALARM_RESOLVED
from gateway.model import Event, Value, event_id
from gateway.rules.config import SEVERITY_RANK
from gateway.status import DeviceStatusService
from gateway.store import Store, Tx

log = logging.getLogger(__name__)


#: The schema of the rules component (ComponentSpec.migrations; append-only).
MIGRATIONS = [
        """
        CREATE TABLE rules_alarms (
            alarm_id   TEXT PRIMARY KEY,
            rule       TEXT NOT NULL,
            kind       TEXT NOT NULL,
            severity   TEXT NOT NULL,
            device     TEXT NOT NULL,
            point      TEXT,
            code       TEXT NOT NULL,
            message    TEXT NOT NULL,
            started_ts INTEGER NOT NULL,
            value      TEXT,
            count      INTEGER NOT NULL,
            last_value TEXT,
            last_ts    INTEGER NOT NULL,
            acked_by   TEXT,
            acked_ts   INTEGER,
            UNIQUE (rule, device, code)
        );
        CREATE TABLE rules_quotas (
            quota        TEXT PRIMARY KEY,
            period_start TEXT NOT NULL,
            state        TEXT NOT NULL,
            updated_ms   INTEGER NOT NULL
        ) WITHOUT ROWID;
        """,
]

AlarmKey = tuple[str, str, str]  # (rule, device, code)


@dataclass(slots=True)
class Alarm:
    alarm_id: str
    rule: str
    kind: str
    severity: str
    device: str
    point: str | None
    code: str
    message: str
    started_ts: int
    value: Value
    count: int = 1
    last_value: Value = None
    last_ts: int = 0
    acked_by: str | None = None
    acked_ts: int | None = None
    open: bool = True

    @property
    def key(self) -> AlarmKey:
        return (self.rule, self.device, self.code)

    def created_body(self) -> dict[str, Any]:
        return {"alarm_id": self.alarm_id, "rule": self.rule, "kind": self.kind,
                "severity": self.severity, "device": self.device, "point": self.point,
                "code": self.code, "message": self.message, "value": self.value,
                "started_ts": self.started_ts, "count": self.count}

    def resolved_body(self, resolved_ts: int) -> dict[str, Any]:
        return {"alarm_id": self.alarm_id, "rule": self.rule, "kind": self.kind,
                "severity": self.severity, "device": self.device, "point": self.point,
                "code": self.code, "message": self.message, "started_ts": self.started_ts,
                "resolved_ts": resolved_ts, "count": self.count, "last_value": self.last_value}

    def as_dict(self) -> dict[str, Any]:
        return {**self.created_body(), "last_value": self.last_value, "last_ts": self.last_ts,
                "acked_by": self.acked_by, "acked_ts": self.acked_ts}


@dataclass
class AlarmStats:
    created: int = 0
    resolved: int = 0
    retriggered: int = 0
    suppressed: int = 0


class AlarmBook:
    def __init__(self, tracker: DeviceStatusService, status_severity: str) -> None:
        self.tracker = tracker
        self.status_rank = SEVERITY_RANK[status_severity]
        self.open: dict[AlarmKey, Alarm] = {}
        self.by_id: dict[str, Alarm] = {}
        self.stats = AlarmStats()
        self._by_source: dict[tuple[str, str], dict[str, Alarm]] = {}  # (rule, device)
        self._status_open: dict[str, int] = {}  # device -> open alarms at the status level
        self._touched: dict[str, Alarm] = {}  # alarm_id -> alarm, to write at the flush
        self._events: list[Event] = []
        self._devices: dict[str, str] = {}  # device -> reason, for the status flag

    async def load(self, store: Store) -> None:
        rows = await store.query(  # (closes its cursor: see Store.query)
            "SELECT alarm_id, rule, kind, severity, device, point, code, message, started_ts,"
            " value, count, last_value, last_ts, acked_by, acked_ts FROM rules_alarms"
        )
        for row in rows:
            (alarm_id, rule, kind, severity, device, point, code, message, started_ts,
             value, count, last_value, last_ts, acked_by, acked_ts) = row
            alarm = Alarm(alarm_id, rule, kind, severity, device, point, code, message,
                          started_ts, json.loads(value), count, json.loads(last_value),
                          last_ts, acked_by, acked_ts)
            self._add(alarm)

    def _add(self, alarm: Alarm) -> None:
        self.open[alarm.key] = alarm
        self.by_id[alarm.alarm_id] = alarm
        self._by_source.setdefault((alarm.rule, alarm.device), {})[alarm.code] = alarm
        if SEVERITY_RANK[alarm.severity] >= self.status_rank:
            self._status_open[alarm.device] = self._status_open.get(alarm.device, 0) + 1

    def _remove(self, alarm: Alarm) -> None:
        self.open.pop(alarm.key, None)
        self.by_id.pop(alarm.alarm_id, None)
        codes = self._by_source.get((alarm.rule, alarm.device))
        if codes is not None:
            codes.pop(alarm.code, None)
            if not codes:
                del self._by_source[(alarm.rule, alarm.device)]
        if SEVERITY_RANK[alarm.severity] >= self.status_rank:
            self._status_open[alarm.device] -= 1

    @property
    def pending(self) -> bool:
        return bool(self._touched or self._events or self._devices)

    # -- transitions (sync, from the evaluation loop) ----------------------------------

    def raise_(self, rule: str, kind: str, severity: str, device: str, point: str | None,
               code: str, message: str, value: Value, ts_ms: int,
               started_ts: int | None = None) -> Alarm | None:
        """Open an alarm, or merge into the open one for (rule, device, code). Returns None
        when the device is in maintenance (alarms suppressed)."""
        key = (rule, device, code)
        existing = self.open.get(key)
        if existing is not None:
            self.retrigger(existing, value, ts_ms)
            return existing
        if device in self.tracker.maintenance:
            self.stats.suppressed += 1
            return None
        started = ts_ms if started_ts is None else started_ts
        alarm = Alarm(event_id(rule, device, code, started), rule, kind, severity, device,
                      point, code, message, started, value, 1, value, ts_ms)
        self._add(alarm)
        self._touched[alarm.alarm_id] = alarm
        self._events.append(Event(ALARM_CREATED, alarm.created_body(), device, ts_ms,
                                  event_id(ALARM_CREATED, alarm.alarm_id)))
        self.stats.created += 1
        self._devices[device] = f"alarm {rule}: {message}"
        log.info("alarm %s raised on %s (%s): %s", rule, device, severity, message)
        return alarm

    def retrigger(self, alarm: Alarm, value: Value, ts_ms: int) -> None:
        """The condition was met again while the alarm is open: count it, no new alarm."""
        alarm.count += 1
        alarm.last_value = value
        alarm.last_ts = ts_ms
        self.stats.retriggered += 1
        self._touched[alarm.alarm_id] = alarm

    def resolve(self, alarm: Alarm, ts_ms: int, reason: str = "") -> None:
        if not alarm.open:
            return
        alarm.open = False
        self._remove(alarm)
        self._touched[alarm.alarm_id] = alarm
        self._events.append(Event(ALARM_RESOLVED, alarm.resolved_body(ts_ms), alarm.device,
                                  ts_ms, event_id(ALARM_RESOLVED, alarm.alarm_id)))
        self.stats.resolved += 1
        suffix = f": {reason}" if reason else ""
        self._devices[alarm.device] = f"alarm {alarm.rule} resolved{suffix}"
        log.info("alarm %s on %s resolved%s", alarm.rule, alarm.device,
                 f" ({reason})" if reason else "")

    def acknowledge(self, alarm: Alarm, by: str, ts_ms: int) -> bool:
        """Returns False when it was acknowledged before (acking is idempotent)."""
        if alarm.acked_by is not None:
            return False
        alarm.acked_by, alarm.acked_ts = by, ts_ms
        self._touched[alarm.alarm_id] = alarm
        self._events.append(Event(
            ALARM_ACKNOWLEDGED,
            {"alarm_id": alarm.alarm_id, "rule": alarm.rule, "device": alarm.device,
             "by": by, "ts": ts_ms},
            alarm.device, ts_ms, event_id(ALARM_ACKNOWLEDGED, alarm.alarm_id),
        ))
        return True

    def of(self, rule: str, device: str) -> list[Alarm]:
        """The open alarms of one rule on one device (several codes for fault rules)."""
        codes = self._by_source.get((rule, device))
        return list(codes.values()) if codes else []

    def raises_status(self, device: str) -> bool:
        return self._status_open.get(device, 0) > 0

    # -- persistence -------------------------------------------------------------------

    async def flush(self, tx: Tx, ts_ms: int) -> None:
        """Write the net effect of the queued transitions (one statement per kind, however
        many alarms changed), their events, and the device status changes."""
        touched, self._touched = self._touched, {}
        events, self._events = self._events, []
        devices, self._devices = self._devices, {}
        rows = [_row(a) for a in touched.values() if a.open]
        gone = [(a.alarm_id,) for a in touched.values() if not a.open]
        if rows:
            await tx.executemany(
                "INSERT OR REPLACE INTO rules_alarms VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                rows)
        if gone:
            await tx.executemany("DELETE FROM rules_alarms WHERE alarm_id = ?", gone)
        if events:
            await tx.add_events(events)
        if devices:
            await self.tracker.set_alarms(
                tx, {d: (self.raises_status(d), reason) for d, reason in devices.items()},
                ts_ms)


def _row(a: Alarm) -> tuple[Any, ...]:
    return (a.alarm_id, a.rule, a.kind, a.severity, a.device, a.point, a.code, a.message,
            a.started_ts, json.dumps(a.value), a.count, json.dumps(a.last_value), a.last_ts,
            a.acked_by, a.acked_ts)

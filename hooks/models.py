"""The objects hooks receive: frozen records built from committed event bodies.

They are built on the body types of the event catalogue (:mod:`gateway.events`), so
``alarm_event.severity`` is the ``severity`` key of the ``alarm_created`` body, and a key added
to a body there is an attribute here. Keys a producer adds later land in
``extra`` instead of breaking the build; keys it leaves out take the defaults. Every record
carries ``event_id``: the id of the event being delivered, the key for idempotency.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NamedTuple, TypeVar

from gateway import events
from gateway.model import Event


def _empty() -> Mapping[str, Any]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Device:
    id: str
    type: str | None = None
    name: str | None = None
    tags: tuple[str, ...] = ()
    status: str | None = None
    event_id: str = ""


@dataclass(frozen=True, slots=True)
class AlarmEvent(events.AlarmCreated):
    """``alarm_created`` or ``alarm_resolved`` (``state``): the created body plus the keys
    only the resolved body has."""

    resolved_ts: int | None = None
    last_value: Any = None
    state: str = "active"
    event_id: str = ""
    extra: Mapping[str, Any] = field(default_factory=_empty)


@dataclass(frozen=True, slots=True)
class Rule:
    name: str = ""
    kind: str = ""
    severity: str = ""
    event_id: str = ""


@dataclass(frozen=True, slots=True)
class Quota:
    name: str = ""
    devices: tuple[str, ...] = ()
    period: str = ""
    period_start: str = ""
    period_end: str = ""
    threshold_pct: float = 0.0
    budget_kwh: float = 0.0
    action: Mapping[str, Any] | None = None  # e.g. {"limit_charging": {"power_w": ..}}
    event_id: str = ""
    extra: Mapping[str, Any] = field(default_factory=_empty)


@dataclass(frozen=True, slots=True)
class QuotaUsage:
    usage_kwh: float = 0.0
    budget_kwh: float = 0.0
    usage_pct: float = 0.0
    period_start: str = ""
    period_end: str = ""
    event_id: str = ""


@dataclass(frozen=True, slots=True)
class WorkOrder(events.WorkOrderBody):
    event_id: str = ""
    extra: Mapping[str, Any] = field(default_factory=_empty)


@dataclass(frozen=True, slots=True)
class InspectionRecord(events.InspectionCompleted):
    event_id: str = ""
    extra: Mapping[str, Any] = field(default_factory=_empty)


@dataclass(frozen=True, slots=True)
class ReportTask:
    report_id: str = ""
    name: str = ""
    period: str = ""
    format: str = ""
    generated_ts: int | None = None
    event_id: str = ""
    extra: Mapping[str, Any] = field(default_factory=_empty)


@dataclass(frozen=True, slots=True)
class ChargingOrder(events.ChargingOrderCompleted):
    """``charging_order_created`` (the stop fields are None) or ``_completed``."""

    event_id: str = ""
    extra: Mapping[str, Any] = field(default_factory=_empty)


class DataPoint(NamedTuple):
    """One committed sample. A NamedTuple, not a dataclass, for the same reason as
    :class:`gateway.model.Sample`: this hook is called once per sample, at up to hundreds of
    thousands per second, and a tuple is the cheapest immutable record CPython builds."""

    device: str
    point: str
    ts_ms: int
    value: Any
    quality: str
    seq: int

    @property
    def event_id(self) -> str:
        return f"sample:{self.seq}"


T = TypeVar("T")


def from_body(cls: type[T], body: Mapping[str, Any], event_id: str,
              rename: Mapping[str, str] | None = None) -> T:
    """Build ``cls`` from an event body: known keys become fields (after ``rename``),
    unknown ones go to ``extra`` when the class has it, lists become tuples."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    kwargs: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, value in body.items():
        key = (rename or {}).get(key, key)
        if key in names and key not in ("event_id", "extra"):
            kwargs[key] = tuple(value) if isinstance(value, list) else value
        else:
            extra[key] = value
    kwargs["event_id"] = event_id
    if "extra" in names:
        kwargs["extra"] = MappingProxyType(extra)
    return cls(**kwargs)


def alarm_of(event: Event) -> AlarmEvent:
    state = "resolved" if event.type == events.ALARM_RESOLVED else "active"
    alarm = from_body(AlarmEvent, event.body, event.id)
    return dataclasses.replace(alarm, state=state)


def rule_of(event: Event) -> Rule:
    body = event.body
    return Rule(name=str(body.get("rule", "")), kind=str(body.get("kind", "")),
                severity=str(body.get("severity", "")), event_id=event.id)


def quota_of(event: Event) -> tuple[Quota, QuotaUsage]:
    quota = from_body(Quota, event.body, event.id, rename={"quota": "name"})
    usage = QuotaUsage(
        usage_kwh=float(event.body.get("usage_kwh", 0.0)),
        budget_kwh=float(event.body.get("budget_kwh", 0.0)),
        usage_pct=float(event.body.get("usage_pct", 0.0)),
        period_start=str(event.body.get("period_start", "")),
        period_end=str(event.body.get("period_end", "")),
        event_id=event.id,
    )
    return quota, usage

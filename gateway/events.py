"""The event catalogue: every event type the gateway commits to its outbox, and its body.

An event (:class:`gateway.model.Event`) is ``type`` + ``body``; this module says which types
exist and which keys each body has. Producers and consumers import the type names from here
(``events.ALARM_CREATED``), the wire schema ``config/wire/events.schema.json`` and the table
in ``docs/wire-format.md`` are generated from here, and ``hooks/models.py`` builds the hooks'
records on these body types. Tests fail when any of them drifts from this module.

Body types are frozen dataclasses (``field(metadata={"doc": ...})`` adds a note to the schema
and the table). Every field has a default: it is what a reader assumes for
an event committed (by an older version) before the key existed. The gateway itself always
writes every key, so the wire schema requires them all.

Types that are not here (a plugin driver's own events, say ``acme_fault``) are allowed on the
wire with a free-form body; the built-in types always carry exactly the keys listed here.

To add an event type (one file, then one command):

1. Here: a constant for its name, a frozen dataclass for its body (or reuse one, as the work
   order types do), and an :class:`EventType` line in :data:`CATALOGUE` saying who emits it.
2. Run ``python -m gateway.events --write``: it regenerates the wire schema and the table in
   ``docs/wire-format.md`` (``tests/gateway/test_events.py`` fails until you do).
3. Emit it with the constant: ``Event(events.MY_TYPE, asdict(MyBody(...)), ...)`` or a dict
   with the same keys.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

# -- names ---------------------------------------------------------------------------------
DEVICE_STATUS_CHANGED = "device_status_changed"
ALARM_CREATED = "alarm_created"
ALARM_ACKNOWLEDGED = "alarm_acknowledged"
ALARM_RESOLVED = "alarm_resolved"
QUOTA_EXCEEDED = "quota_exceeded"
CHARGING_ORDER_CREATED = "charging_order_created"
CHARGING_ORDER_COMPLETED = "charging_order_completed"
OCPP_FAULT = "ocpp_fault"
OCPP_FAULT_CLEARED = "ocpp_fault_cleared"
OCPP_CHARGER_DISCOVERED = "ocpp_charger_discovered"
OCPP_FIRMWARE_STATUS = "ocpp_firmware_status"
OCPP_DIAGNOSTICS_STATUS = "ocpp_diagnostics_status"
OCPP_SECURITY_EVENT = "ocpp_security_event"
OCPP_NOTIFY_EVENT = "ocpp_notify_event"
WORK_ORDER_CREATED = "work_order_created"
WORK_ORDER_COMPLETED = "work_order_completed"
WORK_ORDER_UPDATED = "work_order_updated"
INSPECTION_DUE = "inspection_due"
INSPECTION_COMPLETED = "inspection_completed"
REPORT_GENERATED = "report_generated"
CUSTOM = "custom"
BUFFER_OVERFLOW = "buffer_overflow"
SEQ_GAP = "seq_gap"
CHUNK_QUARANTINED = "chunk_quarantined"
STORE_RECOVERED = "store_recovered"
DISK_FULL = "disk_full"
DISK_FULL_CLEARED = "disk_full_cleared"
CONFIG_APPLIED = "config_applied"
CONFIG_CONFIRMED = "config_confirmed"
CONFIG_ROLLED_BACK = "config_rolled_back"

DeviceStatusValue = Literal["online", "offline", "alarm", "maintenance"]


def _empty_mapping() -> Mapping[str, Any]:
    return {}


# -- bodies --------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class DeviceStatusChanged:
    device: str = ""
    old_status: DeviceStatusValue | None = None
    new_status: DeviceStatusValue = "online"
    reason: str = ""
    planned: bool = field(default=False, metadata={
        "doc": "true when the device went offline because the gateway was stopping or "
               "reloading, not a failure"})


@dataclass(frozen=True, slots=True)
class AlarmCreated:
    alarm_id: str = ""
    rule: str = ""
    kind: str = ""
    severity: str = ""
    device: str | None = None
    point: str | None = None
    code: str | None = None
    message: str = ""
    value: Any = None
    started_ts: int | None = None
    count: int = 1


@dataclass(frozen=True, slots=True)
class AlarmAcknowledged:
    alarm_id: str = ""
    rule: str = ""
    device: str | None = None
    by: str = ""
    ts: int | None = None


@dataclass(frozen=True, slots=True)
class AlarmResolved:
    alarm_id: str = ""
    rule: str = ""
    kind: str = ""
    severity: str = ""
    device: str | None = None
    point: str | None = None
    code: str | None = None
    message: str = ""
    started_ts: int | None = None
    resolved_ts: int | None = None
    count: int = 1
    last_value: Any = None


@dataclass(frozen=True, slots=True)
class QuotaExceeded:
    quota: str = ""
    devices: tuple[str, ...] = ()
    period: Literal["day", "week", "month"] = "day"
    period_start: str = field(default="", metadata={"doc": "ISO date, site timezone"})
    period_end: str = field(default="", metadata={"doc": "ISO date, site timezone"})
    threshold_pct: float = 0.0
    usage_kwh: float = 0.0
    budget_kwh: float = 0.0
    usage_pct: float = 0.0
    action: Mapping[str, Any] | None = None  # e.g. {"limit_charging": {"power_w": ..}}


@dataclass(frozen=True, slots=True)
class ChargingOrderCreated:
    order_id: str = ""
    charger: str = ""
    connector: int | None = None
    id_tag: str | None = None
    transaction_id: str | None = None  # OCPP 1.6 integer ids as their decimal string
    started_ts: int | None = None
    meter_start_wh: float | None = None


@dataclass(frozen=True, slots=True)
class ChargingOrderCompleted(ChargingOrderCreated):
    stopped_ts: int | None = None
    meter_stop_wh: float | None = None
    energy_wh: float | None = None
    stop_reason: str | None = None
    cost: float | None = field(default=None, metadata={
        "doc": "by the siteops tariff; null without one"})
    currency: str | None = None
    energy_by_period: Mapping[str, float] = field(default_factory=_empty_mapping, metadata={
        "doc": "Wh per tariff period"})
    cost_by_period: Mapping[str, float] = field(default_factory=_empty_mapping)


@dataclass(frozen=True, slots=True)
class OcppFault:
    charger: str = ""
    connector: int = 0
    error_code: str = ""
    vendor_error_code: str | None = None
    status: str = ""
    info: str | None = None


@dataclass(frozen=True, slots=True)
class OcppFaultCleared:
    charger: str = ""
    connector: int = 0
    status: str = ""


@dataclass(frozen=True, slots=True)
class OcppChargerDiscovered:
    charger: str = ""
    version: str = ""
    boot: Mapping[str, Any] = field(default_factory=_empty_mapping)  # the BootNotification


@dataclass(frozen=True, slots=True)
class OcppStatusNotice:
    charger: str = ""
    status: str = ""


@dataclass(frozen=True, slots=True)
class OcppSecurityEvent:
    charger: str = ""
    type: str = ""
    info: str | None = None


@dataclass(frozen=True, slots=True)
class OcppNotifyEvent:
    """One EventData of an OCPP 2.0.1 NotifyEvent (snake_case of its fields)."""

    charger: str = ""
    event_id: int = 0
    trigger: str = ""  # Alerting, Delta or Periodic
    component: str = ""
    component_instance: str | None = None
    evse: int | None = None
    connector: int | None = None
    variable: str = ""
    variable_instance: str | None = None
    actual_value: str = ""
    cleared: bool = False
    tech_code: str | None = None
    tech_info: str | None = None
    cause: int | None = None
    transaction_id: str | None = None
    notification_type: str = ""


@dataclass(frozen=True, slots=True)
class WorkOrderBody:
    order_id: str = ""
    title: str = ""
    description: str = ""
    device: str | None = None
    alarm_id: str | None = None
    priority: str = "normal"
    status: str = "open"
    created_by: str = ""
    created_ts: int | None = None
    completed_ts: int | None = None
    resolution: str = ""
    assignee: str | None = None
    notes: tuple[Mapping[str, Any], ...] = field(default=(), metadata={
        "doc": "[{ts, by, text}], oldest first"})
    updated_ts: int | None = None
    acknowledged_ts: int | None = None
    started_ts: int | None = None
    transition: str = field(default="", metadata={
        "doc": "what this event records: created, acknowledged, in_progress, assigned, note, "
               "done or cancelled"})


@dataclass(frozen=True, slots=True)
class InspectionCompleted:
    record_id: str = ""
    device: str | None = None
    inspector: str = ""
    result: str = "pass"
    findings: str = ""
    completed_ts: int | None = None
    plan: str = field(default="", metadata={"doc": "the siteops inspection plan, if any"})
    answers: Mapping[str, Any] = field(default_factory=_empty_mapping)
    out_of_range: tuple[str, ...] = field(default=(), metadata={
        "doc": "checklist items whose answer was not the expected one"})
    work_order_id: str | None = None


@dataclass(frozen=True, slots=True)
class InspectionDue:
    plan: str = ""
    device: str | None = None
    due_ts: int | None = None
    last_completed_ts: int | None = None
    checklist: tuple[Mapping[str, Any], ...] = ()


@dataclass(frozen=True, slots=True)
class ReportGenerated:
    report_id: str = ""
    name: str = ""
    period: str = ""
    format: str = ""
    file_path: str = ""
    generated_ts: int | None = None
    period_start_ts: int | None = None
    period_end_ts: int | None = None
    files: tuple[str, ...] = field(default=(), metadata={"doc": "every file written"})
    sha256: str = ""
    bytes: int = 0


@dataclass(frozen=True, slots=True)
class Custom:
    topic: str = ""
    body: Any = None  # the plugin's JSON value
    plugin: str = ""


@dataclass(frozen=True, slots=True)
class BufferOverflow:
    store_id: str = ""
    seq_first: int = 0
    seq_last: int | None = field(default=None, metadata={"doc": "the range dropped unsent"})
    dropped: int = 0
    up_to_seq: int = 0
    max_bytes: int = 0


@dataclass(frozen=True, slots=True)
class SeqGap:
    store_id: str = ""
    seq_first: int = 0
    seq_last: int | None = field(default=None, metadata={
        "doc": "null: every number from seq_first on (that stream ended)"})
    reason: Literal["unclean_stop", "store_rewound", "store_replaced", "seq_mark_lost"] = \
        "unclean_stop"


@dataclass(frozen=True, slots=True)
class ChunkQuarantined:
    store_id: str = ""
    seq_first: int = 0
    seq_last: int = 0
    samples: int = 0
    reason: str = ""


@dataclass(frozen=True, slots=True)
class StoreRecovered:
    store_id: str = ""
    old_store_id: str | None = None
    moved_to: str = ""
    reason: str = ""
    chunks_saved: int = 0
    samples_saved: int = 0
    events_saved: int = 0
    kv_saved: int = 0
    chunks_unreadable: int = field(default=0, metadata={
        "doc": "chunks read whole but not decodable"})
    old_acked_seq: int | None = None
    old_seq_last: int | None = None
    lost: list[list[int]] = field(default_factory=list, metadata={
        "doc": "old sequence ranges [first, last] that could not be saved"})


@dataclass(frozen=True, slots=True)
class DiskFull:
    error: str = ""
    since_ts: int = 0
    max_held_samples: int = 0


@dataclass(frozen=True, slots=True)
class DiskFullCleared:
    since_ts: int = 0
    until_ts: int = 0
    failed_commits: int = 0
    dropped_samples: int = 0
    dropped_ts_first: int | None = None
    dropped_ts_last: int | None = None


@dataclass(frozen=True, slots=True)
class ConfigApplied:
    version: int = 0
    previous: int | None = None
    hash: str = ""
    source: str = field(default="", metadata={
        "doc": "who asked: mqtt request id, control socket (uid), bootstrap file"})
    summary: str = field(default="", metadata={"doc": "e.g. devices +2 -1 ~0; uplink: broker.host"})
    confirm: Literal["auto", "manual", "none"] = "auto"


@dataclass(frozen=True, slots=True)
class ConfigConfirmed:
    version: int = 0
    hash: str = ""
    source: str = field(default="", metadata={"doc": "health gate, or who sent config.confirm"})
    offline_new_devices: list[str] = field(default_factory=list, metadata={
        "doc": "new devices not online yet (config.new_devices: warn)"})


@dataclass(frozen=True, slots=True)
class ConfigRolledBack:
    version: int = 0
    to_version: int = 0
    hash: str = field(default="", metadata={"doc": "the hash of the version now in force"})
    reason: str = ""
    source: str = ""


# -- the catalogue -------------------------------------------------------------------------
@dataclass(frozen=True)
class EventType:
    name: str
    body: type
    source: str  # who emits it (the "from" column of the documentation)

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(self.body))


CATALOGUE: Mapping[str, EventType] = {t.name: t for t in (
    EventType(DEVICE_STATUS_CHANGED, DeviceStatusChanged, "status tracker"),
    EventType(ALARM_CREATED, AlarmCreated, "rules"),
    EventType(ALARM_ACKNOWLEDGED, AlarmAcknowledged, "rules (`alarm.ack`)"),
    EventType(ALARM_RESOLVED, AlarmResolved, "rules"),
    EventType(QUOTA_EXCEEDED, QuotaExceeded, "rules"),
    EventType(CHARGING_ORDER_CREATED, ChargingOrderCreated, "OCPP"),
    EventType(CHARGING_ORDER_COMPLETED, ChargingOrderCompleted, "OCPP"),
    EventType(OCPP_FAULT, OcppFault, "OCPP"),
    EventType(OCPP_FAULT_CLEARED, OcppFaultCleared, "OCPP"),
    EventType(OCPP_CHARGER_DISCOVERED, OcppChargerDiscovered, "OCPP (admission `record`)"),
    EventType(OCPP_FIRMWARE_STATUS, OcppStatusNotice, "OCPP"),
    EventType(OCPP_DIAGNOSTICS_STATUS, OcppStatusNotice, "OCPP"),
    EventType(OCPP_SECURITY_EVENT, OcppSecurityEvent, "OCPP"),
    EventType(OCPP_NOTIFY_EVENT, OcppNotifyEvent, "OCPP 2.0.1 NotifyEvent, one per EventData"),
    EventType(WORK_ORDER_CREATED, WorkOrderBody, "siteops (plugins `db`, commands, rules)"),
    EventType(WORK_ORDER_COMPLETED, WorkOrderBody,
              "siteops: done or cancelled (plugins `db`, commands, rules)"),
    EventType(WORK_ORDER_UPDATED, WorkOrderBody,
              "siteops: acknowledged, in_progress, assigned, note"),
    EventType(INSPECTION_DUE, InspectionDue, "siteops (a plan comes due)"),
    EventType(INSPECTION_COMPLETED, InspectionCompleted, "siteops: `inspections.complete`, "
              "plugins"),
    EventType(REPORT_GENERATED, ReportGenerated, "siteops: scheduled, `reports.run`; plugins"),
    EventType(CUSTOM, Custom, "plugins (`db.publish`)"),
    EventType(BUFFER_OVERFLOW, BufferOverflow, "store"),
    EventType(SEQ_GAP, SeqGap, "store (at open: numbers a restart skips)"),
    EventType(CHUNK_QUARANTINED, ChunkQuarantined, "store / uplink (undecodable chunk)"),
    EventType(STORE_RECOVERED, StoreRecovered, "store (`on_corrupt: quarantine`)"),
    EventType(DISK_FULL, DiskFull, "pipeline (a commit failed)"),
    EventType(DISK_FULL_CLEARED, DiskFullCleared, "pipeline (commits work again)"),
    EventType(CONFIG_APPLIED, ConfigApplied, "config (`config.apply`, `config.rollback`)"),
    EventType(CONFIG_CONFIRMED, ConfigConfirmed, "config (health gate or `config.confirm`)"),
    EventType(CONFIG_ROLLED_BACK, ConfigRolledBack, "config (health gate, crash loop at start)"),
)}


def problems(event_type: str, body: Mapping[str, Any]) -> list[str]:
    """What is wrong with ``body`` for ``event_type`` (empty: nothing, or not a catalogue
    type). The same checks as the wire schema, without a JSON Schema library, so a producer's
    tests (and :class:`drivers.testing.RecordingContext`) can call it on every event."""
    entry = CATALOGUE.get(event_type)
    if entry is None:
        return []
    schema = body_schema(entry.body)
    out = [f"{event_type}: missing key {k!r}" for k in schema["required"] if k not in body]
    out += [f"{event_type}: unknown key {k!r} (add it to gateway/events.py)"
            for k in body if k not in schema["properties"]]
    for key, rule in schema["properties"].items():
        if key in body and not _matches(body[key], rule):
            out.append(f"{event_type}: {key}={body[key]!r} does not match {rule}")
    return out


_JSON_TYPES: Mapping[str, tuple[type, ...]] = {
    "string": (str,), "integer": (int,), "number": (int, float), "boolean": (bool,),
    "null": (type(None),), "array": (list, tuple), "object": (dict, Mapping),
}


def _matches(value: Any, rule: Mapping[str, Any]) -> bool:
    if "enum" in rule and value not in rule["enum"]:
        return False
    if "anyOf" in rule:
        return any(_matches(value, r) for r in rule["anyOf"])
    kinds = rule.get("type")
    if kinds is not None:
        names = [kinds] if isinstance(kinds, str) else kinds
        if isinstance(value, bool) and "boolean" not in names:
            return False
        if not any(isinstance(value, _JSON_TYPES[n]) for n in names):
            return False
    if "items" in rule and isinstance(value, list | tuple):
        return all(_matches(v, rule["items"]) for v in value)
    return True


# -- generated artefacts -------------------------------------------------------------------
ROOT = Path(__file__).resolve().parents[1]
SCHEMA_PATH = ROOT / "config" / "wire" / "events.schema.json"
DOC_PATH = ROOT / "docs" / "wire-format.md"
DOC_BEGIN = "<!-- event catalogue: generated by `python -m gateway.events --write` -->"
DOC_END = "<!-- end of event catalogue -->"


def _json_type(tp: Any) -> dict[str, Any]:
    """The JSON Schema of one annotated field type."""
    origin = get_origin(tp)
    if tp is Any:
        return {}
    if origin in (typing.Union, types.UnionType):
        parts = [_json_type(a) for a in get_args(tp)]
        if {} in parts:
            return {}
        if all(set(p) == {"type"} for p in parts):
            return {"type": [p["type"] for p in parts]}
        return {"anyOf": parts}
    if origin is Literal:
        return {"enum": list(get_args(tp))}
    if tp is type(None):
        return {"type": "null"}
    if tp is bool:
        return {"type": "boolean"}
    if tp is int:
        return {"type": "integer"}
    if tp is float:
        return {"type": "number"}
    if tp is str:
        return {"type": "string"}
    if origin in (tuple, list):
        return {"type": "array", "items": _json_type(get_args(tp)[0])}
    if origin in (dict, Mapping) or tp in (dict, Mapping):
        return {"type": "object"}
    raise TypeError(f"no JSON Schema for {tp!r}; use str, int, float, bool, Any, Literal, "
                    "X | None, tuple[X, ...] or Mapping[str, Any]")


def body_schema(body: type) -> dict[str, Any]:
    hints = typing.get_type_hints(body)
    fields = dataclasses.fields(body)
    return {
        "type": "object",
        "required": [f.name for f in fields],
        "additionalProperties": False,
        "properties": {f.name: _json_type(hints[f.name]) | _described(f) for f in fields},
    }


def _described(f: dataclasses.Field[Any]) -> dict[str, str]:
    doc = f.metadata.get("doc")
    return {"description": doc} if doc else {}


def json_schema() -> dict[str, Any]:
    """The wire schema of an event message; every catalogue type's body is checked."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://fieldgate.example/wire/v1/events.schema.json",
        "title": "fieldgate event message (v1)",
        "description": "Published QoS 1 on <prefix>/<gateway>/events, one event per message, "
                       "in outbox order. The id is stable: an event re-delivered after a cut "
                       "or a crash has the same id, so a receiver drops repeats by id. The "
                       "body keys depend on the type (see docs/wire-format.md); a type not in "
                       "the catalogue (a plugin driver's own) has a free-form body. Generated "
                       "from gateway/events.py.",
        "type": "object",
        "required": ["v", "gw", "id", "type", "ts", "device", "body"],
        "additionalProperties": False,
        "properties": {
            "v": {"const": 1},
            "gw": {"type": "string", "minLength": 1},
            "id": {"type": "string", "minLength": 1, "description": "Stable event id."},
            "type": {"type": "string", "minLength": 1,
                     "description": "Event type, e.g. alarm_created, device_status_changed."},
            "ts": {"type": "integer", "description": "When it happened, UTC milliseconds."},
            "device": {"type": ["string", "null"],
                       "description": "The device it concerns, if any."},
            "body": {"type": "object", "description": "Type-specific fields."},
        },
        "allOf": [
            {"if": {"properties": {"type": {"const": t.name}}},
             "then": {"properties": {"body": body_schema(t.body)}}}
            for t in CATALOGUE.values()
        ],
    }


def _doc_keys(body: type) -> str:
    hints = typing.get_type_hints(body)
    out = []
    for f in dataclasses.fields(body):
        tp = hints[f.name]
        literal = next((a for a in (tp, *get_args(tp)) if get_origin(a) is Literal), None)
        notes = [", ".join(get_args(literal))] if literal else []
        notes += [f.metadata["doc"]] if f.metadata.get("doc") else []
        out.append(f"{f.name} ({'; '.join(notes)})" if notes else f.name)
    return ", ".join(out)


def markdown_table() -> str:
    """The catalogue table of docs/wire-format.md, between its two markers."""
    rows = [DOC_BEGIN, "", "| type | from | body keys |", "| --- | --- | --- |"]
    rows += [f"| `{t.name}` | {t.source} | {_doc_keys(t.body)} |" for t in CATALOGUE.values()]
    return "\n".join([*rows, "", DOC_END])


def doc_with_table(doc: str) -> str:
    """``doc`` with the text between the markers replaced by :func:`markdown_table`."""
    start, end = doc.index(DOC_BEGIN), doc.index(DOC_END) + len(DOC_END)
    return doc[:start] + markdown_table() + doc[end:]


def schema_text() -> str:
    return json.dumps(json_schema(), indent=2) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m gateway.events", description=(
        "Print the events wire schema generated from the catalogue; with --write, update "
        f"{SCHEMA_PATH.relative_to(ROOT)} and the table in {DOC_PATH.relative_to(ROOT)}."))
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args(argv)
    if not args.write:
        print(schema_text(), end="")
        return 0
    SCHEMA_PATH.write_text(schema_text())
    DOC_PATH.write_text(doc_with_table(DOC_PATH.read_text()))
    print(f"wrote {SCHEMA_PATH} and the catalogue in {DOC_PATH}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

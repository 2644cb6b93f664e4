"""The event catalogue: every event type the gateway commits to its outbox, and its body.

An event (:class:`gateway.model.Event`) is ``type`` + ``body``; this module says which types
exist and which keys each body has. Producers and consumers import the type names from here
(``events.ALARM_CREATED``), the wire schema ``config/wire/events.schema.json`` and the table
in ``docs/wire-format.md`` are generated from here, and ``hooks/models.py`` builds the hooks'
records on these body types. Tests fail when any of them drifts from this module.

Body types are frozen dataclasses, in :mod:`gateway.event_bodies` and imported from here
(``field(metadata={"doc": ...})`` adds a note to the schema and the table). Every field has a
default: it is what a reader assumes for an event committed (by an older version) before the
key existed. The gateway itself always writes every key, so the wire schema requires them
all. The schema and the table are built by :mod:`gateway.event_schema`. The bodies and
:data:`CATALOGUE` load on first use (``events.AlarmCreated``, ``events.CATALOGUE``): most
of the daemon needs only the names, and a site that never builds a body skips ~0.5 MB.

Types that are not here (a plugin driver's own events, say ``acme_fault``) are allowed on the
wire with a free-form body; the built-in types always carry exactly the keys listed here.

To add an event type (one file, then one command):

1. Here: a constant for its name and an :class:`EventType` line in :data:`CATALOGUE`
   (built by ``_build_catalogue``) saying who emits it; in :mod:`gateway.event_bodies` a
   frozen dataclass for its body (or reuse one, as the work order types do), imported in
   ``_build_catalogue`` and, for type checkers, in the ``TYPE_CHECKING`` block.
2. Run ``python -m gateway.events --write``: it regenerates the wire schema and the table in
   ``docs/wire-format.md`` (``tests/gateway/test_events.py`` fails until you do).
3. Emit it with the constant: ``Event(events.MY_TYPE, asdict(MyBody(...)), ...)`` or a dict
   with the same keys.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gateway import event_schema
from gateway.event_schema import (  # noqa: F401 - re-exported
    DOC_BEGIN,
    DOC_END,
    DOC_PATH,
    ROOT,
    SCHEMA_PATH,
    body_schema,
)

if TYPE_CHECKING:  # at run time, imported on first use (see __getattr__ at the end)
    from gateway.event_bodies import (  # noqa: F401 - re-exported: import bodies from here
        AlarmAcknowledged,
        AlarmBody,
        AlarmCreated,
        AlarmResolved,
        BufferOverflow,
        ChargingOrderCompleted,
        ChargingOrderCreated,
        ChunkQuarantined,
        ConfigApplied,
        ConfigConfirmed,
        ConfigRolledBack,
        Custom,
        DeviceStatusChanged,
        DeviceStatusValue,
        DiskFull,
        DiskFullCleared,
        InspectionCompleted,
        InspectionDue,
        OcppChargerDiscovered,
        OcppFault,
        OcppFaultCleared,
        OcppNotifyEvent,
        OcppSecurityEvent,
        OcppStatusNotice,
        QuotaExceeded,
        ReportDeliveryFailed,
        ReportGenerated,
        SeqGap,
        StoreRange,
        StoreRecovered,
        WorkOrderBody,
    )

    CATALOGUE: Mapping[str, EventType]

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
REPORT_DELIVERY_FAILED = "report_delivery_failed"
CUSTOM = "custom"
BUFFER_OVERFLOW = "buffer_overflow"
SEQ_GAP = "seq_gap"
CHUNK_QUARANTINED = "chunk_quarantined"
STORE_RECOVERED = "store_recovered"
DISK_FULL = "disk_full"
DISK_FULL_CLEARED = "disk_full_cleared"
STORE_WRITE_RECOVERED = "store_write_recovered"
CONFIG_APPLIED = "config_applied"
CONFIG_CONFIRMED = "config_confirmed"
CONFIG_ROLLED_BACK = "config_rolled_back"


# -- the catalogue -------------------------------------------------------------------------
@dataclass(frozen=True)
class EventType:
    name: str
    body: type
    source: str  # who emits it (the "from" column of the documentation)

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(self.body))


def _build_catalogue() -> Mapping[str, EventType]:
    """:data:`CATALOGUE`, built on first use (it imports every body type)."""
    from gateway import event_bodies as b

    return {t.name: t for t in (
        EventType(DEVICE_STATUS_CHANGED, b.DeviceStatusChanged, "status tracker"),
        EventType(ALARM_CREATED, b.AlarmCreated, "rules"),
        EventType(ALARM_ACKNOWLEDGED, b.AlarmAcknowledged, "rules (`alarm.ack`)"),
        EventType(ALARM_RESOLVED, b.AlarmResolved, "rules"),
        EventType(QUOTA_EXCEEDED, b.QuotaExceeded, "rules"),
        EventType(CHARGING_ORDER_CREATED, b.ChargingOrderCreated, "OCPP"),
        EventType(CHARGING_ORDER_COMPLETED, b.ChargingOrderCompleted, "OCPP"),
        EventType(OCPP_FAULT, b.OcppFault, "OCPP"),
        EventType(OCPP_FAULT_CLEARED, b.OcppFaultCleared, "OCPP"),
        EventType(OCPP_CHARGER_DISCOVERED, b.OcppChargerDiscovered, "OCPP (admission `record`)"),
        EventType(OCPP_FIRMWARE_STATUS, b.OcppStatusNotice, "OCPP"),
        EventType(OCPP_DIAGNOSTICS_STATUS, b.OcppStatusNotice, "OCPP"),
        EventType(OCPP_SECURITY_EVENT, b.OcppSecurityEvent, "OCPP"),
        EventType(OCPP_NOTIFY_EVENT, b.OcppNotifyEvent,
                  "OCPP 2.0.1 NotifyEvent, one per EventData"),
        EventType(WORK_ORDER_CREATED, b.WorkOrderBody, "siteops (plugins `db`, commands, rules)"),
        EventType(WORK_ORDER_COMPLETED, b.WorkOrderBody,
                  "siteops: done or cancelled (plugins `db`, commands, rules)"),
        EventType(WORK_ORDER_UPDATED, b.WorkOrderBody,
                  "siteops: acknowledged, in_progress, assigned, note"),
        EventType(INSPECTION_DUE, b.InspectionDue, "siteops (a plan comes due)"),
        EventType(INSPECTION_COMPLETED, b.InspectionCompleted, "siteops: `inspections.complete`, "
                  "plugins"),
        EventType(REPORT_GENERATED, b.ReportGenerated,
                  "siteops: scheduled, `reports.run`; plugins"),
        EventType(REPORT_DELIVERY_FAILED, b.ReportDeliveryFailed,
                  "siteops (a report's webhook delivery refused or given up)"),
        EventType(CUSTOM, b.Custom, "plugins (`db.publish`)"),
        EventType(BUFFER_OVERFLOW, b.BufferOverflow, "store"),
        EventType(SEQ_GAP, b.SeqGap, "store (at open: numbers a restart skips)"),
        EventType(CHUNK_QUARANTINED, b.ChunkQuarantined, "store / uplink (undecodable chunk)"),
        EventType(STORE_RECOVERED, b.StoreRecovered, "store (`on_corrupt: quarantine`)"),
        EventType(DISK_FULL, b.DiskFull, "pipeline (a commit failed)"),
        EventType(DISK_FULL_CLEARED, b.DiskFullCleared, "pipeline (commits work again)"),
        EventType(STORE_WRITE_RECOVERED, b.DiskFullCleared,
                  "pipeline (commits work again after a write failure that was not a full disk)"),
        EventType(CONFIG_APPLIED, b.ConfigApplied, "config (`config.apply`, `config.rollback`)"),
        EventType(CONFIG_CONFIRMED, b.ConfigConfirmed, "config (health gate or `config.confirm`)"),
        EventType(CONFIG_ROLLED_BACK, b.ConfigRolledBack,
                  "config (health gate, crash loop at start)"),
    )}



def _catalogue() -> Mapping[str, EventType]:
    found: Mapping[str, EventType] | None = globals().get("CATALOGUE")
    if found is None:
        found = globals()["CATALOGUE"] = _build_catalogue()
    return found


def problems(event_type: str, body: Mapping[str, Any]) -> list[str]:
    """What is wrong with ``body`` for ``event_type`` (empty: nothing, or not a catalogue
    type). The same checks as the wire schema, without a JSON Schema library, so a producer's
    tests (and :class:`drivers.testing.RecordingContext`) can call it on every event."""
    entry = _catalogue().get(event_type)
    if entry is None:
        return []
    schema = body_schema(entry.body)
    out = [f"{event_type}: missing key {k!r}" for k in schema["required"] if k not in body]
    out += [f"{event_type}: unknown key {k!r} (add it to gateway/events.py)"
            for k in body if k not in schema["properties"]]
    for key, rule in schema["properties"].items():
        if key in body and not event_schema.matches(body[key], rule):
            out.append(f"{event_type}: {key}={body[key]!r} does not match {rule}")
    return out


# -- generated artefacts (gateway/event_schema.py) -------------------------------------------
def json_schema() -> dict[str, Any]:
    """The wire schema of an event message; every catalogue type's body is checked."""
    return event_schema.json_schema(_catalogue())


def markdown_table() -> str:
    """The catalogue table of docs/wire-format.md, between its two markers."""
    return event_schema.markdown_table(_catalogue())


def doc_with_table(doc: str) -> str:
    """``doc`` with the text between the markers replaced by :func:`markdown_table`."""
    return event_schema.doc_with_table(doc, _catalogue())


def schema_text() -> str:
    return event_schema.schema_text(_catalogue())


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


def __getattr__(name: str) -> Any:
    """The body types (re-exported from :mod:`gateway.event_bodies`) and
    :data:`CATALOGUE`, imported on first use: most of the daemon needs only the names, and
    the body types are ~0.5 MB of classes."""
    if name == "CATALOGUE":
        return _catalogue()
    if not name.startswith("_"):
        from gateway import event_bodies

        found = getattr(event_bodies, name, None)
        if isinstance(found, type) and found.__module__ == event_bodies.__name__:
            return found
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if __name__ == "__main__":
    raise SystemExit(main())

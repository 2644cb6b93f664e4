"""The bodies of the event catalogue (:mod:`gateway.events`): one frozen dataclass per body.

Every field has a default: it is what a reader assumes for an event committed (by an older
version) before the key existed. ``field(metadata={"doc": ...})`` adds a note to the wire
schema and the table in docs/wire-format.md. A base class (:class:`StoreRange`,
:class:`AlarmBody`) puts the fields several bodies share first, in the same order, so the
generated schema lists them as before. Import them from :mod:`gateway.events`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

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
class AlarmBody:
    """What ``alarm_created`` and ``alarm_resolved`` share, first in both."""

    alarm_id: str = ""
    rule: str = ""
    kind: str = ""
    severity: str = ""
    device: str | None = None
    point: str | None = None
    code: str | None = None
    message: str = ""


@dataclass(frozen=True, slots=True)
class AlarmCreated(AlarmBody):
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
class AlarmResolved(AlarmBody):
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
class ReportDeliveryFailed:
    report_id: str = ""
    name: str = ""
    period: str = ""
    channel: str = field(default="", metadata={"doc": "the channels.targets entry"})
    file_path: str = ""
    attempts: int = 0
    error: str = field(default="", metadata={"doc": "the last failure"})
    permanent: bool = field(default=False, metadata={
        "doc": "true: refused (a 4xx), or the file or channel is gone; false: retried until "
               "give_up_after"})


@dataclass(frozen=True, slots=True)
class Custom:
    topic: str = ""
    body: Any = None  # the plugin's JSON value
    plugin: str = ""


@dataclass(frozen=True, slots=True)
class StoreRange:
    """A range of a store's sequence numbers: first in the store's telemetry events."""

    store_id: str = ""
    seq_first: int = 0
    seq_last: int | None = None


@dataclass(frozen=True, slots=True)
class BufferOverflow(StoreRange):
    seq_last: int | None = field(default=None, metadata={"doc": "the range dropped unsent"})
    dropped: int = 0
    up_to_seq: int = 0
    max_bytes: int = 0


@dataclass(frozen=True, slots=True)
class SeqGap(StoreRange):
    seq_last: int | None = field(default=None, metadata={
        "doc": "null: every number from seq_first on (that stream ended)"})
    reason: Literal["unclean_stop", "store_rewound", "store_replaced", "seq_mark_lost"] = \
        "unclean_stop"


@dataclass(frozen=True, slots=True)
class ChunkQuarantined(StoreRange):
    seq_last: int = 0  # always a number here
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

"""External alarm sources: per-source converters from an event to alarm signals.

Following the per-source converter pattern of the plugin guide, each source (an event type such
as ``ocpp_fault``) has one small function that maps its payload to :class:`AlarmSignal`s; the
engine does the rest (merge, persistence, events, maintenance, device status). A plugin adds a
source with one call::

    from gateway.rules.converters import AlarmSignal, register_converter

    def my_inverter_faults(event: Event) -> Iterable[AlarmSignal]:
        yield AlarmSignal("acme_fault", event.body["inverter"], str(event.body["code"]),
                          active=event.body["active"], severity="major",
                          message=event.body["text"])

    register_converter("acme_fault", my_inverter_faults)

A converter runs inside the commit transaction of the event: keep it pure and fast. An
exception is logged against the source name and counted; the event itself is still committed.

Modbus (or any driver's) fault-code *points* need no converter: a ``kind: fault`` rule takes
the code or bit texts from its own ``codes`` or from the point's enum/bitmask map (see
``engine.fault_codes``) and :func:`decode_fault` turns a sample into active codes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from gateway.model import Event, Value

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AlarmSignal:
    """One alarm state change reported by an external source.

    ``active=True`` opens (or merges into) the alarm (rule, device, code); with ``scope`` set
    it also resolves the other open codes of (rule, device) that start with ``scope`` (a
    charger connector reporting a new error replaces its previous one). ``active=False``
    resolves (rule, device, code), or every open code starting with ``scope`` when given.
    """

    rule: str
    device: str
    code: str
    active: bool
    severity: str = "major"
    message: str = ""
    point: str | None = None
    value: Value = None
    scope: str | None = None
    ts_ms: int | None = None


Converter = Callable[[Event], Iterable[AlarmSignal]]

_CONVERTERS: dict[str, Converter] = {}


def register_converter(name: str, fn: Converter) -> None:
    """Register (or replace) the converter for events of type ``name``."""
    if name in _CONVERTERS and _CONVERTERS[name] is not fn:
        log.info("alarm converter %s replaced by %s", name, getattr(fn, "__qualname__", fn))
    _CONVERTERS[name] = fn


def unregister_converter(name: str) -> None:
    _CONVERTERS.pop(name, None)


def converters() -> Mapping[str, Converter]:
    return dict(_CONVERTERS)


def decode_fault(value: Value, mode: str, codes: Mapping[int, str],
                 ok: Iterable[int]) -> dict[int, str]:
    """Active fault codes of an enum or bitmask reading -> their text.

    enum: the value is one code; values in ``ok`` mean no fault. bitmask: each set bit is a
    code; with a ``codes`` map only the listed bits count. A code without a text gets
    ``"code N"`` / ``"bit N"``. Raises ValueError for a value that is not an integer."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        raise ValueError(f"fault code must be an integer, got {value!r}")
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError(f"fault code must be an integer, got {value!r}")
        value = int(value)
    if mode == "enum":
        if value in set(ok):
            return {}
        return {value: codes.get(value, f"code {value}")}
    if value < 0:
        value &= (1 << 64) - 1
    if codes:
        return {bit: text for bit, text in codes.items() if value >> bit & 1}
    return {bit: f"bit {bit}" for bit in range(value.bit_length()) if value >> bit & 1}


# -- OCPP StatusNotification errors -----------------------------------------------------

#: OCPP 1.6 ChargePointErrorCode -> severity. Unknown codes are ``major``.
OCPP_SEVERITY: dict[str, str] = {
    "ConnectorLockFailure": "major",
    "EVCommunicationError": "minor",
    "GroundFailure": "critical",
    "HighTemperature": "major",
    "InternalError": "major",
    "LocalListConflict": "warning",
    "OtherError": "minor",
    "OverCurrentFailure": "critical",
    "OverVoltage": "major",
    "PowerMeterFailure": "minor",
    "PowerSwitchFailure": "major",
    "ReaderFailure": "minor",
    "ResetFailure": "minor",
    "UnderVoltage": "minor",
    "WeakSignal": "warning",
}


def convert_ocpp_fault(event: Event) -> Iterable[AlarmSignal]:
    """``ocpp_fault`` {charger, connector, error_code, vendor_error_code, status, info}.

    One alarm per (charger, connector, error code), code ``"<connector>:<error_code>"``. A
    connector reporting ``NoError`` (and not ``Faulted``) resolves its open codes; a new error
    replaces the previous one of the same connector. ``Faulted`` without an error code is
    the code ``Faulted``."""
    body = event.body
    charger = str(body.get("charger") or event.device or "")
    if not charger:
        raise ValueError("ocpp_fault event without a charger")
    connector = body.get("connector", 0)
    error = str(body.get("error_code") or "NoError")
    status = str(body.get("status") or "")
    if error == "NoError" and status == "Faulted":
        error = "Faulted"
    scope = f"{connector}:"
    if error == "NoError":
        return [AlarmSignal("ocpp_fault", charger, "", False, scope=scope,
                            ts_ms=event.ts_ms)]
    parts = [f"{charger} connector {connector}: {error}"]
    vendor = body.get("vendor_error_code")
    if vendor:
        parts.append(f"vendor code {vendor}")
    if body.get("info"):
        parts.append(str(body["info"]))
    return [AlarmSignal(
        "ocpp_fault", charger, f"{connector}:{error}", True,
        severity=OCPP_SEVERITY.get(error, "major"), message=", ".join(parts),
        point=f"connector_{connector}", value=error, scope=scope, ts_ms=event.ts_ms,
    )]


def convert_ocpp_fault_cleared(event: Event) -> Iterable[AlarmSignal]:
    """``ocpp_fault_cleared`` {charger, connector, status}: the connector left ``Faulted``;
    resolve its open codes."""
    charger = str(event.body.get("charger") or event.device or "")
    if not charger:
        raise ValueError("ocpp_fault_cleared event without a charger")
    connector = event.body.get("connector", 0)
    return [AlarmSignal("ocpp_fault", charger, "", False, scope=f"{connector}:",
                        ts_ms=event.ts_ms)]


#: OCPP 2.0.1 variables whose value "true" means something is wrong (OCPP 2.0.1 part 2,
#: appendix "Standardized components and variables": ``Problem`` of any component,
#: ``Tripped`` of a protection device).
OCPP_PROBLEM_VARIABLES = ("Problem", "Tripped")


def convert_ocpp_notify_event(event: Event) -> Iterable[AlarmSignal]:
    """``ocpp_notify_event`` (one EventData of a 2.0.1 NotifyEvent): fault-like ones are
    alarms, rule ``ocpp_event``, code ``"<evse>:<component>[.<instance>]/<variable>"``.

    Fault-like: a ``Problem`` or ``Tripped`` variable reported ``true`` (severity major), or a
    monitor that is ``Alerting`` (minor). The same variable reported ``false``, or an event
    with ``cleared: true``, resolves it. Other events (periodic, delta reports) are no alarm.
    """
    body = event.body
    charger = str(body.get("charger") or event.device or "")
    if not charger:
        raise ValueError("ocpp_notify_event event without a charger")
    component = str(body.get("component") or "?")
    if body.get("component_instance"):
        component += f".{body['component_instance']}"
    variable = str(body.get("variable") or "?")
    value = str(body.get("actual_value") or "")
    problem = variable in OCPP_PROBLEM_VARIABLES
    if not problem and body.get("trigger") != "Alerting":
        return []
    code = f"{body.get('evse') or 0}:{component}/{variable}"
    if body.get("cleared") or (problem and value.lower() != "true"):
        return [AlarmSignal("ocpp_event", charger, code, False, ts_ms=event.ts_ms)]
    parts = [f"{charger} {component} {variable} = {value[:80]}"]
    for key in ("tech_code", "tech_info"):
        if body.get(key):
            parts.append(str(body[key])[:200])
    return [AlarmSignal(
        "ocpp_event", charger, code, True, severity="major" if problem else "minor",
        message=", ".join(parts), point=f"{component}/{variable}", value=value[:80],
        ts_ms=event.ts_ms,
    )]


register_converter("ocpp_fault", convert_ocpp_fault)
register_converter("ocpp_fault_cleared", convert_ocpp_fault_cleared)
register_converter("ocpp_notify_event", convert_ocpp_notify_event)

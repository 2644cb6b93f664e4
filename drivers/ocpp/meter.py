"""MeterValues -> samples, shared by OCPP 1.6 and 2.0.1.

Point naming (documented in the README): ``<measurand>[.<phase>][.<location>]``, e.g.
``Energy.Active.Import.Register``, ``Current.Import.L1``, ``Voltage.L1-N``, ``SoC.EV``; the
location is added only when it is not the default ``Outlet``. A charger with more than one
connector gets the connector in front: ``c2.Power.Active.Import``; connector 0 (the charger's
own meter) is ``c0.``. Values are normalised to base units (kWh -> Wh, kW -> W, kvar -> var):
the unit is fixed per measurand, so it is not part of the name.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

from gateway.model import Quality, Sample, Value

ENERGY_REGISTER = "Energy.Active.Import.Register"
_SCALE = {"kWh": 1000.0, "kW": 1000.0, "kvarh": 1000.0, "kvar": 1000.0, "kVA": 1000.0,
          "kVAh": 1000.0}


def parse_ts(value: str | None, fallback_ms: int) -> int:
    """ISO 8601 from a charger -> UTC ms; the gateway's time when absent or unreadable."""
    if not value:
        return fallback_ms
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return fallback_ms
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return int(parsed.timestamp() * 1000)


def iso_now(ms: int) -> str:
    """UTC ms -> the ``2024-01-31T12:00:00.000Z`` form both OCPP versions expect."""
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def qualify(point: str, connector: int, multi: bool) -> str:
    return f"c{connector}.{point}" if multi else point


def point_name(measurand: str | None, phase: str | None, location: str | None) -> str:
    name = measurand or ENERGY_REGISTER
    if phase:
        name += f".{phase}"
    if location and location != "Outlet":
        name += f".{location}"
    return name


def to_samples(
    charger: str,
    connector: int,
    multi: bool,
    meter_values: Iterable[Mapping[str, Any]],
    fallback_ms: int,
) -> tuple[list[Sample], float | None]:
    """Samples of every sampled value, and the last energy register reading in Wh (if any).

    Accepts both versions' snake_case payloads: 1.6 gives ``value`` as a string and ``unit``,
    2.0.1 a number with ``unit_of_measure`` {unit, multiplier}. An unreadable value becomes a
    BAD sample (value None) so the gap is visible rather than silently skipped.
    """
    samples: list[Sample] = []
    energy: float | None = None
    for mv in meter_values:
        ts = parse_ts(mv.get("timestamp"), fallback_ms)
        for sv in mv.get("sampled_value") or ():
            name = point_name(sv.get("measurand"), sv.get("phase"), sv.get("location"))
            if sv.get("format") == "SignedData":
                samples.append(Sample(charger, qualify(name + ".signed", connector, multi), ts,
                                      str(sv.get("value"))))
                continue
            uom = sv.get("unit_of_measure") or {}
            unit = sv.get("unit") or uom.get("unit")
            value: Value
            quality = Quality.GOOD
            try:
                number = float(sv.get("value"))
                number *= _SCALE.get(unit or "", 1.0) * 10.0 ** int(uom.get("multiplier", 0))
                value = round(number, 6)
            except (TypeError, ValueError):
                value, quality = None, Quality.BAD
            samples.append(Sample(charger, qualify(name, connector, multi), ts, value, quality))
            if name == ENERGY_REGISTER and isinstance(value, float):
                energy = value
    return samples, energy

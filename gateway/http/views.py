"""The JSON views the API and the ``devices.list`` command share."""

from __future__ import annotations

import math
from typing import Any

from gateway.http.encode import PointsJson, dumpb
from gateway.http.host import Host
from gateway.http.live import LatestValues


def json_value(value: Any) -> Any:
    # NaN and infinities are not JSON; a bad-quality reading may carry one.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def points_of(latest: LatestValues, device: str) -> dict[str, dict[str, Any]]:
    return {
        point: {"value": json_value(s.value), "quality": str(s.quality), "ts": s.ts_ms}
        for point, s in sorted(latest.samples(device).items())
    }


#: units_of's answer per device id, with the config object it was read from: a config is
#: frozen, so the answer stands until a reload brings a new object (and the shared answer
#: asks once a second, per device, at about 60 us a call).
_UNITS: dict[str, tuple[Any, dict[str, str]]] = {}


def units_of(dev: Any) -> dict[str, str]:
    """Each point's engineering unit where the device's config names one (a Modbus point or
    its profile: ``unit: W``); drivers whose points carry no unit give none."""
    known = _UNITS.get(dev.id)
    if known is not None and known[0] is dev:
        return dict(known[1])
    units = _read_units(dev)
    _UNITS[dev.id] = (dev, units)
    return dict(units)


def _read_units(dev: Any) -> dict[str, str]:
    listing = getattr(dev, "all_points", None)
    points = listing().values() if callable(listing) else getattr(dev, "points", None) or ()
    out: dict[str, str] = {}
    for p in points:
        unit = getattr(p, "unit", None)
        if isinstance(unit, str) and unit:
            out[p.name] = unit
    return out


def _header(host: Host, dev: Any, status: dict[str, tuple[str, str, int]],
            last_seen: int | None) -> dict[str, Any]:
    st, reason, since = status.get(dev.id, ("unknown", "", None))
    if not dev.enabled:
        st, reason = "disabled", "enabled: false in the config"
    return {
        "id": dev.id, "name": dev.name, "driver": dev.type, "tags": list(dev.tags),
        "enabled": dev.enabled, "status": st, "reason": reason, "since": since,
        "last_seen": last_seen, "poll": host.poll_stats(dev.id), "units": units_of(dev),
    }


async def devices(host: Host, latest: LatestValues, only: str | None = None,
                  with_points: bool = True) -> list[dict[str, Any]]:
    """Each configured device: driver, status, reason, since, last seen, and the last value,
    quality and timestamp of each point (since this process started)."""
    status = host.status()
    out = []
    for dev in host.site.devices:
        if only is not None and dev.id != only:
            continue
        entry = _header(host, dev, status, latest.last_seen(dev.id))
        if with_points:
            entry["points"] = points_of(latest, dev.id)
        else:
            entry["point_count"] = latest.count(dev.id)
        out.append(entry)
    return out


def devices_json(host: Host, latest: LatestValues, points: PointsJson,
                 only: str | None = None, with_points: bool = True) -> list[bytes]:
    """:func:`devices` as JSON, one ``bytes`` per device (compact, by orjson: see
    :mod:`gateway.http.encode`); each device's points come from the encoded cache."""
    status = host.status()
    out = []
    for dev in host.site.devices:
        if only is not None and dev.id != only:
            continue
        if not with_points:
            entry = _header(host, dev, status, latest.last_seen(dev.id))
            entry["point_count"] = latest.count(dev.id)
            out.append(dumpb(entry))
            continue
        out.append(b"".join(_device_parts(host, dev, status, points)))
    return out


def _device_parts(host: Host, dev: Any, status: dict[str, tuple[str, str, int]],
                  points: PointsJson) -> tuple[bytes, bytes, bytes, bytes]:
    """One device's JSON in four pieces: its header without the closing brace, the
    ``points`` key, its cached points, the brace."""
    text, last_seen = points.points(dev.id)
    head = dumpb(_header(host, dev, status, last_seen))
    return head[:-1], b',"points":', text, b"}"


def devices_parts(host: Host, latest: LatestValues, points: PointsJson) -> list[bytes]:
    """Every device with its points as one JSON array (the shared ``/api/v1/devices``
    answer), in pieces: joined, the same bytes as ``[`` + ``,``-joined :func:`devices_json`
    + ``]``. A gzip client's answer is compressed from the pieces, so the plain answer is
    joined only for a client that wants it: each copy of a site of 8,000 points is another
    fresh half-megabyte mapping to fault in (glibc maps blocks of 128 KB and more on their
    own)."""
    status = host.status()
    parts: list[bytes] = [b"["]
    for dev in host.site.devices:
        parts += _device_parts(host, dev, status, points)
        parts.append(b",")
    if len(parts) == 1:
        parts.append(b"]")
    else:
        parts[-1] = b"]"
    return parts


def add_power(chargers: dict[str, Any], latest: LatestValues) -> dict[str, Any]:
    """Put the charger's latest active power into each open session of ``ocpp.sessions``."""
    for charger in chargers.get("chargers", []):
        values = latest.values.get(charger["charger"])
        for session in charger.get("sessions", []):
            power = None
            for name in (f"c{session['connector']}.Power.Active.Import", "Power.Active.Import"):
                found = values.get(name) if values else None
                if found is not None:
                    power = json_value(found.value)
                    break
            session["power_w"] = power
    return chargers

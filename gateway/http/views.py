"""The JSON views the API and the ``devices.list`` command share."""

from __future__ import annotations

import math
from typing import Any

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
        for point, s in sorted(latest.values.get(device, {}).items())
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
        st, reason, since = status.get(dev.id, ("unknown", "", None))
        if not dev.enabled:
            st, reason = "disabled", "enabled: false in the config"
        entry: dict[str, Any] = {
            "id": dev.id, "name": dev.name, "driver": dev.type, "tags": list(dev.tags),
            "enabled": dev.enabled, "status": st, "reason": reason, "since": since,
            "last_seen": latest.last_seen(dev.id),
            "poll": host.poll_stats(dev.id),
        }
        if with_points:
            entry["points"] = points_of(latest, dev.id)
        else:
            entry["point_count"] = len(latest.values.get(dev.id, {}))
        out.append(entry)
    return out


def add_power(chargers: dict[str, Any], latest: LatestValues) -> dict[str, Any]:
    """Put the charger's latest active power into each open session of ``ocpp.sessions``."""
    for charger in chargers.get("chargers", []):
        values = latest.values.get(charger["charger"], {})
        for session in charger.get("sessions", []):
            power = None
            for name in (f"c{session['connector']}.Power.Active.Import", "Power.Active.Import"):
                if name in values:
                    power = json_value(values[name].value)
                    break
            session["power_w"] = power
    return chargers

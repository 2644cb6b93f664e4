"""Device status: the last known state of each device, persisted, with an event per change.

Drivers report link status (online/offline); the rules may raise a device to ``alarm`` or an
operator put it in ``maintenance``. Every transition is committed together with a
``device_status_changed`` event carrying the old and new state.
"""

from __future__ import annotations

import logging

from gateway.model import DeviceStatus, Event, event_id
from gateway.store import Store, Tx

log = logging.getLogger(__name__)

STATUS_EVENT = "device_status_changed"


class StatusTracker:
    def __init__(self) -> None:
        self.current: dict[str, DeviceStatus] = {}

    async def load(self, store: Store) -> None:
        rows = await store.query("SELECT device, status FROM device_status")
        self.current = {dev: DeviceStatus(st) for dev, st in rows}

    async def apply(
        self, tx: Tx, device: str, new: DeviceStatus, reason: str, ts_ms: int
    ) -> Event | None:
        """Record a transition; returns its event, or None when nothing changed."""
        old = self.current.get(device)
        if old is new:
            return None
        self.current[device] = new
        await tx.execute(
            "INSERT OR REPLACE INTO device_status VALUES (?, ?, ?, ?)",
            (device, new.value, reason, ts_ms),
        )
        event = Event(
            STATUS_EVENT,
            {"device": device, "old_status": old.value if old else None,
             "new_status": new.value, "reason": reason},
            device=device,
            ts_ms=ts_ms,
            id=event_id(STATUS_EVENT, device, ts_ms, new.value),
        )
        await tx.add_events([event])
        level = logging.WARNING if new is DeviceStatus.OFFLINE else logging.INFO
        log.log(level, "device %s is %s (was %s)%s", device, new.value,
                old.value if old else "unknown", f": {reason}" if reason else "")
        return event

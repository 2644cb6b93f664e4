"""Device status: the last known state of each device, persisted, with an event per change.

Three inputs decide a device's status: the link state its driver reports (online/offline),
a ``maintenance`` flag an operator sets, and an ``alarm`` flag the rules set while the device
has an open alarm of at least the configured severity. The status others see is derived:

    maintenance if set, else offline if the link is offline, else alarm if flagged, else online

Every change of that effective status is committed together with a ``device_status_changed``
event carrying the old and new state, whichever input caused it. The inputs are persisted too,
so a restart neither forgets a maintenance window nor reports a spurious transition.

The runtime owns the one :class:`DeviceStatusService`: the pipeline applies the drivers'
reports to it inside its commit, the rules set the alarm flag, the ``maintenance`` command
the maintenance flag, and every component reads it through ``ctx.status``.
"""

from __future__ import annotations

import logging
from typing import Any

from gateway.events import DEVICE_STATUS_CHANGED
from gateway.model import DeviceStatus, Event, event_id
from gateway.store import Store, Tx

log = logging.getLogger(__name__)

STATUS_EVENT = DEVICE_STATUS_CHANGED

_LINK = (DeviceStatus.ONLINE, DeviceStatus.OFFLINE)


class DeviceStatusService:
    """Its tables are the core's (gateway.store.schema, ``device_status`` and ``status``)."""

    def __init__(self) -> None:
        #: The effective status of each device, with the reason and time of its last change.
        self._current: dict[str, tuple[DeviceStatus, str, int]] = {}
        #: The link state as the driver last reported it.
        self.link: dict[str, DeviceStatus] = {}
        self.maintenance: set[str] = set()
        self.alarm: set[str] = set()
        #: Set by the runtime when a graceful stop or a reload begins: a device that goes
        #: offline from then on is marked ``planned: true`` in its event.
        self.stopping = False

    async def load(self, store: Store) -> None:
        rows = await store.query("SELECT device, status, reason, ts_ms FROM device_status")
        self._current = {dev: (DeviceStatus(st), reason, ts) for dev, st, reason, ts in rows}
        self.link, self.maintenance, self.alarm = {}, set(), set()
        self.stopping = False
        for device, link, maintenance, alarm in await store.query(
            "SELECT device, link, maintenance, alarm FROM device_flags"
        ):
            if link:
                self.link[device] = DeviceStatus(link)
            if maintenance:
                self.maintenance.add(device)
            if alarm:
                self.alarm.add(device)

    def current(self, device: str) -> DeviceStatus | None:
        """The status others see (None: never reported)."""
        entry = self._current.get(device)
        return entry[0] if entry else None

    def snapshot(self) -> dict[str, tuple[DeviceStatus, str, int]]:
        """Every known device: (status, reason of the last change, since when in ms)."""
        return dict(self._current)

    def effective(self, device: str) -> DeviceStatus:
        """The status the inputs give now (equal to :meth:`current` outside a commit)."""
        if device in self.maintenance:
            return DeviceStatus.MAINTENANCE
        if self.link.get(device) is DeviceStatus.OFFLINE:
            return DeviceStatus.OFFLINE
        if device in self.alarm:
            return DeviceStatus.ALARM
        return DeviceStatus.ONLINE

    async def apply(
        self, tx: Tx, device: str, new: DeviceStatus, reason: str, ts_ms: int
    ) -> Event | None:
        """A report from a driver: ONLINE/OFFLINE set the link state (ALARM or MAINTENANCE
        set that flag). Returns the event when the effective status changed, else None."""
        if new in _LINK:
            if self.link.get(device) is new and device in self._current:
                return None
            self.link[device] = new
        elif new is DeviceStatus.MAINTENANCE:
            self.maintenance.add(device)
        else:
            self.alarm.add(device)
        return await self._commit(tx, device, reason, ts_ms)

    async def set_maintenance(
        self, tx: Tx, device: str, on: bool, reason: str, ts_ms: int
    ) -> Event | None:
        if on:
            self.maintenance.add(device)
        else:
            self.maintenance.discard(device)
        return await self._commit(tx, device, reason, ts_ms)

    async def set_alarm(
        self, tx: Tx, device: str, on: bool, reason: str, ts_ms: int
    ) -> Event | None:
        if (device in self.alarm) == on:
            return None
        if on:
            self.alarm.add(device)
        else:
            self.alarm.discard(device)
        return await self._commit(tx, device, reason, ts_ms)

    async def set_alarms(
        self, tx: Tx, flags: dict[str, tuple[bool, str]], ts_ms: int
    ) -> list[Event]:
        """:meth:`set_alarm` for many devices in a few statements (an alarm storm)."""
        changed = [d for d, (on, _) in flags.items() if (d in self.alarm) != on]
        for device in changed:
            if flags[device][0]:
                self.alarm.add(device)
            else:
                self.alarm.discard(device)
        return await self._commit_many(tx, {d: flags[d][1] for d in changed}, ts_ms)

    async def _commit(self, tx: Tx, device: str, reason: str, ts_ms: int) -> Event | None:
        events = await self._commit_many(tx, {device: reason}, ts_ms)
        return events[0] if events else None

    async def _commit_many(self, tx: Tx, reasons: dict[str, str], ts_ms: int) -> list[Event]:
        if not reasons:
            return []
        flags, rows, events = [], [], []
        for device, reason in reasons.items():
            link = self.link.get(device)
            flags.append((device, link.value if link else None,
                          int(device in self.maintenance), int(device in self.alarm)))
            event = self._transition(device, reason, ts_ms)
            if event is not None:
                rows.append((device, event.body["new_status"], reason, ts_ms))
                events.append(event)
        await tx.executemany("INSERT OR REPLACE INTO device_flags VALUES (?, ?, ?, ?)", flags)
        if rows:
            await tx.executemany("INSERT OR REPLACE INTO device_status VALUES (?, ?, ?, ?)",
                                 rows)
            await tx.add_events(events)
        return events

    def _transition(self, device: str, reason: str, ts_ms: int) -> Event | None:
        old = self.current(device)
        new = self.effective(device)
        if old is new:
            return None
        self._current[device] = (new, reason, ts_ms)
        # planned: the gateway is stopping or reloading, not a failure of the device.
        body: dict[str, Any] = {"device": device, "old_status": old.value if old else None,
                                "new_status": new.value, "reason": reason,
                                "planned": self.stopping and new is DeviceStatus.OFFLINE}
        event = Event(
            STATUS_EVENT,
            body,
            device=device,
            ts_ms=ts_ms,
            # old and new: two transitions of one device in the same millisecond (a driver
            # report and an alarm in one commit) must not share an id.
            id=event_id(STATUS_EVENT, device, ts_ms, old.value if old else "", new.value),
        )
        level = logging.WARNING if new is DeviceStatus.OFFLINE else logging.INFO
        log.log(level, "device %s is %s (was %s)%s", device, new.value,
                old.value if old else "unknown", f": {reason}" if reason else "")
        return event

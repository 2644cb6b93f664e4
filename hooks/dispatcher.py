"""The two dispatchers that call hooks, both off the polling path.

Events: every plugin has its own cursor on the outbox and its own task
(:class:`PluginFeed`). For each committed event the task calls the plugin's matching hook
(isolated, under a timeout), then acks that event. A slow or hung plugin delays only itself.
A crash before the ack means the event is read again after the restart: at least once, per
plugin, with the same ``event_id``.

Samples: ``on_energy_data_received`` is called per sample, so it gets its own path, per
plugin too (:mod:`hooks.energy`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

from gateway import events
from gateway.model import Event
from hooks.db import HooksDB, device_of, order_of
from hooks.manager import HookRunner
from hooks.models import (
    ChargingOrder,
    InspectionRecord,
    ReportTask,
    alarm_of,
    from_body,
    quota_of,
    rule_of,
)
from hooks.recent import CONSUMER
from hooks.recent import RecentEvents as RecentEvents  # re-exported

if TYPE_CHECKING:
    from hooks.db import PluginsContext

log = logging.getLogger(__name__)

_READ_LIMIT = 100

Args = dict[str, Any]


def _alarm_created(app: PluginsContext, ev: Event) -> Args:
    dev = device_of(app, ev.body.get("device") or ev.device, ev.id)
    return {"alarm_event": alarm_of(ev), "device": dev, "rule": rule_of(ev)}


def _alarm_resolved(app: PluginsContext, ev: Event) -> Args:
    dev = device_of(app, ev.body.get("device") or ev.device, ev.id)
    return {"alarm_event": alarm_of(ev), "device": dev}


def _status(app: PluginsContext, ev: Event) -> Args:
    return {"device": device_of(app, ev.body.get("device") or ev.device, ev.id),
            "old_status": ev.body.get("old_status"), "new_status": ev.body.get("new_status"),
            "reason": str(ev.body.get("reason") or ""), "planned": bool(ev.body.get("planned"))}


def _quota(app: PluginsContext, ev: Event) -> Args:
    quota, usage = quota_of(ev)
    return {"quota": quota, "usage": usage}


def _work_order(app: PluginsContext, ev: Event) -> Args:
    return {"order": order_of(ev)}


def _inspection(app: PluginsContext, ev: Event) -> Args:
    return {"record": from_body(InspectionRecord, ev.body, ev.id)}


def _report(app: PluginsContext, ev: Event) -> Args:
    return {"report_task": from_body(ReportTask, ev.body, ev.id),
            "file_path": str(ev.body.get("file_path", ""))}


def _charging(app: PluginsContext, ev: Event) -> Args:
    return {"order": from_body(ChargingOrder, ev.body, ev.id)}


#: event type -> (hook, builder of its arguments except db)
ROUTES: dict[str, tuple[str, Callable[[PluginsContext, Event], Args]]] = {
    events.ALARM_CREATED: ("on_alarm_created", _alarm_created),
    events.ALARM_RESOLVED: ("on_alarm_resolved", _alarm_resolved),
    events.DEVICE_STATUS_CHANGED: ("on_device_status_changed", _status),
    events.QUOTA_EXCEEDED: ("on_quota_exceeded", _quota),
    events.WORK_ORDER_CREATED: ("on_work_order_created", _work_order),
    events.WORK_ORDER_COMPLETED: ("on_work_order_completed", _work_order),
    events.INSPECTION_COMPLETED: ("on_inspection_completed", _inspection),
    events.REPORT_GENERATED: ("on_report_generated", _report),
    events.CHARGING_ORDER_CREATED: ("on_charging_order_created", _charging),
    events.CHARGING_ORDER_COMPLETED: ("on_charging_order_completed", _charging),
}


class PluginFeed:
    """One plugin's own cursor on the outbox (consumer ``hooks:<plugin>``) and its own task.

    Events reach a plugin in outbox order, one at a time, each acked after its call: a
    plugin that hangs until its timeout delays only itself, and a crash before an ack means
    that plugin (and only it) gets the event again after the restart."""

    def __init__(self, app: PluginsContext, runner: HookRunner, plugin: str,
                 db_for: Callable[[str, str], HooksDB]) -> None:
        self.app = app
        self.runner = runner
        self.plugin = plugin
        self.consumer = f"{CONSUMER}:{plugin}"
        self.db_for = db_for
        self.delivered = 0
        self.last_rowid = 0
        self._opened = False

    async def open(self) -> None:
        """Register the cursor. A plugin new to this gateway starts where the gateway's
        own hooks cursor is (the events it has already seen), not at the oldest event
        still kept for a slower consumer."""
        if self._opened:
            return
        async with self.app.store.transaction() as tx:
            await tx.execute(
                "INSERT OR IGNORE INTO event_cursors (consumer, last_rowid) SELECT ?, "
                "COALESCE((SELECT last_rowid FROM event_cursors WHERE consumer = ?), 0)",
                (self.consumer, CONSUMER))
        await self.app.store.register_consumer(self.consumer)
        self._opened = True

    async def run(self) -> None:
        await self.open()
        store = self.app.store
        while True:
            batch = await store.read_events(self.consumer, _READ_LIMIT)
            if not batch:
                # Every commit that adds events wakes it: the timeout is only a fallback
                # (each one a wake-up of the loop).
                await store.wait_events(self.consumer, 5.0)
                continue
            unacked = 0
            for stored in batch:
                if await self.deliver(stored.event):
                    await store.ack_events(self.consumer, stored.rowid)
                    unacked = 0
                else:
                    unacked = stored.rowid  # not for this plugin: ack with the next one
                self.last_rowid = stored.rowid
            if unacked:
                await store.ack_events(self.consumer, unacked)

    def implementation(self, hook: str) -> pluggy.HookImpl | None:
        for impl in self.runner.implementations(hook):
            if impl.plugin_name == self.plugin:
                return impl
        return None

    async def deliver(self, event: Event) -> bool:
        """Call this plugin's hook for ``event``; False when it has none for it."""
        route = ROUTES.get(event.type)
        if route is None:
            return False
        hook, build = route
        impl = self.implementation(hook)
        if impl is None:
            return False
        try:
            kwargs = build(self.app, event)
        except Exception:
            log.exception("cannot build the arguments of %s from event %s (%s); the event "
                          "body does not follow the event contract, skipping it",
                          hook, event.id, event.type)
            return True
        kwargs["db"] = self.db_for(self.plugin, event.id)
        await self.runner.call_one(impl, hook, kwargs,
                                   context=f" (event {event.type} {event.id})")
        self.delivered += 1
        return True


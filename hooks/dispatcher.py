"""The two dispatchers that call hooks, both off the polling path.

Events: a task consumes the outbox as consumer ``hooks``. For each committed event it calls
the matching hook on every plugin (isolated, concurrently, under a timeout), then acks that
event. A crash before the ack means the event is read again after the restart: at least once,
with the same ``event_id``.

Samples: ``on_energy_data_received`` is called per sample, so it gets its own path. A
pipeline observer (called after each commit) puts the committed batch into a bounded queue
without waiting; a task takes batches off and calls the implementations sample by sample. A
full queue drops the batch (counted, warned): ingest never waits for a plugin. This hook is
best effort; the event hooks are not.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

from gateway import events
from gateway.model import Event, Sample
from hooks.db import RECENT_EVENTS_KEPT, HooksDB, device_of, order_of
from hooks.manager import HookRunner, PerPlugin
from hooks.models import (
    ChargingOrder,
    DataPoint,
    Device,
    InspectionRecord,
    ReportTask,
    alarm_of,
    from_body,
    quota_of,
    rule_of,
)

if TYPE_CHECKING:
    from hooks.db import PluginsContext

log = logging.getLogger(__name__)

CONSUMER = "hooks"
ENERGY_HOOK = "on_energy_data_received"
_READ_LIMIT = 100
_YIELD_EVERY = 1000
_WARN_EVERY_S = 10.0

Args = dict[str, Any]


def _alarm_created(app: PluginsContext, ev: Event) -> Args:
    dev = device_of(app, ev.body.get("device") or ev.device, ev.id)
    return {"alarm_event": alarm_of(ev), "device": dev, "rule": rule_of(ev)}


def _alarm_resolved(app: PluginsContext, ev: Event) -> Args:
    dev = device_of(app, ev.body.get("device") or ev.device, ev.id)
    return {"alarm_event": alarm_of(ev), "device": dev}


def _status(app: PluginsContext, ev: Event) -> Args:
    return {"device": device_of(app, ev.body.get("device") or ev.device, ev.id),
            "old_status": ev.body.get("old_status"), "new_status": ev.body.get("new_status")}


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


class EventDispatcher:
    def __init__(self, app: PluginsContext, runner: HookRunner) -> None:
        self.app = app
        self.runner = runner
        self.delivered = 0

    async def run(self) -> None:
        store = self.app.store
        while True:
            batch = await store.read_events(CONSUMER, _READ_LIMIT)
            if not batch:
                await store.wait_events(CONSUMER, 0.5)
                continue
            await self._remember([s.event for s in batch])
            for stored in batch:
                await self.deliver(stored.event)
                await store.ack_events(CONSUMER, stored.rowid)
                self.delivered += 1

    async def deliver(self, event: Event) -> None:
        route = ROUTES.get(event.type)
        if route is None:
            return
        hook, build = route
        if not self.runner.implementations(hook):
            return
        try:
            kwargs = build(self.app, event)
        except Exception:
            log.exception("cannot build the arguments of %s from event %s (%s); the event "
                          "body does not follow the event contract, skipping it",
                          hook, event.id, event.type)
            return
        kwargs["db"] = PerPlugin(lambda plugin: HooksDB(self.app, plugin, event.id))
        await self.runner.call_each(hook, kwargs, context=f" (event {event.type} {event.id})")

    async def _remember(self, events: list[Event]) -> None:
        rows = [(e.id, e.type, e.device, e.ts_ms, json.dumps(dict(e.body), default=str))
                for e in events]
        async with self.app.store.transaction() as tx:
            await tx.executemany(
                "INSERT OR IGNORE INTO hooks_recent_events (id, type, device, ts_ms, body) "
                "VALUES (?,?,?,?,?)", rows)
            await tx.execute(
                "DELETE FROM hooks_recent_events WHERE seq <= "
                "(SELECT MAX(seq) FROM hooks_recent_events) - ?", (RECENT_EVENTS_KEPT,))


class EnergyDispatcher:
    """Bounded queue + task between the pipeline and ``on_energy_data_received``."""

    def __init__(self, app: PluginsContext, runner: HookRunner, queue_samples: int,
                 batch_timeout: float) -> None:
        self.app = app
        self.runner = runner
        # Bounded in samples, not batches: one committed batch can hold 50,000 samples.
        self.queue: asyncio.Queue[tuple[list[Sample], int]] = asyncio.Queue()
        self.max_samples = queue_samples
        self.queued_samples = 0
        self.batch_timeout = batch_timeout
        self.delivered_samples = 0
        self.dropped_samples = 0
        self.dropped_batches = 0
        self._dropped_since_warn = 0
        self._last_warn = 0.0

    def observe(self, batch: list[Sample], seq_first: int) -> None:
        """The pipeline observer: never blocks, drops when the queue is full."""
        if self.queued_samples + len(batch) <= self.max_samples or self.queue.empty():
            self.queue.put_nowait((batch, seq_first))
            self.queued_samples += len(batch)
        else:
            self.dropped_batches += 1
            self.dropped_samples += len(batch)
            self._dropped_since_warn += len(batch)
            now = time.monotonic()
            if now - self._last_warn >= _WARN_EVERY_S:
                log.warning("on_energy_data_received is slower than ingest: dropped %d samples "
                            "(queue of %d samples full); make the plugin cheaper per sample or "
                            "raise plugins.energy_queue_samples", self._dropped_since_warn,
                            self.max_samples)
                self._last_warn = now
                self._dropped_since_warn = 0

    async def run(self) -> None:
        while True:
            batch, seq_first = await self.queue.get()
            self.queued_samples -= len(batch)
            impls = self.runner.implementations(ENERGY_HOOK)
            devices: dict[str, Device] = {}
            for s in batch:
                if s[0] not in devices:
                    devices[s[0]] = device_of(self.app, s[0])
            await asyncio.gather(*(self._deliver(impl, batch, seq_first, devices)
                                   for impl in impls))
            self.delivered_samples += len(batch)

    async def _deliver(self, impl: pluggy.HookImpl, batch: list[Sample], seq_first: int,
                       devices: dict[str, Device]) -> None:
        st = self.runner.stat(impl.plugin_name, ENERGY_HOOK)
        db = HooksDB(self.app, impl.plugin_name)
        fn: Callable[..., Any] = impl.function
        errors: list[BaseException] = []

        call = _binder(fn, tuple(impl.argnames), db)

        async def run_async() -> None:
            for i, sample in enumerate(batch):
                try:
                    await call(devices[sample[0]], DataPoint(*sample, seq_first + i))
                except Exception as err:
                    errors.append(err)
                if i % _YIELD_EVERY == _YIELD_EVERY - 1:
                    await asyncio.sleep(0)  # let the pollers and the pipeline run

        def run_sync() -> None:
            for i, sample in enumerate(batch):
                try:
                    call(devices[sample[0]], DataPoint(*sample, seq_first + i))
                except Exception as err:
                    errors.append(err)

        t0 = time.perf_counter()
        st.calls += len(batch)
        try:
            async with asyncio.timeout(self.batch_timeout):
                if asyncio.iscoroutinefunction(fn):
                    await run_async()
                else:
                    await self.runner.run_in_thread(run_sync)
        except TimeoutError:
            st.timeouts += 1
            st.last_error = f"batch timeout after {self.batch_timeout:g} s"
            log.warning("plugin %s: %s did not get through a batch of %d samples within "
                        "%.1f s; the rest of the batch is skipped for it. Make it cheaper "
                        "or raise plugins.energy_batch_timeout", impl.plugin_name,
                        ENERGY_HOOK, len(batch), self.batch_timeout)
        finally:
            elapsed = (time.perf_counter() - t0) * 1000
            st.total_ms += elapsed
            st.max_ms = max(st.max_ms, elapsed)
        if errors:
            st.errors += len(errors)
            st.last_error = f"{type(errors[0]).__name__}: {errors[0]}"
            log.error("plugin %s: %s raised on %d of %d samples (first: %s); fix this plugin",
                      impl.plugin_name, ENERGY_HOOK, len(errors), len(batch), st.last_error,
                      exc_info=errors[0])

    def stats(self) -> dict[str, int]:
        return {"queued_samples": self.queued_samples, "delivered_samples": self.delivered_samples,
                "dropped_samples": self.dropped_samples, "dropped_batches": self.dropped_batches}


def _binder(fn: Callable[..., Any], names: tuple[str, ...], db: HooksDB
            ) -> Callable[[Device, DataPoint], Any]:
    """``(device, data_point) -> fn(...)`` with the arguments ``fn`` asked for, without
    building a dict per sample (this runs once per sample)."""
    if names == ("device", "data_point", "db"):
        return lambda dev, dp: fn(dev, dp, db)
    if names == ("device", "data_point"):
        return fn
    if names == ("data_point",):
        return lambda dev, dp: fn(dp)
    if names == ("data_point", "db"):
        return lambda dev, dp: fn(dp, db)

    def generic(dev: Device, dp: DataPoint) -> Any:
        values = {"device": dev, "data_point": dp, "db": db}
        return fn(*[values[n] for n in names])

    return generic

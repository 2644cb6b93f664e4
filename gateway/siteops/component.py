"""The ``siteops`` component: local history, work orders, inspections, reports and KPIs.

It starts after the rules (their config names the ``work_order`` action) and before the
plugins, whose ``db`` (:class:`hooks.db.HooksDB`) is a facade over it. It follows the outbox
as consumer ``siteops`` to turn alarms into work orders, and runs one scheduler task for
due inspections, scheduled reports and history retention.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from gateway import events
from gateway.components import Component, ComponentContext, ComponentSpec, TaskFactory
from gateway.model import Event, event_id
from gateway.siteops import delivery, history_sql
from gateway.siteops import inspections as insp_mod
from gateway.siteops import reports as reports_mod
from gateway.siteops import tariff as tariff_mod
from gateway.siteops import webhook as webhook_mod
from gateway.siteops import workorders as wo_mod
from gateway.siteops.config import SiteOpsSection
from gateway.siteops.history import History
from gateway.siteops.inspections import Inspections
from gateway.siteops.reports import Reports
from gateway.siteops.workorders import WorkOrderError, WorkOrders

log = logging.getLogger(__name__)

CONSUMER = "siteops"
#: How often the scheduler looks at due inspections, reports and retention (seconds).
SCHEDULE_INTERVAL_S = 30.0
PRUNE_INTERVAL_MS = 3_600_000


class SiteOpsComponent(Component):
    name = "siteops"

    def __init__(self, ctx: ComponentContext[SiteOpsSection]) -> None:
        self.ctx = ctx
        self.section = ctx.config
        self.tz = ZoneInfo(ctx.site.gateway.timezone)
        self.orders = WorkOrders(ctx.store, ctx.clock)
        hcfg = self.section.history
        self.history: History | None = (
            History(hcfg, ctx.store, self.tz) if hcfg.enabled else None)
        self._removers: list[Callable[[], None]] = []
        self._last_prune_ms = 0
        self._schedule_lock = asyncio.Lock()
        self.inspections = Inspections(self)
        self.reports = Reports(self)
        #: Extra KPI sources (the plugins' calculate_custom_kpis): period -> (values,
        #: conflicts, failed plugins).
        self.kpi_providers: list[Callable[[str], Awaitable[dict[str, Any]]]] = []

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        ctx = self.ctx
        await self.orders.import_legacy()
        await asyncio.to_thread(self.reports.remove_partial_files)
        if self.history is not None:
            await self.history.load()  # the history task catches up from the buffer
            self._removers.append(ctx.add_observer(self.history.observe))
        tariff = self.section.tariff
        if tariff is not None:
            self._removers.append(ctx.add_event_enricher(
                functools.partial(tariff_mod.price_order, tariff, self.tz)))
        await ctx.store.register_consumer(CONSUMER)
        from gateway.siteops.commands import register

        register(self)
        log.info("siteops: history %s, %d inspection plan(s), %d report(s)",
                 "on" if self.history else "off", len(self.section.inspections),
                 len(self.section.reports.definitions))

    def tasks(self) -> Iterable[tuple[str, TaskFactory]]:
        if self.history is not None:
            yield "history", self.history.run
        yield "siteops-events", self._follow_events
        yield "siteops-schedule", self._schedule
        yield "report-webhooks", self.reports.webhooks.run

    async def drain(self) -> None:
        if self.history is not None:
            await self.history.flush(final=True)

    async def stop(self) -> None:
        for remove in self._removers:
            remove()
        self._removers.clear()

    # -- the scheduler -------------------------------------------------------------------

    async def _schedule(self) -> None:
        while True:
            await self.schedule_once()
            await asyncio.sleep(SCHEDULE_INTERVAL_S)

    async def schedule_once(self) -> None:
        """Everything time-driven, once: due inspections, finished report periods,
        retention. Tests call it after moving their clock (one pass at a time)."""
        async with self._schedule_lock:
            await self._schedule_once()

    async def _schedule_once(self) -> None:
        now = self.ctx.clock.now_ms()
        await self.inspections.check_due(now)
        await self.reports.run_due(now)
        await delivery.send_daily_kpis(self, now)
        if self.history is not None and now - self._last_prune_ms >= PRUNE_INTERVAL_MS:
            await self.history.prune(now)
            self._last_prune_ms = now

    # -- alarms -> work orders -----------------------------------------------------------

    async def _follow_events(self) -> None:
        store = self.ctx.store
        while True:
            if not await self.follow_once():
                await store.wait_events(CONSUMER, 5.0)

    async def follow_once(self) -> int:
        store = self.ctx.store
        batch = await store.read_events(CONSUMER, 200)
        for stored in batch:
            await self.on_event(stored.event)
        if batch:
            await store.ack_events(CONSUMER, batch[-1].rowid)
        return len(batch)

    def _rule_action(self, rule: str) -> Any:
        rules = getattr(self.ctx.site, "rules", None)
        for r in getattr(rules, "alarms", ()) or ():
            if r.name == rule:
                return r.work_order
        return None

    async def on_event(self, ev: Event) -> None:
        await self.reports.log_event(ev)
        if ev.type == events.ALARM_CREATED:
            action = self._rule_action(str(ev.body.get("rule", "")))
            if action is not None:
                await self._order_for_alarm(ev, action)
        elif ev.type == events.ALARM_RESOLVED:
            action = self._rule_action(str(ev.body.get("rule", "")))
            if action is not None and action.complete_on_resolve:
                for order in await self.orders.list("active", alarm_id=ev.body.get("alarm_id")):
                    await self.orders.transition(order["order_id"], "done", "rules",
                                                 "alarm resolved")

    async def _order_for_alarm(self, ev: Event, action: Any) -> None:
        body = ev.body
        rule, device = str(body.get("rule", "")), body.get("device")
        source = f"rule:{rule}:{device or ''}"
        active = [o for o in await self.orders.list("active", device=device, limit=1000)
                  if o["source"] == source]
        if active:
            log.info("alarm %s of rule %s: work order %s is still open, none added",
                     body.get("alarm_id"), rule, active[0]["order_id"])
            return
        title = str(body.get("message") or f"{rule} on {device or 'the site'}")
        await self.orders.create(
            event_id("work_order", "rule", str(body.get("alarm_id"))), title,
            created_by="rules", device=device, alarm_id=body.get("alarm_id"),
            priority=action.priority, assignee=action.assignee, source=source,
            description=f"opened by rule {rule} (severity {body.get('severity')})")

    # -- the API the plugins' db and the commands use --------------------------------------

    async def record_inspection(self, record_id: str, device: str | None, inspector: str,
                                result: str, findings: str = "", **extra: Any) -> None:
        """Commit ``inspection_completed`` (once per ``record_id``)."""
        body = {"record_id": record_id, "device": device, "inspector": inspector,
                "result": result, "findings": findings, "completed_ts": self.ctx.clock.now_ms(),
                "plan": "", "answers": {}, "out_of_range": [], "work_order_id": None, **extra}
        await self.ctx.store.add_events([Event(events.INSPECTION_COMPLETED, body, device=device,
                                               id=event_id(events.INSPECTION_COMPLETED,
                                                           record_id))])

    async def announce_report(self, report_id: str, name: str, file_path: str,
                              period: str = "", format: str = "", **extra: Any) -> None:
        """Commit ``report_generated`` for a file that exists (once per ``report_id``)."""
        path = Path(file_path)
        try:
            data = await asyncio.to_thread(path.read_bytes)
        except OSError as err:
            raise FileNotFoundError(f"report {name!r}: cannot read {file_path!r} on the "
                                    f"gateway ({err.strerror}); write the file first, then "
                                    "announce it") from err
        body = {"report_id": report_id, "name": name, "period": period, "format": format,
                "file_path": str(path), "generated_ts": self.ctx.clock.now_ms(),
                "period_start_ts": None, "period_end_ts": None, "files": [str(path)],
                "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data), **extra}
        await self.ctx.store.add_events([Event(events.REPORT_GENERATED, body, id=event_id(
            events.REPORT_GENERATED, report_id))])

    def status(self) -> dict[str, Any]:
        return {"history": self.history.snapshot() if self.history else None}


def _factory(ctx: ComponentContext[SiteOpsSection]) -> SiteOpsComponent | None:
    if not ctx.config.enabled:
        return None
    return SiteOpsComponent(ctx)


MIGRATIONS = [history_sql.MIGRATIONS[0] + wo_mod.MIGRATIONS[0] + insp_mod.MIGRATIONS[0]
              + reports_mod.MIGRATIONS[0], reports_mod.MIGRATIONS[1],
              delivery.MIGRATIONS[0], webhook_mod.MIGRATIONS[0], history_sql.MIGRATIONS[1],
              history_sql.MIGRATIONS[2]]

SPEC = ComponentSpec("siteops", _factory, section=SiteOpsSection, after=("rules",),
                     migrations=MIGRATIONS)

__all__ = ["SPEC", "SiteOpsComponent", "WorkOrderError"]

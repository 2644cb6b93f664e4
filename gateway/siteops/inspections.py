"""Inspections: plans in the config, due every N days per device, tag or site; completion
with answers checked against the checklist; an out-of-range answer can open a work order.

A target is one (plan, device) pair, or (plan, site) for a site plan. A target never
inspected is due from the first start that saw its plan; afterwards it is due ``every_days``
after its last completion. ``inspection_due`` is emitted once per due date (the state table
remembers which due date was announced, since the outbox forgets delivered events).
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import logging
from typing import TYPE_CHECKING, Any

from gateway import events
from gateway.model import Event, event_id
from gateway.siteops.config import ChecklistItem, InspectionPlan

if TYPE_CHECKING:
    from gateway.siteops.component import SiteOpsComponent

log = logging.getLogger(__name__)

DAY_MS = 86_400_000
SITE = ""  # the device key of a site-wide target

MIGRATIONS = [
    """
    CREATE TABLE siteops_inspections (
        id           TEXT PRIMARY KEY,
        plan         TEXT NOT NULL,
        device       TEXT NOT NULL,
        inspector    TEXT NOT NULL,
        result       TEXT NOT NULL,
        answers      TEXT NOT NULL,
        out_of_range TEXT NOT NULL,
        findings     TEXT NOT NULL,
        completed_ts INTEGER NOT NULL,
        work_order   TEXT
    ) WITHOUT ROWID;
    CREATE INDEX siteops_inspections_by_target ON siteops_inspections (plan, device,
                                                                         completed_ts);
    CREATE TABLE siteops_inspection_state (
        plan          TEXT NOT NULL,
        device        TEXT NOT NULL,
        first_seen_ts INTEGER NOT NULL,
        announced_due INTEGER,
        PRIMARY KEY (plan, device)
    ) WITHOUT ROWID;
    """,
]


class InspectionError(ValueError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def out_of_range(item: ChecklistItem, answer: Any) -> bool:
    """True when ``answer`` is not what the item expects (missing counts as out of range)."""
    if answer is None:
        return True
    if item.expect is not None and answer != item.expect:
        return True
    if item.min is not None or item.max is not None:
        if isinstance(answer, bool) or not isinstance(answer, int | float):
            return True
        if item.min is not None and answer < item.min:
            return True
        if item.max is not None and answer > item.max:
            return True
    return False


class Inspections:
    def __init__(self, comp: SiteOpsComponent) -> None:
        self.comp = comp
        self.ctx = comp.ctx
        self.plans = {p.name: p for p in comp.section.inspections}
        self._lock = asyncio.Lock()  # the scheduler and the commands both look

    def targets(self, plan: InspectionPlan) -> list[str]:
        if plan.site:
            return [SITE]
        out = []
        for dev in self.ctx.site.devices:
            if plan.devices and not any(fnmatch.fnmatchcase(dev.id, p) for p in plan.devices):
                continue
            if plan.tags and not set(plan.tags) & set(getattr(dev, "tags", ()) or ()):
                continue
            out.append(dev.id)
        return out

    async def due(self, now_ms: int) -> list[dict[str, Any]]:
        """Every target with its due time, last completion and whether it is due now."""
        async with self._lock:
            return await self._due(now_ms)

    async def _due(self, now_ms: int) -> list[dict[str, Any]]:
        store = self.ctx.store
        state = {(p, d): (first, ann) for p, d, first, ann in await store.query(
            "SELECT plan, device, first_seen_ts, announced_due FROM siteops_inspection_state")}
        last = {(p, d): ts for p, d, ts in await store.query(
            "SELECT plan, device, MAX(completed_ts) FROM siteops_inspections "
            "GROUP BY plan, device")}
        out = []
        new_rows = []
        for plan in self.plans.values():
            for device in self.targets(plan):
                key = (plan.name, device)
                if key not in state:
                    state[key] = (now_ms, None)
                    new_rows.append((plan.name, device, now_ms))
                done = last.get(key)
                due_ts = (done + int(plan.every_days * DAY_MS) if done is not None
                          else state[key][0])
                out.append({"plan": plan.name, "device": device or None, "due_ts": due_ts,
                            "last_completed_ts": done, "due": now_ms >= due_ts,
                            "announced": state[key][1] == due_ts})
        if new_rows:
            async with store.transaction() as tx:
                await tx.executemany(
                    "INSERT OR IGNORE INTO siteops_inspection_state (plan, device, "
                    "first_seen_ts) VALUES (?, ?, ?)", new_rows)
        return out

    async def check_due(self, now_ms: int) -> int:
        """Emit ``inspection_due`` for each target that came due (once per due date)."""
        async with self._lock:
            return await self._check_due(now_ms)

    async def _check_due(self, now_ms: int) -> int:
        fresh = [t for t in await self._due(now_ms) if t["due"] and not t["announced"]]
        if not fresh:
            return 0
        async with self.ctx.store.transaction() as tx:
            for t in fresh:
                plan = self.plans[t["plan"]]
                body = {"plan": plan.name, "device": t["device"], "due_ts": t["due_ts"],
                        "last_completed_ts": t["last_completed_ts"],
                        "checklist": [i.model_dump() for i in plan.checklist]}
                await tx.add_events([Event(events.INSPECTION_DUE, body, device=t["device"],
                                           id=event_id(events.INSPECTION_DUE, plan.name,
                                                       t["device"] or SITE, str(t["due_ts"])))])
                await tx.execute(
                    "UPDATE siteops_inspection_state SET announced_due = ? "
                    "WHERE plan = ? AND device = ?", (t["due_ts"], plan.name, t["device"] or SITE))
                log.info("inspection %s is due for %s", plan.name, t["device"] or "the site")
        return len(fresh)

    async def complete(self, plan_name: str, device: str | None, inspector: str,
                       answers: dict[str, Any], findings: str = "") -> dict[str, Any]:
        """Record a completed checklist; out-of-range answers make the result ``fail`` and,
        for items with ``work_order: true``, open one work order. Emits
        ``inspection_completed`` in the same transaction."""
        plan = self.plans.get(plan_name)
        if plan is None:
            raise InspectionError("unknown_plan", f"no inspection plan {plan_name!r}; the "
                                  f"plans are: {', '.join(self.plans) or 'none configured'}")
        key = device or SITE
        if key not in self.targets(plan):
            raise InspectionError("not_in_plan", f"inspection plan {plan_name!r} does not "
                                  f"cover {device or 'the site'}; its targets: "
                                  f"{', '.join(d or 'site' for d in self.targets(plan))}")
        unknown = set(answers) - {i.id for i in plan.checklist}
        if unknown:
            raise InspectionError("unknown_item", f"plan {plan_name!r} has no checklist item "
                                  f"{', '.join(sorted(unknown))}")
        bad = [i for i in plan.checklist if out_of_range(i, answers.get(i.id))]
        now = self.ctx.clock.now_ms()
        record_id = event_id("inspection", plan_name, key, inspector, str(now))
        result = "fail" if bad else "pass"
        order_id = None
        async with self.ctx.store.transaction() as tx:
            if any(i.work_order for i in bad):
                lines = [f"{i.id}: {i.question} -> {answers.get(i.id)!r}" for i in bad]
                order, _ = await self.comp.orders.create(
                    event_id("work_order", "inspection", record_id),
                    f"inspection {plan_name} failed on {device or 'the site'}",
                    created_by=inspector, device=device, priority=plan.priority,
                    assignee=plan.assignee, description="\n".join(lines),
                    source=f"inspection:{plan_name}", tx=tx)
                order_id = order["order_id"]
            await tx.execute(
                "INSERT INTO siteops_inspections VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (record_id, plan_name, key, inspector, result, json.dumps(answers),
                 json.dumps([i.id for i in bad]), findings, now, order_id))
            body = {"record_id": record_id, "device": device, "inspector": inspector,
                    "result": result, "findings": findings, "completed_ts": now,
                    "plan": plan_name, "answers": answers,
                    "out_of_range": [i.id for i in bad], "work_order_id": order_id}
            await tx.add_events([Event(events.INSPECTION_COMPLETED, body, device=device,
                                       id=event_id(events.INSPECTION_COMPLETED, record_id))])
        return body

    async def records(self, plan: str | None = None, device: str | None = None,
                      limit: int = 100) -> list[dict[str, Any]]:
        where, params = ["1 = 1"], []
        if plan is not None:
            where.append("plan = ?")
            params.append(plan)
        if device is not None:
            where.append("device = ?")
            params.append(device)
        rows = await self.ctx.store.query(
            "SELECT id, plan, device, inspector, result, answers, out_of_range, findings, "
            f"completed_ts, work_order FROM siteops_inspections WHERE {' AND '.join(where)} "
            "ORDER BY completed_ts DESC LIMIT ?", [*params, limit])
        return [{"record_id": r[0], "plan": r[1], "device": r[2] or None, "inspector": r[3],
                 "result": r[4], "answers": json.loads(r[5]), "out_of_range": json.loads(r[6]),
                 "findings": r[7], "completed_ts": r[8], "work_order_id": r[9]} for r in rows]

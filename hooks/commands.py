"""Commands of the plugins component (MQTT ``cmd/<name>`` and ``fieldgate cmd``).

``plugins.list``, ``plugins.stats``, ``kpis``; and the operator side of work orders,
inspections and reports, which emit the same events (and so fire the same hooks) as a
plugin using ``db``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from gateway.commands import Command, CommandError, NoArgs
from hooks.db import HooksDB, WorkOrderError
from hooks.manager import PerPlugin, merge_kpis
from hooks.spec import ALL_HOOKS

if TYPE_CHECKING:
    from gateway.components import ComponentContext
    from hooks.component import PluginsComponent, PluginsSection

OPERATOR = "operator"


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid")


class KpiArgs(_Args):
    period: Literal["today", "month", "year"] = "today"


class CreateOrderArgs(_Args):
    title: str = Field(min_length=1)
    device: str | None = None
    alarm_id: str | None = None
    priority: Literal["low", "normal", "high", "urgent"] = "normal"
    description: str = ""
    by: str = OPERATOR


class CompleteOrderArgs(_Args):
    order_id: str
    resolution: str = ""


class ListOrdersArgs(_Args):
    status: Literal["open", "completed"] | None = None
    device: str | None = None
    limit: int = Field(100, ge=1, le=1000)


class InspectionArgs(_Args):
    device: str | None = None
    inspector: str = Field(min_length=1)
    result: Literal["pass", "fail"]
    findings: str = ""


class ReportArgs(_Args):
    name: str = Field(min_length=1)
    file_path: str = Field(min_length=1)
    period: str = ""
    format: str = ""


def register(app: ComponentContext[PluginsSection], comp: PluginsComponent) -> None:
    runner = comp.runner

    async def plugins_list(_: NoArgs) -> dict[str, Any]:
        """Loaded plugins, the hooks each implements, and the ones that failed to load."""
        hooks: dict[str, list[str]] = {}
        for hook in ALL_HOOKS:
            for impl in runner.implementations(hook):
                hooks.setdefault(impl.plugin_name, []).append(hook)
        return {"loaded": [{"name": n, "source": src, "hooks": hooks.get(n, [])}
                           for n, src in comp.report.loaded.items()],
                "failed": comp.report.failed,
                "converters": {"names": sorted(comp.converters),
                               "wired": comp.converters_wired}}

    async def plugins_stats(_: NoArgs) -> dict[str, Any]:
        """Per plugin: its delivery (events delivered, backlog), what is wrong with it now
        (`hung` lists those with a problem), its threads; calls, errors, timeouts and time
        per hook; energy queue figures per plugin; event-loop stalls."""
        plugins: dict[str, Any] = {}
        names = sorted(set(comp.report.loaded) | set(comp.feeds) | set(runner.threads))
        for name in names:
            feed = comp.feeds.get(name)
            row: dict[str, Any] = {"problems": runner.health(name),
                                   "loop_stalls": comp.watch.by_plugin.get(name, 0)}
            if feed is not None:
                row["events_delivered"] = feed.delivered
                row["events_behind"] = await comp.backlog(feed)
            pool = runner.threads.get(name)
            if pool is not None:
                row["threads"] = pool.snapshot()
            plugins[name] = row
        return {"plugins": plugins,
                "hung": [n for n, row in plugins.items() if row["problems"]],
                "hooks": runner.snapshot(),
                "energy": comp.energy.stats() if comp.energy.feeds else None,
                "events_delivered": sum(f.delivered for f in comp.feeds.values()),
                "loop": comp.loop_stats()}

    async def kpis(args: KpiArgs) -> dict[str, Any]:
        """Custom KPIs of every plugin for a period (today, month, year), merged."""
        results = await runner.call_each(
            "calculate_custom_kpis",
            {"period": args.period, "db": PerPlugin(lambda p: HooksDB(app, p))},
            context=f" (period {args.period})")
        values, conflicts, bad = merge_kpis(results)
        return {"period": args.period, "kpis": values, "conflicts": conflicts,
                "failed": [r.plugin for r in results if not r.ok] + bad}

    def db(by: str = OPERATOR) -> HooksDB:
        return HooksDB(app, by)

    async def wo_create(args: CreateOrderArgs) -> dict[str, Any]:
        """Create a work order (emits work_order_created)."""
        if args.device is not None and app.device(args.device) is None:
            raise CommandError("unknown_device", f"no device {args.device!r} on this gateway")
        order = await db(args.by).create_work_order(
            args.title, device=args.device, alarm_id=args.alarm_id, priority=args.priority,
            description=args.description)
        return _public(order)

    async def wo_complete(args: CompleteOrderArgs) -> dict[str, Any]:
        """Complete an open work order (emits work_order_completed)."""
        try:
            order = await db().complete_work_order(args.order_id, args.resolution)
        except WorkOrderError as err:
            raise CommandError("unknown_work_order", str(err)) from err
        return _public(order)

    async def wo_list(args: ListOrdersArgs) -> list[dict[str, Any]]:
        """Work orders, newest first."""
        orders = await db().work_orders(args.status, args.device, args.limit)
        return [_public(o) for o in orders]

    async def inspection(args: InspectionArgs) -> dict[str, Any]:
        """Record a completed inspection (emits inspection_completed)."""
        rid = await db(args.inspector).record_inspection(
            args.device, args.inspector, args.result, args.findings)
        return {"record_id": rid}

    async def report(args: ReportArgs) -> dict[str, Any]:
        """Announce a generated report file (emits report_generated)."""
        rid = await db().announce_report(args.name, args.file_path, args.period, args.format)
        return {"report_id": rid}

    for cmd in (
        Command("plugins.list", NoArgs, plugins_list, plugins_list.__doc__ or "", read_only=True),
        Command("plugins.stats", NoArgs, plugins_stats, plugins_stats.__doc__ or "",
                read_only=True),
        Command("kpis", KpiArgs, kpis, kpis.__doc__ or "", timeout=comp.section.timeout + 5,
                read_only=True),
        Command("workorders.create", CreateOrderArgs, wo_create, wo_create.__doc__ or ""),
        Command("workorders.complete", CompleteOrderArgs, wo_complete,
                wo_complete.__doc__ or ""),
        Command("workorders.list", ListOrdersArgs, wo_list, wo_list.__doc__ or "", read_only=True),
        Command("inspections.complete", InspectionArgs, inspection, inspection.__doc__ or ""),
        Command("reports.generated", ReportArgs, report, report.__doc__ or ""),
    ):
        app.commands.register(cmd)


def _public(order: Any) -> dict[str, Any]:
    return {k: getattr(order, k) for k in (
        "order_id", "title", "description", "device", "alarm_id", "priority", "status",
        "created_by", "created_ts", "completed_ts", "resolution")}

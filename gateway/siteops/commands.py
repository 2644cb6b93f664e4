"""The commands of the ``siteops`` component (MQTT ``cmd/<name>``, ``fieldgate cmd``, the
dashboard): ``history``, ``history.energy``, ``history.last``, ``history.stats``,
``workorders.*``; the inspections, reports and KPI modules add theirs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from gateway.commands import Command, CommandError, NoArgs
from gateway.model import event_id
from gateway.siteops.inspections import InspectionError
from gateway.siteops.kpis import kpis
from gateway.siteops.workorders import WorkOrderError

if TYPE_CHECKING:
    from gateway.siteops.component import SiteOpsComponent

OPERATOR = "operator"


class Args(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HistoryArgs(Args):
    device: str = Field(min_length=1)
    point: str = Field(min_length=1)
    start: int = Field(description="UTC ms, inclusive.")
    end: int | None = Field(None, description="UTC ms, exclusive; default now.")
    resolution: Literal["auto", "1m", "15m", "1h", "1d"] = "auto"


class EnergyArgs(Args):
    start: int
    end: int | None = None
    devices: list[str] | None = None
    resolution: Literal["15m", "1h", "1d"] = "1h"


class LastArgs(Args):
    device: str = Field(min_length=1)
    points: list[str] | None = None


class CreateOrderArgs(Args):
    title: str = Field(min_length=1)
    device: str | None = None
    alarm_id: str | None = None
    priority: Literal["low", "normal", "high", "urgent"] = "normal"
    description: str = ""
    assignee: str | None = None
    by: str = OPERATOR


class TransitionArgs(Args):
    order_id: str = Field(min_length=1)
    note: str = ""
    by: str = OPERATOR


class CompleteOrderArgs(Args):
    order_id: str = Field(min_length=1)
    resolution: str = ""
    by: str = OPERATOR


class UpdateOrderArgs(Args):
    order_id: str = Field(min_length=1)
    assignee: str | None = None
    note: str = ""
    by: str = OPERATOR


class ListOrdersArgs(Args):
    status: Literal["open", "acknowledged", "in_progress", "done", "cancelled", "active",
                    "completed"] | None = None
    device: str | None = None
    assignee: str | None = None
    limit: int = Field(100, ge=1, le=1000)


class GetOrderArgs(Args):
    order_id: str = Field(min_length=1)


class ReportArgs(Args):
    name: str = Field(min_length=1)
    file_path: str = Field(min_length=1)
    period: str = ""
    format: str = ""


class InspectionArgs(Args):
    plan: str | None = Field(None, description="A configured plan: answers are checked.")
    device: str | None = None
    inspector: str = Field(min_length=1)
    answers: dict[str, Any] = {}
    result: Literal["pass", "fail"] | None = Field(
        None, description="Only without a plan (a free-form inspection).")
    findings: str = ""


class InspectionListArgs(Args):
    plan: str | None = None
    device: str | None = None
    limit: int = Field(100, ge=1, le=1000)


class ReportRunArgs(Args):
    name: str = Field(min_length=1)
    at: int | None = Field(None, description="UTC ms inside the period; default: the last "
                                             "finished period.")


class ReportListArgs(Args):
    name: str | None = None
    limit: int = Field(100, ge=1, le=1000)


class KpiArgs(Args):
    period: Literal["today", "yesterday", "month", "year"] = "today"


def _wo_error(err: WorkOrderError) -> CommandError:
    return CommandError(err.code, str(err))


def register(comp: SiteOpsComponent) -> None:
    ctx = comp.ctx
    history = comp.history
    orders = comp.orders

    def need_history() -> Any:
        if history is None:
            raise CommandError("history_off", "local history is off on this gateway "
                               "(siteops.history.enabled: false in the config)")
        return history

    async def history_cmd(args: HistoryArgs) -> dict[str, Any]:
        """Rollups of one point: [{ts, min, max, avg, last, count}] per bucket."""
        h = need_history()
        end = args.end if args.end is not None else ctx.clock.now_ms()
        try:
            rows = await h.series(args.device, args.point, args.start, end, args.resolution)
        except ValueError as err:
            raise CommandError("bad_arguments", str(err)) from err
        return {"device": args.device, "point": args.point, "resolution": args.resolution,
                "rows": rows}

    async def energy_cmd(args: EnergyArgs) -> dict[str, Any]:
        """Energy (Wh) per device per bucket (15m, 1h, or local days)."""
        h = need_history()
        end = args.end if args.end is not None else ctx.clock.now_ms()
        return {"resolution": args.resolution,
                "devices": await h.energy(args.start, end, args.devices, args.resolution)}

    async def last_cmd(args: LastArgs) -> dict[str, Any]:
        """The newest value of each point of a device (within the last day)."""
        h = need_history()
        return {"device": args.device, "points": await h.last_values(
            args.device, args.points, now_ms=ctx.clock.now_ms())}

    async def stats_cmd(_: NoArgs) -> dict[str, Any]:
        """History figures: watermark, estimated size, rows dropped, samples lost."""
        return need_history().snapshot()

    async def wo_create(args: CreateOrderArgs) -> dict[str, Any]:
        """Create a work order (emits work_order_created)."""
        if args.device is not None and ctx.device(args.device) is None:
            raise CommandError("unknown_device", f"no device {args.device!r} on this gateway; "
                               "list them with status")
        oid = event_id("work_order", args.by, args.title, str(ctx.clock.now_ms()),
                       str(id(args)))
        try:
            order, _ = await orders.create(
                oid, args.title, created_by=args.by, device=args.device,
                alarm_id=args.alarm_id, priority=args.priority, description=args.description,
                assignee=args.assignee, source="command")
        except WorkOrderError as err:
            raise _wo_error(err) from err
        return order

    def mover(to: str, doc: str) -> Any:
        async def move(args: TransitionArgs) -> dict[str, Any]:
            try:
                return await orders.transition(args.order_id, to, args.by, args.note)
            except WorkOrderError as err:
                raise _wo_error(err) from err
        move.__doc__ = doc
        return move

    async def wo_complete(args: CompleteOrderArgs) -> dict[str, Any]:
        """Complete a work order: status done (emits work_order_completed once)."""
        try:
            return await orders.transition(args.order_id, "done", args.by, args.resolution)
        except WorkOrderError as err:
            raise _wo_error(err) from err

    async def wo_update(args: UpdateOrderArgs) -> dict[str, Any]:
        """Assign a work order and/or add a note (emits work_order_updated)."""
        try:
            return await orders.update(args.order_id, args.by, assignee=args.assignee,
                                       note=args.note)
        except WorkOrderError as err:
            raise _wo_error(err) from err

    async def wo_list(args: ListOrdersArgs) -> list[dict[str, Any]]:
        """Work orders, newest first (status: a state, or active = not done/cancelled)."""
        return await orders.list(args.status, args.device, args.assignee, limit=args.limit)

    async def wo_get(args: GetOrderArgs) -> dict[str, Any]:
        """One work order with its notes."""
        order = await orders.get(args.order_id)
        if order is None:
            raise CommandError("unknown_work_order", f"no work order {args.order_id!r}; "
                               "list them with workorders.list")
        return order

    async def report_generated(args: ReportArgs) -> dict[str, Any]:
        """Announce a report file written by something else (it must exist on the gateway;
        emits report_generated). The gateway's own reports: reports.run."""
        rid = event_id("report", OPERATOR, args.name, args.file_path)
        try:
            await comp.announce_report(rid, args.name, args.file_path, args.period,
                                       args.format)
        except FileNotFoundError as err:
            raise CommandError("no_such_file", str(err)) from err
        return {"report_id": rid}

    async def insp_due(_: NoArgs) -> list[dict[str, Any]]:
        """Every inspection target: plan, device, due_ts, last_completed_ts, due (now)."""
        return await comp.inspections.due(ctx.clock.now_ms())

    async def insp_complete(args: InspectionArgs) -> dict[str, Any]:
        """Complete an inspection: with a plan, its answers are checked (an out-of-range
        answer fails it and can open a work order); emits inspection_completed."""
        if args.plan is None:
            if args.result is None:
                raise CommandError("bad_arguments", "give a plan (and answers), or a result "
                                   "(pass or fail) for a free-form inspection")
            rid = event_id("inspection", args.inspector, str(args.device),
                           str(ctx.clock.now_ms()))
            await comp.record_inspection(rid, args.device, args.inspector, args.result,
                                         args.findings)
            return {"record_id": rid, "result": args.result}
        if args.device is not None and ctx.device(args.device) is None:
            raise CommandError("unknown_device", f"no device {args.device!r} on this gateway")
        try:
            return await comp.inspections.complete(args.plan, args.device, args.inspector,
                                                   args.answers, args.findings)
        except InspectionError as err:
            raise CommandError(err.code, str(err)) from err

    async def insp_list(args: InspectionListArgs) -> list[dict[str, Any]]:
        """Completed inspections (with a plan), newest first."""
        return await comp.inspections.records(args.plan, args.device, args.limit)

    async def report_run(args: ReportRunArgs) -> dict[str, Any]:
        """Generate a configured report now (CSV, and HTML if configured) for the last
        finished period or the one holding ``at``; emits report_generated."""
        try:
            return await comp.reports.run(args.name, args.at)
        except LookupError as err:
            raise CommandError("unknown_report", str(err)) from err

    async def report_list(args: ReportListArgs) -> list[dict[str, Any]]:
        """Generated reports, newest first, with their files and delivery state (uplink
        messages queued, webhook deliveries)."""
        return await comp.reports.list(args.name, args.limit)

    async def kpis_cmd(args: KpiArgs) -> dict[str, Any]:
        """Site KPIs (site.*) from the local history for today, month or year, merged with
        every plugin's calculate_custom_kpis."""
        return await kpis(comp, args.period)

    ack = mover("acknowledged", "Acknowledge a work order (emits work_order_updated).")
    start = mover("in_progress", "Start work on a work order (emits work_order_updated).")
    cancel = mover("cancelled", "Cancel a work order; the note is the reason (emits "
                                "work_order_completed with status cancelled).")
    for cmd in (
        Command("history", HistoryArgs, history_cmd, history_cmd.__doc__ or "", read_only=True),
        Command("history.energy", EnergyArgs, energy_cmd, energy_cmd.__doc__ or "",
                read_only=True),
        Command("history.last", LastArgs, last_cmd, last_cmd.__doc__ or "", read_only=True),
        Command("history.stats", NoArgs, stats_cmd, stats_cmd.__doc__ or "", read_only=True),
        Command("workorders.create", CreateOrderArgs, wo_create, wo_create.__doc__ or ""),
        Command("workorders.ack", TransitionArgs, ack, ack.__doc__),
        Command("workorders.start", TransitionArgs, start, start.__doc__),
        Command("workorders.complete", CompleteOrderArgs, wo_complete,
                wo_complete.__doc__ or ""),
        Command("workorders.cancel", TransitionArgs, cancel, cancel.__doc__),
        Command("workorders.update", UpdateOrderArgs, wo_update, wo_update.__doc__ or ""),
        Command("workorders.list", ListOrdersArgs, wo_list, wo_list.__doc__ or "",
                read_only=True),
        Command("workorders.get", GetOrderArgs, wo_get, wo_get.__doc__ or "", read_only=True),
        Command("inspections.due", NoArgs, insp_due, insp_due.__doc__ or "", read_only=True),
        Command("inspections.complete", InspectionArgs, insp_complete,
                insp_complete.__doc__ or ""),
        Command("inspections.list", InspectionListArgs, insp_list, insp_list.__doc__ or "",
                read_only=True),
        Command("reports.run", ReportRunArgs, report_run, report_run.__doc__ or "",
                timeout=120),
        Command("reports.list", ReportListArgs, report_list, report_list.__doc__ or "",
                read_only=True),
        Command("kpis", KpiArgs, kpis_cmd, kpis_cmd.__doc__ or "", timeout=60,
                read_only=True),
        Command("reports.generated", ReportArgs, report_generated,
                report_generated.__doc__ or ""),
    ):
        ctx.commands.register(cmd)

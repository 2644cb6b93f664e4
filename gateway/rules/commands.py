"""Commands of the rules component: alarm.list, alarm.ack, maintenance, quota.usage,
rules.stats. They reach the engine's state through the store's single writer lock, so a
command never interleaves with the commit of a batch."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from gateway.commands import Command, CommandError, NoArgs

if TYPE_CHECKING:
    from gateway.rules.component import RulesComponent


class AlarmListArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    device: str | None = Field(None, description="Only this device's alarms.")
    rule: str | None = None
    min_severity: Literal["critical", "major", "minor", "warning"] | None = None


class AlarmAckArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    alarm_id: str = Field(min_length=1)
    by: str = Field("operator", min_length=1, max_length=128, description="Who acknowledges.")


class MaintenanceArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    device: str = Field(min_length=1)
    on: bool = Field(description="true: start maintenance (alarms suppressed); false: end.")
    reason: str = Field("", max_length=256)


class QuotaUsageArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    quota: str | None = Field(None, description="One quota by name; default all.")


def commands(component: RulesComponent) -> list[Command]:
    ctx = component.ctx

    def engine() -> Any:
        if component.engine is None:
            raise CommandError("not_ready", "the rules engine is not started yet; retry")
        return component.engine

    async def alarm_list(args: AlarmListArgs) -> list[dict[str, Any]]:
        """Open alarms (optionally of one device, rule or at least a severity)."""
        engine()  # not_ready before the engine started
        return component.open_alarms(args.device, args.rule, args.min_severity)

    async def alarm_ack(args: AlarmAckArgs) -> dict[str, Any]:
        """Acknowledge an open alarm (idempotent); emits alarm_acknowledged once."""
        eng = engine()
        async with ctx.store.transaction() as tx:
            alarm = eng.book.by_id.get(args.alarm_id)
            if alarm is None:
                raise CommandError("unknown_alarm",
                                   f"no open alarm {args.alarm_id!r}; see alarm.list")
            first = eng.book.acknowledge(alarm, args.by, ctx.clock.now_ms())
            await eng.flush(tx)
        return {"alarm": alarm.as_dict(), "acknowledged_now": first}

    async def maintenance(args: MaintenanceArgs) -> dict[str, Any]:
        """Put a device in maintenance (its alarms are suppressed) or take it out."""
        if ctx.device(args.device) is None:
            raise CommandError("unknown_device", f"no device {args.device!r} on this gateway")
        status = ctx.status
        reason = args.reason or ("maintenance started" if args.on else "maintenance ended")
        async with ctx.store.transaction() as tx:
            await status.set_maintenance(tx, args.device, args.on, reason, ctx.clock.now_ms())
        return {"device": args.device, "maintenance": args.on,
                "status": status.effective(args.device).value}

    async def quota_usage(args: QuotaUsageArgs) -> list[dict[str, Any]]:
        """Usage of each quota in its current period."""
        states = engine().quotas.states
        if args.quota is not None:
            picked = [s for n, s in states.items()
                      if n == args.quota or n.startswith(args.quota + "[")]
            if not picked:
                raise CommandError("unknown_quota", f"no quota {args.quota!r}",
                                   {"known": sorted(states)})
            return [s.usage() for s in picked]
        return [s.usage() for s in states.values()]

    async def rules_stats(_: NoArgs) -> dict[str, Any]:
        """Counters of the rules engine (evaluations, ignored samples, counter resets...)."""
        return dict(engine().describe())

    return [
        Command("alarm.list", AlarmListArgs, alarm_list, alarm_list.__doc__ or "", read_only=True),
        Command("alarm.ack", AlarmAckArgs, alarm_ack, alarm_ack.__doc__ or ""),
        Command("maintenance", MaintenanceArgs, maintenance, maintenance.__doc__ or ""),
        Command("quota.usage", QuotaUsageArgs, quota_usage, quota_usage.__doc__ or "",
                read_only=True),
        Command("rules.stats", NoArgs, rules_stats, rules_stats.__doc__ or "", read_only=True),
    ]

"""End to end: a real App with simulated devices; alarms and quota events reach the outbox
and the commands work through the command registry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

# The OCPP driver's own argument model: the quota action must speak its contract.
from drivers.ocpp.commands import LimitArgs
from gateway.commands import Command
from gateway.model import Event
from gateway.runtime import App
from tests.support.app import running_app
from tests.support.wait import wait_until

wait_for = wait_until


async def outbox(app: App, *types: str) -> list[Event]:
    await app.store.register_consumer("e2e")
    return [se.event for se in await app.store.read_events("e2e", 10_000)
            if se.event.type in types]


CONFIG: dict[str, Any] = {
    "devices": [
        {"id": "meter-1", "type": "simulated", "interval": 0.05, "tags": ["main"]},
        {"id": "cp1", "type": "simulated", "interval": 0.05},
    ],
    "rules": {
        "tick_interval": 0.05,
        "alarms": [
            {"name": "voltage-high", "tags": ["main"], "point": "voltage_v",
             "condition": {"op": ">", "value": 100}, "severity": "major",
             "message": "{device} {point} = {value:.1f} V above {threshold}"},
        ],
        "quotas": [
            {"name": "cp-day", "devices": ["cp1"], "period": "day", "budget_kwh": 0.0001,
             "thresholds": [100],
             "action": {"limit_charging": {"power_w": 3700, "chargers": ["cp1"]}}},
        ],
    },
}


async def test_alarm_quota_and_commands_end_to_end(tmp_path: Path) -> None:
    limits: list[dict[str, Any]] = []
    async with running_app(CONFIG, tmp_path) as app:
        async def limit(args: LimitArgs) -> dict[str, Any]:
            limits.append(args.model_dump())
            return {"ok": True}

        app.commands.register(Command("ocpp.limit", LimitArgs, limit))
        [created] = await wait_for(lambda: outbox(app, "alarm_created"))
        assert created.body["device"] == "meter-1" and created.body["rule"] == "voltage-high"
        assert created.body["message"].startswith("meter-1 voltage_v = 2")
        assert app.status.current("meter-1").value == "alarm"

        listed = await app.commands.execute("alarm.list", {"device": "meter-1"})
        assert listed["ok"] and [a["alarm_id"] for a in listed["result"]] == [
            created.body["alarm_id"]]
        ack = await app.commands.execute("alarm.ack", {"alarm_id": created.body["alarm_id"],
                                                        "by": "ana"})
        assert ack["ok"] and ack["result"]["acknowledged_now"]
        bad = await app.commands.execute("alarm.ack", {"alarm_id": "nope"})
        assert bad["error"]["code"] == "unknown_alarm"

        [exceeded] = await wait_for(lambda: outbox(app, "quota_exceeded"))
        assert exceeded.body["quota"] == "cp-day" and exceeded.body["threshold_pct"] == 100
        await wait_for(lambda: limits)
        assert limits == [{"scope": "charger", "charger": "cp1", "connector": 1,
                           "limit_w": 3700.0}]
        usage = await app.commands.execute("quota.usage", {"quota": "cp-day"})
        assert usage["result"][0]["usage_pct"] >= 100

        maint = await app.commands.execute("maintenance", {"device": "meter-1", "on": True})
        assert maint["result"]["status"] == "maintenance"
        await app.pipeline.add_event(Event(
            "ocpp_fault", {"charger": "cp1", "connector": 1, "error_code": "GroundFailure",
                           "vendor_error_code": None, "status": "Faulted", "info": None},
            "cp1"))
        fault = await wait_for(lambda: _of_rule(app, "ocpp_fault"))
        assert fault[0].body["severity"] == "critical"
        stats = await app.commands.execute("rules.stats", {})
        assert stats["result"]["evaluated"] > 0
        before = {a["alarm_id"] for a in (await app.commands.execute("alarm.list", {}))["result"]}
    # After a restart the open alarms are the same ones (the acknowledged one included), no
    # alarm_created is committed again, and the maintenance window is remembered.
    async with running_app(CONFIG, tmp_path) as app:
        await app.store.register_consumer("after-restart")
        seq0 = (await app.store.stats()).next_seq

        async def rules_saw_new_samples() -> bool:  # (they are evaluated before the commit)
            return (await app.store.stats()).next_seq > seq0

        await wait_for(rules_saw_new_samples)
        listed = (await app.commands.execute("alarm.list", {}))["result"]
        assert {a["alarm_id"] for a in listed} == before
        # (events not yet delivered before the stop are still in the outbox: same ids)
        new = [se.event for se in await app.store.read_events("after-restart", 10_000)]
        assert {e.body["alarm_id"] for e in new if e.type == "alarm_created"} <= before
        assert app.status.current("meter-1").value == "maintenance"


async def _of_rule(app: App, rule: str) -> list[Event]:
    return [e for e in await outbox(app, "alarm_created") if e.body["rule"] == rule]

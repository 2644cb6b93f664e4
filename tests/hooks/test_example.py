"""The example customer plugin, end to end on a running gateway."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.model import Event
from tests.gateway.channels.httpserver import Request, http_server
from tests.hooks.support import SIM, component, wait_for
from tests.support.app import running_app
from tests.support.wait import wait_until

ALARM = {"alarm_id": "ex-a1", "rule": "overtemp", "kind": "threshold", "severity": "critical",
         "device": "m1", "point": "temp_c", "code": "OT", "message": "too hot", "value": 91,
         "started_ts": 1, "count": 1}
CHARGE = {"order_id": "ex-o1", "charger": "cp-1", "connector": 1, "id_tag": "T",
          "transaction_id": 5, "started_ts": 1, "meter_start_wh": 0, "stopped_ts": 2,
          "meter_stop_wh": 7000, "energy_wh": 7000, "stop_reason": "EVDisconnected"}


async def poll(fetch: Callable[[], Awaitable[list[Any]]], timeout: float = 5) -> list[Any]:
    return await wait_until(fetch, timeout, what="rows")


async def test_example_customer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def ok(_: Request) -> tuple[int, Any]:
        return 200, {"ok": True}

    cfg = {"devices": [SIM], "plugins": {"customer": "example", "entry_points": False,
                                         "example": {"may_write": ["*.power_limit_w"]}}}
    async with http_server(ok) as crm, running_app(cfg, tmp_path) as app:
        monkeypatch.setenv("EXAMPLE_CHARGING_WEBHOOK", crm.url + "/charging")
        listed = (await app.commands.execute("plugins.list", {}))["result"]["loaded"]
        (example,) = [p for p in listed if p["name"] == "example"]
        assert len(example["hooks"]) >= 6

        # Critical alarm -> urgent work order (once, even if delivered twice); cleared -> closed.
        ev = Event("alarm_created", ALARM, device="m1", id="ex-ev-1")
        await app.pipeline.add_event(ev)

        async def orders(status: str) -> list[Any]:
            return (await app.commands.execute("workorders.list", {"status": status}))["result"]

        opened = await poll(lambda: orders("open"))
        assert [(o["alarm_id"], o["priority"], o["created_by"]) for o in opened] == [
            ("ex-a1", "urgent", "example")]
        await component(app).deliver(ev)  # a redelivery creates nothing new
        assert len(await orders("open")) == 1
        await app.pipeline.add_event(Event("alarm_resolved", {**ALARM, "resolved_ts": 3},
                                           device="m1", id="ex-ev-2"))
        (done,) = await poll(lambda: orders("completed"))
        assert done["resolution"] == "alarm cleared by itself"

        # A quota the rules engine takes no action for, at 100 % -> a power cap.
        quota = {"quota": "q", "devices": ["m1"], "period": "day", "period_start": "d",
                 "period_end": "d", "threshold_pct": 100, "usage_kwh": 10.5,
                 "budget_kwh": 10.0, "usage_pct": 105.0, "action": None}
        await app.pipeline.add_event(Event("quota_exceeded", quota, id="ex-ev-3"))
        model = app.drivers["simulated"].models["m1"]  # type: ignore[attr-defined]
        await wait_for(lambda: model.setpoint == 5000.0)

        # Charging order completed -> one POST to the CRM, not repeated on redelivery.
        charge = Event("charging_order_completed", CHARGE, id="ex-ev-4")
        await app.pipeline.add_event(charge)

        async def noted() -> list[Any]:  # the call finished: the plugin noted the event
            return [1] if await component(app).db_for("example").kv().get(charge.id) else []

        await poll(noted)
        assert len(crm.requests) == 1
        await component(app).deliver(charge)
        assert len(crm.requests) == 1
        assert crm.requests[0].json() == {"order_id": "ex-o1", "charger": "cp-1",
                                          "id_tag": "T", "energy_kwh": 7.0,
                                          "stop_reason": "EVDisconnected"}

        kpis = (await app.commands.execute("kpis", {"period": "today"}))["result"]["kpis"]
        assert kpis["example.open_work_orders"] == 0
        assert kpis["example.peak_power_w"] > 0  # from the simulated samples
        assert kpis["example.charged_kwh"] == 7.0

        # A failed inspection -> a high-priority order, unless its plan already opened one.
        insp = {"record_id": "ex-i1", "device": "m1", "inspector": "ana", "result": "fail",
                "findings": "cracked cover", "completed_ts": 4}
        await app.pipeline.add_event(Event("inspection_completed", {
            **insp, "record_id": "ex-i0", "work_order_id": "wo-of-the-plan"}, device="m1",
            id="ex-ev-5"))
        await app.pipeline.add_event(Event("inspection_completed", insp, device="m1",
                                           id="ex-ev-6"))
        opened = await poll(lambda: orders("open"))  # ex-ev-5 was delivered before ex-ev-6
        assert [(o["title"], o["priority"]) for o in opened] == [
            ("inspection failed: cracked cover", "high")]

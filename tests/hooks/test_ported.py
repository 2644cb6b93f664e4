"""A realistic plugin of the original ``CustomerHooks`` platform, ported, end to end.

``ported/original_acme_hooks.py.txt`` is the plugin as written for the original platform;
``ported/customers/acme/hooks/`` is the port, in the original folder layout. Its twelve
hooks are the original code unchanged (original attribute names, ``dataclasses.asdict`` of
an alarm, energy increments); the import changed, and the four storage helpers that used
the original's SQLAlchemy session now use ``db``. The test checks exactly that, then runs the
port on a real gateway and sees every hook fire from its real producer: the rules engine
(alarm, quota, device status), the OCPP central system with a simulated charge point, the
operator commands, the per-sample energy path and the KPI command.
"""

from __future__ import annotations

import asyncio
import difflib
from pathlib import Path
from typing import Any

import pytest

from drivers.ocpp.simulator import SimCharger
from hooks.spec import ALL_HOOKS
from tests.drivers.ocpp.conftest import PASSWORD, charger
from tests.gateway.channels.httpserver import Request, http_server
from tests.hooks.support import INVERTER, PV_HIGH, NoonClock, component, curtail, wait_for
from tests.support.app import running_app
from tests.support.wait import wait_until

PORTED = Path(__file__).parent / "ported"
ORIGINAL = PORTED / "original_acme_hooks.py.txt"
PORT = PORTED / "customers" / "acme" / "hooks" / "__init__.py"
BUSINESS_HOOKS = [h for h in ALL_HOOKS if not h.startswith("register_")]


def test_only_the_import_and_the_storage_helpers_changed() -> None:
    before = ORIGINAL.read_text().splitlines()
    after = PORT.read_text().splitlines()
    changed: list[str] = []
    for tag, i1, i2, _j1, _j2 in difflib.SequenceMatcher(a=before, b=after).get_opcodes():
        if tag != "equal":
            changed.extend(before[i1:i2])
    imports = [line for line in changed if line.startswith(("from ", "import "))]
    assert imports == ["from app.hooks.base import CustomerHooks",
                       "from app.models import Note, WorkOrder",
                       "from sqlalchemy import func, select"]
    # Every other changed line is inside the storage helpers, none in the hooks.
    start = before.index("    # -- storage: the helpers that use the database "
                         "----------------------------------------")
    end = before.index("    # -- hooks " + "-" * 77)
    helpers = before[start:end]
    assert all(line in helpers for line in changed if line not in imports)
    hooks_before = before[end:]
    assert hooks_before == after[after.index(before[end]):]
    assert "from hooks.base import CustomerHooks" in after


def _site(tmp_path: Path) -> dict[str, Any]:
    server = {"host": "127.0.0.1", "port": 0, "call_timeout": 2.0,
              "id_tags": [{"id_tag": "TAG-OK"}]}
    return {
        "devices": [INVERTER, {"id": "csms", "type": "ocpp", "role": "server", "server": server},
                    charger("cp-1").model_dump(exclude_defaults=True)],
        "rules": {"alarms": [PV_HIGH],
                  "quotas": [{"name": "pv-day", "devices": ["pv1"], "period": "day",
                              "budget_kwh": 0.001, "thresholds": [100]}]},
        "plugins": {"customer": "acme", "customer_dir": str(PORTED / "customers"),
                    "entry_points": False,
                    "acme": {"energy_increments": True}},
    }


async def _charging_session(app: Any) -> SimCharger:
    server = app.drivers["ocpp"].server
    await asyncio.wait_for(server.ready.wait(), 5)
    sim = SimCharger("cp-1", "1.6", f"ws://127.0.0.1:{server.port}/ocpp", password=PASSWORD)
    await sim.connect()
    assert await sim.boot() == "Accepted"
    sim.state[1].meter_wh = 1000.0
    await sim.start(1, "TAG-OK")
    sim.advance(1, 3600)
    await sim.meter_values(1)
    await sim.stop(1, "EVDisconnected")
    return sim


async def test_ported_plugin_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def ok(_: Request) -> tuple[int, Any]:
        return 200, {"ok": True}

    async with http_server(ok) as ops, running_app(_site(tmp_path), tmp_path,
                                                   clock=NoonClock()) as app:
        monkeypatch.setenv("ACME_WEBHOOK", ops.url + "/acme")
        comp = component(app)
        assert comp.report.loaded["acme"] == "customer folder"

        def posted(kind: str) -> list[Any]:
            return [r.json() for r in ops.requests if r.json()["kind"] == kind]

        # Noon: the inverter's alarm (critical), its work order, the quota used up.
        (alarm,) = await wait_for(lambda: posted("alarm"), timeout=10)
        assert alarm["alarm"]["severity"] == "critical" and alarm["rule"] == "pv-high"
        assert alarm["alarm"]["alarm_id"] and alarm["alarm"]["extra"] == {}
        (order,) = await wait_for(lambda: posted("work_order"))
        assert order["priority"] == "high" and order["title"].startswith("pv1: ")
        (quota,) = await wait_for(lambda: posted("quota"), timeout=10)
        assert quota["quota"] == "pv-day" and quota["usage_rate"] >= 100

        # Curtailed below the threshold: the alarm clears, the plugin closes the order.
        await curtail(app)
        db = comp.db_for("acme")

        async def note(subject: str, expected: str | None = None) -> Any:
            async def written() -> Any:
                text = await db.kv().get(f"note:{subject}")
                return text if text is not None and expected in (None, text) else None

            return await wait_until(written, 5, what=f"note {subject} ({expected})")

        await note(f"order:{order['id']}", "completed: alarm cleared")
        await note("status:pv1", "alarm -> online")  # the device left `alarm` with it
        assert (await note("quota:pv-day")).endswith("% used")

        # A charging session on the real central system.
        sim = await _charging_session(app)
        try:
            (charge,) = await wait_for(lambda: posted("charging"), timeout=10)
        finally:
            await sim.disconnect()
        assert (charge["charger"], charge["energy_wh"]) == ("cp-1", 11_000.0)
        await note(f"charging:{charge['id']}", "started on cp-1")

        # The operator's side: a failed inspection opens an order, a report is announced.
        reply = await app.commands.execute("inspections.complete", {
            "device": "pv1", "inspector": "li", "result": "fail", "findings": "loose DC plug"})
        assert reply["ok"]
        await wait_for(lambda: len(posted("work_order")) == 2)
        assert posted("work_order")[1]["title"] == "inspection failed: loose DC plug"
        daily = tmp_path / "daily.pdf"
        daily.write_bytes(b"%PDF-1.4 test")
        reply = await app.commands.execute("reports.generated", {
            "name": "daily", "file_path": str(daily)})
        assert reply["ok"]
        (report,) = await wait_for(lambda: posted("report"))
        assert report == {"kind": "report", "name": "daily", "file": str(daily)}

        # The two KPIs. Energy is the sum of increments: a few seconds of a 10 kW inverter,
        # not a sum of counter readings (each of those is over 1 kWh on the simulator).
        kpis = (await app.commands.execute("kpis", {"period": "today"}))["result"]
        assert kpis["failed"] == []
        assert 0 < kpis["kpis"]["acme_energy_kwh"] < 0.5
        assert kpis["kpis"]["acme_open_work_orders"] == 1  # the inspection's

        # Every one of the twelve hooks ran, none failed or timed out.
        stats = comp.runner.snapshot()["acme"]
        assert sorted(stats) == sorted(BUSINESS_HOOKS)
        for hook, row in stats.items():
            assert row["calls"] >= 1 and row["errors"] == 0 and row["timeouts"] == 0, (hook, row)

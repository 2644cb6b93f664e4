"""One test per hook, each fired from the real code path.

Alarms and device status: a real threshold rule of the rules engine on a simulated inverter
at (shifted) noon; curtailing the inverter with a real write resolves the alarm. Quotas: a
real quota with a 1 Wh budget on a simulated meter. Charging orders: the real OCPP central
system with a simulated charge point on a websocket. Work orders, inspections, reports: the
commands and the ``db`` facade that emit them.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

from drivers.base import registry as driver_registry
from drivers.ocpp.simulator import SimCharger
from gateway.model import Event, event_id
from gateway.rules.converters import unregister_converter
from hooks.db import HooksDB
from hooks.models import AlarmEvent, DataPoint
from tests.drivers.ocpp.conftest import PASSWORD, charger
from tests.hooks.support import (
    SIM,
    NoonClock,
    alarm_config,
    calls,
    component,
    config,
    curtail,
    plugin,
    wait_for,
)
from tests.support.app import running_app


async def test_hook_on_alarm_created(tmp_path: Path) -> None:
    async with running_app(alarm_config(tmp_path), tmp_path, clock=NoonClock()) as app:
        (kw,) = await wait_for(lambda: calls(app, "on_alarm_created"))
        alarm = kw["alarm_event"]
        assert isinstance(alarm, AlarmEvent)
        (listed,) = (await app.commands.execute("alarm.list", {}))["result"]
        assert (alarm.alarm_id, alarm.rule, alarm.kind, alarm.severity, alarm.device,
                alarm.point, alarm.code, alarm.started_ts) == (
            listed["alarm_id"], "pv-high", "threshold", "critical", "pv1", "power_w",
            listed["code"], listed["started_ts"])
        assert alarm.value > 5000
        assert alarm.message == f"pv1 produces {alarm.value:.0f} W, above 5000.0 W"
        assert alarm.state == "active" and alarm.count == 1
        assert alarm.event_id == event_id("alarm_created", alarm.alarm_id)
        assert (kw["device"].id, kw["device"].type) == ("pv1", "simulated")
        assert (kw["rule"].name, kw["rule"].kind, kw["rule"].severity) == (
            "pv-high", "threshold", "critical")
        assert isinstance(kw["db"], HooksDB) and kw["db"].plugin == "acme"
        assert kw["db"].event_id == alarm.event_id


async def test_hook_on_alarm_resolved(tmp_path: Path) -> None:
    async with running_app(alarm_config(tmp_path), tmp_path, clock=NoonClock()) as app:
        (created,) = await wait_for(lambda: calls(app, "on_alarm_created"))
        await curtail(app)
        (kw,) = await wait_for(lambda: calls(app, "on_alarm_resolved"))
        alarm = kw["alarm_event"]
        assert alarm.alarm_id == created["alarm_event"].alarm_id
        assert (alarm.state, alarm.rule, alarm.last_value) == ("resolved", "pv-high", 1000.0)
        assert alarm.resolved_ts >= alarm.started_ts
        assert alarm.event_id == event_id("alarm_resolved", alarm.alarm_id)
        assert kw["device"].id == "pv1"
        assert (await app.commands.execute("alarm.list", {}))["result"] == []


async def test_hook_on_energy_data_received(tmp_path: Path) -> None:
    async with running_app(config(tmp_path), tmp_path) as app:
        got = await wait_for(lambda: len(calls(app, "on_energy_data_received")) >= 20)
        del got
        points = [kw["data_point"] for kw in calls(app, "on_energy_data_received")]
        assert all(isinstance(p, DataPoint) for p in points)
        assert {p.point for p in points} >= {"power_w", "voltage_v", "energy_wh"}
        seqs = [p.seq for p in points]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # every sample, in order
        assert points[0].event_id == f"sample:{seqs[0]}"
        chunks = await app.store.read_telemetry(seqs[0] - 1, 1)
        first = chunks[0].rows[0]
        assert (first[1], first[3]) == (points[0].point, points[0].value)
        assert calls(app, "on_energy_data_received")[0]["device"].type == "simulated"


async def test_hook_on_device_status_changed(tmp_path: Path) -> None:
    async with running_app(alarm_config(tmp_path), tmp_path, clock=NoonClock()) as app:
        def changes() -> list[tuple[str | None, str]]:
            return [(kw["old_status"], kw["new_status"])
                    for kw in calls(app, "on_device_status_changed")]

        # the link comes up, then the rules engine's critical alarm flags the device
        await wait_for(lambda: len(changes()) >= 2)
        await curtail(app)
        await wait_for(lambda: len(changes()) >= 3)
        assert changes() == [(None, "online"), ("online", "alarm"), ("alarm", "online")]
        first = calls(app, "on_device_status_changed")[0]["device"]
        assert (first.id, first.type) == ("pv1", "simulated")
        assert first.event_id  # the id of the device_status_changed event


async def test_hook_on_quota_exceeded(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    cfg["devices"] = [{**SIM, "rated_power_w": 100_000}]  # ~35 kW: 1 Wh in ~0.1 s
    cfg["rules"] = {"quotas": [{"name": "tiny", "devices": ["m1"], "period": "day",
                                "budget_kwh": 0.001, "thresholds": [100]}]}
    days = {dt.datetime.now(dt.UTC).date().isoformat()}
    async with running_app(cfg, tmp_path) as app:
        (kw,) = await wait_for(lambda: calls(app, "on_quota_exceeded"))
        days.add(dt.datetime.now(dt.UTC).date().isoformat())
        quota, usage = kw["quota"], kw["usage"]
        assert (quota.name, quota.devices, quota.period, quota.threshold_pct) == (
            "tiny", ("m1",), "day", 100.0)
        assert quota.period_start in days and quota.period_end == quota.period_start
        assert (usage.period_start, usage.period_end) == (quota.period_start, quota.period_end)
        assert quota.action is None and set(quota.extra) == {"usage_kwh", "usage_pct"}
        assert usage.budget_kwh == quota.budget_kwh == 0.001
        assert usage.usage_kwh >= 0.001 and usage.usage_pct >= 100
        assert quota.event_id == usage.event_id == event_id(
            "quota_exceeded", "tiny", quota.period_start, 100.0)
        (now,) = (await app.commands.execute("quota.usage", {}))["result"]
        assert now["thresholds_fired"] == [100.0]
        assert now["usage_kwh"] >= usage.usage_kwh


async def test_hook_on_work_order_created(tmp_path: Path) -> None:
    async with running_app(config(tmp_path), tmp_path) as app:
        reply = await app.commands.execute(
            "workorders.create", {"title": "replace fuse", "device": "m1", "priority": "high"})
        assert reply["ok"], reply
        (kw,) = await wait_for(lambda: calls(app, "on_work_order_created"))
        order = kw["order"]
        assert (order.order_id, order.title, order.device, order.priority, order.status) == (
            reply["result"]["order_id"], "replace fuse", "m1", "high", "open")


async def test_hook_on_work_order_completed(tmp_path: Path) -> None:
    async with running_app(config(tmp_path), tmp_path) as app:
        created = await app.commands.execute("workorders.create", {"title": "t"})
        oid = created["result"]["order_id"]
        done = await app.commands.execute("workorders.complete",
                                          {"order_id": oid, "resolution": "fixed"})
        assert done["ok"] and done["result"]["status"] == "done"
        (kw,) = await wait_for(lambda: calls(app, "on_work_order_completed"))
        assert (kw["order"].order_id, kw["order"].resolution) == (oid, "fixed")
        again = await app.commands.execute("workorders.complete", {"order_id": oid})
        assert again["ok"]  # idempotent, no second event
        bad = await app.commands.execute("workorders.complete", {"order_id": "nope"})
        assert bad["error"]["code"] == "unknown_work_order"


async def test_hook_on_inspection_completed(tmp_path: Path) -> None:
    async with running_app(config(tmp_path), tmp_path) as app:
        reply = await app.commands.execute("inspections.complete", {
            "device": "m1", "inspector": "li", "result": "fail", "findings": "loose cable"})
        (kw,) = await wait_for(lambda: calls(app, "on_inspection_completed"))
        rec = kw["record"]
        assert (rec.record_id, rec.inspector, rec.result, rec.findings) == (
            reply["result"]["record_id"], "li", "fail", "loose cable")


async def test_hook_on_report_generated(tmp_path: Path) -> None:
    async with running_app(config(tmp_path), tmp_path) as app:
        report = tmp_path / "r.pdf"
        report.write_bytes(b"%PDF-1.4 test")
        reply = await app.commands.execute("reports.generated", {
            "name": "monthly", "file_path": str(report), "period": "2024-05"})
        assert reply["ok"], reply
        (kw,) = await wait_for(lambda: calls(app, "on_report_generated"))
        assert kw["file_path"] == str(report)
        missing = await app.commands.execute("reports.generated", {
            "name": "monthly", "file_path": str(tmp_path / "nope.pdf")})
        assert missing["error"]["code"] == "no_such_file"
        assert (kw["report_task"].name, kw["report_task"].period) == ("monthly", "2024-05")


async def test_hook_calculate_custom_kpis(tmp_path: Path) -> None:
    class Other:
        from hooks.spec import hookimpl

        @hookimpl
        def calculate_custom_kpis(self, period: str) -> dict[str, Any]:
            return {"recorder_period": "mine", "other": 1}  # sync; conflicts with acme

    async with running_app(config(tmp_path), tmp_path) as app:
        def custom(kpis: dict[str, Any]) -> dict[str, Any]:  # without the site's own
            return {k: v for k, v in kpis.items() if not k.startswith("site.")}

        reply = await app.commands.execute("kpis", {"period": "month"})
        assert custom(reply["result"]["kpis"]) == {"recorder_period": "month"}
        component(app).add_plugin(Other(), "other")
        reply = await app.commands.execute("kpis", {"period": "month"})
        result = reply["result"]
        assert custom(result["kpis"]) == {"recorder_period": "mine", "other": 1}  # last first
        assert result["conflicts"] == {"recorder_period": ["other", "acme"]}
        bad = await app.commands.execute("kpis", {"period": "decade"})
        assert bad["error"]["code"] == "bad_arguments"


def ocpp_config(tmp_path: Path) -> dict[str, Any]:
    cfg = config(tmp_path)
    server = {"host": "127.0.0.1", "port": 0, "call_timeout": 2.0,
              "id_tags": [{"id_tag": "TAG-OK"}]}
    cfg["devices"] = [{"id": "csms", "type": "ocpp", "role": "server", "server": server},
                      charger("cp-1").model_dump(exclude_defaults=True)]
    return cfg


async def _charge(app: Any, stop: bool) -> tuple[SimCharger, str]:
    """A simulated 1.6 charge point on the driver's websocket: boot, start, 1 h at 11 kW."""
    server = app.drivers["ocpp"].server
    await asyncio.wait_for(server.ready.wait(), 5)  # bound to a free port by now
    port = server.port
    sim = SimCharger("cp-1", "1.6", f"ws://127.0.0.1:{port}/ocpp", password=PASSWORD)
    await sim.connect()
    assert await sim.boot() == "Accepted"
    sim.state[1].meter_wh = 1000.0
    tx = await sim.start(1, "TAG-OK")
    if stop:
        sim.advance(1, 3600)
        await sim.meter_values(1)
        await sim.stop(1, "EVDisconnected")
    return sim, tx


async def test_hook_on_charging_order_created(tmp_path: Path) -> None:
    async with running_app(ocpp_config(tmp_path), tmp_path) as app:
        sim, tx = await _charge(app, stop=False)
        try:
            (kw,) = await wait_for(lambda: calls(app, "on_charging_order_created"))
        finally:
            await sim.disconnect()
        order = kw["order"]
        assert (order.charger, order.connector, order.id_tag, order.transaction_id,
                order.meter_start_wh) == ("cp-1", 1, "TAG-OK", tx, 1000.0)
        assert isinstance(order.transaction_id, str) and order.started_ts
        assert order.event_id == event_id("charging_order_created", order.order_id)
        assert not order.extra  # the model knows every key the driver sends


async def test_hook_on_charging_order_completed(tmp_path: Path) -> None:
    async with running_app(ocpp_config(tmp_path), tmp_path) as app:
        sim, tx = await _charge(app, stop=True)
        try:
            (kw,) = await wait_for(lambda: calls(app, "on_charging_order_completed"))
        finally:
            await sim.disconnect()
        order = kw["order"]
        (created,) = calls(app, "on_charging_order_created")
        assert order.order_id == created["order"].order_id and order.transaction_id == tx
        assert (order.meter_start_wh, order.meter_stop_wh, order.energy_wh) == (
            1000.0, 12_000.0, 11_000.0)
        assert order.stop_reason == "EVDisconnected"
        assert order.stopped_ts >= order.started_ts
        assert order.event_id == event_id("charging_order_completed", order.order_id)
        assert not order.extra


REGISTRAR = '''
from drivers.base import DriverSpec
from drivers.simulated.driver import SimulatedDevice, SimulatedDriver
from gateway.channels.base import Channel, HttpRequest
from gateway.commands import Command, NoArgs
from gateway.rules.converters import AlarmSignal
from hooks.base import CustomerHooks

SENT = []


def acme_fault(event):
    body = event.body
    yield AlarmSignal("acme_fault", body["inverter"], str(body["code"]),
                      active=body["active"], severity="major", message=body["text"])


class NullChannel(Channel):
    channel_type = "acme-null"

    def validate(self):
        pass

    def build_request(self, message, now_ms):
        raise AssertionError("send is overridden")

    async def send(self, message, now_ms):
        SENT.append(message)


class Registrar(CustomerHooks):
    sent = SENT

    def register_drivers(self):
        return [DriverSpec("acme-sim", SimulatedDevice, SimulatedDriver)]

    def register_channels(self):
        return [NullChannel]

    def register_commands(self):
        async def hello(args):
            return "hello from acme"
        return [Command("acme.hello", NoArgs, hello, "Say hello.")]

    def register_converters(self):
        return {"acme_fault": acme_fault}


hooks = Registrar()
'''


async def test_hook_register_drivers(tmp_path: Path) -> None:
    async with running_app(config(tmp_path, _registrar(tmp_path)), tmp_path):
        assert "acme-sim" in driver_registry()


def _registrar(tmp_path: Path) -> str:
    # Channel types are process-global; each test's plugin folder is a new module.
    return REGISTRAR.replace("acme-null", f"acme-null-{tmp_path.name}")


async def test_hook_register_channels(tmp_path: Path) -> None:
    cfg = alarm_config(tmp_path, _registrar(tmp_path))
    cfg["channels"] = {"targets": {"null": {"type": f"acme-null-{tmp_path.name}"}},
                       "routes": [{"channels": ["null"], "events": ["alarm_created"]}]}
    async with running_app(cfg, tmp_path, clock=NoonClock()) as app:
        sent = await wait_for(lambda: plugin(app).sent)
        (alarm,) = (await app.commands.execute("alarm.list", {}))["result"]
        assert sent[0].event_id == event_id("alarm_created", alarm["alarm_id"])
        assert "pv1 produces" in sent[0].title


async def test_hook_register_commands(tmp_path: Path) -> None:
    async with running_app(config(tmp_path, _registrar(tmp_path)), tmp_path) as app:
        assert await app.commands.execute("acme.hello", {}) == {
            "ok": True, "result": "hello from acme"}


async def test_hook_register_converters(tmp_path: Path) -> None:
    """The rules engine uses a plugin's converter from the first start (it used to copy the
    registry before the plugins registered theirs, so the converter waited for a reload)."""
    unregister_converter("acme_fault")  # registries are per process: not from an earlier test
    try:
        async with running_app(config(tmp_path, _registrar(tmp_path)), tmp_path) as app:
            fault = Event("acme_fault", {"inverter": "m1", "code": 7, "active": True,
                                         "text": "fan stuck"}, device="m1")
            await app.pipeline.add_event(fault)  # the path a driver's ctx.emit_event takes
            (alarm,) = await wait_for(lambda: app.running["rules"].open_alarms())
            assert (alarm["rule"], alarm["device"], alarm["code"], alarm["message"]) == (
                "acme_fault", "m1", "7", "fan stuck")
            listed = await app.commands.execute("plugins.list", {})
            assert listed["result"]["converters"]["names"] == ["acme_fault"]
    finally:
        unregister_converter("acme_fault")

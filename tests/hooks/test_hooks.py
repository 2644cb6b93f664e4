"""One test per hook, each fired from the real code path where one exists.

Alarms and quotas: the rules engine is built in parallel, so these tests commit the
``alarm_created``/``quota_exceeded`` events the way it will (``app.pipeline.add_event``).
Charging orders: the same, for the OCPP driver.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from drivers.base import registry as driver_registry
from gateway.model import Event, event_id
from hooks.db import HooksDB
from hooks.models import AlarmEvent, DataPoint
from tests.hooks.support import calls, component, config, plugin, wait_for
from tests.support.app import running_app

ALARM = {"alarm_id": "a-1", "rule": "overvoltage", "kind": "threshold", "severity": "critical",
         "device": "m1", "point": "voltage_v", "code": "OV", "message": "voltage high",
         "value": 251.2, "started_ts": 1_700_000_000_000, "count": 1}
CHARGE = {"order_id": "o-7", "charger": "cp-1", "connector": 1, "id_tag": "TAG1",
          "transaction_id": 42, "started_ts": 1_700_000_000_000, "meter_start_wh": 1000}


async def _event(app: Any, type_: str, body: dict[str, Any]) -> Event:
    ev = Event(type_, body, device=body.get("device"), id=event_id(type_, *body.values()))
    await app.pipeline.add_event(ev)
    return ev


async def test_hook_on_alarm_created(tmp_path: Path) -> None:
    async with running_app(config(tmp_path), tmp_path) as app:
        ev = await _event(app, "alarm_created", ALARM)
        (kw,) = await wait_for(lambda: calls(app, "on_alarm_created"))
        alarm = kw["alarm_event"]
        assert isinstance(alarm, AlarmEvent)
        assert (alarm.alarm_id, alarm.severity, alarm.value, alarm.event_id) == (
            "a-1", "critical", 251.2, ev.id)
        assert alarm.state == "active"
        assert (kw["device"].id, kw["device"].type, kw["device"].status) == (
            "m1", "simulated", "online")
        assert (kw["rule"].name, kw["rule"].severity) == ("overvoltage", "critical")
        assert isinstance(kw["db"], HooksDB) and kw["db"].plugin == "acme"
        assert kw["db"].event_id == ev.id


async def test_hook_on_alarm_resolved(tmp_path: Path) -> None:
    body = {**ALARM, "resolved_ts": 1_700_000_060_000, "last_value": 229.0}
    del body["value"]
    async with running_app(config(tmp_path), tmp_path) as app:
        ev = await _event(app, "alarm_resolved", body)
        (kw,) = await wait_for(lambda: calls(app, "on_alarm_resolved"))
        alarm = kw["alarm_event"]
        assert (alarm.state, alarm.resolved_ts, alarm.last_value) == (
            "resolved", 1_700_000_060_000, 229.0)
        assert alarm.event_id == ev.id and kw["device"].id == "m1"


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
    async with running_app(config(tmp_path), tmp_path) as app:
        (kw,) = await wait_for(lambda: calls(app, "on_device_status_changed"))
        assert (kw["device"].id, kw["old_status"], kw["new_status"]) == ("m1", None, "online")
        assert kw["device"].event_id  # the id of the device_status_changed event


async def test_hook_on_quota_exceeded(tmp_path: Path) -> None:
    body = {"quota": "hall-a", "devices": ["m1"], "period": "day", "period_start":
            "2024-05-01", "period_end": "2024-05-01", "threshold_pct": 90, "usage_kwh": 95.0,
            "budget_kwh": 100.0, "usage_pct": 95.0, "action": None}
    async with running_app(config(tmp_path), tmp_path) as app:
        ev = await _event(app, "quota_exceeded", body)
        (kw,) = await wait_for(lambda: calls(app, "on_quota_exceeded"))
        quota, usage = kw["quota"], kw["usage"]
        assert (quota.name, quota.devices, quota.period, quota.event_id) == (
            "hall-a", ("m1",), "day", ev.id)
        assert (usage.usage_kwh, usage.usage_pct, usage.budget_kwh) == (95.0, 95.0, 100.0)


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
        assert done["ok"] and done["result"]["status"] == "completed"
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
        await app.commands.execute("reports.generated", {
            "name": "monthly", "file_path": "/var/lib/fieldgate/r.pdf", "period": "2024-05"})
        (kw,) = await wait_for(lambda: calls(app, "on_report_generated"))
        assert kw["file_path"] == "/var/lib/fieldgate/r.pdf"
        assert (kw["report_task"].name, kw["report_task"].period) == ("monthly", "2024-05")


async def test_hook_calculate_custom_kpis(tmp_path: Path) -> None:
    class Other:
        from hooks.spec import hookimpl

        @hookimpl
        def calculate_custom_kpis(self, period: str) -> dict[str, Any]:
            return {"recorder_period": "mine", "other": 1}  # sync; conflicts with acme

    async with running_app(config(tmp_path), tmp_path) as app:
        reply = await app.commands.execute("kpis", {"period": "month"})
        assert reply["result"]["kpis"] == {"recorder_period": "month"}
        component(app).add_plugin(Other(), "other")
        reply = await app.commands.execute("kpis", {"period": "month"})
        result = reply["result"]
        assert result["kpis"] == {"recorder_period": "mine", "other": 1}  # last added first
        assert result["conflicts"] == {"recorder_period": ["other", "acme"]}
        bad = await app.commands.execute("kpis", {"period": "decade"})
        assert bad["error"]["code"] == "bad_arguments"


async def test_hook_on_charging_order_created(tmp_path: Path) -> None:
    async with running_app(config(tmp_path), tmp_path) as app:
        ev = await _event(app, "charging_order_created", CHARGE)
        (kw,) = await wait_for(lambda: calls(app, "on_charging_order_created"))
        order = kw["order"]
        assert (order.order_id, order.charger, order.transaction_id, order.event_id) == (
            "o-7", "cp-1", 42, ev.id)


async def test_hook_on_charging_order_completed(tmp_path: Path) -> None:
    body = {**CHARGE, "stopped_ts": 1_700_000_900_000, "meter_stop_wh": 13_500,
            "energy_wh": 12_500, "stop_reason": "Local"}
    async with running_app(config(tmp_path), tmp_path) as app:
        await _event(app, "charging_order_completed", body)
        (kw,) = await wait_for(lambda: calls(app, "on_charging_order_completed"))
        assert (kw["order"].energy_wh, kw["order"].stop_reason) == (12_500, "Local")


REGISTRAR = '''
from drivers.base import DriverSpec
from drivers.simulated.driver import SimulatedDevice, SimulatedDriver
from gateway.channels.base import Channel, HttpRequest
from gateway.commands import Command, NoArgs
from hooks.base import CustomerHooks

SENT = []


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
        return {"acme.double": lambda v: v * 2}


hooks = Registrar()
'''


async def test_hook_register_drivers(tmp_path: Path) -> None:
    async with running_app(config(tmp_path, _registrar(tmp_path)), tmp_path):
        assert "acme-sim" in driver_registry()


def _registrar(tmp_path: Path) -> str:
    # Channel types are process-global; each test's plugin folder is a new module.
    return REGISTRAR.replace("acme-null", f"acme-null-{tmp_path.name}")


async def test_hook_register_channels(tmp_path: Path) -> None:
    cfg = config(tmp_path, _registrar(tmp_path))
    cfg["channels"] = {"targets": {"null": {"type": f"acme-null-{tmp_path.name}"}},
                       "routes": [{"channels": ["null"], "events": ["alarm_created"]}]}
    async with running_app(cfg, tmp_path) as app:
        ev = await _event(app, "alarm_created", ALARM)
        sent = await wait_for(lambda: plugin(app).sent)
        assert sent[0].event_id == ev.id and "voltage high" in sent[0].title


async def test_hook_register_commands(tmp_path: Path) -> None:
    async with running_app(config(tmp_path, _registrar(tmp_path)), tmp_path) as app:
        assert await app.commands.execute("acme.hello", {}) == {
            "ok": True, "result": "hello from acme"}


async def test_hook_register_converters(tmp_path: Path) -> None:
    async with running_app(config(tmp_path, _registrar(tmp_path)), tmp_path) as app:
        comp = component(app)
        assert comp.converters["acme.double"](21) == 42
        listed = await app.commands.execute("plugins.list", {})
        assert listed["result"]["converters"]["names"] == ["acme.double"]

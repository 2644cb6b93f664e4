"""2.0.1 NotifyEvent from a simulated station on a real websocket: every EventData is recorded
as an ``ocpp_notify_event`` event, and the fault-like ones become alarms through the rules'
converter (pushed through a rules engine on a real store)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gateway import events
from gateway.rules.converters import converters
from tests.drivers.ocpp.conftest import charger, server
from tests.gateway.rules.harness import Harness, devices

TS = "2024-05-01T10:00:00Z"


def datum(event_id: int, component: str, variable: str, value: str, trigger: str = "Delta",
          **kw: Any) -> dict[str, Any]:
    return {"event_id": event_id, "timestamp": TS, "trigger": trigger, "actual_value": value,
            "event_notification_type": "HardWiredNotification",
            "component": {"name": component, "evse": {"id": 1}},
            "variable": {"name": variable}, **kw}


async def test_notify_event_is_recorded_and_a_problem_becomes_an_alarm(
    make_gateway: Any, tmp_path: Path
) -> None:
    gw = await make_gateway([server(), charger("cp-201")])
    sim = gw.sim("cp-201", "2.0.1")
    await sim.connect()
    await sim.boot()
    await sim.notify_event([
        datum(1, "ChargingStation", "Problem", "true", tech_code="E12",
              tech_info="RCD tripped"),
        datum(2, "EVSE", "Power", "7000", trigger="Periodic"),
        datum(3, "TemperatureSensor", "Temperature", "81", trigger="Alerting"),
    ])
    await sim.notify_event([datum(4, "ChargingStation", "Problem", "false", cleared=True)],
                           seq_no=1)
    recorded = [e for e in gw.ctx.events if e.type == "ocpp_notify_event"]
    assert [e.body["event_id"] for e in recorded] == [1, 2, 3, 4]
    first = recorded[0]
    assert first.device == "cp-201" and first.ts_ms == 1714557600000
    assert {k: first.body[k] for k in ("charger", "component", "variable", "actual_value",
                                       "evse", "trigger", "tech_code", "tech_info",
                                       "cleared")} == {
        "charger": "cp-201", "component": "ChargingStation", "variable": "Problem",
        "actual_value": "true", "evse": 1, "trigger": "Delta", "tech_code": "E12",
        "tech_info": "RCD tripped", "cleared": False}
    assert len({e.id for e in recorded}) == 4
    assert all(events.problems(e.type, e.body) == [] for e in recorded)  # the catalogue's body

    # the rules' converter: a problem and an alerting monitor open alarms, the periodic value
    # is no alarm, the cleared problem resolves its alarm
    assert "ocpp_notify_event" in converters()
    h = await Harness(tmp_path / "rules.db", {}, devices("cp-201")).start()
    try:
        await h.driver_events(*recorded[:3])
        created = await h.new_events("alarm_created")
        assert [(e.body["code"], e.body["severity"]) for e in created] == [
            ("1:ChargingStation/Problem", "major"),
            ("1:TemperatureSensor/Temperature", "minor")]
        assert "RCD tripped" in created[0].body["message"]
        await h.driver_events(recorded[3])
        [resolved] = await h.new_events("alarm_resolved")
        assert resolved.body["code"] == "1:ChargingStation/Problem"
    finally:
        await h.stop()

"""External alarm sources through converters, acknowledgement, orphaned alarms."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import pytest

from gateway.model import Event
from gateway.rules.converters import (
    AlarmSignal,
    convert_ocpp_fault,
    decode_fault,
    register_converter,
    unregister_converter,
)
from tests.gateway.rules.conftest import MakeHarness
from tests.gateway.rules.harness import devices


def ocpp(error: str, connector: int = 1, status: str = "Faulted", ts: int = 1) -> Event:
    return Event("ocpp_fault", {"charger": "cp1", "connector": connector, "error_code": error,
                                "vendor_error_code": "E42" if error != "NoError" else None,
                                "status": status, "info": None}, "cp1", ts)


async def test_ocpp_faults_become_alarms(make_harness: MakeHarness) -> None:
    h = await make_harness({}, devices("cp1"))
    await h.driver_events(ocpp("GroundFailure", ts=10))
    await h.driver_events(ocpp("GroundFailure", ts=20))  # repeated: merged
    await h.driver_events(ocpp("OverVoltage", connector=2, ts=25))
    [c1, c2] = await h.new_events("alarm_created")
    assert (c1.body["code"], c1.body["severity"], c1.body["kind"]) == (
        "1:GroundFailure", "critical", "external")
    assert c2.body["code"] == "2:OverVoltage"
    assert c1.body["message"] == "cp1 connector 1: GroundFailure, vendor code E42"
    assert h.engine.book.open[("ocpp_fault", "cp1", "1:GroundFailure")].count == 2
    await h.driver_events(ocpp("HighTemperature", ts=30))  # replaces connector 1's fault
    got = [(e.type, e.body["code"]) for e in await h.new_events("alarm_created",
                                                                  "alarm_resolved")]
    assert got == [("alarm_resolved", "1:GroundFailure"), ("alarm_created", "1:HighTemperature")]
    await h.restart()
    await h.driver_events(ocpp("NoError", status="Available", ts=40))
    [r] = await h.new_events("alarm_resolved")
    assert r.body["code"] == "1:HighTemperature" and r.body["resolved_ts"] == 40
    assert list(h.engine.book.open) == [("ocpp_fault", "cp1", "2:OverVoltage")]
    # what the OCPP driver sends when a connector leaves Faulted
    await h.driver_events(Event("ocpp_fault_cleared",
                                {"charger": "cp1", "connector": 2, "status": "Available"},
                                "cp1", 50))
    [r2] = await h.new_events("alarm_resolved")
    assert (r2.body["code"], r2.body["resolved_ts"]) == ("2:OverVoltage", 50)
    assert h.engine.book.open == {}


async def test_plugin_converter_and_a_failing_one(make_harness: MakeHarness) -> None:
    def acme(event: Event) -> Iterable[AlarmSignal]:
        yield AlarmSignal("acme", event.body["unit"], str(event.body["code"]),
                          event.body["active"], severity="minor", message="acme fault")

    def broken(event: Event) -> Iterator[AlarmSignal]:
        raise KeyError("unit")

    register_converter("acme_fault", acme)
    register_converter("broken", broken)
    try:
        h = await make_harness({}, devices("u1"))
        await h.driver_events(Event("acme_fault", {"unit": "u1", "code": 3, "active": True}),
                              Event("broken", {}))
        await h.driver_events(Event("acme_fault", {"unit": "u1", "code": 3, "active": False}))
        assert [e.type for e in await h.events("alarm_created", "alarm_resolved")] == [
            "alarm_created", "alarm_resolved"]
        assert h.engine.converter_errors == 1
        assert len(await h.events("broken")) == 1  # the event itself is kept
    finally:
        unregister_converter("acme_fault")
        unregister_converter("broken")


async def test_converters_can_be_restricted(make_harness: MakeHarness) -> None:
    h = await make_harness({"converters": []}, devices("cp1"))
    await h.driver_events(ocpp("GroundFailure"))
    assert await h.events("alarm_created") == []


async def test_acknowledge_once_and_persisted(make_harness: MakeHarness) -> None:
    rule = {"name": "hi", "devices": ["m1"], "point": "v", "condition": {"op": ">", "value": 1}}
    h = await make_harness({"alarms": [rule]}, devices("m1"))
    await h.feed(("m1", "v", 5))
    [alarm] = h.engine.book.open.values()
    assert h.engine.book.acknowledge(alarm, "ana", 123)
    assert not h.engine.book.acknowledge(alarm, "bob", 124)
    await h.checkpoint()
    [ack] = await h.events("alarm_acknowledged")
    assert ack.body == {"alarm_id": alarm.alarm_id, "rule": "hi", "device": "m1", "by": "ana",
                        "ts": 123}
    await h.restart()
    assert h.engine.book.by_id[alarm.alarm_id].acked_by == "ana"


def test_decode_fault() -> None:
    assert decode_fault(0b101, "bitmask", {}, [0]) == {0: "bit 0", 2: "bit 2"}
    assert decode_fault(5.0, "enum", {5: "grid"}, [0]) == {5: "grid"}
    assert decode_fault(0, "enum", {}, [0]) == {}
    assert decode_fault(-1, "bitmask", {63: "top"}, [0]) == {63: "top"}
    for bad in (1.5, "3", None, True):
        with pytest.raises(ValueError):
            decode_fault(bad, "enum", {}, [0])


def test_ocpp_faulted_without_error_code() -> None:
    [sig] = convert_ocpp_fault(ocpp("NoError", status="Faulted"))
    assert sig.active and sig.code == "1:Faulted"

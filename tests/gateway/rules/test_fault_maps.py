"""``kind: fault`` rules without ``codes`` take the texts from the point's own enum/bitmask map
in a real Modbus device config (listed points and profile points); end to end against the
Modbus simulator."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from drivers.modbus.config import ModbusDeviceConfig
from drivers.modbus.datatypes import Function
from drivers.modbus.simulator import ModbusSimulator, SimUnit
from gateway.errors import StartupError
from gateway.runtime import App
from tests.gateway.rules.conftest import MakeHarness
from tests.gateway.rules.harness import devices
from tests.support.app import running_app
from tests.support.wait import wait_until

PROFILE = {
    "name": "Acme PV-10 inverter (test map)",
    "source": "Acme PV-10 Modbus map rev 3, a made-up device for the rules tests",
    "defaults": {"function": "holding", "type": "uint16"},
    "points": [
        {"name": "power_w", "address": 0, "type": "int32"},
        {"name": "state", "address": 2,
         "enum": {0: "off", 1: "running", 5: "grid fault", 7: "insulation fault"}},
        {"name": "fault_bits", "address": 3,
         "bitmask": {0: "over temperature", 3: "fan failure", 7: "grid lost"}},
        {"name": "warnings", "address": 4},
    ],
}


@pytest.fixture
def profile_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "profiles"
    d.mkdir()
    (d / "acme-pv10.yaml").write_text(yaml.safe_dump(PROFILE))
    monkeypatch.setenv("FIELDGATE_PROFILE_DIR", str(d))
    return d


def inverter(port: int = 502, **kw: Any) -> ModbusDeviceConfig:
    return ModbusDeviceConfig.model_validate({
        "id": "pv-1", "host": "127.0.0.1", "port": port, "profile": "acme-pv10", **kw})


def fault_rule(**kw: Any) -> dict[str, Any]:
    return {"name": "inv-faults", "kind": "fault", "devices": ["pv-*"],
            "point": "fault_bits", "mode": "bitmask", "severity": "critical", **kw}


async def test_bitmask_texts_from_the_profile_point(profile_dir: Path,
                                                    make_harness: MakeHarness) -> None:
    h = await make_harness({"alarms": [fault_rule()]}, [inverter()])
    await h.feed(("pv-1", "fault_bits", 0b1000_1011))  # bit 1 is not in the map: no alarm
    created = await h.new_events("alarm_created")
    assert sorted((e.body["code"], e.body["message"]) for e in created) == [
        ("0", "pv-1 fault_bits: over temperature (code 0)"),
        ("3", "pv-1 fault_bits: fan failure (code 3)"),
        ("7", "pv-1 fault_bits: grid lost (code 7)")]
    h.clock.advance(1)
    await h.feed(("pv-1", "fault_bits", 0b1000))
    assert sorted(e.body["code"] for e in await h.new_events("alarm_resolved")) == ["0", "7"]


async def test_enum_from_a_listed_point_overriding_the_profile(
        profile_dir: Path, make_harness: MakeHarness) -> None:
    dev = inverter(points=[{"name": "state", "address": 2, "enum": {0: "off", 9: "arc fault"}}])
    rule = fault_rule(point="state", mode="enum", ok=[0, 1],
                      message="{device_name}: {text} ({code})")
    h = await make_harness({"alarms": [rule]}, [dev])
    await h.feed(("pv-1", "state", 9))
    h.clock.advance(1)
    await h.feed(("pv-1", "state", 5))  # in the profile's map, not in the listed point's
    got = [(e.type, e.body["message"]) for e in await h.events("alarm_created",
                                                                "alarm_resolved")]
    assert got == [("alarm_created", "pv-1: arc fault (9)"),
                   ("alarm_resolved", "pv-1: arc fault (9)"),
                   ("alarm_created", "pv-1: code 5 (5)")]


async def test_the_rules_own_codes_win(profile_dir: Path, make_harness: MakeHarness) -> None:
    h = await make_harness({"alarms": [fault_rule(codes={3: "Lüfter defekt"})]}, [inverter()])
    await h.feed(("pv-1", "fault_bits", 0b1001))
    [created] = await h.events("alarm_created")
    assert created.body["code"] == "3" and "Lüfter defekt" in created.body["message"]


@pytest.mark.parametrize(("rule", "dev", "hint"), [
    (fault_rule(point="warnings"), "modbus", "add `bitmask:` to point 'warnings'"),
    (fault_rule(point="state"), "modbus", "has an enum map: set `mode: enum`"),
    (fault_rule(point="nope"), "modbus", "defines no point 'nope'"),
    (fault_rule(), "plain", "has no point maps"),
], ids=["point without a map", "mode mismatch", "unknown point", "device without maps"])
async def test_no_map_anywhere_is_a_startup_error(profile_dir: Path, make_harness: MakeHarness,
                                                  rule: dict[str, Any], dev: str,
                                                  hint: str) -> None:
    devs = [inverter()] if dev == "modbus" else devices("pv-1")
    with pytest.raises(StartupError) as info:
        await make_harness({"alarms": [rule]}, devs)
    assert "alarm rule 'inv-faults'" in str(info.value) and "pv-1" in str(info.value)
    assert hint in info.value.hint


async def test_end_to_end_with_the_modbus_simulator(profile_dir: Path, tmp_path: Path) -> None:
    """Gateway polls a simulated inverter; setting fault bits in its registers raises one
    alarm per bit with the profile's texts; clearing them resolves."""
    sim = ModbusSimulator([SimUnit(1, list(inverter().all_points().values()), animate=False)])
    port = await sim.start()
    config = {
        "devices": [{"id": "pv-1", "type": "modbus", "host": "127.0.0.1", "port": port,
                     "profile": "acme-pv10", "interval": 0.05, "timeout": 0.5}],
        "rules": {"alarms": [fault_rule()]},
    }
    try:
        async with running_app(config, tmp_path) as app:
            sim.set_point(1, "fault_bits", 0b1001)
            created = await _wait_events(app, "alarm_created", 2)
            assert sorted(e.body["message"] for e in created) == [
                "pv-1 fault_bits: fan failure (code 3)",
                "pv-1 fault_bits: over temperature (code 0)"]
            assert app.status.current("pv-1").value == "alarm"
            sim.set_registers(1, Function.HOLDING, 3, [0])
            resolved = await _wait_events(app, "alarm_resolved", 2)
            assert sorted(e.body["code"] for e in resolved) == ["0", "3"]
    finally:
        await sim.stop()


async def _wait_events(app: App, kind: str, n: int, timeout: float = 5) -> list[Any]:
    await app.store.register_consumer("t")

    async def enough() -> list[Any] | None:
        evs = [se.event for se in await app.store.read_events("t", 10_000)
               if se.event.type == kind]
        return evs if len(evs) >= n else None

    return await wait_until(enough, timeout, what=f"{n} {kind} events")

"""Config: the README sample validates, every profile loads and is served and read back."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from drivers.base import BUILTIN_DRIVERS
from drivers.modbus import SPEC
from drivers.modbus.config import ModbusDeviceConfig
from drivers.modbus.profiles import known_profiles, load_profile
from gateway.model import Quality

from .support import device, running, serving

ROOT = Path(__file__).resolve().parents[3]
SAMPLE = ROOT / "drivers" / "modbus" / "sample.yaml"


def test_readme_includes_the_sample_verbatim() -> None:
    readme = (ROOT / "drivers" / "modbus" / "README.md").read_text(encoding="utf-8")
    assert SAMPLE.read_text(encoding="utf-8").strip() in readme


def test_sample_config_validates_against_the_registered_model() -> None:
    assert "modbus" in BUILTIN_DRIVERS and SPEC.name == "modbus"
    spec = SPEC
    devices = [spec.config_model.model_validate(d) for d in yaml.safe_load(SAMPLE.read_text())]
    assert [d.id for d in devices] == ["meter-main", "pv-inverter", "heat-pump"]
    heat = devices[2]
    assert isinstance(heat, ModbusDeviceConfig)
    assert heat.bus_key == "rtu:///dev/ttyUSB0"
    points = heat.all_points()
    assert points["state"].describe_code(3) == ["fault"]
    assert points["faults"].describe_code(0b100001) == ["high pressure", "sensor fault"]
    assert len(devices[0].all_points()) > 20  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "change,message",
    [
        ({"profile": "no-such-meter"}, "unknown profile 'no-such-meter'.*eastron-sdm630"),
        ({"host": None}, "needs 'host'"),
        ({"transport": "rtu"}, "needs 'serial'"),
        ({"points": []}, "needs 'points' or a 'profile'"),
        ({"max_registers": 126}, "less than or equal to 125"),
        ({"points": [{"name": "a", "address": 0}, {"name": "a", "address": 1}]}, "twice"),
        ({"unreadable": [{"start": 0, "end": 3}]}, "unreadable range"),
        ({"bogus": 1}, "Extra inputs"),
    ],
)
def test_bad_device_config_is_a_clear_error(change: dict[str, object], message: str) -> None:
    base: dict[str, object] = {"id": "d", "type": "modbus", "host": "h",
                               "points": [{"name": "p", "address": 2}]}
    base.update(change)
    with pytest.raises(ValueError, match=message):
        ModbusDeviceConfig.model_validate(base)


def test_at_least_six_profiles_each_naming_its_source() -> None:
    names = known_profiles()
    assert len(names) >= 6
    for name in names:
        profile = load_profile(name)
        assert len(profile.source) > 40, name
        assert profile.points


@pytest.mark.parametrize("name", known_profiles())
async def test_profile_is_served_and_read_back(name: str) -> None:
    cfg = device(profile=name)
    async with serving(cfg) as (_sim, [cfg]), running([cfg]) as (drv, ctx):
        want = set(cfg.all_points())
        await ctx.wait_for(lambda c: want <= {s.point for s in c.samples}, 5)
    assert all(s.quality is Quality.GOOD for s in ctx.samples), name
    volts = [s.value for s in ctx.samples if s.point.startswith("voltage_l1")]
    assert all(200 < float(v) < 260 for v in volts), (name, volts)  # type: ignore[arg-type]
    assert drv.requests_per_cycle() <= 4

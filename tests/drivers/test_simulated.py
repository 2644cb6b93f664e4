"""The simulated driver: plausible values, monotonic energy, and its documented sample."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import yaml

from drivers.simulated import SimulatedDevice, SimulatedDriver
from drivers.testing import RecordingContext
from gateway.model import DeviceStatus

HERE = Path(__file__).resolve().parents[2] / "drivers" / "simulated"


async def test_energy_only_increases_and_power_is_plausible() -> None:
    ctx = RecordingContext()
    devices = [SimulatedDevice(id="m", type="simulated", interval=0.01, seed=1),
               SimulatedDevice(id="pv", type="simulated", kind="inverter", interval=0.01,
                               extra_points=10)]
    driver = SimulatedDriver(devices, ctx)
    tasks = [asyncio.create_task(factory()) for _, factory in driver.tasks()]
    await ctx.wait_for(lambda c: len(c.batches) >= 40)
    for task in tasks:
        task.cancel()
    energy = [s.value for s in ctx.samples if s.device == "m" and s.point == "energy_wh"]
    assert len(energy) >= 10
    assert all(b >= a for a, b in itertools.pairwise(energy))
    power = [s.value for s in ctx.samples if s.device == "m" and s.point == "power_w"]
    assert all(isinstance(p, float) and 0 < p <= 15_000 for p in power)
    assert ctx.status_of("m") is DeviceStatus.ONLINE
    pv_points = {s.point for s in ctx.samples if s.device == "pv"}
    assert len(pv_points) == 5 + 10


async def test_write_power_limit_caps_inverter() -> None:
    ctx = RecordingContext()
    driver = SimulatedDriver([SimulatedDevice(id="pv", type="simulated", kind="inverter")], ctx)
    assert await driver.write("pv", "power_limit_w", 100) == 100.0
    assert driver.models["pv"].values(ctx.clock.now_ms(), 1)["power_w"] <= 100.0


def test_readme_sample_is_valid() -> None:
    sample = (HERE / "sample.yaml").read_text()
    assert sample in (HERE / "README.md").read_text(), "the README includes sample.yaml"
    for device in yaml.safe_load(sample)["devices"]:
        SimulatedDevice.model_validate(device)


def _fraction(value: object) -> str:
    return repr(value).split(".")[1]


def test_extra_values_of_each_kind() -> None:
    def tick(kind: str) -> list[object]:
        cfg = SimulatedDevice(id="m", type="simulated", extra_points=60, extra_values=kind,
                              seed=3)
        return SimulatedDriver([cfg], RecordingContext()).models["m"].extra_values()

    shared = tick("shared")
    assert len({_fraction(v) for v in shared}) == 1  # what flatters compression
    decimals = tick("decimals")
    assert len(decimals) == 60 and all(isinstance(v, float) for v in decimals)
    assert all(len(_fraction(v)) <= 3 for v in decimals)
    assert {len(_fraction(v)) for v in decimals} == {1, 2, 3}  # up to rounding zeros
    assert len({_fraction(v) for v in decimals}) > 30  # independent, not shared digits
    assert max(decimals) > 1_000 > 100 > min(decimals)  # type: ignore[operator]
    floats = tick("floats")
    assert sum(len(_fraction(v)) >= 10 for v in floats) > 50

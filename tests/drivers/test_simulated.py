"""The simulated driver: plausible values, monotonic energy, and its documented sample."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import yaml

from drivers.simulated import SimulatedDevice, SimulatedDriver
from drivers.simulated.driver import POINTS
from drivers.testing import RecordingContext
from gateway.control import send_command
from gateway.model import DeviceStatus
from tests.support.app import running_app

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


async def test_write_answers_not_writable_for_a_reported_point(tmp_path: Path) -> None:
    """Through a real gateway and its control socket: the writable point is written, every
    point the device reports (fixed or extra) is ``not_writable``, and a point it does not
    have is ``unknown_point``."""
    site = {"devices": [{"id": "pv", "type": "simulated", "kind": "inverter",
                         "extra_points": 3, "interval": 0.05}]}
    async with running_app(site, tmp_path) as app:
        async def write(point: str, value: object) -> dict[str, object]:
            return await send_command(app.state_dir, "write",
                                      {"device": "pv", "point": point, "value": value})

        assert (await write("power_limit_w", 500))["result"] == \
            {"device": "pv", "point": "power_limit_w", "written": 500.0}
        for point in (*POINTS, "sim_00000", "sim_00002"):
            refused = await write(point, 1)
            assert refused["error"]["code"] == "not_writable", (point, refused)
            assert f"point '{point}' is read-only" in refused["error"]["message"]
        for point in ("nope", "sim_00003", "sim_3"):
            unknown = await write(point, 1)
            assert unknown["error"]["code"] == "unknown_point", (point, unknown)
        bad = await write("power_limit_w", "high")
        assert bad["error"]["code"] == "write_failed"
        assert "takes a number of watts" in bad["error"]["message"]


def test_the_reported_points_are_the_documented_ones() -> None:
    model = SimulatedDriver([SimulatedDevice(id="m", type="simulated")],
                            RecordingContext()).models["m"]
    assert tuple(model.values(0, 1)) == POINTS
    readme = (HERE / "README.md").read_text()
    assert all(f"`{p}`" in readme for p in POINTS)


async def test_each_tick_is_one_answered_poll_in_the_devices_statistics() -> None:
    ctx = RecordingContext()
    driver = SimulatedDriver([SimulatedDevice(id="m", type="simulated", interval=0.01,
                                              extra_points=200)], ctx)
    [(_, factory)] = list(driver.tasks())
    task = asyncio.create_task(factory())
    try:
        await ctx.wait_for(lambda c: len(c.batches) >= 20)
        stats = ctx.stats.of("m")
        snap = stats.snapshot()
        # counted just before the batch is handed on: one request per batch, never an error
        assert snap["requests"] == len(ctx.batches)
        assert snap["error_total"] == 0 and snap["last_error"] is None
        assert 0 < snap["latency_ms"]["p50"] <= snap["latency_ms"]["p99"] < 1000
        assert stats.histogram()[2] == snap["requests"]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

"""SunSpec discovery at 40000, 0 and 50000 and decoding with scale factors, on a real server."""

from __future__ import annotations

import pytest

from drivers.modbus.simulator import ModbusSimulator, SimUnit
from drivers.modbus.sunspec import demo_image, encode_model, layout
from gateway.model import DeviceStatus, Quality

from .support import device, running


def test_model_layouts_come_from_pysunspec2_definitions() -> None:
    names = [p["name"] for p in layout(103)]
    assert names[:3] == ["ID", "L", "A"] and "W_SF" in names
    assert len(encode_model(103, {})) == 52  # ID + L + 50
    assert len(encode_model(1, {})) == 68  # ID + L + 66


@pytest.mark.parametrize("base", [40000, 0, 50000])
async def test_discovers_chain_and_decodes_with_scale_factors(base: int) -> None:
    _base, regs = demo_image(0.0, base=base)
    meter = encode_model(203, {"W": 1234, "W_SF": 1, "Hz": 4999, "Hz_SF": -2,
                               "PhVphA": 2311, "V_SF": -1})
    regs = regs[:-2] + meter + [0xFFFF, 0]
    sim = ModbusSimulator([SimUnit(1, [], [], (base, regs), animate=False)])
    port = await sim.start()
    cfg = device(profile="sunspec", port=port)
    try:
        async with running([cfg]) as (_drv, ctx):
            await ctx.wait_for(lambda c: len(c.batches) >= 2, 5)
            assert ctx.status_of("dev") is DeviceStatus.ONLINE
    finally:
        await sim.stop()
    got = {s.point: s for s in ctx.batches[-1]}
    assert all(s.quality is Quality.GOOD for s in got.values())
    assert got["1.Mn"].value == "fieldgate" and got["1.SN"].value == "FG0001"
    assert got["103.W"].value == pytest.approx(4000)
    assert got["103.PhVphA"].value == pytest.approx(230.1)
    assert got["103.Hz"].value == pytest.approx(50.0)
    assert got["103.St"].value == 4  # raw enum code
    # integer registers scaled exactly: the decimal the scale factor means, ints for sf >= 0
    assert got["203.W"].value == 12340 and type(got["203.W"].value) is int
    assert repr(got["203.Hz"].value) == "49.99"
    assert repr(got["203.PhVphA"].value) == "231.1"
    assert "103.W_SF" not in got  # scale factors are applied, not emitted
    assert "103.DCA" not in got  # "not implemented" (0xFFFF) is not a measurement


async def test_no_marker_is_a_device_failure() -> None:
    sim = ModbusSimulator([SimUnit(1, [], [], (40000, [0, 0, 0, 0]), animate=False)])
    port = await sim.start()
    cfg = device(profile="sunspec", port=port, offline_after=1)
    try:
        async with running([cfg]) as (_drv, ctx):
            await ctx.wait_for(lambda c: c.status_of("dev") is DeviceStatus.OFFLINE, 5)
    finally:
        await sim.stop()
    assert "no SunSpec marker" in ctx.statuses[-1][2]

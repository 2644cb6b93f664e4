"""Scaled values at the precision the scale implies: an integer register scaled by 0.1 gives
230.1 (the decimal it means), not 230.10000000000002; ``decimals`` rounds on request."""

from __future__ import annotations

import math
import struct
import zlib
from decimal import ROUND_HALF_EVEN, Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from drivers.modbus import decode
from drivers.modbus.config import POINT, ModbusDeviceConfig
from drivers.modbus.datatypes import Function
from drivers.modbus.plans import PointReader, plan_device
from drivers.modbus.scaling import implied_decimals
from drivers.modbus.sunspec import _scaled
from gateway.model import Quality
from gateway.store.codec import encode_chunk

from .support import device, latest, running, serving

SCALES = ["1", "0.1", "0.01", "0.001", "0.0001", "1e-05", "0.25", "0.5", "2", "10", "0.3",
          "0.125", "1.5"]
OFFSETS = ["0", "-40", "2.5", "-273.15", "0.001", "100"]
RANGES = {"uint16": (0, 0xFFFF), "int16": (-0x8000, 0x7FFF), "uint32": (0, 2**32 - 1),
          "int32": (-2**31, 2**31 - 1), "int64": (-2**63, 2**63 - 1), "uint64": (0, 2**64 - 1)}


def reader(**point: object) -> PointReader:
    return PointReader.of(POINT.validate_python({"name": "p", "address": 0, **point}))


def decimals_of(value: float) -> int:
    exponent = Decimal(repr(value)).normalize().as_tuple().exponent
    assert isinstance(exponent, int)
    return max(0, -exponent)


@settings(deadline=None, max_examples=300)
@given(st.sampled_from(sorted(RANGES)), st.sampled_from(SCALES), st.sampled_from(OFFSETS),
       st.data())
def test_integer_register_gives_the_exact_decimal(kind: str, scale: str, offset: str,
                                                  data: st.DataObject) -> None:
    raw = data.draw(st.integers(*RANGES[kind]))
    value = reader(type=kind, scale=float(scale), offset=float(offset)).value(raw)
    exact = Decimal(raw) * Decimal(scale) + Decimal(offset)
    d = implied_decimals(float(scale), float(offset))
    if d == 0:
        assert type(value) is int and value == exact
    else:
        assert type(value) is float
        assert value == float(exact)  # the float nearest to the decimal it means
        if abs(value) < 1e15:  # beyond that a float prints in exponent form
            assert decimals_of(value) <= d  # and it prints as that decimal, no tail
    # the meaning is the old float product's, to the float's precision
    old = float(raw) * float(scale) + float(offset)
    assert math.isclose(value, old, rel_tol=1e-12, abs_tol=1e-9)


def test_the_usual_cases_print_short() -> None:
    assert reader(scale=0.1).value(2301) == 230.1
    assert repr(reader(scale=0.1).value(2301)) == "230.1"
    assert repr(reader(type="int16", scale=0.01, offset=-400).value(-1)) == "-400.01"
    assert repr(reader(type="uint32", scale=0.001).value(123456789)) == "123456.789"
    assert reader(scale=2).value(1150) == 2300 and type(reader(scale=2).value(1)) is int
    assert reader(type="uint16").value(7) == 7  # no scale: the raw value
    assert reader(type="int16", scale=0.1, offset=-40).value(653) == 25.3


@settings(deadline=None, max_examples=300)
@given(st.sampled_from(["0.001", "0.01", "0.1", "0.25", "1"]), st.integers(0, 4),
       st.integers(-2**31, 2**31 - 1))
def test_decimals_rounds_an_integer_register_ties_to_even(scale: str, decimals: int,
                                                          raw: int) -> None:
    value = reader(type="int32", scale=float(scale), decimals=decimals).value(raw)
    want = (Decimal(raw) * Decimal(scale)).quantize(Decimal(1).scaleb(-decimals),
                                                     rounding=ROUND_HALF_EVEN)
    if decimals == 0:
        assert type(value) is int and value == want
    else:
        assert value == float(want)


def test_decimals_rounds_a_float_register_and_float_registers_are_not_rounded_otherwise() -> None:
    f32 = struct.unpack(">f", struct.pack(">f", 49.98))[0]  # 49.97999954223633
    assert reader(type="float32").value(f32) == f32
    assert reader(type="float32", scale=0.1).value(f32) == f32 * 0.1  # as before
    assert reader(type="float32", decimals=2).value(f32) == 49.98
    assert reader(type="float32", decimals=0).value(f32) == 50
    assert type(reader(type="float32", decimals=0).value(f32)) is int
    assert math.isnan(reader(type="float32", decimals=1).value(math.nan))  # -> a bad sample


@pytest.mark.parametrize("point,why", [
    ({"type": "string", "length": 2, "decimals": 1}, "'decimals' rounds numbers"),
    ({"type": "bool", "bit": 0, "decimals": 1}, "'decimals' rounds numbers"),
    ({"function": "coil", "type": "bool", "decimals": 0}, "'decimals' rounds numbers"),
    ({"decimals": -1}, "greater than or equal to 0"),
    ({"decimals": 16}, "less than or equal to 15"),
])
def test_decimals_on_a_non_number_is_refused(point: dict[str, object], why: str) -> None:
    with pytest.raises(ValidationError, match=why):
        POINT.validate_python({"name": "p", "address": 0, **point})


def test_a_block_with_a_rounding_point_decodes_point_by_point_with_the_same_values() -> None:
    cfg = ModbusDeviceConfig.model_validate({"id": "m", "host": "h", "points": [
        {"name": "v", "address": 0, "type": "uint16", "scale": 0.1},
        {"name": "e", "address": 1, "type": "uint32", "scale": 0.001, "decimals": 1},
        {"name": "f", "address": 3, "type": "float32", "decimals": 2}]})
    [group] = plan_device(cfg, list(cfg.points))
    [(function, block)] = group.blocks
    assert decode.block_unpacker(block) is None  # rounding is a call: not the fast path
    regs = [2301, 1, 0xE240, *struct.unpack(">HH", struct.pack(">f", 49.98))]
    got = {s.point: s.value for s in decode.decode_block("m", function, block, regs, 1)}
    assert got == {"v": 230.1, "e": 123.5, "f": 49.98}


def test_stored_chunk_carries_the_short_decimal() -> None:
    cfg = ModbusDeviceConfig.model_validate({"id": "m", "host": "h", "points": [
        {"name": f"r{i}", "address": i, "type": "uint16", "scale": 0.1} for i in range(3)]})
    [group] = plan_device(cfg, list(cfg.points))
    [(function, block)] = group.blocks
    assert decode.block_unpacker(block) is not None  # the fast path
    samples = decode.decode_block("m", function, block, [2301, 2302, 2303], 7)
    assert [s.value for s in samples] == [230.1, 230.2, 230.3]
    text = zlib.decompress(encode_chunk(samples))
    assert text == (b'[["m","r0",7,230.1,"good"],["m","r1",7,230.2,"good"],'
                    b'["m","r2",7,230.3,"good"]]')


def test_sunspec_scale_factors_are_exact() -> None:
    assert repr(_scaled(2301, -1)) == "230.1"
    assert repr(_scaled(4999, -2)) == "49.99"
    assert _scaled(1234, 1) == 12340 and type(_scaled(1234, 1)) is int
    assert _scaled(1234, 0) == 1234 and type(_scaled(1234, 0)) is int
    assert _scaled(2.5, -1) == 2.5 * 0.1  # a float register: as before


async def test_a_real_device_delivers_the_decimals_its_scale_means() -> None:
    cfg = device(points=[
        {"name": "volts", "address": 0, "type": "uint16", "scale": 0.1},
        {"name": "temp", "address": 1, "type": "int16", "scale": 0.01, "offset": -40},
        {"name": "energy", "address": 2, "type": "uint32", "scale": 0.001, "decimals": 2},
    ])
    async with serving(cfg) as (sim, [cfg]):
        sim.set_registers(1, Function.HOLDING, 0, [2301, (-1234) & 0xFFFF, 1, 0x2345])
        async with running([cfg]) as (_drv, ctx):
            await ctx.wait_for(lambda c: len(c.batches) >= 1, 5)
            values = {p: latest(ctx, p) for p in ("volts", "temp", "energy")}
    assert {p: (s.value, s.quality) for p, s in values.items()} == {
        "volts": (230.1, Quality.GOOD), "temp": (-52.34, Quality.GOOD),
        "energy": (74.56, Quality.GOOD)}  # 74565 * 0.001 = 74.565: a tie, to the even 74.56
    assert repr(values["temp"].value) == "-52.34"

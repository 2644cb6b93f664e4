"""The one-struct-call decode of a plain block gives exactly what decoding point by point gives."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.modbus import datatypes as dt
from drivers.modbus import decode
from drivers.modbus.config import ModbusDeviceConfig
from drivers.modbus.planner import Block
from drivers.modbus.plans import PointReader, plan_device
from gateway.model import PollBatch, Quality

TYPES = [("uint16", 1), ("int16", 1), ("float32", 2), ("uint32", 2), ("int64", 4),
         ("float64", 4)]


def device() -> ModbusDeviceConfig:
    points, addr = [], 0
    for i in range(30):
        kind, size = TYPES[i % len(TYPES)]
        points.append({"name": f"p{i:02d}", "address": addr, "type": kind,
                       "scale": 0.1 if i % 3 == 0 else 1.0, "offset": 2.0 if i % 5 == 0 else 0})
        addr += size + (3 if i % 7 == 0 else 0)  # some gaps, bridged by the planner
    return ModbusDeviceConfig.model_validate({"id": "m", "host": "h", "points": points})


def point_by_point(block: Block[PointReader], data: list[int]) -> list[tuple]:
    buf = dt.registers_to_bytes(data)
    out = []
    for span in block.spans:
        value = span.item.value(span.item.decode(buf, 2 * (span.address - block.address)))
        if isinstance(value, float) and math.isnan(value):
            out.append((span.item.point.name, None, Quality.BAD))
        else:
            out.append((span.item.point.name, value, Quality.GOOD))
    return out


def assert_decodes_as_point_by_point(function: Any, block: Any, regs: list[int]) -> None:
    """The block decode gives the point-by-point names, qualities, values and types."""
    decoded = decode.decode_block("m", function, block, regs, 1)
    want = point_by_point(block, regs)
    if isinstance(decoded, PollBatch):  # every value good: columns, no sample made yet
        assert not decoded.made
        assert len(decoded) == len(want)
        assert all(q is Quality.GOOD for _n, _v, q in want)
        assert list(decoded.names) == [n for n, _v, _q in want]
        for a, (_n, b, _q) in zip(decoded.values, want, strict=True):
            assert a == b and type(a) is type(b)
        assert not decoded.made
    else:
        assert type(decoded) is list
    got = [(s.point, s.value, s.quality) for s in decoded]  # the samples, made on demand
    assert [(n, q) for n, _v, q in got] == [(n, q) for n, _v, q in want]
    for (_n, a, _q), (_m, b, _r) in zip(got, want, strict=True):
        assert a == b or (a is None and b is None)
        assert type(a) is type(b)


@settings(deadline=None)  # a busy machine is not a failure
@given(st.data())
def test_fast_decode_equals_point_by_point(data: st.DataObject) -> None:
    cfg = device()
    [group] = plan_device(cfg, list(cfg.points))
    for function, block in group.blocks:
        assert decode.block_unpacker(block) is not None  # the fast path is taken
        regs = data.draw(st.lists(st.integers(0, 0xFFFF), min_size=block.count,
                                  max_size=block.count))
        assert_decodes_as_point_by_point(function, block, regs)


def test_swapped_orders_take_the_point_by_point_path() -> None:
    cfg = ModbusDeviceConfig.model_validate({"id": "m", "host": "h", "points": [
        {"name": "a", "address": 0, "type": "uint16"},
        {"name": "b", "address": 1, "type": "float32", "order": "CDAB"}]})
    [group] = plan_device(cfg, list(cfg.points))
    [(_function, block)] = group.blocks
    assert decode.block_unpacker(block) is None


ALIKE = [("uint16", 0.1, 0), ("int16", 2, 0), ("int16", 1, 5), ("uint32", 0.01, -40.5),
         ("int32", 3, 0.25), ("float32", 0.1, 0), ("float64", 2.5, 1.0)]


def alike_device(kind: str, scale: float, offset: float) -> ModbusDeviceConfig:
    size = dict([*TYPES, ("int32", 2)])[kind]
    points = [{"name": f"p{i:02d}", "address": i * size, "type": kind, "scale": scale,
               "offset": offset} for i in range(20)]
    return ModbusDeviceConfig.model_validate({"id": "m", "host": "h", "points": points})


@settings(deadline=None, max_examples=30)
@given(st.sampled_from(ALIKE), st.data())
def test_points_scaled_alike_decode_as_point_by_point(
        case: tuple[str, float, float], data: st.DataObject) -> None:
    cfg = alike_device(*case)
    [group] = plan_device(cfg, list(cfg.points))
    [(function, block)] = group.blocks
    assert decode.block_unpacker(block) is not None
    alike = decode._UNPACKERS[id(block.spans)][2][3]
    assert alike is not None  # the one-scaling path is taken
    regs = data.draw(st.lists(st.integers(0, 0xFFFF), min_size=block.count,
                              max_size=block.count))
    assert_decodes_as_point_by_point(function, block, regs)


def test_scalings_equal_in_value_but_not_in_type_are_not_alike() -> None:
    points = [{"name": "a", "address": 0, "type": "uint16", "scale": 2},
              {"name": "b", "address": 1, "type": "float32", "scale": 2}]
    cfg = ModbusDeviceConfig.model_validate({"id": "m", "host": "h", "points": points})
    [group] = plan_device(cfg, list(cfg.points))
    [(_function, block)] = group.blocks
    assert decode.block_unpacker(block) is not None
    _names, linear, _floats, alike = decode._UNPACKERS[id(block.spans)][2]
    assert linear is not None and linear[0] == linear[1] and alike is None, linear

"""Decoding a block read into samples: point by point, or a plain block in one struct call."""

from __future__ import annotations

import logging
import struct
from typing import Any

from drivers.modbus import datatypes as dt
from drivers.modbus.datatypes import Function
from drivers.modbus.planner import Block
from drivers.modbus.plans import PointReader, PollGroup
from gateway.model import Quality, Sample

log = logging.getLogger(__name__)


def bad_samples(device: str, block: Block[PointReader], ts: int) -> list[Sample]:
    return [Sample(device, s.item.point.name, ts, None, Quality.BAD) for s in block.spans]


def dead_samples(device: str, group: PollGroup, ts: int) -> list[Sample]:
    return [Sample(device, r.point.name, ts, None, Quality.BAD) for r in group.dead]


def decode_known(
    device: str, function: Function, block: Block[PointReader], values: dict[int, Any], ts: int
) -> list[Sample]:
    """Decode the spans whose every address was read (by a bisection); the others are bad."""
    out: list[Sample] = []
    for span in block.spans:
        addrs = range(span.address, span.end)
        if all(a in values for a in addrs):
            one = Block(span.address, span.count, (span,))
            out.extend(decode_block(device, function, one, [values[a] for a in addrs], ts))
        else:
            out.append(Sample(device, span.item.point.name, ts, None, Quality.BAD))
    return out


def decode_block(
    device: str, function: Function, block: Block[PointReader], data: list[int] | list[bool],
    ts: int,
) -> list[Sample]:
    out: list[Sample] = []
    if function.is_bit:
        for span in block.spans:
            out.append(Sample(device, span.item.point.name, ts, bool(data[span.address -
                                                                          block.address])))
        return out
    buf = dt.registers_to_bytes(data)
    unpacked = block_unpacker(block)
    if unpacked is not None:
        return decode_unpacked(device, block, unpacked, buf, ts)
    for span in block.spans:
        reader = span.item
        try:
            value = reader.value(reader.decode(buf, 2 * (span.address - block.address)))
        except (ValueError, OverflowError) as err:
            log.debug("modbus %s: cannot decode %s: %s", device, reader.point.name, err)
            out.append(Sample(device, reader.point.name, ts, None, Quality.BAD))
            continue
        if isinstance(value, float) and value != value:  # NaN: the device's "not available"
            out.append(Sample(device, reader.point.name, ts, None, Quality.BAD))
        else:
            out.append(Sample(device, reader.point.name, ts, value, Quality.GOOD))
    return out


# A block whose points are all plain numbers in ABCD order, in address order, decodes with one
# struct call (gaps skipped as pad bytes) instead of one call per point: the poll path's
# largest cost at 125 points per read. Keyed by the block's spans (kept alive here, so the id
# is never reused); bounded, since a re-plan makes new blocks.
_Columns = tuple[tuple[str, ...], tuple[tuple[float, float] | None, ...] | None]
"""The point names of a block in order, and each point's (scale, offset) or None when no
point of the block is scaled."""


_UNPACKERS: dict[int, tuple[object, struct.Struct | None, _Columns]] = {}
_UNPACKERS_MAX = 4096


def block_unpacker(block: Block[PointReader]) -> struct.Struct | None:
    entry = _UNPACKERS.get(id(block.spans))
    if entry is not None and entry[0] is block.spans:
        return entry[1]
    entry = _build(block)
    _UNPACKERS[id(block.spans)] = entry
    return entry[1]


def _build(block: Block[PointReader]) -> tuple[object, struct.Struct | None, _Columns]:
    if len(_UNPACKERS) >= _UNPACKERS_MAX:
        _UNPACKERS.clear()
    fmt, pos = [">"], 0
    unpacker: struct.Struct | None = None
    for span in block.spans:
        point = span.item.point
        spec = dt.DATA_TYPES[point.type]
        offset = span.address - block.address
        if (spec.struct_code is None or point.type == "bool" or point.order.byte_swap
                or point.order.word_swap or offset < pos or spec.registers != span.count):
            break
        if offset > pos:
            fmt.append(f"{2 * (offset - pos)}x")
        fmt.append(spec.struct_code)
        pos = offset + span.count
    else:
        unpacker = struct.Struct("".join(fmt))
    readers = [span.item for span in block.spans]
    names = tuple(r.point.name for r in readers)
    scales = (tuple((r.point.scale, r.point.offset) if r.scaled else None for r in readers)
              if any(r.scaled for r in readers) else None)
    return block.spans, unpacker, (names, scales)


def decode_unpacked(device: str, block: Block[PointReader], unpacker: struct.Struct,
                    buf: bytes, ts: int) -> list[Sample]:
    """One sample per point from one ``struct`` call; NaN (a device's "not available") is bad.

    Samples are built with ``tuple.__new__`` (what ``Sample(...)`` does, without the Python
    frame of the namedtuple's ``__new__``): this runs once per datapoint.
    """
    names, scales = _UNPACKERS[id(block.spans)][2]
    values: Any = unpacker.unpack_from(buf)
    if scales is not None:
        values = [v if so is None else v * so[0] + so[1] for v, so in zip(values, scales,
                                                                           strict=True)]
    new, good, bad = tuple.__new__, Quality.GOOD, Quality.BAD
    return [new(Sample, (device, name, ts, v, good)) if v == v  # NaN is not v
            else new(Sample, (device, name, ts, None, bad))
            for name, v in zip(names, values, strict=True)]

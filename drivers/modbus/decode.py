"""Decoding a block read into samples: point by point, or a plain block in one struct call."""

from __future__ import annotations

import logging
import operator
import struct
from itertools import repeat
from typing import Any

from drivers.modbus import datatypes as dt
from drivers.modbus.datatypes import Function
from drivers.modbus.planner import Block
from drivers.modbus.plans import PointReader, PollGroup
from drivers.modbus.scaling import Linear
from gateway.model import PollBatch, Quality, Sample

log = logging.getLogger(__name__)
_COIL, _DISCRETE = Function.COIL, Function.DISCRETE


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
    device: str, function: Function, block: Block[PointReader],
    data: list[int] | list[bool] | bytes, ts: int,
) -> list[Sample] | PollBatch:
    """The block's samples: a :class:`PollBatch` (columns, no sample made) when its points
    decode in one struct call and every value is good, else a list. ``data`` is the
    registers (a list, or their bytes as ``Bus.read_block`` may give them) or the bits."""
    out: list[Sample] = []
    if function is _COIL or function is _DISCRETE:  # is_bit, without its property call
        for span in block.spans:
            out.append(Sample(device, span.item.point.name, ts, bool(data[span.address -
                                                                          block.address])))
        return out
    buf = dt.registers_to_bytes(data)
    unpacked = block_unpacker(block)
    if unpacked is not None:
        return decode_unpacked(device, block, unpacked, buf, ts)
    return _by_point(device, block, buf, ts)


def _by_point(device: str, block: Block[PointReader], buf: bytes, ts: int) -> list[Sample]:
    out: list[Sample] = []
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
_Columns = tuple[tuple[str, ...], tuple[Linear | None, ...] | None, tuple[int, ...],
                 Linear | None]
"""The point names of a block in order; each point's linear scaling (see
:class:`~drivers.modbus.scaling.Scaling`) or None, or None for all when no point of the block
is scaled; the positions of the float points (the only ones that can be NaN); the one
scaling of every point when all are scaled alike (equal, and of the same number types)."""


#: The block's spans, its struct, its columns, and whether every value is then a finite
#: float (integer registers, all scaled alike to a float: the PollBatch's ``floats``).
_UNPACKERS: dict[int, tuple[object, struct.Struct | None, _Columns, bool]] = {}
_UNPACKERS_MAX = 4096


def block_unpacker(block: Block[PointReader]) -> struct.Struct | None:
    entry = _UNPACKERS.get(id(block.spans))
    if entry is not None and entry[0] is block.spans:
        return entry[1]
    entry = _build(block)
    _UNPACKERS[id(block.spans)] = entry
    return entry[1]


def _build(block: Block[PointReader]
           ) -> tuple[object, struct.Struct | None, _Columns, bool]:
    if len(_UNPACKERS) >= _UNPACKERS_MAX:
        _UNPACKERS.clear()
    fmt, pos = [">"], 0
    unpacker: struct.Struct | None = None
    for span in block.spans:
        point = span.item.point
        spec = dt.DATA_TYPES[point.type]
        offset = span.address - block.address
        scaling = span.item.scaling
        if (spec.struct_code is None or point.type == "bool" or point.order.byte_swap
                or point.order.word_swap or offset < pos or spec.registers != span.count
                or (scaling is not None and scaling.linear is None)):
            break
        if offset > pos:
            fmt.append(f"{2 * (offset - pos)}x")
        fmt.append(spec.struct_code)
        pos = offset + span.count
    else:
        unpacker = struct.Struct("".join(fmt))
    readers = [span.item for span in block.spans]
    names = tuple(r.point.name for r in readers)
    linear = tuple(None if r.scaling is None else r.scaling.linear for r in readers)
    floats = tuple(i for i, r in enumerate(readers)
                   if dt.DATA_TYPES[r.point.type].struct_code in ("f", "d"))
    first = linear[0] if linear else None
    alike = first if first is not None and all(
        s is not None and s == first and list(map(type, s)) == list(map(type, first))
        for s in linear) else None
    # (a register is at most 2**64 ~ 1.8e19: below these scales nothing overflows; NaN fails)
    finite = alike is not None and not floats and (
        alike[2] is not None or float in (type(alike[0]), type(alike[1]))) and (
        abs(alike[0]) < 1e280 and abs(alike[1]) < 1e300)
    return (block.spans, unpacker, (names, linear if any(linear) else None, floats, alike),
            finite)


def _scaled_alike(values: Any, linear: Linear) -> Any:
    """``(v * mult + add) / div`` of each value (``/ div`` only when there is one), the same
    operations as the per-point expression (the same results), mapped in C."""
    mult, add, div = linear
    # The constant first: a float's own * and + take an int as it is (the int's would decline
    # it first); IEEE * and + are commutative, so each result is the same.
    if mult != 1 or type(mult) is not int:
        values = map(operator.mul, repeat(mult), values)
    if add != 0 or type(add) is not int:
        values = map(operator.add, repeat(add), values)
    if div is not None:
        values = map(operator.truediv, values, repeat(div))
    return list(values)


def decode_unpacked(device: str, block: Block[PointReader], unpacker: struct.Struct,
                    buf: bytes, ts: int) -> list[Sample] | PollBatch:
    """One value per point from one ``struct`` call; NaN (a device's "not available") is bad.

    This runs once per datapoint. When every value is good the result is a
    :class:`PollBatch` of the columns, and no :class:`Sample` is made (consumers read the
    columns; anyone who iterates gets the samples then). Otherwise a list of samples.
    """
    _spans, _unpacker, (names, linear, floats, alike), finite = _UNPACKERS[id(block.spans)]
    values: Any = unpacker.unpack_from(buf)
    if linear is not None:
        try:
            if alike is None:
                values = [v if s is None else v * s[0] + s[1] if s[2] is None
                          else (v * s[0] + s[1]) / s[2]
                          for v, s in zip(values, linear, strict=True)]
            else:  # every point scaled alike (a register map's usual case): in C, same sums
                values = _scaled_alike(values, alike)
        except OverflowError:  # an absurd scale: let the point-by-point path mark it bad
            return _by_point(device, block, buf, ts)
    if floats and any(values[i] != values[i] for i in floats):  # NaN is not itself
        bad = Quality.BAD
        return [Sample(device, name, ts, None, bad) if v != v else Sample(device, name, ts, v)
                for name, v in zip(names, values, strict=True)]
    return PollBatch(device, ts, names, values if type(values) is list else list(values),
                     finite)


def merge_columns(parts: list[PollBatch], names_cache: dict[tuple[int, ...], tuple[str, ...]]
                  ) -> PollBatch:
    """One PollBatch of a poll's good blocks, in order, from their columns (no sample is
    made). The names tuple of a layout is made once (``names_cache``, keyed by the parts'
    name tuples) so it stays the same object."""
    if len(parts) == 1:
        return parts[0]
    key = tuple(id(p.names) for p in parts)
    names = names_cache.get(key)
    if names is None:
        if len(names_cache) >= 64:  # a re-planned map: the old layouts go
            names_cache.clear()
        names = names_cache[key] = tuple(n for p in parts for n in p.names)
    first = parts[0]
    return PollBatch(first.device, first.ts_ms, names, [v for p in parts for v in p.values],
                     all(p.floats for p in parts))

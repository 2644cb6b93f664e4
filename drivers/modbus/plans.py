"""Read plans of a Modbus device: its points grouped by interval, each group's reads planned
table by table into the fewest blocks, and devices of one shape sharing one plan.

The blocks, spans and decoders of a plan are immutable; a device's :class:`PollGroup` holds
its own list of blocks (a learned hole re-plans that device alone, see :func:`replan`).
"""

from __future__ import annotations

import dataclasses
import functools
import operator
from dataclasses import dataclass, field
from typing import Any

from drivers.modbus import datatypes as dt
from drivers.modbus.config import ModbusDeviceConfig, PointConfig
from drivers.modbus.datatypes import Function
from drivers.modbus.holes import Holes
from drivers.modbus.planner import Block, Span, blocked, plan
from drivers.modbus.scaling import Scaling, scaling
from drivers.modbus.sunspec import SunSpecReader
from gateway.model import Value


@dataclass(slots=True)
class PointReader:
    """A point with its decoder built once."""

    point: PointConfig
    decode: dt.Decoder
    scaling: Scaling | None  # None: the raw value is the value

    @classmethod
    def of(cls, p: PointConfig) -> PointReader:
        decoder = _decoder(p.type, p.order, p.bit, p.length)
        return cls(p, decoder, scaling(p.type, p.scale, p.offset, p.decimals))

    def value(self, raw: dt.Decoded) -> Value:
        """``raw * scale + offset`` at the scale's precision (see :mod:`.scaling`)."""
        if self.scaling is not None:
            return self.scaling.apply(raw)
        return raw


@functools.lru_cache(maxsize=256)
def _decoder(type_name: str, order: dt.Order, bit: int | None, length: int | None) -> dt.Decoder:
    return dt.make_decoder(type_name, order, bit=bit, length=length)  # pure: shared


@dataclass
class PollGroup:
    interval: float
    blocks: list[tuple[Function, Block[PointReader]]]
    next_due: float = 0.0
    sunspec: SunSpecReader | None = None  # the map is discovered on the device
    spans: dict[Function, list[Span[PointReader]]] = field(default_factory=dict)
    dead: list[PointReader] = field(default_factory=list)  # on learned holes: bad, not read


PlanCache = dict[Any, list[PollGroup]]
"""Plans by device shape (see :func:`plan_device`); one per driver, so a reload starts afresh."""


def plan_device(
    cfg: ModbusDeviceConfig, points: list[PointConfig], holes: Holes | None = None,
    cache: PlanCache | None = None,
) -> list[PollGroup]:
    """Group points by interval, then plan each group's reads table by table.

    With a ``cache``, devices of one shape (equal points and equal planning settings: 200
    meters of one profile or one listed map) share one plan: the blocks, spans and decoders
    are immutable, so each device gets its own groups (which a learned hole re-plans) around
    the same blocks. A cache hit costs a key of the points' fields, not a plan.
    """
    key = _shape(cfg, points) if cache is not None and not holes else None
    if key is not None and cache is not None:
        shared = cache.get(key)
        if shared is not None:
            return [PollGroup(g.interval, list(g.blocks), spans=g.spans, dead=list(g.dead))
                    for g in shared]
    by_interval: dict[float, dict[Function, list[Span[PointReader]]]] = {}
    for p in points:
        interval = p.interval or cfg.interval
        table = by_interval.setdefault(interval, {})
        table.setdefault(p.function, []).append(Span(p.address, p.count, PointReader.of(p)))
    groups = []
    for interval, tables in sorted(by_interval.items()):
        group = PollGroup(interval, [], spans=tables)
        replan(cfg, group, holes)
        groups.append(group)
    if key is not None and cache is not None:
        cache[key] = [PollGroup(g.interval, list(g.blocks), spans=g.spans, dead=list(g.dead))
                      for g in groups]
    return groups


_MAPS = ("enum", "bitmask")
_FIELDS = operator.attrgetter(*(f.name for f in dataclasses.fields(PointConfig)
                                 if f.name not in _MAPS))


def _shape(cfg: ModbusDeviceConfig, points: list[PointConfig]) -> Any:
    """What a device's plan depends on, hashable; None when a value cannot be hashed.

    Every field of every point is in it (not only those the plan reads): the shared readers
    carry the first device's point objects, so the points must be equal, not just alike.
    """
    try:
        key = (
            cfg.interval, cfg.max_gap, cfg.max_registers, cfg.max_bits,
            tuple((r.function, r.start, r.end) for r in cfg.unreadable),
            tuple(map(_FIELDS, points)),
            tuple((i, tuple(p.enum.items()), tuple(p.bitmask.items()))
                  for i, p in enumerate(points) if p.enum or p.bitmask),
        )
        hash(key)
    except TypeError:
        return None
    return key


def replan(cfg: ModbusDeviceConfig, group: PollGroup, holes: Holes | None) -> None:
    """Plan (again) around the configured ``unreadable`` ranges and the learned holes; points
    on a learned hole are not read at all (they are emitted bad)."""
    blocks: list[tuple[Function, Block[PointReader]]] = []
    dead: list[PointReader] = []
    for function, spans in group.spans.items():
        unreadable = [
            (r.start, r.end) for r in cfg.unreadable if r.function in (None, function)
        ]
        learned = holes.ranges(function) if holes else []
        live = spans
        if learned:
            live = [s for s in spans if not blocked(s.address, s.end, learned)]
            dead.extend(s.item for s in spans if blocked(s.address, s.end, learned))
        limit = cfg.max_bits if function.is_bit else cfg.max_registers
        for block in plan(live, max_count=limit, max_gap=cfg.max_gap,
                          unreadable=unreadable + learned):
            blocks.append((function, block))
    group.blocks, group.dead = blocks, dead

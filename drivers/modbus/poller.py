"""The poll loop of one bus: every device behind one connection, one request at a time.

Scheduling is a small earliest-deadline loop over (device, interval group) pairs, so a device
with 1 s points and 60 s points costs one task, and devices on one RS-485 line never compete
for it. Failure handling, per device:

- an exception reply marks that block's points BAD and the device stays online (it answered);
- a timeout or garbage reply marks the rest of the cycle BAD and ends the device's cycle at
  once, so a dead unit delays the others by at most its own timeout (x retries+1);
- ``offline_after`` failed cycles in a row mark the device OFFLINE; it is then probed with one
  request at a capped, jittered backoff, and a good probe brings it back ONLINE;
- a lost connection takes every device of the bus offline and is reconnected with backoff.

The loop never dies on a protocol error: everything pymodbus can raise is translated by
:mod:`drivers.modbus.bus`, and anything else is logged with the device and kept going.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import operator
import random
import struct
from dataclasses import dataclass, field
from typing import Any

from drivers.base import DriverContext, PollFailed
from drivers.modbus import datatypes as dt
from drivers.modbus.bus import BadReply, Bus, BusDown, ExceptionReply, RequestTimeout
from drivers.modbus.config import ModbusDeviceConfig, PointConfig
from drivers.modbus.datatypes import Function
from drivers.modbus.holes import HOLE_CODES, Holes, bisect, describe, runs
from drivers.modbus.planner import Block, Span, blocked, plan
from drivers.modbus.sunspec import SunSpecReader
from gateway.model import DeviceStatus, Quality, Sample, Value

log = logging.getLogger(__name__)

SIMULATOR_START_WAIT = 30.0  # seconds a poller waits for its in-process simulator to listen


@dataclass(slots=True)
class PointReader:
    """A point with its decoder built once."""

    point: PointConfig
    decode: dt.Decoder
    scaled: bool

    @classmethod
    def of(cls, p: PointConfig) -> PointReader:
        decoder = _decoder(p.type, p.order, p.bit, p.length)
        return cls(p, decoder, p.scale != 1.0 or p.offset != 0.0)

    def value(self, raw: dt.Decoded) -> Value:
        if self.scaled:
            return float(raw) * self.point.scale + self.point.offset
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
_FIELDS = operator.attrgetter(*(f for f in PointConfig.model_fields if f not in _MAPS))


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


@dataclass
class DeviceState:
    cfg: ModbusDeviceConfig
    groups: list[PollGroup]
    failures: int = 0
    online: bool | None = None
    backoff: float = 0.0
    cycles: int = 0
    last_error: str = ""
    extra_points: dict[str, PointConfig] = field(default_factory=dict)
    logged_exceptions: set[tuple[int, int]] = field(default_factory=set)
    holes: Holes = field(init=False)
    answered: bool = True  # the device answered a read in its last cycle (see _read_blocks)
    holes_loaded: bool = False  # its stored holes are loaded at its first poll

    def __post_init__(self) -> None:
        self.holes = Holes(self.cfg.id, self.cfg.hole_reprobe)


class BusPoller:
    """Runs as one supervised task per bus (``modbus[tcp://10.0.0.5:502]``)."""

    def __init__(self, bus: Bus, devices: list[DeviceState], ctx: DriverContext) -> None:
        self.bus = bus
        self.devices = devices
        self.ctx = ctx
        self._bus_backoff = 0.0
        self._bus_was_down = False
        self.simulators: list[asyncio.Event] = []  # set when this bus's simulators listen

    async def run(self) -> None:
        clock = self.ctx.clock
        await self._simulator_listening()
        now = clock.monotonic()
        for state in self.devices:
            for group in state.groups:
                group.next_due = now
        task = asyncio.current_task()
        while True:
            if task is not None and task.cancelling():
                # Python 3.11's wait_for (inside pymodbus) can swallow a cancel that lands as
                # its reply arrives; the poller would then poll on, "cancelling", forever.
                raise asyncio.CancelledError
            if not self.bus.connected:
                await self._reconnect()
                continue
            state, group = min(
                ((s, g) for s in self.devices for g in s.groups), key=lambda sg: sg[1].next_due
            )
            delay = group.next_due - clock.monotonic()
            if delay > 0:
                await clock.sleep(delay)
            if not state.holes_loaded:  # at its first poll, not all devices' before any
                state.holes_loaded = True
                await self._load_holes(state)
            try:
                await self.poll_group(state, group)
            except BusDown as err:
                log.warning("modbus bus %s: %s; reconnecting", self.bus.key, err.message)
                self.bus.close()
                await self._sleep_backoff()
                continue
            now = clock.monotonic()
            if state.online is False:
                group.next_due = now + self._jitter(state.backoff)
            else:
                group.next_due += group.interval
                if group.next_due < now:  # overran: skip missed cycles instead of bursting
                    group.next_due = now + group.interval

    async def _simulator_listening(self) -> None:
        """Wait (a bounded time) until the in-process simulators of this bus listen, so the
        first connect succeeds instead of failing into backoff (see ModbusDriver.tasks)."""
        if not self.simulators:
            return
        try:
            async with asyncio.timeout(SIMULATOR_START_WAIT):
                for ready in self.simulators:
                    await ready.wait()
        except TimeoutError:
            log.warning("modbus bus %s: its simulator is not listening after %g s; "
                        "connecting anyway (see the simulator's error above)",
                        self.bus.key, SIMULATOR_START_WAIT)

    async def _reconnect(self) -> None:
        try:
            await self.bus.connect()
        except BusDown as err:
            if not self._bus_was_down:
                log.warning(
                    "modbus bus %s is down (%s); its %d device(s) are offline; retrying with "
                    "backoff up to %g s - check the address, cabling or gateway power",
                    self.bus.key, err.message, len(self.devices), self.bus.cfg.reconnect_max,
                )
                self._bus_was_down = True
            for state in self.devices:
                self._set_offline(state, f"bus down: {err.message}", quiet=True)
            await self._sleep_backoff()
            return
        if self._bus_was_down:
            log.info("modbus bus %s is connected again", self.bus.key)
        self._bus_was_down = False
        now = self.ctx.clock.monotonic()
        for state in self.devices:
            for group in state.groups:
                group.next_due = min(group.next_due, now)

    async def _sleep_backoff(self) -> None:
        """Capped exponential backoff; reset only by an answered request, so a gateway that
        accepts connections and drops them at once is not hammered."""
        self._bus_backoff = min(max(self._bus_backoff * 2, 0.25), self.bus.cfg.reconnect_max)
        await self.ctx.clock.sleep(self._jitter(self._bus_backoff))

    @staticmethod
    def _jitter(seconds: float) -> float:
        return seconds * random.uniform(0.8, 1.2)

    async def poll_group(self, state: DeviceState, group: PollGroup) -> None:
        """One cycle of one interval group of one device; emits one batch."""
        cfg = state.cfg
        ts = self.ctx.clock.now_ms()
        if group.sunspec is not None:
            await self._poll_sunspec(state, group.sunspec, ts)
            return
        samples: list[Sample] = []
        planned = blocks = group.blocks  # a learned hole re-plans the group mid-cycle
        dead = _dead(cfg.id, group, ts)
        was_offline = state.online is False
        if was_offline:
            blocks = blocks[:1]  # offline: one probe request, not a cycle of timeouts
        try:
            if not was_offline and state.holes:
                await self._reprobe(state)
            failed = await self._read_blocks(state, blocks, samples, ts)
        except BusDown as err:
            if not was_offline:  # this cycle's values are lost: say so
                lost = [s for _f, b in planned for s in _bad(cfg.id, b, ts)]
                await self.ctx.emit(lost + dead)
            self._failure(state, err.message)
            raise
        if not was_offline:
            samples.extend(dead)
        if failed is not None:
            self._failure(state, failed)
        else:
            self._success(state)
            if len(blocks) < len(group.blocks):  # the probe answered: read the whole cycle
                await self.poll_group(state, group)
                return
        if samples and not (was_offline and failed is not None):  # no bad rows per probe
            await self.ctx.emit(samples)

    async def _read_blocks(
        self, state: DeviceState, blocks: list[tuple[Function, Block[PointReader]]],
        samples: list[Sample], ts: int,
    ) -> str | None:
        """Read the blocks into ``samples``; returns why the cycle failed, if it did.

        Refused blocks are bisected at the end of the cycle, and only if the device answered
        a read in this cycle or the last one: a device that refuses everything (booting, or
        the wrong unit) costs one request per block, not a bisection per cycle, and teaches
        nothing. Holes are learned only when the device answered something in this cycle.
        """
        cfg = state.cfg
        failed: str | None = None
        answered = False
        refused: list[tuple[Function, Block[PointReader], ExceptionReply]] = []
        for function, block in blocks:
            if failed is not None:
                samples.extend(_bad(cfg.id, block, ts))
                continue
            try:
                data = await self.bus.read(cfg, function, block.address, block.count)
            except ExceptionReply as err:
                refused.append((function, block, err))
                continue
            except (RequestTimeout, BadReply) as err:
                failed = err.message
                samples.extend(_bad(cfg.id, block, ts))
                continue
            answered = True
            samples.extend(_decode(cfg.id, function, block, data, ts))
        may_bisect = answered or state.answered
        found: dict[Function, list[int]] = {}
        holed: list[tuple[Block[PointReader], ExceptionReply]] = []
        unexplained: list[tuple[Block[PointReader], ExceptionReply]] = []
        for function, block, reply in refused:
            if failed is not None or not may_bisect or reply.code not in HOLE_CODES:
                unexplained.append((block, reply))
                samples.extend(_bad(cfg.id, block, ts))
                continue
            read = functools.partial(self.bus.read, cfg, function)
            try:
                values, holes = await bisect(read, block.address, block.end - 1)
            except (RequestTimeout, BadReply) as timeout:
                failed = timeout.message
                samples.extend(_bad(cfg.id, block, ts))
                continue
            answered = answered or bool(values)
            if holes:
                found.setdefault(function, []).extend(holes)
                holed.append((block, reply))
            else:  # every half answered: the refusal was passing, and every point is good
                log.debug("modbus device %s: %s, but every part of it answered alone",
                          cfg.id, reply.message)
            samples.extend(decode_known(cfg.id, function, block, values, ts))
        if found and answered:
            await self._learn(state, found, refused[0][2].code)
        else:  # nothing else answered: do not learn, say it as before
            unexplained.extend(holed)
        for block, reply in unexplained:
            key = (block.address, reply.code)
            if key not in state.logged_exceptions:
                state.logged_exceptions.add(key)
                log.warning(
                    "modbus device %s answered %s; its points there are marked bad - "
                    "check the register map or the device's 'unreadable' ranges",
                    cfg.id, reply.message,
                )
        state.answered = answered
        return failed

    async def _learn(self, state: DeviceState, found: dict[Function, list[int]],
                     code: int) -> None:
        """Remember refused addresses, plan around them, store them, and say so once."""
        cfg = state.cfg
        now = self.ctx.clock.now_ms() / 1000
        new = {f: state.holes.learn(f, addrs, now) for f, addrs in found.items()}
        self._replan(state)
        await self._store_holes(state)
        for function, addrs in new.items():
            if not addrs:
                continue
            lost = sorted(
                r.point.name for g in state.groups for r in g.dead
                if r.point.function is function
                and blocked(r.point.address, r.point.address + r.point.count, runs(addrs))
            )
            log.warning(
                "modbus device %s (unit %d on %s) refuses to read %s even alone (exception "
                "code %d); learned and stored: reads now go around it (%d requests per "
                "cycle), %s, and it is read again every %g s - list it under 'unreadable' "
                "in the device config to make this permanent",
                cfg.id, cfg.unit, self.bus.key, describe(function, addrs), code,
                sum(len(g.blocks) for g in state.groups),
                f"its points {', '.join(lost)} are bad" if lost else "no point lies on it",
                cfg.hole_reprobe,
            )

    async def _reprobe(self, state: DeviceState) -> None:
        """Read learned holes that are due again; forget those the device now answers."""
        now = self.ctx.clock.now_ms() / 1000
        due = state.holes.due(now)
        if not due:
            return
        cfg = state.cfg
        healed: list[str] = []
        for function, lo, hi in due:
            read = functools.partial(self.bus.read, cfg, function)
            try:
                try:
                    await read(lo, hi - lo + 1)
                    still: list[int] = []
                except ExceptionReply:
                    still = [lo] if lo == hi else (await bisect(read, lo, hi))[1]
            except (RequestTimeout, BadReply):
                return  # the cycle itself will tell; probe again next cycle
            answers = [a for a in range(lo, hi + 1) if a not in still]
            state.holes.forget(function, answers)
            state.holes.learn(function, still, now)
            if answers:
                healed.append(describe(function, answers))
        if healed:
            self._replan(state)
            log.info("modbus device %s answers %s again; reading it again",
                     cfg.id, "; ".join(healed))
        await self._store_holes(state)

    async def _load_holes(self, state: DeviceState) -> None:
        try:
            await state.holes.load(self.ctx.kv(Holes.KV_NAMESPACE))
        except Exception as err:  # the store's problem must not stop polling
            log.warning("modbus device %s: cannot load its learned unreadable registers (%s); "
                        "they will be learned again", state.cfg.id, err)
        if not state.holes:
            return
        self._replan(state)
        log.info(
            "modbus device %s: reads go around %s, learned unreadable by an earlier run; "
            "re-probed every %g s", state.cfg.id,
            "; ".join(describe(f, [a for g, a in state.holes.refused_at if g is f])
                      for f in Function if state.holes.ranges(f)),
            state.cfg.hole_reprobe,
        )

    async def _store_holes(self, state: DeviceState) -> None:
        try:
            await state.holes.save(self.ctx.kv(Holes.KV_NAMESPACE))
        except Exception as err:  # the store's problem must not stop polling
            log.warning("modbus device %s: cannot store its learned unreadable registers (%s); "
                        "they are used but will be learned again after a restart",
                        state.cfg.id, err)

    @staticmethod
    def _replan(state: DeviceState) -> None:
        for group in state.groups:
            if group.sunspec is None:
                replan(state.cfg, group, state.holes)

    async def _poll_sunspec(self, state: DeviceState, reader: SunSpecReader, ts: int) -> None:
        try:
            samples = await reader.cycle(self.bus, state.cfg, ts)
        except BusDown as err:
            self._failure(state, err.message)
            raise
        except PollFailed as err:  # timeouts, garbage, exception replies, no marker
            self._failure(state, err.message)
            return
        self._success(state)
        if samples:
            await self.ctx.emit(samples)

    def _failure(self, state: DeviceState, reason: str) -> None:
        state.failures += 1
        state.last_error = reason
        if state.online is not False and state.failures >= state.cfg.offline_after:
            self._set_offline(state, reason)
        elif state.online is False:
            state.backoff = min(state.backoff * 2, state.cfg.reconnect_max)

    def _set_offline(self, state: DeviceState, reason: str, quiet: bool = False) -> None:
        if state.online is False:
            return
        if not quiet:
            log.warning(
                "modbus device %s (unit %d on %s) is offline after %d failed cycles: %s; "
                "probing with backoff up to %g s - check power, wiring and the unit id",
                state.cfg.id, state.cfg.unit, self.bus.key, state.failures, reason,
                state.cfg.reconnect_max,
            )
        state.online = False
        state.backoff = min(max(state.cfg.interval, 0.5), state.cfg.reconnect_max)
        self.ctx.set_status(state.cfg.id, DeviceStatus.OFFLINE, reason)

    def _success(self, state: DeviceState) -> None:
        state.cycles += 1
        self._bus_backoff = 0.0
        if state.online is False:
            log.info(
                "modbus device %s (unit %d on %s) is back online", state.cfg.id,
                state.cfg.unit, self.bus.key,
            )
        if state.online is not True:
            self.ctx.set_status(state.cfg.id, DeviceStatus.ONLINE, "")
        state.online = True
        state.failures = 0
        state.backoff = 0.0


def _bad(device: str, block: Block[PointReader], ts: int) -> list[Sample]:
    return [Sample(device, s.item.point.name, ts, None, Quality.BAD) for s in block.spans]


def _dead(device: str, group: PollGroup, ts: int) -> list[Sample]:
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
            out.extend(_decode(device, function, one, [values[a] for a in addrs], ts))
        else:
            out.append(Sample(device, span.item.point.name, ts, None, Quality.BAD))
    return out


def _decode(
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
    unpacked = _unpacker(block)
    if unpacked is not None:
        return _decode_unpacked(device, block, unpacked, buf, ts)
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
_UNPACKERS: dict[int, tuple[object, struct.Struct | None]] = {}
_UNPACKERS_MAX = 4096


def _unpacker(block: Block[PointReader]) -> struct.Struct | None:
    entry = _UNPACKERS.get(id(block.spans))
    if entry is not None and entry[0] is block.spans:
        return entry[1]
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
    _UNPACKERS[id(block.spans)] = (block.spans, unpacker)
    return unpacker


def _decode_unpacked(device: str, block: Block[PointReader], unpacker: struct.Struct,
                     buf: bytes, ts: int) -> list[Sample]:
    out: list[Sample] = []
    good, bad = Quality.GOOD, Quality.BAD
    for span, raw in zip(block.spans, unpacker.unpack_from(buf), strict=True):
        reader = span.item
        value = float(raw) * reader.point.scale + reader.point.offset if reader.scaled else raw
        if value != value:  # NaN: the device's "not available"
            out.append(Sample(device, reader.point.name, ts, None, bad))
        else:
            out.append(Sample(device, reader.point.name, ts, value, good))
    return out

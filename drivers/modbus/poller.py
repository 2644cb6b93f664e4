"""The poll loop of one bus: every device behind one connection, one request at a time.

Scheduling is an earliest-deadline loop over (device, interval group) pairs, kept in a heap
(O(log n) per poll, however many devices share the bus), so a device with 1 s points and 60 s
points costs one task, and devices on one RS-485 line never compete for it. Ties go to the
pair listed first (device order, then interval order). Failure handling, per device:

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
import heapq
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from drivers.base import DriverContext, PollFailed
from drivers.modbus.bus import BadReply, Bus, BusDown, ExceptionReply, RequestTimeout
from drivers.modbus.config import ModbusDeviceConfig, PointConfig
from drivers.modbus.datatypes import Function
from drivers.modbus.decode import (
    bad_samples,
    dead_samples,
    decode_block,
    decode_known,
    merge_columns,
)
from drivers.modbus.holes import HOLE_CODES, Holes, bisect, describe, runs
from drivers.modbus.planner import Block, blocked
from drivers.modbus.plans import PointReader, PollGroup, replan
from drivers.modbus.sunspec import SunSpecReader
from gateway.clock import SystemClock
from gateway.model import DeviceStatus, PollBatch, Sample

log = logging.getLogger(__name__)

SIMULATOR_START_WAIT = 30.0  # seconds a poller waits for its in-process simulator to listen


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
        self._queue: list[tuple[float, int, DeviceState, PollGroup]] = []
        self._names: dict[tuple[int, ...], tuple[str, ...]] = {}  # see merge_columns

    async def run(self) -> None:
        clock = self.ctx.clock
        await self._simulator_listening()
        now = clock.monotonic()
        for state in self.devices:
            for group in state.groups:
                group.next_due = now
        self._schedule()
        queue = self._queue
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        lean_sleep = type(clock) is SystemClock  # see below; a test's clock sleeps its own way
        while True:
            if task is not None and task.cancelling():
                # Python 3.11's wait_for (inside pymodbus) can swallow a cancel that lands as
                # its reply arrives; the poller would then poll on, "cancelling", forever.
                raise asyncio.CancelledError
            if not self.bus.connected:
                await self._reconnect()
                queue = self._queue  # rebuilt
                continue
            _due, order, state, group = queue[0]  # the earliest next_due, first listed on ties
            delay = group.next_due - clock.monotonic()
            if delay > 0:
                if lean_sleep:
                    # asyncio.sleep without its coroutine and its Python wake-up callback (one
                    # sleep a poll): the timer sets the future itself, and is cancelled with it
                    # when the task is (a cancelled future's set_result would raise).
                    wake = loop.create_future()
                    timer = loop.call_later(delay, wake.set_result, None)
                    try:
                        await wake
                    except BaseException:
                        timer.cancel()
                        raise
                else:
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
            heapq.heapreplace(queue, (group.next_due, order, state, group))

    def _schedule(self) -> None:
        """(Re)build the heap of (next_due, order, device, group) from every group's next_due;
        ``order`` (the listing order) breaks ties, as the first listed pair went first."""
        self._queue = [(g.next_due, i, s, g) for i, (s, g) in enumerate(
            (s, g) for s in self.devices for g in s.groups)]
        heapq.heapify(self._queue)

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
                    "modbus bus %s is down (%s); its %s offline; retrying with "
                    "backoff up to %g s - check the address, cabling or gateway power",
                    self.bus.key, err.message,
                    "device is" if len(self.devices) == 1 else f"{len(self.devices)} devices are",
                    self.bus.cfg.reconnect_max,
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
        self._schedule()

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
        parts: list[Sequence[Sample]] = []  # per block in order: a PollBatch when all good
        planned = blocks = group.blocks  # a learned hole re-plans the group mid-cycle
        dead = dead_samples(cfg.id, group, ts) if group.dead else []
        was_offline = state.online is False
        if was_offline:
            blocks = blocks[:1]  # offline: one probe request, not a cycle of timeouts
        try:
            if not was_offline and state.holes.refused_at:  # (Holes.__bool__ without its call)
                await self._reprobe(state)
            failed = await self._read_blocks(state, blocks, parts, ts)
        except BusDown as err:
            if not was_offline:  # this cycle's values are lost: say so
                lost = [s for _f, b in planned for s in bad_samples(cfg.id, b, ts)]
                await self.ctx.emit(lost + dead)
            self._failure(state, err.message)
            raise
        if not was_offline and dead:
            parts.append(dead)
        if failed is not None:
            self._failure(state, failed)
        else:
            self._success(state)
            if len(blocks) < len(group.blocks):  # the probe answered: read the whole cycle
                await self.poll_group(state, group)
                return
        if parts and not (was_offline and failed is not None):  # no bad rows per probe
            columns = [p for p in parts if type(p) is PollBatch]
            if failed is None and len(columns) == len(parts):  # all good: columns, no Sample
                await self.ctx.emit(merge_columns(columns, self._names))
                return
            samples = [s for p in parts for s in p]  # anything bad: a plain list, as always
            if samples:
                await self.ctx.emit(samples)

    async def _read_blocks(
        self, state: DeviceState, blocks: list[tuple[Function, Block[PointReader]]],
        parts: list[Sequence[Sample]], ts: int,
    ) -> str | None:
        """Read the blocks into ``parts`` (a block's samples, or its :class:`PollBatch` when
        every value of it is good: no sample made); returns why the cycle failed, if it did.

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
                parts.append(bad_samples(cfg.id, block, ts))
                continue
            try:
                data = await self.bus.read_block(cfg, function, block.address, block.count)
            except ExceptionReply as err:
                refused.append((function, block, err))
                continue
            except (RequestTimeout, BadReply) as err:
                failed = err.message
                parts.append(bad_samples(cfg.id, block, ts))
                continue
            answered = True
            parts.append(decode_block(cfg.id, function, block, data, ts))
        if not refused:  # the usual cycle: nothing to bisect, learn or log
            state.answered = answered
            return failed
        may_bisect = answered or state.answered
        found: dict[Function, list[int]] = {}
        holed: list[tuple[Block[PointReader], ExceptionReply]] = []
        unexplained: list[tuple[Block[PointReader], ExceptionReply]] = []
        for function, block, reply in refused:
            if failed is not None or not may_bisect or reply.code not in HOLE_CODES:
                unexplained.append((block, reply))
                parts.append(bad_samples(cfg.id, block, ts))
                continue
            read = functools.partial(self.bus.read, cfg, function)
            try:
                values, holes = await bisect(read, block.address, block.end - 1)
            except (RequestTimeout, BadReply) as timeout:
                failed = timeout.message
                parts.append(bad_samples(cfg.id, block, ts))
                continue
            answered = answered or bool(values)
            if holes:
                found.setdefault(function, []).extend(holes)
                holed.append((block, reply))
            else:  # every half answered: the refusal was passing, and every point is good
                log.debug("modbus device %s: %s, but every part of it answered alone",
                          cfg.id, reply.message)
            parts.append(decode_known(cfg.id, function, block, values, ts))
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

"""The Modbus driver: one poll task per bus, writes through the same serialized bus.

Devices are grouped by :attr:`ModbusDeviceConfig.bus_key`; devices on one bus must agree on
the line settings, because there is one connection. Devices with ``simulate: true`` also get a
simulator task serving their profile or points on loopback (the demo site runs on that).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

from drivers.base import (
    Driver,
    DriverContext,
    NotWritable,
    PollFailed,
    TaskFactory,
    UnknownPoint,
    WriteFailed,
    WriteResult,
)
from drivers.modbus import datatypes as dt
from drivers.modbus.bus import Bus
from drivers.modbus.config import SUNSPEC, ModbusDeviceConfig, PointConfig
from drivers.modbus.datatypes import Function
from drivers.modbus.plans import PlanCache, PointReader, PollGroup, plan_device
from drivers.modbus.poller import BusPoller, DeviceState
from drivers.modbus.sunspec import SunSpecReader
from gateway.model import Value

log = logging.getLogger(__name__)

_LINE_FIELDS = ("transport", "serial")


class ModbusDriver(Driver):
    devices: dict[str, ModbusDeviceConfig]  # type: ignore[assignment]

    def __init__(self, devices: Sequence[ModbusDeviceConfig], ctx: DriverContext) -> None:
        super().__init__(devices, ctx)
        self.buses: dict[str, Bus] = {}
        self.pollers: dict[str, BusPoller] = {}
        self.states: dict[str, DeviceState] = {}
        self._simulators: list[tuple[str, TaskFactory]] | None = None
        plans: PlanCache = {}  # devices of one shape share one plan
        by_bus: dict[str, list[ModbusDeviceConfig]] = {}
        for cfg in devices:
            by_bus.setdefault(cfg.bus_key, []).append(cfg)
        for key, cfgs in by_bus.items():
            first = cfgs[0]
            units: dict[int, str] = {}
            for cfg in cfgs:
                for name in _LINE_FIELDS:
                    if getattr(cfg, name) != getattr(first, name):
                        raise ValueError(
                            f"devices {first.id} and {cfg.id} share bus {key} but differ in "
                            f"{name!r}; one line has one set of settings"
                        )
                if cfg.unit in units:
                    raise ValueError(
                        f"devices {units[cfg.unit]} and {cfg.id} both use unit {cfg.unit} "
                        f"on {key}"
                    )
                units[cfg.unit] = cfg.id
            bus = Bus(key, first, ctx.clock.monotonic)
            states = []
            for cfg in cfgs:
                if cfg.profile == SUNSPEC:
                    groups = [PollGroup(cfg.interval, [], sunspec=SunSpecReader())]
                else:
                    groups = plan_device(cfg, list(cfg.all_points().values()), cache=plans)
                state = DeviceState(cfg, groups)
                bus.stats[cfg.id] = ctx.poll_stats(cfg.id)  # one per device, per request
                self.states[cfg.id] = state
                states.append(state)
            self.buses[key] = bus
            self.pollers[key] = BusPoller(bus, states, ctx)

    def tasks(self) -> Iterable[tuple[str, TaskFactory]]:
        if self._simulators is None:  # built once: the pollers wait for these to listen
            self._simulators = []
            if any(c.simulate for c in self.devices.values()):
                # only then: the simulator loads pymodbus.server (and its tables)
                from drivers.modbus.simulator import simulators

                for name, sim, bus_keys in simulators(list(self.devices.values())):
                    for key in bus_keys:
                        self.pollers[key].simulators.append(sim.ready)
                    self._simulators.append((name, sim.run))
        yield from self._simulators
        for key, poller in self.pollers.items():
            yield f"modbus[{key}]", poller.run

    def requests_per_cycle(self) -> int:
        """Reads one full cycle of every group takes (the bench compares this to the plan)."""
        return sum(len(g.blocks) for s in self.states.values() for g in s.groups)

    def _point(self, device: str, point: str) -> tuple[ModbusDeviceConfig, PointConfig]:
        cfg = self.devices.get(device)
        if cfg is None:
            raise UnknownPoint(device, "no such modbus device")
        state = self.states[device]
        points = cfg.all_points()
        if state.extra_points:
            points = {**state.extra_points, **points}
        p = points.get(point)
        if p is None:
            raise UnknownPoint(device, f"no point {point!r}")
        if not p.writable:
            why = ("is read-only" if not p.function.writable
                   else "is not writable here (set writable: true on the point)")
            raise NotWritable(device, f"point {point!r} ({p.function.value} {p.address}) {why}")
        return cfg, p

    async def write(self, device: str, point: str, value: Value) -> WriteResult:
        """Encode (scaling reversed) and write; with ``readback`` return the value read back."""
        cfg, p = self._point(device, point)
        bus = self.buses[cfg.bus_key]
        try:
            await bus.connect()
            async with bus.exclusive():
                await self._write_unlocked(bus, cfg, p, value)
                if not p.readback:
                    return WriteResult(value)
                data = await bus.read_unlocked(cfg, p.function, p.address, p.count)
        except PollFailed as err:
            raise WriteFailed(device, f"write {point}={value!r} failed: {err.message}") from err
        if p.function.is_bit:
            back: Value = bool(data[0])
        else:
            reader = PointReader.of(p)
            back = reader.value(reader.decode(dt.registers_to_bytes(data), 0))
        return WriteResult(value, back, read_back=True)

    async def _write_unlocked(
        self, bus: Bus, cfg: ModbusDeviceConfig, p: PointConfig, value: Value
    ) -> None:
        if value is None:
            raise WriteFailed(cfg.id, f"cannot write None to {p.name}")
        if p.function is Function.COIL:
            await bus.write_coil_unlocked(cfg, p.address, _as_bool(cfg.id, value))
            return
        if p.type == "bool":  # one bit of a holding register: read-modify-write under lock
            [word] = await bus.read_unlocked(cfg, p.function, p.address, 1)
            mask = 1 << (p.bit or 0)
            new = (int(word) | mask) if _as_bool(cfg.id, value) else (int(word) & ~mask)
            await bus.write_registers_unlocked(cfg, p.address, [new])
            return
        raw: dt.Decoded = value
        if p.scale != 1.0 or p.offset != 0.0:
            if isinstance(value, str | bool):
                raise WriteFailed(cfg.id, f"{p.name} needs a number, not {value!r}")
            raw = (float(value) - p.offset) / p.scale
        try:
            words = dt.make_encoder(p.type, p.order, length=p.length)(raw)
        except ValueError as err:
            raise WriteFailed(cfg.id, f"cannot encode {value!r} for {p.name}: {err}") from err
        await bus.write_registers_unlocked(cfg, p.address, words)

    async def close(self) -> None:
        for bus in self.buses.values():
            bus.close()


def _as_bool(device: str, value: Value) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.lower() in ("true", "false", "on", "off", "1", "0"):
        return value.lower() in ("true", "on", "1")
    raise WriteFailed(device, f"{value!r} is not a boolean")

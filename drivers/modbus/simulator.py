"""A real pymodbus server that serves a device's register map with moving values.

Used by the demo (``simulate: true``), the tests and the bench. Each simulated unit gets its
own four tables covering every address from the lowest to the highest point (gaps read as 0,
as on most real devices), except the ``unreadable`` ranges, which answer exception 2 exactly
like a device that refuses them. Values move (sine around a plausible base, counters rise) so
a dashboard shows life. Tests use three extra knobs: :attr:`ModbusSimulator.log` (every
request and response PDU in server order), :attr:`ModbusSimulator.delay` (a unit answers late
or, with ``math.inf``, never) and :meth:`ModbusSimulator.set_point` to pin a value.
"""

from __future__ import annotations

import asyncio
import functools
import math
import struct
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

from pymodbus.constants import ExcCodes
from pymodbus.framer import FramerType
from pymodbus.pdu import ModbusPDU
from pymodbus.simulator import DataType, SimData, SimDevice

from drivers.base import TaskFactory
from drivers.modbus import datatypes as dt
from drivers.modbus.config import SUNSPEC, AddressRange, ModbusDeviceConfig, PointConfig
from drivers.modbus.datatypes import Function


def _import_servers() -> Any:
    """``pymodbus.server``, without aiohttp when nothing else has loaded it.

    The package imports its HTTP simulator's aiohttp (0.24 CPU-s of a simulated site's start,
    against 0.015 without it, measured on a busy 2-core box), which this simulator does not
    use; pymodbus imports it under ``contextlib.suppress(ImportError)``. While
    ``pymodbus.server`` is imported, ``aiohttp`` is marked absent (``None`` in
    ``sys.modules``, Python's own way to say so), then unmarked, so anything that needs
    aiohttp later imports it as usual. Should a newer pymodbus need aiohttp at import, it is
    imported in full instead."""
    if "pymodbus.server" in sys.modules or "aiohttp" in sys.modules:
        import pymodbus.server

        return pymodbus.server
    sys.modules["aiohttp"] = None  # type: ignore[assignment]
    try:
        import pymodbus.server
    except ImportError:
        pass
    else:
        return pymodbus.server
    finally:
        if sys.modules.get("aiohttp", 0) is None:
            del sys.modules["aiohttp"]
    import pymodbus.server

    return pymodbus.server


if TYPE_CHECKING:
    from pymodbus.server import ModbusSerialServer, ModbusTcpServer
else:
    _servers = _import_servers()
    ModbusSerialServer, ModbusTcpServer = _servers.ModbusSerialServer, _servers.ModbusTcpServer

_TABLE = {Function.COIL: 0, Function.DISCRETE: 1, Function.HOLDING: 2, Function.INPUT: 3}
_KEY = {Function.COIL: "c", Function.DISCRETE: "d", Function.HOLDING: "h", Function.INPUT: "i"}
_BASE = {"V": 230.0, "A": 12.0, "W": 2500.0, "kW": 2.5, "Hz": 50.0, "var": 300.0, "VA": 2600.0,
         "°C": 35.0, "%": 50.0}


@dataclass
class SimUnit:
    unit: int
    points: list[PointConfig]
    unreadable: list[AddressRange] = field(default_factory=list)
    sunspec_image: tuple[int, list[int]] | None = None  # (base address, holding registers)
    animate: bool = True  # move values on every tick


def unit_of(cfg: ModbusDeviceConfig) -> SimUnit:
    image = None
    if cfg.profile == SUNSPEC:
        from drivers.modbus.sunspec import demo_image

        image = demo_image()
    return SimUnit(cfg.unit, list(cfg.all_points().values()), list(cfg.unreadable), image)


def _table_data(spans: list[tuple[int, int]], function: Function,
                unreadable: list[AddressRange],
                extra: tuple[int, list[int]] | None) -> list[SimData]:
    """The pymodbus blocks of one table: ``spans`` are the points' [start, end) there."""
    if extra is not None:
        spans = [*spans, (extra[0], extra[0] + len(extra[1]))]
    if not spans:  # pymodbus needs a block per table
        if function.is_bit:
            return [SimData(0, values=False, datatype=DataType.BITS)]
        return [SimData(65000, datatype=DataType.INVALID)]
    if function.is_bit:  # pymodbus bit tables cannot hold invalid addresses
        lo, hi = min(s for s, _ in spans), max(e for _, e in spans)
        return [SimData(lo, count=hi - lo, values=False, datatype=DataType.BITS)]
    lo, hi = min(s for s, _ in spans), max(e for _, e in spans)
    bad = sorted(
        (max(r.start, lo), min(r.end, hi - 1)) for r in unreadable
        if r.function in (None, function) and r.start < hi and r.end >= lo
    )
    kind = DataType.BITS if function.is_bit else DataType.REGISTERS
    zero: bool | int = False if function.is_bit else 0
    out, addr = [], lo
    for start, end in [*bad, (hi, hi)]:
        if start > addr:
            out.append(SimData(addr, count=start - addr, values=zero, datatype=kind))
        if end >= start and start < hi:
            out.append(SimData(start, count=end - start + 1, datatype=DataType.INVALID))
        addr = max(addr, end + 1)
    return out


def _spans(points: list[PointConfig]) -> dict[Function, list[tuple[int, int]]]:
    out: dict[Function, list[tuple[int, int]]] = {f: [] for f in Function}
    for p in points:
        out[p.function].append((p.address, p.address + p.count))
    return out


class ModbusSimulator:
    def __init__(self, units: Iterable[SimUnit], *, host: str = "127.0.0.1", port: int = 0,
                 framer: FramerType = FramerType.SOCKET, serial_port: str | None = None,
                 baudrate: int = 9600) -> None:
        self.units = {u.unit: u for u in units}
        self.host, self.port, self.framer = host, port, framer
        self.serial_port, self.baudrate = serial_port, baudrate
        self.log: list[tuple[str, int, int]] = []  # (recv|send, unit, function code)
        self.delay: dict[int, float] = {}
        self.fail: dict[int, ExcCodes] = {}
        self.server: ModbusTcpServer | ModbusSerialServer | None = None
        self.ready = asyncio.Event()  # set once the server listens (the pollers wait for it)
        self._t0 = time.monotonic()
        self._by_name = {u.unit: {p.name: p for p in u.points} for u in self.units.values()}
        self._movers = {u.unit: _movers(u.points) for u in self.units.values()}

    def _devices(self) -> list[SimDevice]:
        devices = []
        for unit in self.units.values():
            spans = _spans(unit.points)
            tables = tuple(
                _table_data(spans[f], f, unit.unreadable,
                            unit.sunspec_image if f is Function.HOLDING else None)
                for f in (Function.COIL, Function.DISCRETE, Function.HOLDING, Function.INPUT)
            )
            devices.append(SimDevice(unit.unit, simdata=tables,  # type: ignore[arg-type]
                                     action=partial(self._action, unit.unit)))
        if 0 not in self.units:  # other unit ids: like a real line or gateway, nobody is home
            devices.append(SimDevice(0, simdata=[SimData(0, count=65535, values=0,
                                                         datatype=DataType.REGISTERS)],
                                     action=self._absent))
        return devices

    async def _absent(self, *_args: Any) -> ExcCodes | None:
        """A unit id nobody answers to: RTU stays silent, a TCP gateway says 0x0B."""
        if self.serial_port or self.framer is FramerType.RTU:
            await asyncio.sleep(3600)
        return ExcCodes.GATEWAY_NO_RESPONSE

    async def _action(self, unit: int, fc: int, start: int, address: int, count: int,
                      regs: list[int], values: Any) -> ExcCodes | None:
        delay = self.delay.get(unit, 0.0)
        if delay:
            await asyncio.sleep(min(delay, 3600.0))
        return self.fail.get(unit)

    def _trace(self, sending: bool, pdu: ModbusPDU) -> ModbusPDU:
        self.log.append(("send" if sending else "recv", pdu.dev_id, pdu.function_code))
        return pdu

    async def start(self) -> int:
        """Start serving; returns the TCP port (useful with ``port=0``)."""
        if self.serial_port:
            self.server = ModbusSerialServer(
                self._devices(), framer=FramerType.RTU, port=self.serial_port,
                baudrate=self.baudrate, trace_pdu=self._trace,
            )
        else:
            self.server = ModbusTcpServer(self._devices(), framer=self.framer,
                                          address=(self.host, self.port), trace_pdu=self._trace)
        await self.server.serve_forever(background=True)
        sockets = getattr(self.server.transport, "sockets", None)
        if sockets:
            self.port = sockets[0].getsockname()[1]
        for unit in self.units.values():
            if unit.sunspec_image:
                self.set_registers(unit.unit, Function.HOLDING, *unit.sunspec_image)
        self.tick()
        self.ready.set()
        return self.port

    async def stop(self) -> None:
        self.ready.clear()
        if self.server is not None:
            await self.server.shutdown()
            self.server = None

    def _memory(self, unit: int, function: Function) -> tuple[int, list[int]]:
        assert self.server is not None, "start() the simulator first"
        block = self.server.context.devices[unit].block[_KEY[function]]  # type: ignore[union-attr]
        return block[0], block[2]

    def set_registers(self, unit: int, function: Function, address: int, words: list[int]) -> None:
        start, regs = self._memory(unit, function)
        if function.is_bit:
            for i, word in enumerate(words):
                bit = address + i - start * 16
                regs[bit // 16] = regs[bit // 16] & ~(1 << bit % 16) | (bool(word) << bit % 16)
            return
        regs[address - start : address - start + len(words)] = words

    def get_registers(self, unit: int, function: Function, address: int, count: int) -> list[int]:
        start, regs = self._memory(unit, function)
        if function.is_bit:
            return [regs[(address + i - start * 16) // 16] >> ((address + i) % 16) & 1
                    for i in range(count)]
        return regs[address - start : address - start + count]

    def set_point(self, unit: int, point: str, value: dt.Decoded) -> None:
        p = self._by_name[unit][point]
        if p.function.is_bit:
            self.set_registers(unit, p.function, p.address, [int(bool(value))])
        elif p.type == "bool":
            [word] = self.get_registers(unit, p.function, p.address, 1)
            mask = 1 << (p.bit or 0)
            self.set_registers(unit, p.function, p.address,
                               [word | mask if value else word & ~mask])
        else:
            raw = value
            if p.scale != 1.0 or p.offset != 0.0:
                raw = (float(value) - p.offset) / p.scale
            words = dt.make_encoder(p.type, p.order, length=p.length)(raw)
            self.set_registers(unit, p.function, p.address, words)

    def tick(self) -> None:
        """Move every value one step (called periodically by :meth:`run`)."""
        t = time.monotonic() - self._t0
        for unit in self.units.values():
            if not unit.animate:
                continue
            if unit.sunspec_image:
                from drivers.modbus.sunspec import demo_image

                self.set_registers(unit.unit, Function.HOLDING,
                                   *demo_image(t, base=unit.sunspec_image[0]))
            fast, slow = self._movers[unit.unit]
            for function, movers in fast.items():
                start, regs = self._memory(unit.unit, function)
                for address, encode, phase, base, scale, offset, lo, hi in movers:
                    if base is None:  # an energy counter
                        value = 1000.0 + t / 36.0
                    else:
                        value = base * (1 + 0.05 * math.sin(t / 7.0 + phase))
                    if lo is None or hi is None:  # float: the raw value, unclamped
                        raw: float | int = (value - offset) / scale
                    else:
                        raw = min(max(round((value - offset) / scale), lo), hi)
                    words = encode(raw)
                    regs[address - start : address - start + len(words)] = words
            for i, p in slow:
                self.set_point(unit.unit, p.name, _moving(p, t, i))

    async def run(self, period: float = 1.0) -> None:
        """Serve until cancelled, moving values every ``period`` seconds."""
        try:
            await self.start()
        except BaseException:
            self.ready.set()  # keep no poller waiting: it connects and reports what it finds
            raise
        try:
            while True:
                await asyncio.sleep(period)
                self.tick()
        finally:
            await self.stop()


@functools.lru_cache(maxsize=256)
def _encoder(type_name: str, order: dt.Order, length: int | None) -> dt.Encoder:
    """The encoder of a moving number (already rounded and in range); pure, so shared by
    equal points. Big-endian numbers, the common case, skip the general byte shuffling."""
    spec = dt.DATA_TYPES[type_name]
    if order in (dt.Order.ABCD, dt.Order.ABCDEFGH) and spec.struct_code is not None:
        pack = struct.Struct(">" + spec.struct_code).pack
        words = struct.Struct(f">{dt.register_count(type_name, None)}H").unpack

        def encode(value: dt.Decoded) -> list[int]:
            return list(words(pack(value)))

        return encode
    return dt.make_encoder(type_name, order, length=length)


_Mover = tuple[int, dt.Encoder, int, float | None, float, float, int | None, int | None]


def _movers(
    points: list[PointConfig],
) -> tuple[dict[Function, list[_Mover]], list[tuple[int, PointConfig]]]:
    """What :meth:`ModbusSimulator.tick` moves, worked out once: plain numbers in registers
    (the bulk of a map) as precomputed constants of :func:`_moving`, written straight into the
    table; the rest (bits, strings, status codes) by :func:`_moving` and ``set_point``.
    Writable holding registers are left out: they keep what a client wrote. The constants
    depend on a few fields only, so they are worked out once per kind of point."""
    fast: dict[Function, list[_Mover]] = {}
    slow: list[tuple[int, PointConfig]] = []
    kinds: dict[tuple[object, ...], Any] = {}
    for i, p in enumerate(points):
        kind = (p.function, p.writable, p.type, p.order, p.length, p.unit, p.scale, p.offset,
                bool(p.enum or p.bitmask))
        found = kinds.get(kind, _MISSING)
        if found is _MISSING:
            found = kinds[kind] = _mover_of(p)
        if found is None:
            continue
        if found is _SLOW:
            slow.append((i, p))
            continue
        encode, base, lo, hi = found
        fast.setdefault(p.function, []).append(
            (p.address, encode, i, base, p.scale, p.offset, lo, hi))
    return fast, slow


_MISSING, _SLOW = object(), object()


def _mover_of(p: PointConfig) -> Any:
    """None (left alone), _SLOW, or what a fast mover of points like ``p`` shares."""
    if p.function is Function.HOLDING and p.writable:
        return None
    if p.function.is_bit or p.type in ("bool", "string") or p.enum or p.bitmask or not p.scale:
        return _SLOW
    energy = p.unit in ("kWh", "Wh", "kvarh", "varh")
    base = None if energy else _BASE.get(p.unit or "", 100.0)
    lo = hi = None
    if p.type not in ("float32", "float64"):
        bits = 16 * dt.register_count(p.type, None)
        lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if p.type.startswith(
            "int") else (0, (1 << bits) - 1)
    return _encoder(p.type, p.order, p.length), base, lo, hi


def _moving(p: PointConfig, t: float, i: int) -> dt.Decoded:
    if p.type == "bool":
        return int(t / 10 + i) % 2 == 0
    if p.type == "string":
        return "FIELDGATE-SIM"[: 2 * (p.length or 1)]
    if p.enum:
        return min(p.enum)
    if p.bitmask:
        return 0
    scale = p.scale if p.scale else 1.0
    if p.unit in ("kWh", "Wh", "kvarh", "varh"):
        value = 1000.0 + t / 36.0
    else:
        base = _BASE.get(p.unit or "", 100.0)
        value = base * (1 + 0.05 * math.sin(t / 7.0 + i))
    if p.type in ("float32", "float64"):
        return value
    raw = round((value - p.offset) / scale)
    bits = 16 * dt.register_count(p.type, None)
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if p.type.startswith("int") else (
        0, (1 << bits) - 1)
    return min(max(raw, lo), hi) * scale + p.offset


def simulators(
    devices: list[ModbusDeviceConfig],
) -> list[tuple[str, ModbusSimulator, set[str]]]:
    """One in-process simulator per (host, port) of devices with ``simulate: true``: its task
    name, the simulator and the bus keys of its devices."""
    by_addr: dict[tuple[str, int, str], list[ModbusDeviceConfig]] = {}
    for cfg in devices:
        if cfg.simulate and cfg.host:
            by_addr.setdefault((cfg.host, cfg.port, cfg.transport), []).append(cfg)
    out = []
    for (host, port, transport), cfgs in by_addr.items():
        framer = FramerType.SOCKET if transport == "tcp" else FramerType.RTU
        sim = ModbusSimulator([unit_of(c) for c in cfgs], host=host, port=port, framer=framer)
        out.append((f"modbus-sim[{host}:{port}]", sim, {c.bus_key for c in cfgs}))
    return out


def simulator_tasks(devices: list[ModbusDeviceConfig]) -> Iterable[tuple[str, TaskFactory]]:
    """The tasks of :func:`simulators`."""
    for name, sim, _buses in simulators(devices):
        yield name, sim.run

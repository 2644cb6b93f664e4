"""Commissioning commands: ``fieldgate modbus read`` and ``fieldgate modbus scan``.

On site, before writing a config, an installer wants to know two things: which unit ids answer
on this line, and whether register 30001 really is a float in CDAB order. Both commands use the
same bus, planner-free reads and data-type table as the driver, so what they show is what the
driver will decode.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TYPE_CHECKING, Any

from drivers.modbus import datatypes as dt
from drivers.modbus.datatypes import Function, Order

if TYPE_CHECKING:  # pymodbus and pydantic load when a command runs, not at parse time
    from drivers.modbus.config import ModbusDeviceConfig, PointConfig

#: Exception codes a TCP gateway sends for a unit id that does not answer behind it.
GATEWAY_CODES = frozenset({0x0A, 0x0B})


def _line_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("connection (give --host or --serial)")
    g.add_argument("--host", help="TCP host of the device or serial gateway")
    g.add_argument("--port", type=int, default=502, help="TCP port (default 502)")
    g.add_argument("--rtu-over-tcp", action="store_true", help="RTU frames over TCP")
    g.add_argument("--serial", metavar="DEV", help="serial port for RTU, e.g. /dev/ttyUSB0")
    g.add_argument("--baudrate", type=int, default=9600)
    g.add_argument("--parity", choices=["N", "E", "O"], default="N")
    g.add_argument("--stopbits", type=int, choices=[1, 2], default=1)
    g.add_argument("--bytesize", type=int, choices=[7, 8], default=8)
    g.add_argument("--timeout", type=float, default=1.0, help="reply timeout, seconds")


def _device(
    args: argparse.Namespace, unit: int, points: list[dict[str, Any]]
) -> ModbusDeviceConfig:
    from drivers.modbus.config import ModbusDeviceConfig

    cfg: dict[str, Any] = {"id": "cli", "unit": unit, "timeout": args.timeout, "points": points}
    if args.serial:
        cfg |= {"transport": "rtu", "serial": {
            "port": args.serial, "baudrate": args.baudrate, "parity": args.parity,
            "stopbits": args.stopbits, "bytesize": args.bytesize}}
    elif args.host:
        cfg |= {"transport": "rtu-over-tcp" if args.rtu_over_tcp else "tcp",
                "host": args.host, "port": args.port}
    else:
        raise ValueError("give --host HOST (TCP) or --serial DEV (RTU)")
    return ModbusDeviceConfig.model_validate(cfg)


def install_cli(subparsers: Any) -> None:
    modbus = subparsers.add_parser("modbus", help="Modbus commissioning tools")
    sub = modbus.add_subparsers(dest="modbus_command", required=True)

    read = sub.add_parser("read", help="read and decode registers from one unit")
    _line_args(read)
    read.add_argument("--unit", type=int, default=1)
    read.add_argument("--function", choices=[f.value for f in Function], default="holding")
    read.add_argument("--address", type=lambda s: int(s, 0), required=True,
                      help="zero-based protocol address (0x.. accepted)")
    read.add_argument("--count", type=int, default=1, help="number of VALUES to decode")
    read.add_argument("--type", default="uint16", choices=list(dt.DATA_TYPES))
    read.add_argument("--order", default="ABCD", choices=[o.value for o in Order])
    read.add_argument("--length", type=int, help="registers per string value")
    read.add_argument("--scale", type=float, default=1.0)
    read.set_defaults(func=cmd_read)

    scan = sub.add_parser("scan", help="find the unit ids that answer on a line")
    _line_args(scan)
    scan.add_argument("--units", default="1-247", help="range or list, e.g. 1-20 or 1,2,5")
    scan.add_argument("--function", choices=[f.value for f in Function], default="holding")
    scan.add_argument("--address", type=lambda s: int(s, 0), default=0)
    scan.set_defaults(func=cmd_scan)


def cmd_read(args: argparse.Namespace) -> int:
    try:
        function = Function(args.function)
        bit = 0 if args.type == "bool" and not function.is_bit else None
        size = 1 if function.is_bit else dt.register_count(args.type, args.length)
        points = [{"name": f"v{i}", "function": function, "address": args.address + i * size,
                   "type": args.type, "order": args.order, "length": args.length, "bit": bit,
                   "scale": args.scale} for i in range(args.count)]
        cfg = _device(args, args.unit, points)
    except ValueError as err:
        print(f"modbus read: {err}", file=sys.stderr)
        return 2
    return asyncio.run(_read(cfg, list(cfg.all_points().values()), size))


async def _read(cfg: ModbusDeviceConfig, points: list[PointConfig], size: int) -> int:
    from drivers.modbus.bus import Bus, BusDown, ExceptionReply, RequestTimeout

    bus = Bus(cfg.bus_key, cfg)
    p0 = points[0]
    total = size * len(points)
    try:
        await bus.connect()
        data = await bus.read(cfg, p0.function, p0.address, total)
    except (BusDown, RequestTimeout, ExceptionReply) as err:
        print(f"modbus read: {cfg.bus_key} unit {cfg.unit}: {err.message}", file=sys.stderr)
        return 1
    except Exception as err:  # the boundary already translated; anything else is garbage
        print(f"modbus read: {cfg.bus_key} unit {cfg.unit}: {err}", file=sys.stderr)
        return 1
    finally:
        bus.close()
    buf = b"" if p0.function.is_bit else dt.registers_to_bytes(data)
    for i, p in enumerate(points):
        if p.function.is_bit:
            print(f"{p.address}\t{int(data[i])}\t{bool(data[i])}")
            continue
        words = data[i * size:(i + 1) * size]
        raw = dt.make_decoder(p.type, p.order, bit=p.bit, length=p.length)(buf, 2 * i * size)
        value = raw * p.scale if p.scale != 1.0 and not isinstance(raw, str) else raw
        print(f"{p.address}\t{' '.join(f'{w:04x}' for w in words)}\t{value!r}")
    return 0


def _units(text: str) -> list[int]:
    units: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        units.extend(range(int(lo), int(hi or lo) + 1))
    if not units or not all(0 <= u <= 255 for u in units):
        raise ValueError(f"unit ids must be within 0..255: {text!r}")
    return units


def cmd_scan(args: argparse.Namespace) -> int:
    try:
        units = _units(args.units)
        point = {"name": "probe", "function": args.function, "address": args.address,
                 "type": "bool" if Function(args.function).is_bit else "uint16"}
        cfg = _device(args, units[0], [point])
    except ValueError as err:
        print(f"modbus scan: {err}", file=sys.stderr)
        return 2
    return asyncio.run(_scan(cfg, units, Function(args.function), args.address))


async def _scan(cfg: ModbusDeviceConfig, units: list[int], function: Function, address: int
                ) -> int:
    from drivers.modbus.bus import BadReply, Bus, BusDown, ExceptionReply, RequestTimeout

    bus = Bus(cfg.bus_key, cfg)
    found = 0
    try:
        await bus.connect()
        for unit in units:
            dev = cfg.model_copy(update={"unit": unit})
            try:
                await bus.read(dev, function, address, 1)
                note = "answers"
            except ExceptionReply as err:
                if err.code in GATEWAY_CODES:  # the gateway says nobody is there
                    continue
                note = f"answers (exception code {err.code} at {function.value} {address})"
            except BadReply as err:
                note = f"answers with malformed replies ({err.message})"
            except RequestTimeout:
                continue
            found += 1
            print(f"unit {unit}: {note}")
    except BusDown as err:
        print(f"modbus scan: {err.message}", file=sys.stderr)
        return 1
    finally:
        bus.close()
    print(f"{found} unit(s) answered on {cfg.bus_key}")
    return 0 if found else 1

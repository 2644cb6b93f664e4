"""Commissioning commands: ``fieldgate modbus read`` and ``fieldgate modbus scan``.

On site, before writing a config, an installer wants to know two things: which unit ids answer
on this line, and whether register 30001 really is a float in CDAB order. Both commands use the
same bus, planner, data-type table and profiles as the driver, so what they show is what the
driver will decode. pymodbus's own log lines go through our logging and are shown only with
``--verbose``: every failure is already reported once, in our words, on stderr.
"""

from __future__ import annotations

import argparse
import functools
import logging
import sys
from typing import TYPE_CHECKING, Any

from drivers.modbus import datatypes as dt
from drivers.modbus.datatypes import Function, Order
from drivers.modbus.planner import Span, plan
from gateway.model import Quality, Sample

if TYPE_CHECKING:  # pymodbus and pydantic load when a command runs, not at parse time
    from drivers.modbus.config import ModbusDeviceConfig, PointConfig

#: Exception codes a TCP gateway sends for a unit id that does not answer behind it.
GATEWAY_CODES = frozenset({0x0A, 0x0B})

READ_EXAMPLES = """examples:
  fieldgate modbus read --host 10.0.0.5 --unit 1 --address 0 --count 2 --type float32
  fieldgate modbus read --host 10.0.0.5 --function input --address 30 --type uint32 \\
      --order CDAB --scale 0.01
  fieldgate modbus read --serial /dev/ttyUSB0 --baudrate 9600 --parity E --unit 7 \\
      --function coil --address 0 --count 8
  fieldgate modbus read --host 10.0.0.5 --unit 1 --profile eastron-sdm630

Output: one line per value: address, raw registers in hex, decoded value. With --profile:
point name, value and unit, as the driver would emit them. Exit code 0 when every value was
read, 1 when the device or line failed, 2 on bad arguments."""

SCAN_EXAMPLES = """examples:
  fieldgate modbus scan --serial /dev/ttyUSB0 --baudrate 19200 --units 1-20 --timeout 0.2
  fieldgate modbus scan --host 10.0.0.9 --units 1,2,10-12

A unit "answers" when it sends any reply, even an exception (the address may simply not exist
on it). Exit code 0 when at least one unit answered, 1 when none did."""


class CliError(Exception):
    """Bad arguments: printed as one line, exit code 2."""


def _line_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("connection (give --host or --serial)")
    g.add_argument("--host", help="TCP host of the device or of the serial gateway")
    g.add_argument("--port", type=int, default=502, help="TCP port (default 502)")
    g.add_argument("--rtu-over-tcp", action="store_true",
                   help="send RTU frames over TCP (most serial-to-Ethernet gateways in "
                   "transparent mode)")
    g.add_argument("--serial", metavar="DEV", help="serial port for RTU, e.g. /dev/ttyUSB0")
    g.add_argument("--baudrate", type=int, default=9600, help="serial speed (default 9600)")
    g.add_argument("--parity", choices=["N", "E", "O"], default="N",
                   help="serial parity: none, even or odd (default N)")
    g.add_argument("--stopbits", type=int, choices=[1, 2], default=1,
                   help="serial stop bits (default 1)")
    g.add_argument("--bytesize", type=int, choices=[7, 8], default=8,
                   help="serial data bits (default 8)")
    g.add_argument("--timeout", type=float, default=1.0,
                   help="reply timeout per request, seconds (default 1)")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="also show pymodbus's own log, frames included (for bug reports)")


def _device(args: argparse.Namespace, unit: int, points: list[dict[str, Any]],
            profile: str | None = None) -> ModbusDeviceConfig:
    from pydantic import ValidationError

    from drivers.modbus.config import ModbusDeviceConfig

    cfg: dict[str, Any] = {"id": "cli", "unit": unit, "timeout": args.timeout, "points": points}
    if profile:
        cfg["profile"] = profile
    if args.serial:
        cfg |= {"transport": "rtu", "serial": {
            "port": args.serial, "baudrate": args.baudrate, "parity": args.parity,
            "stopbits": args.stopbits, "bytesize": args.bytesize}}
    elif args.host:
        cfg |= {"transport": "rtu-over-tcp" if args.rtu_over_tcp else "tcp",
                "host": args.host, "port": args.port}
    else:
        raise CliError("give --host HOST (TCP) or --serial DEV (RTU)")
    try:
        return ModbusDeviceConfig.model_validate(cfg)
    except ValidationError as err:
        first = err.errors(include_url=False)[0]
        message = str(first["msg"]).removeprefix("Value error, ")
        raise CliError(message) from None


def _route_library_logs(verbose: bool) -> None:
    """pymodbus logs every timeout as an ERROR followed by a hex dump of the last frames;
    we report each failure once ourselves, so its log is shown only with ``--verbose``,
    through our logging (set up here unless the caller already did)."""
    if not logging.getLogger().handlers:
        from gateway.logs import setup_logging

        setup_logging("DEBUG" if verbose else "WARNING")
    logging.getLogger("pymodbus").setLevel(logging.DEBUG if verbose else logging.CRITICAL)


def install_cli(subparsers: Any) -> None:
    modbus = subparsers.add_parser(
        "modbus", help="Modbus commissioning tools (read, scan)",
        description="Talk to Modbus devices before (or without) writing a config: find the "
        "unit ids on a line, read and decode registers, or read a whole device by profile.")
    sub = modbus.add_subparsers(dest="modbus_command", required=True, metavar="COMMAND")

    read = sub.add_parser(
        "read", help="read and decode registers from one unit",
        description="Read COUNT values of one data type from one unit and print them decoded, "
        "or (--profile) read every point of a register-map profile. Long reads are split "
        "into as many requests as the protocol needs (125 registers, 2000 bits each).",
        epilog=READ_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    _line_args(read)
    what = read.add_argument_group("what to read")
    what.add_argument("--unit", type=int, default=1, help="unit id (slave address), default 1")
    what.add_argument("--profile", metavar="NAME",
                      help="read every point of this profile (config/profiles/NAME.yaml, or "
                      "sunspec) instead of --address")
    what.add_argument("--function", choices=[f.value for f in Function], default="holding",
                      help="table: holding (FC3, default), input (FC4), coil (FC1), "
                      "discrete (FC2)")
    what.add_argument("--address", type=lambda s: int(s, 0),
                      help="zero-based protocol address of the first value, not the 4xxxx "
                      "number: 40001 is --address 0 (0x.. accepted)")
    what.add_argument("--count", type=int, default=1,
                      help="number of VALUES to decode (a float32 takes 2 registers each)")
    what.add_argument("--type", choices=list(dt.DATA_TYPES),
                      help="data type (default uint16; bool for coil and discrete)")
    what.add_argument("--order", default="ABCD", choices=[o.value for o in Order],
                      help="byte/word order: ABCD big-endian (default), CDAB word swap, "
                      "BADC byte swap, DCBA little-endian (64-bit: ABCDEFGH...)")
    what.add_argument("--length", type=int, help="registers per value for --type string")
    what.add_argument("--scale", type=float, default=1.0,
                      help="print raw * SCALE (e.g. 0.1 for tenths), default 1")
    read.set_defaults(func=cmd_read)

    scan = sub.add_parser(
        "scan", help="find the unit ids that answer on a line",
        description="Send one read to each unit id and list those that answer.",
        epilog=SCAN_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    _line_args(scan)
    scan.add_argument("--units", default="1-247",
                      help="unit ids to try: a range or a list, e.g. 1-20 or 1,2,5 "
                      "(default 1-247; lower --timeout for long scans)")
    scan.add_argument("--function", choices=[f.value for f in Function], default="holding",
                      help="table of the probe read (default holding)")
    scan.add_argument("--address", type=lambda s: int(s, 0), default=0,
                      help="address of the probe read (default 0)")
    scan.set_defaults(func=cmd_scan)


def cmd_read(args: argparse.Namespace) -> int:
    import asyncio  # here: `fieldgate --help` and `cmd` need no event loop

    _route_library_logs(args.verbose)
    try:
        if args.profile:
            if args.address is not None:
                raise CliError("give --profile or --address, not both")
            cfg = _device(args, args.unit, [], profile=args.profile)
            return asyncio.run(_read_profile(cfg))
        if args.address is None:
            raise CliError("give --address (or --profile NAME)")
        if args.count < 1:
            raise CliError(f"--count must be at least 1, not {args.count}")
        function = Function(args.function)
        kind = args.type or ("bool" if function.is_bit else "uint16")
        if function.is_bit and kind != "bool":
            raise CliError(f"{function.value} values are single bits: use --type bool "
                           f"(or leave --type out), not --type {kind}")
        bit = 0 if kind == "bool" and not function.is_bit else None
        size = 1 if function.is_bit else dt.register_count(kind, args.length)
        points = [{"name": f"v{i}", "function": function, "address": args.address + i * size,
                   "type": kind, "order": args.order, "length": args.length, "bit": bit,
                   "scale": args.scale} for i in range(args.count)]
        cfg = _device(args, args.unit, points)
    except (CliError, ValueError) as err:
        print(f"modbus read: {err}", file=sys.stderr)
        return 2
    return asyncio.run(_read(cfg, list(cfg.all_points().values())))


async def _read(cfg: ModbusDeviceConfig, points: list[PointConfig]) -> int:
    """Read the points in the fewest requests the protocol allows, and print each value."""
    from drivers.modbus.bus import BadReply, Bus, BusDown, ExceptionReply, RequestTimeout

    p0 = points[0]
    limit = dt.MAX_BITS if p0.function.is_bit else dt.MAX_REGISTERS
    spans = [Span(p.address, p.count, p) for p in points]
    bus = Bus(cfg.bus_key, cfg)
    data: list[Any] = []
    try:
        await bus.connect()
        for block in plan(spans, max_count=limit, max_gap=0):
            data.extend(await bus.read(cfg, p0.function, block.address, block.count))
    except (BusDown, RequestTimeout, ExceptionReply, BadReply) as err:
        print(f"modbus read: {cfg.bus_key} unit {cfg.unit}: {err.message}", file=sys.stderr)
        return 1
    finally:
        bus.close()
    if p0.function.is_bit:
        for p, bit in zip(points, data, strict=True):
            print(f"{p.address}\t{int(bit)}\t{bool(bit)}")
        return 0
    from drivers.modbus.scaling import scaling

    buf = dt.registers_to_bytes(data)
    size = p0.count
    for i, p in enumerate(points):
        words = data[i * size:(i + 1) * size]
        raw = dt.make_decoder(p.type, p.order, bit=p.bit, length=p.length)(buf, 2 * i * size)
        scaled = scaling(p.type, p.scale, p.offset, p.decimals)  # as the driver scales
        value = raw if scaled is None or isinstance(raw, str) else scaled.apply(raw)
        print(f"{p.address}\t{' '.join(f'{w:04x}' for w in words)}\t{value!r}")
    return 0


async def _read_profile(cfg: ModbusDeviceConfig) -> int:
    """Read every point of the device's profile as the driver would, and print them."""
    from drivers.modbus.bus import BadReply, Bus, BusDown, ExceptionReply, RequestTimeout
    from drivers.modbus.config import SUNSPEC
    from drivers.modbus.decode import decode_known
    from drivers.modbus.holes import HOLE_CODES, bisect
    from drivers.modbus.plans import plan_device
    from drivers.modbus.sunspec import SunSpecReader

    bus = Bus(cfg.bus_key, cfg)
    samples: list[Sample] = []
    try:
        await bus.connect()
        if cfg.profile == SUNSPEC:
            samples = await SunSpecReader().cycle(bus, cfg, 0)
        else:
            for group in plan_device(cfg, list(cfg.all_points().values())):
                for function, block in group.blocks:
                    read = functools.partial(bus.read, cfg, function)
                    try:
                        data = await read(block.address, block.count)
                        values = dict(zip(range(block.address, block.end), data, strict=True))
                    except ExceptionReply as err:
                        if err.code not in HOLE_CODES:
                            raise
                        values, _refused = await bisect(read, block.address, block.end - 1)
                    samples.extend(decode_known(cfg.id, function, block, values, 0))
    except (BusDown, RequestTimeout, ExceptionReply, BadReply) as err:
        print(f"modbus read: {cfg.bus_key} unit {cfg.unit}: {err.message}", file=sys.stderr)
        return 1
    except Exception as err:  # SunSpec discovery failures are PollFailed subclasses, too
        message = getattr(err, "message", str(err))
        print(f"modbus read: {cfg.bus_key} unit {cfg.unit}: {message}", file=sys.stderr)
        return 1
    finally:
        bus.close()
    points = cfg.all_points()
    bad = 0
    for s in samples:
        p = points.get(s.point)
        where = f"{p.function.value} {p.address}" if p else ""
        if s.quality is Quality.BAD:
            bad += 1
            print(f"{s.point}\t-\t{where}: unreadable (the device refused it)")
            continue
        unit = p.unit if p and p.unit else ""
        print(f"{s.point}\t{s.value!r}\t{unit}".rstrip())
    if bad:
        print(f"modbus read: {bad} of {len(samples)} point(s) of profile {cfg.profile} could "
              "not be read; the driver will mark them bad", file=sys.stderr)
    return 1 if bad else 0


def _units(text: str) -> list[int]:
    units: list[int] = []
    try:
        for part in text.split(","):
            lo, _, hi = part.partition("-")
            units.extend(range(int(lo), int(hi or lo) + 1))
    except ValueError:
        raise CliError(f"--units takes a range or a list such as 1-20 or 1,2,5, not {text!r}"
                       ) from None
    if not units or not all(0 <= u <= 255 for u in units):
        raise CliError(f"unit ids must be within 0..255: {text!r}")
    return units


def cmd_scan(args: argparse.Namespace) -> int:
    import asyncio

    _route_library_logs(args.verbose)
    try:
        units = _units(args.units)
        point = {"name": "probe", "function": args.function, "address": args.address,
                 "type": "bool" if Function(args.function).is_bit else "uint16"}
        cfg = _device(args, units[0], [point])
    except CliError as err:
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

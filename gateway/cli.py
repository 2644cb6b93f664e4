"""The ``fieldgate`` command line."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from drivers.base import registry as driver_registry
from gateway import __version__
from gateway.config.errors import EX_CONFIG, ConfigError
from gateway.errors import StartupError, startup_errors

DEFAULT_CONFIG = Path("/etc/fieldgate/fieldgate.yaml")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    try:
        code: int = args.func(args)
    except ConfigError as err:
        print(err, file=sys.stderr)
        print(f"{len(err.issues)} problem(s) in the config; nothing was started.",
              file=sys.stderr)
        return EX_CONFIG
    except StartupError as err:
        return _startup_failed([err])
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `fieldgate buffer stats | head`
        sys.stderr.close()
        return 0
    return code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fieldgate",
        description="Edge gateway for energy sites: Modbus, OPC-UA and OCPP in, "
        "store-and-forward MQTT out.",
    )
    parser.add_argument("--version", action="version", version=f"fieldgate {__version__}")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")

    run = sub.add_parser("run", help="run the gateway", description="Run the gateway daemon "
                         "in the foreground (systemd runs it this way).")
    run.add_argument("-c", "--config", type=Path, default=DEFAULT_CONFIG,
                     help=f"site config file (default {DEFAULT_CONFIG})")
    run.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                     help="override logging.level from the config")
    run.add_argument("--log-json", action="store_true", help="log JSON lines to stderr")
    run.set_defaults(func=_run)

    check = sub.add_parser("check-config", help="validate a config file",
                           description="Validate a config file and report every problem "
                           "with file:line:column and field path. Exit code 78 on errors.")
    check.add_argument("file", type=Path)
    check.set_defaults(func=_check_config)

    schema = sub.add_parser("schema", help="print the config JSON Schema",
                            description="Print the JSON Schema of the site config, including "
                            "every registered driver's device model.")
    schema.add_argument("-o", "--output", type=Path, help="write to this file instead")
    schema.set_defaults(func=_schema)

    buffer = sub.add_parser("buffer", help="inspect the telemetry buffer")
    bsub = buffer.add_subparsers(title="buffer commands", metavar="COMMAND")
    stats = bsub.add_parser("stats", help="rows, bytes, oldest, dropped",
                            description="Show the store-and-forward buffer: samples waiting, "
                            "bytes, oldest sample, dropped count. Safe while the daemon runs.")
    stats.add_argument("-c", "--config", type=Path, default=DEFAULT_CONFIG)
    stats.add_argument("--store", type=Path, help="the SQLite file (instead of --config)")
    stats.add_argument("--json", action="store_true", help="print JSON")
    stats.set_defaults(func=_buffer_stats)

    cmd = sub.add_parser("cmd", help="send a command to the running gateway",
                         description="Send a command (as on MQTT cmd/<name>) to the running "
                         "daemon over its local control socket and print the reply. "
                         "`fieldgate cmd commands.list` lists them.")
    cmd.add_argument("name", help="command name, e.g. ping, write, buffer.stats")
    cmd.add_argument("args", nargs="?", default="{}", help="arguments as a JSON object")
    cmd.add_argument("-c", "--config", type=Path, default=DEFAULT_CONFIG)
    cmd.set_defaults(func=_cmd)

    for spec in driver_registry().values():
        if spec.cli is not None:
            spec.cli(sub)
    return parser


def _load(path: Path) -> Any:
    from gateway.config.loader import load_config

    return load_config(path)


def _run(args: argparse.Namespace) -> int:
    from gateway.logs import setup_logging
    from gateway.runtime import App

    config = _load(args.config)
    setup_logging(args.log_level or config.logging.level,
                  "json" if args.log_json else config.logging.format.value)
    try:
        return asyncio.run(App(config, args.config).run())
    except BaseExceptionGroup as group:  # a component's start() failed inside the TaskGroup
        errors = startup_errors(group)
        if errors is None:
            raise  # a bug: keep the traceback
        return _startup_failed(errors)


def _startup_failed(errors: list[StartupError]) -> int:
    """A configuration problem found at start: say what and what to do, no traceback."""
    for err in errors:
        print(f"fieldgate: {err}", file=sys.stderr)
        if err.hint:
            print(f"  {err.hint}", file=sys.stderr)
    print("fieldgate did not start (configuration problem, exit code 78).", file=sys.stderr)
    return EX_CONFIG


def _check_config(args: argparse.Namespace) -> int:
    from gateway.config.loader import check_config

    config, warnings = check_config(args.file)
    for warning in warnings:
        print(warning, file=sys.stderr)
    print(f"{args.file}: ok ({len(config.devices)} devices"
          f"{f', {len(warnings)} warning(s)' if warnings else ''})")
    return 0


def _schema(args: argparse.Namespace) -> int:
    from gateway.config.site import json_schema

    text = json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"
    if args.output:
        args.output.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


def _buffer_stats(args: argparse.Namespace) -> int:
    from gateway.store import read_stats

    if args.store is not None:
        path = args.store
    else:
        config = _load(args.config)
        path = config.store.path or Path(config.gateway.state_dir) / "buffer.sqlite3"
    try:
        stats = read_stats(path)
    except FileNotFoundError as err:
        print(f"fieldgate: {err}; has the gateway run with this config?", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(stats.as_dict(), indent=2))
        return 0
    def ts(ms: int | None) -> str:
        return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ms / 1000)) if ms else "-"
    print(f"store        {path}")
    if stats.samples:
        print(f"samples      {stats.samples:,} waiting (seq {stats.acked_seq + 1:,}.."
              f"{stats.next_seq - 1:,})")
    else:
        print(f"samples      0 waiting (all forwarded up to seq {stats.acked_seq:,})")
    print(f"bytes        {stats.payload_bytes:,} payload, {stats.file_bytes:,} on disk")
    print(f"oldest       {ts(stats.oldest_ts_ms)}")
    print(f"newest       {ts(stats.newest_ts_ms)}")
    print(f"dropped      {stats.dropped_total:,} (buffer full)")
    print(f"events       {stats.events_pending:,} waiting")
    return 0


def _cmd(args: argparse.Namespace) -> int:
    from gateway.control import send_command

    try:
        payload = json.loads(args.args)
    except json.JSONDecodeError as err:
        print(f"fieldgate: the arguments are not JSON: {err}", file=sys.stderr)
        return 2
    config = _load(args.config)
    try:
        reply = asyncio.run(send_command(Path(config.gateway.state_dir), args.name, payload))
    except (FileNotFoundError, ConnectionRefusedError):
        print("fieldgate: the gateway is not running (no control socket in "
              f"{config.gateway.state_dir})", file=sys.stderr)
        return 1
    print(json.dumps(reply, indent=2, default=str))
    return 0 if reply.get("ok") else 1

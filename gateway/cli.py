"""The ``fieldgate`` command line."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from drivers.registry import cli_installers
from gateway import __version__
from gateway.config.errors import EX_CONFIG, ConfigError
from gateway.errors import StartupError, startup_errors
from gateway.text import counted

DEFAULT_CONFIG = Path("/etc/fieldgate/fieldgate.yaml")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(only=_command(argv))
    args = parser.parse_args(argv)
    if args.global_config is not None:  # `fieldgate -c FILE status`: -c before the command
        if getattr(args, "config", DEFAULT_CONFIG) == DEFAULT_CONFIG and hasattr(args, "config"):
            args.config = args.global_config
        if hasattr(args, "config_opt") and args.file is None and args.config_opt is None:
            args.config_opt = args.global_config
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
        # imported here, not at the top: the store pulls in pydantic and aiosqlite, which
        # `fieldgate --help` must not pay for (and by now the store module is loaded anyway)
        from gateway.store.errors import StoreError

        if isinstance(err, StoreError):  # one line; exit 65 or 73 (documented in the README)
            print(f"fieldgate: {err} (exit code {err.exit_code})", file=sys.stderr)
            return err.exit_code
        return _startup_failed([err])
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `fieldgate buffer stats | head`
        sys.stderr.close()
        return 0
    return code


def _command(argv: list[str]) -> str | None:
    """``"run"`` when ``argv`` runs the daemon (``run``, after ``-c FILE`` if given), else
    None. The daemon keeps its parser for its lifetime, so it builds only ``run``'s: the other
    commands' parsers and CLI modules (HTTP, config management, drivers) are ~0.25 MB."""
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("-c", "--config"):
            i += 2
        elif arg.startswith("--config=") or (arg.startswith("-c") and arg != "-c"):
            i += 1
        else:
            return "run" if arg == "run" else None  # an option (--help...): every command
    return None


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The ``fieldgate`` parser; with ``only="run"``, the ``run`` command alone (the same
    options, help and errors for it)."""
    parser = argparse.ArgumentParser(
        prog="fieldgate",
        description="Edge gateway for energy sites: Modbus, OPC-UA and OCPP in, "
        "store-and-forward MQTT out.",
    )
    parser.add_argument("--version", action="version", version=f"fieldgate {__version__}")
    parser.add_argument("-c", "--config", type=Path, dest="global_config", metavar="FILE",
                        help="the site file, for any command (also accepted after it)")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")

    run = sub.add_parser("run", help="run the gateway", description="Run the gateway daemon "
                         "in the foreground (systemd runs it this way).")
    run.add_argument("-c", "--config", type=Path, default=DEFAULT_CONFIG,
                     help=f"site config file (default {DEFAULT_CONFIG})")
    run.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                     help="override logging.level from the config")
    run.add_argument("--log-json", action="store_true", help="log JSON lines to stderr")
    run.set_defaults(func=_run)
    if only == "run":
        return parser

    check = sub.add_parser("check-config", help="validate a config file",
                           description="Validate a config file and report every problem "
                           "with file:line:column and field path. Exit code 78 on errors.")
    check.add_argument("file", type=Path, nargs="?", help="the site file (or -c FILE)")
    check.add_argument("-c", "--config", type=Path, dest="config_opt", metavar="FILE",
                       help=f"the site file (default {DEFAULT_CONFIG})")
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

    from gateway.confmgmt.cli import install_cli as install_config_cli

    install_config_cli(sub)  # fieldgate config get|history|apply|confirm|rollback

    reload = sub.add_parser("reload", help="make the running gateway re-read its config",
                            description="Ask the running daemon to validate its config file "
                            "and apply it (the buffer is kept). An invalid file changes "
                            "nothing: every problem is printed and the exit code is 78. The "
                            "same as `systemctl reload fieldgate` or SIGHUP.")
    reload.add_argument("-c", "--config", type=Path, default=DEFAULT_CONFIG)
    reload.set_defaults(func=_reload)

    init = sub.add_parser(
        "init", help="write a starter site file",
        description="Write a starter site file: gateway id (default from /etc/machine-id), "
        "timezone, broker and Modbus devices from the shipped profiles. At a terminal it "
        "asks for what the flags leave out; with --yes (or no terminal) it uses the flags "
        "and defaults. The file is validated before it is written.",
        epilog="example: fieldgate init -o /etc/fieldgate/fieldgate.yaml --yes --id site-7 "
        "--timezone Europe/Berlin --broker mqtt.example.com --tls --username site-7 "
        "--modbus main-meter=eastron-sdm630@192.168.10.20/1 "
        "--modbus pv=sunspec@192.168.10.30:502/1")
    init.add_argument("-o", "--output", type=Path, default=DEFAULT_CONFIG,
                      help=f"the file to write (default {DEFAULT_CONFIG})")
    init.add_argument("--id", help="gateway id (default: gw-<machine id>)")
    init.add_argument("--timezone", help="IANA timezone of the site (default UTC)")
    init.add_argument("--state-dir", type=Path, default=Path("/var/lib/fieldgate"),
                      help="state directory (default /var/lib/fieldgate)")
    init.add_argument("--broker", help="MQTT broker HOST[:PORT]")
    init.add_argument("--tls", action="store_true", help="TLS to the broker (port 8883)")
    init.add_argument("--username", help="broker user (password from "
                      "${FIELDGATE_MQTT_PASSWORD})")
    init.add_argument("--modbus", action="append", default=[], metavar="ID=PROFILE@ADDR",
                      help="a Modbus device: ID=PROFILE@HOST[:PORT][/UNIT] or "
                      "ID=PROFILE@/dev/ttyUSB0[/UNIT]; repeat for more")
    init.add_argument("-y", "--yes", action="store_true", help="ask nothing")
    init.add_argument("--force", action="store_true", help="replace an existing file")
    init.set_defaults(func=_init)

    secrets = sub.add_parser(
        "secrets", help="generate passwords and keys into the environment file",
        description="Generate the MQTT password, the command signing key and OCPP charger "
        "passwords that are missing from the environment file (mode 0600), and print the "
        "hashes to put in the broker's password file and the site file.")
    secrets.add_argument("--env", type=Path, default=Path("/etc/fieldgate/env"),
                         help="the environment file (default /etc/fieldgate/env)")
    secrets.add_argument("--mqtt-user", default="gateway", help="broker user for the "
                         "password-file line")
    secrets.add_argument("--ocpp-charger", action="append", default=[], metavar="ID",
                         help="a charger to make a password for; repeat for more")
    secrets.add_argument("--rotate", action="store_true", help="replace every secret")
    secrets.set_defaults(func=_secrets)

    demo = sub.add_parser(
        "demo", help="run the shipped demo site",
        description="Run the demo site (simulated meters, inverters, a battery, two "
        "chargers, an embedded MQTT broker on 127.0.0.1:1883) from any install.")
    demo.add_argument("--state-dir", type=Path, help="where its state goes (default "
                      "$XDG_STATE_HOME/fieldgate-demo or ~/.local/state/fieldgate-demo)")
    demo.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    demo.set_defaults(func=_demo, log_json=False)

    from gateway.http.cli import install_cli as install_http_cli  # stdlib imports only

    install_http_cli(sub)
    for install in cli_installers():  # cheap: a driver's library loads when its command runs
        install(sub)
    return parser


def _load(path: Path) -> Any:
    from gateway.config.loader import load_config

    return load_config(path)


def _run(args: argparse.Namespace) -> int:
    import asyncio

    from gateway.confmgmt.boot import load_resolved
    from gateway.logs import setup_logging
    from gateway.runtime import App, event_loop_factory, preload_drivers

    _, config = load_resolved(args.config)  # the managed version in force, or the file itself
    setup_logging(args.log_level or config.logging.level,
                  "json" if args.log_json else config.logging.format.value)
    preload_drivers(config)
    try:
        app = App(config, args.config)
        app.settle_heap = True  # the daemon's own process: see gateway.runtime.settle_heap
        loop_factory = event_loop_factory(len(config.devices))
        with asyncio.Runner(loop_factory=loop_factory) as runner:  # as asyncio.run does
            return runner.run(app.run())
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

    if args.file is not None and args.config_opt is not None and args.file != args.config_opt:
        print("fieldgate check-config: give the file once (positional or -c), not two",
              file=sys.stderr)
        return 2
    args.file = args.file or args.config_opt or DEFAULT_CONFIG
    config, warnings = check_config(args.file)
    for warning in warnings:
        print(warning, file=sys.stderr)
    print(f"{args.file}: ok ({counted(len(config.devices), 'device')}"
          f"{', ' + counted(len(warnings), 'warning') if warnings else ''})")
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
    try:
        payload = json.loads(args.args)
    except json.JSONDecodeError as err:
        print(f"fieldgate: the arguments are not JSON: {err}", file=sys.stderr)
        return 2
    return _send(args.config, args.name, payload)


def _send(config_path: Path, name: str, payload: Any) -> int:
    from gateway.control_client import ControlUnreachable

    try:
        reply = ask(config_path, [(name, payload)])[0]
    except ControlUnreachable as err:
        print(f"fieldgate: {err}", file=sys.stderr)
        return 1
    print(json.dumps(reply, indent=2, default=str))
    return 0 if reply.get("ok") else 1


def ask(config_path: Path, calls: list[tuple[str, Any]], timeout: float = 60) -> list[Any]:
    """The running daemon's replies to ``calls``, over its control socket. Quick: the site
    file is read only for its state directory (no config models, plugins or drivers are
    loaded); a file that cannot be read that way is loaded in full, which raises
    :class:`ConfigError` saying what is wrong with it. Raises ``ControlUnreachable``."""
    from gateway.control_client import request, state_dir_of

    state_dir = state_dir_of(config_path)
    if state_dir is None:
        state_dir = Path(_load(config_path).gateway.state_dir)
    return request(state_dir, calls, timeout)


def _init(args: argparse.Namespace) -> int:
    from gateway.provision import init_main

    return init_main(args)


def _secrets(args: argparse.Namespace) -> int:
    from gateway.provision import secrets_main

    return secrets_main(args)


def _demo(args: argparse.Namespace) -> int:
    from gateway.provision import default_demo_state, demo_site

    args.config = demo_site(args.state_dir or default_demo_state())
    print(f"fieldgate demo: site file {args.config}", file=sys.stderr)
    return _run(args)


def _reload(args: argparse.Namespace) -> int:
    try:
        _load(args.config)
    except ConfigError as err:  # the daemon would refuse it too: say so without asking it
        print(err, file=sys.stderr)
        print(f"{len(err.issues)} problem(s) in the config; the running gateway was not asked "
              "to reload, nothing changed.", file=sys.stderr)
        return EX_CONFIG
    return _send(args.config, "reload", {})

"""``fieldgate config get|history|apply|confirm|rollback``: the config.* commands over the
local control socket, for a person at the box (the same path as MQTT and HTTP)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

DEFAULT_CONFIG = Path("/etc/fieldgate/fieldgate.yaml")


def install_cli(sub: Any) -> None:
    config = sub.add_parser(
        "config", help="read, change and roll back the running config",
        description="The running gateway's config versions (see docs/fleet.md, Remote "
        "configuration). Each command's -c names the bootstrap file, which says where the "
        "state is.")
    csub = config.add_subparsers(title="config commands", metavar="COMMAND")
    for name, help_ in (("get", "the config in force: YAML (secrets redacted), hash, version"),
                        ("history", "the stored versions, newest first")):
        p = csub.add_parser(name, help=help_)
        p.set_defaults(func=_simple, command=f"config.{name}")
    apply = csub.add_parser("apply", help="validate, diff and apply a YAML file",
                            description="Send FILE as config.apply. The expected hash is the "
                            "running config's unless --expected-hash is given.")
    apply.add_argument("file", type=Path)
    apply.add_argument("--expected-hash", help="refuse unless the running config has it")
    apply.add_argument("--dry-run", action="store_true", help="validate and diff only")
    apply.add_argument("--manual", action="store_true",
                       help="wait for `fieldgate config confirm` instead of the health gate")
    apply.set_defaults(func=_apply)
    confirm = csub.add_parser("confirm", help="confirm an apply made with --manual")
    confirm.add_argument("version", type=int, nargs="?")
    confirm.set_defaults(func=_simple, command="config.confirm")
    rollback = csub.add_parser("rollback", help="put a stored version back in force")
    rollback.add_argument("version", type=int)
    rollback.set_defaults(func=_simple, command="config.rollback")
    for p in csub.choices.values():
        p.add_argument("-c", "--config", type=Path, default=DEFAULT_CONFIG,
                       help="the bootstrap file (default %(default)s)")
    config.set_defaults(func=lambda args: config.print_help() or 2)


def _call(config: Path, name: str, payload: dict[str, Any]) -> dict[str, Any] | None:
    # blocking and quick: no config models, no event loop (gateway/control_client.py)
    from gateway.control_client import ControlUnreachable, request, state_dir_of

    try:
        config.read_text(encoding="utf-8")
    except OSError as err:
        print(f"fieldgate: cannot read {config}: {err.strerror}", file=sys.stderr)
        return None
    state_dir = state_dir_of(config)
    if state_dir is None:
        print(f"fieldgate: {config} names no gateway.state_dir I can read; check it with "
              f"`fieldgate check-config {config}`", file=sys.stderr)
        return None
    try:
        reply: dict[str, Any] = request(state_dir, [(name, payload)])[0]
    except ControlUnreachable as err:
        print(f"fieldgate: {err}", file=sys.stderr)
        return None
    return reply


def _print(reply: dict[str, Any] | None) -> int:
    if reply is None:
        return 1
    result = reply.get("result")
    if reply.get("ok") and isinstance(result, dict) and "yaml" in result:
        sys.stdout.write(result["yaml"])  # config get: the YAML as it is, then the facts
        print(f"# version {result['version']}, {result['hash']}, from {result['source']}")
        return 0
    if reply.get("ok") and isinstance(result, dict) and "diff" in result:
        sys.stdout.write(result["diff"].pop("text", ""))  # readable once, not JSON-escaped
    print(json.dumps({k: v for k, v in reply.items() if k != "id"}, indent=2, default=str))
    return 0 if reply.get("ok") else 1


def _simple(args: argparse.Namespace) -> int:
    payload = {"version": args.version} if getattr(args, "version", None) is not None else {}
    return _print(_call(args.config, args.command, payload))


def _apply(args: argparse.Namespace) -> int:
    try:
        text = args.file.read_text(encoding="utf-8")
    except OSError as err:
        print(f"fieldgate: cannot read {args.file}: {err.strerror}", file=sys.stderr)
        return 1
    expected = args.expected_hash
    if expected is None:
        running = _call(args.config, "config.get", {})
        if running is None or not running.get("ok"):
            return _print(running)
        expected = running["result"]["hash"]
    return _print(_call(args.config, "config.apply", {
        "yaml": text, "expected_hash": expected, "dry_run": args.dry_run,
        "confirm": "manual" if args.manual else "auto"}))

"""``fieldgate http hash-password`` / ``new-token``, and ``fieldgate status`` / ``devices``.

Imported by every ``fieldgate`` call to build the parser: module level imports only what the
CLI has loaded already; each command imports what it needs.

``status`` and ``devices`` ask the running daemon over its control socket (the same
commands as MQTT and the HTTP API), so they answer in well under a second.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

DEFAULT_CONFIG = Path("/etc/fieldgate/fieldgate.yaml")


def install_cli(sub: Any) -> None:
    http = sub.add_parser("http", help="local API and dashboard tools")
    hsub = http.add_subparsers(dest="http_command", required=True)
    hp = hsub.add_parser("hash-password", help="hash a dashboard user's password",
                         description="Reads the password from --password, stdin (when piped) "
                         "or a prompt, and prints the scrypt hash for http.users[].password_hash.")
    hp.add_argument("--password", help="the clear password (visible in shell history!)")
    hp.set_defaults(func=_hash_password)
    nt = hsub.add_parser("new-token", help="make an API token for a machine client",
                         description="Prints a new random token (give it to the client) and "
                         "its SHA-256 (put it in http.tokens[].sha256). Remove the entry and "
                         "reload to revoke it.")
    nt.set_defaults(func=_new_token)

    for name, helptext in (("status", "site overview from the running gateway"),
                           ("devices", "devices and last values from the running gateway")):
        p = sub.add_parser(name, help=helptext, description=helptext[0].upper() + helptext[1:]
                           + " (over the local control socket).")
        p.add_argument("-c", "--config", type=Path, default=DEFAULT_CONFIG)
        p.add_argument("--json", action="store_true", help="print JSON")
        p.set_defaults(func=_status if name == "status" else _devices)


def _hash_password(args: argparse.Namespace) -> int:
    import getpass

    from drivers.ocpp.security import MIN_PASSWORD_LEN, PasswordError, hash_password

    password = args.password
    if password is None:
        password = sys.stdin.readline().rstrip("\n") if not sys.stdin.isatty() else \
            getpass.getpass("dashboard password: ")
    try:
        print(hash_password(password))
    except PasswordError:
        print(f"error: the password has {len(password)} characters; use at least "
              f"{MIN_PASSWORD_LEN} (a passphrase)", file=sys.stderr)
        return 2
    return 0


def _new_token(args: argparse.Namespace) -> int:
    from gateway.http.auth import new_token

    token, digest = new_token()
    print(f"token:  {token}")
    print(f"sha256: {digest}")
    return 0


def _ask(config: Path, calls: list[tuple[str, dict[str, Any]]]) -> list[Any] | None:
    from gateway.cli import ask  # blocking, and quick: no config models, no asyncio
    from gateway.control_client import ControlUnreachable

    try:
        return ask(config, list(calls), timeout=15)
    except ControlUnreachable as err:
        print(f"fieldgate: {err}", file=sys.stderr)
        return None


def _result(reply: Any) -> Any:
    return reply.get("result") if isinstance(reply, dict) and reply.get("ok") else None


def _ts(ms: int | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ms / 1000)) if ms else "-"


def _table(rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def _status(args: argparse.Namespace) -> int:
    replies = _ask(args.config, [("ping", {}), ("devices.list", {"points": False}),
                                 ("alarm.list", {}), ("buffer.stats", {}),
                                 ("uplink.stats", {}), ("ocpp.sessions", {})])
    if replies is None:
        return 1
    ping, devices, alarms, buffer, uplink, ocpp = (_result(r) for r in replies)
    if args.json:
        print(json.dumps({"gateway": ping, "devices": devices, "alarms": alarms,
                          "buffer": buffer, "uplink": uplink, "chargers": ocpp}, indent=2))
        return 0
    if ping:
        print(f"gateway  {ping['gateway']} (fieldgate {ping['version']}, up {ping['uptime_s']} s)")
    rows = [["DEVICE", "DRIVER", "STATUS", "SINCE", "LAST SEEN", "REASON"]]
    for d in devices or []:
        rows.append([d["id"], d["driver"], d["status"], _ts(d["since"]), _ts(d["last_seen"]),
                     d["reason"][:60]])
    _table(rows)
    if alarms is not None:
        print(f"alarms   {len(alarms)} open" + "".join(
            f"\n  {a['severity']:<8} {a['device']}: {a['message']}" for a in alarms))
    if buffer:
        print(f"buffer   {buffer['samples']:,} samples waiting, {buffer['payload_bytes']:,} B, "
              f"oldest {_ts(buffer['oldest_ts_ms'])}, dropped {buffer['dropped_total']:,}")
    if uplink:
        print(f"uplink   {'connected' if uplink['connected'] else 'DISCONNECTED'} to "
              f"{uplink['broker']}, acked seq {uplink['acked_seq']:,}")
    for c in (ocpp or {}).get("chargers", []):
        sessions = ", ".join(f"tx {s['transaction_id']} {s['energy_wh'] or 0:.0f} Wh"
                             for s in c["sessions"]) or "no session"
        print(f"charger  {c['charger']}: {'connected' if c['connected'] else 'offline'}, "
              f"{sessions}")
    return 0


def _devices(args: argparse.Namespace) -> int:
    replies = _ask(args.config, [("devices.list", {"points": True})])
    if replies is None:
        return 1
    devices = _result(replies[0])
    if devices is None:
        print(f"fieldgate: {replies[0].get('error')}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(devices, indent=2))
        return 0
    rows = [["DEVICE", "STATUS", "POINT", "VALUE", "QUALITY", "TIME"]]
    for d in devices:
        rows.append([d["id"], d["status"], "", "", "", ""])
        for name, p in d["points"].items():
            rows.append(["", "", name, str(p["value"]), p["quality"], _ts(p["ts"])])
    _table(rows)
    return 0

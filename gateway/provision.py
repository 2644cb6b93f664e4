"""Provisioning: ``fieldgate init`` (a starter site file), ``fieldgate secrets`` (passwords and
keys into the environment file) and ``fieldgate demo`` (the shipped demo from any install).

``init`` works from flags alone (for image builds) or asks for what is missing when a person
runs it at a terminal. What it writes always passes ``check-config``: it is validated before
it is written, and an existing file is kept unless ``--force``.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import re
import secrets
import socket
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from gateway.text import counted

SHARE = Path(sys.prefix) / "share" / "fieldgate"
CHECKOUT = Path(__file__).resolve().parents[1]
_DEVICE = re.compile(r"^(?P<id>[A-Za-z0-9_.-]+)=(?P<profile>[a-z0-9_.-]+)@(?P<addr>[^/]+?)"
                     r"(?::(?P<port>\d+))?(?:/(?P<unit>\d+))?$")


def default_gateway_id() -> str:
    """``gw-`` and the first 8 hex digits of /etc/machine-id, else the host name."""
    try:
        machine = Path("/etc/machine-id").read_text().strip()
        if re.fullmatch(r"[0-9a-f]{32}", machine):
            return f"gw-{machine[:8]}"
    except OSError:
        pass
    return re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname()) or "gateway"


@dataclass(frozen=True)
class DeviceSpec:
    id: str
    profile: str
    address: str       # host, or a serial device path (RTU)
    port: int | None
    unit: int

    @classmethod
    def parse(cls, text: str) -> DeviceSpec:
        head, at, serial = text.partition("@")
        if at and serial.startswith("/dev/"):  # a serial path has slashes of its own
            device_id, eq, profile = head.partition("=")
            path, _, last = serial.rpartition("/")
            unit = int(last) if last.isdigit() and path != "/dev" else 1
            port_path = path if last.isdigit() and path != "/dev" else serial
            if eq and device_id and profile:
                return cls(device_id, profile, port_path, None, unit)
        m = _DEVICE.match(text)
        if m is None:
            raise ValueError(f"{text!r}: write ID=PROFILE@HOST[:PORT][/UNIT] or "
                             "ID=PROFILE@/dev/ttyUSB0[/UNIT]")
        return cls(m["id"], m["profile"], m["addr"], int(m["port"]) if m["port"] else None,
                   int(m["unit"] or 1))

    def as_config(self) -> dict[str, Any]:
        device: dict[str, Any] = {"id": self.id, "type": "modbus", "profile": self.profile,
                                  "unit": self.unit, "interval": 1.0}
        if self.address.startswith("/dev/"):
            device.update(transport="rtu", serial={"port": self.address, "baudrate": 9600})
        else:
            device.update(transport="tcp", host=self.address, port=self.port or 502)
        return device


def build_site(*, gateway_id: str, timezone: str, state_dir: str, broker: str | None,
               tls: bool, username: str | None, devices: list[DeviceSpec]) -> dict[str, Any]:
    site: dict[str, Any] = {"gateway": {"id": gateway_id, "timezone": timezone,
                                        "state_dir": state_dir}}
    if broker:
        host, _, port = broker.partition(":")
        b: dict[str, Any] = {"host": host, "port": int(port or (8883 if tls else 1883))}
        if tls:
            b["tls"] = {}
        if username:
            b.update(username=username, password="${FIELDGATE_MQTT_PASSWORD}")
        site["uplink"] = {"broker": b}
    site["devices"] = [d.as_config() for d in devices]
    return site


def _ask(prompt: str, default: str) -> str:
    answer = input(f"{prompt} [{default}]: ").strip()
    return answer or default


def _interactive(args: argparse.Namespace) -> None:
    from drivers.modbus.profiles import known_profiles

    args.id = args.id or _ask("gateway id", default_gateway_id())
    args.timezone = args.timezone or _ask("timezone (IANA)", "UTC")
    if args.broker is None:
        args.broker = _ask("MQTT broker host[:port] (empty: none yet)", "") or None
    if args.broker and args.username is None:
        args.username = _ask("broker user name (empty: none)", args.id) or None
    print("shipped Modbus profiles: sunspec, " + ", ".join(known_profiles()))
    while True:
        text = input("add a Modbus device as ID=PROFILE@HOST[:PORT][/UNIT] "
                     "(empty: done): ").strip()
        if not text:
            break
        try:
            DeviceSpec.parse(text)
        except ValueError as err:
            print(f"  {err}")
            continue
        args.modbus.append(text)


def init_main(args: argparse.Namespace) -> int:
    out: Path = args.output
    if out.exists() and not args.force:
        print(f"fieldgate: {out} exists; use --force to replace it", file=sys.stderr)
        return 1
    if sys.stdin.isatty() and not args.yes:
        _interactive(args)
    try:
        devices = [DeviceSpec.parse(text) for text in args.modbus]
    except ValueError as err:
        print(f"fieldgate: --modbus {err}", file=sys.stderr)
        return 2
    site = build_site(gateway_id=args.id or default_gateway_id(),
                      timezone=args.timezone or "UTC", state_dir=str(args.state_dir),
                      broker=args.broker, tls=args.tls, username=args.username,
                      devices=devices)
    text = ("# fieldgate site file written by `fieldgate init`; check it with "
            "`fieldgate check-config`.\n# Secrets come from the environment "
            "(/etc/fieldgate/env, see `fieldgate secrets`).\n"
            + yaml.safe_dump(site, sort_keys=False))
    problems = _validate(text, out.parent)
    if problems:
        print(f"fieldgate: the site would not be valid; nothing written:\n{problems}",
              file=sys.stderr)
        return 78
    _write_private(out, text, 0o640)
    print(f"wrote {out} ({counted(len(devices), 'device')}, gateway {site['gateway']['id']})")
    return 0


def _validate(text: str, near: Path) -> str:
    from gateway.config.errors import ConfigError
    from gateway.config.loader import load_config

    env = {"FIELDGATE_MQTT_PASSWORD": os.environ.get("FIELDGATE_MQTT_PASSWORD", "x")}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "site.yaml"
        path.write_text(text)
        old = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            load_config(path)
        except ConfigError as err:
            return str(err)
        finally:
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
    return ""


def _write_private(path: Path, text: str, mode: int) -> None:
    """Write ``text`` atomically with ``mode`` from the first byte."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def mosquitto_password_line(user: str, password: str) -> str:
    """A mosquitto 2.x password-file line (PBKDF2-SHA512, as ``mosquitto_passwd`` writes)."""
    salt = os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, 101)
    return (f"{user}:$7$101${base64.b64encode(salt).decode()}"
            f"${base64.b64encode(digest).decode()}")


def read_env(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep and not key.lstrip().startswith("#"):
                values[key.strip()] = value
    return values


def secrets_main(args: argparse.Namespace) -> int:
    """Generate what is missing (or everything with --rotate) into the env file, 0600."""
    from drivers.ocpp.security import hash_password

    env_path: Path = args.env
    values = {} if args.rotate else read_env(env_path)
    made: list[str] = []

    def need(key: str, nbytes: int = 24) -> str:
        if key not in values:
            values[key] = secrets.token_urlsafe(nbytes)
            made.append(key)
        return values[key]

    mqtt = need("FIELDGATE_MQTT_PASSWORD")
    need("FIELDGATE_COMMAND_KEY", 32)
    chargers = {c: need(f"FIELDGATE_OCPP_{re.sub(r'[^A-Za-z0-9]', '_', c).upper()}")
                for c in args.ocpp_charger}
    body = "".join(f"{k}={v}\n" for k, v in sorted(values.items()))
    _write_private(env_path, "# fieldgate secrets (fieldgate secrets); keep this file 0600\n"
                   + body, 0o600)
    print(f"{env_path}: {len(made)} new secret(s) ({', '.join(made) or 'none'}), mode 0600")
    user = args.mqtt_user
    print("\nFor the broker's password file (mosquitto):")
    print(f"  {mosquitto_password_line(user, mqtt)}")
    if chargers:
        print("\nFor the site file, devices of type ocpp, chargers: (password_hash):")
        for charger, password in chargers.items():
            print(f"  {charger}: {hash_password(password)}")
        print("Give each charger its password (AuthorizationKey) from the env file.")
    print("\nThe command signing key is FIELDGATE_COMMAND_KEY "
          "(uplink.commands.signing.key: ${FIELDGATE_COMMAND_KEY}).")
    return 0


def demo_config() -> Path:
    """The shipped demo site: the installed copy, else the checkout's."""
    for path in (SHARE / "demo.yaml", CHECKOUT / "config" / "demo.yaml"):
        if path.is_file():
            return path
    raise FileNotFoundError("the demo site is not installed (share/fieldgate/demo.yaml)")


def demo_site(state_dir: Path) -> Path:
    """A copy of the demo site whose state lives in ``state_dir`` (any install, any cwd)."""
    site = yaml.safe_load(demo_config().read_text())
    site["gateway"]["state_dir"] = str(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / "demo.yaml"
    path.write_text(yaml.safe_dump(site, sort_keys=False))
    return path


def default_demo_state() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "fieldgate-demo"

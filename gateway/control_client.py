"""The CLI's side of the control socket (``fieldgate cmd``, ``status``, ``devices``, ...).

Blocking and small on purpose: a command-line call that only talks to the running daemon
loads the standard library and PyYAML (to find the state directory in the site file), not
pydantic, the config models, plugins, drivers, asyncio or aiohttp. The daemon's side is
:mod:`gateway.control`; the protocol is one JSON object per line each way.
"""

from __future__ import annotations

import json
import os
import re
import socket
from pathlib import Path
from typing import Any

SOCKET_DIR = "control"
SOCKET_NAME = "control.sock"
#: The longest request line the daemon reads (a longer one is refused).
MAX_LINE = 1 << 20
DEFAULT_STATE_DIR = Path("/var/lib/fieldgate")
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ControlUnreachable(Exception):
    """The CLI cannot talk to the daemon; the message says why and what to do."""


def socket_path(state_dir: Path) -> Path:
    return state_dir / SOCKET_DIR / SOCKET_NAME


def state_dir_of(config: Path) -> Path | None:
    """``gateway.state_dir`` of the site file, read without validating the file: ``${VAR}``
    and ``${VAR:-default}`` substituted, the default when the key is absent. None when the
    file cannot be read this way (unreadable, not YAML, no mapping, a variable that is not
    set, not a string): the caller then loads the file in full, which says what is wrong."""
    import yaml  # the C loader when present; about 20 ms

    try:
        data = yaml.load(config.read_text(encoding="utf-8"),
                         Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    gateway = data.get("gateway") if isinstance(data, dict) else None
    if not isinstance(gateway, dict):
        return None
    raw = gateway.get("state_dir", str(DEFAULT_STATE_DIR))
    if not isinstance(raw, str):
        return None
    unset = [m.group(1) for m in _ENV.finditer(raw)
             if m.group(1) not in os.environ and m.group(2) is None]
    if unset:
        return None
    value = _ENV.sub(lambda m: os.environ.get(m.group(1), m.group(2) or ""), raw)
    return Path(value) if value else None


def request(state_dir: Path, calls: list[tuple[str, Any]],
            timeout: float = 60) -> list[dict[str, Any]]:
    """Send each ``(name, args)`` to the daemon over one connection; their replies in order.
    Raises :class:`ControlUnreachable` (with what to do) when the daemon cannot be asked or
    does not answer within ``timeout`` seconds per command."""
    path = socket_path(state_dir)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        try:
            sock.connect(str(path))
        except PermissionError:
            raise ControlUnreachable(
                f"permission denied on the control socket {path}: run this as root or as "
                "the gateway's service user, or add your user to the group named in "
                "control.group") from None
        except (FileNotFoundError, ConnectionRefusedError):
            raise ControlUnreachable(
                f"the gateway is not running (no control socket at {path})") from None
        except OSError as err:  # e.g. a path too long for AF_UNIX
            raise ControlUnreachable(f"cannot reach the control socket {path}: "
                                     f"{err.strerror or err}") from None
        replies: list[dict[str, Any]] = []
        with sock.makefile("rb") as reader:
            for name, args in calls:
                line = json.dumps({"id": "cli", "name": name, "args": args}).encode() + b"\n"
                try:
                    sock.sendall(line)
                    reply = reader.readline()
                except TimeoutError:
                    raise ControlUnreachable(
                        f"the gateway did not answer {name} within {timeout:g} s (is it "
                        "stalled? see its log: journalctl -u fieldgate)") from None
                except OSError as err:
                    raise ControlUnreachable(f"the control connection broke while sending "
                                             f"{name}: {err.strerror or err}") from None
                if not reply:
                    raise ControlUnreachable("the gateway closed the control connection "
                                             "without a reply")
                replies.append(json.loads(reply))
        return replies
    finally:
        sock.close()

"""The local control socket: the CLI sends commands to the running daemon through it (the
CLI's side is :mod:`gateway.control_client`).

One JSON object per line each way: ``{"id": .., "name": .., "args": {..}}`` in, the command
registry's reply (plus the id) out. A line that is not such an object (bad JSON, nested too
deep, longer than the limit) gets an error reply and the connection stays usable.

Only the service user, root and (optionally) the members of ``control.group`` may command
the gateway: the socket is created with mode 0600 (0660 with a group) from the start, inside
``<state_dir>/control/``, a directory of mode 0700 (0750 with a group; the state directory
then gets the group too, with mode 0710: enter, not list), and every connection's peer is
checked with SO_PEERCRED before a line is read.
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import json
import logging
import os
import socket
import struct
from pathlib import Path
from typing import Any

from pydantic import Field

from gateway.commands import request_source
from gateway.components import Component, ComponentContext, ComponentSpec, register_component
from gateway.config.base import StrictModel
from gateway.control_client import (
    MAX_LINE,
    SOCKET_DIR,
    SOCKET_NAME,
    ControlUnreachable,
    socket_path,
)
from gateway.errors import StartupError
from gateway.safejson import BadJson, RateLimitedLog, loads

log = logging.getLogger(__name__)

__all__ = ["MAX_LINE", "SOCKET_DIR", "SOCKET_NAME", "ControlSection", "ControlSocket",
           "ControlUnreachable", "send_command", "socket_path"]


class ControlSection(StrictModel):
    group: str | None = Field(
        None, description="A group whose members may also use the control socket (and so "
        "`fieldgate cmd`); by default only root and the service user may.")


def peer_credentials(sock: socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of the process at the other end of a Unix socket."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", raw)
    return pid, uid, gid


#: Linux 4.13+: the peer's supplementary groups (not in Python's socket module).
SO_PEERGROUPS = getattr(socket, "SO_PEERGROUPS", 59)


def peer_groups(sock: socket.socket) -> set[int] | None:
    """The peer's supplementary groups from the kernel, or None where it cannot say."""
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, SO_PEERGROUPS, 4 * 256)
    except OSError:
        return None
    return set(struct.unpack(f"{len(raw) // 4}I", raw[: len(raw) // 4 * 4]))


def _supplementary_groups(pid: int) -> set[int]:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Groups:"):
                return {int(g) for g in line.split()[1:]}
    except (OSError, ValueError):
        pass
    return set()


def peer_allowed(pid: int, uid: int, gid: int, group_gid: int | None,
                 groups: set[int] | None = None) -> bool:
    """Root, the user the daemon runs as, or a member of the configured group (primary or
    supplementary: from SO_PEERGROUPS, else /proc, which the unit's ProtectProc hides)."""
    if uid in (0, os.geteuid()):
        return True
    if group_gid is None:
        return False
    if groups is None:
        groups = _supplementary_groups(pid)
    return gid == group_gid or group_gid in groups


class ControlSocket(Component):
    name = "control"

    def __init__(self, ctx: ComponentContext[ControlSection]) -> None:
        self.ctx = ctx
        self.section = ctx.config or ControlSection()
        self.path = socket_path(ctx.state_dir)
        self._server: asyncio.Server | None = None
        self._group_gid: int | None = None
        self._warn = RateLimitedLog(log)

    async def start(self) -> None:
        if self.section.group is not None:
            try:
                self._group_gid = grp.getgrnam(self.section.group).gr_gid
            except KeyError:
                raise StartupError(f"control.group: no group {self.section.group!r} on this "
                                   "machine", hint="create it (groupadd) or remove the "
                                   "setting") from None
        if len(str(self.path)) > 100:
            log.warning("control socket path %s is too long for AF_UNIX; CLI commands are "
                        "off (use a shorter state_dir)", self.path)
            return
        group_gid = self._group_gid
        group = group_gid is not None
        directory = self.path.parent
        directory.mkdir(mode=0o700, exist_ok=True)
        os.chmod(directory, 0o750 if group else 0o700)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        # The mode is right from the first moment: no window in which the socket is 0777.
        old_umask = os.umask(0o117 if group else 0o177)
        try:
            self._server = await asyncio.start_unix_server(self._serve, self.path,
                                                           limit=MAX_LINE)
        finally:
            os.umask(old_umask)
        if group_gid is not None:
            self._open_to_group(group_gid)

    def _open_to_group(self, gid: int) -> None:
        """Let ``control.group`` reach the socket: the state directory gets that group and
        mode 0710 (enter, not list), the socket directory 0750 and the socket 0660."""
        directory = self.path.parent
        state_dir = directory.parent
        try:
            mode = os.stat(state_dir).st_mode & 0o7777
            for path in (state_dir, directory, self.path):
                # The service's own group needs no chown (which the unit's seccomp filter
                # forbids): the files already carry it.
                if os.stat(path).st_gid != gid:
                    os.chown(path, -1, gid)
            os.chmod(state_dir, (mode & ~0o070) | 0o010)
        except PermissionError as err:
            raise StartupError(
                f"control.group {self.section.group!r}: cannot give {state_dir} that group "
                f"({err.strerror})", hint="the service user must be a member of the group "
                "(usermod -aG GROUP fieldgate), or remove control.group") from None
        os.chmod(self.path, 0o660)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            sock = writer.get_extra_info("socket")
            pid, uid, gid = peer_credentials(sock)
            request_source.set(f"control socket (uid {uid})")  # this connection's task
            if not peer_allowed(pid, uid, gid, self._group_gid, peer_groups(sock)):
                self._warn.warning("peer", "control socket: refused a connection from uid %d "
                                   "(pid %d): only root, the service user and control.group "
                                   "may command the gateway", uid, pid)
                await self._reply(writer, _error(None, "forbidden",
                                                 f"uid {uid} may not use the control socket"))
                return
            while True:
                line = await _read_line(reader)
                if line is None:
                    break
                if isinstance(line, int):
                    reply = _error(None, "line_too_long",
                                   f"a request line of over {MAX_LINE} bytes was discarded")
                else:
                    reply = await self._handle(line)
                await self._reply(writer, reply)
        except (ConnectionError, ValueError) as err:
            log.debug("control client went away: %s", err)
        finally:
            writer.close()

    @staticmethod
    async def _reply(writer: asyncio.StreamWriter, reply: dict[str, Any]) -> None:
        writer.write(json.dumps(reply, default=str).encode() + b"\n")
        await writer.drain()

    async def _handle(self, line: bytes) -> dict[str, Any]:
        try:
            request = loads(line)
        except BadJson as err:
            return _error(None, "bad_json", str(err))
        if not isinstance(request, dict) or not isinstance(request.get("name"), str):
            return _error(None, "bad_request", "expected an object with a 'name'")
        try:
            reply = await self.ctx.commands.execute(request["name"], request.get("args"))
        except Exception as err:  # the registry never raises; keep the socket up if it did
            log.exception("control socket: command %s failed", request["name"])
            reply = _error(None, "internal", f"{type(err).__name__}: {err}")
        return {**reply, "id": request.get("id")}


def _error(request_id: Any, code: str, message: str) -> dict[str, Any]:
    return {"id": request_id, "ok": False, "error": {"code": code, "message": message}}


async def _read_line(reader: asyncio.StreamReader) -> bytes | int | None:
    """The next line; its length (an int) when it was longer than the limit and was
    skipped; None at the end of the stream."""
    try:
        return await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError as err:
        return err.partial or None
    except asyncio.LimitOverrunError as err:
        skipped = 0
        consumed = err.consumed
        while True:
            skipped += len(await reader.readexactly(consumed))
            try:
                skipped += len(await reader.readuntil(b"\n"))
                return skipped
            except asyncio.IncompleteReadError:
                return None
            except asyncio.LimitOverrunError as again:
                consumed = again.consumed


async def send_command(state_dir: Path, name: str, args: Any, timeout: float = 60) -> Any:
    """Send one command to the daemon and return its reply, from a running event loop
    (tests; the CLI uses the blocking :func:`gateway.control_client.request`)."""
    path = socket_path(state_dir)
    try:
        reader, writer = await asyncio.open_unix_connection(path, limit=MAX_LINE)
    except PermissionError:
        raise ControlUnreachable(
            f"permission denied on the control socket {path}: run this as root or as the "
            "gateway's service user, or add your user to the group named in control.group"
        ) from None
    except (FileNotFoundError, ConnectionRefusedError):
        raise ControlUnreachable(
            f"the gateway is not running (no control socket at {path})") from None
    try:
        writer.write(json.dumps({"id": "cli", "name": name, "args": args}).encode() + b"\n")
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), timeout)
        if not line:
            raise ControlUnreachable("the gateway closed the control connection without a "
                                     "reply")
        return json.loads(line)
    finally:
        writer.close()


register_component(ComponentSpec("control", ControlSocket, section=ControlSection))

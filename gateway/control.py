"""The local control socket: the CLI sends commands to the running daemon through it.

One JSON object per line each way: ``{"id": .., "name": .., "args": {..}}`` in, the command
registry's reply (plus the id) out. The socket lives in the state directory with mode 0600,
so only the service user (and root) can command the gateway locally.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from gateway.components import Component, ComponentContext, ComponentSpec, register_component

log = logging.getLogger(__name__)

SOCKET_NAME = "control.sock"
MAX_LINE = 1 << 20


def socket_path(state_dir: Path) -> Path:
    return state_dir / SOCKET_NAME


class ControlSocket(Component):
    name = "control"

    def __init__(self, ctx: ComponentContext[None]) -> None:
        self.ctx = ctx
        self.path = socket_path(ctx.state_dir)
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        if len(str(self.path)) > 100:
            log.warning("control socket path %s is too long for AF_UNIX; CLI commands are "
                        "off (use a shorter state_dir)", self.path)
            return
        self._server = await asyncio.start_unix_server(self._serve, self.path, limit=MAX_LINE)
        os.chmod(self.path, 0o600)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                reply = await self._handle(line)
                writer.write(json.dumps(reply, default=str).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, ValueError) as err:
            log.debug("control client went away: %s", err)
        finally:
            writer.close()

    async def _handle(self, line: bytes) -> dict[str, Any]:
        try:
            request = json.loads(line)
            if not isinstance(request, dict) or not isinstance(request.get("name"), str):
                raise ValueError("expected an object with a 'name'")
        except ValueError as err:
            return {"id": None, "ok": False,
                    "error": {"code": "bad_request", "message": str(err)}}
        reply = await self.ctx.commands.execute(request["name"], request.get("args"))
        return {"id": request.get("id"), **reply}


async def send_command(state_dir: Path, name: str, args: Any, timeout: float = 60) -> Any:
    """Used by the CLI: send one command to the daemon and return its reply."""
    reader, writer = await asyncio.open_unix_connection(socket_path(state_dir), limit=MAX_LINE)
    try:
        writer.write(json.dumps({"id": "cli", "name": name, "args": args}).encode() + b"\n")
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), timeout)
        return json.loads(line)
    finally:
        writer.close()


register_component(ComponentSpec("control", ControlSocket))

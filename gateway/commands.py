"""The command registry: one path for every command, whether it comes from MQTT ``cmd/<name>``,
the local control socket (the CLI) or a plugin.

A command is a name, a pydantic model for its arguments and an async handler. The transport
(uplink, control socket) validates nothing itself: it calls :meth:`CommandRegistry.execute`,
which returns a reply dict ``{"ok": true, "result": ...}`` or ``{"ok": false, "error": {...}}``
and never raises for a bad request.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

log = logging.getLogger(__name__)


#: Who sent the command being executed ("mqtt request <id>", "control socket (uid 0)"): set by
#: the transport, read by handlers that record it (the config history).
request_source: ContextVar[str] = ContextVar("request_source", default="")


class CommandError(Exception):
    """A command failed in an expected way. ``code`` is machine-readable."""

    def __init__(self, code: str, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details

    def to_wire(self) -> dict[str, Any]:
        err: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details is not None:
            err["details"] = self.details
        return err


class NoArgs(BaseModel):
    model_config = {"extra": "forbid"}


Handler = Callable[[Any], Awaitable[Any]]


@dataclass(frozen=True)
class Command:
    name: str
    args_model: type[BaseModel]
    handler: Handler
    help: str = ""
    timeout: float = 30.0
    #: Reads only (changes no device, config or state): MQTT allows these by default.
    read_only: bool = False


class CommandRegistry:
    def __init__(self) -> None:
        self._commands: dict[str, Command] = {}

    def register(self, command: Command, *, replace: bool = False) -> None:
        if command.name in self._commands and not replace:
            raise ValueError(f"command {command.name!r} is already registered")
        self._commands[command.name] = command

    def unregister(self, name: str) -> None:
        self._commands.pop(name, None)

    def get(self, name: str) -> Command | None:
        return self._commands.get(name)

    def names(self) -> list[str]:
        return sorted(self._commands)

    def describe(self) -> Iterable[Mapping[str, Any]]:
        for name in self.names():
            cmd = self._commands[name]
            yield {"name": name, "help": cmd.help.strip().splitlines()[0] if cmd.help else "",
                   "read_only": cmd.read_only, "args": cmd.args_model.model_json_schema()}

    async def execute(self, name: str, raw_args: Any) -> dict[str, Any]:
        """Validate and run one command. Always returns a reply body, never raises."""
        cmd = self._commands.get(name)
        if cmd is None:
            return _error("unknown_command", f"unknown command {name!r}", {"known": self.names()})
        try:
            args = cmd.args_model.model_validate(raw_args if raw_args is not None else {})
        except ValidationError as err:
            details = [
                {"field": ".".join(str(p) for p in e["loc"]), "error": e["msg"]}
                for e in err.errors(include_url=False, include_input=False)
            ]
            return _error("bad_arguments", f"invalid arguments for {name!r}", details)
        try:
            result = await asyncio.wait_for(cmd.handler(args), cmd.timeout)
        except CommandError as err:
            return {"ok": False, "error": err.to_wire()}
        except TimeoutError:
            return _error("timeout", f"command {name!r} did not finish within {cmd.timeout:g} s")
        except Exception as err:  # a handler bug must not take the transport down
            log.exception("command %s failed", name)
            return _error("internal", f"command {name!r} failed: {type(err).__name__}: {err}")
        return {"ok": True, "result": result}


def _error(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"ok": False, "error": CommandError(code, message, details).to_wire()}

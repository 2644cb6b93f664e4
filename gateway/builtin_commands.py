"""Commands every gateway has: ping, write, reload, buffer.stats, commands.list.

They are the ``commands`` component, registered like any other (no config section).
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

from drivers.base import DriverError, NotSupported, NotWritable, UnknownPoint, WriteResult
from gateway import logring
from gateway.commands import Command, CommandError, NoArgs
from gateway.components import Component, ComponentContext, ComponentSpec, register_component
from gateway.config.errors import ConfigError
from gateway.confmgmt.boot import load_resolved
from gateway.errors import StartupError
from gateway.model import Value


class WriteArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    device: str
    point: str
    value: float | int | bool | str

    @field_validator("value")
    @classmethod
    def _finite(cls, value: Value) -> Value:
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError("must be a finite number (NaN and infinity cannot be written)")
        return value


class BuiltinCommands(Component):
    name = "commands"

    def __init__(self, ctx: ComponentContext[None]) -> None:
        self.ctx = ctx

    async def start(self) -> None:
        register(self.ctx)


def register(ctx: ComponentContext[None]) -> None:
    async def ping(_: NoArgs) -> dict[str, Any]:
        """Check that the gateway answers; returns its id, version and uptime."""
        return {
            "gateway": ctx.site.gateway.id,
            "version": ctx.version,
            "uptime_s": round((ctx.clock.now_ms() - ctx.started_ms) / 1000, 1),
        }

    async def write(args: WriteArgs) -> dict[str, Any]:
        """Write a value to a device point through its driver."""
        if ctx.device(args.device) is None:
            raise CommandError("unknown_device", f"no device {args.device!r} on this gateway")
        try:
            result: WriteResult | Value = await ctx.write(args.device, args.point, args.value)
        except KeyError:
            raise CommandError("device_disabled", f"device {args.device!r} is disabled") from None
        except NotWritable as err:
            raise CommandError("not_writable", err.message) from err
        except UnknownPoint as err:
            raise CommandError("unknown_point", err.message) from err
        except NotSupported as err:
            raise CommandError("not_supported", err.message) from err
        except DriverError as err:
            raise CommandError("write_failed", err.message) from err
        if not isinstance(result, WriteResult):
            result = WriteResult(result)
        return {"device": args.device, "point": args.point, **result.reply()}

    async def buffer_stats(_: NoArgs) -> dict[str, Any]:
        """Rows, bytes, oldest sample and dropped count of the telemetry buffer."""
        return (await ctx.store.stats()).as_dict()

    async def reload(_: NoArgs) -> dict[str, Any]:
        """Re-read the config file and apply it; the buffer is kept."""
        if ctx.config_path is None:
            raise CommandError("no_config_file", "this gateway was not started from a file")
        try:
            # What a restart would run: the managed version, or an edited bootstrap file.
            new = load_resolved(ctx.config_path, starting=False)[1]
        except ConfigError as err:
            raise CommandError(
                "bad_config", "the new config is invalid; nothing changed",
                [str(i) for i in err.issues],
            ) from err
        except StartupError as err:  # e.g. a plugin the new config names does not load
            raise CommandError("bad_config", f"{err}; nothing changed") from err
        ctx.request_reload(new)  # the config validated here, not the file read again
        return {"reloading": True, "devices": len(new.devices)}

    async def commands_list(_: NoArgs) -> list[Any]:
        """The commands this gateway accepts."""
        return list(ctx.commands.describe())

    for cmd in (
        Command("ping", NoArgs, ping, ping.__doc__ or "", read_only=True),
        Command("write", WriteArgs, write, write.__doc__ or ""),
        Command("buffer.stats", NoArgs, buffer_stats, buffer_stats.__doc__ or "", read_only=True),
        Command("reload", NoArgs, reload, reload.__doc__ or ""),
        Command("commands.list", NoArgs, commands_list, commands_list.__doc__ or "",
                read_only=True),
        *logring.commands(),
    ):
        ctx.commands.register(cmd)


register_component(ComponentSpec("commands", BuiltinCommands))

"""The HTTP component: the last-value view (always, for ``devices.list``) and, when the
config has an ``http:`` section, the API, dashboard, metrics and health server."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from gateway.commands import Command
from gateway.components import (
    Component,
    ComponentContext,
    ComponentSpec,
    TaskFactory,
    register_component,
)
from gateway.http import views
from gateway.http.config import HttpSection
from gateway.http.cpu import HttpCpuMeter, wanted
from gateway.http.host import ContextHost, Host
from gateway.http.live import CONSUMER, LatestValues, follow_events

if TYPE_CHECKING:
    from gateway.http.server import HttpServer

log = logging.getLogger(__name__)


class DevicesListArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    device: str | None = Field(None, description="Only this device.")
    points: bool = Field(True, description="Include each point's last value.")


class NoArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HttpComponent(Component):
    name = "http"

    def __init__(self, host: Host, section: HttpSection | None) -> None:
        self.host = host
        self.section = section
        self.latest = LatestValues(queue_size=section.stream_queue if section else 1000)
        self.server: HttpServer | None = None
        if section is not None:  # aiohttp and prometheus-client load only for a server
            from gateway.http.server import HttpServer

            self.server = HttpServer(host, section, self.latest)
        self._remove_observer: Callable[[], None] | None = None
        self.cpu = HttpCpuMeter()

    async def start(self) -> None:
        if wanted():  # with or without the server, so a comparison carries its cost alike
            self.cpu.install(asyncio.get_running_loop())
        self._remove_observer = self.host.add_observer(self.latest)
        self.host.commands.register(Command(
            "devices.list", DevicesListArgs, self._devices_list,
            "Devices with driver, status, reason, since, last seen and last point values.",
            read_only=True))
        self.host.commands.register(Command(
            "http.stats", NoArgs, self._stats,
            "The HTTP server's own figures: whether it runs, its open live streams, and the "
            "CPU it spent (measured only when the daemon runs with FIELDGATE_HTTP_CPU=1).",
            read_only=True))
        if self.server is not None:
            await self.host.store.register_consumer(CONSUMER)
            await self.server.start()

    def tasks(self) -> Iterable[tuple[str, TaskFactory]]:
        if self.server is not None:
            yield "http-events", lambda: follow_events(self.host.store, self.latest)

    async def drain(self) -> None:
        if self.server is not None:
            self.server.api.close_streams()

    async def stop(self) -> None:
        if self._remove_observer is not None:
            self._remove_observer()
        self.cpu.uninstall()
        if self.server is not None:
            await self.server.stop()

    async def _devices_list(self, args: DevicesListArgs) -> list[dict[str, Any]]:
        return await views.devices(self.host, self.latest, args.device, args.points)


    async def _stats(self, _: NoArgs) -> dict[str, Any]:
        server = self.server
        return {"server": server is not None,
                "streams": len(server.api.streams) if server is not None else 0,
                "cpu": self.cpu.snapshot()}


def _factory(ctx: ComponentContext[Any]) -> Component:
    # The server runs only when the config has an ``http:`` key; the last-value view and
    # the ``devices.list`` command are always there.
    section: HttpSection | None = ctx.config if "http" in ctx.site.model_fields_set else None
    return HttpComponent(ContextHost(ctx), section)


register_component(ComponentSpec("http", _factory, section=HttpSection))

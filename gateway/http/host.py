"""The small interface the HTTP component needs from the daemon, and its adapter over the
:class:`gateway.components.ComponentContext`.

Everything the server reads goes through :class:`Host`, so the server and its tests do not
depend on how the runtime hands parts to a component.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from gateway.clock import Clock
from gateway.commands import CommandRegistry
from gateway.components import ComponentContext
from gateway.config.site import SiteConfig
from gateway.pipeline import Observer
from gateway.store import Store


class Host(Protocol):
    site: SiteConfig
    store: Store
    clock: Clock
    version: str
    started_ms: int
    state_dir: Path
    commands: CommandRegistry

    def add_observer(self, observer: Observer) -> Callable[[], None]: ...

    def status(self) -> dict[str, tuple[str, str, int]]:
        """Every known device: (status, reason of the last change, since ms)."""

    def drivers_started(self) -> bool: ...

    async def uplink_connected(self) -> bool | None:
        """None when no uplink is configured."""

    def poll_stats(self, device: str) -> dict[str, Any] | None:
        """The device's :meth:`gateway.pollstats.PollStats.snapshot` (requests, errors by
        kind, latency p50/p99 in ms, last error); None when its driver keeps none."""


class ContextHost:
    """:class:`Host` over the component's context."""

    def __init__(self, ctx: ComponentContext[Any]) -> None:
        self._ctx = ctx
        self.site = ctx.site
        self.store = ctx.store
        self.clock = ctx.clock
        self.version = ctx.version
        self.started_ms = ctx.started_ms
        self.state_dir = ctx.state_dir
        self.commands = ctx.commands

    def add_observer(self, observer: Observer) -> Callable[[], None]:
        return self._ctx.add_observer(observer)

    def status(self) -> dict[str, tuple[str, str, int]]:
        return {dev: (str(st), reason, since)
                for dev, (st, reason, since) in self._ctx.status.snapshot().items()}

    def drivers_started(self) -> bool:
        return self._ctx.drivers_started()

    async def uplink_connected(self) -> bool | None:
        # Through the registry, like every other reader: no dependency on the uplink's
        # internals or its start order.
        if self.commands.get("uplink.stats") is None:
            return None
        reply = await self.commands.execute("uplink.stats", {})
        return bool(reply.get("ok") and reply["result"].get("connected"))

    def poll_stats(self, device: str) -> dict[str, Any] | None:
        stats = self._ctx.poll_stats.get(device)
        return None if stats is None else stats.snapshot()

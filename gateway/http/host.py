"""The small interface the HTTP component needs from the daemon, and its adapter.

Everything the server reads goes through :class:`Host`, so the server code does not depend
on how the runtime hands parts to a component (the App today, a ComponentContext later).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from gateway.clock import Clock
from gateway.commands import CommandRegistry
from gateway.config.site import SiteConfig
from gateway.pipeline import Observer
from gateway.store import Store

if TYPE_CHECKING:
    from gateway.runtime import App


class Host(Protocol):
    site: SiteConfig
    store: Store
    clock: Clock
    version: str
    started_ms: int
    state_dir: Path

    @property
    def commands(self) -> CommandRegistry: ...

    def add_observer(self, observer: Observer) -> Callable[[], None]: ...

    def drivers_started(self) -> bool: ...

    def uplink_connected(self) -> bool | None:
        """None when no uplink is configured."""

    def poll_stats(self, device: str) -> dict[str, Any] | None:
        """The driver's poll counters of a device, None when its driver keeps none."""

    def samples_ingested(self) -> int: ...


class AppHost:
    """:class:`Host` over the running App."""

    def __init__(self, app: App) -> None:
        self._app = app
        self.site = app.config
        self.store = app.store
        self.clock = app.clock
        self.version = app.version
        self.started_ms = app.started_ms
        self.state_dir = app.state_dir

    @property
    def commands(self) -> CommandRegistry:
        return self._app.commands

    def add_observer(self, observer: Observer) -> Callable[[], None]:
        observers = self._app.pipeline.observers
        observers.append(observer)
        return lambda: observers.remove(observer) if observer in observers else None

    def drivers_started(self) -> bool:
        return self._app.ready.is_set()

    def uplink_connected(self) -> bool | None:
        for component in self._app.components:
            if component.name == "uplink":
                connected = getattr(component, "connected", None)
                return bool(connected is not None and connected.is_set())
        return None

    def poll_stats(self, device: str) -> dict[str, Any] | None:
        driver = self._app.device_driver.get(device)
        stats = getattr(driver, "poll_stats", None)
        return stats(device) if callable(stats) else None

    def samples_ingested(self) -> int:
        return self._app.pipeline.stats.samples

"""Components: the parts of the daemon besides drivers (rules, uplink, plugins, channels...).

A component is one :class:`ComponentSpec`, registered by name::

    register_component(ComponentSpec("weather", Weather, section=WeatherSection,
                                     after=("rules",), migrations=[WEATHER_V1]))

``section`` is the model of the top-level config key ``name``; ``after`` names the
components that must start before this one (and stop after it); ``migrations`` are this
component's schema scripts, applied by ``Store.open``. The runtime calls
``factory(ctx)`` with a :class:`ComponentContext`, the component's whole view of the
gateway: its own typed config section, the store, the clock, the command registry, the
device status service, the drivers' poll statistics, and the few verbs it may use (add a
pipeline processor or observer, start a supervised task, emit an event, write to a device).
It never sees the runtime.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from pydantic import BaseModel

from gateway.errors import StartupError

if TYPE_CHECKING:
    from drivers.base import DeviceConfig
    from gateway.clock import Clock
    from gateway.commands import CommandRegistry
    from gateway.config.site import SiteConfig
    from gateway.model import Event, Value
    from gateway.pipeline import BatchProcessor, EventEnricher, Observer
    from gateway.pollstats import PollStatsBook
    from gateway.runtime import App
    from gateway.status import DeviceStatusService
    from gateway.store import Store

TaskFactory = Callable[[], Awaitable[None]]
SectionT = TypeVar("SectionT")


class Component:
    """A part of the daemon with a lifecycle. All methods have no-op defaults."""

    name: str = "component"

    async def start(self) -> None:
        """Called after the store is open, after the components named in ``after`` started,
        and before the drivers start."""

    def tasks(self) -> Iterable[tuple[str, TaskFactory]]:
        """Long-running coroutines to supervise (restarted with backoff on crash)."""
        return ()

    async def drain(self) -> None:
        """Called at shutdown after the pipeline drained: finish in-flight work quickly."""

    async def stop(self) -> None:
        """Called at shutdown after the tasks were cancelled, in reverse start order."""


ComponentFactory = Callable[["ComponentContext[Any]"], Component | None]


@dataclass(frozen=True)
class ComponentSpec:
    """``factory(ctx)`` returns the component, or None when the config leaves it off."""

    name: str
    factory: ComponentFactory
    #: The model of the top-level config key ``name`` (None: the component has no section).
    section: type[BaseModel] | None = None
    #: Components that must start before this one (and stop after it).
    after: tuple[str, ...] = ()
    #: This component's schema migrations: append-only SQL scripts, applied by Store.open.
    migrations: Sequence[str] = ()
    #: The name the store records the migrations under (default: ``name``). Only for a
    #: component whose name changed after stores were written with the old one.
    schema_name: str = ""


class ComponentContext(Generic[SectionT]):
    """What the runtime offers one component for one run (a reload builds a new one)."""

    def __init__(self, app: App, spec: ComponentSpec, config: SectionT,
                 running: Mapping[str, Component]) -> None:
        self._app = app
        self._spec = spec
        self._running = running
        self.name = spec.name
        #: The component's own validated section (None when the spec has no section).
        self.config: SectionT = config
        #: The whole validated site config (read only).
        self.site: SiteConfig = app.config
        #: The file the config was loaded from (None when built in memory).
        self.config_path: Path | None = app.config_path
        self.store: Store = app.store
        self.clock: Clock = app.clock
        self.commands: CommandRegistry = app.commands
        self.status: DeviceStatusService = app.status
        #: Every device's (or bus's) poll statistics, as the drivers count them (read only).
        self.poll_stats: PollStatsBook = app.poll_stats
        self.state_dir: Path = app.state_dir
        self.version: str = app.version
        self.started_ms: int = app.started_ms
        self.logger = logging.getLogger(f"gateway.components.{spec.name}")
        #: Set once this run's parts (drivers included) have started.
        self.ready: asyncio.Event = app.ready

    @property
    def reload_error(self) -> str | None:
        """Why the last reload did not take effect (None: it did, or there was none)."""
        return self._app.reload_error

    def add_processor(self, processor: BatchProcessor) -> Callable[[], None]:
        """Run ``processor`` inside the commit transaction of every batch. Returns a
        function that removes it again."""
        return self._app.pipeline.add_processor(processor)

    def add_observer(self, observer: Observer) -> Callable[[], None]:
        """Tell ``observer`` about every committed batch. Returns its remover."""
        return self._app.pipeline.add_observer(observer)

    def add_event_enricher(self, enricher: EventEnricher) -> Callable[[], None]:
        """Pass every event a driver or component adds through ``enricher`` (quick, no
        I/O) before it is committed. Returns its remover."""
        return self._app.pipeline.add_event_enricher(enricher)

    def component(self, name: str) -> Component:
        """The running component ``name``, which must be named in this spec's ``after``
        (so it started first). Raises LookupError when its config turned it off."""
        found = self.get_component(name)
        if found is None:
            raise LookupError(f"component {name!r} is not running (its config turns it off)")
        return found

    def get_component(self, name: str) -> Component | None:
        """Like :meth:`component`, but None when the dependency is not running."""
        if name not in self._spec.after:
            raise LookupError(f"component {self.name!r} asks for {name!r}, which is not in "
                              f"its after={self._spec.after!r}; declare the dependency")
        return self._running.get(name)

    def start_task(self, name: str, factory: TaskFactory) -> None:
        """Start one more supervised task while running (tasks known at start belong in
        :meth:`Component.tasks`). It is cancelled at shutdown with the others."""
        self._app.supervisor.start(name, factory)

    async def emit_event(self, event: Event) -> None:
        """Commit ``event`` to the outbox, in the order of the data around it."""
        await self._app.pipeline.add_event(event)

    async def write(self, device: str, point: str, value: Value) -> Any:
        """Write through the device's driver. KeyError: the device has no running driver."""
        return await self._app.write(device, point, value)

    def device(self, device_id: str) -> DeviceConfig | None:
        return self.site.device(device_id)

    def request_reload(self, config: SiteConfig | None = None) -> None:
        """Rebuild everything above the store, with ``config`` when given (already
        validated), else the config file read again."""
        self._app.request_reload(config)

    def request_stop(self) -> None:
        self._app.request_stop()

    def drivers_started(self) -> bool:
        """True once the drivers of this run started (the daemon reported READY)."""
        return self._app.ready.is_set()


_REGISTRY: dict[str, ComponentSpec] = {}

#: Built-in components, imported on first use. Each module calls register_component().
BUILTIN_COMPONENTS: tuple[str, ...] = (
    "gateway.builtin_commands",
    "gateway.health",
    "gateway.control",
    "hooks.component",
    "gateway.channels.component",
    "gateway.uplink",
    "gateway.rules",
    "gateway.http.component",
    "gateway.siteops",
    "gateway.confmgmt.component",
)


def register_component(spec: ComponentSpec) -> ComponentSpec:
    """Register (or replace) a component. Do it before the config is loaded: its section
    is part of the site model and its migrations run when the store opens."""
    _REGISTRY[spec.name] = spec
    return spec


def unregister_component(name: str) -> None:
    """Forget a component (tests, embedding). Built-in ones come back on the next import."""
    _REGISTRY.pop(name, None)


def registry() -> Mapping[str, ComponentSpec]:
    """Every registered component by name, in start order."""
    for module in BUILTIN_COMPONENTS:
        importlib.import_module(module)
    return {spec.name: spec for spec in start_order(_REGISTRY.values())}


class ComponentOrderError(StartupError):
    """``after`` names an unknown component, or the dependencies form a cycle."""


def start_order(specs: Iterable[ComponentSpec]) -> list[ComponentSpec]:
    """``specs`` sorted so that each starts after the ones it names in ``after``; among
    those free to start, by name (so the order is the same on every machine)."""
    by_name = {s.name: s for s in specs}
    for spec in by_name.values():
        for dep in spec.after:
            if dep not in by_name:
                raise ComponentOrderError(
                    f"component {spec.name!r} starts after {dep!r}, which is not a "
                    f"registered component (registered: {', '.join(sorted(by_name))})",
                    "fix the name in its ComponentSpec(after=...) or install the package "
                    "that registers it")
    order: list[ComponentSpec] = []
    placed: set[str] = set()
    waiting = dict(sorted(by_name.items()))
    while waiting:
        ready = [n for n, s in waiting.items() if placed.issuperset(s.after)]
        if not ready:
            raise ComponentOrderError(
                "components depend on each other in a cycle: "
                + "; ".join(f"{n} after {', '.join(s.after)}" for n, s in waiting.items()),
                "remove one of these after=(...) entries")
        name = ready[0]
        order.append(waiting.pop(name))
        placed.add(name)
    return order


def migrations() -> dict[str, list[str]]:
    """The schema migrations of every registered component that has some."""
    return {spec.schema_name or name: list(spec.migrations)
            for name, spec in registry().items() if spec.migrations}

"""Components: the parts of the daemon besides drivers (rules, uplink, hooks, channels).

Like drivers, each registers by name, with the config section it owns. The runtime builds
the site config model from the registry, then creates each component with the running
:class:`gateway.runtime.App`, starts them in ``order`` and stops them in reverse.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

if TYPE_CHECKING:
    from gateway.runtime import App

TaskFactory = Callable[[], Awaitable[None]]


class Component:
    """A part of the daemon with a lifecycle. All methods have no-op defaults."""

    name: str = "component"

    async def start(self) -> None:
        """Called after the store is open and before the drivers start."""

    def tasks(self) -> Iterable[tuple[str, TaskFactory]]:
        """Long-running coroutines to supervise (restarted with backoff on crash)."""
        return ()

    async def drain(self) -> None:
        """Called at shutdown after the pipeline drained: finish in-flight work quickly."""

    async def stop(self) -> None:
        """Called at shutdown after the tasks were cancelled, in reverse start order."""


ComponentFactory = Callable[["App"], Component | None]


@dataclass(frozen=True)
class ComponentSpec:
    """``section`` is the config model of the top-level key ``name`` (None: no section).
    ``factory(app)`` returns the component, or None when the config leaves it off."""

    name: str
    factory: ComponentFactory
    section: type[BaseModel] | None = None
    order: int = 50


_REGISTRY: dict[str, ComponentSpec] = {}

#: Built-in components, imported on first use. Each module calls register_component().
BUILTIN_COMPONENTS: tuple[str, ...] = (
    "gateway.control",
    "hooks.component",
    "gateway.channels.component",
    "gateway.uplink",
    "gateway.rules",
    "gateway.http",
)


def register_component(spec: ComponentSpec) -> ComponentSpec:
    _REGISTRY[spec.name] = spec
    return spec


def registry() -> Mapping[str, ComponentSpec]:
    for module in BUILTIN_COMPONENTS:
        importlib.import_module(module)
    return dict(sorted(_REGISTRY.items(), key=lambda kv: (kv[1].order, kv[0])))


def section_of(config: Any, name: str) -> Any:
    """The validated section ``name`` of a site config (None when absent)."""
    return getattr(config, name, None)

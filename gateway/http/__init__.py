"""The local HTTP API, technician dashboard, ``/metrics`` and health endpoints (aiohttp).

It reads the same command registry and device status as MQTT and the CLI, and sees the data
through one pipeline observer that keeps the last value of each point: it never sits on the
polling path. See docs/http-api.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.components import Component, ComponentSpec, register_component
from gateway.http.config import HttpSection

if TYPE_CHECKING:
    from gateway.runtime import App


def _factory(app: App) -> Component:
    from gateway.http.component import HttpComponent
    from gateway.http.host import AppHost

    # The server runs only when the config has an ``http:`` key; the last-value view and
    # ``devices.list`` are always there.
    section: HttpSection | None = (
        app.config.http if "http" in app.config.model_fields_set else None  # type: ignore[attr-defined]
    )
    return HttpComponent(AppHost(app), section)


register_component(ComponentSpec("http", _factory, section=HttpSection, order=60))

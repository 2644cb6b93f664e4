"""The local HTTP API, technician dashboard, ``/metrics`` and health endpoints (aiohttp).

It reads the same command registry and device status as MQTT and the CLI, and sees the data
through one pipeline observer that keeps the last value of each point: it never sits on the
polling path. See docs/http-api.md.
"""

from __future__ import annotations

from typing import Any

from gateway.components import Component, ComponentContext, ComponentSpec, register_component
from gateway.http.config import HttpSection


def _factory(ctx: ComponentContext[Any]) -> Component:
    from gateway.http.component import HttpComponent
    from gateway.http.host import ContextHost

    # The server runs only when the config has an ``http:`` key; the last-value view and
    # the ``devices.list`` command are always there.
    section: HttpSection | None = ctx.config if "http" in ctx.site.model_fields_set else None
    return HttpComponent(ContextHost(ctx), section)


register_component(ComponentSpec("http", _factory, section=HttpSection))

"""Store-and-forward MQTT uplink and the command downlink (wire format v1).

Importing this package registers the ``uplink`` component and its config section.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.components import ComponentSpec, register_component
from gateway.uplink.component import Uplink
from gateway.uplink.config import UplinkSection

if TYPE_CHECKING:
    from gateway.runtime import App


def _factory(app: App) -> Uplink | None:
    cfg: UplinkSection = app.config.uplink  # type: ignore[attr-defined]
    return Uplink(app, cfg) if cfg.enabled else None


register_component(ComponentSpec("uplink", _factory, section=UplinkSection, order=40))

__all__ = ["Uplink", "UplinkSection"]

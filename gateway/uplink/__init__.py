"""Store-and-forward MQTT uplink and the command downlink (wire format v1).

Importing this package registers the ``uplink`` component and its config section.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from gateway.components import ComponentSpec, register_component
from gateway.uplink.component import Uplink
from gateway.uplink.config import UplinkSection

if TYPE_CHECKING:
    from gateway.runtime import App

log = logging.getLogger(__name__)


def _factory(app: App) -> Uplink | None:
    cfg: UplinkSection = app.config.uplink  # type: ignore[attr-defined]
    if not cfg.enabled:
        return None
    if cfg.broker is None and cfg.embedded_broker is None:
        log.warning("no uplink.broker configured: data stays in the local buffer until one "
                    "is (set uplink.broker, or uplink.embedded_broker for a demo)")
        return None
    return Uplink(app, cfg)


register_component(ComponentSpec("uplink", _factory, section=UplinkSection, order=40))

__all__ = ["Uplink", "UplinkSection"]

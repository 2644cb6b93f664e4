"""Store-and-forward MQTT uplink and the command downlink (wire format v1).

Importing this package registers the ``uplink`` component and its config section. The
component itself (and with it aiomqtt and paho) is imported when the config turns it on: a
site with no ``uplink.broker`` (or ``uplink.embedded_broker``) never loads the MQTT client.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from gateway.components import ComponentContext, ComponentSpec, register_component
from gateway.uplink.config import UplinkSection
from gateway.uplink.messages import MIGRATIONS

if TYPE_CHECKING:
    from gateway.uplink.component import Uplink

log = logging.getLogger(__name__)


def _factory(ctx: ComponentContext[UplinkSection]) -> Uplink | None:
    cfg = ctx.config
    if not cfg.enabled:
        return None
    if cfg.broker is None and cfg.embedded_broker is None:
        log.warning("no uplink.broker configured: data stays in the local buffer until one "
                    "is (set uplink.broker, or uplink.embedded_broker for a demo)")
        return None
    from gateway.uplink.component import Uplink

    return Uplink(ctx)


def __getattr__(name: str) -> Any:
    """``from gateway.uplink import Uplink`` imports the component (and the MQTT client)."""
    if name == "Uplink":
        from gateway.uplink.component import Uplink

        return Uplink
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# After every component that registers commands: the uplink drains first at shutdown, so a
# command it carries (``reload``, ``alarm.ack``) finishes before they go; and after
# ``health``, whose ``health.stats`` the periodic stats message carries.
register_component(ComponentSpec("uplink", _factory, section=UplinkSection,
                                 after=("channels", "commands", "health", "plugins", "rules",
                                        "siteops"),
                                 migrations=MIGRATIONS))

__all__ = ["Uplink", "UplinkSection"]

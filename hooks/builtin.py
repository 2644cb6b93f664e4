"""fieldgate's own plugin: built-in behaviour registers through the same hooks as a
customer's (Datasette's DEFAULT_PLUGINS), so there is one plugin system, not two."""

from __future__ import annotations

from collections.abc import Iterable

from hooks.spec import hookimpl


@hookimpl
def register_channels() -> Iterable[type]:
    """The notification channels that ship with fieldgate."""
    from gateway.channels.builtin import BUILTIN_CHANNELS

    return BUILTIN_CHANNELS

"""fieldgate's plugin system (pluggy): the hooks in :mod:`hooks.spec`, the class-based API
in :mod:`hooks.base`, the store facade in :mod:`hooks.db`. Plugin authors import from here::

    from hooks import CustomerHooks, hookimpl

Both names are imported on first use: the daemon imports this package on every site (the
plugins component, :mod:`hooks.component`), and a site without plugins never loads pluggy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hooks.base import CustomerHooks
    from hooks.spec import hookimpl

__all__ = ["CustomerHooks", "hookimpl"]


def __getattr__(name: str) -> Any:
    if name == "CustomerHooks":
        from hooks.base import CustomerHooks

        return CustomerHooks
    if name == "hookimpl":
        from hooks.spec import hookimpl

        return hookimpl
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

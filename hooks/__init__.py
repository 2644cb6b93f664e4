"""fieldgate's plugin system (pluggy): the hooks in :mod:`hooks.spec`, the class-based API
in :mod:`hooks.base`, the store facade in :mod:`hooks.db`. Plugin authors import from here::

    from hooks import CustomerHooks, hookimpl
"""

from __future__ import annotations

from hooks.base import CustomerHooks
from hooks.spec import hookimpl

__all__ = ["CustomerHooks", "hookimpl"]

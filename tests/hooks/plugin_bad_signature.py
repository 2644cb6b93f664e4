"""A plugin module with a hook whose parameter name matches no parameter of the hook
(tests/hooks/test_startup.py loads it)."""

from typing import Any

from hooks.spec import hookimpl


@hookimpl
async def on_alarm_created(alarm: Any) -> None:  # the parameter is alarm_event
    pass

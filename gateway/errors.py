"""Errors that stop the gateway at start because of how it is configured.

Config *validation* problems are :class:`gateway.config.errors.ConfigError` (file, line,
column). A :class:`StartupError` is a configuration problem found only when a part starts: a
plugin that does not import, a port already in use by design, a missing certificate. The CLI
prints its message and hint (no traceback: nothing is wrong with fieldgate itself) and exits
with EX_CONFIG (78), so systemd does not restart a gateway that cannot work as configured.
"""

from __future__ import annotations

from gateway.config.errors import EX_CONFIG


class StartupError(Exception):
    """A configuration problem found while starting. ``str(err)`` says what went wrong and
    where; ``hint`` says what to do about it."""

    exit_code = EX_CONFIG

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint


def startup_errors(err: BaseException) -> list[StartupError] | None:
    """The StartupErrors in ``err`` (itself, or the leaves of an exception group from a
    TaskGroup), or None when anything else is in there too: a bug keeps its traceback."""
    if isinstance(err, StartupError):
        return [err]
    if isinstance(err, BaseExceptionGroup):
        found: list[StartupError] = []
        for sub in err.exceptions:
            leaves = startup_errors(sub)
            if leaves is None:
                return None
            found.extend(leaves)
        return found
    return None

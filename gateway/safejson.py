"""Parsing JSON from strangers (MQTT commands, control-socket lines) without being hurt by it.

``json.loads`` recurses once per nesting level, so 30,000 ``[`` in a 60 KB payload raise a
``RecursionError`` deep inside the parser; and it accepts ``NaN`` and ``Infinity``, which
are not JSON and would reach a device as a write of "not a number". :func:`loads` measures
the nesting before parsing and refuses both with :class:`BadJson`, a ``ValueError`` whose
message says what was wrong.

:class:`RateLimitedLog` keeps a flood of identical complaints (5,000 commands without an id)
from becoming 5,000 WARNING lines: the first of a kind is logged, the rest are counted and
summed up in one line per interval.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections.abc import Callable
from typing import Any

#: Deeper than any command or config needs; far below the interpreter's recursion limit.
MAX_DEPTH = 64

_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(rb"[\[\]{}]")


class BadJson(ValueError):
    """The payload is not JSON we accept; the message says why."""


def nesting_depth(payload: bytes) -> int:
    """The deepest nesting of arrays and objects in ``payload`` (strings do not count)."""
    depth = deepest = 0
    for bracket in _BRACKETS.findall(_STRINGS.sub(b'""', payload)):
        if bracket in (b"[", b"{"):
            depth += 1
            if depth > deepest:
                deepest = depth
        else:
            depth -= 1
    return deepest


def _no_constants(name: str) -> Any:
    raise BadJson(f"{name} is not a JSON value (send a number or null)")


def loads(payload: bytes | str, *, max_depth: int = MAX_DEPTH) -> Any:
    """``json.loads`` that refuses nesting beyond ``max_depth`` and NaN/Infinity."""
    data = payload.encode() if isinstance(payload, str) else payload
    depth = nesting_depth(data)
    if depth > max_depth:
        raise BadJson(f"JSON nested {depth} levels deep; at most {max_depth} are accepted")
    try:
        return json.loads(data, parse_constant=_no_constants)
    except BadJson:
        raise
    except UnicodeDecodeError as err:
        raise BadJson(f"not UTF-8 text: {err.reason} at byte {err.start}") from None
    except json.JSONDecodeError as err:
        raise BadJson(f"not JSON: {err.msg} at line {err.lineno} column {err.colno}") from None
    except RecursionError:  # defence in depth: the depth check should have caught it
        raise BadJson("JSON nested too deeply") from None


class RateLimitedLog:
    """Log the first message of each ``key`` at once, then at most one summary per
    ``interval`` seconds with the count of those suppressed meanwhile."""

    def __init__(self, logger: logging.Logger, interval: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._log = logger
        self._interval = interval
        self._clock = clock
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def log(self, level: int, key: str, msg: str, *args: Any) -> bool:
        """Returns True when the line was written, False when it was only counted."""
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last < self._interval:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return False
        self._last[key] = now
        more = self._suppressed.pop(key, 0)
        if more:
            msg += " (and %d more like it in the last %.0f s)"
            args = (*args, more, now - (last or now))
        self._log.log(level, msg, *args, stacklevel=3)
        return True

    def warning(self, key: str, msg: str, *args: Any) -> bool:
        return self.log(logging.WARNING, key, msg, *args)

    @property
    def suppressed(self) -> int:
        return sum(self._suppressed.values())


def finite(data: Any) -> Any:
    """NaN and infinities as None, at any depth (JSON has no such numbers; orjson writes
    them as null)."""
    if isinstance(data, float) and not math.isfinite(data):
        return None
    if isinstance(data, dict):
        return {k: finite(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [finite(v) for v in data]
    return data

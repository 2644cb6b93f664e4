"""Give the C heap that Python freed back to the OS (glibc's ``malloc_trim``).

CPython keeps small objects in its own arenas and returns an arena when it is empty; larger
blocks (a commit's batch list, a chunk's JSON text, a message payload, the rows SQLite hands
back from its thread) come from glibc, which keeps what is freed for reuse. At a steady rate
that is reused, but after a peak (a backlog sent, a burst of polls queued) the heap stays at
the peak's size: the RSS ratchets up and never comes down. :func:`trim` returns whole free
pages of every glibc arena to the OS; the pipeline calls :func:`trim_every` after commits.
A no-op where the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import time
from collections.abc import Callable

_trim: Callable[[int], int] | None
try:
    _trim = ctypes.CDLL(None).malloc_trim
except (OSError, AttributeError):  # not glibc
    _trim = None

#: Seconds between two trims during operation: a trim walks the free lists (about a
#: millisecond per 10 MB of heap), so this costs nothing measurable.
TRIM_EVERY_S = 30.0
_last = time.monotonic()


def trim() -> None:
    """Return the free heap to the OS now."""
    global _last
    _last = time.monotonic()
    if _trim is not None:
        _trim(0)


def trim_every(seconds: float = TRIM_EVERY_S) -> None:
    """:func:`trim` when the last one is ``seconds`` old (cheap to call often)."""
    if time.monotonic() - _last >= seconds:
        trim()

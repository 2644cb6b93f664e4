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
_mallopt: Callable[[int, int], int] | None
try:
    _libc = ctypes.CDLL(None)
    _trim, _mallopt = _libc.malloc_trim, _libc.mallopt
except (OSError, AttributeError):  # not glibc
    _trim = _mallopt = None

_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameters (malloc.h)
_M_ARENA_MAX = -8
#: Blocks at least this large get their own mapping, unmapped when freed (glibc's initial
#: value, fixed: see :func:`tune`).
MMAP_THRESHOLD = 128 * 1024
#: At most this many glibc arenas (the main one and the threads': aiosqlite's, the executor).
ARENA_MAX = 2

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


def tune() -> None:
    """Keep the big temporary blocks out of the heap, once the daemon has started.

    glibc serves a block of :data:`MMAP_THRESHOLD` or more with a mapping of its own, given
    back when it is freed, but it raises that threshold to the size of every such block
    freed (up to 32 MB). The daemon frees big blocks all the time: a commit's batch list, a
    chunk's JSON and compressed text, the messages cut from it. After the first few, all of
    them would come from the heap, in between the small blocks that outlive them, where a
    free keeps them (``tests/gateway/test_heap.py``): the RSS crept up for minutes while
    Python's own objects stayed flat. A fixed threshold keeps them mapped alone. The arenas
    are capped too: the store's thread has one already; the threads started later (the
    executor's) share them instead of each keeping a heap of its own.
    A no-op where the C library is not glibc."""
    if _mallopt is not None:
        _mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
        _mallopt(_M_ARENA_MAX, ARENA_MAX)

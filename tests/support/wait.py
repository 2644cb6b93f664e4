"""The one way a test waits: poll a condition until it holds, or fail after a timeout.

A test never sleeps and then asserts: on a busy machine the sleep is too short, on a quiet
one it is wasted. It waits for what it needs (``await wait_until(lambda: ..., 10)``), and
the timeout is only the point where it gives up, so make it generous. This module is the
only place in the tests that calls ``asyncio.sleep`` with a delay: everything else that
waits comes through here (``grep -rn "asyncio.sleep(" tests`` shows it).
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

#: How often conditions are polled (seconds).
POLL_S = 0.02


class ConditionTimeout(AssertionError, TimeoutError):
    """The condition did not hold within the timeout (an AssertionError for pytest's report,
    a TimeoutError for code that catches timeouts)."""


async def wait_until(cond: Callable[[], T | Awaitable[T]], timeout: float = 10.0, *,
                     what: str = "", interval: float = POLL_S) -> T:
    """Poll ``cond`` (a function, or a coroutine function) until it returns something truthy;
    return that value. Raise :class:`ConditionTimeout` after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = cond()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value  # type: ignore[return-value]
        if loop.time() >= deadline:
            raise ConditionTimeout(f"{what or 'condition'} not met within {timeout:g} s")
        await asyncio.sleep(interval)


def wait_until_sync(cond: Callable[[], T], timeout: float = 20.0, *, what: str = "",
                    interval: float = 0.05) -> T:
    """:func:`wait_until` for code outside the event loop (a daemon in a subprocess)."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise ConditionTimeout(f"{what or 'condition'} not met within {timeout:g} s")
        time.sleep(interval)


async def stays(cond: Callable[[], bool | Awaitable[bool]], seconds: float, *,
                what: str = "", interval: float = POLL_S) -> None:
    """Check that ``cond`` holds the whole time for ``seconds`` (a negative check: that
    something does *not* happen, a second delivery, a crash). Fails as soon as it breaks."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        value = cond()
        if inspect.isawaitable(value):
            value = await value
        if not value:
            raise AssertionError(f"{what or 'condition'} stopped holding")
        if loop.time() >= deadline:
            return
        await asyncio.sleep(interval)


async def let_tasks_run(rounds: int = 5) -> None:
    """Give the tasks that are ready a few turns of the event loop (no time passes): for a
    task just created to reach its first ``await``."""
    for _ in range(rounds):
        await asyncio.sleep(0)

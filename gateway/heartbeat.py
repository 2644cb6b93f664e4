"""A heartbeat on the event loop: a timer, and when it really ran.

The health figures' loop lag (:class:`gateway.health.LoopLag`: how late the loop wakes a
timer) was a task sleeping twice a second: a future, a timer and a task step per wake-up.
A timer that re-arms itself does the same with less; users share one per loop, at the
shortest period asked for. Each run records when it ran (``beat``, :func:`time.monotonic`,
readable from any thread) and how late (``lag_last``, and each user's ``lag_max``). (The
plugins' loop watch, :mod:`hooks.loopwatch`, needs no timer: it looks from its thread.)"""

from __future__ import annotations

import asyncio
import time
import weakref


class Heartbeat:
    """A timer that runs every ``period`` (the shortest its users asked for) while any
    uses it. Get a use of the running loop's with :func:`acquire`."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._users: list[Use] = []
        self.period = 0.0
        #: When the timer last ran (time.monotonic()).
        self.beat = time.monotonic()
        #: How late the timer ran the last time (seconds).
        self.lag_last = 0.0
        self._due = 0.0
        self._handle: asyncio.TimerHandle | None = None

    def _tick(self) -> None:
        now = self._loop.time()
        self.lag_last = late = max(0.0, now - self._due)
        for use in self._users:
            if late > use.lag_max:
                use.lag_max = late
        self.beat = time.monotonic()
        self._due = now + self.period
        self._handle = self._loop.call_at(self._due, self._tick)

    def _restart(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if not self._users:
            return
        self.period = min(use.period for use in self._users)
        self.beat = time.monotonic()
        self._due = self._loop.time() + self.period
        self._handle = self._loop.call_at(self._due, self._tick)


class Use:
    """One user's hold on the heartbeat: it beats at least every ``period`` until
    :meth:`release`. ``lag_max`` is the latest run this user saw."""

    def __init__(self, heart: Heartbeat, period: float) -> None:
        self.heart = heart
        self.period = period
        self.lag_max = 0.0

    @property
    def beat(self) -> float:
        """When the timer last ran (time.monotonic(); read from any thread)."""
        return self.heart.beat

    @property
    def lag_last(self) -> float:
        return self.heart.lag_last

    def release(self) -> None:
        """Stop needing the heartbeat (call on the loop)."""
        if self in self.heart._users:
            self.heart._users.remove(self)
            self.heart._restart()


_hearts: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Heartbeat] = (
    weakref.WeakKeyDictionary())


def acquire(period: float) -> Use:
    """A hold on the running loop's heartbeat, which beats at least every ``period``
    seconds until the hold is released (call on the loop)."""
    loop = asyncio.get_running_loop()
    heart = _hearts.get(loop)
    if heart is None:
        heart = _hearts[loop] = Heartbeat(loop)
    use = Use(heart, period)
    heart._users.append(use)
    if heart._handle is None or period < heart.period:
        heart._restart()
    return use

"""Time as a dependency, so rules and drivers can be tested with a clock that tests advance."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from typing import Any, Protocol


class Clock(Protocol):
    def now_ms(self) -> int:
        """Wall-clock UTC milliseconds, for sample timestamps."""

    def monotonic(self) -> float:
        """Seconds from an arbitrary origin, for intervals and timeouts."""

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    # A poller calls monotonic and sleep on every poll: time.monotonic itself (no method
    # frame), and asyncio.sleep's own coroutine (no second coroutine around it).
    monotonic = staticmethod(time.monotonic)

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def sleep(self, seconds: float) -> Coroutine[Any, Any, None]:
        return asyncio.sleep(seconds)


class FakeClock:
    """A clock that moves only when told to; ``sleep`` returns at once after advancing."""

    def __init__(self, start_ms: int = 1_700_000_000_000) -> None:
        self._ms = start_ms
        self._mono = 0.0

    def now_ms(self) -> int:
        return self._ms

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        self._ms += round(seconds * 1000)
        self._mono += seconds

    async def sleep(self, seconds: float) -> None:
        self.advance(seconds)
        await asyncio.sleep(0)

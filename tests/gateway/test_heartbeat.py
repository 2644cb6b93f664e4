"""The loop's one shared heartbeat: the loop watch and the loop-lag figure use one timer."""

from __future__ import annotations

import asyncio
import time

from gateway import heartbeat
from gateway.health import LoopLag
from tests.support.wait import wait_until


def _timers(loop: asyncio.AbstractEventLoop) -> int:
    return sum(1 for h in getattr(loop, "_scheduled", []) if not h.cancelled())


async def test_two_users_share_one_timer_at_the_shorter_period() -> None:
    loop = asyncio.get_running_loop()
    before = _timers(loop)
    slow = heartbeat.acquire(0.5)
    fast = heartbeat.acquire(0.05)
    assert slow.heart is fast.heart and fast.heart.period == 0.05
    assert _timers(loop) == before + 1, "one timer for both"
    start = fast.beat
    await wait_until(lambda: fast.beat > start, timeout=2, what="a beat")
    fast.release()
    assert slow.heart.period == 0.5 and _timers(loop) == before + 1
    slow.release()
    assert _timers(loop) == before, "no user, no timer"


async def test_the_lag_figure_sees_a_blocked_loop_and_its_maximum_is_its_own() -> None:
    lag = LoopLag(0.05)
    task = asyncio.create_task(lag.run())
    try:
        await asyncio.sleep(0.12)
        time.sleep(0.3)  # noqa: ASYNC251 - blocks the loop on purpose
        await wait_until(lambda: lag.max >= 0.2, timeout=2, what="the stall measured")
        await wait_until(lambda: lag.last < 0.1, timeout=2, what="the loop on time again")
        later = LoopLag(0.05)  # a new health component (a reload) starts from zero
        task2 = asyncio.create_task(later.run())
        await asyncio.sleep(0.12)
        assert later.max < 0.2 <= lag.max
        task2.cancel()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

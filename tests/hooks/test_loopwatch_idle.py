"""The loop watch does not wake an idle loop, and still sees a stall, on both loops."""

from __future__ import annotations

import asyncio
import time

import uvloop

from hooks.loopwatch import LoopWatch


async def _watch_idle_then_stall() -> tuple[int, int, int]:
    watch = LoopWatch(None, 0.1)
    watch.start()
    try:
        await asyncio.sleep(0.4)  # idle: about 8 looks
        idle_pings = watch.pings
        time.sleep(0.3)  # noqa: ASYNC251 - blocks the loop on purpose
        deadline = time.monotonic() + 3
        while watch.last is None or watch.last["duration_s"] is None:
            assert time.monotonic() < deadline, "the stall's end was not seen"
            await asyncio.sleep(0.02)
        return idle_pings, watch.pings, watch.stalls
    finally:
        watch.stop()


def test_an_idle_loop_gets_no_ping_and_a_stall_is_still_reported() -> None:
    for run in (asyncio.run, uvloop.run):
        idle_pings, pings, stalls = run(_watch_idle_then_stall())
        assert idle_pings == 0, f"{run.__module__}: the idle loop was woken"
        assert pings >= 1 and stalls == 1, run.__module__

"""The supervisor restarts crashed tasks after a backoff that runs on its clock."""

from __future__ import annotations

import asyncio
import itertools

from gateway.clock import FakeClock
from gateway.supervisor import Supervisor
from tests.support.wait import wait_until


async def test_restarts_back_off_on_the_clock_and_a_healthy_run_resets_it() -> None:
    clock = FakeClock()
    runs: list[float] = []

    async def flaky() -> None:
        runs.append(clock.monotonic())
        if len(runs) == 4:
            await clock.sleep(Supervisor.healthy_after + 1)  # a long, healthy run
        if len(runs) < 6:
            raise RuntimeError(f"crash {len(runs)}")

    async with asyncio.TaskGroup() as group:
        supervisor = Supervisor(group, backoff_cap=30.0, clock=clock)
        task = supervisor.start("flaky", flaky)
        await wait_until(task.done, 5, what="six runs")  # real time: instant, no backoff waits
    assert len(runs) == 6 and supervisor.stats["flaky"].restarts == 5
    gaps = [b - a for a, b in itertools.pairwise(runs)]
    # backoff 0.5 s doubling (jittered over the upper half): 0.25..0.5, 0.5..1, 1..2
    assert 0.25 <= gaps[0] <= 0.5 and 0.5 <= gaps[1] <= 1 and 1 <= gaps[2] <= 2
    # run 4 lasted longer than healthy_after: the backoff starts over, then grows again
    assert 0.25 <= gaps[3] - (Supervisor.healthy_after + 1) <= 0.5
    assert 0.5 <= gaps[4] <= 1

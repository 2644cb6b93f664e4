"""The channel retry schedule runs on the clock: with a FakeClock a test walks through hours
of backoff at once (the broker of time is the clock, not the test's patience)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from gateway.channels.base import channel_types
from gateway.channels.component import ChannelsSection
from gateway.channels.delivery import CONSUMER, Router, Sender
from gateway.clock import FakeClock
from gateway.model import Event
from gateway.store import Store
from tests.gateway.channels.httpserver import Request, http_server
from tests.support.wait import wait_until


def down(_: Request) -> tuple[int, Any]:
    return 503, {"error": "maintenance"}


async def test_retries_wait_on_the_clock(tmp_path: Path) -> None:
    clock = FakeClock()
    store = Store(tmp_path / "b.db")
    await store.open()
    async with http_server(down) as srv:
        section = ChannelsSection.model_validate({
            "targets": {"down": {"type": "webhook", "url": srv.url + "/down"}},
            "routes": [{"channels": ["down"], "events": ["custom"]}],
            "retry_initial": 600, "retry_max": 3600, "max_attempts": 4,
        })
        wake = {"down": asyncio.Event()}
        channel = channel_types()["webhook"]("down", section.targets["down"])
        await store.register_consumer(CONSUMER)
        router = Router(store, section, "gw", wake)
        sender = Sender(store, channel, section, wake["down"], clock)
        tasks = [asyncio.create_task(router.run()), asyncio.create_task(sender.run())]
        try:
            start = clock.now_ms()
            await store.add_events([Event("custom", {"topic": "t", "body": 1, "plugin": "p"})])
            # three backoffs of at least 300 s each: minutes of real time without the clock
            await wait_until(lambda: sender.failed == 1, 10, what="the sender gave up")
            assert len(srv.requests) == 4 and sender.retries == 3
            assert clock.now_ms() - start >= 3 * 300_000, "the waits ran on the fake clock"
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    await store.close()

"""A stop cancels the tasks that wait for news; the cancel must stop them even when the news
arrives in the same turn of the event loop (devices going offline at a stop do just that).

``asyncio.wait_for`` on Python 3.11 returns the inner result instead of raising the cancel
when both happen together; a task looping over such a wait then never stops, and the daemon
hung at exit ("task http-events did not stop within 8.7 s", then no exit).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gateway.store import Store


async def test_a_cancel_that_meets_an_event_stops_the_outbox_wait(tmp_path: Path) -> None:
    store = Store(tmp_path / "b.db")
    await store.open()
    try:
        for _ in range(20):
            task = asyncio.create_task(store.wait_events("http", 30.0))
            await asyncio.sleep(0)  # the task now waits on the consumer's flag
            store._event_flags["http"].set()  # news, and in the same turn: the stop
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            store._event_flags["http"].clear()
    finally:
        await store.close()

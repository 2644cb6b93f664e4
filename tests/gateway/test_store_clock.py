"""The store stamps and paces its buffer_overflow events on its clock."""

from __future__ import annotations

from pathlib import Path

from gateway.clock import FakeClock
from gateway.store import Store
from gateway.store.db import OVERFLOW_EVENT
from tests.gateway.test_store import batch


async def test_overflow_events_are_paced_by_the_clock(tmp_path: Path) -> None:
    clock = FakeClock()
    store = Store(tmp_path / "b.db", max_bytes=20_000, clock=clock)
    await store.open()
    await store.register_consumer("uplink")

    async def overflow_events() -> list[int]:
        return [e.event.ts_ms for e in await store.read_events("uplink")
                if e.event.type == OVERFLOW_EVENT]

    for i in range(40):
        await store.append_samples(batch(100, ts=i * 1000, noisy=True))
    assert await overflow_events() == [clock.now_ms()]
    first = clock.now_ms()
    clock.advance(59)
    await store.append_samples(batch(100, noisy=True))
    assert await overflow_events() == [first], "at most one a minute"
    clock.advance(2)
    await store.append_samples(batch(100, noisy=True))
    assert await overflow_events() == [first, first + 61_000]
    await store.close()

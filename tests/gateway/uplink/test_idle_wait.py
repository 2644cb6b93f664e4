"""The forwarder's idle wait: no task per wait, and every wake-up it had still ends it
(telemetry committed, an event committed, a reply queued, a wake, the end of a linger)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, cast

from gateway.model import Event, Sample
from gateway.store import Store
from gateway.uplink.config import UplinkSection
from gateway.uplink.forwarder import Forwarder, PendingReply, ReplyOutbox, UplinkStats
from gateway.uplink.wire import Topics


def _forwarder(store: Store, outbox: ReplyOutbox) -> Forwarder:
    # The idle wait never touches the client: no broker needed for it.
    return Forwarder(client=cast(Any, None), store=store, topics=Topics.of("fg", "gw"),
                     cfg=UplinkSection(), gateway_id="gw", boot=1, outbox=outbox,
                     stats=UplinkStats(), session=1, drain_deadline=lambda: None)


async def _ended_by(fwd: Forwarder, store: Store, outbox: ReplyOutbox,
                    cause: Callable[[], Awaitable[Any]]) -> None:
    store.telemetry_added.clear()
    store.events_flag("uplink").clear()
    outbox.changed.clear()
    before = asyncio.all_tasks()
    idle = asyncio.create_task(fwd._idle())
    for _ in range(5):
        await asyncio.sleep(0)
    assert not idle.done(), "nothing happened yet: the wait goes on"
    assert asyncio.all_tasks() - before == {idle}, "the wait made no task of its own"
    await cause()
    await asyncio.wait_for(idle, 2)


async def test_every_wake_up_ends_an_idle_wait_that_makes_no_task(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite3")
    await store.open()
    outbox = ReplyOutbox()
    fwd = _forwarder(store, outbox)
    stop = fwd.listen()
    loop = asyncio.get_running_loop()

    async def reply() -> None:
        outbox.put(PendingReply("r1", b"{}"))

    async def wake() -> None:
        fwd.wake()

    async def linger() -> None:
        fwd._linger_until = loop.time() + 0.05  # read when the next wait starts

    try:
        await _ended_by(fwd, store, outbox,
                        lambda: store.append_samples([Sample("d", "p", 1000, 1.0)]))
        await _ended_by(fwd, store, outbox,
                        lambda: store.add_events([Event("test", {}, id="e1")]))
        await _ended_by(fwd, store, outbox, reply)
        await _ended_by(fwd, store, outbox, wake)
        await linger()
        t0 = loop.time()
        await _ended_by(fwd, store, outbox, lambda: asyncio.sleep(0))
        assert loop.time() - t0 >= 0.05, "it waited for the linger's end"
        # A flag set before the wait (between a look and the wait) ends it at once.
        fwd._linger_until = None
        store.telemetry_added.set()
        await asyncio.wait_for(fwd._idle(), 0.5)
    finally:
        for s in stop:
            s()
        await store.close()


async def test_a_forwarder_that_ended_no_longer_listens(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite3")
    await store.open()
    try:
        fwd = _forwarder(store, ReplyOutbox())
        for s in fwd.listen():
            s()
        assert store.telemetry_added._listeners == []
        assert store.events_flag("uplink")._listeners == []
    finally:
        await store.close()

"""The event outbox's readers see only committed events.

Readers (uplink, channels, hooks, the HTTP feed) share the connection the pipeline writes
on, and SQLite shows a connection its own uncommitted rows. An event read inside another
task's open transaction and sent, whose transaction then ends without COMMIT, is a phantom:
the receiver got an event the gateway does not have. Its rowid is then given to the next
event (AUTOINCREMENT's counter is rolled back with the transaction), which a reader that
went past the phantom skips for good.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.model import Event
from gateway.store import Store


class Ended(Exception):
    """Ends a transaction without COMMIT: an error in it, or a kill -9."""


def ev(name: str) -> Event:
    return Event("test", {"name": name}, id=f"id-{name}")


async def test_an_event_whose_transaction_rolls_back_is_never_read(tmp_path: Path) -> None:
    store = Store(tmp_path / "b.db")
    await store.open()
    try:
        await store.register_consumer("c")
        await store.add_events([ev("a")])
        [a] = await store.read_events("c")
        await store.ack_events("c", a.rowid)
        seen: list[str] = []
        with pytest.raises(Ended):
            async with store.transaction() as tx:
                assert await tx.add_events([ev("phantom")]) == 1
                # what a consumer's task does while the pipeline's transaction is open
                seen += [s.event.body["name"] for s in await store.read_events("c")]
                raise Ended
        assert seen == [], "an event not committed was read"
        # A consumer acks what it handled; the next event must still reach it.
        await store.add_events([ev("b")])
        got = await store.read_events("c")
        assert [s.event.body["name"] for s in got] == ["b"]
        assert got[0].rowid > a.rowid
    finally:
        await store.close()


async def test_a_reader_past_a_lost_event_does_not_skip_the_next_one(tmp_path: Path) -> None:
    """The worse half: the lost event's rowid goes to the next event. A consumer that read
    the phantom and acknowledged it (its ack waits for the store's lock, so it commits after
    the rollback) would skip that real event silently."""
    store = Store(tmp_path / "b.db")
    await store.open()
    try:
        await store.register_consumer("c")
        upto = 0
        with pytest.raises(Ended):
            async with store.transaction() as tx:
                await tx.add_events([ev("phantom")])
                upto = max([s.rowid for s in await store.read_events("c")], default=upto)
                raise Ended
        if upto:
            await store.ack_events("c", upto)
        await store.add_events([ev("real")])
        assert [s.event.body["name"] for s in await store.read_events("c")] == ["real"]
    finally:
        await store.close()


async def test_events_a_kill_interrupts_are_never_read(tmp_path: Path) -> None:
    """A kill -9 before COMMIT: after the restart the store holds none of what was read,
    and its rowid is reused by another event."""
    path = tmp_path / "b.db"
    store, again = Store(path), Store(path)
    await store.open()
    try:
        await store.register_consumer("c")
        await store.add_events([ev("a")])
        read: list[tuple[int, str]] = []
        with pytest.raises(Ended):
            async with store.transaction() as tx:
                await tx.add_events([ev("lost")])
                read += [(s.rowid, s.event.id) for s in await store.read_events("c")]
                raise Ended
        # the restart after the kill (the killed run's connection is left as it was)
        await again.open()
        await again.register_consumer("c")
        kept = {(s.rowid, s.event.id) for s in await again.read_events("c")}
        assert set(read) <= kept, "an event was read (and sent) that the store then lost"
    finally:
        await again.close()
        await store.conn.close()  # not store.close(): a kill writes no clean mark

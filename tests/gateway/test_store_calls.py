"""The hot transactions are few calls on the connection's thread (each is a thread hop, a
future and a wake-up of the loop), and batching their statements keeps them atomic."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from gateway.model import Event, Sample
from gateway.store import Store
from gateway.store.tx import Tx


@pytest.fixture
async def store_of_one(tmp_path: Path) -> AsyncIterator[Store]:
    """An open store holding one committed sample (closed after the test)."""
    store = Store(tmp_path / "s.sqlite3")
    await store.open()
    try:
        await store.append_samples([Sample("d", "p", 1000, 1.0)])
        yield store
    finally:
        await store.close()


@contextmanager
def counting(store: Store) -> Iterator[list[Any]]:
    """Count the calls that go to the connection's thread."""
    conn = store.conn
    calls: list[Any] = []
    real = conn._execute

    async def _execute(fn: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(fn)
        return await real(fn, *args, **kwargs)

    conn._execute = _execute  # type: ignore[method-assign]
    try:
        yield calls
    finally:
        del conn._execute


async def test_acks_are_one_call_and_a_commit_three(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite3")
    await store.open()
    try:
        await store.register_consumer("uplink")
        with counting(store) as calls:
            _first, last = await store.append_samples([Sample("d", "p", 1000, 1.0),
                                                      Sample("d", "q", 1000, 2.0)])
        assert len(calls) == 3, "BEGIN, the room check, the writes with the COMMIT"
        await store.add_events([Event("test", {}, id="e1")])
        [stored] = await store.read_events("uplink")
        with counting(store) as calls:
            await store.ack_telemetry(last)
            await store.ack_events("uplink", stored.rowid)
        assert len(calls) == 2, "one call each"
        assert await store.acked_seq() == last
        assert await store.query("SELECT COUNT(*) FROM telemetry") == [(0,)]
        assert await store.query("SELECT COUNT(*) FROM events") == [(0,)]
        assert (await store.stats()).payload_bytes == 0
    finally:
        await store.close()


async def test_a_queued_write_that_fails_at_commit_undoes_the_whole_transaction(
    store_of_one: Store,
) -> None:
    store = store_of_one
    before = (await store.stats()).next_seq
    with pytest.raises(sqlite3.IntegrityError):
        async with store.transaction() as tx:
            await store.append_samples([Sample("d", "p", 2000, 2.0)], tx)
            # Queued: fails only with the COMMIT, after the chunk's own writes.
            tx.write("INSERT INTO meta VALUES ('next_seq', 1)")
    assert (await store.stats()).next_seq == before, "nothing of it committed"
    assert await store.query("SELECT COUNT(*) FROM telemetry") == [(1,)]
    assert not store.conn.in_transaction
    first, _ = await store.append_samples([Sample("d", "p", 3000, 3.0)])
    assert first == before, "the failed transaction used no sequence number"


def _fail_halfway(db: sqlite3.Connection, tx: Tx) -> None:
    db.execute("DELETE FROM telemetry")
    tx.payload_delta -= 10**6
    raise sqlite3.OperationalError("disk I/O error (made up)")


async def test_an_atomic_call_that_fails_rolls_back_and_changes_no_counter(
    store_of_one: Store,
) -> None:
    store = store_of_one
    stats = await store.stats()
    with pytest.raises(sqlite3.OperationalError, match="made up"):
        await store.atomic(_fail_halfway)
    assert not store.conn.in_transaction
    assert await store.query("SELECT COUNT(*) FROM telemetry") == [(1,)]
    assert store._payload_bytes == stats.payload_bytes
    async with store.transaction() as tx:  # the store goes on
        await tx.execute("SELECT 1")

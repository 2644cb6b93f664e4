"""The event outbox: events committed in order, read by each consumer from its own cursor,
deleted once every consumer has acknowledged them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass

from gateway.model import Event
from gateway.store.base import StoreBase
from gateway.store.tx import Tx


@dataclass(frozen=True, slots=True)
class StoredEvent:
    rowid: int
    event: Event


class OutboxStore(StoreBase):
    async def add_events(self, events: Iterable[Event]) -> int:
        async with self.transaction() as tx:
            return await tx.add_events(events)

    def begin_consumers(self) -> None:
        """Start counting the consumers of this run (the runtime calls it before the
        components start, and :meth:`retire_consumers` with :attr:`active_consumers` after)."""
        self.active_consumers = set()

    async def register_consumer(self, consumer: str) -> None:
        """A consumer of the outbox; a new one starts with the events still in the outbox."""
        self.active_consumers.add(consumer)
        self._read_nothing_at.pop(consumer, None)  # its cursor may be new (read again)
        self.events_flag(consumer).set()
        async with self.transaction() as tx:
            await tx.execute(
                "INSERT OR IGNORE INTO event_cursors VALUES (?, 0)", (consumer,)
            )

    async def retire_consumers(self, keep: Iterable[str]) -> None:
        """Forget the cursors of consumers no longer configured (a channel removed from the
        config), so their cursor does not hold events in the outbox forever."""
        keep = list(keep)
        self._read_nothing_at.clear()  # a retired cursor comes back at 0 if registered again
        marks = ",".join("?" * len(keep)) or "''"
        async with self.transaction() as tx:
            await tx.execute(f"DELETE FROM event_cursors WHERE consumer NOT IN ({marks})", keep)
            await tx.execute(
                "DELETE FROM events WHERE rowid <= "
                "(SELECT COALESCE(MIN(last_rowid), 0) FROM event_cursors)"
            )

    async def read_events(self, consumer: str, limit: int = 100) -> list[StoredEvent]:
        """The next committed events after ``consumer``'s cursor, oldest first.

        Only committed events: reads share the connection with the write transaction, which
        would show its rows before COMMIT. An event read then and lost with its transaction
        (an error, a kill) would be a phantom, and its rowid would go to the next event,
        which a reader already past it would skip. Rowids only grow (AUTOINCREMENT) and
        transactions run one at a time, so every rowid up to the last commit's highest is
        committed.

        A consumer whose last read found nothing, with no event committed since, is answered
        without a query: its cursor only moves forward (``ack_events``), so there is still
        nothing. The consumers poll about twice a second when idle (``wait_events``' timeout),
        and each query is a round trip to the database thread."""
        high = self._events_high
        if self._read_nothing_at.get(consumer) == high:
            return []
        rows = await self.query(
            "SELECT e.rowid, e.id, e.type, e.device, e.ts_ms, e.body FROM events e "
            "WHERE e.rowid > (SELECT last_rowid FROM event_cursors WHERE consumer = ?) "
            "AND e.rowid <= ? ORDER BY e.rowid LIMIT ?",
            (consumer, high, limit),
        )
        if not rows:
            self._read_nothing_at[consumer] = high
        return [
            StoredEvent(rowid, Event(type_, json.loads(body), device, ts_ms, id_))
            for rowid, id_, type_, device, ts_ms, body in rows
        ]

    async def ack_events(self, consumer: str, upto_rowid: int) -> None:
        await self.atomic(_ack_events, consumer, upto_rowid)

    async def wait_events(self, consumer: str, timeout: float) -> None:
        """Wait until events were added since this consumer's previous wait (or timeout).

        Each consumer has its own flag, so one consumer's wait never swallows another's
        wake-up, and an event added between a consumer's read and its wait is not missed.
        """
        flag = self.events_flag(consumer)
        if not flag.is_set():
            # Not asyncio.wait_for: on Python 3.11 it can swallow a cancel that arrives as the
            # event is set (at a stop, devices going offline set it), and this wait sits in a
            # loop: the task then never stops, and asyncio.run waits for it forever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await flag.wait()
        flag.clear()


def _ack_events(db: sqlite3.Connection, tx: Tx, consumer: str, upto_rowid: int) -> None:
    """On the connection's thread, inside the transaction: move ``consumer``'s cursor and
    delete the events every consumer has."""
    db.execute("UPDATE event_cursors SET last_rowid = MAX(last_rowid, ?) WHERE consumer = ?",
               (upto_rowid, consumer))
    db.execute("DELETE FROM events WHERE rowid <= "
               "(SELECT COALESCE(MIN(last_rowid), 0) FROM event_cursors)")

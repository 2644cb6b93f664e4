"""A write transaction on the store (:class:`Tx`), and the writes it can record instead of
running them (:class:`Write`, for the pipeline's processors: see :meth:`Tx.defer`)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import aiosqlite

from gateway.model import Event
from gateway.store.drops import DropRun

if TYPE_CHECKING:
    from gateway.store.base import StoreBase


@dataclass(frozen=True, slots=True)
class Write:
    """One write a :class:`Tx` recorded instead of running (see :meth:`Tx.defer`)."""

    sql: str  # "" for add_events
    rows: list[Any]  # parameter rows (execute: one), or the events


_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")


class _NoCursor:
    """What a deferred write returns instead of a cursor (it has not run yet)."""

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError("this write is deferred to the end of the pipeline's processors: "
                           "it has no cursor (read in a separate statement)")


class Tx:
    """A write transaction. Obtain with ``async with store.transaction() as tx``.

    What a transaction does to the store's counters (next sequence number, bytes, drops)
    is kept here and applied only when it commits."""

    def __init__(self, conn: aiosqlite.Connection, store: StoreBase) -> None:
        self.conn = conn
        self._store = store
        self.next_seq = store._next_seq
        self.payload_delta = 0
        self.dropped = DropRun()
        self.drops_reported = False
        self.events_added = False
        #: The highest rowid in ``events`` as this transaction leaves it (readers read only
        #: up to the store's, which takes it at COMMIT).
        self.events_high = store._events_high
        self.telemetry_added = False
        self._deferred: list[Write] | None = None
        #: Writes whose cursor nobody reads (:meth:`write`), in order: they go to the
        #: connection's thread with the next statement, at the latest with the COMMIT.
        self._queued: list[tuple[str, Any, bool]] = []

    def defer(self, writes: list[Write] | None) -> None:
        """From now on record writes (INSERT/UPDATE/DELETE/REPLACE statements and
        :meth:`add_events`) in ``writes`` instead of running them; ``None`` runs them
        again. Reads still run. :meth:`run_writes` runs what was recorded. The pipeline
        defers around its processors, so a commit that fails keeps their writes and runs
        them on retry instead of calling the processors again."""
        self._deferred = writes

    async def run_writes(self, writes: Iterable[Write]) -> None:
        for write in writes:
            if not write.sql:
                await self.add_events(write.rows)
            else:
                self._queued.append((write.sql, write.rows, True))

    def write(self, sql: str, params: Sequence[Any] = ()) -> None:
        """A write whose cursor nobody reads: it runs in order with this transaction's
        other statements, but on the connection's thread together with the next one (at
        the latest the COMMIT), not in a round trip of its own. Its error, if any, is
        raised there. Deferred (:meth:`defer`): recorded like :meth:`execute`'s."""
        if not self._record(sql, [params]):
            self._queued.append((sql, params, False))

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run a read (after the queued writes) and return every row: one call on the
        connection's thread."""
        batch, self._queued = self._queued, []
        return await self.conn._execute(_run, self.conn, batch, sql, params)

    async def _flush(self) -> None:
        if self._queued:
            batch, self._queued = self._queued, []
            await self.conn._execute(_run, self.conn, batch, None, ())

    def take_queued(self) -> list[tuple[str, Any, bool]]:
        batch, self._queued = self._queued, []
        return batch

    def _record(self, sql: str, rows: list[Any]) -> bool:
        if self._deferred is None or not sql.lstrip()[:7].upper().startswith(_WRITES):
            return False
        self._deferred.append(Write(sql, rows))
        return True

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> aiosqlite.Cursor:
        if self._record(sql, [params]):
            return cast(aiosqlite.Cursor, _NoCursor())
        await self._flush()
        return await self.conn.execute(sql, params)

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        if self._deferred is not None:
            rows = list(rows)
            if self._record(sql, rows):
                return
        await self._flush()
        await self.conn.executemany(sql, rows)

    async def add_events(self, events: Iterable[Event]) -> int:
        """Insert events into the outbox; an id already there is ignored (idempotent).
        Returns how many were added (deferred: how many were given)."""
        if self._deferred is not None:
            events = list(events)
            if events:
                self._deferred.append(Write("", events))
            return len(events)
        return await self.add_event_rows(
            (e.id, e.type, e.device, e.ts_ms, json.dumps(dict(e.body), default=str))
            for e in events
        )

    async def add_event_rows(self, rows: Iterable[Sequence[Any]]) -> int:
        """Insert events as rows ``(id, type, device, ts_ms, body as JSON text)``; an id
        already there is ignored. Returns how many were added; runs at once, even while writes
        are deferred. Every insert into ``events`` goes through here, so the transaction
        knows the highest rowid it leaves."""
        rows = list(rows)
        if not rows:
            return 0
        await self._flush()
        before = self.conn.total_changes
        await self.conn.executemany(
            "INSERT OR IGNORE INTO events (id, type, device, ts_ms, body) VALUES (?,?,?,?,?)",
            rows,
        )
        added = self.conn.total_changes - before
        if added:
            self.events_added = True
            # AUTOINCREMENT: the rows just added have the highest rowids (primary key: cheap)
            high = await self.conn.execute_fetchall("SELECT MAX(rowid) FROM events")
            self.events_high = int(next(iter(high))[0])
        return added


def _run(conn: aiosqlite.Connection, batch: list[tuple[str, Any, bool]], sql: str | None,
         params: Sequence[Any]) -> list[tuple[Any, ...]]:
    """On the connection's thread: run the queued writes, then ``sql`` (a read, or
    COMMIT), and return its rows."""
    db = conn._conn
    for text, args, many in batch:
        if many:
            db.executemany(text, args)
        else:
            db.execute(text, args)
    if sql is None:
        return []
    return [tuple(row) for row in db.execute(sql, params).fetchall()]


async def settled(statement: Awaitable[Any]) -> Any:
    """Await ``statement`` to its end even when the awaiting task is cancelled meanwhile
    (the statement runs on the connection's thread regardless); then honour the cancel."""
    task = asyncio.ensure_future(statement)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await task  # a statement that failed raises its own error instead
        raise


"""The store's core: the one connection, transactions on it, reads, and the counters the
other parts share (:mod:`gateway.store.telemetry`, :mod:`gateway.store.outbox`; the whole
store is :class:`gateway.store.db.Store`).

One aiosqlite connection is the one writer; an asyncio lock serialises transactions on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from gateway.clock import Clock, SystemClock
from gateway.config.models import Durability
from gateway.store.drops import DropRun
from gateway.store.flag import Flag
from gateway.store.seqmark import SeqMark, write_mark
from gateway.store.tx import Tx, _run, settled

_T = TypeVar("_T")


class StoreBase:
    def __init__(
        self,
        path: Path,
        *,
        max_bytes: int = 2_000_000_000,
        durability: Durability = Durability.NORMAL,
        on_corrupt: str = "quarantine",
        clock: Clock | None = None,
    ) -> None:
        self.path = path
        #: Stamps the store's own events (buffer_overflow) and paces them (a FakeClock in tests).
        self.clock: Clock = clock or SystemClock()
        self.max_bytes = max_bytes
        self.durability = durability
        self.on_corrupt = on_corrupt
        self._conn: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()
        self._next_seq = 1
        self._reserved = 1
        self._acked = 0
        self._payload_bytes = 0
        self._drops = DropRun()
        self._last_overflow_event_ms = 0
        self._last_drop_ms = 0
        self._event_flags: dict[str, Flag] = {}
        #: The highest rowid of a committed event: readers read no further (see read_events).
        self._events_high = 0
        #: Per consumer, ``_events_high`` when its last read found nothing (see read_events).
        self._read_nothing_at: dict[str, int] = {}
        #: The highest seq ever handed to the broker (published, maybe not acknowledged):
        #: rows at or below it are never dropped, so a drop never counts delivered samples.
        self.sent_high = 0
        #: seq_first of the chunks this process wrote whose text is known plain (see
        #: codec.encode_chunk_checked), oldest first, until acknowledged; bounded.
        self._plain_chunks: dict[int, None] = {}
        #: Bumped by every commit that dropped rows; readers caching chunks re-read.
        self.drop_epoch = 0
        #: Set while commits fail because the disk is full (the pipeline reports it).
        self.write_error: str | None = None
        self.store_id = ""
        #: The consumers registered since the last :meth:`begin_consumers` (this run).
        self.active_consumers: set[str] = set()
        self.telemetry_added = Flag()
        self.boot_count = 0


    @property
    def conn(self) -> aiosqlite.Connection:
        if self._conn is None:
            raise RuntimeError("store is not open")
        return self._conn

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        async with self._lock:
            conn = self.conn
            tx = Tx(conn, self)
            try:
                # A task cancelled while BEGIN or COMMIT runs on the connection's thread
                # (every task is, at stop and reload) must still know how it ended: an
                # open BEGIN would break the next transaction ("cannot start a transaction
                # within a transaction"), a COMMIT that ran must still be accounted for.
                await settled(conn.execute("BEGIN IMMEDIATE"))
                yield tx
                try:
                    # The writes still queued (Tx.write) and the COMMIT: one call.
                    await settled(conn._execute(_run, conn, tx.take_queued(), "COMMIT", ()))
                except asyncio.CancelledError:
                    self._committed(tx)  # it committed; the cancellation goes on
                    raise
            except BaseException:
                with contextlib.suppress(sqlite3.Error):  # none open: nothing to undo
                    await conn.execute("ROLLBACK")
                raise
            self._committed(tx)

    async def atomic(self, fn: Callable[..., _T], *args: Any) -> _T:
        """Run ``fn(db, tx, *args)`` as one transaction in ONE call on the connection's
        thread (``db`` is its sqlite3 connection): BEGIN IMMEDIATE, ``fn``, COMMIT, and
        ROLLBACK there if anything fails, instead of a round trip to that thread (a future
        and a wake-up of the loop) per statement. ``fn`` records what it changed in ``tx``
        as the loop's code would (``payload_delta``...), applied once it committed. For the
        short transactions of the hot path (the uplink's acknowledgements)."""
        async with self._lock:
            conn = self.conn
            tx = Tx(conn, self)
            try:
                result: _T = await settled(conn._execute(_atomic, conn, fn, tx, args))
            except asyncio.CancelledError:
                # settled raised the cancel only after the call ended well: it committed.
                self._committed(tx)
                raise
            self._committed(tx)
            return result

    @property
    def events_high(self) -> int:
        """The highest rowid of a committed event: no reader finds an event above it."""
        return self._events_high

    def _committed(self, tx: Tx) -> None:
        self._next_seq = tx.next_seq
        self._events_high = tx.events_high
        self._payload_bytes += tx.payload_delta
        if tx.dropped.count:
            self.drop_epoch += 1
            self._last_drop_ms = self.clock.now_ms()
        if tx.drops_reported:
            self._drops = DropRun()
            self._last_overflow_event_ms = self.clock.now_ms()
        else:
            self._drops = self._drops.merged(tx.dropped)
        if tx.telemetry_added:
            self.telemetry_added.set()
        if tx.events_added:
            self._signal_events()

    async def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run a read and return every row. Use this (or :meth:`query_one`) rather than
        ``conn.execute``: a cursor left half-read keeps its statement open, which blocks
        the WAL checkpoint at close ("database table is locked"). The query and the fetch
        are one call on the connection's thread, so a task cancelled while it waits (every
        reader is, at shutdown and reload) cannot leave an executed statement behind."""
        return [tuple(row) for row in await self.conn.execute_fetchall(sql, params)]

    async def query_one(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        rows = await self.query(sql, params)
        return rows[0] if rows else None

    async def _meta(self, key: str) -> int:
        row = await self.query_one("SELECT value FROM meta WHERE key = ?", (key,))
        return int(row[0]) if row else 0

    async def _info(self, key: str) -> str | None:
        row = await self.query_one("SELECT value FROM store_info WHERE key = ?", (key,))
        return str(row[0]) if row else None

    def _signal_events(self) -> None:
        for flag in self._event_flags.values():
            flag.set()

    def events_flag(self, consumer: str) -> Flag:
        """The flag set when events are committed (or ``consumer`` registers), for a
        consumer that waits on several things at once (the uplink); others call
        ``wait_events``, which clears it after its wait."""
        return self._event_flags.setdefault(consumer, Flag())


    async def _write_mark(self, reserved: int, clean: bool) -> None:
        mark = SeqMark(self.store_id, reserved, self._acked, clean)
        await asyncio.to_thread(write_mark, self.path, mark)
        self._reserved = reserved


def _atomic(conn: aiosqlite.Connection, fn: Callable[..., _T], tx: Tx,
            args: tuple[Any, ...]) -> _T:
    """On the connection's thread: ``fn`` between BEGIN IMMEDIATE and COMMIT."""
    db = conn._conn
    db.execute("BEGIN IMMEDIATE")
    try:
        result = fn(db, tx, *args)
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
        raise
    return result

"""The SQLite store: telemetry buffer, event outbox, small state tables.

One aiosqlite connection is the one writer; an asyncio lock serialises transactions on it.
The file is in WAL mode so the CLI (``fieldgate buffer stats``) can read while the daemon writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite

from gateway.config.models import Durability
from gateway.model import Batch, Event, now_ms
from gateway.store.codec import decode_chunk, encode_chunk
from gateway.store.kv import KV
from gateway.store.schema import migrations
from gateway.store.stats import BufferStats, read_stats

log = logging.getLogger(__name__)

OVERFLOW_EVENT = "buffer_overflow"
_OVERFLOW_EVENT_EVERY_MS = 60_000


@dataclass(frozen=True, slots=True)
class TelemetryChunk:
    seq_first: int
    seq_last: int
    rows: list[list[Any]]  # [device, point, ts_ms, value, quality], seq_first + index


@dataclass(frozen=True, slots=True)
class RawTelemetryChunk:
    """A stored chunk as it lies on disk (codec-encoded), for readers that splice the text
    instead of parsing it (the uplink). It may start before the ``after_seq`` asked for."""

    seq_first: int
    seq_last: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class StoredEvent:
    rowid: int
    event: Event


class Tx:
    """A write transaction. Obtain with ``async with store.transaction() as tx``."""

    def __init__(self, conn: aiosqlite.Connection, store: Store) -> None:
        self.conn = conn
        self._store = store

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> aiosqlite.Cursor:
        return await self.conn.execute(sql, params)

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        await self.conn.executemany(sql, rows)

    async def add_events(self, events: Iterable[Event]) -> int:
        """Insert events into the outbox; an id already there is ignored (idempotent)."""
        rows = [
            (e.id, e.type, e.device, e.ts_ms, json.dumps(dict(e.body), default=str))
            for e in events
        ]
        if not rows:
            return 0
        before = self.conn.total_changes
        await self.conn.executemany(
            "INSERT OR IGNORE INTO events (id, type, device, ts_ms, body) VALUES (?,?,?,?,?)",
            rows,
        )
        added = self.conn.total_changes - before
        if added:
            self._store._signal_events()
        return added


class Store:
    def __init__(
        self,
        path: Path,
        *,
        max_bytes: int = 2_000_000_000,
        durability: Durability = Durability.NORMAL,
    ) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.durability = durability
        self._conn: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()
        self._next_seq = 1
        self._payload_bytes = 0
        self._pending_drop = 0
        self._last_overflow_event_ms = 0
        self._event_flags: dict[str, asyncio.Event] = {}
        #: The consumers registered since the last :meth:`begin_consumers` (this run).
        self.active_consumers: set[str] = set()
        self.telemetry_added = asyncio.Event()
        self.boot_count = 0

    # -- lifecycle -----------------------------------------------------------------------

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = await aiosqlite.connect(self.path, isolation_level=None)
        self._conn = conn
        await conn.execute("PRAGMA journal_mode=WAL")
        sync = "FULL" if self.durability is Durability.FULL else "NORMAL"
        await conn.execute(f"PRAGMA synchronous={sync}")
        await conn.execute("PRAGMA busy_timeout=5000")
        try:
            await self._migrate(conn)
        except BaseException:
            await conn.close()
            self._conn = None
            raise
        async with self.transaction() as tx:
            await tx.execute("UPDATE meta SET value = value + 1 WHERE key = 'boot_count'")
        self._next_seq = await self._meta("next_seq")
        self.boot_count = await self._meta("boot_count")
        row = await self.query_one("SELECT COALESCE(SUM(nbytes), 0) FROM telemetry")
        self._payload_bytes = int(row[0]) if row else 0
        log.info(
            "store open at %s (boot %d, next seq %d, %d bytes buffered)",
            self.path, self.boot_count, self._next_seq, self._payload_bytes,
        )

    async def close(self) -> None:
        if self._conn is not None:
            async with self._lock:
                try:
                    await self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                except sqlite3.Error as err:
                    log.warning("WAL checkpoint at close failed (%s); the WAL file is kept and "
                                "applied at the next start, nothing is lost", err)
                await self._conn.close()
                self._conn = None

    @property
    def conn(self) -> aiosqlite.Connection:
        if self._conn is None:
            raise RuntimeError("store is not open")
        return self._conn

    async def _migrate(self, conn: aiosqlite.Connection) -> None:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version "
            "(component TEXT PRIMARY KEY, version INTEGER NOT NULL)"
        )
        for component, steps in migrations().items():
            async with conn.execute(
                "SELECT version FROM schema_version WHERE component = ?", (component,)
            ) as cur:
                row = await cur.fetchone()
            done = int(row[0]) if row else 0
            if done > len(steps):
                raise RuntimeError(
                    f"store {self.path} has {component} schema v{done}, newer than this "
                    f"fieldgate (v{len(steps)}); upgrade fieldgate or use another store file"
                )
            for version in range(done + 1, len(steps) + 1):
                await conn.executescript(
                    "BEGIN;\n" + steps[version - 1] + "\n"
                    f"INSERT OR REPLACE INTO schema_version VALUES ('{component}', {version});\n"
                    "COMMIT;"
                )
                log.info("migrated %s schema to v%d", component, version)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        async with self._lock:
            conn = self.conn
            await conn.execute("BEGIN IMMEDIATE")
            try:
                yield Tx(conn, self)
            except BaseException:
                await conn.execute("ROLLBACK")
                raise
            await conn.execute("COMMIT")

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

    # -- telemetry -----------------------------------------------------------------------

    async def append_samples(self, batch: Batch, tx: Tx | None = None) -> tuple[int, int]:
        """Append a batch under the next sequence numbers; returns (seq_first, seq_last)."""
        if not batch:
            raise ValueError("empty batch")
        payload = encode_chunk(batch)
        ts = [s[2] for s in batch]
        if tx is None:
            async with self.transaction() as own:
                return await self._append(own, batch, payload, min(ts), max(ts))
        return await self._append(tx, batch, payload, min(ts), max(ts))

    async def _append(
        self, tx: Tx, batch: Batch, payload: bytes, ts_first: int, ts_last: int
    ) -> tuple[int, int]:
        first = self._next_seq
        last = first + len(batch) - 1
        if self._payload_bytes + len(payload) > self.max_bytes:
            await self._drop_oldest(tx, self._payload_bytes + len(payload) - self.max_bytes)
        await tx.execute(
            "INSERT INTO telemetry VALUES (?,?,?,?,?,?)",
            (first, last, ts_first, ts_last, len(payload), payload),
        )
        await tx.execute("UPDATE meta SET value = ? WHERE key = 'next_seq'", (last + 1,))
        self._next_seq = last + 1
        self._payload_bytes += len(payload)
        self.telemetry_added.set()
        return first, last

    async def _drop_oldest(self, tx: Tx, need: int) -> None:
        cur = await tx.execute(
            "SELECT seq_first, seq_last, nbytes FROM telemetry ORDER BY seq_first LIMIT 256"
        )
        freed = dropped = 0
        upto = None
        for seq_first, seq_last, nbytes in await cur.fetchall():
            if freed >= need:
                break
            freed += nbytes
            dropped += seq_last - seq_first + 1
            upto = seq_last
        if upto is None:
            return
        await tx.execute("DELETE FROM telemetry WHERE seq_first <= ?", (upto,))
        await tx.execute(
            "UPDATE meta SET value = value + ? WHERE key = 'dropped_total'", (dropped,)
        )
        # The uplink must not wait for rows that no longer exist.
        await tx.execute(
            "UPDATE meta SET value = MAX(value, ?) WHERE key = 'acked_seq'", (upto,)
        )
        self._payload_bytes -= freed
        self._pending_drop += dropped
        now = now_ms()
        if now - self._last_overflow_event_ms >= _OVERFLOW_EVENT_EVERY_MS:
            log.warning(
                "buffer full (%d bytes): dropped the oldest %d samples up to seq %d; "
                "raise store.max_bytes or check the uplink",
                self.max_bytes, self._pending_drop, upto,
            )
            await tx.add_events([
                Event(
                    OVERFLOW_EVENT,
                    {"dropped": self._pending_drop, "up_to_seq": upto,
                     "max_bytes": self.max_bytes},
                    ts_ms=now,
                )
            ])
            self._pending_drop = 0
            self._last_overflow_event_ms = now

    async def acked_seq(self) -> int:
        return await self._meta("acked_seq")

    async def read_telemetry(self, after_seq: int, max_samples: int) -> list[TelemetryChunk]:
        """Chunks holding samples with seq > after_seq, oldest first, about max_samples of
        them, decoded (the first is trimmed to start at after_seq + 1)."""
        out: list[TelemetryChunk] = []
        for raw in await self.read_telemetry_raw(after_seq, max_samples):
            rows = decode_chunk(raw.payload)
            seq_first = raw.seq_first
            if seq_first <= after_seq:
                rows = rows[after_seq - seq_first + 1 :]
                seq_first = after_seq + 1
            out.append(TelemetryChunk(seq_first, raw.seq_last, rows))
        return out

    async def read_telemetry_raw(
        self, after_seq: int, max_samples: int, max_chunks: int = 64
    ) -> list[RawTelemetryChunk]:
        """The stored chunks, not decoded (the uplink splices them): the chunks holding samples with
        seq > after_seq, oldest first, whole (the first may start at or before after_seq),
        until about ``max_samples`` samples. Both lookups use the primary key."""
        rows = await self.query(
            "SELECT seq_first, seq_last, payload FROM telemetry WHERE seq_first >= "
            "COALESCE((SELECT MAX(seq_first) FROM telemetry WHERE seq_first <= ?), 0) "
            "ORDER BY seq_first LIMIT ?",
            (after_seq + 1, max_chunks),
        )
        out: list[RawTelemetryChunk] = []
        total = 0
        for seq_first, seq_last, payload in rows:
            if seq_last <= after_seq:
                continue
            out.append(RawTelemetryChunk(seq_first, seq_last, payload))
            total += seq_last - max(seq_first, after_seq + 1) + 1
            if total >= max_samples:
                break
        return out

    async def ack_telemetry(self, upto_seq: int) -> None:
        """The broker has every sample up to ``upto_seq``: forget them."""
        # Chunks do not overlap, so seq_last <= upto implies seq_first <= upto: the extra
        # condition lets SQLite use the primary key instead of scanning a long backlog.
        async with self.transaction() as tx:
            row = await self.query_one(
                "SELECT COALESCE(SUM(nbytes), 0) FROM telemetry "
                "WHERE seq_first <= ? AND seq_last <= ?", (upto_seq, upto_seq)
            )
            await tx.execute(
                "DELETE FROM telemetry WHERE seq_first <= ? AND seq_last <= ?",
                (upto_seq, upto_seq),
            )
            await tx.execute(
                "UPDATE meta SET value = MAX(value, ?) WHERE key = 'acked_seq'", (upto_seq,)
            )
            self._payload_bytes -= int(row[0]) if row else 0

    # -- events --------------------------------------------------------------------------

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
        self._event_flags.setdefault(consumer, asyncio.Event()).set()
        async with self.transaction() as tx:
            await tx.execute(
                "INSERT OR IGNORE INTO event_cursors VALUES (?, 0)", (consumer,)
            )

    async def retire_consumers(self, keep: Iterable[str]) -> None:
        """Forget the cursors of consumers no longer configured (a channel removed from the
        config), so their cursor does not hold events in the outbox forever."""
        keep = list(keep)
        marks = ",".join("?" * len(keep)) or "''"
        async with self.transaction() as tx:
            await tx.execute(f"DELETE FROM event_cursors WHERE consumer NOT IN ({marks})", keep)
            await tx.execute(
                "DELETE FROM events WHERE rowid <= "
                "(SELECT COALESCE(MIN(last_rowid), 0) FROM event_cursors)"
            )

    async def read_events(self, consumer: str, limit: int = 100) -> list[StoredEvent]:
        rows = await self.query(
            "SELECT e.rowid, e.id, e.type, e.device, e.ts_ms, e.body FROM events e "
            "WHERE e.rowid > (SELECT last_rowid FROM event_cursors WHERE consumer = ?) "
            "ORDER BY e.rowid LIMIT ?",
            (consumer, limit),
        )
        return [
            StoredEvent(rowid, Event(type_, json.loads(body), device, ts_ms, id_))
            for rowid, id_, type_, device, ts_ms, body in rows
        ]

    async def ack_events(self, consumer: str, upto_rowid: int) -> None:
        async with self.transaction() as tx:
            await tx.execute(
                "UPDATE event_cursors SET last_rowid = MAX(last_rowid, ?) WHERE consumer = ?",
                (upto_rowid, consumer),
            )
            await tx.execute(
                "DELETE FROM events WHERE rowid <= "
                "(SELECT COALESCE(MIN(last_rowid), 0) FROM event_cursors)"
            )

    def _signal_events(self) -> None:
        for flag in self._event_flags.values():
            flag.set()

    async def wait_events(self, consumer: str, timeout: float) -> None:
        """Wait until events were added since this consumer's previous wait (or timeout).

        Each consumer has its own flag, so one consumer's wait never swallows another's
        wake-up, and an event added between a consumer's read and its wait is not missed.
        """
        flag = self._event_flags.setdefault(consumer, asyncio.Event())
        if not flag.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(flag.wait(), timeout)
        flag.clear()

    # -- stats ---------------------------------------------------------------------------

    async def stats(self) -> BufferStats:
        # A separate read-only connection: WAL lets it read while the writer goes on.
        return await asyncio.to_thread(read_stats, self.path)

    def kv(self, namespace: str) -> KV:
        return KV(self, namespace)

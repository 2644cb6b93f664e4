"""The SQLite store: telemetry buffer, event outbox, small state tables.

One aiosqlite connection is the one writer; an asyncio lock serialises transactions on it.
The file is in WAL mode so the CLI (``fieldgate buffer stats``) can read while the daemon writes.

Sequence numbers come from blocks reserved durably in ``<store>.seq`` (see
:mod:`gateway.store.seqmark`) and are taken only by a commit that succeeds: a failed commit
(a full disk) leaves the next number where it was.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import aiosqlite

from gateway.clock import Clock, SystemClock
from gateway.config.models import Durability
from gateway.model import Batch, Event
from gateway.store import drops, opening
from gateway.store.codec import decode_chunk, encode_chunk
from gateway.store.drops import OVERFLOW_EVENT, DropRun, overflow_event
from gateway.store.errors import StoreCorrupt, is_corrupt
from gateway.store.kv import KV
from gateway.store.seqmark import BLOCK, SeqMark, read_mark, write_mark
from gateway.store.stats import BufferStats, read_stats

log = logging.getLogger(__name__)

__all__ = ["OVERFLOW_EVENT", "BufferStats", "RawTelemetryChunk", "Store", "StoredEvent",
           "TelemetryChunk", "Tx", "Write", "read_stats"]

SEQ_GAP_EVENT = "seq_gap"
QUARANTINE_EVENT = "chunk_quarantined"
#: Bytes kept free under ``max_bytes`` for the row being added (page rounding, index pages).
_HEADROOM = 16_384


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

    def __init__(self, conn: aiosqlite.Connection, store: Store) -> None:
        self.conn = conn
        self._store = store
        self.next_seq = store._next_seq
        self.payload_delta = 0
        self.dropped = DropRun()
        self.drops_reported = False
        self.events_added = False
        self.telemetry_added = False
        self._deferred: list[Write] | None = None

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
                await self.conn.executemany(write.sql, write.rows)

    def _record(self, sql: str, rows: list[Any]) -> bool:
        if self._deferred is None or not sql.lstrip()[:7].upper().startswith(_WRITES):
            return False
        self._deferred.append(Write(sql, rows))
        return True

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> aiosqlite.Cursor:
        if self._record(sql, [params]):
            return cast(aiosqlite.Cursor, _NoCursor())
        return await self.conn.execute(sql, params)

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        if self._deferred is not None:
            rows = list(rows)
            if self._record(sql, rows):
                return
        await self.conn.executemany(sql, rows)

    async def add_events(self, events: Iterable[Event]) -> int:
        """Insert events into the outbox; an id already there is ignored (idempotent).
        Returns how many were added (deferred: how many were given)."""
        if self._deferred is not None:
            events = list(events)
            if events:
                self._deferred.append(Write("", events))
            return len(events)
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
            self.events_added = True
        return added


class Store:
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
        self._event_flags: dict[str, asyncio.Event] = {}
        #: The highest seq ever handed to the broker (published, maybe not acknowledged):
        #: rows at or below it are never dropped, so a drop never counts delivered samples.
        self.sent_high = 0
        #: Bumped by every commit that dropped rows; readers caching chunks re-read.
        self.drop_epoch = 0
        #: Set while commits fail because the disk is full (the pipeline reports it).
        self.write_error: str | None = None
        self.store_id = ""
        #: The consumers registered since the last :meth:`begin_consumers` (this run).
        self.active_consumers: set[str] = set()
        self.telemetry_added = asyncio.Event()
        self.boot_count = 0

    # -- lifecycle -----------------------------------------------------------------------

    async def open(self) -> None:
        """Open (or create) the store. A damaged file is quarantined and salvaged, or
        refused (``on_corrupt``); what cannot be used raises :class:`StoreError`."""
        opening.prepare_path(self.path)
        try:
            await self._open_file()
        except StoreCorrupt as err:
            moved = opening.handle_corrupt(self.path, str(err), self.on_corrupt)
            old_mark = read_mark(self.path)  # the new store rewrites it
            await self._open_file(fresh_after=moved)
            from gateway.store.recover import salvage_into

            await salvage_into(self, moved, str(err), old_mark)

    async def _open_file(self, fresh_after: Path | None = None) -> None:
        try:
            conn = await opening.connect(self.path, self.durability)
        except sqlite3.DatabaseError as err:
            if is_corrupt(err):
                raise StoreCorrupt(str(err)) from err
            raise
        self._conn = conn
        try:
            await opening.check(conn, self.path)
            await opening.migrate(conn, self.path)
            async with self.transaction() as tx:
                await tx.execute("UPDATE meta SET value = value + 1 WHERE key = 'boot_count'")
                self.store_id = await opening.ensure_store_id(tx)
            self._next_seq = self._reserved = await self._meta("next_seq")
            self._acked = await self._meta("acked_seq")
            self.boot_count = await self._meta("boot_count")
            row = await self.query_one("SELECT COALESCE(SUM(nbytes), 0) FROM telemetry")
            self._payload_bytes = int(row[0]) if row else 0
            await self._continue_sequence(read_mark(self.path), fresh_after is not None)
        except BaseException as err:
            await conn.close()
            self._conn = None
            if isinstance(err, sqlite3.DatabaseError) and is_corrupt(err):
                raise StoreCorrupt(str(err)) from err
            if opening.is_read_only(err):  # a read-only file system, say
                raise opening.read_only(self.path) from None
            raise
        log.info(
            "store open at %s (id %s, boot %d, next seq %d, %d bytes buffered)",
            self.path, self.store_id, self.boot_count, self._next_seq, self._payload_bytes,
        )

    async def _continue_sequence(self, mark: SeqMark | None, recovered: bool) -> None:
        """Continue above every number the previous runs could have published, and
        announce what a restart skipped (``seq_gap``)."""
        events: list[Event] = []
        has_mark = await self._info("seq_mark") == "1"
        if mark is not None and mark.store_id == self.store_id:
            if mark.reserved > self._next_seq:
                reason = "store_rewound" if mark.clean else "unclean_stop"
                events.append(self._gap_event(self.store_id, self._next_seq,
                                              mark.reserved - 1, reason))
                log.warning("store %s: sequence continues at %d, above the numbers reserved "
                            "before the last stop (%s); %d..%d are skipped",
                            self.path, mark.reserved, reason, self._next_seq,
                            mark.reserved - 1)
                self._next_seq = self._reserved = mark.reserved
        elif mark is not None and not recovered:
            # The mark belongs to a store that is gone (file deleted, or its content lost
            # before the first checkpoint): whatever it held above its acked mark is lost.
            if mark.reserved - 1 > mark.acked:
                events.append(self._gap_event(mark.store_id, mark.acked + 1,
                                              mark.reserved - 1, "store_replaced"))
            log.warning("store %s is a new store (id %s) replacing store %s; its numbers up "
                        "to %d are not reused", self.path, self.store_id, mark.store_id,
                        mark.reserved - 1)
        elif mark is None and has_mark:
            old = self.store_id
            self.store_id = opening.new_store_id()
            log.warning("sequence mark %s.seq is missing: the store continues as a new "
                        "stream (id %s, was %s)", self.path, self.store_id, old)
            events.append(self._gap_event(old, self._next_seq, None, "seq_mark_lost"))
            if self._acked > 0:  # the new stream starts with the rows not yet acknowledged
                events.append(self._gap_event(self.store_id, 1, self._acked, "seq_mark_lost"))
        async with self.transaction() as tx:
            await tx.execute("UPDATE meta SET value = ? WHERE key = 'next_seq'",
                             (self._next_seq,))
            await tx.execute("INSERT OR REPLACE INTO store_info VALUES ('store_id', ?)",
                             (self.store_id,))
            await tx.execute("INSERT OR REPLACE INTO store_info VALUES ('seq_mark', '1')")
            await tx.add_events(events)
            await self._write_mark(self._next_seq, clean=False)

    def _gap_event(self, store_id: str, first: int, last: int | None, reason: str) -> Event:
        return Event(SEQ_GAP_EVENT, {"store_id": store_id, "seq_first": first,
                                     "seq_last": last, "reason": reason})

    async def _write_mark(self, reserved: int, clean: bool) -> None:
        mark = SeqMark(self.store_id, reserved, self._acked, clean)
        await asyncio.to_thread(write_mark, self.path, mark)
        self._reserved = reserved

    async def close(self) -> None:
        if self._conn is not None:
            async with self._lock:
                clean = True
                try:
                    await self._flush_drops_now()
                    await self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                except sqlite3.Error as err:
                    clean = False
                    log.warning("WAL checkpoint at close failed (%s); the WAL file is kept and "
                                "applied at the next start, nothing is lost", err)
                if clean:
                    with contextlib.suppress(OSError):
                        await self._write_mark(self._next_seq, clean=True)
                await self._conn.close()
                self._conn = None

    async def _flush_drops_now(self) -> None:
        """Report the drops not yet reported (at close): one last buffer_overflow event."""
        if not self._drops.count:
            return
        await self.conn.execute("BEGIN IMMEDIATE")
        tx = Tx(self.conn, self)
        await tx.add_events([overflow_event(self._drops, self.store_id, self.max_bytes,
                                            self.clock.now_ms())])
        await self.conn.execute("COMMIT")
        self._drops = DropRun()

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
                await _settled(conn.execute("BEGIN IMMEDIATE"))
                yield tx
                try:
                    await _settled(conn.execute("COMMIT"))
                except asyncio.CancelledError:
                    self._committed(tx)  # it committed; the cancellation goes on
                    raise
            except BaseException:
                with contextlib.suppress(sqlite3.Error):  # none open: nothing to undo
                    await conn.execute("ROLLBACK")
                raise
            self._committed(tx)

    def _committed(self, tx: Tx) -> None:
        self._next_seq = tx.next_seq
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

    # -- telemetry -----------------------------------------------------------------------

    async def append_samples(self, batch: Batch, tx: Tx | None = None) -> tuple[int, int]:
        """Append a batch under the next sequence numbers; returns (seq_first, seq_last).
        The numbers are the store's only once the transaction commits."""
        if not batch:
            raise ValueError("empty batch")
        payload = encode_chunk(batch)
        ts = [s[2] for s in batch]
        if tx is None:
            async with self.transaction() as own:
                return await self._append(own, len(batch), payload, min(ts), max(ts))
        return await self._append(tx, len(batch), payload, min(ts), max(ts))

    async def _append(
        self, tx: Tx, count: int, payload: bytes, ts_first: int, ts_last: int
    ) -> tuple[int, int]:
        first = tx.next_seq
        last = first + count - 1
        if last >= self._reserved:  # durable before any row under these numbers commits
            await self._write_mark(last + 1 + BLOCK, clean=False)
        await self._make_room(tx, len(payload))
        await tx.execute(
            "INSERT INTO telemetry VALUES (?,?,?,?,?,?)",
            (first, last, ts_first, ts_last, len(payload), payload),
        )
        await tx.execute("UPDATE meta SET value = ? WHERE key = 'next_seq'", (last + 1,))
        tx.next_seq = last + 1
        tx.payload_delta += len(payload)
        tx.telemetry_added = True
        await self._report_drops(tx)
        return first, last

    async def _used_bytes(self, tx: Tx) -> int:
        cur = await tx.execute("SELECT * FROM pragma_page_count(), pragma_freelist_count(), "
                               "pragma_page_size()")
        pages, free, size = await cur.fetchone()  # type: ignore[misc]
        return int((pages - free) * size)

    async def _make_room(self, tx: Tx, incoming: int) -> None:
        """Keep both the buffered payload and the pages in use (the whole file, free pages
        being reused) under ``max_bytes``: drop the oldest unsent chunks."""
        for _ in range(4):
            payload_over = self._payload_bytes + tx.payload_delta + incoming - self.max_bytes
            file_over = await self._used_bytes(tx) + incoming + _HEADROOM - self.max_bytes
            need = max(payload_over, file_over)
            if need <= 0 or not await self._drop_oldest(tx, need):
                return

    async def _drop_oldest(self, tx: Tx, need: int) -> bool:
        floor = max(self._acked, self.sent_high)
        cur = await tx.execute(
            "SELECT seq_first, seq_last, nbytes FROM telemetry WHERE seq_first > ? "
            "ORDER BY seq_first LIMIT 256", (floor,)
        )
        freed = dropped = 0
        first = upto = None
        for seq_first, seq_last, nbytes in await cur.fetchall():
            if freed >= need:
                break
            first = seq_first if first is None else first
            freed += nbytes
            dropped += seq_last - seq_first + 1
            upto = seq_last
        if first is None or upto is None:
            return False
        await tx.execute("DELETE FROM telemetry WHERE seq_first >= ? AND seq_first <= ?",
                         (first, upto))
        await tx.execute(
            "UPDATE meta SET value = value + ? WHERE key = 'dropped_total'", (dropped,)
        )
        tx.payload_delta -= freed
        tx.dropped.add(dropped, first, upto)
        return True

    async def _report_drops(self, tx: Tx) -> None:
        """A buffer_overflow event: at most once a minute while dropping goes on, and when
        dropping stopped (this commit dropped nothing, and none did for ``QUIET_MS``)."""
        pending = self._drops.merged(tx.dropped)
        if not pending.count:
            return
        now = self.clock.now_ms()
        stopped = tx.dropped.count == 0
        if stopped and now - self._last_drop_ms < drops.QUIET_MS:
            return
        if not stopped and now - self._last_overflow_event_ms < drops.EVENT_EVERY_MS:
            return
        log.warning(
            "buffer full (%d bytes): dropped the oldest %d samples (seq %d..%d)%s; "
            "raise store.max_bytes or check the uplink", self.max_bytes, pending.count,
            pending.seq_first, pending.seq_last, "" if stopped else ", still dropping",
        )
        await tx.add_events([overflow_event(pending, self.store_id, self.max_bytes, now)])
        tx.drops_reported = True

    def note_sent(self, seq: int) -> None:
        """The uplink handed the rows up to ``seq`` to the broker: never drop them."""
        self.sent_high = max(self.sent_high, seq)

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
            tx.payload_delta -= int(row[0]) if row else 0
        self._acked = max(self._acked, upto_seq)

    async def quarantine_chunk(self, seq_first: int, reason: str) -> None:
        """Move a stored chunk that cannot be decoded out of the way, with an event carrying
        its range, so forwarding goes on behind it."""
        async with self.transaction() as tx:
            cur = await tx.execute(
                "SELECT seq_last, nbytes, payload FROM telemetry WHERE seq_first = ?",
                (seq_first,),
            )
            row = await cur.fetchone()
            if row is None:
                return
            seq_last, nbytes, payload = row
            await tx.execute(
                "INSERT OR REPLACE INTO telemetry_quarantine VALUES (?,?,?,?,?)",
                (seq_first, seq_last, self.clock.now_ms(), reason, payload),
            )
            await tx.execute("DELETE FROM telemetry WHERE seq_first = ?", (seq_first,))
            tx.payload_delta -= int(nbytes)
            await tx.add_events([Event(QUARANTINE_EVENT, {
                "store_id": self.store_id, "seq_first": seq_first, "seq_last": seq_last,
                "samples": seq_last - seq_first + 1, "reason": reason,
            })])
        log.error("store %s: telemetry chunk %d..%d cannot be decoded (%s); moved to the "
                  "telemetry_quarantine table, forwarding goes on", self.path, seq_first,
                  seq_last, reason)

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
        stats = await asyncio.to_thread(read_stats, self.path)
        return dataclasses.replace(stats, write_error=self.write_error)

    def kv(self, namespace: str) -> KV:
        return KV(self, namespace)


async def _settled(statement: Awaitable[Any]) -> Any:
    """Await ``statement`` to its end even when the awaiting task is cancelled meanwhile
    (the statement runs on the connection's thread regardless); then honour the cancel."""
    task = asyncio.ensure_future(statement)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await task  # a statement that failed raises its own error instead
        raise

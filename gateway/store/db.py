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
import logging
import sqlite3
from pathlib import Path

from gateway.model import Event
from gateway.store import opening
from gateway.store.drops import OVERFLOW_EVENT, DropRun, overflow_event
from gateway.store.errors import StoreCorrupt, is_corrupt
from gateway.store.kv import KV
from gateway.store.outbox import OutboxStore, StoredEvent
from gateway.store.seqmark import SeqMark, read_mark
from gateway.store.stats import BufferStats, read_stats
from gateway.store.telemetry import (
    QUARANTINE_EVENT,
    RawTelemetryChunk,
    TelemetryChunk,
    TelemetryStore,
)
from gateway.store.tx import Tx, Write

log = logging.getLogger(__name__)

__all__ = ["OVERFLOW_EVENT", "QUARANTINE_EVENT", "SEQ_GAP_EVENT", "BufferStats",
           "RawTelemetryChunk", "Store", "StoredEvent", "TelemetryChunk", "Tx", "Write",
           "read_stats"]

SEQ_GAP_EVENT = "seq_gap"


class Store(TelemetryStore, OutboxStore):
    """The whole store: :class:`~gateway.store.base.StoreBase` (connection, transactions),
    :class:`~gateway.store.telemetry.TelemetryStore` (the buffer) and
    :class:`~gateway.store.outbox.OutboxStore` (the events); opening and closing here."""

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
            row = await self.query_one("SELECT COALESCE(MAX(rowid), 0) FROM events")
            self._events_high = int(row[0]) if row else 0  # before the first transaction
            self._read_nothing_at.clear()  # another file, maybe: every consumer reads again
            async with self.transaction() as tx:
                await tx.execute("UPDATE meta SET value = value + 1 WHERE key = 'boot_count'")
                self.store_id = await opening.ensure_store_id(tx)
            self._next_seq = self._reserved = await self._meta("next_seq")
            self._acked = await self._meta("acked_seq")
            self.boot_count = await self._meta("boot_count")
            row = await self.query_one("SELECT COALESCE(SUM(nbytes), 0) FROM telemetry")
            self._payload_bytes = int(row[0]) if row else 0
            await self._continue_sequence(read_mark(self.path), fresh_after is not None)
            await self._checkpoint_at_open()
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

    async def _checkpoint_at_open(self) -> None:
        """Write the WAL into the database file now (synced, and the WAL emptied), so the
        store as this boot found it, its id and schema included, no longer lives only in a
        WAL that ``durability: normal`` never syncs before the first checkpoint: a power cut
        that loses the WAL's end then costs this boot's recent commits, never the store
        itself (a fresh store's first ~0.5 MB of WAL is its schema and id, and a quiet site
        may take minutes to reach the checkpoint at 1 MB of WAL)."""
        try:
            await self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.OperationalError as err:  # busy: a reader; the automatic one follows
            log.warning("store %s: the WAL checkpoint at open failed (%s); it is checkpointed "
                        "later as usual", self.path, err)

    def _gap_event(self, store_id: str, first: int, last: int | None, reason: str) -> Event:
        return Event(SEQ_GAP_EVENT, {"store_id": store_id, "seq_first": first,
                                     "seq_last": last, "reason": reason})

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

    # -- stats ---------------------------------------------------------------------------

    async def stats(self) -> BufferStats:
        # A separate read-only connection: WAL lets it read while the writer goes on.
        stats = await asyncio.to_thread(read_stats, self.path)
        return dataclasses.replace(stats, write_error=self.write_error)

    def kv(self, namespace: str) -> KV:
        return KV(self, namespace)


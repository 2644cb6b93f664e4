"""The telemetry buffer: samples appended in chunks under their sequence numbers, read by
the uplink, acknowledged, dropped oldest-first at ``max_bytes`` (counted exactly, see
:mod:`gateway.store.drops`), and a chunk that cannot be decoded moved aside."""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass
from typing import Any

from gateway.model import Batch, Event
from gateway.store import drops
from gateway.store.base import StoreBase
from gateway.store.codec import decode_chunk, encode_chunk_checked, ts_range
from gateway.store.drops import overflow_event
from gateway.store.seqmark import BLOCK
from gateway.store.tx import Tx

log = logging.getLogger(__name__)

QUARANTINE_EVENT = "chunk_quarantined"
#: Bytes kept free under ``max_bytes`` for the row being added (page rounding, index pages).
_HEADROOM = 16_384
#: At most this many chunks are remembered as plain (an uplink down for long: the older ones
#: are cut as any chunk is, counting first).
_PLAIN_KEPT = 10_000


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
    #: Known to hold ``],[`` only between rows (written from columns by this process): the
    #: uplink need not count them before cutting. False: not known.
    plain: bool = False


class TelemetryStore(StoreBase):
    async def append_samples(self, batch: Batch, tx: Tx | None = None) -> tuple[int, int]:
        """Append a batch under the next sequence numbers; returns (seq_first, seq_last).
        The numbers are the store's only once the transaction commits."""
        if not batch:
            raise ValueError("empty batch")
        payload, plain = encode_chunk_checked(batch)
        ts_first, ts_last = ts_range(batch)
        if tx is None:
            async with self.transaction() as own:
                return await self._append(own, len(batch), payload, ts_first, ts_last, plain)
        return await self._append(tx, len(batch), payload, ts_first, ts_last, plain)

    async def _append(
        self, tx: Tx, count: int, payload: bytes, ts_first: int, ts_last: int,
        plain: bool = False,
    ) -> tuple[int, int]:
        first = tx.next_seq
        last = first + count - 1
        # Set or cleared for this chunk: a transaction that failed left the flag of a chunk
        # that never committed under ``first``, which this one now replaces.
        self._plain_chunks.pop(first, None)
        if plain and len(self._plain_chunks) < _PLAIN_KEPT:
            self._plain_chunks[first] = None
        if last >= self._reserved:  # durable before any row under these numbers commits
            await self._write_mark(last + 1 + BLOCK, clean=False)
        await self._make_room(tx, len(payload))
        # Queued: they go to the connection's thread with the COMMIT (one call).
        tx.write("INSERT INTO telemetry VALUES (?,?,?,?,?,?)",
                 (first, last, ts_first, ts_last, len(payload), payload))
        tx.write("UPDATE meta SET value = ? WHERE key = 'next_seq'", (last + 1,))
        tx.next_seq = last + 1
        tx.payload_delta += len(payload)
        tx.telemetry_added = True
        await self._report_drops(tx)
        return first, last

    async def _used_bytes(self, tx: Tx) -> int:
        [(pages, free, size)] = await tx.fetchall(
            "SELECT * FROM pragma_page_count(), pragma_freelist_count(), pragma_page_size()")
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
        until about ``max_samples`` samples. Both lookups use the primary key.

        Only committed rows: reads share the connection with the write transaction, which
        would show its rows before COMMIT. A row sent then and lost with its transaction (a
        kill) went out under a number the restart announces as skipped (``seq_gap``)."""
        committed = self._next_seq  # advances only when a transaction commits
        if after_seq + 1 >= committed:
            return []
        rows = await self.query(
            "SELECT seq_first, seq_last, payload FROM telemetry WHERE seq_first >= "
            "COALESCE((SELECT MAX(seq_first) FROM telemetry WHERE seq_first <= ?), 0) "
            "AND seq_first < ? ORDER BY seq_first LIMIT ?",
            (after_seq + 1, committed, max_chunks),
        )
        out: list[RawTelemetryChunk] = []
        total = 0
        for seq_first, seq_last, payload in rows:
            if seq_last <= after_seq:
                continue
            out.append(RawTelemetryChunk(seq_first, seq_last, payload,
                                         seq_first in self._plain_chunks))
            total += seq_last - max(seq_first, after_seq + 1) + 1
            if total >= max_samples:
                break
        return out

    async def ack_telemetry(self, upto_seq: int) -> None:
        """The broker has every sample up to ``upto_seq``: forget them."""
        # Chunks do not overlap, so seq_last <= upto implies seq_first <= upto: the extra
        # condition lets SQLite use the primary key instead of scanning a long backlog.
        await self.atomic(_ack_telemetry, upto_seq)
        self._acked = max(self._acked, upto_seq)
        plain = self._plain_chunks
        while plain and next(iter(plain)) <= upto_seq:
            del plain[next(iter(plain))]

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


def _ack_telemetry(db: sqlite3.Connection, tx: Tx, upto_seq: int) -> int:
    """On the connection's thread, inside the transaction: forget the rows up to
    ``upto_seq``; returns the payload bytes freed."""
    (freed,) = db.execute("SELECT COALESCE(SUM(nbytes), 0) FROM telemetry "
                          "WHERE seq_first <= ? AND seq_last <= ?", (upto_seq, upto_seq)
                          ).fetchone()
    db.execute("DELETE FROM telemetry WHERE seq_first <= ? AND seq_last <= ?",
               (upto_seq, upto_seq))
    db.execute("UPDATE meta SET value = MAX(value, ?) WHERE key = 'acked_seq'", (upto_seq,))
    tx.payload_delta -= int(freed)
    return int(freed)

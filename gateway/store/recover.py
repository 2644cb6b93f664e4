"""Salvage a damaged store file into a new store (``store.on_corrupt: quarantine``).

The damaged file is read row by row through the primary keys (a file cut short is first
padded back to its recorded size with zeros): a read that hits a damaged
page fails, and the walk jumps ahead (1, 2, 4, ... keys) until it reads again, so everything
on the readable pages is found. Chunks not yet acknowledged are re-appended to the new store
under its own numbers (it has a new ``store_id``: a new stream), events go back to the outbox
with their ids (receivers drop repeats by id), and the ``kv`` state is copied. A
``store_recovered`` event says what was saved and which old sequence ranges were lost.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.model import Event
from gateway.store.codec import decode_chunk
from gateway.store.seqmark import SeqMark

if TYPE_CHECKING:
    from gateway.store.db import Store

log = logging.getLogger(__name__)

RECOVERED_EVENT = "store_recovered"


@dataclass
class Salvage:
    old_store_id: str | None = None
    acked: int = 0
    next_seq: int | None = None
    chunks: list[tuple[int, int, bytes]] = field(default_factory=list)  # first, last, payload
    events: list[tuple[str, str, str | None, int, str]] = field(default_factory=list)
    kv: list[tuple[str, str, str]] = field(default_factory=list)
    unreadable_chunks: int = 0


def _walk(conn: sqlite3.Connection, select: str, key_max: int) -> list[tuple[Any, ...]]:
    """Every readable row of ``select`` (``... WHERE key > ? ORDER BY key LIMIT 1``)."""
    out: list[tuple[Any, ...]] = []
    pos, jump = 0, 1
    while pos < key_max:
        try:
            row = conn.execute(select, (pos,)).fetchone()
        except sqlite3.DatabaseError:
            pos += jump
            jump *= 2
            continue
        if row is None:
            break
        out.append(tuple(row))
        pos, jump = int(row[0]), 1
    return out


def _one(conn: sqlite3.Connection, sql: str) -> Any:
    try:
        row = conn.execute(sql).fetchone()
    except sqlite3.DatabaseError:
        return None
    return row[0] if row else None


def _pad_truncated(path: Path) -> None:
    """A file cut short makes SQLite refuse every read; padded back to the size its header
    records (with zero pages), the pages that are there can be read again."""
    try:
        with open(path, "r+b") as f:
            head = f.read(100)
            if len(head) < 100 or not head.startswith(b"SQLite format 3\x00"):
                return
            size = int.from_bytes(head[16:18], "big")
            size = 65_536 if size == 1 else size
            want = int.from_bytes(head[28:32], "big") * size
            f.seek(0, 2)
            if 0 < f.tell() < want:
                log.warning("damaged store %s is cut short (%d of %d bytes): padding it with "
                            "zeros to read what is left", path, f.tell(), want)
                f.truncate(want)
    except OSError as err:
        log.warning("cannot pad damaged store %s: %s", path, err)


def read_damaged(path: Path) -> Salvage:
    out = Salvage()
    _pad_truncated(path)
    try:
        conn = sqlite3.connect(path)
    except sqlite3.DatabaseError:
        return out
    try:
        out.old_store_id = _one(conn, "SELECT value FROM store_info WHERE key = 'store_id'")
        out.acked = int(_one(conn, "SELECT value FROM meta WHERE key = 'acked_seq'") or 0)
        next_seq = _one(conn, "SELECT value FROM meta WHERE key = 'next_seq'")
        out.next_seq = int(next_seq) if next_seq is not None else None
        top = max(out.next_seq or 0, 1 << 50)
        for first, last, payload in _walk(
            conn, "SELECT seq_first, seq_last, payload FROM telemetry WHERE seq_first > ? "
            "ORDER BY seq_first LIMIT 1", top,
        ):
            if last <= out.acked:
                continue
            try:
                decode_chunk(payload)
            except Exception:
                out.unreadable_chunks += 1
                continue
            out.chunks.append((int(first), int(last), bytes(payload)))
        cursor = _one(conn, "SELECT MIN(last_rowid) FROM event_cursors") or 0
        for row in _walk(conn, "SELECT rowid, id, type, device, ts_ms, body FROM events "
                         "WHERE rowid > ? ORDER BY rowid LIMIT 1", 1 << 62):
            if row[0] > cursor:
                out.events.append(row[1:])
        try:
            out.kv = [tuple(r) for r in conn.execute("SELECT namespace, key, value FROM kv")]
        except sqlite3.DatabaseError:
            out.kv = []
    finally:
        conn.close()
    return out


def _lost_ranges(first: int, end: int, saved: list[tuple[int, int, bytes]]) -> list[list[int]]:
    """The ranges in first..end not covered by the saved chunks."""
    lost: list[list[int]] = []
    pos = first
    for a, b, _ in saved:
        if a > pos:
            lost.append([pos, min(a - 1, end)])
        pos = max(pos, b + 1)
    if pos <= end:
        lost.append([pos, end])
    return [r for r in lost if r[0] <= r[1]]


async def salvage_into(store: Store, damaged: Path, why: str, mark: SeqMark | None) -> None:
    found = await asyncio.to_thread(read_damaged, damaged)
    old_id = found.old_store_id or (mark.store_id if mark else None)
    acked = max(found.acked, mark.acked if mark and mark.store_id == old_id else 0)
    end_candidates = [c[1] for c in found.chunks]
    if found.next_seq:
        end_candidates.append(found.next_seq - 1)
    if mark is not None and mark.store_id == old_id:
        end_candidates.append(mark.reserved - 1)
    end = max(end_candidates, default=acked)
    samples = 0
    for first, _last, payload in found.chunks:
        rows = decode_chunk(payload)
        if first <= acked:
            rows = rows[acked - first + 1 :]
        if rows:
            await store.append_samples([tuple(r) for r in rows])  # type: ignore[misc]
            samples += len(rows)
    async with store.transaction() as tx:
        if found.kv:
            await tx.executemany("INSERT OR REPLACE INTO kv VALUES (?,?,?)", found.kv)
        await tx.add_event_rows(found.events)
        lost = _lost_ranges(acked + 1, end, found.chunks)
        body = {
            "store_id": store.store_id, "old_store_id": old_id, "moved_to": str(damaged),
            "reason": why, "chunks_saved": len(found.chunks), "samples_saved": samples,
            "events_saved": len(found.events), "kv_saved": len(found.kv),
            "chunks_unreadable": found.unreadable_chunks, "old_acked_seq": acked,
            "old_seq_last": end, "lost": lost,
        }
        await tx.add_events([Event(RECOVERED_EVENT, body)])
    log.error("store %s recovered from damage: saved %d samples in %d chunks, %d events; "
              "old sequence ranges lost: %s; the damaged file is %s", store.path, samples,
              len(found.chunks), len(found.events), lost or "none", damaged)


"""Buffer statistics, readable from another process while the daemon writes (WAL)."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True)
class BufferStats:
    samples: int
    chunks: int
    payload_bytes: int
    file_bytes: int
    oldest_ts_ms: int | None
    newest_ts_ms: int | None
    next_seq: int
    acked_seq: int
    dropped_total: int
    events_pending: int
    store_id: str | None = None
    quarantined_chunks: int = 0
    #: Why commits fail right now (e.g. "disk full"), None when they do not; only the
    #: running daemon knows it (``buffer.stats`` command), the CLI shows None.
    write_error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}


def _stats(conn: sqlite3.Connection, path: Path) -> BufferStats:
    meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    acked = int(meta.get("acked_seq", 0))
    chunks, samples, payload, ts_first, ts_last = conn.execute(
        "SELECT COUNT(*), COALESCE(SUM(seq_last - MAX(seq_first, ?) + 1), 0), "
        "COALESCE(SUM(nbytes), 0), MIN(ts_first), MAX(ts_last) FROM telemetry "
        "WHERE seq_last > ?", (acked + 1, acked)
    ).fetchone()
    next_seq = int(meta.get("next_seq", 1))
    events = conn.execute(
        "SELECT COUNT(*) FROM events WHERE rowid > "
        "(SELECT COALESCE(MIN(last_rowid), 0) FROM event_cursors)"
    ).fetchone()[0]
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    store_id = None
    quarantined = 0
    if "store_info" in tables:
        row = conn.execute("SELECT value FROM store_info WHERE key = 'store_id'").fetchone()
        store_id = str(row[0]) if row else None
        quarantined = int(conn.execute("SELECT COUNT(*) FROM telemetry_quarantine")
                          .fetchone()[0])
    file_bytes = sum(
        p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists()
    )
    return BufferStats(
        samples=int(samples),
        chunks=int(chunks),
        payload_bytes=int(payload),
        file_bytes=file_bytes,
        oldest_ts_ms=ts_first,
        newest_ts_ms=ts_last,
        next_seq=next_seq,
        acked_seq=acked,
        dropped_total=int(meta.get("dropped_total", 0)),
        events_pending=int(events),
        store_id=store_id,
        quarantined_chunks=quarantined,
    )


def read_stats(path: Path) -> BufferStats:
    """Stats from another process (the CLI), read-only, safe while the daemon writes."""
    if not path.exists():
        raise FileNotFoundError(f"no store at {path}")
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        return _stats(conn, path)
    finally:
        conn.close()

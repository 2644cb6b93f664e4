"""Give a new store the local history of a site that has been running a while, before the
gateway starts on it (bench/history.py ``site --prefill-minutes``).

The rollups of the site's points for the ``minutes`` before the last quarter boundary (1-minute
rows, their 15-minute rows, the watermarks), written straight into the store's tables in the
layout the store has: keyed by time and point id (v3), or by point and time (the v2 layout,
so that the same script measures the previous release). A history a few minutes old costs
less to write to than one that has run for hours: in the v2 layout the minutes of a point
shared a page with other points' until the point had about 50 of them.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

MINUTE_MS = 60_000
QUARTER_MS = 900_000


def _row(i: int, ts: int) -> tuple[object, ...]:
    v = 200.0 + (i % 97) * 0.1
    return (60, 60 * v, v - 1.0, v + 1.0, v, ts + 59_000)


def prefill(path: Path, points: list[tuple[str, str]], minutes: int) -> dict[str, float]:
    """Write ``minutes`` of rollups of ``points`` into the store at ``path`` (created, with
    every migration, if new). Returns what was written and how long it took."""
    from gateway.store import Store

    async def create() -> None:
        store = Store(path)
        await store.open()
        await store.close()

    asyncio.run(create())
    t0 = time.perf_counter()
    now = int(time.time() * 1000)
    end = now - now % QUARTER_MS  # the horizon: minutes after it are the run's
    start = end - minutes * MINUTE_MS
    con = sqlite3.connect(path, isolation_level=None)
    v3 = con.execute("SELECT COUNT(*) FROM sqlite_master WHERE name = 'history_points'"
                     ).fetchone()[0] == 1
    con.execute("BEGIN")
    if v3:
        con.executemany("INSERT INTO history_points (sid, device, point) VALUES (?, ?, ?)",
                        [(i + 1, d, p) for i, (d, p) in enumerate(points)])
        con.executemany("INSERT INTO history_1m VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        ((ts, i + 1, *_row(i, ts)) for ts in range(start, end, MINUTE_MS)
                         for i in range(len(points))))
    else:
        con.executemany("INSERT INTO history_series (device, point) VALUES (?, ?)", points)
        con.executemany("INSERT INTO history_1m VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        ((d, p, ts, *_row(i, ts)) for i, (d, p) in enumerate(points)
                         for ts in range(start, end, MINUTE_MS)))
    from gateway.siteops.history_sql import BUILD_15M

    con.execute(BUILD_15M, (start - start % QUARTER_MS, end))
    rows = con.execute("SELECT (SELECT COUNT(*) FROM history_1m) + "
                       "(SELECT COUNT(*) FROM history_15m)").fetchone()[0]
    con.executemany("INSERT OR REPLACE INTO history_state (key, value) VALUES (?, ?)",
                    [("horizon", end), ("folded_seq", 0), ("replay_seq", 0),
                     ("open_samples", 0), ("est_rows", rows)])
    con.execute("COMMIT")
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    return {"prefill_minutes": float(minutes), "prefill_rows": float(rows),
            "prefill_s": time.perf_counter() - t0, "prefill_mb": path.stat().st_size / 1e6}

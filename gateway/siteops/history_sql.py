"""The local history's tables and the SQL that writes them (see :mod:`gateway.siteops.history`)."""

from __future__ import annotations

from typing import Any

MIGRATIONS = [
    """
    CREATE TABLE history_1m (
        device TEXT NOT NULL, point TEXT NOT NULL, ts INTEGER NOT NULL,
        n INTEGER NOT NULL, total REAL NOT NULL, vmin REAL NOT NULL, vmax REAL NOT NULL,
        lastv REAL NOT NULL, last_ts INTEGER NOT NULL,
        PRIMARY KEY (device, point, ts)
    ) WITHOUT ROWID;
    CREATE INDEX history_1m_ts ON history_1m (ts);
    CREATE TABLE history_15m (
        device TEXT NOT NULL, point TEXT NOT NULL, ts INTEGER NOT NULL,
        n INTEGER NOT NULL, total REAL NOT NULL, vmin REAL NOT NULL, vmax REAL NOT NULL,
        lastv REAL NOT NULL, last_ts INTEGER NOT NULL,
        PRIMARY KEY (device, point, ts)
    ) WITHOUT ROWID;
    CREATE INDEX history_15m_ts ON history_15m (ts);
    CREATE TABLE history_energy (
        device TEXT NOT NULL, ts INTEGER NOT NULL, wh REAL NOT NULL,
        PRIMARY KEY (device, ts)
    ) WITHOUT ROWID;
    CREATE TABLE history_meters (device TEXT PRIMARY KEY, state TEXT NOT NULL);
    CREATE TABLE history_state (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
    """,
    # v2: the 1-minute rows lose their ts index (28 % of the cost of writing a row, measured
    # with cachegrind: 24.9 k -> 17.8 k instructions). What needed it (the points of a
    # quarter, retention, the rows a late minute meets) goes point by point through the
    # primary key instead, from the list of points ever written.
    """
    CREATE TABLE history_series (
        device TEXT NOT NULL, point TEXT NOT NULL, PRIMARY KEY (device, point)
    ) WITHOUT ROWID;
    INSERT OR IGNORE INTO history_series (device, point)
        SELECT DISTINCT device, point FROM history_1m;
    DROP INDEX history_1m_ts;
    """,
]

UPSERT = """
INSERT INTO {t} (device, point, ts, n, total, vmin, vmax, lastv, last_ts)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (device, point, ts) DO UPDATE SET
    n = n + excluded.n, total = total + excluded.total,
    vmin = MIN(vmin, excluded.vmin), vmax = MAX(vmax, excluded.vmax),
    lastv = CASE WHEN excluded.last_ts >= last_ts THEN excluded.lastv ELSE lastv END,
    last_ts = MAX(last_ts, excluded.last_ts)
"""
UPSERT_ENERGY = """
INSERT INTO history_energy (device, ts, wh) VALUES (?, ?, ?)
ON CONFLICT (device, ts) DO UPDATE SET wh = wh + excluded.wh
"""
#: Builds the 15-minute rows of complete quarters from their 1-minute rows; the last value
#: is the one of the newest minute. Each point ever written (``history_series``) is one seek
#: into the primary key, where its minutes lie side by side (CROSS JOIN: the points are the
#: outer loop); a point without minutes in the range costs its seek only. Not the rows in
#: time order: one primary-key lookup per 1-minute row, all over the table, which got slower
#: as the table grew (measured at 200 x 125, quarters 0 to 4: 1.66, 1.71, 1.97, 2.51, 2.35
#: CPU-s; point by point 1.10, 1.15, 1.26, 1.21, 1.12).
BUILD_15M = """
WITH g AS (
    SELECT h.device, h.point, h.ts - h.ts % 900000 AS q, SUM(h.n) AS n,
           SUM(h.total) AS total, MIN(h.vmin) AS vmin, MAX(h.vmax) AS vmax,
           MAX(h.ts) AS newest, MAX(h.last_ts) AS last_ts
    FROM history_series k CROSS JOIN history_1m h ON h.device = k.device
        AND h.point = k.point AND h.ts >= ?1 AND h.ts < ?2
    GROUP BY h.device, h.point, q)
INSERT OR REPLACE INTO history_15m (device, point, ts, n, total, vmin, vmax, lastv, last_ts)
SELECT g.device, g.point, g.q, g.n, g.total, g.vmin, g.vmax, h.lastv, g.last_ts
FROM g JOIN history_1m h ON h.device = g.device AND h.point = g.point AND h.ts = g.newest
"""
#: Points first written now (kept in the same transaction as their rows).
ADD_SERIES = "INSERT OR IGNORE INTO history_series (device, point) VALUES (?, ?)"
#: The 1-minute rows before ?1, point by point through the primary key (no ts index).
PRUNE_1M = """
DELETE FROM history_1m WHERE (device, point, ts) IN (
    SELECT h.device, h.point, h.ts FROM history_series k CROSS JOIN history_1m h
    ON h.device = k.device AND h.point = k.point AND h.ts < ?1)
"""
#: A device's 1-minute rows in [?1, ?2) (device ?3), point by point through the primary key.
DEVICE_1M = """
SELECT h.point, h.ts, h.n, h.total, h.vmin, h.vmax, h.lastv, h.last_ts
FROM history_series k CROSS JOIN history_1m h ON h.device = k.device AND h.point = k.point
    AND h.ts >= ?1 AND h.ts < ?2
WHERE k.device = ?3
"""
#: The oldest 1-minute row's minute, point by point.
OLDEST_1M = """
SELECT MIN((SELECT MIN(h.ts) FROM history_1m h
            WHERE h.device = k.device AND h.point = k.point)) FROM history_series k
"""


async def existing(tx: Any, table: str, keys: list[tuple[str, str, int]]) -> int:
    """How many of ``keys`` (device, point, ts) have a row in ``table`` (point by point
    through the primary key: history_1m has no ts index)."""
    if not keys:
        return 0
    cur = await tx.execute(
        f"SELECT h.device, h.point, h.ts FROM history_series k CROSS JOIN {table} h "
        "ON h.device = k.device AND h.point = k.point AND h.ts >= ? AND h.ts <= ?",
        (min(k[2] for k in keys), max(k[2] for k in keys)))
    have = {tuple(r) for r in await cur.fetchall()}
    await cur.close()
    return sum(1 for k in keys if k in have)

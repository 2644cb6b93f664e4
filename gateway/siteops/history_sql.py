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
#: is the one of the newest minute.
BUILD_15M = """
WITH g AS (
    SELECT device, point, ts - ts % 900000 AS q, SUM(n) AS n, SUM(total) AS total,
           MIN(vmin) AS vmin, MAX(vmax) AS vmax, MAX(ts) AS newest, MAX(last_ts) AS last_ts
    FROM history_1m WHERE ts >= ? AND ts < ? GROUP BY device, point, q)
INSERT OR REPLACE INTO history_15m (device, point, ts, n, total, vmin, vmax, lastv, last_ts)
SELECT g.device, g.point, g.q, g.n, g.total, g.vmin, g.vmax, h.lastv, g.last_ts
FROM g JOIN history_1m h ON h.device = g.device AND h.point = g.point AND h.ts = g.newest
"""


async def existing(tx: Any, table: str, keys: list[tuple[str, str, int]]) -> int:
    """How many of ``keys`` (device, point, ts) have a row in ``table``."""
    if not keys:
        return 0
    cur = await tx.execute(f"SELECT device, point, ts FROM {table} WHERE ts >= ? AND ts <= ?",
                           (min(k[2] for k in keys), max(k[2] for k in keys)))
    have = {tuple(r) for r in await cur.fetchall()}
    await cur.close()
    return sum(1 for k in keys if k in have)

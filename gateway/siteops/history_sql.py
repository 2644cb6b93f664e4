"""The local history's tables and the SQL that writes them (see :mod:`gateway.siteops.history`).

Since v3 a rollup row is keyed ``(ts, sid)``: its minute (or quarter) first, then the point's
id in ``history_points``. New rows go to the end of the table and retention deletes from its
start; the rows of one point are found one primary-key lookup per minute (or quarter) of the
range (:data:`POINTS_RANGE`).
"""

from __future__ import annotations

from typing import Any

#: A rollup table since v3 (``{t}``: its name), keyed by bucket then point id.
ROLLUP_TABLE = """
    CREATE TABLE {t} (
        ts INTEGER NOT NULL, sid INTEGER NOT NULL,
        n INTEGER NOT NULL, total REAL NOT NULL, vmin REAL NOT NULL, vmax REAL NOT NULL,
        lastv REAL NOT NULL, last_ts INTEGER NOT NULL,
        PRIMARY KEY (ts, sid)
    ) WITHOUT ROWID;
"""
#: v3's copy of a v2 rollup table ``{t}`` into ``{t}_t``, by point id, in key order.
_COPY_BY_ID = """
    INSERT INTO {t}_t
        SELECT h.ts, k.sid, h.n, h.total, h.vmin, h.vmax, h.lastv, h.last_ts
        FROM {t} h JOIN history_points k ON k.device = h.device AND k.point = h.point
        ORDER BY h.ts, k.sid;
"""

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
    # v3: the rollups are kept in time order, each point by a small integer id. Keyed by
    # point first, each minute's write touched one leaf page per point, all over the table:
    # once every point had a page of its own (about 50 minutes), a minute's 12,500 rows at
    # 100 x 125 dirtied 12,500 pages (50 MB through the WAL and its checkpoint), and so did
    # retention's delete of the oldest minute (bench/history_layout.py, 2 h of rows: 511 ->
    # 40 ms of CPU a minute with the checkpoints; 50 MB -> 0.86 MB of WAL for a minute's
    # rows). In time order both happen at the two ends of the table, a few hundred pages; a
    # point's range is one primary-key lookup per minute.
    """
    CREATE TABLE history_points (
        sid INTEGER PRIMARY KEY, device TEXT NOT NULL, point TEXT NOT NULL,
        UNIQUE (device, point)
    );
    INSERT INTO history_points (device, point)
        SELECT device, point FROM history_series
        UNION SELECT device, point FROM history_15m ORDER BY 1, 2;
    """ + "".join(ROLLUP_TABLE.format(t=f"{t}_t") + _COPY_BY_ID.format(t=t)
                  for t in ("history_1m", "history_15m")) + """
    DROP TABLE history_1m;
    DROP TABLE history_15m;
    DROP TABLE history_series;
    ALTER TABLE history_1m_t RENAME TO history_1m;
    ALTER TABLE history_15m_t RENAME TO history_15m;
    """,
]

UPSERT = """
INSERT INTO {t} (ts, sid, n, total, vmin, vmax, lastv, last_ts)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (ts, sid) DO UPDATE SET
    n = n + excluded.n, total = total + excluded.total,
    vmin = MIN(vmin, excluded.vmin), vmax = MAX(vmax, excluded.vmax),
    lastv = CASE WHEN excluded.last_ts >= last_ts THEN excluded.lastv ELSE lastv END,
    last_ts = MAX(last_ts, excluded.last_ts)
"""
UPSERT_ENERGY = """
INSERT INTO history_energy (device, ts, wh) VALUES (?, ?, ?)
ON CONFLICT (device, ts) DO UPDATE SET wh = wh + excluded.wh
"""
#: Builds the 15-minute rows of complete quarters in [?1, ?2) from their 1-minute rows (one
#: range of the table: the minutes lie side by side); the last value is the one of the
#: newest minute (one primary-key lookup per point and quarter).
BUILD_15M = """
WITH g AS (
    SELECT ts - ts % 900000 AS q, sid, SUM(n) AS n, SUM(total) AS total, MIN(vmin) AS vmin,
           MAX(vmax) AS vmax, MAX(ts) AS newest, MAX(last_ts) AS last_ts
    FROM history_1m WHERE ts >= ?1 AND ts < ?2
    GROUP BY q, sid)
INSERT OR REPLACE INTO history_15m (ts, sid, n, total, vmin, vmax, lastv, last_ts)
SELECT g.q, g.sid, g.n, g.total, g.vmin, g.vmax, h.lastv, g.last_ts
FROM g JOIN history_1m h ON h.ts = g.newest AND h.sid = g.sid
"""
#: A point first written now (kept in the same transaction as its rows).
ADD_POINT = "INSERT INTO history_points (sid, device, point) VALUES (?, ?, ?)"
#: The rows of the points {ids} (a list of ids) in [?1, ?3), buckets ?2 ms apart (60,000 or
#: 900,000) from ?1, a bucket's start: one primary-key lookup per point and bucket.
POINTS_RANGE = """
WITH RECURSIVE b(t) AS (SELECT ?1 UNION ALL SELECT t + ?2 FROM b WHERE t + ?2 < ?3)
SELECT h.sid, h.ts, h.n, h.total, h.vmin, h.vmax, h.lastv, h.last_ts
FROM b JOIN {t} h ON h.ts = b.t AND h.sid IN ({ids})
"""
#: The oldest and the newest bucket of a table (its primary key's two ends).
ENDS = "SELECT (SELECT MIN(ts) FROM {t}), (SELECT MAX(ts) FROM {t})"


#: Keys looked up per statement by :func:`existing` (two parameters each).
KEYS_PER_LOOKUP = 5_000


async def existing(tx: Any, table: str, keys: list[tuple[int, int]]) -> int:
    """How many of ``keys`` (ts, sid; no repeats) have a row in ``table``: each key looked
    up by the primary key (late rows can span hours of a whole site's rows, which a range
    read would all return)."""
    found = 0
    for i in range(0, len(keys), KEYS_PER_LOOKUP):
        part = keys[i:i + KEYS_PER_LOOKUP]
        values = ", ".join(["(?, ?)"] * len(part))
        cur = await tx.execute(
            f"WITH k(ts, sid) AS (VALUES {values}) "
            f"SELECT COUNT(*) FROM k JOIN {table} h ON h.ts = k.ts AND h.sid = k.sid",
            [x for key in part for x in key])
        found += (await cur.fetchone() or (0,))[0]
        await cur.close()
    return found

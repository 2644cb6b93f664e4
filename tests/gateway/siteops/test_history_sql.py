"""The history's SQL on its own: the quarter build (BUILD_15M) against a computation in Python,
its query plan (one primary-key range per point, not one lookup per 1-minute row), retention
without a ts index, and the migration that dropped it."""

from __future__ import annotations

import random
import sqlite3

from gateway.siteops.history_sql import (
    ADD_SERIES,
    BUILD_15M,
    DEVICE_1M,
    MIGRATIONS,
    OLDEST_1M,
    PRUNE_1M,
)

QUARTER_MS = 900_000
T0 = 1_780_000_000_000 - 1_780_000_000_000 % QUARTER_MS


def table() -> sqlite3.Connection:
    con = sqlite3.connect(":memory:")
    for step in MIGRATIONS:
        con.executescript(step)
    return con


def write(con: sqlite3.Connection, rows: list[tuple[object, ...]]) -> None:
    """1-minute rows as the history writes them: their points in history_series too."""
    con.executemany(ADD_SERIES, {r[:2] for r in rows})
    con.executemany("INSERT INTO history_1m VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)


def test_quarters_built_at_once_equal_each_points_minutes_summed() -> None:
    """Three quarters in one statement; points missing from some minutes, a point that only
    appears in the last quarter, rows of the quarters around the range left alone."""
    con = table()
    rng = random.Random(3)
    rows = []
    for minute in range(-2, 47):  # two minutes before the range, two after it
        ts = T0 + minute * 60_000
        for dev in ("a", "b"):
            for point in ("p0", "p1", "p2") + (("late",) if minute >= 30 else ()):
                if rng.random() < 0.2:
                    continue  # no row this minute
                lo = round(rng.uniform(-10, 10), 2)
                rows.append((dev, point, ts, rng.randint(1, 60), round(rng.uniform(-99, 99), 3),
                             lo, lo + rng.randint(0, 9), round(rng.uniform(-5, 5), 2),
                             ts + rng.randint(0, 59_999)))
    write(con, rows)
    con.execute(BUILD_15M, (T0, T0 + 3 * QUARTER_MS))
    want: dict[tuple[str, str, int], list[float]] = {}
    for dev, point, ts, n, total, vmin, vmax, lastv, last_ts in sorted(rows, key=lambda r: r[2]):
        if not T0 <= ts < T0 + 3 * QUARTER_MS:
            continue
        w = want.get((dev, point, ts - ts % QUARTER_MS))
        if w is None:
            want[(dev, point, ts - ts % QUARTER_MS)] = [n, total, vmin, vmax, lastv, last_ts]
        else:  # rows come oldest first: the newest minute's last value wins
            w[:] = [w[0] + n, w[1] + total, min(w[2], vmin), max(w[3], vmax), lastv,
                    max(w[5], last_ts)]
    got = {(d, p, t): [n, total, vmin, vmax, lastv, last_ts] for d, p, t, n, total, vmin, vmax,
           lastv, last_ts in con.execute("SELECT * FROM history_15m")}
    assert got.keys() == want.keys() and ("a", "late", T0 + 2 * QUARTER_MS) in got
    for key, w in want.items():
        assert got[key][0] == w[0] and got[key][2:] == w[2:], key
        assert abs(got[key][1] - w[1]) < 1e-9, key


def test_the_quarter_build_reads_each_points_minutes_through_the_primary_key() -> None:
    """The plan that keeps the build's cost flat as history_1m grows: the points from
    history_series, then one primary-key range per point (not a primary-key lookup per
    1-minute row, which slowed down with the table's size)."""
    plan = [r[3] for r in table().execute("EXPLAIN QUERY PLAN " + BUILD_15M, (0, 1))]
    assert "SCAN k" in plan, plan
    assert "SEARCH h USING PRIMARY KEY (device=? AND point=? AND ts>? AND ts<?)" in plan, plan
    assert not any(step.startswith("SCAN h") for step in plan), plan


def test_retention_goes_point_by_point_without_a_ts_index() -> None:
    """history_1m has no ts index: the oldest minute and the rows before a cutoff are found
    through each point's primary-key range (never a scan of the table), and only those go."""
    con = table()
    assert not con.execute("SELECT name FROM sqlite_master WHERE type = 'index' "
                           "AND tbl_name = 'history_1m'").fetchall()
    rows = [(d, p, T0 + m * 60_000 + (60_000 if p == "late" else 0), 1, 1.0, 1.0, 1.0, 1.0,
             T0) for d in ("a", "b") for p in ("p0", "late") for m in range(10)]
    write(con, rows)
    assert con.execute(OLDEST_1M).fetchone() == (T0,)
    for sql, args in ((OLDEST_1M, ()), (PRUNE_1M, (0,)), (DEVICE_1M, (0, 1, "a"))):
        plan = [r[3] for r in con.execute("EXPLAIN QUERY PLAN " + sql, args)]
        assert not any(step.startswith("SCAN history_1m") or step == "SCAN h"
                       for step in plan), plan
    assert sorted(con.execute(DEVICE_1M, (T0 + 60_000, T0 + 3 * 60_000, "b"))) == sorted(
        (r[1], *r[2:]) for r in rows if r[0] == "b" and T0 + 60_000 <= r[2] < T0 + 3 * 60_000)
    assert con.execute(PRUNE_1M, (T0 + 3 * 60_000,)).rowcount == 2 * 3 + 2 * 2
    left = con.execute("SELECT device, point, ts FROM history_1m").fetchall()
    assert sorted(left) == sorted(r[:3] for r in rows if r[2] >= T0 + 3 * 60_000)
    assert con.execute(OLDEST_1M).fetchone() == (T0 + 3 * 60_000,)


def test_the_migration_lists_the_points_already_written_and_drops_the_ts_index() -> None:
    con = sqlite3.connect(":memory:")
    con.executescript(MIGRATIONS[0])
    con.executemany("INSERT INTO history_1m VALUES (?, ?, ?, 1, 1.0, 1.0, 1.0, 1.0, 0)",
                    [("a", "p", 0), ("a", "p", 60_000), ("b", "q", 0)])
    for step in MIGRATIONS[1:]:
        con.executescript(step)
    assert con.execute("SELECT * FROM history_series ORDER BY 1").fetchall() == [
        ("a", "p"), ("b", "q")]
    assert con.execute("SELECT COUNT(*) FROM sqlite_master WHERE name = 'history_1m_ts'"
                       ).fetchone() == (0,)

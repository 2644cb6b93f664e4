"""The history's SQL on its own: the quarter build (BUILD_15M) against a computation in Python,
and its query plan (one primary-key range per point, not one lookup per 1-minute row)."""

from __future__ import annotations

import random
import sqlite3

from gateway.siteops.history_sql import BUILD_15M, MIGRATIONS

QUARTER_MS = 900_000
T0 = 1_780_000_000_000 - 1_780_000_000_000 % QUARTER_MS


def table() -> sqlite3.Connection:
    con = sqlite3.connect(":memory:")
    con.executescript(MIGRATIONS[0])
    return con


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
    con.executemany("INSERT INTO history_1m VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
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
    """The plan that keeps the build's cost flat as history_1m grows: the quarter's points from
    the ts index alone, then one primary-key range per point (not a primary-key lookup per
    1-minute row, which slowed down with the table's size)."""
    plan = [r[3] for r in table().execute("EXPLAIN QUERY PLAN " + BUILD_15M, (0, 1))]
    assert any("COVERING INDEX history_1m_ts" in step for step in plan), plan
    assert "SEARCH h USING PRIMARY KEY (device=? AND point=? AND ts>? AND ts<?)" in plan, plan
    assert not any(step.startswith("SEARCH history_1m USING INDEX") for step in plan), plan

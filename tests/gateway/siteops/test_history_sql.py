"""The history's SQL on its own: the quarter build (BUILD_15M) against a computation in Python,
the query plans of the time-ordered tables (a range of the table, lookups by key, never a
scan), a point's range, and the migrations (v2 dropped the ts index, v3 keys the rows by time
and point id and keeps what was written)."""

from __future__ import annotations

import random
import sqlite3

import pytest

from gateway.siteops.history_sql import ADD_POINT, BUILD_15M, ENDS, MIGRATIONS, POINTS_RANGE

QUARTER_MS = 900_000
T0 = 1_780_000_000_000 - 1_780_000_000_000 % QUARTER_MS
ROW = "INSERT INTO {t} VALUES (?, ?, ?, ?, ?, ?, ?, ?)"


def table() -> sqlite3.Connection:
    con = sqlite3.connect(":memory:")
    for step in MIGRATIONS:
        con.executescript(step)
    return con


def write(con: sqlite3.Connection, rows: list[tuple[object, ...]]) -> dict[tuple[str, str], int]:
    """1-minute rows (device, point, ts, ...) as the history writes them: by point id, the
    points in history_points. Returns the ids."""
    ids: dict[tuple[str, str], int] = {}
    for r in rows:
        ids.setdefault((str(r[0]), str(r[1])), len(ids) + 1)
    con.executemany(ADD_POINT, [(sid, d, p) for (d, p), sid in ids.items()])
    con.executemany(ROW.format(t="history_1m"),
                    [(r[2], ids[(str(r[0]), str(r[1]))], *r[3:]) for r in rows])
    return ids


def plan(con: sqlite3.Connection, sql: str, args: tuple[object, ...]) -> list[str]:
    return [r[3] for r in con.execute("EXPLAIN QUERY PLAN " + sql, args)]


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
    rng.shuffle(rows)  # the order written does not matter
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
           lastv, last_ts in con.execute(
               "SELECT k.device, k.point, h.ts, h.n, h.total, h.vmin, h.vmax, h.lastv, "
               "h.last_ts FROM history_15m h JOIN history_points k USING (sid)")}
    assert got.keys() == want.keys() and ("a", "late", T0 + 2 * QUARTER_MS) in got
    for key, w in want.items():
        assert got[key][0] == w[0] and got[key][2:] == w[2:], key
        assert abs(got[key][1] - w[1]) < 1e-9, key


def test_the_quarter_build_reads_one_range_of_the_table() -> None:
    """The build reads the quarter's minutes as one range of the primary key (they lie side
    by side in time order), and each point's newest minute by its key: no scan."""
    steps = plan(table(), BUILD_15M, (0, 1))
    assert any(s.startswith("SEARCH history_1m USING PRIMARY KEY (ts>? AND ts<?)")
               for s in steps), steps
    assert "SEARCH h USING PRIMARY KEY (ts=? AND sid=?)" in steps, steps
    assert not any(s.startswith("SCAN history_1m") or s == "SCAN h" for s in steps), steps


def test_retention_and_a_points_range_go_through_the_primary_key() -> None:
    """Retention deletes the oldest rows by a key range; the table's two ends are lookups; a
    point's range is one lookup per minute (never a scan of the table), clipped to the
    buckets asked for."""
    con = table()
    rows = [(d, p, T0 + m * 60_000 + (60_000 if p == "late" else 0), 1, 1.0, 1.0, 1.0,
             float(m), T0) for d in ("a", "b") for p in ("p0", "late") for m in range(10)]
    ids = write(con, rows)
    ends = ENDS.format(t="history_1m")
    assert con.execute(ends).fetchone() == (T0, T0 + 10 * 60_000)
    sql = POINTS_RANGE.format(t="history_1m", ids=f"{ids[('b', 'p0')]}, {ids[('b', 'late')]}")
    for s, args in ((ends, ()), ("DELETE FROM history_1m WHERE ts < ?", (0,)),
                    (sql, (T0, 60_000, T0 + 3 * 60_000))):
        steps = plan(con, s, args)
        assert not any(step.startswith("SCAN history_1m") or step == "SCAN h"
                       for step in steps), steps
    got = con.execute(sql, (T0 + 60_000, 60_000, T0 + 3 * 60_000)).fetchall()
    assert sorted(got) == sorted(
        (ids[(d, p)], *r) for d, p, *r in rows
        if d == "b" and T0 + 60_000 <= r[0] < T0 + 3 * 60_000)
    assert con.execute("DELETE FROM history_1m WHERE ts < ?", (T0 + 3 * 60_000,)
                       ).rowcount == 2 * 3 + 2 * 2
    left = con.execute("SELECT ts, sid FROM history_1m").fetchall()
    assert sorted(left) == sorted((r[2], ids[(r[0], r[1])]) for r in rows
                                  if r[2] >= T0 + 3 * 60_000)
    assert con.execute(ends).fetchone()[0] == T0 + 3 * 60_000


def test_the_migrations_keep_every_row_and_key_it_by_time_and_point_id() -> None:
    """A store written before v2 (device, point keys, a ts index) comes through v2 and v3
    with the same rows, keyed (ts, sid), every point once in history_points (also one whose
    1-minute rows were already pruned), the old tables gone."""
    con = sqlite3.connect(":memory:")
    con.executescript(MIGRATIONS[0])
    minutes = [("a", "p", 0), ("a", "p", 60_000), ("b", "q", 0)]
    con.executemany("INSERT INTO history_1m VALUES (?, ?, ?, 1, 2.0, 3.0, 4.0, 5.0, 6)", minutes)
    quarters = [("a", "p", 0), ("c", "old", -QUARTER_MS)]
    con.executemany("INSERT INTO history_15m VALUES (?, ?, ?, 7, 8.0, 9.0, 10.0, 11.0, 12)",
                    quarters)
    for step in MIGRATIONS[1:]:
        con.executescript(step)
    points = con.execute("SELECT device, point FROM history_points ORDER BY sid").fetchall()
    assert points == [("a", "p"), ("b", "q"), ("c", "old")]
    for t, want, tail in (("history_1m", minutes, (1, 2.0, 3.0, 4.0, 5.0, 6)),
                          ("history_15m", quarters, (7, 8.0, 9.0, 10.0, 11.0, 12))):
        got = con.execute(f"SELECT k.device, k.point, h.* FROM {t} h "
                          "JOIN history_points k USING (sid)").fetchall()
        assert sorted(got) == sorted((d, p, ts, points.index((d, p)) + 1, *tail)
                                     for d, p, ts in want)
    names = {r[0] for r in con.execute("SELECT name FROM sqlite_master")}
    assert "history_series" not in names and "history_1m_t" not in names
    assert not any(n.startswith("history_1m_ts") for n in names)


async def test_existing_counts_only_the_keys_asked_for_in_chunks(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The late rows' check looks each key up (several statements when there are many): rows
    of other points and other minutes in the same time range do not count."""
    import aiosqlite

    from gateway.siteops import history_sql

    monkeypatch.setattr(history_sql, "KEYS_PER_LOOKUP", 3)
    async with aiosqlite.connect(":memory:") as con:
        for step in MIGRATIONS:
            await con.executescript(step)
        await con.executemany(ROW.format(t="history_1m"),
                              [(T0 + m * 60_000, sid, 1, 1.0, 1.0, 1.0, 1.0, 0)
                               for m in range(5) for sid in (1, 2, 3)])
        keys = [(T0, 1), (T0 + 60_000, 2), (T0 + 4 * 60_000, 3), (T0 + 2 * 60_000, 9),
                (T0 + 9 * 60_000, 1), (T0 + 3 * 60_000, 1), (T0 - 60_000, 2)]
        assert await history_sql.existing(con, "history_1m", keys) == 4
        assert await history_sql.existing(con, "history_1m", []) == 0

"""The history's rollup tables on their own (bare SQLite, no gateway): what writing one
minute of a site's 1-minute rows, and deleting the oldest minute (retention), costs once the
table holds ``--minutes`` of rows, in this release's layout (rows keyed by time and point id,
v3) and in the previous release's (keyed by point and time, v2).

Per layout and run: a new file in WAL mode (synchronous=NORMAL, as the store), ``--minutes``
of rows of ``--devices`` x ``--points`` points written in key order, then ``--repeat`` times:
the next minute's rows in one transaction (the history's upsert), a checkpoint of the WAL,
the oldest minute deleted in one transaction, a checkpoint. Figures: CPU of this process
(the statements and the checkpoints, medians over the repeats), and the bytes each
transaction put in the WAL (pages x page size: what the checkpoint then writes into the
database file again; on flash, wear), and the file's size per row.

    python bench/history_layout.py [--runs 3] [--minutes 120] [--devices 100] [--points 125]

Writes bench/results/history_layout.json.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Conditions, medians, write_result
from gateway.siteops import history_sql

T0 = 1_780_000_000_000
MINUTE_MS = 60_000
#: The previous release's (v2) table and upsert, keyed by point then time.
V2_TABLE = history_sql.MIGRATIONS[0].split(";")[0]
V2_UPSERT = """
INSERT INTO history_1m (device, point, ts, n, total, vmin, vmax, lastv, last_ts)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (device, point, ts) DO UPDATE SET
    n = n + excluded.n, total = total + excluded.total,
    vmin = MIN(vmin, excluded.vmin), vmax = MAX(vmax, excluded.vmax),
    lastv = CASE WHEN excluded.last_ts >= last_ts THEN excluded.lastv ELSE lastv END,
    last_ts = MAX(last_ts, excluded.last_ts)
"""
V3_TABLE = history_sql.ROLLUP_TABLE.format(t="history_1m")


class Layout:
    def __init__(self, name: str, con: sqlite3.Connection, points: list[tuple[str, str]]):
        self.name, self.con, self.points = name, con, points
        v3 = name == "v3"
        con.execute(V3_TABLE if v3 else V2_TABLE)
        self.upsert = history_sql.UPSERT.format(t="history_1m") if v3 else V2_UPSERT

    def rows(self, minute: int) -> list[tuple[Any, ...]]:
        ts = T0 + minute * MINUTE_MS
        # values with fractions, as measurements are (SQLite stores a whole-number REAL in
        # fewer bytes, which would make the rows look smaller than a site's)
        tail = [(60, 60 * v + 0.123, v - 1.37, v + 2.71, v + 0.05, ts + 59_000)
                for v in (230.1 + i % 97 * 0.37 + minute * 0.013
                          for i in range(len(self.points)))]
        if self.name == "v3":
            return [(ts, i + 1, *t) for i, t in enumerate(tail)]
        return [(d, p, ts, *t) for (d, p), t in zip(self.points, tail, strict=True)]

    def fill(self, minutes: int) -> None:
        def gen() -> Iterator[tuple[Any, ...]]:
            if self.name == "v3":
                for m in range(minutes):
                    yield from self.rows(m)
            else:  # in key order: point by point
                per = [self.rows(m) for m in range(minutes)]
                for i in range(len(self.points)):
                    for m in range(minutes):
                        yield per[m][i]
        self.con.execute("BEGIN")
        self.con.executemany(self.upsert, gen())
        self.con.execute("COMMIT")

    def delete_oldest(self, minute: int) -> None:
        self.con.execute("DELETE FROM history_1m WHERE ts < ?", (T0 + (minute + 1) * MINUTE_MS,))


def one(layout_name: str, args: argparse.Namespace) -> dict[str, float]:
    points = [(f"m{d:03d}", f"r{p:03d}") for d in range(args.devices) for p in range(args.points)]
    with tempfile.TemporaryDirectory(prefix="fieldgate-layout-") as tmp:
        path = Path(tmp) / "h.db"
        con = sqlite3.connect(path, isolation_level=None)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=NORMAL")
        layout = Layout(layout_name, con, points)
        layout.fill(args.minutes)
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        con.execute("PRAGMA wal_autocheckpoint=0")  # checkpoints measured on their own
        page = con.execute("PRAGMA page_size").fetchone()[0]
        wal = Path(f"{path}-wal")
        out: dict[str, list[float]] = {k: [] for k in (
            "write_ms", "write_ckpt_ms", "write_wal_kb", "delete_ms", "delete_ckpt_ms",
            "delete_wal_kb")}

        def step(kind: str, fn: Any) -> None:
            t0 = time.process_time()
            con.execute("BEGIN")
            fn()
            con.execute("COMMIT")
            t1 = time.process_time()
            _, frames, _ = con.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            t2 = time.process_time()
            out[f"{kind}_ms"].append(1000 * (t1 - t0))
            out[f"{kind}_ckpt_ms"].append(1000 * (t2 - t1))
            out[f"{kind}_wal_kb"].append(frames * page / 1024)
            assert wal.stat().st_size == 0

        for k in range(args.repeat):
            step("write", lambda k=k: con.executemany(layout.upsert,
                                                      layout.rows(args.minutes + k)))
            step("delete", lambda k=k: layout.delete_oldest(k))
        size = os.path.getsize(path)
        con.close()
    run = {k: statistics.median(v) for k, v in out.items()}
    run["minute_ms"] = sum(run[k] for k in ("write_ms", "write_ckpt_ms", "delete_ms",
                                             "delete_ckpt_ms"))
    run["db_mb"] = size / 1e6
    run["bytes_per_row"] = size / (args.minutes * len(points))  # as many rows as filled
    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--minutes", type=int, default=120)
    ap.add_argument("--devices", type=int, default=100)
    ap.add_argument("--points", type=int, default=125)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    runs = []
    with Conditions() as conditions:
        for i in range(args.runs):
            run: dict[str, float] = {}
            for name in (("v2", "v3") if i % 2 == 0 else ("v3", "v2")):
                run.update({f"{name}_{k}": v for k, v in one(name, args).items()})
            runs.append(run)
            print(f"run {i + 1}: " + "; ".join(
                f"{n}: write {run[f'{n}_write_ms']:.0f} + checkpoint "
                f"{run[f'{n}_write_ckpt_ms']:.0f} ms ({run[f'{n}_write_wal_kb']:,.0f} KB WAL), "
                f"delete {run[f'{n}_delete_ms']:.0f} + {run[f'{n}_delete_ckpt_ms']:.0f} ms "
                f"({run[f'{n}_delete_wal_kb']:,.0f} KB); {run[f'{n}_minute_ms']:.0f} ms a minute"
                for n in ("v2", "v3")), flush=True)
    write_result(
        "history_layout",
        what=("bare SQLite, no gateway: one minute of 1-minute rows written (the history's "
              "upsert, one transaction) and the oldest minute deleted, each followed by a WAL "
              "checkpoint, in a table already holding `minutes` of rows; CPU of this process "
              "and WAL bytes per transaction; v3 = rows keyed (ts, point id), this release; "
              "v2 = keyed (device, point, ts), the previous release"),
        goal="(none of its own: the history under 10 % of the gateway's CPU)",
        params={"runs": args.runs, "minutes": args.minutes, "devices": args.devices,
                "points": args.points, "repeat": args.repeat},
        summary=medians(runs, runs[0]), runs=runs, conditions=conditions)


if __name__ == "__main__":
    main()

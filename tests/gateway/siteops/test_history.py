"""Local history: rollups equal what the raw samples give when computed independently, over
a day boundary and a DST change in the site timezone; energy from counters with a reset and
a gap; retention; and a kill -9 while rollups are written never counts a sample twice."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import textwrap
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

import gateway.siteops  # noqa: F401  (registers the component and its tables)
from gateway.clock import FakeClock
from gateway.model import Quality, Sample
from gateway.siteops.config import EnergySource, HistoryConfig
from gateway.siteops.history import DAY_MS, MINUTE_MS, QUARTER_MS, ROW_BYTES, History
from gateway.siteops.history_fold import Folder
from gateway.store import Store
from tests.gateway.siteops.support import expected_rollups, local_ms

TZ = "Europe/Berlin"
ROOT = Path(__file__).resolve().parents[3]


async def feed(store: Store, history: History, samples: list[Sample], size: int = 97,
               flush_every: int = 3) -> None:
    """Commit ``samples`` to the buffer in batches, observing each as the pipeline does."""
    for i in range(0, len(samples), size):
        batch = samples[i:i + size]
        seq_first, _ = await store.append_samples(batch)
        history.observe(batch, seq_first)
        if (i // size) % flush_every == 0:
            await history.flush()
    await history.flush()


def as_map(rows: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    return {r["ts"]: {k: r[k] for k in ("min", "max", "avg", "last", "count")} for r in rows}


def check(got: dict[int, dict[str, Any]], want: dict[int, dict[str, Any]]) -> None:
    assert sorted(got) == sorted(want)
    for ts, w in want.items():
        g = got[ts]
        assert (g["min"], g["max"], g["last"], g["count"]) == (
            w["min"], w["max"], w["last"], w["count"]), ts
        assert g["avg"] == pytest.approx(w["avg"], rel=1e-9), ts


def local_midnight(ts: int) -> int:
    day = datetime.fromtimestamp(ts / 1000, ZoneInfo(TZ)).date()
    return local_ms(TZ, day.year, day.month, day.day)


async def test_rollups_equal_an_independent_computation_across_a_dst_day(
        tmp_path: Path) -> None:
    tz = ZoneInfo(TZ)
    store = Store(tmp_path / "b.db")
    await store.open()
    history = History(HistoryConfig(), store, tz)
    await history.load()
    rng = random.Random(7)
    # 2026-03-29 is 23 hours long in Berlin. From 20:00 the day before to 04:00 the day
    # after, every 37 s, two devices, two points, some bad and non-numeric samples.
    start, end = local_ms(TZ, 2026, 3, 28, 20), local_ms(TZ, 2026, 3, 30, 4)
    samples: list[Sample] = []
    for ts in range(start, end, 37_000):
        for dev in ("inv1", "inv2"):
            samples.append(Sample(dev, "power_w", ts, round(rng.uniform(-50, 5000), 3)))
            samples.append(Sample(dev, "temp_c", ts + 1, rng.randint(10, 60)))
        if rng.random() < 0.05:
            samples.append(Sample("inv1", "power_w", ts + 2, 99_999.0, Quality.BAD))
            samples.append(Sample("inv1", "state", ts + 3, "running"))
    await feed(store, history, samples)

    for dev, point in (("inv1", "power_w"), ("inv2", "temp_c")):
        mine = [s for s in samples if (s.device, s.point) == (dev, point)]
        for res, bucket in (("1m", lambda t: t - t % MINUTE_MS),
                            ("15m", lambda t: t - t % QUARTER_MS),
                            ("1d", local_midnight)):
            want = {k[2]: v for k, v in expected_rollups(mine, bucket).items()}
            got = as_map(await history.series(dev, point, start, end, res))
            check(got, want)
    days = await history.series("inv1", "power_w", start, end, "1d")
    assert [d["ts"] for d in days] == [local_ms(TZ, 2026, 3, d) for d in (28, 29, 30)]
    # The DST day has 23 hours of samples (every 37 s).
    day29 = [s for s in samples if s.device == "inv1" and s.point == "power_w"
             and s.quality == "good"
             and local_ms(TZ, 2026, 3, 29) <= s.ts_ms < local_ms(TZ, 2026, 3, 30)]
    assert days[1]["count"] == len(day29) == pytest.approx(23 * 3600 / 37, abs=1)
    # last_values: the newest good value of each point.
    last = await history.last_values("inv1", now_ms=end)
    newest = max((s for s in samples if s.device == "inv1" and s.point == "temp_c"),
                 key=lambda s: s.ts_ms)
    assert last["temp_c"] == {"value": newest.value, "ts": newest.ts_ms}
    assert "state" not in last
    await store.close()


async def test_energy_per_15_minutes_from_a_counter_with_a_reset_and_a_gap(
        tmp_path: Path) -> None:
    store = Store(tmp_path / "b.db")
    await store.open()
    cfg = HistoryConfig(energy=[EnergySource(devices=["meter*"], energy_point="energy_wh",
                                             counter_max=1000.0)])
    history = History(cfg, store, ZoneInfo(TZ))
    await history.load()
    t0 = local_ms(TZ, 2026, 5, 1, 10)  # a slot boundary
    readings: list[tuple[int, float]] = []
    value = 900.0
    for minute in range(0, 5):  # 10:00..10:04, +10 Wh a minute
        readings.append((t0 + minute * MINUTE_MS, value))
        value += 10
    # a gap: the next reading at 10:25 with +200 Wh over 21 min (10:04 -> 10:25); the
    # counter rolls over at 1000: 940 -> 140 is +200.
    readings.append((t0 + 25 * MINUTE_MS, 140.0))
    # a meter replacement at 10:26: it restarts at 5; nothing is counted for that jump
    readings.append((t0 + 26 * MINUTE_MS, 5.0))
    readings.append((t0 + 27 * MINUTE_MS, 15.0))  # +10
    samples = [Sample("meter1", "energy_wh", ts, v) for ts, v in readings]
    samples.append(Sample("pv1", "energy_wh", t0, 1.0))  # no energy source: ignored
    await feed(store, history, samples, size=2, flush_every=1)
    got = await history.energy(t0, t0 + 3600_000, resolution="15m")
    # 10:00 slot: 4 x 10 Wh (10:00..10:04) + the share of the 21-minute gap inside the
    # slot (10:04..10:15 = 11 of 21 minutes of 200 Wh); 10:15 slot: the rest (10/21) + 10.
    assert got == {"meter1": [
        {"ts": t0, "wh": pytest.approx(40 + 200 * 11 / 21)},
        {"ts": t0 + QUARTER_MS, "wh": pytest.approx(200 * 10 / 21 + 10)}]}
    assert history.stats.meters.rollovers == 1 and history.stats.meters.resets == 1
    # The baseline survives a restart: the next reading only adds its own delta.
    await store.close()
    store = Store(tmp_path / "b.db")
    await store.open()
    again = History(cfg, store, ZoneInfo(TZ))
    await again.load()
    await again.catch_up()
    seq, _ = await store.append_samples([Sample("meter1", "energy_wh", t0 + 40 * MINUTE_MS,
                                                25.0)])
    again.observe([Sample("meter1", "energy_wh", t0 + 40 * MINUTE_MS, 25.0)], seq)
    totals = await again.energy_total(t0, t0 + 3600_000)
    assert totals["meter1"] == pytest.approx(40 + 200 + 10 + 10)
    await store.close()


async def test_retention_by_age_and_by_bytes(tmp_path: Path) -> None:
    store = Store(tmp_path / "b.db")
    await store.open()
    clock = FakeClock(local_ms(TZ, 2026, 1, 10))
    cfg = HistoryConfig(minute_days=1, days=3, max_bytes=200_000)
    history = History(cfg, store, ZoneInfo(TZ))
    await history.load()
    start = clock.now_ms() - 5 * DAY_MS
    samples = [Sample("m", "p", ts, 1.0) for ts in range(start, clock.now_ms(), MINUTE_MS)]
    await feed(store, history, samples, size=500)
    dropped = await history.prune(clock.now_ms())
    assert dropped > 0
    oldest_1m = await store.query_one("SELECT MIN(ts) FROM history_1m")
    oldest_15m = await store.query_one("SELECT MIN(ts) FROM history_15m")
    assert oldest_1m is not None and oldest_1m[0] >= clock.now_ms() - DAY_MS
    assert oldest_15m is not None and oldest_15m[0] >= clock.now_ms() - 3 * DAY_MS
    # Now a byte cap that the remaining rows exceed: the oldest go, counted.
    rows = history.stats.est_rows
    small = History(HistoryConfig(minute_days=1, days=3, max_bytes=110_000), store,
                    ZoneInfo(TZ))
    await small.load()
    assert small.stats.est_rows == rows
    await small.prune(clock.now_ms())
    assert small.stats.dropped_rows > 0
    assert small.stats.est_rows * ROW_BYTES <= 110_000
    (left,) = await store.query_one(
        "SELECT (SELECT COUNT(*) FROM history_1m) + (SELECT COUNT(*) FROM history_15m)") or (0,)
    assert left == small.stats.est_rows
    await store.close()


CHILD = textwrap.dedent("""
    import asyncio, random, sys
    from pathlib import Path
    from zoneinfo import ZoneInfo
    import gateway.siteops
    from gateway.model import Sample
    from gateway.siteops.config import EnergySource, HistoryConfig
    from gateway.siteops.history import History
    from gateway.store import Store
    from gateway.clock import FakeClock

    async def main():
        live = sys.argv[5] == "live"
        clock = FakeClock(int(sys.argv[3]))
        store = Store(Path(sys.argv[1]), clock=clock if live else None)
        await store.open()
        cfg = HistoryConfig(energy=[EnergySource(devices=["*"], energy_point="e")])
        h = History(cfg, store, ZoneInfo("UTC"))
        await h.load()
        await h.catch_up()
        rng = random.Random(int(sys.argv[2]))
        ts = int(sys.argv[3])
        energy = float(sys.argv[4])
        n = 0
        while True:
            batch = []
            for _ in range(400):
                ts += 250
                energy += 1.0
                batch.append(Sample("d%d" % rng.randint(0, 3), "p%d" % rng.randint(0, 9), ts,
                                    rng.randint(0, 1000)))
                batch.append(Sample("d0", "e", ts, energy))
            seq, _ = await store.append_samples(batch)
            h.observe(batch, seq)
            if live:  # the gateway's clock follows the samples: minutes close as they end
                clock.advance((ts - clock.now_ms()) / 1000)
            await h.flush()
            n += 1
            print("flushed", n, ts, energy, flush=True)

    asyncio.run(main())
""")


async def _run_child_and_kill(db: Path, seed: int, ts: int, energy: float,
                              flushes: int, clock: str) -> tuple[int, float]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, str(db), str(seed), str(ts), str(energy), clock,
        cwd=ROOT, stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdout is not None
    last = (ts, energy)
    seen = 0
    while seen < flushes:
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert line, "the writer exited early"
        _, _, t, e = line.split()
        last, seen = (int(t), float(e)), seen + 1
    await asyncio.sleep(random.uniform(0, 0.05))  # land anywhere in the next flush
    proc.send_signal(signal.SIGKILL)
    await proc.wait()
    # Continue after everything the killed writer may have committed.
    return last[0] + 10_000_000, last[1] + 1_000_000


@pytest.mark.parametrize("clock", ["late", "live"])
async def test_kill_9_while_writing_rollups_never_counts_twice(tmp_path: Path,
                                                                clock: str) -> None:
    """``late``: the gateway's clock is months after the samples, every minute is closed
    at once. ``live``: the clock follows the samples, so each kill leaves minutes open in
    memory only, which the restart folds again from the buffer."""
    db = tmp_path / "b.db"
    ts, energy = 1_780_000_000_000, 0.0
    for round_ in range(3):
        ts, energy = await _run_child_and_kill(db, round_, ts, energy, flushes=3 + round_,
                                               clock=clock)
    store = Store(db)
    await store.open()
    history = History(HistoryConfig(energy=[EnergySource(devices=["*"], energy_point="e")]),
                      store, ZoneInfo("UTC"))
    await history.load()
    await history.catch_up()
    await history.flush(final=True)
    samples: list[Sample] = []
    chunks = await store.read_telemetry(0, 10_000_000)
    for chunk in chunks:
        samples.extend(Sample(*r) for r in chunk.rows)
    assert history.stats.folded_seq == chunks[-1].seq_last
    assert history.stats.lost_samples == 0
    want = expected_rollups(samples, lambda t: t - t % MINUTE_MS)
    rows = await store.query("SELECT k.device, k.point, h.ts, h.n, h.total, h.vmin, h.vmax, "
                             "h.lastv FROM history_1m h JOIN history_points k USING (sid)")
    got = {(d, p, t): (n, total, lo, hi, last) for d, p, t, n, total, lo, hi, last in rows}
    assert set(got) == set(want)
    for key, w in want.items():
        n, total, lo, hi, last = got[key]
        assert (n, lo, hi, last) == (w["count"], w["min"], w["max"], w["last"]), key
        assert total == pytest.approx(w["avg"] * w["count"])
    # Energy: the counter rose 1 Wh per sample within each run; the jumps between runs are
    # readings 1 000 000 Wh apart, also counted (no max_power_w): the total is the counter's
    # span, exactly once.
    readings = [s.value for s in samples if s.point == "e"]
    (total_wh,) = await store.query_one("SELECT SUM(wh) FROM history_energy") or (0,)
    assert total_wh == pytest.approx(float(readings[-1]) - float(readings[0]))
    await store.close()


@pytest.mark.parametrize("tz", ["Europe/Berlin", "Asia/Kathmandu", "Australia/Lord_Howe"])
async def test_the_day_bucketer_agrees_with_the_datetime_one(tmp_path: Path, tz: str) -> None:
    """The per-hour cache of local days gives what a datetime per timestamp gives, also in
    zones whose midnight falls inside a UTC hour (+05:45; +10:30/+11 with a 30-minute DST)."""
    store = Store(tmp_path / "b.db")
    await store.open()
    history = History(HistoryConfig(), store, ZoneInfo(tz))
    day = history.bucketer("1d")
    start = local_ms(tz, 2026, 4, 3)  # Lord Howe leaves DST on 5 April 2026
    for ts in range(start, start + 4 * DAY_MS, 300_000):
        assert day(ts) == history.bucket(ts, "1d"), ts
    await store.close()


@pytest.mark.parametrize("tz", ["Europe/Berlin", "Asia/Kathmandu"])
async def test_daily_energy_equals_the_sum_of_its_quarters(tmp_path: Path, tz: str) -> None:
    """Days summed by SQLite per hour (Berlin) or from the 15-minute rows (Kathmandu,
    whose midnight is 18:15 UTC) equal the 15-minute energy summed per local day."""
    store = Store(tmp_path / "b.db")
    await store.open()
    history = History(HistoryConfig(energy=[EnergySource(devices=["*"], energy_point="e")]),
                      store, ZoneInfo(tz))
    start = local_ms(tz, 2026, 3, 27)  # Berlin's DST night inside
    await feed(store, history, [Sample("m", "e", ts, 7.0 * (ts - start) / 60_000)
                                for ts in range(start, start + 4 * DAY_MS, 60_000)])
    quarters = (await history.energy(start, start + 4 * DAY_MS, None, "15m"))["m"]
    want: dict[int, float] = {}
    for r in quarters:
        day = history.bucket(r["ts"], "1d")
        want[day] = want.get(day, 0.0) + r["wh"]
    got = {r["ts"]: r["wh"] for r in
           (await history.energy(start, start + 4 * DAY_MS, None, "1d"))["m"]}
    assert got.keys() == want.keys() and len(got) >= 4
    for day, wh in want.items():
        assert got[day] == pytest.approx(wh)
    await store.close()


async def test_values_that_are_not_finite_numbers_are_not_rolled_up(tmp_path: Path) -> None:
    store = Store(tmp_path / "b.db")
    await store.open()
    history = History(HistoryConfig(), store, ZoneInfo("UTC"))
    t = 1_780_000_000_000 - 1_780_000_000_000 % MINUTE_MS
    values: list[Any] = [1.5, float("nan"), float("inf"), -float("inf"), 3, True, "7", None, 2.5]
    await feed(store, history, [Sample("d", "p", t + i, v) for i, v in enumerate(values)])
    (row,) = await history.series("d", "p", t, t + MINUTE_MS, "1m")
    assert (row["count"], row["min"], row["max"], row["last"]) == (3, 1.5, 3.0, 2.5)
    await store.close()


async def test_open_minutes_are_queried_from_memory_and_survive_a_restart(
        tmp_path: Path) -> None:
    """With the gateway's clock at the samples' time, the current minute and quarter are
    not written yet; queries still see them, and so does the next start (the buffer still
    holds them: nothing is lost)."""
    t0 = 1_780_000_000_000 - 1_780_000_000_000 % QUARTER_MS
    clock = FakeClock(t0)
    store = Store(tmp_path / "b.db", clock=clock)
    await store.open()
    history = History(HistoryConfig(), store, ZoneInfo("UTC"))
    await history.load()
    rng = random.Random(3)
    samples = [Sample(f"d{i % 3}", f"p{i % 5}", t0 + i * 700, rng.uniform(-5, 5))
               for i in range(1800)]  # 21 minutes: one quarter built, one open
    for i in range(0, len(samples), 90):
        batch = samples[i:i + 90]
        seq, _ = await store.append_samples(batch)
        history.observe(batch, seq)
        clock.advance((batch[-1].ts_ms - clock.now_ms()) / 1000)
        await history.flush()
    assert history.stats.horizon > t0 + QUARTER_MS  # the first quarter is built ...
    assert history._folder.buckets  # ... and the current minute is in memory only

    async def check_all(h: History) -> None:
        for dev, point in (("d0", "p0"), ("d1", "p3")):
            mine = [s for s in samples if (s.device, s.point) == (dev, point)]
            for res, size in (("1m", MINUTE_MS), ("15m", QUARTER_MS)):
                want = {k[2]: v for k, v in
                        expected_rollups(mine, lambda t, z=size: t - t % z).items()}
                check(as_map(await h.series(dev, point, t0, t0 + 3600_000, res)), want)
            newest = max(mine, key=lambda s: s.ts_ms)
            last = await h.last_values(dev, now_ms=clock.now_ms())
            assert last[point] == {"value": newest.value, "ts": newest.ts_ms}

    await check_all(history)
    await store.close()  # as a kill would: the open minute is not written
    store = Store(tmp_path / "b.db", clock=clock)
    await store.open()
    again = History(HistoryConfig(), store, ZoneInfo("UTC"))
    await again.load()
    await again.catch_up()
    assert again.stats.lost_samples == 0
    await check_all(again)
    await store.close()


async def test_lost_samples_counts_only_what_the_restart_could_not_fold_again(
        tmp_path: Path) -> None:
    """The uplink deleted every sample before a crash: the restart counts as lost exactly
    the samples of the minutes that were open (in memory only), not the written ones."""
    t0 = 1_780_000_000_000 - 1_780_000_000_000 % QUARTER_MS
    clock = FakeClock(t0)
    store = Store(tmp_path / "b.db", clock=clock)
    await store.open()
    history = History(HistoryConfig(), store, ZoneInfo("UTC"))
    await history.load()
    samples = [Sample("d", "p", t0 + i * 1000, float(i)) for i in range(150)]
    samples.append(Sample("d", "p", t0 + 149_500, "text"))  # not a number: not counted
    seq, last = await store.append_samples(samples)
    history.observe(samples, seq)
    clock.advance(150)  # minutes 0 and 1 closed (written); minute 2 open: 30 samples
    await history.flush()
    assert history.stats.open_samples == 30
    await store.ack_telemetry(last)  # the uplink had them all: deleted from the buffer
    await store.close()
    store = Store(tmp_path / "b.db", clock=clock)
    await store.open()
    again = History(HistoryConfig(), store, ZoneInfo("UTC"))
    await again.load()
    await store.append_samples([Sample("d", "p", t0 + 200_000, 1.0)])
    await again.catch_up()
    assert again.stats.lost_samples == 30
    rows = await again.series("d", "p", t0, t0 + 300_000, "1m")
    assert [(r["ts"], r["count"]) for r in rows] == [(t0, 60), (t0 + MINUTE_MS, 60),
                                                     (t0 + 3 * MINUTE_MS, 1)]
    await store.close()


async def test_a_queue_overflow_reads_the_buffer_and_counts_nothing_lost(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Batches beyond the queue's limit are read back from the buffer (they are there),
    not counted as lost."""
    from gateway.siteops import history as history_mod

    monkeypatch.setattr(history_mod, "MAX_PENDING_SAMPLES", 100)
    store = Store(tmp_path / "b.db")
    await store.open()
    history = History(HistoryConfig(), store, ZoneInfo("UTC"))
    await history.load()
    t = 1_780_000_000_000 - 1_780_000_000_000 % MINUTE_MS
    samples = [Sample("d", f"p{i % 4}", t + i, float(i)) for i in range(1000)]
    for i in range(0, 1000, 50):
        batch = samples[i:i + 50]
        seq, _ = await store.append_samples(batch)
        history.observe(batch, seq)  # nobody folds meanwhile: the queue overflows
    assert history._behind
    task = asyncio.create_task(history.run())
    try:
        for _ in range(200):
            if history.stats.folded_seq == 1000 and not history._behind:
                break
            await asyncio.sleep(0.02)
        await history.flush()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert history.stats.lost_samples == 0
    want = expected_rollups(samples, lambda ts: ts - ts % MINUTE_MS)
    for (dev, point, minute), w in want.items():
        (row,) = await history.series(dev, point, minute, minute + MINUTE_MS, "1m")
        assert (row["count"], row["min"], row["max"], row["last"]) == (
            w["count"], w["min"], w["max"], w["last"])
    await store.close()


async def test_whole_polls_and_single_samples_fold_to_the_same_rollups(
        tmp_path: Path) -> None:
    """Polls folded column-wise (the same points in the same order as the device's last
    clean poll), polls that change their points mid-minute, polls with a bad sample, and
    the ``points`` filter, all against the independent computation; the energy counter in
    the poll is counted once."""
    t0 = 1_780_000_000_000 - 1_780_000_000_000 % QUARTER_MS
    clock = FakeClock(t0)
    store = Store(tmp_path / "b.db", clock=clock)
    await store.open()
    cfg = HistoryConfig(points=["d1.*", "*.p0", "*.e"],
                        energy=[EnergySource(devices=["*"], energy_point="e")])
    history = History(cfg, store, ZoneInfo("UTC"))
    await history.load()
    rng = random.Random(5)
    samples: list[Sample] = []
    energy = 0.0
    for sec in range(200):
        ts = t0 + sec * 1000
        energy += 2.0
        batch = []
        for dev in ("d0", "d1", "d2"):
            points = ["p0", "p1", "p2", "e"] if not (dev == "d1" and 70 < sec < 80) else [
                "p2", "p0", "e"]  # a changed layout for ten seconds, mid-minute
            for p in points:
                value: Any = energy if p == "e" else round(rng.gauss(50, 10), 3)
                quality = Quality.BAD if (dev == "d2" and sec % 17 == 0 and p == "p1") \
                    else Quality.GOOD
                batch.append(Sample(dev, p, ts, value, quality))
        samples += batch
        seq, _ = await store.append_samples(batch)
        history.observe(batch, seq)
        clock.advance(1)
        if sec % 7 == 0:
            await history.flush()
        if sec == 30:  # the polls of this minute so far went column-wise
            assert history._folder._layouts["d0"] == ("p0", "p1", "p2", "e")
            assert set(history._folder.buckets[t0].cols) == {"d0", "d1", "d2"}
    await history.flush(final=True)
    kept = [s for s in samples if s.device == "d1" or s.point in ("p0", "e")]
    want = expected_rollups(kept, lambda t: t - t % MINUTE_MS)
    rows = await store.query("SELECT k.device, k.point, h.ts, h.n, h.total, h.vmin, h.vmax, "
                             "h.lastv FROM history_1m h JOIN history_points k USING (sid)")
    got = {(d, p, t): (n, total, lo, hi, last) for d, p, t, n, total, lo, hi, last in rows}
    assert set(got) == set(want)
    for key, w in want.items():
        n, total, lo, hi, last = got[key]
        assert (n, lo, hi, last) == (w["count"], w["min"], w["max"], w["last"]), key
        assert total == pytest.approx(w["avg"] * w["count"])
    totals = await history.energy_total(t0, t0 + 3600_000)
    assert totals == {d: pytest.approx(2.0 * 199) for d in ("d0", "d1", "d2")}
    await store.close()


def test_polls_waiting_to_be_summed_read_at_any_moment_equal_the_raw_samples() -> None:
    """Column-wise polls wait a few at a time before they are summed (``SETTLE_POLLS``); the
    open rows, read after 1, 2, 3, ... more polls (whatever is waiting then), equal the
    independent computation: ints and floats, across a minute boundary, and a poll holding
    an int too large for a float (not a finite number: skipped, nothing raised)."""
    folder = Folder(None, lambda d, p: False)
    rng = random.Random(9)
    t0 = 1_780_000_000_000 - 1_780_000_000_000 % MINUTE_MS
    samples: list[Sample] = []
    reads = {k * (k + 1) // 2 for k in range(13)}  # gaps of 1, 2, 3, ... polls
    seq = 1
    for sec in range(80):
        ts = t0 + sec * 1000
        batch = [Sample(dev, p, ts, rng.randint(-5, 5) if p == "p1" else
                        round(rng.gauss(0, 10), 3))
                 for dev in ("a", "b") for p in ("p0", "p1", "p2")]
        if sec == 33:
            batch[4] = batch[4]._replace(value=10 ** 400)  # b.p1
        folder.fold(batch, seq)
        seq += len(batch)
        samples += [s for s in batch if s.value != 10 ** 400]
        if sec not in reads:
            continue
        want = expected_rollups(samples, lambda t: t - t % MINUTE_MS)
        got = {(dev, p, minute): (n, lo, hi, last, total)
               for dev in ("a", "b")
               for p, minute, n, total, lo, hi, last, _ in folder.open_rows(dev, None)}
        assert got.keys() == want.keys(), sec
        for key, w in want.items():
            n, lo, hi, last, total = got[key]
            assert (n, lo, hi, last) == (w["count"], w["min"], w["max"], w["last"]), (sec, key)
            assert total == pytest.approx(w["avg"] * w["count"]), (sec, key)
    assert set(folder.buckets[t0 + MINUTE_MS].cols) == {"a", "b"}  # the column path ran
    # ... from each device's first poll on: only b's poll with the huge int went sample-wise
    assert {d for d, _ in folder.buckets[t0].accs} == {"b"}

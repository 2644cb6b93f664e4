"""The history reads a PollBatch's columns (gateway.model.PollBatch, from the Modbus
driver): the rollups must be exactly those of the same samples sent as plain lists."""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

import gateway.siteops  # noqa: F401  (registers the component and its tables)
from gateway.clock import FakeClock
from gateway.model import Committed, PollBatch, Quality, Sample
from gateway.siteops.config import EnergySource, HistoryConfig
from gateway.siteops.history import MINUTE_MS, QUARTER_MS, History
from gateway.store import Store
from tests.gateway.siteops.support import expected_rollups


def poll_batch(device: str, names: tuple[str, ...], ts: int, values: list[Any],
               floats: bool = False) -> PollBatch:
    """A PollBatch as the Modbus decoder builds it (``names``: the driver's own tuple;
    ``floats``: the driver vouches that every value is a finite float)."""
    return PollBatch(device, ts, names, values, floats)


def site_polls(t0: int, layouts: dict[str, tuple[str, ...]]) -> list[list[list[Sample]]]:
    """Commits (lists of parts) of three devices polled every 10 s for 20 minutes (two
    quarters built): whole good polls as PollBatch parts, except a poll with a bad value in
    the middle (a plain list, as the driver sends it), a point map that changes mid-minute
    (d1: new names for 40 s, then its old tuple again), a poll holding an infinity or a
    bool (a PollBatch only by contract; folded sample by sample), and ints beside floats."""
    rng = random.Random(11)
    layouts.update({d: tuple(["e", "p0", "p1", "p2", "p3"]) for d in ("d0", "d1", "d2")})
    changed = ("p2", "p0", "e", "p9")
    commits: list[list[list[Sample]]] = []
    energy = 1000.0
    for k in range(20 * 6):
        ts = t0 + k * 10_000 + 137
        energy += 1.5
        parts: list[list[Sample]] = []
        for dev in ("d0", "d1", "d2"):
            names = changed if dev == "d1" and 49 <= k < 53 else layouts[dev]
            values: list[Any] = [energy if n == "e" else rng.randint(-50, 50) if n == "p1"
                                 else round(rng.gauss(20, 5), 3) for n in names]
            if dev == "d2" and k % 13 == 5:  # a bad value in the middle: a plain list
                parts.append([Sample(dev, n, ts, None, Quality.BAD) if i == 2
                              else Sample(dev, n, ts, v)
                              for i, (n, v) in enumerate(zip(names, values, strict=True))])
                continue
            if dev == "d0" and k == 25:
                values[3] = math.inf
            if dev == "d0" and k == 26:
                values[4] = True
            parts.append(poll_batch(dev, names, ts, values))
        commits.append(parts)
    return commits


async def run_site(tmp: Path, t0: int, columns: bool) -> tuple[list[Any], ...]:
    """The 1-minute, 15-minute and energy rows of :func:`site_polls` through a History."""
    clock = FakeClock(t0)
    store = Store(tmp / f"b{int(columns)}.db", clock=clock)
    await store.open()
    cfg = HistoryConfig(points=["d0.*", "*.p1", "*.e", "*.p9"],  # the points filter too
                        energy=[EnergySource(devices=["*"], energy_point="e")])
    history = History(cfg, store, ZoneInfo("UTC"))
    await history.load()
    layouts: dict[str, tuple[str, ...]] = {}
    for k, parts in enumerate(site_polls(t0, layouts)):
        flat = [s for p in parts for s in p]
        seq, _ = await store.append_samples(flat)
        history.observe(Committed.of(parts) if columns else flat, seq)
        clock.advance(10_000)
        if k % 3 == 0:  # several commits wait and are folded together in between
            await history.flush()
    await history.flush(final=True)
    # The driver's tuples became the layouts only where the columns were read.
    assert all((history._folder._layouts[d] is names) == columns
               for d, names in layouts.items())
    tables = []
    for t in ("history_1m", "history_15m"):  # by name: the ids follow the order written
        tables.append(await store.query(
            f"SELECT k.device, k.point, h.ts, h.n, h.total, h.vmin, h.vmax, h.lastv, "
            f"h.last_ts FROM {t} h JOIN history_points k USING (sid) ORDER BY 1, 2, 3"))
    tables.append(await store.query("SELECT * FROM history_energy ORDER BY 1, 2"))
    await store.close()
    return tuple(tables)


async def test_poll_batch_columns_fold_to_exactly_the_rows_of_plain_lists(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a closed minute's rows are written a device at a time (several statements)
    monkeypatch.setattr("gateway.siteops.history_fold.ROWS_CHUNK", 4)
    t0 = 1_780_000_000_000 - 1_780_000_000_000 % QUARTER_MS
    by_columns = await run_site(tmp_path, t0, True)
    by_samples = await run_site(tmp_path, t0, False)
    assert by_columns == by_samples  # every row, every figure, bit for bit
    rows_1m, rows_15m, energy = by_columns
    assert len(rows_15m) == 2 * (5 + 2 * 2) + 1 and energy  # two quarters, and d1.p9
    # ... and both are the independent computation
    samples = [s for parts in site_polls(t0, {}) for p in parts for s in p
               if (s.value is None or math.isfinite(s.value))
               and (s.device == "d0" or s.point in ("p1", "e", "p9"))]
    want = expected_rollups(samples, lambda t: t - t % MINUTE_MS)
    got = {(d, p, t): (n, lo, hi, last) for d, p, t, n, _total, lo, hi, last, _ts in rows_1m}
    assert got == {k: (w["count"], w["min"], w["max"], w["last"]) for k, w in want.items()}


def _bits(x: Any) -> tuple[str, ...]:
    """A figure as its exact double (an int's too), sign of a zero included."""
    return (float(x).hex(),)


@pytest.mark.parametrize("flagged", [False, True])
def test_poll_batch_ties_signed_zeros_and_ints_fold_bit_for_bit_as_sample_by_sample(
        flagged: bool) -> None:
    """Polls of values with many ties (0.0 and -0.0, 2 and 2.0) read after 1, 2, 3, ...
    more polls (whatever waits then): the column path's n, total, min, max and last are the
    very doubles, signed zeros included, of the sample-by-sample path. ``flagged``: floats
    only, in PollBatches marked ``floats`` (no checks; they wait packed)."""
    from gateway.siteops.history_fold import SETTLE_POLLS, Folder

    rng = random.Random(23)
    names = ("a", "b", "c", "d", "e")
    t0 = 1_780_000_000_000 - 1_780_000_000_000 % MINUTE_MS
    by_columns = Folder(None, lambda d, p: False)
    by_samples = Folder(None, lambda d, p: False)
    by_samples.columns = False
    reads = {k * (k + 1) // 2 for k in range(16)}
    choices: list[list[Any]] = [[0.0, -0.0, 0, -1.5, 1.5, 2, 2.0, 3.25, -3.25]] * 3 + [
        [0.0, -0.0], [0.0, -0.0, 0, -1.5]]  # d and e: zeros are the maximum
    if flagged:
        choices = [[float(v) for v in c] + [1e300, -7e-310] for c in choices]
    seq = 1
    packed = 0
    for sec in range(130):
        ts = t0 + sec * 1000
        for dev in ("x", "y"):
            values = [rng.choice(c) for c in choices]
            by_columns.fold_poll(poll_batch(dev, names, ts, values, flagged), seq)
            packed += sum(type(x) is bytes for b in by_columns.buckets.values()
                          for c in b.cols.values() for x in c[7])
            by_samples.fold([Sample(dev, n, ts, v) for n, v in zip(names, values, strict=True)],
                            seq)
            seq += len(names)
        if sec not in reads:
            continue
        for dev in ("x", "y"):
            got = sorted(by_columns.open_rows(dev, None))
            want = sorted(by_samples.open_rows(dev, None))
            assert [r[:3] for r in got] == [r[:3] for r in want], sec
            for g, w in zip(got, want, strict=True):
                assert [_bits(x) for x in g[3:7]] == [_bits(x) for x in w[3:7]], (sec, g, w)
    assert all(b.cols for b in by_columns.buckets.values())  # the column path ran
    assert not any(b.cols for b in by_samples.buckets.values())
    assert packed > 0 or not flagged  # floats wait packed
    assert SETTLE_POLLS < 60  # settled within the minute too, not only when read


def test_a_minutes_rows_come_in_chunks_of_whole_devices(monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    from gateway.siteops.history_fold import Folder

    monkeypatch.setattr("gateway.siteops.history_fold.ROWS_CHUNK", 6)
    folder = Folder(None, lambda d, p: False)
    t0 = 1_780_000_000_000 - 1_780_000_000_000 % MINUTE_MS
    names = ("a", "b", "c", "d")
    seq = 1
    for sec in range(3):
        for dev in ("x", "y", "z"):
            folder.fold_poll(poll_batch(dev, names, t0 + sec * 1000, [1.5, 2.5, sec, 4.0],
                                        False), seq)
            seq += 4
    [(minute, bucket)] = folder.pop_closed(t0 + MINUTE_MS)
    sids = {(d, p): 10 * k + j for k, d in enumerate("xyz") for j, p in enumerate(names)}
    chunks = list(folder.row_chunks(
        minute, bucket, lambda d, points: [sids[(d, p)] for p in points]))
    assert [len(c) for c in chunks] == [8, 4]  # two devices reach 6, then the third
    # the same rows as the plain ones, keyed (minute, point id)
    assert sorted(r for c in chunks for r in c) == sorted(
        (r[2], sids[(r[0], r[1])], *r[3:]) for r in folder.rows(minute, bucket))
    assert [(r[0], r[1], r[2]) for r in chunks[1]] == [(minute, sids[("z", p)], 3)
                                                      for p in names]

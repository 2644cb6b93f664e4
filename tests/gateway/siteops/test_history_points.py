"""The history's point ids (history_points): a point keeps its id across restarts, a new
point takes the next one, and a flush whose transaction fails gives no id that the next
flush's rows would use without its point (its rows are found by name afterwards)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

import gateway.siteops  # noqa: F401  (registers the component and its tables)
from gateway.clock import FakeClock
from gateway.model import PollBatch, Sample
from gateway.siteops.config import HistoryConfig
from gateway.siteops.history import MINUTE_MS, History
from gateway.siteops.history_points import PointIds
from gateway.store import Store

TZ = ZoneInfo("Europe/Berlin")
T0 = 1_780_000_000_000 - 1_780_000_000_000 % (15 * MINUTE_MS)


async def commit(store: Store, history: History, batch: list[Sample] | PollBatch) -> None:
    seq, _ = await store.append_samples(list(batch))
    history.observe(batch, seq)


async def by_name(store: Store) -> list[tuple[object, ...]]:
    return await store.query("SELECT k.device, k.point, h.ts, h.n, h.lastv FROM history_1m h "
                             "JOIN history_points k USING (sid) ORDER BY 1, 2, 3")


async def test_ids_survive_a_failed_flush_and_a_restart(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock(T0)
    store = Store(tmp_path / "b.db", clock=clock)
    await store.open()
    history = History(HistoryConfig(), store, TZ)
    await history.load()
    names = ("a", "b")
    for s in range(3):  # minute 0: device d, a poll every 20 s
        await commit(store, history, PollBatch("d", T0 + s * 20_000, names, [1.0 * s, 2.0], True))
    clock.advance(70)
    await history.flush()
    assert await store.query("SELECT sid, device, point FROM history_points ORDER BY 1") == [
        (1, "d", "a"), (2, "d", "b")]
    # Minute 1: a new device whose flush fails after its ids were given (and cached).
    for s in range(3):
        await commit(store, history, PollBatch("e", T0 + MINUTE_MS + s * 20_000, ("x", "y"),
                                               [5.0, 6.0 + s], True))
    real = PointIds.write

    async def broken(tx: object, added: object) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(PointIds, "write", staticmethod(broken))
    clock.advance(60)
    with pytest.raises(sqlite3.OperationalError):
        await history.flush()
    monkeypatch.setattr(PointIds, "write", staticmethod(real))
    # Another new device comes first in the next flush: the ids are given again, in order.
    await commit(store, history, [Sample("c", "z", T0 + MINUTE_MS + 5_000, 9.0)])
    await history.flush()
    points = await store.query("SELECT sid, device, point FROM history_points ORDER BY 1")
    assert sorted(p[1:] for p in points) == [("c", "z"), ("d", "a"), ("d", "b"), ("e", "x"),
                                             ("e", "y")]
    assert [p[0] for p in points] == [1, 2, 3, 4, 5]
    assert await by_name(store) == [
        ("c", "z", T0 + MINUTE_MS, 1, 9.0), ("d", "a", T0, 3, 2.0), ("d", "b", T0, 3, 2.0),
        ("e", "x", T0 + MINUTE_MS, 3, 5.0), ("e", "y", T0 + MINUTE_MS, 3, 8.0)]
    (orphans,) = await store.query_one(
        "SELECT COUNT(*) FROM history_1m WHERE sid NOT IN (SELECT sid FROM history_points)"
    ) or (None,)
    assert orphans == 0
    await store.close()
    # A restart: the ids are read back; a new point takes the next one; queries find the
    # old rows by name.
    store = Store(tmp_path / "b.db", clock=clock)
    await store.open()
    history = History(HistoryConfig(), store, TZ)
    await history.load()
    await commit(store, history, [Sample("d", "new", T0 + 2 * MINUTE_MS + 1_000, 7.0)])
    clock.advance(60)
    await history.flush()
    assert await store.query_one(
        "SELECT sid FROM history_points WHERE device = 'd' AND point = 'new'") == (6,)
    got = await history.series("e", "y", T0, T0 + 3 * MINUTE_MS, "1m")
    assert [(r["ts"], r["min"], r["max"], r["last"], r["count"]) for r in got] == [
        (T0 + MINUTE_MS, 6.0, 8.0, 8.0, 3)]
    assert set(await history.last_values("d", now_ms=clock.now_ms())) == {"a", "b", "new"}
    await store.close()

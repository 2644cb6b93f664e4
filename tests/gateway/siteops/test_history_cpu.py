"""The history's own CPU meter (FIELDGATE_HISTORY_CPU): off by default and then counts
nothing; on, it counts the fold and the flush in the loop's thread and the history's SQL in
the store's thread, each within what those threads really spent."""

from __future__ import annotations

import time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

import gateway.siteops  # noqa: F401  (registers the component and its tables)
from gateway.clock import FakeClock
from gateway.model import Sample
from gateway.siteops.config import HistoryConfig
from gateway.siteops.history import QUARTER_MS, History
from gateway.siteops.history_cpu import ENV, HistoryCpuMeter, store_thread
from gateway.store import Store


async def polls(store: Store, history: History, clock: FakeClock, t0: int,
                seconds: int) -> None:
    """5 devices x 30 points polled every 2 s, one commit per round, the clock following."""
    for s in range(0, seconds, 2):
        ts = t0 + s * 1000
        batch = [Sample(f"d{d}", f"p{p}", ts, float(p * s % 17))
                 for d in range(5) for p in range(30)]
        seq, _ = await store.append_samples(batch)
        history.observe(batch, seq)
        clock.advance((ts - clock.now_ms()) / 1000)
        if s % 10 == 8:
            await history.flush()


async def opened(tmp_path: Path) -> tuple[Store, History, FakeClock, int]:
    """A store and its history, loaded, with the clock at the start of a quarter hour."""
    t0 = 1_780_000_000_000 - 1_780_000_000_000 % QUARTER_MS
    clock = FakeClock(t0)
    store = Store(tmp_path / "b.db", clock=clock)
    await store.open()
    history = History(HistoryConfig(), store, ZoneInfo("UTC"))
    await history.load()
    return store, history, clock, t0


async def test_the_meter_is_off_by_default_and_counts_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV, raising=False)
    store, history, clock, t0 = await opened(tmp_path)
    await polls(store, history, clock, t0, 20)
    cpu = history.snapshot()["cpu"]
    assert cpu == {"on": False, "reason": f"off: start the daemon with {ENV}=1 to measure"}
    assert sum(history.cpu.seconds.values()) == 0
    await store.close()


async def test_the_meter_counts_each_part_in_its_own_thread(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, "1")
    store, history, clock, t0 = await opened(tmp_path)
    thread = store_thread(store)
    assert thread is not None and thread.ident is not None
    store_clock = time.pthread_getcpuclockid(thread.ident)
    loop0, store0 = time.thread_time(), time.clock_gettime(store_clock)
    await polls(store, history, clock, t0, 130)  # two minutes close, written
    loop_spent = time.thread_time() - loop0
    store_spent = time.clock_gettime(store_clock) - store0
    snap = history.snapshot()["cpu"]
    assert snap["on"] is True
    secs = history.cpu.seconds
    assert all(secs[k] > 0 for k in ("observe", "fold", "flush", "sql")), secs
    # Each part is counted on its own thread's clock, within what that thread spent; the
    # SQL (store thread) is not part of the loop's, and the appends' SQL is not history's.
    assert secs["observe"] + secs["fold"] + secs["flush"] < loop_spent
    assert secs["sql"] < store_spent
    assert snap["total_s"] == pytest.approx(sum(secs.values()), abs=1e-5)
    await store.close()


def test_a_meter_without_a_store_thread_counts_no_sql() -> None:
    meter = HistoryCpuMeter(on=True)
    s0 = meter.sql_start(None)
    meter.sql_stop(s0)
    assert meter.seconds["sql"] == 0

"""The store under faults (issue 13, items 1-5): a lost WAL never rewinds the sequence, a full
disk uses no numbers and loses nothing silently, drop counts are exact, the file is bounded."""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from gateway import events as catalogue
from gateway.clock import SystemClock
from gateway.model import Event, Sample
from gateway.pipeline import Pipeline
from gateway.store import Store, drops, read_stats
from gateway.store.db import OVERFLOW_EVENT, SEQ_GAP_EVENT
from gateway.store.held import CommitFailed
from gateway.store.seqmark import BLOCK, read_mark

FILE_SLACK = 2 * 1_048_576  # the README's documented constant (WAL limit + one commit)


def batch(n: int, ts: int = 1_000, noisy: bool = False) -> list[Sample]:
    if noisy:  # incompressible values, so a byte cap fills quickly
        return [Sample("m", f"p{i}", ts + i, int.from_bytes(os.urandom(6))) for i in range(n)]
    return [Sample("m", f"p{i}", ts + i, float(i)) for i in range(n)]


async def events_of(store: Store, kind: str) -> list[dict[str, Any]]:
    await store.register_consumer("t")
    return [dict(e.event.body) for e in await store.read_events("t", 10_000)
            if e.event.type == kind]


def snapshot_without_wal(src: Path, dst: Path) -> None:
    """What is left after a power cut that loses the whole WAL: the main file as of the last
    checkpoint, and the sequence mark (fsync'ed before any number was used)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(src, dst)
    shutil.copy(f"{src}.seq", f"{dst}.seq")


async def test_lost_wal_never_reuses_a_number_and_announces_the_gap(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b.db"
    store = Store(path)
    await store.open()
    await store.append_samples(batch(10))
    await store.close()  # checkpointed: 1..10 are in the main file
    store = Store(path)
    await store.open()
    store_id = store.store_id
    assert await store.append_samples(batch(50)) == (11, 60)  # only in the WAL
    snapshot_without_wal(path, tmp_path / "c" / "b.db")
    await store.close()

    lost = Store(tmp_path / "c" / "b.db")
    await lost.open()
    assert lost.store_id == store_id, "the same store: the same stream"
    first, _ = await lost.append_samples(batch(5))
    # 11..60 may have been published before the cut: never used again
    assert first == 61 + BLOCK, "continues at the durable mark"
    [gap] = await events_of(lost, SEQ_GAP_EVENT)
    assert catalogue.problems(SEQ_GAP_EVENT, gap) == []
    assert gap == {"store_id": store_id, "seq_first": 11, "seq_last": first - 1,
                   "reason": "unclean_stop"}
    await lost.close()


async def test_clean_restart_skips_nothing(tmp_path: Path) -> None:
    store = Store(tmp_path / "b.db")
    await store.open()
    await store.append_samples(batch(10))
    await store.close()
    assert read_mark(tmp_path / "b.db") is not None and read_mark(tmp_path / "b.db").clean
    store = Store(tmp_path / "b.db")
    await store.open()
    assert await store.append_samples(batch(3)) == (11, 13)
    assert await events_of(store, SEQ_GAP_EVENT) == []
    await store.close()


async def test_store_lost_before_its_first_checkpoint_is_a_new_stream(tmp_path: Path) -> None:
    """The WAL deleted while the main file never had a checkpoint: the gateway used to start
    over at seq 1 under the same name, silently. Now it is a new store_id, and the old
    stream's unacknowledged range is announced as lost."""
    path = tmp_path / "a" / "b.db"
    store = Store(path)
    await store.open()
    old_id = store.store_id
    await store.append_samples(batch(100))
    await store.ack_telemetry(40)
    await store.append_samples(batch(BLOCK + 1))  # a second reservation records acked = 40
    path_copy = tmp_path / "c" / "b.db"
    path_copy.parent.mkdir()
    path_copy.write_bytes(b"")  # the main file as it was: never checkpointed
    shutil.copy(f"{path}.seq", f"{path_copy}.seq")
    await store.close()
    new = Store(path_copy)
    await new.open()
    assert new.store_id != old_id
    [gap] = await events_of(new, SEQ_GAP_EVENT)
    assert gap["store_id"] == old_id and gap["reason"] == "store_replaced"
    assert (gap["seq_first"], gap["seq_last"]) == (41, 101 + 2 * BLOCK)
    await new.close()


async def test_missing_mark_of_a_marked_store_starts_a_new_stream(tmp_path: Path) -> None:
    store = Store(tmp_path / "b.db")
    await store.open()
    old_id = store.store_id
    await store.append_samples(batch(5))
    await store.ack_telemetry(3)
    await store.close()
    os.unlink(f"{tmp_path / 'b.db'}.seq")
    store = Store(tmp_path / "b.db")
    await store.open()
    assert store.store_id != old_id
    old_end, new_start = await events_of(store, SEQ_GAP_EVENT)
    assert old_end == {"store_id": old_id, "seq_first": 6, "seq_last": None,
                       "reason": "seq_mark_lost"}
    # rows 4 and 5 go out under the new store_id with their numbers: 1..3 are never used
    assert new_start == {"store_id": store.store_id, "seq_first": 1, "seq_last": 3,
                         "reason": "seq_mark_lost"}
    await store.close()


async def test_full_disk_holds_the_batch_uses_no_numbers_and_reports(tmp_path: Path) -> None:
    store = Store(tmp_path / "b.db")
    await store.open()
    await store.register_consumer("t")
    pipeline = Pipeline(store, SystemClock(), max_held_samples=2500)
    await pipeline.put(batch(10))
    await pipeline.commit_once()
    (pages,) = await store.query_one("PRAGMA page_count") or (0,)
    await store.conn.execute(f"PRAGMA max_page_count={pages}")  # the disk is full now
    sent = 0
    for i in range(6):
        await pipeline.put(batch(1000, ts=10_000 * (i + 1), noisy=True))
        sent += 1000
        with pytest.raises(CommitFailed, match="full"):
            await pipeline.commit_once()
    stats = await store.stats()
    assert stats.next_seq == 11, "a failed commit uses no sequence number"
    assert stats.write_error is not None and stats.write_error.startswith("disk full")
    held = len(pipeline._held.samples)
    assert held == 2500 and pipeline._held.dropped == sent - 2500, "bounded, counted exactly"
    await store.conn.execute("PRAGMA max_page_count=1073741823")  # space again
    await pipeline.commit_once()
    await pipeline.commit_once()  # the disk_full_cleared event
    stats = await store.stats()
    assert stats.next_seq == 11 + 2500 and stats.write_error is None
    events = [e.event for e in await store.read_events("t", 100)]
    kinds = [e.type for e in events]
    assert kinds == ["disk_full", "disk_full_cleared"]
    assert all(catalogue.problems(e.type, e.body) == [] for e in events)
    cleared = events[1].body
    assert cleared["dropped_samples"] == sent - 2500 and cleared["failed_commits"] == 6
    assert cleared["dropped_ts_first"] == 10_000
    await store.close()


async def test_drop_counts_are_exact_and_flushed_when_dropping_stops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(tmp_path / "b.db", max_bytes=1_200_000)
    await store.open()
    await store.register_consumer("t")
    total = 0
    await store.append_samples(batch(100, noisy=True))
    store.note_sent(100)  # in flight: may have been delivered, so never dropped
    total += 100
    while (await store.stats()).dropped_total < 5_000:
        await store.append_samples(batch(1000, ts=total, noisy=True))
        total += 1000
    await store.ack_telemetry(50)  # half of the in-flight chunk acknowledged
    tail = await store.read_telemetry(await store.acked_seq(), 10)
    stats = await store.stats()
    kept = stats.samples
    assert tail[0].seq_first == 51, "the chunk in flight was not dropped"
    assert stats.dropped_total + kept + 50 == total, "every sample is delivered, kept or dropped"
    # dropping stops: an append that drops nothing, QUIET_MS after the last drop, reports
    # the rest
    await store.ack_telemetry(stats.next_seq - 1)
    await store.append_samples(batch(1))
    assert sum(e["dropped"] for e in await events_of(store, OVERFLOW_EVENT)) < \
        stats.dropped_total, "still within the quiet period"
    monkeypatch.setattr(drops, "QUIET_MS", 0)
    await store.append_samples(batch(1))
    overflow = await events_of(store, OVERFLOW_EVENT)
    assert sum(e["dropped"] for e in overflow) == stats.dropped_total
    assert all(catalogue.problems(OVERFLOW_EVENT, e) == [] for e in overflow)
    assert overflow[0]["seq_first"] == 101
    assert overflow[-1]["seq_last"] < stats.next_seq
    await store.close()


async def test_drops_are_reported_at_close(tmp_path: Path) -> None:
    store = Store(tmp_path / "b.db", max_bytes=1_100_000)
    await store.open()
    await store.register_consumer("t")
    total = 0
    while (await store.stats()).dropped_total == 0:
        await store.append_samples(batch(1000, ts=total, noisy=True))
        total += 1000
    for _ in range(3):  # still dropping: within the minute, no new event
        await store.append_samples(batch(1000, ts=total, noisy=True))
        total += 1000
    await store.close()
    store = Store(tmp_path / "b.db", max_bytes=1_100_000)
    await store.open()
    overflow = await events_of(store, OVERFLOW_EVENT)
    assert len(overflow) == 2, "the first drop at once, the rest at close"
    assert sum(e["dropped"] for e in overflow) == read_stats(tmp_path / "b.db").dropped_total
    await store.close()


async def test_file_and_wal_stay_within_the_documented_bound(tmp_path: Path) -> None:
    max_bytes = 2_000_000
    path = tmp_path / "b.db"
    store = Store(path, max_bytes=max_bytes)
    await store.open()
    biggest = 0
    for i in range(400):  # ~12 MB of incompressible payload through a 2 MB cap
        await store.append_samples(batch(2000, ts=i * 10_000, noisy=True))
        if i % 7 == 0:
            await store.add_events([Event("x", {"pad": "y" * 2000})])
        size = sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())
        biggest = max(biggest, size)
    stats = await store.stats()
    assert stats.dropped_total > 0
    await store.close()
    assert biggest <= max_bytes * 1.1 + FILE_SLACK, biggest
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

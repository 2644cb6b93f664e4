"""A commit that fails (a full disk) and is retried applies the rules and the status tracker
once: their writes are kept with the held batch and run again as they were, the processors
do not see the same samples twice, and no transition is lost or counted twice."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from gateway import events as catalogue
from gateway.model import DeviceStatus, Event, Sample
from gateway.pipeline import Pipeline
from gateway.store.held import CommitFailed
from tests.gateway.rules.harness import Harness, devices

RULES = {"alarms": [{"name": "hi", "devices": ["m1"], "point": "v", "severity": "critical",
                     "condition": {"op": ">", "value": 10}}]}


def filler(n: int, ts: int) -> list[Sample]:
    """Incompressible samples, so the store needs new pages for them."""
    return [Sample("m3", f"p{i}", ts + i, int.from_bytes(os.urandom(6))) for i in range(n)]


async def test_a_failed_commit_does_not_apply_rules_or_status_twice(tmp_path: Path) -> None:
    h = await Harness(tmp_path / "b.db", RULES, devices("m1", "m2", "m3")).start()
    store = h.store
    assert store is not None
    try:
        pipeline = Pipeline(store, h.clock, h.tracker)
        pipeline.add_processor(h.engine)
        pipeline.report_status("m1", DeviceStatus.ONLINE)
        pipeline.report_status("m2", DeviceStatus.ONLINE)
        await pipeline.put([Sample("m1", "v", h.clock.now_ms(), 1.0)])
        await pipeline.commit_once()
        (pages,) = await store.query_one("PRAGMA page_count") or (0,)
        await store.conn.execute(f"PRAGMA max_page_count={pages}")  # the disk is full now

        h.clock.advance(1)
        await pipeline.put([Sample("m1", "v", h.clock.now_ms(), 11.0), *filler(2000, 10_000)])
        pipeline.report_status("m2", DeviceStatus.OFFLINE)
        await pipeline.add_event(Event("acme_note", {"n": 1}, "m3"))
        for i in range(3):
            with pytest.raises(CommitFailed, match="full"):
                await pipeline.commit_once()
            h.clock.advance(1)  # more data while the disk is full: still above the threshold
            await pipeline.put([Sample("m1", "v", h.clock.now_ms(), 12.0 + i)])
        assert h.engine.book.stats.created == 1, "the rules saw the samples once"

        await store.conn.execute("PRAGMA max_page_count=1073741823")  # space again
        await pipeline.commit_once()
        await pipeline.commit_once()  # the disk_full_cleared event

        events = [e.event for e in await store.read_events("test", 1000)]
        kinds = [e.type for e in events]
        assert kinds.count("alarm_created") == 1
        [created] = [e for e in events if e.type == "alarm_created"]
        assert created.body["count"] == 1 and created.body["value"] == 11.0
        changes = [(e.device, e.body["old_status"], e.body["new_status"])
                   for e in events if e.type == "device_status_changed"]
        assert changes == [("m1", None, "online"), ("m2", None, "online"),
                           ("m2", "online", "offline"), ("m1", "online", "alarm")]
        assert kinds.count("acme_note") == 1 and kinds.count("disk_full_cleared") == 1
        assert all(catalogue.problems(e.type, e.body) == [] for e in events)
        assert await store.query("SELECT device, status FROM device_status ORDER BY device") == [
            ("m1", "alarm"), ("m2", "offline")]
        assert await store.query("SELECT count FROM rules_alarms") == [(1,)]
        assert (await store.stats()).next_seq == 2 + 2001 + 3, "every sample committed once"
    finally:
        await h.stop()


async def test_a_transaction_that_cannot_begin_keeps_its_samples_unprocessed(
    tmp_path: Path,
) -> None:
    """BEGIN fails (another writer holds the lock): nothing saw the samples yet, so the
    retry processes them, once; the recovery is announced as ``store_write_recovered``."""
    h = await Harness(tmp_path / "b.db", RULES, devices("m1", "m2")).start()
    store = h.store
    assert store is not None
    other = sqlite3.connect(tmp_path / "b.db")
    try:
        pipeline = Pipeline(store, h.clock, h.tracker)
        pipeline.add_processor(h.engine)
        await store.conn.execute("PRAGMA busy_timeout=0")
        other.execute("BEGIN IMMEDIATE")  # another writer holds the lock
        await pipeline.put([Sample("m1", "v", h.clock.now_ms(), 11.0)])
        pipeline.report_status("m2", DeviceStatus.ONLINE)
        with pytest.raises(CommitFailed, match="locked"):
            await pipeline.commit_once()
        assert h.engine.book.stats.created == 0, "no processor saw the samples"
        assert h.tracker.current("m2") is None
        other.rollback()
        await pipeline.commit_once()
        await pipeline.commit_once()  # the recovery event
        events = [e.event for e in await store.read_events("test", 100)]
        kinds = [e.type for e in events]
        assert kinds.count("alarm_created") == 1 and h.engine.book.stats.created == 1
        assert [(e.device, e.body["new_status"]) for e in events
                if e.type == "device_status_changed"] == [("m2", "online"), ("m1", "alarm")]
        [recovered] = [e for e in events if e.type == "store_write_recovered"]
        assert recovered.body["failed_commits"] == 1
        assert catalogue.problems(recovered.type, recovered.body) == []
        assert "disk_full" not in kinds
        assert (await store.stats()).next_seq == 2
    finally:
        other.close()
        await h.stop()

"""The SQLite store: sequence, bounded buffer, outbox cursors, migrations."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.clock import SystemClock
from gateway.components import ComponentSpec, register_component, unregister_component
from gateway.model import Event, Sample
from gateway.pipeline import Pipeline
from gateway.store import Store, read_stats
from gateway.store.db import OVERFLOW_EVENT
from gateway.store.errors import StoreError
from tests.support.wait import let_tasks_run, stays


def batch(n: int, ts: int = 1_000, noisy: bool = False) -> list[Sample]:
    if noisy:  # incompressible values, so a byte cap fills quickly
        return [Sample("m", f"p{i}", ts + i, int.from_bytes(os.urandom(6))) for i in range(n)]
    return [Sample("m", f"p{i}", ts + i, float(i)) for i in range(n)]


async def test_sequence_is_contiguous_and_survives_reopen(tmp_path: Path) -> None:
    store = Store(tmp_path / "b.db")
    await store.open()
    assert await store.append_samples(batch(10)) == (1, 10)
    assert await store.append_samples(batch(5)) == (11, 15)
    await store.ack_telemetry(15)  # everything forwarded and deleted
    await store.close()
    store = Store(tmp_path / "b.db")
    await store.open()
    assert store.boot_count == 2
    assert await store.append_samples(batch(3)) == (16, 18), "seq must never restart"
    chunks = await store.read_telemetry(after_seq=15, max_samples=100)
    assert [(c.seq_first, c.seq_last) for c in chunks] == [(16, 18)]
    assert chunks[0].rows[0] == ["m", "p0", 1000, 0.0, "good"]
    await store.close()


async def test_read_telemetry_trims_partially_acked_chunk(tmp_path: Path) -> None:
    store = Store(tmp_path / "b.db")
    await store.open()
    await store.append_samples(batch(10))
    await store.append_samples(batch(10))
    await store.ack_telemetry(4)
    assert await store.acked_seq() == 4
    chunks = await store.read_telemetry(after_seq=4, max_samples=3)
    assert (chunks[0].seq_first, chunks[0].seq_last, len(chunks[0].rows)) == (5, 10, 6)
    assert chunks[0].rows[0][1] == "p4"
    stats = await store.stats()
    assert (stats.samples, stats.chunks) == (16, 2)
    await store.close()


async def test_full_buffer_drops_oldest_counts_and_records_event(tmp_path: Path) -> None:
    store = Store(tmp_path / "b.db", max_bytes=20_000)
    await store.open()
    await store.register_consumer("uplink")
    for i in range(40):
        await store.append_samples(batch(100, ts=i * 1000, noisy=True))
    stats = await store.stats()
    assert stats.payload_bytes <= 20_000
    assert stats.dropped_total > 0
    assert stats.dropped_total + stats.samples == 4000, "every sample is kept or counted"
    chunks = await store.read_telemetry(await store.acked_seq(), 10_000)
    assert chunks[0].seq_first == stats.dropped_total + 1, "the oldest went first"
    assert chunks[-1].seq_last == 4000, "the newest is kept"
    events = await store.read_events("uplink")
    overflow = [e.event for e in events if e.event.type == OVERFLOW_EVENT]
    assert len(overflow) == 1, "one event per minute, not one per append"
    assert overflow[0].body["dropped"] > 0
    await store.close()


async def test_events_are_idempotent_and_pruned_after_every_consumer(tmp_path: Path) -> None:
    store = Store(tmp_path / "b.db")
    await store.open()
    await store.register_consumer("uplink")
    await store.register_consumer("hooks")
    ev = Event("alarm_created", {"x": 1}, device="m", id="fixed-id")
    assert await store.add_events([ev]) == 1
    assert await store.add_events([ev]) == 0, "the same id is stored once"
    await store.add_events([Event("other", {})])
    got = await store.read_events("uplink")
    assert next(e.event.id for e in got) == "fixed-id"
    assert got[0].event.body == {"x": 1}
    await store.ack_events("uplink", got[-1].rowid)
    assert await store.read_events("uplink") == []
    assert len(await store.read_events("hooks")) == 2, "hooks has not acked yet"
    await store.ack_events("hooks", got[-1].rowid)
    assert (await store.stats()).events_pending == 0
    await store.close()


async def test_component_migrations_run_once(tmp_path: Path) -> None:
    v1 = "CREATE TABLE testcomp_a (x INTEGER);"
    try:
        register_component(ComponentSpec("testcomp", lambda ctx: None, migrations=[v1]))
        store = Store(tmp_path / "b.db")
        await store.open()
        await store.close()
        register_component(ComponentSpec(
            "testcomp", lambda ctx: None,
            migrations=[v1, "ALTER TABLE testcomp_a ADD COLUMN y TEXT;"]))
        store = Store(tmp_path / "b.db")
        await store.open()  # v1 does not run again (the table exists: it would fail)
        assert await store.query_one(
            "SELECT version FROM schema_version WHERE component = ?", ("testcomp",)) == (2,)
        await store.query("SELECT x, y FROM testcomp_a")
        await store.close()
    finally:
        unregister_component("testcomp")


def test_a_bare_store_has_every_builtin_table(tmp_path: Path) -> None:
    """The schema comes from the component specs, not from which modules were imported:
    in a fresh interpreter that imports only the store, every built-in table exists."""
    code = (
        "import asyncio, sys\n"
        "from pathlib import Path\n"
        "from gateway.store import Store\n"
        "async def main():\n"
        "    store = Store(Path(sys.argv[1]))\n"
        "    await store.open()\n"
        "    rows = await store.query(\"SELECT name FROM sqlite_master WHERE type='table'\")\n"
        "    print(' '.join(sorted(r[0] for r in rows)))\n"
        "    await store.close()\n"
        "asyncio.run(main())\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "b.db")],
                         capture_output=True, text=True, check=True).stdout.split()
    for table in ("telemetry", "events", "device_status", "device_flags", "rules_alarms",
                  "rules_quotas", "siteops_work_orders", "hooks_recent_events", "channel_queue",
                  "uplink_messages", "siteops_kpis_sent"):
        assert table in out


async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    store = Store(tmp_path / "b.db")
    await store.open()
    await store.close()
    with sqlite3.connect(tmp_path / "b.db") as conn:
        conn.execute("UPDATE schema_version SET version = 99 WHERE component = 'core'")
    with pytest.raises(StoreError, match="newer than this fieldgate") as err:
        await Store(tmp_path / "b.db").open()
    assert err.value.exit_code == 65


async def test_kv_persists(tmp_path: Path) -> None:
    store = Store(tmp_path / "b.db")
    await store.open()
    kv = store.kv("ocpp")
    await kv.put("tx-1", {"meter_start": 10})
    await kv.put("counter", 7)
    await store.close()
    store = Store(tmp_path / "b.db")
    await store.open()
    assert await store.kv("ocpp").items() == [("counter", 7), ("tx-1", {"meter_start": 10})]
    assert await store.kv("other").get("counter") is None
    await store.close()


async def test_stats_readable_from_another_connection(tmp_path: Path) -> None:
    store = Store(tmp_path / "b.db")
    await store.open()
    await store.append_samples(batch(25))
    stats = read_stats(tmp_path / "b.db")  # what `fieldgate buffer stats` does
    assert (stats.samples, stats.next_seq, stats.oldest_ts_ms) == (25, 26, 1000)
    await store.close()


async def test_pipeline_backpressure_bounds_memory(tmp_path: Path) -> None:
    store = Store(tmp_path / "b.db")
    await store.open()
    pipeline = Pipeline(store, SystemClock(), queue_batches=2)
    await pipeline.put(batch(5))
    await pipeline.put(batch(5))
    blocked = asyncio.create_task(pipeline.put(batch(5)))
    await stays(lambda: not blocked.done(), 0.2, what="a full queue makes the driver wait")
    assert await pipeline.commit_once() == 10
    await asyncio.wait_for(blocked, 1)
    assert await pipeline.commit_once() == 5
    assert (await store.stats()).samples == 15
    await store.close()


async def test_each_consumer_is_woken_for_new_events(tmp_path: Path) -> None:
    store = Store(tmp_path / "b.db")
    await store.open()
    for name in ("a", "b"):
        await store.register_consumer(name)
        await store.wait_events(name, 0.01)  # consume the initial wake-up
    waits = [asyncio.create_task(store.wait_events(n, 5)) for n in ("a", "b")]
    await let_tasks_run()  # both are waiting now
    await store.add_events([Event("x", {})])
    await asyncio.wait_for(asyncio.gather(*waits), 1)  # both, not just the first to clear
    # an event added while nobody waits is not missed by the next wait
    await store.add_events([Event("y", {})])
    await asyncio.wait_for(store.wait_events("a", 5), 0.5)
    await store.close()


async def test_retired_consumer_no_longer_holds_events(tmp_path: Path) -> None:
    store = Store(tmp_path / "b.db")
    await store.open()
    await store.register_consumer("uplink")
    await store.register_consumer("old-channel")
    await store.add_events([Event("x", {})])
    got = await store.read_events("uplink")
    await store.ack_events("uplink", got[-1].rowid)
    assert (await store.stats()).events_pending == 1, "old-channel still holds it"
    await store.retire_consumers({"uplink"})
    assert (await store.stats()).events_pending == 0
    await store.close()


async def test_an_idle_consumer_is_answered_without_a_query(tmp_path: Path) -> None:
    """A consumer that found nothing is not sent to the database again until an event is
    committed; a consumer retired and registered again reads from its new cursor."""
    store = Store(tmp_path / "b.db")
    await store.open()
    await store.register_consumer("a")
    await store.register_consumer("b")
    queries: list[str] = []
    query = store.query

    async def counted(sql: str, *args: object) -> object:
        queries.append(sql)
        return await query(sql, *args)

    store.query = counted  # type: ignore[method-assign]
    try:
        assert await store.read_events("a") == []
        assert len(queries) == 1
        for _ in range(3):
            assert await store.read_events("a") == []
        assert len(queries) == 1, "nothing was committed: no query"
        await store.add_events([Event("x", {}, id="e1")])
        got = await store.read_events("a")
        assert [e.event.id for e in got] == ["e1"]
        assert [e.event.id for e in await store.read_events("a")] == ["e1"], "not acked: again"
        await store.ack_events("a", got[-1].rowid)
        assert await store.read_events("a") == []
        n = len(queries)
        assert await store.read_events("a") == []
        assert len(queries) == n
        assert [e.event.id for e in await store.read_events("b")] == ["e1"], "b's own cursor"
        # retired, then back: its cursor starts again at 0 and the event b holds is read again
        await store.retire_consumers({"b"})
        await store.register_consumer("a")
        assert [e.event.id for e in await store.read_events("a")] == ["e1"]
    finally:  # a failed assertion must not leave the database thread running
        await store.close()

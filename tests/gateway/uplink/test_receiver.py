"""Issue 13's receiver test: a reference receiver written from docs/wire-format.md alone,
deduplicating per (gw, store_id) by seq, gets every sample exactly once across kill -9, a
truncated WAL, a deleted WAL, a quarantined chunk and a full disk, against a real mosquitto;
every real loss is announced by an event with its range, and no number is reused."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.store.db import read_stats
from tests.gateway.uplink.helpers import BASE, GW, site
from tests.gateway.uplink.test_crash import born, kill, spawn
from tests.gateway.uplink.wirecheck import WireRecorder
from tests.support.app import running_app, write_config
from tests.support.mosquitto import Mosquitto
from tests.support.receiver import ReferenceReceiver


class RefRecorder(WireRecorder):
    """The schema-checking recorder, feeding the reference receiver."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ref = ReferenceReceiver()

    def on_message(self, topic: str, payload: bytes, retain: bool = False,
                   dup: bool = False) -> None:
        super().on_message(topic, payload, retain, dup)
        kind = topic.rsplit("/", 1)[-1]
        if kind == "telemetry":
            self.ref.telemetry(json.loads(payload))
        elif kind == "events":
            self.ref.event(json.loads(payload))

    def count(self) -> int:
        return sum(len(rows) for rows in self.ref.samples.values())

    async def until(self, what: str, cond: Callable[[], bool], timeout: float = 90) -> None:
        await self.wait_for(lambda _g: cond(), timeout, what)


async def poll(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.05)


def truncate_wal(wal: Path) -> None:
    """What a power cut does to a WAL not yet synced: its end is gone."""
    assert wal.stat().st_size > 100_000
    os.truncate(wal, wal.stat().st_size // 3)


def delete_wal(store: Path) -> None:
    Path(f"{store}-wal").unlink()
    Path(f"{store}-shm").unlink(missing_ok=True)


def backlog(store: Path) -> int:
    try:
        return read_stats(store).samples
    except (sqlite3.Error, FileNotFoundError):
        return 0


@pytest.mark.timeout(900)
async def test_reference_receiver_gets_every_sample_once(mosquitto: Mosquitto,
                                                         tmp_path: Path) -> None:
    cfg = site(mosquitto, devices=2, interval=0.02, extra_points=20, max_samples=200, window=8)
    config = write_config(tmp_path, cfg)
    store = tmp_path / "state" / "buffer.sqlite3"
    wal = Path(f"{store}-wal")
    boot = 0
    async with RefRecorder(mosquitto.host, mosquitto.port, BASE) as rec:

        async def run_and_kill(with_backlog: int = 0) -> None:
            """Start, forward a while, (pause the broker and build a backlog), kill -9."""
            nonlocal boot
            boot += 1
            proc = spawn(config)
            try:
                await rec.wait_for(born(boot), 90, f"birth of boot {boot}")
                start = rec.count()
                await rec.until("forwarding", lambda: rec.count() > start + 1_000)
                if with_backlog:
                    mosquitto.pause()
                    await poll(lambda: backlog(store) > with_backlog, 90, "a backlog")
            finally:
                kill(proc)
                mosquitto.resume()

        # 1. kill -9 while forwarding
        await run_and_kill()
        # 2. a power cut that loses the end of the WAL, with a backlog never sent
        await run_and_kill(with_backlog=3_000)
        truncate_wal(wal)
        # 3. the WAL deleted
        await run_and_kill(with_backlog=3_000)
        delete_wal(store)
        # 4. a chunk that cannot be decoded, in the middle of a backlog
        await run_and_kill(with_backlog=3_000)
        with sqlite3.connect(store) as conn:
            acked = conn.execute("SELECT value FROM meta WHERE key='acked_seq'").fetchone()[0]
            bad = conn.execute("SELECT seq_first, seq_last FROM telemetry WHERE seq_first > ? "
                               "ORDER BY seq_first LIMIT 1 OFFSET 2", (acked,)).fetchone()
            conn.execute("UPDATE telemetry SET payload = ? WHERE seq_first = ?",
                         (zlib.compress(b"[[garbage")[:-3] + b"xyz", bad[0]))
        # 5. a full disk (SQLite max_page_count), in-process to reach the connection
        async with running_app(cfg, tmp_path, timeout=90) as app:
            boot += 1
            await rec.until("the quarantined chunk", lambda: bool(
                rec.ref.of_type("chunk_quarantined")))
            start = rec.count()
            await rec.until("forwarding", lambda: rec.count() > start + 1_000)
            mosquitto.pause()  # nothing acknowledged, so no page is freed meanwhile
            conn = app.store.conn
            free = (await app.store.query_one("PRAGMA freelist_count"))[0]  # type: ignore[index]
            async with app.store.transaction() as tx:  # use up the free pages, then cap
                await tx.execute("INSERT OR REPLACE INTO kv VALUES ('test', 'filler', ?)",
                                 (b"\0" * (free * 4096),))
            pages = (await app.store.query_one("PRAGMA page_count"))[0]  # type: ignore[index]
            await conn.execute(f"PRAGMA max_page_count={pages}")
            await poll(lambda: app.store.write_error is not None, 30, "disk full")
            held = app.pipeline._held
            await poll(lambda: len(held.samples) > 2_000, 30, "samples held in memory")
            assert app.pipeline.stats.samples > 0
            await conn.execute("PRAGMA max_page_count=1073741823")  # space again
            mosquitto.resume()
            await poll(lambda: app.store.write_error is None, 30, "disk full cleared")
            await rec.until("disk_full_cleared", lambda: bool(
                rec.ref.of_type("disk_full_cleared")))
            # no more samples: let the uplink drain the buffer
            await app.supervisor.cancel(app._driver_tasks, timeout=5)
            await app.pipeline.drain()
            stats = await app.store.stats()
            final = (GW, app.store.store_id)
            await rec.until("everything forwarded",
                            lambda: rec.ref.high[final] >= stats.next_seq - 1, 60)
    ref = rec.ref
    rec.assert_valid()
    assert ref.reused == [], "a sequence number carried two different samples"
    assert ref.unannounced_gaps() == [], "every gap is announced by an event with its range"
    rows = ref.all_samples()
    # The extra points carry a random value per poll: the same row under two numbers is one
    # sample delivered twice (two polls may share a millisecond, so other points may repeat).
    where: dict[tuple[Any, ...], list[tuple[str, int]]] = {}
    for (_gw, sid), by_seq in ref.samples.items():
        for seq, r in by_seq.items():
            if r[1].startswith("sim_"):
                where.setdefault(tuple(r), []).append((sid[:6], seq))
    twice = {k: v for k, v in where.items() if len(v) > 1}
    assert not twice, (f"delivered twice under two numbers: {list(twice.items())[:5]}; "
                       f"events {[(e['type'], e['body']) for e in ref.events.values()]}")
    gaps = ref.of_type("seq_gap")
    assert len([g for g in gaps if g["body"]["reason"] == "unclean_stop"]) >= 4
    [quarantined] = ref.of_type("chunk_quarantined")
    assert (quarantined["body"]["seq_first"], quarantined["body"]["seq_last"]) == tuple(bad)
    # Acks already in flight when the broker paused may free pages: the disk can come back
    # briefly and fill again. Each episode is announced and closed, and none dropped a sample.
    full = ref.of_type("disk_full")
    cleared = ref.of_type("disk_full_cleared")
    assert full and all("full" in f["body"]["error"] for f in full)
    assert len(cleared) == len(full), (full, cleared)
    assert all(c["body"]["dropped_samples"] == 0 and c["body"]["failed_commits"] > 0
               for c in cleared)
    assert ref.of_type("buffer_overflow") == []
    # every committed sample of the last store was acknowledged by the broker (a batch may
    # still commit between the snapshot above and the stop: judge the store as it was left)
    left = read_stats(store)
    assert left.acked_seq == left.next_seq - 1 >= stats.next_seq - 1
    print(f"{len(rows)} samples once each; {ref.repeats} repeats dropped; "
          f"gaps {dict(ref.gaps)}")


async def test_chunk_that_is_not_json_rows_is_quarantined(mosquitto: Mosquitto,
                                                          tmp_path: Path) -> None:
    """Valid zlib around a broken array (the check sum cannot catch it): quarantined too."""
    from gateway.model import Sample
    from gateway.store import Store

    path = tmp_path / "state" / "buffer.sqlite3"
    store = Store(path)
    await store.open()
    for i in range(3):
        await store.append_samples([Sample("m", f"p{j}", 1_000 * i + j, j) for j in range(10)])
    async with store.transaction() as tx:
        await tx.execute("UPDATE telemetry SET payload = ? WHERE seq_first = 11",
                         (zlib.compress(b'[["m","p0",1,2,"good"]'),))
    await store.close()
    cfg = site(mosquitto, devices=0)
    async with (RefRecorder(mosquitto.host, mosquitto.port, BASE) as rec,
                running_app(cfg, tmp_path, timeout=60) as app):
        await rec.until("the rows after the bad chunk", lambda: bool(
            rec.ref.high[(GW, app.store.store_id)] >= 30))
        await rec.until("the event", lambda: bool(rec.ref.of_type("chunk_quarantined")))
        assert (await app.store.stats()).quarantined_chunks == 1
    [event] = rec.ref.of_type("chunk_quarantined")
    assert (event["body"]["seq_first"], event["body"]["seq_last"]) == (11, 20)
    assert sorted(rec.ref.samples[(GW, event["body"]["store_id"])]) == \
        [*range(1, 11), *range(21, 31)]
    assert rec.ref.unannounced_gaps() == []
    rec.assert_valid()

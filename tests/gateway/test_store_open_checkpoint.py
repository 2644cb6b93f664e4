"""The store checkpoints its WAL when it opens, so a new store's id and schema (and each
boot's starting state) are in the synced main file, not only in a WAL that ``durability:
normal`` syncs at the first checkpoint: a power cut that loses the WAL's end loses recent
commits, announced, never the store itself. (With commits a cycle apart, a fresh store can
take minutes to reach the automatic checkpoint at 1 MB of WAL.)"""

from __future__ import annotations

import shutil
from pathlib import Path

from gateway.model import Sample
from gateway.store import Store
from gateway.store.db import SEQ_GAP_EVENT
from gateway.store.seqmark import BLOCK


def batch(n: int, ts: int = 1_000) -> list[Sample]:
    return [Sample("m", f"p{i}", ts + i, float(i)) for i in range(n)]


def size(file: Path) -> int:
    return file.stat().st_size


def power_cut(src: Path, dst: Path, keep: float) -> None:
    """The files as a power cut leaves them: the main file and the mark as they are, the WAL
    cut to ``keep`` of its length (its end was never synced)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(src, dst)
    shutil.copy(f"{src}.seq", f"{dst}.seq")
    wal = Path(f"{src}-wal").read_bytes()
    Path(f"{dst}-wal").write_bytes(wal[: int(len(wal) * keep)])


async def test_a_new_store_survives_a_power_cut_that_cuts_its_wal(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b.db"
    store = Store(path)
    await store.open()
    store_id = store.store_id
    for i in range(12):  # small commits, far below the automatic checkpoint
        await store.append_samples(batch(60, ts=i * 1_000))
    assert size(Path(f"{path}-wal")) < 1_048_576
    cut = tmp_path / "c" / "b.db"
    power_cut(path, cut, keep=1 / 3)
    await store.close()

    after = Store(cut)
    await after.open()
    try:
        assert after.store_id == store_id, "the same store, not a new stream"
        assert after.boot_count == 2
        first, _ = await after.append_samples(batch(5))
        assert first == 61 + BLOCK  # the durable mark (reserved at the first append)
        await after.register_consumer("t")
        gaps = [se.event.body for se in await after.read_events("t", 100)
                if se.event.type == SEQ_GAP_EVENT]
        assert [g["reason"] for g in gaps] == ["unclean_stop"]
    finally:
        await after.close()


async def test_the_wal_is_empty_after_open(tmp_path: Path) -> None:
    path = tmp_path / "b.db"
    store = Store(path)
    await store.open()
    await store.append_samples(batch(10))
    power_cut(path, tmp_path / "c" / "b.db", keep=1.0)  # a kill -9 now
    await store.close()
    again = Store(tmp_path / "c" / "b.db")
    await again.open()
    try:
        assert size(tmp_path / "c" / "b.db-wal") == 0
        assert [c.rows for c in await again.read_telemetry(0, 100)] == [
            [["m", f"p{i}", 1_000 + i, float(i), "good"] for i in range(10)]]
    finally:
        await again.close()

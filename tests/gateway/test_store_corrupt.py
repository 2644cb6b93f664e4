"""A damaged or foreign store (issue 13, item 6): quarantine and salvage, or refuse with one
line and a documented exit code; never a traceback, never a hung process."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from gateway import events as events_catalogue
from gateway.model import Event, Sample
from gateway.store import Store
from gateway.store.errors import EX_CANTCREAT, EX_DATAERR
from gateway.store.recover import RECOVERED_EVENT
from tests.support.app import write_config
from tests.support.daemon import fieldgate

CHUNKS = 150
ROWS = 1000


def batch(i: int) -> list[Sample]:
    return [Sample("m", f"p{j}", i * ROWS + j, int.from_bytes(os.urandom(6)))
            for j in range(ROWS)]


async def make_store(path: Path) -> str:
    store = Store(path)
    await store.open()
    for i in range(CHUNKS):
        await store.append_samples(batch(i))
    await store.ack_telemetry(10 * ROWS)  # the first 10 chunks were delivered
    await store.add_events([Event("alarm_created", {"n": n}, id=f"ev-{n}") for n in range(20)])
    await store.kv("ocpp").put("tx", {"id": 7})
    store_id = store.store_id
    await store.close()
    return store_id


def truncate(path: Path) -> None:
    os.truncate(path, path.stat().st_size // 2)


def scribble_header(path: Path) -> None:
    with open(path, "r+b") as f:
        f.write(os.urandom(100))


def scribble_page(path: Path) -> None:
    with open(path, "r+b") as f:
        f.seek(4096 * 120)
        f.write(os.urandom(4096))


def not_a_database(path: Path) -> None:
    path.write_text("this is a shopping list, not a database\n" * 100)


DAMAGE = {"truncated": truncate, "header": scribble_header, "page": scribble_page,
          "not_a_db": not_a_database}


def config(tmp_path: Path, **store: Any) -> Path:
    return write_config(tmp_path, {
        "store": store,
        "devices": [{"id": "m", "type": "simulated", "enabled": False}],
    })


def assert_one_line(proc: Any, code: int, words: str) -> None:
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert words in lines[0] and f"exit code {code}" in lines[0]


@pytest.mark.parametrize("damage", sorted(DAMAGE))
async def test_damaged_store_is_quarantined_and_salvaged(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "state" / "buffer.sqlite3"
    old_id = await make_store(path)
    DAMAGE[damage](path)
    store = Store(path)
    await store.open()  # no exception, no hang
    try:
        assert store.store_id != old_id, "a recovered store is a new stream"
        [moved] = list(path.parent.glob("buffer.sqlite3.corrupt-*[0-9]Z"))
        await store.register_consumer("t")
        events = [e.event for e in await store.read_events("t", 1000)]
        [recovered] = [e.body for e in events if e.type == RECOVERED_EVENT]
        assert recovered["old_store_id"] in (old_id, None) or damage != "page"
        assert recovered["moved_to"] == str(moved)
        assert recovered["store_id"] == store.store_id
        assert events_catalogue.problems(RECOVERED_EVENT, recovered) == []
        saved = recovered["samples_saved"]
        stats = await store.stats()
        assert stats.samples == saved
        lost = sum(b - a + 1 for a, b in recovered["lost"])
        if damage in ("page", "truncated"):
            assert saved > 0, "the readable chunks are saved"
            # every unacknowledged old sample is either saved or in a lost range
            assert saved + lost == (CHUNKS - 10) * ROWS
            assert recovered["old_acked_seq"] == 10 * ROWS
        if damage == "page":
            assert recovered["events_saved"] == 20
            assert await store.kv("ocpp").get("tx") == {"id": 7}
            assert [e.id for e in events if e.type == "alarm_created"] == \
                [f"ev-{n}" for n in range(20)]
        if damage == "not_a_db":
            assert saved == 0
            # the sequence mark still tells which old range is gone
            assert recovered["old_store_id"] == old_id
            assert recovered["lost"] == [[10 * ROWS + 1, recovered["old_seq_last"]]]
            assert recovered["old_seq_last"] >= CHUNKS * ROWS
        # the new store works
        assert await store.append_samples(batch(0)) == (saved + 1, saved + ROWS)
    finally:
        await store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


@pytest.mark.parametrize("damage", ["header", "not_a_db"])
def test_refuse_policy_exits_65_with_one_line(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "state" / "buffer.sqlite3"
    import asyncio

    asyncio.run(make_store(path))
    DAMAGE[damage](path)
    before = path.read_bytes()
    proc = fieldgate("run", "-c", str(config(tmp_path, on_corrupt="refuse")), timeout=60)
    assert_one_line(proc, EX_DATAERR, f"store {path} is damaged")
    assert path.read_bytes() == before, "refuse leaves the file as it is"


def test_quarantine_by_default_the_daemon_starts(tmp_path: Path) -> None:
    path = tmp_path / "state" / "buffer.sqlite3"
    path.parent.mkdir(parents=True)
    not_a_database(path)
    cfg = config(tmp_path)
    proc = fieldgate("check-config", str(cfg))
    assert proc.returncode == 0, proc.stderr
    from tests.support.daemon import spawn, wait_for

    log = tmp_path / "log.txt"
    daemon = spawn(cfg, log=log)
    try:
        wait_for(lambda: "fieldgate" in log.read_text() and " started" in log.read_text(), 30)
        assert "is damaged" in log.read_text() and "Traceback" not in log.read_text()
    finally:
        daemon.terminate()
        assert daemon.wait(20) == 0


def test_newer_store_exits_65(tmp_path: Path) -> None:
    path = tmp_path / "state" / "buffer.sqlite3"
    import asyncio

    asyncio.run(make_store(path))
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE schema_version SET version = 99 WHERE component = 'core'")
    proc = fieldgate("run", "-c", str(config(tmp_path)), timeout=60)
    assert_one_line(proc, EX_DATAERR, "newer than this fieldgate")


def test_store_path_is_a_directory_exits_73(tmp_path: Path) -> None:
    (tmp_path / "adir").mkdir()
    proc = fieldgate("run", "-c", str(config(tmp_path, path=str(tmp_path / "adir"))),
                     timeout=60)
    assert_one_line(proc, EX_CANTCREAT, "is a directory")


def test_state_dir_that_cannot_be_created_exits_73(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    cfg = write_config(tmp_path, {
        "gateway": {"state_dir": str(blocker / "state")},
        "devices": [{"id": "m", "type": "simulated", "enabled": False}],
    })
    proc = fieldgate("run", "-c", str(cfg), timeout=60)
    assert_one_line(proc, EX_CANTCREAT, f"state directory {blocker / 'state'} cannot be created")


def test_systemd_does_not_restart_on_the_store_exit_codes() -> None:
    unit = Path(__file__).resolve().parents[2] / "systemd" / "fieldgate.service"
    line = next(li for li in unit.read_text().splitlines()
                if li.startswith("RestartPreventExitStatus="))
    assert {"78", str(EX_DATAERR), str(EX_CANTCREAT)} <= set(line.split("=", 1)[1].split())

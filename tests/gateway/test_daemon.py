"""The daemon as a process: SIGTERM drain, kill -9 during ingest, systemd notify, the CLI."""

from __future__ import annotations

import itertools
import json
import random
import re
import signal
import socket
import sqlite3
import time
from pathlib import Path

import pytest

from gateway import __version__
from tests.support.app import write_config
from tests.support.daemon import fieldgate, go, prestart, spawn, wait_for


def heavy_config(tmp_path: Path, **extra: object) -> Path:
    return write_config(tmp_path, {
        "logging": {"level": "INFO"},
        "shutdown": {"drain_timeout": 5},
        "devices": [
            {"id": f"sim-{i}", "type": "simulated", "interval": 0.01, "extra_points": 500}
            for i in range(3)
        ],
        **extra,
    })


def store_rows(path: Path) -> int:
    if not path.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM telemetry").fetchone()[0])
    except sqlite3.OperationalError:
        return 0


def test_sigterm_drains_and_exits_zero_within_bound(tmp_path: Path) -> None:
    cfg = heavy_config(tmp_path)
    db = tmp_path / "state" / "buffer.sqlite3"
    # On uvloop, which a site of 10 devices or more runs on: its signal handling and drain.
    proc = spawn(cfg, env={"FIELDGATE_LOOP": "uvloop"}, log=tmp_path / "log")
    try:
        wait_for(lambda: store_rows(db) > 20)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=15)
        elapsed = time.monotonic() - t0
    finally:
        proc.kill()
    log = (tmp_path / "log").read_text()
    assert code == 0, log
    assert elapsed < 5 + 2, "bounded by shutdown.drain_timeout"
    assert "draining" in log and "fieldgate stopped" in log
    assert "event loop uvloop" in log
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        # a clean stop checkpoints the WAL into the main file
    assert not Path(f"{db}-wal").exists() or Path(f"{db}-wal").stat().st_size == 0


@pytest.mark.slow
def test_kill_9_during_heavy_ingest_keeps_store_intact(tmp_path: Path) -> None:
    # The store under kills is the subject here. The local history (its own kill -9 test is
    # in tests/gateway/siteops/test_history.py) would re-fold the open minute at each of the
    # 20 boots, at 150,000 samples/s: 20 s more of this suite for nothing this test checks.
    cfg = heavy_config(tmp_path, siteops={"history": {"enabled": False}})
    db = tmp_path / "state" / "buffer.sqlite3"
    rng = random.Random(20)
    log = tmp_path / "log"
    ready = prestart(cfg, log=log)
    for _ in range(20):
        before = store_rows(db)
        proc = go(ready)
        ready = prestart(cfg, log=log)  # the next boot imports while this one runs
        try:
            wait_for(lambda before=before: store_rows(db) > before + 2, 60)
            time.sleep(rng.uniform(0.0, 0.4))
        finally:
            proc.kill()  # SIGKILL: no drain, no checkpoint
            proc.wait()
    ready.kill()
    ready.wait()
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        chunks = conn.execute(
            "SELECT seq_first, seq_last FROM telemetry ORDER BY seq_first").fetchall()
        next_seq = conn.execute("SELECT value FROM meta WHERE key='next_seq'").fetchone()[0]
        boots = conn.execute("SELECT value FROM meta WHERE key='boot_count'").fetchone()[0]
    assert boots == 20
    assert chunks[0][0] == 1
    # the start after each kill logs (and sends as a seq_gap event) the range it skips
    skipped = {int(a): int(b) for a, b in re.findall(r"(\d+)\.\.(\d+) are skipped",
                                                      log.read_text())}
    for (_, last), (first, _) in itertools.pairwise(chunks):
        # a restart after a kill skips the numbers reserved and not used, and says so
        assert first == last + 1 or skipped.get(last + 1) == first - 1, \
            "committed rows have no repeat, and no gap that no seq_gap event announces"
    assert chunks[-1][1] < next_seq


def test_systemd_ready_watchdog_and_stopping(tmp_path: Path) -> None:
    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(20)
    cfg = write_config(tmp_path, {"devices": [{"id": "m", "type": "simulated"}]})
    proc = spawn(cfg, env={"NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "200000"})
    messages: list[str] = []
    try:
        while not any("WATCHDOG=1" in m for m in messages[1:]):
            messages.append(sock.recv(4096).decode())
        proc.send_signal(signal.SIGTERM)
        while "STOPPING=1" not in messages:
            messages.append(sock.recv(4096).decode())
        assert proc.wait(timeout=15) == 0
    finally:
        proc.kill()
        sock.close()
    assert any(m.startswith("READY=1") for m in messages)
    assert messages.index("STOPPING=1") > 0


def test_cli_version_and_buffer_stats(tmp_path: Path) -> None:
    assert fieldgate("--version").stdout.strip() == f"fieldgate {__version__}"
    cfg = write_config(tmp_path, {"devices": [{"id": "m", "type": "simulated",
                                               "interval": 0.05}]})
    missing = fieldgate("buffer", "stats", "-c", str(cfg))
    assert missing.returncode == 1 and "has the gateway run" in missing.stderr
    db = tmp_path / "state" / "buffer.sqlite3"
    proc = spawn(cfg)
    try:
        wait_for(lambda: store_rows(db) >= 3)
        first = json.loads(fieldgate("buffer", "stats", "-c", str(cfg), "--json").stdout)
        wait_for(lambda: store_rows(db) >= 8)
        second = json.loads(fieldgate("buffer", "stats", "-c", str(cfg), "--json").stdout)
        assert second["samples"] > first["samples"] > 0, "the buffer fills while running"
        text = fieldgate("buffer", "stats", "-c", str(cfg)).stdout
        assert "samples" in text and "dropped      0" in text
        ping = fieldgate("cmd", "ping", "-c", str(cfg))
        assert ping.returncode == 0 and json.loads(ping.stdout)["result"]["gateway"] == "test-gw"
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    assert fieldgate("cmd", "ping", "-c", str(cfg)).returncode == 1

"""A real kill -9 of a gateway process while it generates a scheduled report: half-way
through the CSV, half-way through the HTML, and after both files are in place but before
the report is recorded. After each kill the gateway starts again; at the end the report
exists exactly once (one record, ``on_report_generated`` called once), its files are whole
(the sha256 the hook was given matches the CSV on disk) and no temporary file is left."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from tests.gateway.siteops.support import local_ms
from tests.hooks.support import write_customer
from tests.support.app import write_config
from tests.support.wait import wait_until

ROOT = Path(__file__).resolve().parents[3]
TZ = "Europe/Berlin"
DAY, NEXT = local_ms(TZ, 2026, 3, 29), local_ms(TZ, 2026, 3, 30)

#: Writes one line per on_report_generated call (a plain def: it runs in a worker thread).
PLUGIN = '''
import os
from hooks.base import CustomerHooks


class Calls(CustomerHooks):
    def on_report_generated(self, report_task, file_path, db):
        with open(os.environ["HOOK_LOG"], "a") as fh:
            fh.write(" ".join([report_task.report_id, report_task.period, report_task.sha256,
                               str(report_task.bytes), file_path]) + "\\n")


hooks = Calls()
'''

#: The gateway, with the clock just after local midnight of the 30th and, when asked, a
#: report writer that announces each step on stdout and then waits (the kill lands there).
CHILD = textwrap.dedent("""
    import asyncio, os, sys, time
    from pathlib import Path
    from gateway.clock import FakeClock
    from gateway.config.loader import load_config
    from gateway.runtime import App
    from gateway.siteops import reports

    class Clock(FakeClock):
        async def sleep(self, seconds):
            await asyncio.sleep(seconds)

    def slow_write_all(files):
        for path, data in files:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".tmp")
            with open(tmp, "wb") as fh:
                fh.write(data[: len(data) // 2])
                fh.flush()
                print("half", path.name, flush=True)
                time.sleep(0.3)
                fh.write(data[len(data) // 2:])
            os.replace(tmp, path)
        print("renamed", flush=True)
        time.sleep(0.3)

    if sys.argv[2] == "slow":
        reports._write_all = slow_write_all
    path = Path(sys.argv[1])
    app = App(load_config(path), path, clock=Clock(int(sys.argv[3])))
    print("ready", flush=True)
    sys.exit(asyncio.run(app.run()))
""")


def config(tmp_path: Path) -> Path:
    cdir = write_customer(tmp_path, "acme", PLUGIN)
    cfg: dict[str, Any] = {
        "gateway": {"timezone": TZ},
        "devices": [{"id": "m1", "type": "simulated", "interval": 1, "seed": 1}],
        "plugins": {"customer": "acme", "customer_dir": str(cdir), "entry_points": False},
        "siteops": {"reports": {"definitions": [
            {"name": "daily", "period": "daily", "include": ["availability", "alarms"]}]}}}
    return write_config(tmp_path, cfg)


async def _run_until(cfg: Path, env: dict[str, str], mode: str, marker: str) -> None:
    """Start the gateway; kill -9 it when ``marker`` appears on its stdout."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, str(cfg), mode, str(NEXT + 1000), cwd=ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    assert proc.stdout is not None
    try:
        while True:
            line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
            assert line, f"the gateway exited before {marker!r}"
            if line.startswith(marker):
                break
    finally:
        proc.send_signal(signal.SIGKILL)
        await proc.wait()


def _recorded(db: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT id, period, files FROM siteops_reports "
                            "WHERE period = '2026-03-29'").fetchall()


async def test_kill_9_during_report_generation_yields_one_report(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    hook_log = tmp_path / "hook.log"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HOOK_LOG": str(hook_log)}
    state = tmp_path / "state"
    db = state / "buffer.sqlite3"
    for marker in ("half daily-2026-03-29.csv", "half daily-2026-03-29.html", "renamed"):
        await _run_until(cfg, env, "slow", marker)
        assert not _recorded(db), f"killed at {marker!r}, yet the report was recorded"
        if marker.startswith("half"):  # the kill landed inside a write: a half file
            assert list((state / "reports").glob("*.tmp"))
    # The last start runs normally: the report is generated once and the hook called.
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, str(cfg), "normal", str(NEXT + 1000), cwd=ROOT,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        await wait_until(lambda: hook_log.exists() and hook_log.read_text().strip(), 60,
                         what="on_report_generated after the restart")
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 30)
    (rid, _, files), = _recorded(db)
    calls = [line.split() for line in hook_log.read_text().splitlines()]
    assert [c[:2] for c in calls] == [[rid, "2026-03-29"]]  # once, for the recorded one
    _, _, sha256, size, csv_path = calls[0]
    data = await asyncio.to_thread(Path(csv_path).read_bytes)
    assert hashlib.sha256(data).hexdigest() == sha256 and len(data) == int(size)
    assert data.startswith(b"section,subject,metric,value,unit\n")
    assert sorted(Path(f).name for f in json.loads(files)) == [
        "daily-2026-03-29.csv", "daily-2026-03-29.html"]
    html = await asyncio.to_thread(Path(json.loads(files)[1]).read_bytes)
    assert html.endswith(b"</html>")
    assert not list((state / "reports").glob("*.tmp"))

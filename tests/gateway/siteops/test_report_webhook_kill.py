"""A report's webhook delivery across a real kill -9 of the gateway process: killed while a
retry waits and while the receiver holds the POST open, then delivered by the next start
(at least once, under one X-Fieldgate-Delivery) and recorded delivered."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.gateway.siteops.test_report_webhook import content, receiver, site
from tests.hooks.support import SIM
from tests.support.app import write_config
from tests.support.wait import wait_until

ROOT = Path(__file__).resolve().parents[3]


#: A gateway process on the real clock (the scheduler writes yesterday's report at start).
CHILD = """
import asyncio, sys
from pathlib import Path
from gateway.config.loader import load_config
from gateway.runtime import App
path = Path(sys.argv[1])
sys.exit(asyncio.run(App(load_config(path), path).run()))
"""


def _rows(db: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT status, attempts, file FROM siteops_report_deliveries"
                            ).fetchall()


async def test_kill_9_while_pending_and_during_a_post_delivers_once(tmp_path: Path) -> None:
    """A gateway process killed with SIGKILL, first while its delivery waits for a retry,
    then while the receiver holds its POST open; the third start delivers the file once
    more (at least once: the same X-Fieldgate-Delivery) and records it delivered."""
    async with receiver([(503, {})] * 1000) as rx:
        cfg = site(rx, files="csv", retry_initial=0.2, retry_max=0.5)
        cfg["devices"] = [{**SIM, "interval": 1}]
        path = write_config(tmp_path, cfg)
        db = tmp_path / "state" / "buffer.sqlite3"
        env = {**os.environ, "PYTHONPATH": str(ROOT)}

        async def start() -> asyncio.subprocess.Process:
            return await asyncio.create_subprocess_exec(
                sys.executable, "-c", CHILD, str(path), cwd=ROOT, env=env,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        async def kill(proc: asyncio.subprocess.Process) -> None:
            proc.send_signal(signal.SIGKILL)
            await proc.wait()

        proc = await start()
        try:  # 1: the receiver answers 503; killed between attempts
            await wait_until(lambda: len(rx.got) >= 2, 60, what="two failed attempts")
        finally:
            await kill(proc)
        ((status, attempts, file),) = await asyncio.to_thread(_rows, db)
        assert status == "pending" and attempts >= 1

        rx.answers.clear()
        rx.hold = asyncio.Event()
        before = len(rx.got)
        proc = await start()
        try:  # 2: killed while the POST is in flight
            await wait_until(lambda: rx.held, 60, what="a POST held open")
        finally:
            await kill(proc)
        rx.hold.set()
        rx.hold = None
        proc = await start()
        try:  # 3: the receiver accepts
            await wait_until(lambda: rx.accepted(), 60, what="the file accepted")
            await wait_until(lambda: asyncio.to_thread(_rows, db), 10)

            async def delivered() -> bool:
                rows = await asyncio.to_thread(_rows, db)
                return rows[0][0] == "delivered"

            await wait_until(delivered, 30, what="the delivery recorded")
        finally:
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 30)
    data = await asyncio.to_thread(content, file)
    assert [g.status for g in rx.got[:before]] == [503] * before
    # The POST cut by the kill reached the receiver, but its answer never reached the
    # gateway: the next start sends the file again, under the same X-Fieldgate-Delivery
    # (at least once), and the gateway records one delivery.
    assert [g.status for g in rx.got[before:]] == [-1, 200]
    assert [g.body for g in rx.got[before:]] == [data, data]
    assert len({g.headers["X-Fieldgate-Delivery"] for g in rx.got}) == 1
    ((status, attempts, _),) = await asyncio.to_thread(_rows, db)
    # Each attempt is counted before its POST (also the one the kill cut short).
    assert status == "delivered" and attempts >= before + 2
    assert rx.got[-1].headers["X-Fieldgate-Attempt"] == str(attempts)

"""kill -9 between an event's commit and its hook delivery: after the restart the hook runs
again with the same event id (at least once)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.hooks.support import write_customer
from tests.support.wait import wait_until_sync

ROOT = Path(__file__).resolve().parents[2]

PLUGIN = '''
import asyncio
from pathlib import Path

from hooks.base import CustomerHooks

OUT = Path({out!r})
FIRST = Path({first!r})


class Slow(CustomerHooks):
    async def on_device_status_changed(self, device, old_status, new_status, db):
        with OUT.open("a") as f:
            f.write(f"{{device.event_id}} {{new_status}}\\n")
        if not FIRST.exists():
            FIRST.touch()
            await asyncio.Event().wait()  # hang on the first delivery: the test kills us here


hooks = Slow()
'''


def _lines(path: Path, n: int, proc: subprocess.Popen[bytes], timeout: float = 30) -> list[str]:
    def enough() -> list[str] | None:
        if proc.poll() is not None:
            raise AssertionError(f"gateway exited with {proc.returncode}")
        lines = path.read_text().splitlines() if path.exists() else []
        return lines if len(lines) >= n else None

    return wait_until_sync(enough, timeout, what=f"{n} lines in {path}")


@pytest.mark.slow
def test_kill9_redelivers_with_same_event_id(tmp_path: Path) -> None:
    out, first = tmp_path / "deliveries.txt", tmp_path / "first-delivery"
    cdir = write_customer(tmp_path, "crashy", PLUGIN.format(out=str(out), first=str(first)))
    cfg = {"gateway": {"id": "gw", "state_dir": str(tmp_path / "state")},
           "devices": [{"id": "m1", "type": "simulated", "interval": 0.1}],
           "plugins": {"customer": "crashy", "customer_dir": str(cdir), "timeout": 300,
                       "entry_points": False}}
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(cfg))
    cmd = [sys.executable, "-m", "gateway", "run", "-c", str(path)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stderr=subprocess.DEVNULL)
    try:
        (line,) = _lines(out, 1, proc)  # the hook is running (and hanging): not acked yet
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    assert line.endswith(" online")

    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stderr=subprocess.PIPE)
    try:
        lines = _lines(out, 2, proc)
        time.sleep(0.3)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err.decode()[-2000:]
    lines = out.read_text().splitlines()
    assert lines == [line, line]  # redelivered once, with the same event id

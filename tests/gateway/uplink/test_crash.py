"""kill -9 the gateway process while it forwards: nothing committed is lost, the last will
goes out, and a birth message follows each restart."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.store.db import read_stats
from tests.gateway.uplink.helpers import BASE, site
from tests.gateway.uplink.wirecheck import Received, WireRecorder
from tests.support.app import write_config
from tests.support.mosquitto import Mosquitto

ROOT = Path(__file__).resolve().parents[3]


def spawn(config: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "gateway", "run", "-c", str(config), "--log-level", "WARNING"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )


def status_of(got: Received, boot: int, state: str) -> list[dict[str, Any]]:
    return [s for s in got.status if s["boot"] == boot and s["state"] == state]


def born(boot: int) -> Callable[[Received], bool]:
    return lambda g: bool(status_of(g, boot, "online"))


def kill(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    if proc.stderr is not None:
        proc.stderr.close()


async def test_last_will_on_kill_and_birth_after_restart(mosquitto: Mosquitto,
                                                         tmp_path: Path) -> None:
    config = write_config(tmp_path, site(mosquitto, devices=1, interval=0.2))
    async with WireRecorder(mosquitto.host, mosquitto.port, BASE) as rec:
        proc = spawn(config)
        try:
            await rec.wait_for(lambda g: bool(status_of(g, 1, "online")), 20, "birth of boot 1")
        finally:
            kill(proc)
        await rec.wait_for(lambda g: bool(status_of(g, 1, "offline")), 10, "last will")
        [will] = status_of(rec.got, 1, "offline")
        assert will["reason"] == "lost"
        proc = spawn(config)
        try:
            await rec.wait_for(lambda g: bool(status_of(g, 2, "online")), 20, "birth of boot 2")
        finally:
            proc.terminate()
            assert proc.wait(15) == 0
        await rec.wait_for(lambda g: bool(status_of(g, 2, "offline")), 10, "offline on stop")
        assert status_of(rec.got, 2, "offline")[0]["reason"] == "shutdown"
        order = [(s["boot"], s["state"]) for s in rec.got.status]
        assert order.index((1, "offline")) < order.index((2, "online"))
    rec.assert_valid()


@pytest.mark.slow
async def test_twenty_kills_lose_nothing(mosquitto: Mosquitto, tmp_path: Path) -> None:
    rng = random.Random(20)
    cfg = site(mosquitto, devices=2, interval=0.02, extra_points=20, max_samples=200, window=8)
    config = write_config(tmp_path, cfg)
    store_path = tmp_path / "state" / "buffer.sqlite3"
    kills = 20
    async with WireRecorder(mosquitto.host, mosquitto.port, BASE) as rec:
        for boot in range(1, kills + 1):
            proc = spawn(config)
            try:
                await rec.wait_for(born(boot), 20, f"birth of boot {boot}")
                # kill at a random point of the stream (about 0..0.8 s of data), measured in
                # rows forwarded rather than in time, so a slow machine kills as often mid-way
                target = rec.got.high + rng.randint(0, 1_700)
                await rec.wait_for(lambda g, t=target: g.high >= t, 20, f"row {target}")
            finally:
                kill(proc)
        assert rec.got.high > 5_000, "the gateway should have forwarded while being killed"
        # A final clean run without devices forwards what the kills left in the buffer.
        final = dict(cfg, devices=[{**d, "enabled": False} for d in cfg["devices"]])
        config = write_config(tmp_path, final)
        proc = spawn(config)
        try:
            await rec.wait_for(lambda g: bool(status_of(g, kills + 1, "online")), 20,
                               "birth of the final run")
            committed = read_stats(store_path).next_seq - 1
            await rec.wait_for(lambda g: g.high >= committed, 30, f"seq {committed}")
        finally:
            proc.terminate()
            code = proc.wait(15)
            err = proc.stderr.read().decode() if proc.stderr else ""
        assert code == 0, err
    stats = read_stats(store_path)
    got = rec.got
    assert stats.next_seq - 1 == committed and stats.acked_seq == committed
    assert got.gaps == []
    assert sorted(got.rows) == list(range(1, committed + 1))
    print(f"{committed} rows, {len(got.duplicates)} sent again after kills")
    for boot in range(1, kills + 1):  # every kill left a last will, every start a birth
        assert status_of(got, boot, "online") and status_of(got, boot, "offline")
    rec.assert_valid()

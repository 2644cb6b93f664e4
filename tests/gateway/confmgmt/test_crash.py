"""Crash safety with real daemons (``fieldgate run`` subprocesses) and a real mosquitto:
kill -9 at random moments of an apply leaves the old or the new config in force, whole; a
config that crashes the daemon at every start is replaced by the last good one."""

from __future__ import annotations

import asyncio
import contextlib
import random
import subprocess
import time
from pathlib import Path
from typing import Any

import yaml

from gateway.confmgmt.versions import VersionStore, text_hash
from gateway.control import ControlUnreachable, send_command
from tests.gateway.uplink.helpers import BASE, site
from tests.gateway.uplink.wirecheck import WireRecorder
from tests.support.daemon import go, prestart, spawn
from tests.support.mosquitto import Mosquitto
from tests.support.wait import wait_until


def config(mosquitto: Mosquitto, tmp_path: Path, devices: list[str],
           **extra: Any) -> str:
    cfg = site(mosquitto, devices=0, interval=0.1)
    cfg["gateway"] = {"id": "test-gw", "state_dir": str(tmp_path / "state")}
    cfg["devices"] = [{"id": d, "type": "simulated", "interval": 0.1} for d in devices]
    cfg["config"] = {"confirm_timeout": 10}
    return yaml.safe_dump({**cfg, **extra}, sort_keys=False)


async def command(state: Path, name: str, args: Any = None) -> dict[str, Any] | None:
    """The command's reply, or None while the daemon does not answer (yet)."""
    try:
        reply: dict[str, Any] = await send_command(state, name, args or {}, timeout=10)
    except (ControlUnreachable, OSError, ValueError):
        return None
    return reply


async def running_config(state: Path, proc: subprocess.Popen[bytes]) -> dict[str, Any]:
    async def get() -> dict[str, Any] | None:
        assert proc.poll() is None, f"the daemon died (exit {proc.returncode})"
        reply = await command(state, "config.get")
        return reply["result"] if reply and reply.get("ok") else None

    result: dict[str, Any] = await wait_until(get, 30, what="the daemon answers config.get")
    return result


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def test_kill_9_during_apply_leaves_old_or_new(mosquitto: Mosquitto,
                                                     tmp_path: Path) -> None:
    texts = {"a": config(mosquitto, tmp_path, ["sim-0", "sim-1"]),
             "b": config(mosquitto, tmp_path, ["sim-0", "sim-2", "sim-3"])}
    devices = {text_hash(t): sorted(yaml.safe_load(t)["devices"][i]["id"]
                                    for i in range(len(yaml.safe_load(t)["devices"])))
               for t in texts.values()}
    bootstrap = tmp_path / "site.yaml"
    bootstrap.write_text(texts["a"])
    state = tmp_path / "state"
    rng = random.Random(18)
    outcomes: list[str] = []
    proc = spawn(bootstrap, log=tmp_path / "daemon.log")
    ready = prestart(bootstrap, log=tmp_path / "daemon.log")
    try:
        for _ in range(20):
            running = await running_config(state, proc)
            assert running["hash"] in devices, "a config that is neither old nor new"
            assert sorted(running["devices"]) == devices[running["hash"]], "a mix"
            if running["pending"]:  # killed after the switch: the gate runs again
                running = await wait_until(
                    lambda: _confirmed(state), 20, what="the gate confirms after restart")
            old = running["hash"]
            target = texts["b"] if text_hash(texts["a"]) == old else texts["a"]
            apply = asyncio.create_task(command(state, "config.apply", {
                "yaml": target, "expected_hash": old}))
            await asyncio.sleep(rng.uniform(0.0, 0.4))
            proc.kill()  # SIGKILL, at any moment of the apply
            proc.wait()
            with contextlib.suppress(Exception):
                await apply
            proc = go(ready)
            ready = prestart(bootstrap, log=tmp_path / "daemon.log")  # imports meanwhile
            after = await running_config(state, proc)
            assert after["hash"] in (old, text_hash(target)), "neither old nor new"
            assert sorted(after["devices"]) == devices[after["hash"]], "a mix"
            assert (state / "config" / "current.yaml").read_text() in texts.values()
            outcomes.append("new" if after["hash"] != old else "old")
    finally:
        stop(proc)
        ready.kill()
        ready.wait()
    assert len(outcomes) == 20
    print("kill -9 outcomes:", {o: outcomes.count(o) for o in ("old", "new")})


async def _confirmed(state: Path) -> dict[str, Any] | None:
    reply = await command(state, "config.get")
    if reply and reply.get("ok") and not reply["result"]["pending"]:
        result: dict[str, Any] = reply["result"]
        return result
    return None


async def test_crash_loop_goes_back_to_the_last_good_config(mosquitto: Mosquitto,
                                                            tmp_path: Path) -> None:
    good = config(mosquitto, tmp_path, ["sim-0"])
    bad = config(mosquitto, tmp_path, ["sim-0", "sim-1"],
                 plugins={"modules": ["tests.gateway.confmgmt.crasher"]})
    bootstrap = tmp_path / "site.yaml"
    bootstrap.write_text(good)
    state = tmp_path / "state"
    log = tmp_path / "daemon.log"
    async with WireRecorder(mosquitto.host, mosquitto.port, BASE) as rec:
        proc = spawn(bootstrap, log=log)
        try:
            running = await running_config(state, proc)
            await command(state, "config.apply", {"yaml": bad, "expected_hash": running["hash"]})
            await wait_until(lambda: proc.poll() is not None, 20, what="the apply's crash")
            assert proc.returncode == 70
            for start in range(3):  # systemd's Restart= would do this
                proc = spawn(bootstrap, log=log)
                await wait_until(lambda p=proc: p.poll() is not None, 30,
                                 what=f"start {start + 1} with the bad config crashes")
                assert proc.returncode == 70
            assert VersionStore(state).boot_record() == {"version": 2, "starts": 3}
            proc = spawn(bootstrap, log=log)
            t0 = time.monotonic()
            running = await running_config(state, proc)
            assert (running["version"], running["hash"]) == (1, text_hash(good))
            assert running["devices"] == ["sim-0"]
            await rec.wait_for(lambda g: any(e["type"] == "config_rolled_back"
                                             for e in g.events), 20, "config_rolled_back")
            [event] = [e["body"] for e in rec.got.events if e["type"] == "config_rolled_back"]
            assert (event["version"], event["to_version"]) == (2, 1)
            assert event["source"] == "boot record" and "3 starts in a row" in event["reason"]
            history = (await command(state, "config.history"))
            assert history is not None and history["result"]["current"] == 1
            [bad_version] = [v for v in history["result"]["versions"] if v["version"] == 2]
            assert bad_version["source"].startswith("config.apply via control socket (uid ")
            assert time.monotonic() - t0 < 30
        finally:
            stop(proc)

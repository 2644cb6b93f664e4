"""``fieldgate config ...`` against a real daemon over the control socket."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.gateway.confmgmt.test_crash import command, config, running_config, stop
from tests.support.daemon import fieldgate, spawn
from tests.support.mosquitto import Mosquitto
from tests.support.wait import wait_until


async def test_config_cli(mosquitto: Mosquitto, tmp_path: Path) -> None:
    bootstrap = tmp_path / "site.yaml"
    bootstrap.write_text(config(mosquitto, tmp_path, ["sim-0"]))
    new = tmp_path / "new.yaml"
    new.write_text(config(mosquitto, tmp_path, ["sim-0", "sim-7"]))
    state = tmp_path / "state"
    proc = spawn(bootstrap, log=tmp_path / "daemon.log")
    try:
        await running_config(state, proc)
        got = fieldgate("config", "get", "-c", str(bootstrap))
        assert got.returncode == 0, got.stderr
        assert yaml.safe_load(got.stdout)["devices"] == [
            {"id": "sim-0", "type": "simulated", "interval": 0.1}]
        assert "# version 1, sha256:" in got.stdout
        dry = fieldgate("config", "apply", str(new), "--dry-run", "-c", str(bootstrap))
        assert dry.returncode == 0, dry.stderr
        assert "+- id: sim-7" in dry.stdout and '"summary": "devices +1 -0 ~0"' in dry.stdout
        done = fieldgate("config", "apply", str(new), "--manual", "-c", str(bootstrap))
        assert done.returncode == 0, done.stderr

        async def reloaded() -> bool:
            reply = await command(state, "config.get")
            return bool(reply and reply.get("ok") and reply["result"]["pending"])

        await wait_until(reloaded, 20, what="the apply's reload")
        confirmed = fieldgate("config", "confirm", "2", "-c", str(bootstrap))
        assert confirmed.returncode == 0, confirmed.stdout + confirmed.stderr
        history = fieldgate("config", "history", "-c", str(bootstrap))
        assert '"good": 2' in history.stdout and '"current": 2' in history.stdout
        again = fieldgate("config", "rollback", "2", "-c", str(bootstrap))
        assert again.returncode == 1 and "already_current" in again.stdout
    finally:
        stop(proc)

"""SIGHUP reloads (it used to kill the daemon without a drain), `fieldgate reload`, and the
start-up warning for a remote broker without TLS (issue 13, items 10 and 12)."""

from __future__ import annotations

import logging
import signal
from pathlib import Path

import pytest
import yaml

from tests.support.app import running_app
from tests.support.daemon import fieldgate, spawn, wait_for


def site(tmp_path: Path, devices: int) -> dict[str, object]:
    return {"gateway": {"id": "hup-gw", "state_dir": str(tmp_path / "state")},
            "devices": [{"id": f"sim-{i}", "type": "simulated", "interval": 0.5}
                        for i in range(devices)]}


def test_sighup_reloads_and_a_bad_file_changes_nothing(tmp_path: Path) -> None:
    cfg = tmp_path / "site.yaml"
    log = tmp_path / "log"
    cfg.write_text(yaml.safe_dump(site(tmp_path, 1)))
    proc = spawn(cfg, log=log)
    try:
        wait_for(lambda: "1 device," in log.read_text(), 20)
        cfg.write_text(yaml.safe_dump(site(tmp_path, 2)))
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "2 devices" in log.read_text(), 20)
        assert proc.poll() is None
        assert "received SIGHUP" in log.read_text()

        cfg.write_text("gateway: {id: hup-gw, state_dir: " + str(tmp_path / "state") +
                       "}\ndevices:\n  - {id: x, type: simulated, interval: -1}\n")
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "was not reloaded" in log.read_text(), 20)
        assert proc.poll() is None
        assert "interval" in log.read_text().split("was not reloaded")[1]
        # Still answering (the broken file cannot be used to find the socket: use a good one).
        good = tmp_path / "good.yaml"
        good.write_text(yaml.safe_dump(site(tmp_path, 2)))
        assert fieldgate("cmd", "ping", "-c", str(good)).returncode == 0
    finally:
        proc.terminate()
        assert proc.wait(20) == 0


def test_fieldgate_reload_command(tmp_path: Path) -> None:
    cfg = tmp_path / "site.yaml"
    log = tmp_path / "log"
    cfg.write_text(yaml.safe_dump(site(tmp_path, 1)))
    proc = spawn(cfg, log=log)
    try:
        wait_for(lambda: "1 device," in log.read_text(), 20)
        cfg.write_text(yaml.safe_dump(site(tmp_path, 3)))
        done = fieldgate("reload", "-c", str(cfg))
        assert done.returncode == 0, done.stderr
        assert '"reloading": true' in done.stdout
        wait_for(lambda: "3 devices" in log.read_text(), 20)

        cfg.write_text(yaml.safe_dump({**site(tmp_path, 1), "devices": [
            {"id": "a", "type": "simulated"}, {"id": "a", "type": "simulated"}]}))
        refused = fieldgate("reload", "-c", str(cfg))
        assert refused.returncode == 78
        assert "already used" in refused.stderr and "nothing changed" in refused.stderr
        assert proc.poll() is None
        assert log.read_text().count("configuration reloaded") == 1
    finally:
        proc.terminate()
        proc.wait(20)


async def test_a_remote_broker_without_tls_is_warned_about_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="gateway.uplink.component")
    remote = {**site(tmp_path, 1), "uplink": {
        # .invalid never resolves (RFC 2606): nothing is sent anywhere.
        "broker": {"host": "broker.invalid", "connect_timeout": 1},
        "backoff_initial": 0.1, "backoff_max": 0.2, "drain_grace": 0}}
    async with running_app(remote, tmp_path):
        pass
    warnings = [r for r in caplog.records if "clear text" in r.getMessage()]
    assert len(warnings) == 1
    assert "broker.invalid" in warnings[0].getMessage()

    caplog.clear()
    (tmp_path / "b").mkdir()
    local = {**site(tmp_path / "b", 1), "uplink": {
        "broker": {"host": "127.0.0.1", "port": 1, "connect_timeout": 1},
        "backoff_initial": 0.1, "backoff_max": 0.2, "drain_grace": 0}}
    async with running_app(local, tmp_path / "b"):
        pass
    assert not [r for r in caplog.records if "clear text" in r.getMessage()]

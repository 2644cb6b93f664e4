"""Provisioning: fieldgate init (flags and a person at a terminal), secrets, demo (#18)."""

from __future__ import annotations

import base64
import hashlib
import os
import pty
import select
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from drivers.ocpp.security import verify_password
from gateway.config.loader import load_config
from gateway.provision import DeviceSpec, default_gateway_id, demo_site, read_env
from tests.support.daemon import ROOT, fieldgate


def test_init_from_flags_writes_a_valid_private_file(tmp_path: Path) -> None:
    out = tmp_path / "etc" / "site.yaml"
    done = fieldgate("init", "-o", str(out), "--yes", "--id", "site-7", "--timezone",
                     "Europe/Berlin", "--state-dir", str(tmp_path / "state"), "--broker",
                     "mqtt.example.com", "--tls", "--username", "site-7",
                     "--modbus", "main-meter=eastron-sdm630@192.168.10.20/1",
                     "--modbus", "pv=sunspec@192.168.10.30:1502/3",
                     "--modbus", "heat=eastron-sdm120@/dev/ttyUSB0/7")
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o640
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FIELDGATE_MQTT_PASSWORD", "x")
        site = load_config(out)
    assert site.gateway.id == "site-7" and len(site.devices) == 3
    assert site.uplink.broker.port == 8883 and site.uplink.broker.tls is not None
    again = fieldgate("init", "-o", str(out), "--yes")
    assert again.returncode == 1 and "--force" in again.stderr
    bad = fieldgate("init", "-o", str(tmp_path / "b.yaml"), "--yes", "--modbus", "nonsense")
    assert bad.returncode == 2 and "ID=PROFILE@HOST" in bad.stderr
    unknown = fieldgate("init", "-o", str(tmp_path / "c.yaml"), "--yes",
                        "--modbus", "m=no-such-meter@10.0.0.1")
    assert unknown.returncode == 78 and "no-such-meter" in unknown.stderr
    assert not (tmp_path / "c.yaml").exists()


def test_init_asks_a_person_at_a_terminal(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FIELDGATE_MQTT_PASSWORD", "x")
    out = tmp_path / "site.yaml"
    # id (default), timezone, broker, broker user (default), a device, a typo, done.
    answers = ["", "Europe/Vienna", "broker.local:1884", "", "m1=eastron-sdm630@10.1.2.3",
               "oops", ""]
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "init", "-o", str(out), "--state-dir",
         str(tmp_path / "s")], stdin=slave, stdout=slave, stderr=slave, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    os.close(slave)
    screen, transcript = b"", b""
    deadline = time.monotonic() + 60
    for answer in answers:
        while not screen.rstrip().endswith(b":") and time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1)
            if ready:
                screen += os.read(master, 4096)
        transcript += screen
        os.write(master, answer.encode() + b"\n")
        screen = b""
    assert proc.wait(60) == 0, transcript.decode(errors="replace")
    assert b"write ID=PROFILE@HOST" in transcript  # the typo was explained, then asked again
    os.close(master)
    site = load_config(out)
    assert site.gateway.id == default_gateway_id()
    assert site.gateway.timezone == "Europe/Vienna"
    assert site.uplink.broker.host == "broker.local" and site.uplink.broker.port == 1884
    assert [d.id for d in site.devices] == ["m1"]
    assert site.uplink.broker.username == site.gateway.id


def test_device_spec_parse() -> None:
    assert DeviceSpec.parse("a=sunspec@h") == DeviceSpec("a", "sunspec", "h", None, 1)
    assert DeviceSpec.parse("a=x@h:15/4") == DeviceSpec("a", "x", "h", 15, 4)
    with pytest.raises(ValueError):
        DeviceSpec.parse("a@h")


def test_secrets_are_private_kept_and_rotated(tmp_path: Path) -> None:
    env = tmp_path / "env"
    first = fieldgate("secrets", "--env", str(env), "--mqtt-user", "site-7",
                      "--ocpp-charger", "cp-1")
    assert first.returncode == 0, first.stderr
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    values = read_env(env)
    assert set(values) == {"FIELDGATE_MQTT_PASSWORD", "FIELDGATE_COMMAND_KEY",
                           "FIELDGATE_OCPP_CP_1"}
    # The printed broker line and charger hash verify against the stored passwords.
    line = next(ln.strip() for ln in first.stdout.splitlines() if ln.strip().startswith("site-7:"))
    _, _, iterations, salt, digest = line.split(":", 1)[1].split("$")
    assert base64.b64encode(hashlib.pbkdf2_hmac(
        "sha512", values["FIELDGATE_MQTT_PASSWORD"].encode(), base64.b64decode(salt),
        int(iterations))).decode() == digest
    charger_hash = next(ln.split(": ", 1)[1] for ln in first.stdout.splitlines()
                        if ln.strip().startswith("cp-1:"))
    assert verify_password(values["FIELDGATE_OCPP_CP_1"], charger_hash)
    assert values["FIELDGATE_MQTT_PASSWORD"] not in first.stdout

    second = fieldgate("secrets", "--env", str(env))
    assert "0 new secret(s)" in second.stdout
    assert read_env(env) == values
    fieldgate("secrets", "--env", str(env), "--rotate")
    rotated = read_env(env)
    assert rotated["FIELDGATE_COMMAND_KEY"] != values["FIELDGATE_COMMAND_KEY"]


def test_demo_site_runs_from_any_directory(tmp_path: Path) -> None:
    path = demo_site(tmp_path / "state")
    site = load_config(path)
    assert site.gateway.state_dir == tmp_path / "state" or \
        str(site.gateway.state_dir) == str(tmp_path / "state")
    assert len(site.devices) >= 5

"""The systemd unit is valid (where systemd-analyze exists) and carries what the design asks."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[1] / "systemd" / "fieldgate.service"


def test_unit_has_notify_watchdog_user_and_hardening() -> None:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(UNIT)
    service = parser["Service"]
    assert service["Type"] == "notify"
    assert service["Restart"] == "on-failure"
    assert service["WatchdogSec"]
    assert service["User"] == "fieldgate"
    assert "dialout" in service["SupplementaryGroups"]
    assert service["StateDirectory"] == "fieldgate"
    assert service["ConfigurationDirectory"] == "fieldgate"
    for key, value in {"ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
                       "NoNewPrivileges": "yes"}.items():
        assert service[key] == value, key
    assert "AF_INET" in service["RestrictAddressFamilies"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_systemd_analyze_verify(tmp_path: Path) -> None:
    target = tmp_path / "fieldgate.service"
    shutil.copy(UNIT, target)
    proc = subprocess.run(["systemd-analyze", "verify", str(target)],
                          capture_output=True, text=True, timeout=60)
    # The venv under /opt does not exist on a build machine; everything else must be clean.
    problems = [line for line in (proc.stdout + proc.stderr).splitlines()
                if line.strip() and "/opt/fieldgate/venv/bin/fieldgate" not in line]
    assert problems == [], problems

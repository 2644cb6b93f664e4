"""The README's sample config validates; role fields are checked; the hash-password CLI."""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from drivers.ocpp import cli
from drivers.ocpp.config import OcppDeviceConfig
from drivers.ocpp.security import (
    PasswordError,
    hash_password,
    parse_basic_auth,
    verify_password,
)

SAMPLE = Path(__file__).parents[3] / "drivers" / "ocpp" / "sample.yaml"


def test_sample_config_validates_and_readme_includes_it() -> None:
    devices = yaml.safe_load(SAMPLE.read_text())["devices"]
    parsed = [OcppDeviceConfig.model_validate(d) for d in devices]
    assert [d.role for d in parsed] == ["server", "charger", "charger"]
    assert parsed[0].settings.max_site_power_w == 22000
    readme = (SAMPLE.parent / "README.md").read_text()
    assert SAMPLE.read_text().rstrip("\n") in readme


@pytest.mark.parametrize("bad", [
    {"id": "s", "type": "ocpp", "role": "server", "password_hash": "x"},
    {"id": "c", "type": "ocpp", "server": {"port": 1}},
    {"id": "c", "type": "ocpp", "simulate": "2.0.1", "ocpp_versions": ["1.6"]},
    {"id": "s", "type": "ocpp", "role": "server", "server": {"security_profile": 2}},
    {"id": "c", "type": "ocpp", "colour": "red"},
])
def test_misplaced_fields_are_errors(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        OcppDeviceConfig.model_validate(bad)


def test_password_hashing() -> None:
    stored = hash_password("sixteen-chars-ok")
    assert verify_password("sixteen-chars-ok", stored)
    assert not verify_password("sixteen-chars-no", stored)
    assert not verify_password("x", "garbage$")
    with pytest.raises(PasswordError):
        hash_password("too-short")
    assert parse_basic_auth("Basic !!!") is None
    assert parse_basic_auth("Bearer abc") is None


def test_hash_password_cli(monkeypatch: pytest.MonkeyPatch,
                           capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    cli.install_cli(parser.add_subparsers())
    args = parser.parse_args(["ocpp", "hash-password"])
    monkeypatch.setattr(sys, "stdin", io.StringIO("a-long-enough-password\n"))
    assert args.func(args) == 0
    assert verify_password("a-long-enough-password", capsys.readouterr().out.strip())
    args = parser.parse_args(["ocpp", "hash-password", "--password", "short"])
    assert args.func(args) == 2
    assert "at least 16" in capsys.readouterr().err

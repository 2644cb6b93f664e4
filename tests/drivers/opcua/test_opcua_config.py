"""The config model: the README's sample validates, and bad input is refused with a message
that names the problem."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from drivers.base import BUILTIN_DRIVERS
from drivers.opcua import SPEC
from drivers.opcua.config import Mode, OpcuaDeviceConfig

ROOT = Path(__file__).resolve().parents[3]
SAMPLE = ROOT / "drivers" / "opcua" / "sample.yaml"


def test_sample_config_validates_and_readme_includes_it() -> None:
    raw = yaml.safe_load(SAMPLE.read_text())
    assert "opcua" in BUILTIN_DRIVERS
    assert SPEC.name == "opcua" and SPEC.cli is not None
    devices = [SPEC.config_model.model_validate(d) for d in raw["devices"]]
    dev = devices[0]
    assert isinstance(dev, OpcuaDeviceConfig)
    assert [dev.group_mode(g) for g in dev.groups] == [Mode.SUBSCRIPTION, Mode.POLLING]
    readme = (ROOT / "drivers" / "opcua" / "README.md").read_text()
    assert SAMPLE.read_text().strip() in readme


def base(**extra: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "id": "d1",
        "type": "opcua",
        "url": "opc.tcp://10.0.0.5:4840",
        "groups": [{"points": [{"name": "p", "node": "ns=2;s=X"}]}],
    }
    raw.update(extra)
    return raw


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"url": "http://x:1"}, "expected opc.tcp://host:port"),
        ({"groups": [{"points": [{"name": "p", "node": "Power"}]}]}, "is not an OPC-UA node id"),
        ({"groups": [{"points": [{"name": "p"}]}]}, "exactly one of 'node' or 'path'"),
        ({"groups": [{"points": [{"name": "p", "node": "ns=2;i=abc"}]}]}, "not an OPC-UA node"),
        ({"groups": [{"points": [{"name": "p", "node": "i=1", "path": "2:A"}]}]}, "exactly one"),
        (
            {"groups": [{"points": [{"name": "p", "path": "Inverter/Power"}]}]},
            "'<ns index>:<name>'",
        ),
        (
            {"groups": [{"points": [{"name": "p", "node": "i=1"}, {"name": "p", "node": "i=2"}]}]},
            "appears twice",
        ),
        (
            {
                "groups": [
                    {"name": "a", "points": [{"name": "p", "node": "i=1"}]},
                    {"name": "b", "points": [{"name": "p", "node": "i=2"}]},
                ]
            },
            "more than one group",
        ),
        (
            {
                "groups": [
                    {
                        "deadband": {"type": "percent", "value": 150},
                        "points": [{"name": "p", "node": "i=1"}],
                    }
                ]
            },
            "between 0 and 100",
        ),
        ({"security": {"policy": "Basic256Sha256"}}, "needs a client certificate"),
        (
            {"security": {"policy": "Basic256Sha256", "generate_certificate": True}},
            "no server certificate would be trusted",
        ),
        ({"security": {"policy": "Basic128Rsa15"}}, "Basic256Sha256"),
        ({"simulate": True}, "loopback"),
        (
            {
                "mode": "polling",
                "groups": [{"deadband": {"value": 1}, "points": [{"name": "p", "node": "i=1"}]}],
            },
            "deadbands apply to subscription groups only",
        ),
        ({"pollinterval": 3}, "Extra inputs are not permitted"),
    ],
)
def test_bad_config_is_refused(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as info:
        OpcuaDeviceConfig.model_validate(base(**change))
    assert message in str(info.value)


def test_password_is_secret() -> None:
    dev = OpcuaDeviceConfig.model_validate(
        base(auth={"username": "u", "password": "hunter2-secret"})
    )
    assert "hunter2-secret" not in repr(dev)
    assert "hunter2-secret" not in dev.model_dump_json()
    assert dev.auth is not None and dev.auth.password.get_secret_value() == "hunter2-secret"


def test_json_schema_has_descriptions() -> None:
    schema = OpcuaDeviceConfig.model_json_schema()
    assert "description" in schema["properties"]["watchdog_interval"]

"""A site with no broker does not load the MQTT client (start-up time, issue 15).

A real App runs in a fresh interpreter (this test process has aiomqtt loaded already): first
a site with no ``uplink`` section, then the same site with ``uplink.broker`` set (a closed
port: the uplink starts and retries). The first must not import aiomqtt, paho or the uplink
component; the second runs the uplink, which loads them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support.mosquitto import free_port

ROOT = Path(__file__).resolve().parents[3]

CLIENT = ("aiomqtt", "paho.mqtt.client", "gateway.uplink.component", "gateway.uplink.client",
          "gateway.uplink.forwarder")

SCRIPT = """
import asyncio, json, sys
from pathlib import Path

from tests.support.app import running_app

TMP = Path({tmp!r})
SIM = {{"id": "m1", "type": "simulated", "interval": 0.05, "seed": 1}}
out = {{}}


def client():
    return sorted(m for m in {client!r} if m in sys.modules)


async def main():
    (TMP / "off").mkdir()
    (TMP / "on").mkdir()
    async with running_app({{"devices": [SIM]}}, TMP / "off") as app:
        out["off"] = client(), sorted(app.running)
    import gateway.uplink
    out["off_attr"] = client()
    out["attr"] = gateway.uplink.Uplink.__module__
    site = {{"devices": [SIM], "uplink": {{"broker": {{"host": "127.0.0.1", "port": {port}}}}}}}
    async with running_app(site, TMP / "on") as app:
        out["on"] = client(), sorted(app.running)

asyncio.run(main())
print(json.dumps(out))
"""


def test_the_mqtt_client_loads_only_when_a_broker_is_configured(tmp_path: Path) -> None:
    script = SCRIPT.format(tmp=str(tmp_path), client=CLIENT, port=free_port())
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    loaded, running = out["off"]
    assert loaded == [] and "uplink" not in running
    assert out["off_attr"] == []  # importing the package does not load the component
    assert out["attr"] == "gateway.uplink.component"
    loaded, running = out["on"]
    assert loaded == sorted(CLIENT) and "uplink" in running

"""A Modbus-only site's daemon loads no module it does not use (idle RSS, issue 11).

The daemon runs as ``fieldgate run`` does, in a fresh interpreter, polling one meter served
by a real Modbus simulator in another process, with its uplink to a real mosquitto. When
the meter's samples are in the buffer it is stopped, and its ``sys.modules`` at exit must
hold none of the modules below: each is loaded only where it is used, and together they
were about 11 MB of the idle RSS that ``bench/startup.py`` measures.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

from gateway.store import read_stats
from tests.support.mosquitto import Mosquitto, free_port
from tests.support.wait import wait_until_sync

ROOT = Path(__file__).resolve().parents[2]

#: module -> who needs it (and so loads it)
LAZY = {
    "drivers.modbus.simulator": "only devices with simulate: true",
    "pymodbus.server": "the Modbus simulator",
    "aiohttp": "an http: section or a webhook notice",
    "html": "a scheduled HTML report (gateway/siteops/reports.py)",
    "html.entities": "a scheduled HTML report",
    "difflib": "a config error to locate, a config.apply/rollback, an edited bootstrap file",
    "gateway.config.locate": "a config error to locate",
    "gateway.config.partial": "a device with field errors",
    "gateway.confmgmt.diff": "config.apply / config.rollback, an edited bootstrap file",
    "pluggy": "a site with a plugin (hooks/component.py; tests/hooks/test_lazy.py)",
    "hooks.manager": "a site with a plugin",
    "hooks.dispatcher": "a site with a plugin",
    "hooks.models": "a site with a plugin",
    "gateway.event_bodies": "the event catalogue's body types: config events, OCPP, plugins",
    "gateway.http.cli": "fieldgate status/devices (`run` builds only its own parser)",
    "gateway.confmgmt.cli": "fieldgate config ...",
    "drivers.opcua.cli": "fieldgate opcua ...",
    "drivers.ocpp.cli": "fieldgate ocpp ...",
    "orjson": "a chunk of 1,000 samples or more (gateway/store/codec.py)",
    "uvloop": "a site of 10 devices or more (gateway/runtime.py event_loop_factory)",
    "isal": "a client asking for the devices answer gzipped (gateway/http/api.py), or a chunk "
            "of 1,000 samples or more (gateway/store/codec.py)",
}

SERVE = """
import asyncio, sys
from drivers.modbus.config import ModbusDeviceConfig
from drivers.modbus.simulator import ModbusSimulator, unit_of

async def main() -> None:
    cfg = ModbusDeviceConfig.model_validate({{"id": "meter-01", "type": "modbus",
        "host": "127.0.0.1", "port": {port}, "unit": 1, "profile": "eastron-sdm630"}})
    sim = ModbusSimulator([unit_of(cfg)], port={port})
    await sim.start()
    await asyncio.Event().wait()

asyncio.run(main())
"""

DAEMON = """
import atexit, json, sys
atexit.register(lambda: open({out!r}, "w").write(json.dumps(sorted(sys.modules))))
from gateway.cli import main
raise SystemExit(main(["run", "-c", {site!r}]))
"""


def test_a_modbus_only_daemon_loads_none_of_the_lazy_modules(tmp_path: Path) -> None:
    port = free_port()
    out = tmp_path / "modules.json"
    procs: list[subprocess.Popen[bytes]] = []
    with Mosquitto(tmp_path) as broker:
        try:
            procs.append(subprocess.Popen([sys.executable, "-c", SERVE.format(port=port)],
                                          cwd=ROOT))
            site = tmp_path / "site.yaml"
            site.write_text(textwrap.dedent(f"""\
                gateway: {{id: gw-idle, state_dir: {tmp_path / "state"}}}
                uplink:
                  broker: {{host: 127.0.0.1, port: {broker.port}}}
                devices:
                  - {{id: meter-01, type: modbus, host: 127.0.0.1, port: {port}, unit: 1,
                     profile: eastron-sdm630, interval: 0.2}}
                """))
            daemon = subprocess.Popen(
                [sys.executable, "-c", DAEMON.format(out=str(out), site=str(site))],
                cwd=ROOT, stderr=subprocess.PIPE)
            procs.append(daemon)
            buffer = tmp_path / "state" / "buffer.sqlite3"

            def polled() -> bool:
                assert daemon.poll() is None, daemon.stderr and daemon.stderr.read().decode()
                try:
                    return read_stats(buffer).next_seq > 1
                except (FileNotFoundError, sqlite3.OperationalError):  # not created yet
                    return False

            wait_until_sync(polled, 60, what="the meter's samples in the buffer")
            daemon.send_signal(signal.SIGTERM)
            assert daemon.wait(30) == 0
        finally:
            for proc in reversed(procs):
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
    modules = set(json.loads(out.read_text()))
    assert "pymodbus.client" in modules and "aiomqtt" in modules  # it did poll and connect
    loaded = {m: why for m, why in LAZY.items() if m in modules}
    assert loaded == {}, f"a Modbus-only daemon loaded modules it does not use: {loaded}"

"""The README's first command: the demo site runs every part with simulators.

The demo's fixed ports (1883, 8080, 15020, 48400, 9000) are moved to free ones so the test can run
beside a developer's own demo; everything else is config/demo.yaml as shipped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from gateway.model import DeviceStatus
from tests.support.app import running_app
from tests.support.mosquitto import free_port
from tests.support.wait import wait_until

ROOT = Path(__file__).resolve().parents[1]


def demo_config() -> dict[str, Any]:
    cfg: dict[str, Any] = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())
    cfg.pop("gateway")  # running_app puts the state in tmp_path
    cfg["uplink"]["embedded_broker"]["port"] = free_port()
    cfg["http"]["port"] = free_port()
    modbus_port = free_port()
    for device in cfg["devices"]:
        if device["type"] == "modbus":
            device["port"] = modbus_port
        elif device["type"] == "opcua":
            device["url"] = f"opc.tcp://127.0.0.1:{free_port()}"
        elif device.get("role") == "server":
            device["server"]["port"] = free_port()
    return cfg


async def test_demo_site_runs_every_part(tmp_path: Path) -> None:
    cfg = demo_config()
    devices = {d["id"] for d in cfg["devices"]}
    async with running_app(cfg, tmp_path) as app:
        def online() -> set[str]:
            return {d for d, (s, _, _) in app.status.snapshot().items()
                    if s in (DeviceStatus.ONLINE, DeviceStatus.ALARM)}

        async def up_and_forwarding() -> bool:
            stats = (await app.commands.execute("uplink.stats", {}))["result"]
            return online() == devices and stats["samples"] > 0

        try:
            await wait_until(up_and_forwarding, 15, what="every device online, data forwarded")
        except AssertionError as err:
            raise AssertionError(f"not online: {devices - online()}") from err
        stats = (await app.commands.execute("uplink.stats", {}))["result"]
        assert stats["connected"] and stats["samples"] > 0, stats
        ping = await app.commands.execute("ping", {})
        assert ping["ok"] and ping["result"]["gateway"] == "test-gw"
        plugins = await app.commands.execute("plugins.list", {})
        assert "example" in str(plugins["result"])
        # The overview's KPIs come from the demo's own meters, not "-" (issue 17).
        kpis = (await app.commands.execute("kpis", {"period": "today"}))["result"]["kpis"]
        assert kpis["site.energy_imported_kwh"] is not None, kpis
        assert kpis["site.energy_by_device_kwh"], kpis

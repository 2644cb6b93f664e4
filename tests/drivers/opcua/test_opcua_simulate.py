"""``simulate: true``: the driver runs the inverter simulator in-process as one more task, and
the sample config (the demo snippet) produces live data and accepts writes."""

from __future__ import annotations

from pathlib import Path

import yaml
from opcua_helpers import running, values

from drivers.opcua.config import OpcuaDeviceConfig
from drivers.opcua.simulator import free_port
from gateway.model import DeviceStatus, Quality

SAMPLE = Path(__file__).resolve().parents[3] / "drivers" / "opcua" / "sample.yaml"


async def test_sample_config_runs_against_in_process_simulator(tmp_path: Path) -> None:
    raw = yaml.safe_load(SAMPLE.read_text())["devices"][0]
    raw["url"] = f"opc.tcp://127.0.0.1:{free_port()}"  # never a fixed port in tests
    raw["groups"][0]["interval"] = 0.2
    raw["groups"][1]["interval"] = 0.5
    cfg = OpcuaDeviceConfig.model_validate(raw)
    async with running(cfg, state_dir=tmp_path) as (driver, ctx):
        names = [name for name, _ in driver.tasks()]
        assert names == ["opcua-sim[bess-01]", "opcua[bess-01]"]
        await ctx.wait_for(
            lambda c: (
                {"power_kw", "soc_pct", "state", "setpoint_kw"} <= {s.point for s in c.samples}
            ),
            20,
        )
        assert ctx.status_of("bess-01") is DeviceStatus.ONLINE
        assert all(s.quality is Quality.GOOD for s in ctx.samples)
        # the plant reacts to a setpoint: power ramps toward it, the state follows
        await driver.write("bess-01", "setpoint_kw", 40)
        await ctx.wait_for(lambda c: "discharging" in values(c, "state"), 10)
        await ctx.wait_for(lambda c: any(v > 30 for v in values(c, "power_kw")), 10)

"""The driver against a real asyncua server: both modes, quality, timestamps, deadband, writes."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

import pytest
from asyncua import ua
from opcua_helpers import device, running, values

from drivers.base import NotWritable, UnknownPoint, WriteFailed, WriteResult
from drivers.opcua.simulator import InverterSimulator
from gateway.model import DeviceStatus, Quality

pytestmark = pytest.mark.asyncio(loop_scope="module")

D = ua.VariantType.Double


async def test_polling_by_node_id_and_browse_path(sim: InverterSimulator) -> None:
    await sim.set("Power", 12.5, D)
    await sim.set("SoC", 61.0, D)
    cfg = device(
        sim.url,
        [
            {
                "name": "slow",
                "mode": "polling",
                "interval": 0.2,
                "batch_size": 1,
                "points": [
                    {"name": "power", "node": "ns=2;s=Inverter.Power"},
                    {"name": "soc", "path": "2:Inverter/2:SoC"},
                    {"name": "state", "node": "ns=2;s=Inverter.State"},
                ],
            }
        ],
    )
    async with running(cfg) as (_, ctx):
        await ctx.wait_for(lambda c: len(c.batches) >= 2, 10)
        assert ctx.status_of("inv-1") is DeviceStatus.ONLINE
        first = ctx.batches[0]
        # one batch per cycle even with batch_size 1 (three Read requests)
        assert [s.point for s in first] == ["power", "soc", "state"]
        assert [s.value for s in first] == [12.5, 61.0, "idle"]
        assert all(s.quality is Quality.GOOD for s in first)
        await sim.set("Power", -3.0, D)
        await ctx.wait_for(lambda c: -3.0 in values(c, "power"), 5)


async def test_subscription_delivers_changes(sim: InverterSimulator) -> None:
    await sim.set("Power", 1.0, D)
    cfg = device(
        sim.url,
        [
            {
                "name": "fast",
                "interval": 0.05,
                "points": [{"name": "power", "node": "ns=2;s=Inverter.Power"}],
            }
        ],
    )
    async with running(cfg) as (_, ctx):
        await ctx.wait_for(lambda c: 1.0 in values(c, "power"), 10)
        for v in (2.0, 3.0, 4.0):
            await sim.set("Power", v, D)
            await ctx.wait_for(lambda c, v=v: values(c, "power")[-1] == v, 5)
        await ctx.wait_for(lambda c: values(c, "power")[-1] == 4.0, 5)
        assert values(ctx, "power") == [1.0, 2.0, 3.0, 4.0]


@pytest.mark.parametrize("mode", ["subscription", "polling"])
async def test_status_code_becomes_quality(sim: InverterSimulator, mode: str) -> None:
    cfg = device(
        sim.url,
        [
            {
                "name": "g",
                "mode": mode,
                "interval": 0.05,
                "points": [{"name": "temp", "node": "ns=2;s=Inverter.Power"}],
            }
        ],
    )
    await sim.set("Power", 20.0, D)
    async with running(cfg) as (_, ctx):
        await ctx.wait_for(lambda c: 20.0 in values(c, "temp"), 10)
        await sim.set("Power", 21.0, D, ua.StatusCodes.UncertainLastUsableValue)
        await ctx.wait_for(lambda c: any(s.quality is Quality.UNCERTAIN for s in c.samples), 5)
        await sim.set("Power", 22.0, D, ua.StatusCodes.BadSensorFailure)
        await ctx.wait_for(lambda c: any(s.quality is Quality.BAD for s in c.samples), 5)
        await sim.set("Power", 23.0, D)
        await ctx.wait_for(lambda c: c.samples[-1].value == 23.0, 5)
        seen = [(s.value, s.quality) for s in ctx.samples]
        # polling may read a value twice; each distinct reading keeps its quality
        assert list(dict.fromkeys(seen)) == [
            (20.0, Quality.GOOD),
            (21.0, Quality.UNCERTAIN),
            (None, Quality.BAD),  # a Bad value must not be used (OPC-UA Part 4), so none is kept
            (23.0, Quality.GOOD),
        ]


async def test_unknown_node_is_bad_not_fatal(
    sim: InverterSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="drivers.opcua")
    cfg = device(
        sim.url,
        [
            {
                "name": "sub",
                "points": [
                    {"name": "ghost", "node": "ns=2;s=Does.Not.Exist"},
                    {"name": "lost", "path": "2:Inverter/2:Nope"},
                    {"name": "alien", "node": "nsu=urn:not:here;s=Power"},
                    {"name": "soc", "node": "nsu=urn:fieldgate:simulator;s=Inverter.SoC"},
                    {"name": "power", "node": "ns=2;s=Inverter.Power"},
                ],
            },
        ],
    )
    async with running(cfg) as (_, ctx):
        wanted = {"ghost", "lost", "alien", "power", "soc"}
        await ctx.wait_for(lambda c: wanted <= {s.point for s in c.samples}, 10)
        bad = {s.point for s in ctx.samples if s.quality is Quality.BAD}
        assert bad == {"ghost", "lost", "alien"}
        assert ctx.status_of("inv-1") is DeviceStatus.ONLINE
    assert "server refused to monitor point ghost" in caplog.text
    assert "browse path 2:Inverter/2:Nope of point lost does not resolve" in caplog.text
    assert "namespace urn:not:here of point alien is not on the server" in caplog.text


@pytest.mark.parametrize("setting", ["source", "server", "gateway"])
async def test_timestamp_choice(sim: InverterSimulator, setting: str) -> None:
    now = datetime.now(UTC).timestamp()
    source_ts, server_ts = now - 3600, now - 600
    dv = ua.DataValue(
        ua.Variant(7.5, D),
        SourceTimestamp=datetime.fromtimestamp(source_ts, UTC),  # type: ignore[arg-type]
        ServerTimestamp=datetime.fromtimestamp(server_ts, UTC),  # type: ignore[arg-type]
    )
    await sim.server.write_attribute_value(sim.nodes["SoC"], dv)
    cfg = device(
        sim.url,
        [
            {
                "mode": "polling",
                "interval": 0.2,
                "points": [{"name": "soc", "node": "ns=2;s=Inverter.SoC"}],
            }
        ],
        timestamp=setting,
    )
    async with running(cfg) as (_, ctx):
        await ctx.wait_for(lambda c: len(c.samples) >= 1, 10)
    ts = ctx.samples[0].ts_ms
    expected = {"source": source_ts, "server": server_ts, "gateway": now}[setting]
    tolerance = 5_000 if setting == "gateway" else 1
    assert abs(ts - expected * 1000) <= tolerance


async def test_absolute_deadband_suppresses_small_changes(sim: InverterSimulator) -> None:
    await sim.set("Power", 10.0, D)
    cfg = device(
        sim.url,
        [
            {
                "interval": 0.05,
                "deadband": {"type": "absolute", "value": 0.5},
                "points": [{"name": "power", "node": "ns=2;s=Inverter.Power"}],
            }
        ],
    )
    async with running(cfg) as (_, ctx):
        await ctx.wait_for(lambda c: 10.0 in values(c, "power"), 10)
        for v in (10.2, 10.4, 11.0, 11.3, 9.0):
            await sim.set("Power", v, D)
            await asyncio.sleep(0.12)
        await ctx.wait_for(lambda c: values(c, "power")[-1] == 9.0, 5)
        assert values(ctx, "power") == [10.0, 11.0, 9.0]


async def test_percent_deadband_uses_eu_range(sim: InverterSimulator) -> None:
    """SoC has EURange 0..100, so 2 % is 2.0 units. asyncua's server ignores percent
    deadbands; the driver enforces them itself."""
    await sim.set("SoC", 50.0, D)
    cfg = device(
        sim.url,
        [
            {
                "interval": 0.05,
                "points": [
                    {
                        "name": "soc",
                        "node": "ns=2;s=Inverter.SoC",
                        "deadband": {"type": "percent", "value": 2},
                    }
                ],
            }
        ],
    )
    async with running(cfg) as (_, ctx):
        await ctx.wait_for(lambda c: 50.0 in values(c, "soc"), 10)
        for v in (51.0, 51.9, 52.5, 53.0, 40.0):
            await sim.set("SoC", v, D)
            await asyncio.sleep(0.12)
        await ctx.wait_for(lambda c: values(c, "soc")[-1] == 40.0, 5)
        assert values(ctx, "soc") == [50.0, 52.5, 40.0]


async def test_writes_use_the_node_data_type(sim: InverterSimulator) -> None:
    cfg = device(
        sim.url,
        [
            {
                "mode": "polling",
                "interval": 0.5,
                "points": [
                    {"name": "setpoint", "node": "ns=2;s=Inverter.PowerSetpoint", "writable": True},
                    {"name": "max_current", "path": "2:Inverter/2:MaxCurrent", "writable": True},
                    {"name": "enabled", "node": "ns=2;s=Inverter.Enabled", "writable": True},
                    {"name": "power", "node": "ns=2;s=Inverter.Power"},
                ],
            }
        ],
    )
    async with running(cfg) as (driver, ctx):
        await ctx.wait_for(lambda c: c.status_of("inv-1") is DeviceStatus.ONLINE, 10)
        # an int to a Double node: no BadTypeMismatch
        result = await driver.write("inv-1", "setpoint", 25)
        assert result == WriteResult(25.0)
        assert sim.read("PowerSetpoint") == 25.0
        assert isinstance(sim.read("PowerSetpoint"), float)
        # an integral float to an Int32 node
        written = (await driver.write("inv-1", "max_current", 150.0)).written
        assert written == 150 and isinstance(written, int)  # as the Int32 node took it
        assert sim.read("MaxCurrent") == 150
        await driver.write("inv-1", "enabled", 0)
        assert sim.read("Enabled") is False
        with pytest.raises(WriteFailed, match="not an integer"):
            await driver.write("inv-1", "max_current", 1.5)
        with pytest.raises(WriteFailed, match="outside the Int32 range"):
            await driver.write("inv-1", "max_current", 2**40)
        with pytest.raises(NotWritable, match="not writable"):
            await driver.write("inv-1", "power", 1)
        with pytest.raises(UnknownPoint, match="no point"):
            await driver.write("inv-1", "nope", 1)
        assert sim.read("MaxCurrent") == 150  # nothing half-written
        await driver.write("inv-1", "enabled", True)


async def test_write_refused_by_server_is_reported(sim: InverterSimulator) -> None:
    """Power is read-only on the server: the driver reports the status, not success."""
    cfg = device(
        sim.url,
        [
            {
                "mode": "polling",
                "interval": 0.5,
                "points": [{"name": "power", "node": "ns=2;s=Inverter.Power", "writable": True}],
            }
        ],
    )
    async with running(cfg) as (driver, ctx):
        await ctx.wait_for(lambda c: c.status_of("inv-1") is DeviceStatus.ONLINE, 10)
        with pytest.raises(
            WriteFailed, match=r"server refused the write: Bad(UserAccessDenied|NotWritable)"
        ):
            await driver.write("inv-1", "power", 5)


async def test_write_while_offline_fails_cleanly() -> None:
    from drivers.opcua.simulator import free_port

    cfg = device(
        f"opc.tcp://127.0.0.1:{free_port()}",
        [
            {
                "points": [
                    {"name": "sp", "node": "ns=2;s=Inverter.PowerSetpoint", "writable": True}
                ],
            }
        ],
    )
    async with running(cfg) as (driver, ctx):
        await ctx.wait_for(lambda c: c.status_of("inv-1") is DeviceStatus.OFFLINE, 10)
        with pytest.raises(WriteFailed, match="not connected"):
            await driver.write("inv-1", "sp", 1)

"""Poll statistics of the OPC-UA driver against a real asyncua server: each Read of a polling
group, each connect attempt and each write is one request, with its latency; errors are
counted by kind. Subscription notifications are pushed by the server and are not requests."""

from __future__ import annotations

import pytest
from asyncua import ua
from opcua_helpers import device, running, values

from drivers.base import WriteFailed
from drivers.opcua.simulator import InverterSimulator, free_port
from drivers.testing import RecordingContext
from gateway.model import DeviceStatus

pytestmark = pytest.mark.asyncio(loop_scope="module")

D = ua.VariantType.Double


def poll_batches(ctx: RecordingContext) -> int:
    """Batches of the polling group (one per cycle; the subscription's hold only power)."""
    return sum(1 for b in ctx.batches if any(s.point == "soc" for s in b))


async def test_reads_and_connects_are_counted_and_a_stopped_server_gives_connection_errors(
) -> None:
    port = free_port()
    sim = InverterSimulator(port=port, period=3600)
    await sim.start()
    cfg = device(sim.url, [
        {"name": "plc", "mode": "polling", "interval": 0.05, "batch_size": 1, "points": [
            {"name": "soc", "node": "ns=2;s=Inverter.SoC"},
            {"name": "typo", "node": "ns=2;s=Inverter.SoCC"},  # BadNodeIdUnknown every read
        ]},
        {"name": "fast", "interval": 0.05,
         "points": [{"name": "power", "node": "ns=2;s=Inverter.Power"}]},
    ])
    try:
        async with running(cfg) as (_, ctx):
            stats = ctx.stats.of("inv-1")
            await ctx.wait_for(lambda c: poll_batches(c) >= 10, 15)
            assert stats.errors.get("connection", 0) == 0
            assert stats.last_error is not None
            assert stats.last_error["message"] == (
                "read of polling group plc: server answered BadNodeIdUnknown for point typo")
            await sim.stop()
            await ctx.wait_for(lambda c: c.status_of("inv-1") is DeviceStatus.OFFLINE, 10)
            await ctx.wait_for(lambda _: stats.errors.get("connection", 0) >= 3, 15)
            assert ctx.status_of("inv-1") is DeviceStatus.OFFLINE
        batches = poll_batches(ctx)
        snap = stats.snapshot()
    finally:
        await sim.stop()
    errors = snap["errors"]
    # 2 Reads per cycle (batch_size 1): the typo's is answered with a bad status, an
    # exception; at most one more Read per point was under way when the server went.
    assert batches <= errors["exception"] <= batches + 1
    ok = snap["requests"] - snap["error_total"]
    assert 1 + batches <= ok <= 1 + batches + 1  # the connect and the soc Reads
    assert set(errors) <= {"exception", "connection"}
    assert errors["connection"] >= 3  # the reconnect attempts against the stopped server
    assert snap["last_error"]["kind"] == "connection"
    assert snap["last_error"]["message"].startswith(f"connect to {sim.url}: ")
    assert 0 < snap["latency_ms"]["p50"] < 2000
    hist, total, count = stats.histogram()
    assert count == ok + errors["exception"]  # answered requests have a latency
    assert total > 0 and hist[-1][1] == count


async def test_subscription_changes_are_not_requests_but_writes_are(
    sim: InverterSimulator,
) -> None:
    cfg = device(sim.url, [{"interval": 0.05, "points": [
        {"name": "power", "node": "ns=2;s=Inverter.Power", "writable": True},
        {"name": "sp", "node": "ns=2;s=Inverter.PowerSetpoint", "writable": True},
    ]}])
    async with running(cfg) as (driver, ctx):
        stats = ctx.stats.of("inv-1")
        await ctx.wait_for(lambda c: c.status_of("inv-1") is DeviceStatus.ONLINE, 10)
        for n in range(1, 6):
            await sim.set("Power", 100.0 + n, D)
            await ctx.wait_for(lambda c, n=n: 100.0 + n in values(c, "power"), 10)
        assert stats.snapshot()["requests"] == 1  # the connect; the five changes are pushed
        assert stats.snapshot()["error_total"] == 0
        await driver.write("inv-1", "sp", 1500.0)
        assert sim.read("PowerSetpoint") == 1500.0
        with pytest.raises(WriteFailed, match="server refused the write"):
            await driver.write("inv-1", "power", 5.0)  # read-only on the server
        snap = stats.snapshot()
    assert snap["requests"] == 3
    assert snap["errors"] == {"exception": 1}
    assert snap["last_error"]["message"].startswith("write of point power: server answered Bad")

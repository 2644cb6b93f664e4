"""Server restarts and a server that is down at start: offline, backoff, back online with the
subscription re-created, and the task never dies."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import socket

import pytest
from asyncua import ua
from opcua_helpers import device, running, values

from drivers.opcua.driver import OpcuaDriver
from drivers.opcua.simulator import InverterSimulator, free_port
from drivers.testing import RecordingContext
from gateway.clock import FakeClock
from gateway.model import DeviceStatus
from tests.support.wait import let_tasks_run, wait_until

pytestmark = pytest.mark.asyncio(loop_scope="module")

D = ua.VariantType.Double


def statuses(ctx: object) -> list[DeviceStatus]:
    return [s for dev, s, _ in ctx.statuses if dev == "inv-1"]  # type: ignore[attr-defined]


async def test_server_restart_mid_run(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="drivers.opcua")
    port = free_port()
    sim = InverterSimulator(port=port, period=3600)
    await sim.start()
    cfg = device(
        sim.url,
        [
            {
                "name": "fast",
                "interval": 0.05,
                "points": [{"name": "power", "node": "ns=2;s=Inverter.Power"}],
            },
            {
                "name": "slow",
                "mode": "polling",
                "interval": 0.2,
                "points": [{"name": "soc", "path": "2:Inverter/2:SoC"}],
            },
        ],
    )
    restarted: InverterSimulator | None = None
    try:
        async with running(cfg) as (driver, ctx):
            await sim.set("Power", 5.0, D)
            await ctx.wait_for(lambda c: 5.0 in values(c, "power"), 10)
            assert statuses(ctx) == [DeviceStatus.ONLINE]

            await sim.stop()
            await ctx.wait_for(lambda c: c.status_of("inv-1") is DeviceStatus.OFFLINE, 10)
            assert f"no connection to {sim.url}" in caplog.text
            assert "device marked offline, reconnecting in" in caplog.text
            reason = ctx.statuses[-1][2]
            assert reason  # the status carries why

            restarted = InverterSimulator(port=port, period=3600)
            await restarted.start()
            await restarted.set("Power", 42.0, D)
            await ctx.wait_for(lambda c: c.status_of("inv-1") is DeviceStatus.ONLINE, 15)
            # the subscription was re-created on the new server: changes flow again
            await ctx.wait_for(lambda c: 42.0 in values(c, "power"), 10)
            await restarted.set("Power", 43.0, D)
            await ctx.wait_for(lambda c: 43.0 in values(c, "power"), 10)
            n = len(values(ctx, "soc"))
            await ctx.wait_for(lambda c: len(values(c, "soc")) > n + 1, 10)  # polling resumed too
            assert statuses(ctx)[:3] == [
                DeviceStatus.ONLINE,
                DeviceStatus.OFFLINE,
                DeviceStatus.ONLINE,
            ]
            assert driver.sessions["inv-1"].connections == 2
        connected = [r for r in caplog.records if f"connected to {sim.url}" in r.getMessage()]
        assert len(connected) == 2
        offline = [r for r in caplog.records if "device marked offline" in r.getMessage()]
        assert offline[0].levelno == logging.WARNING  # going offline is a warning
        assert "(attempt 1)" in offline[0].getMessage()
    finally:
        await sim.stop()
        if restarted is not None:
            await restarted.stop()


async def test_server_down_at_start_then_appears() -> None:
    port = free_port()
    cfg = device(
        f"opc.tcp://127.0.0.1:{port}",
        [
            {"points": [{"name": "power", "node": "ns=2;s=Inverter.Power"}]},
        ],
    )
    sim = InverterSimulator(port=port, period=3600)
    try:
        async with running(cfg) as (_, ctx):
            await ctx.wait_for(lambda c: c.status_of("inv-1") is DeviceStatus.OFFLINE, 10)
            assert "refused" in ctx.statuses[-1][2].lower()
            await sim.start()
            await sim.set("Power", 7.0, D)
            await ctx.wait_for(lambda c: 7.0 in values(c, "power"), 15)
            assert ctx.status_of("inv-1") is DeviceStatus.ONLINE
    finally:
        await sim.stop()


class BlackHoleProxy:
    """A TCP proxy that can silently stop forwarding (a cable pulled, a switch hung): the
    socket stays open, nothing arrives. Only the watchdog can notice that."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.frozen = asyncio.Event()
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await src.read(65536):
                    if self.frozen.is_set():
                        continue  # swallow: the peer never hears of it
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_w), pipe(up_r, writer))

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()


async def test_silent_network_loss_is_detected_by_the_watchdog(
    sim: InverterSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="drivers.opcua")
    proxy = BlackHoleProxy(sim.port)
    await proxy.start()
    cfg = device(
        f"opc.tcp://127.0.0.1:{proxy.port}",
        [
            {"interval": 0.05, "points": [{"name": "power", "node": "ns=2;s=Inverter.Power"}]},
            {
                "name": "poll",
                "mode": "polling",
                "interval": 0.2,
                "points": [{"name": "soc", "node": "ns=2;s=Inverter.SoC"}],
            },
        ],
    )
    try:
        async with running(cfg) as (_, ctx):
            await sim.set("Power", 11.0, D)
            await ctx.wait_for(lambda c: 11.0 in values(c, "power"), 10)
            proxy.frozen.set()
            t0 = asyncio.get_running_loop().time()
            await ctx.wait_for(lambda c: c.status_of("inv-1") is DeviceStatus.OFFLINE, 10)
            detected_after = asyncio.get_running_loop().time() - t0
            assert detected_after < 5  # watchdog_interval 0.5 s, request timeout 2 s
            assert "watchdog" in ctx.statuses[-1][2]
            proxy.frozen.clear()
            await sim.set("Power", 12.0, D)
            await ctx.wait_for(lambda c: 12.0 in values(c, "power"), 15)
            assert ctx.status_of("inv-1") is DeviceStatus.ONLINE
            n = len(values(ctx, "soc"))  # polling runs again on the new connection
            await ctx.wait_for(lambda c: len(values(c, "soc")) > n + 1, 10)
    finally:
        await proxy.stop()


async def test_one_dead_device_does_not_stop_another(
    sim: InverterSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="drivers.opcua")
    good = device(
        sim.url, [{"points": [{"name": "power", "node": "ns=2;s=Inverter.Power"}]}], id="good"
    )
    dead = device(
        f"opc.tcp://127.0.0.1:{free_port()}",
        [{"points": [{"name": "power", "node": "ns=2;s=Inverter.Power"}]}],
        id="dead",
        reconnect={"initial_delay": 0.05, "max_delay": 0.1},
    )
    async with running(good, dead) as (_, ctx):
        await sim.set("Power", 8.0, D)
        await ctx.wait_for(
            lambda c: any(s.device == "good" and s.value == 8.0 for s in c.samples), 10
        )
        await ctx.wait_for(
            lambda c: "(attempt 12)" in caplog.text, 10
        )  # the dead one keeps trying, quietly
        assert ctx.status_of("good") is DeviceStatus.ONLINE
        assert ctx.status_of("dead") is DeviceStatus.OFFLINE
    dead_records = [r for r in caplog.records if "opcua device dead" in r.getMessage()]
    warnings = [r for r in dead_records if r.levelno == logging.WARNING]
    assert [r.getMessage().rsplit("(attempt ", 1)[1] for r in warnings][:2] == ["1)", "11)"]
    assert len(dead_records) > len(warnings)


def _errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    """ERROR and above from anything but the test server's own log."""
    return [f"{r.name}: {r.getMessage()}" for r in caplog.records
            if r.levelno >= logging.ERROR and not r.name.startswith("asyncua.server")]


async def test_routine_server_restart_logs_no_error(caplog: pytest.LogCaptureFixture) -> None:
    """A PLC reboot is routine: our WARNING says so; asyncua's publish loop crashing on the
    dead session ("Publish iteration crashed") must not reach ERROR."""
    caplog.set_level(logging.DEBUG)
    port = free_port()
    sim = InverterSimulator(port=port, period=3600)
    await sim.start()
    cfg = device(sim.url, [
        {"interval": 0.05, "points": [{"name": "power", "node": "ns=2;s=Inverter.Power"}]},
        {"name": "slow", "mode": "polling", "interval": 0.1,
         "points": [{"name": "soc", "node": "ns=2;s=Inverter.SoC"}]},
    ])
    restarted = InverterSimulator(port=port, period=3600)
    try:
        async with running(cfg) as (_, ctx):
            await sim.set("Power", 5.0, D)
            await ctx.wait_for(lambda c: 5.0 in values(c, "power"), 10)
            await sim.stop()
            await ctx.wait_for(lambda c: c.status_of("inv-1") is DeviceStatus.OFFLINE, 10)
            # the outage, until asyncua's publish loop crashed
            await wait_until(lambda: any("Publish iteration crashed" in r.getMessage()
                                         for r in caplog.records), 10, what="the crash")
            await restarted.start()
            await restarted.set("Power", 6.0, D)
            await ctx.wait_for(lambda c: 6.0 in values(c, "power"), 15)
    finally:
        await sim.stop()
        await restarted.stop()
    assert _errors(caplog) == []
    routed = [r for r in caplog.records if r.name == "drivers.opcua.liblog"]
    assert routed and all(r.levelno == logging.DEBUG for r in routed)
    assert any("Publish iteration crashed" in r.getMessage() for r in routed)


async def test_unknown_node_in_a_polling_group_warns_once_per_connection(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="drivers.opcua")
    port = free_port()
    sim = InverterSimulator(port=port, period=3600)
    await sim.start()
    cfg = device(sim.url, [{"name": "plc", "mode": "polling", "interval": 0.05, "points": [
        {"name": "soc", "node": "ns=2;s=Inverter.SoC"},
        {"name": "typo", "node": "ns=2;s=Inverter.SoCC"},
    ]}])
    restarted = InverterSimulator(port=port, period=3600)

    def warned() -> list[str]:
        return [r.getMessage() for r in caplog.records
                if r.levelno == logging.WARNING and "cannot read point" in r.getMessage()]

    try:
        async with running(cfg) as (_, ctx):
            await ctx.wait_for(lambda c: len(values(c, "typo")) >= 5, 10)
            assert set(values(ctx, "typo")) == {None}
            assert warned() == [
                "opcua device inv-1: server cannot read point typo (node ns=2;s=Inverter.SoCC) "
                "of polling group plc: BadNodeIdUnknown; it is reported bad every cycle - check "
                "the node id in the config (browse with 'fieldgate opcua browse')"]
            await sim.stop()
            await ctx.wait_for(lambda c: c.status_of("inv-1") is DeviceStatus.OFFLINE, 10)
            await restarted.start()
            await ctx.wait_for(lambda c: c.status_of("inv-1") is DeviceStatus.ONLINE, 15)
            n = len(values(ctx, "typo"))
            await ctx.wait_for(lambda c: len(values(c, "typo")) >= n + 5, 10)
            assert len(warned()) == 2  # once more on the new connection, not per cycle
    finally:
        await sim.stop()
        await restarted.stop()


async def test_probes_often_in_the_first_minute_of_an_outage_then_backs_off(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """No server on the port; the clock is fake, so a long outage takes no real time."""
    caplog.set_level(logging.INFO, logger="drivers.opcua")
    # Hold the port (bound, not listening) so every attempt is refused at once: a port that
    # is merely free may be taken meanwhile by a server of another test that never answers.
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    port = holder.getsockname()[1]
    cfg = device(f"opc.tcp://127.0.0.1:{port}",
                 [{"points": [{"name": "power", "node": "ns=2;s=Inverter.Power"}]}],
                 reconnect={"initial_delay": 1.0, "max_delay": 30.0})
    assert cfg.reconnect.max_delay_first_minute == 2.0  # the default
    clock = FakeClock()
    ctx = RecordingContext(clock=clock)
    driver = OpcuaDriver([cfg], ctx)
    [(_, factory)] = list(driver.tasks())
    task = asyncio.create_task(factory())
    waits: list[float] = []
    try:
        await wait_until(lambda: clock.monotonic() >= 200, 60, interval=0.01,
                         what="200 s on the fake clock")
        waits = [float(r.getMessage().split("reconnecting in ")[1].split(" s")[0])
                 for r in caplog.records if "reconnecting in" in r.getMessage()]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await driver.close()
        holder.close()
    started = [sum(waits[:i]) for i in range(len(waits))]  # when each wait began
    # The driver counts the minute from its first failure, the test from the first logged
    # wait: judge the first minute with a few seconds of margin at its end.
    first = [w for t, w in zip(started, waits, strict=True) if t < 55]
    # After the minute the backoff starts again from about 2 s and doubles: it begins at the
    # wait just before the first one clearly above the first-minute cap.
    k = next(i for i, w in enumerate(waits) if w > 2.0 * 1.25 and started[i] >= 50)
    later = waits[k - 1:]
    assert len(first) >= 27 and max(first) <= 2.0  # a restarting server is seen within 2 s
    assert later[:5] == pytest.approx([2, 4, 8, 16, 30], rel=0.21)  # then the usual backoff
    assert max(later) <= 30 * 1.2


def _refused_port() -> socket.socket:
    """A port held bound but not listening: every connect is refused at once, and no server
    of another test can take it meanwhile."""
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    return holder


async def test_cancel_during_an_outage_always_ends_the_task() -> None:
    """A reload or shutdown cancels the device task. Against a refused port the connect
    fails at once, so a cancel often arrives just after the failure: Python 3.11's
    ``asyncio.wait_for`` (inside asyncua's connect) then raises the connection error instead
    of the cancel. The task must still end, every time, or it keeps reconnecting as a zombie."""
    holder = _refused_port()
    cfg = device(f"opc.tcp://127.0.0.1:{holder.getsockname()[1]}",
                 [{"points": [{"name": "power", "node": "ns=2;s=Inverter.Power"}]}])
    rng = random.Random(12)
    try:
        for attempt in range(60):
            ctx = RecordingContext(clock=FakeClock())  # no real waits: connect back to back
            driver = OpcuaDriver([cfg], ctx)
            [(_, factory)] = list(driver.tasks())
            task = asyncio.create_task(factory())
            await let_tasks_run(rng.randint(1, 60))  # cancel at a different moment each time
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=10)
            if not done:
                task.cancel()  # do not leave it running for the next tests
            assert done and task.cancelled(), f"cancel {attempt} was lost: the task runs on"
            await driver.close()
    finally:
        holder.close()


@pytest.mark.parametrize("peer", ["refused", "silent"])
async def test_every_connect_attempt_ends_in_bounded_real_time(
    peer: str, caplog: pytest.LogCaptureFixture
) -> None:
    """On the real clock, against a refused port and against a peer that accepts TCP but
    never answers the OPC-UA Hello, each attempt ends within 3 request timeouts, the retries
    go on, and a cancel ends the task."""
    caplog.set_level(logging.INFO, logger="drivers.opcua")
    holder: socket.socket | None = None
    server: asyncio.Server | None = None
    silent: list[asyncio.StreamWriter] = []
    if peer == "refused":
        holder = _refused_port()
        port = holder.getsockname()[1]
    else:
        async def swallow(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            silent.append(w)  # keep the socket open, say nothing

        server = await asyncio.start_server(swallow, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
    timeout = 0.5
    cfg = device(f"opc.tcp://127.0.0.1:{port}",
                 [{"points": [{"name": "power", "node": "ns=2;s=Inverter.Power"}]}],
                 request_timeout=timeout,
                 reconnect={"initial_delay": 0.05, "max_delay": 0.1})
    try:
        async with running(cfg) as (_, ctx):
            await wait_until(lambda: "(attempt 5)" in caplog.text, 30, what="five attempts")
            assert ctx.status_of("inv-1") is DeviceStatus.OFFLINE
            # each failed attempt is one failed request in the poll statistics, by its kind
            errors = ctx.stats.of("inv-1").errors
            assert set(errors) == {"connection" if peer == "refused" else "timeout"}
            assert sum(errors.values()) >= 5
    finally:
        if holder is not None:
            holder.close()
        if server is not None:
            server.close()
            for w in silent:
                w.close()
    tries = [r for r in caplog.records if "reconnecting in" in r.getMessage()][:5]
    reason = "connection refused" if peer == "refused" else "timed out"
    assert all(reason in r.getMessage() for r in tries), tries[0].getMessage()
    for before, after in itertools.pairwise(tries):
        waited = float(before.getMessage().split("reconnecting in ")[1].split(" s")[0])
        attempt = after.created - before.created - waited
        assert attempt <= 3 * timeout + 1.0, f"one connect attempt took {attempt:.1f} s"

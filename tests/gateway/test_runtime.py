"""The daemon: supervision, buffer cap, reload, and the control socket, in-process."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Literal

import pytest
import yaml

from drivers.base import (
    DeviceConfig,
    Driver,
    DriverContext,
    DriverSpec,
    TaskFactory,
    register_driver,
)
from drivers.registry import _REGISTRY
from gateway.control import send_command
from gateway.model import DeviceStatus, Sample
from gateway.store.db import OVERFLOW_EVENT
from gateway.store.stats import BufferStats
from tests.support.app import running_app
from tests.support.wait import wait_until


class CrashyDevice(DeviceConfig):
    type: Literal["crashy"]
    crash_every: int = 3


class CrashyDriver(Driver):
    """Emits a sample per tick and raises every ``crash_every`` ticks."""

    starts = 0

    def __init__(self, devices: Sequence[CrashyDevice], ctx: DriverContext) -> None:
        super().__init__(devices, ctx)
        self.crash_every = devices[0].crash_every

    def tasks(self) -> Iterable[tuple[str, TaskFactory]]:
        yield "crashy[poll]", self.run

    async def run(self) -> None:
        type(self).starts += 1
        device = next(iter(self.devices))
        for tick in range(self.crash_every):
            await self.ctx.emit([Sample(device, "tick", self.ctx.clock.now_ms(), tick)])
            await self.ctx.clock.sleep(0.01)
        raise RuntimeError("simulated protocol bug")


@pytest.fixture
def crashy_driver() -> Iterator[None]:
    """Registered for its tests only: other tests list the known device types."""
    register_driver(DriverSpec("crashy", CrashyDevice, CrashyDriver))
    yield
    _REGISTRY.pop("crashy", None)


@pytest.mark.usefixtures("crashy_driver")
async def test_crashing_driver_is_restarted_and_others_go_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="gateway.supervisor")
    cfg = {"devices": [
        {"id": "bad", "type": "crashy"},
        {"id": "good", "type": "simulated", "interval": 0.02},
    ]}
    CrashyDriver.starts = 0
    async with running_app(cfg, tmp_path) as app:
        stats = app.supervisor.stats["crashy[poll]"]
        await wait_until(lambda: stats.restarts >= 2, 20,
                         what="the crashed task is restarted twice (with backoff)")
        assert "simulated protocol bug" in (stats.last_error or "")
        good = await app.store.read_telemetry(0, 1_000_000)
        devices = {row[0] for chunk in good for row in chunk.rows}
        assert devices == {"bad", "good"}
        assert not app.supervisor.tasks["sim[good]"].done(), "the other poller keeps running"
    assert any("task crashy[poll] crashed" in r.getMessage() for r in caplog.records)


async def test_buffer_cap_drops_oldest_and_daemon_stays_alive(tmp_path: Path) -> None:
    cfg = {
        "store": {"max_bytes": 1_100_000},
        "devices": [{"id": "flood", "type": "simulated", "interval": 0.005,
                     "extra_points": 3000}],
    }
    async with running_app(cfg, tmp_path) as app:
        await app.store.register_consumer("test")
        async def dropped() -> BufferStats | None:
            stats = await app.store.stats()
            return stats if stats.dropped_total > 0 else None

        stats = await wait_until(dropped, 60, what="the buffer cap dropped the oldest rows")
        assert stats.payload_bytes <= 1_100_000

        async def ingest_goes_on() -> bool:
            return (await app.store.stats()).next_seq > stats.next_seq

        await wait_until(ingest_goes_on, 30, what="ingest goes on after the cap is reached")

        async def overflow_reported() -> bool:
            events = await app.store.read_events("test", 1000)
            return OVERFLOW_EVENT in [e.event.type for e in events]

        await wait_until(overflow_reported, 10, what="a buffer_overflow event")
        assert (await app.store.stats()).payload_bytes <= 1_100_000


async def test_device_status_event_and_reload_keeps_buffer(tmp_path: Path) -> None:
    cfg = {"devices": [{"id": "m1", "type": "simulated", "interval": 0.02}]}
    async with running_app(cfg, tmp_path) as app:
        async def has_samples() -> bool:
            return (await app.store.stats()).next_seq > 1

        await wait_until(lambda: app.status.current("m1") is DeviceStatus.ONLINE,
                         what="m1 online")
        await wait_until(has_samples, what="samples in the buffer")
        seq_before = (await app.store.stats()).next_seq
        cfg["devices"].append({"id": "m2", "type": "simulated", "interval": 0.02})
        assert app.config_path is not None
        text = yaml.safe_load(app.config_path.read_text())
        text["devices"] = cfg["devices"]
        app.config_path.write_text(yaml.safe_dump(text))
        reply = await app.commands.execute("reload", {})
        assert reply == {"ok": True, "result": {"reloading": True, "devices": 2}}
        await wait_until(lambda: "m2" in app.device_driver and app.ready.is_set(),
                         what="the reload started m2")

        async def grew() -> BufferStats | None:
            stats = await app.store.stats()
            return stats if stats.next_seq > seq_before else None

        stats = await wait_until(grew, what="new samples after the reload")
        assert stats.acked_seq == 0, "the buffer survives"


async def test_reload_with_a_broken_file_changes_nothing(tmp_path: Path) -> None:
    async with running_app({"devices": []}, tmp_path) as app:
        assert app.config_path is not None
        app.config_path.write_text(app.config_path.read_text() + "bogus: 1\n")
        reply = await app.commands.execute("reload", {})
        assert reply["ok"] is False
        assert reply["error"]["code"] == "bad_config"
        assert "bogus: unknown key" in reply["error"]["details"][0]


async def test_control_socket_answers_commands(tmp_path: Path) -> None:
    cfg = {"devices": [{"id": "inv", "type": "simulated", "kind": "inverter"}]}
    async with running_app(cfg, tmp_path) as app:
        ok = await send_command(app.state_dir, "write",
                                {"device": "inv", "point": "power_limit_w", "value": 500})
        assert ok["ok"] and ok["result"]["written"] == 500.0
        bad = await send_command(app.state_dir, "write", {"device": "inv", "point": 3})
        assert bad["error"]["code"] == "bad_arguments"
        fields = {d["field"] for d in bad["error"]["details"]}
        assert fields == {"point", "value"}
        unknown = await send_command(app.state_dir, "nope", {})
        assert unknown["error"]["code"] == "unknown_command"

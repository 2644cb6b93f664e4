"""A plugin that raises, one that hangs and one that is slow: the others still run, ingest is
not delayed, and the log names the plugin."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import pytest

from gateway.model import Event
from hooks.spec import hookimpl
from tests.hooks.support import SIM, component, plugin_observers, wait_for
from tests.support.app import running_app

ALARM = {"alarm_id": "a-1", "rule": "r", "kind": "threshold", "severity": "major",
         "device": "m1", "point": "power_w", "code": None, "message": "m", "value": 1,
         "started_ts": 1, "count": 1}


class Log:
    def __init__(self) -> None:
        self.seen: list[tuple[str, float]] = []


class Raiser:
    @hookimpl
    async def on_alarm_created(self, alarm_event: Any) -> None:
        raise RuntimeError("boom in raiser")


class Hanger:
    @hookimpl
    async def on_alarm_created(self, alarm_event: Any) -> None:
        await asyncio.Event().wait()  # never returns: the hook timeout cancels it


class BlockingSync:
    """A plain function that blocks: it runs in a worker thread, so the loop goes on."""

    @hookimpl
    def on_alarm_created(self, alarm_event: Any) -> None:
        time.sleep(1.0)


class Slow:
    def __init__(self, log: Log) -> None:
        self.log = log

    @hookimpl
    async def on_alarm_created(self, alarm_event: Any) -> None:
        # Returns only once the good plugin ran: that happens only if they run concurrently.
        await wait_for(lambda: any(name == "good" for name, _ in self.log.seen), timeout=5)
        self.log.seen.append(("slow", time.monotonic()))


class Good:
    def __init__(self, log: Log) -> None:
        self.log = log

    @hookimpl
    async def on_alarm_created(self, alarm_event: Any, db: Any) -> None:
        self.log.seen.append(("good", time.monotonic()))


def _cfg(**plugins: Any) -> dict[str, Any]:
    return {"devices": [SIM], "plugins": {"entry_points": False, **plugins}}


async def test_event_hook_isolation(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    log = Log()
    async with running_app(_cfg(timeout=0.6), tmp_path) as app:
        comp = component(app)
        for name, plugin in (("raiser", Raiser()), ("hanger", Hanger()),
                             ("blocking-sync", BlockingSync()), ("slow", Slow(log)),
                             ("good", Good(log))):
            comp.add_plugin(plugin, name)
        seq_before = (await app.store.stats()).next_seq
        t0 = time.monotonic()
        await app.pipeline.add_event(Event("alarm_created", ALARM, device="m1", id="ev-1"))
        await wait_for(lambda: [s for s in log.seen if s[0] == "good"])
        # Concurrent: the good plugin did not wait for the slow or hanging ones.
        assert log.seen[0][0] == "good" and log.seen[0][1] - t0 < 0.3
        seq_during = (await app.store.stats()).next_seq
        await wait_for(lambda: comp.runner.stat("hanger", "on_alarm_created").timeouts
                       and comp.runner.stat("blocking-sync", "on_alarm_created").timeouts,
                       timeout=3)
        assert [s[0] for s in log.seen] == ["good", "slow"]
        stats = comp.runner.snapshot()
        assert stats["raiser"]["on_alarm_created"]["errors"] == 1
        assert stats["hanger"]["on_alarm_created"]["timeouts"] == 1
        assert stats["blocking-sync"]["on_alarm_created"]["timeouts"] == 1
        assert stats["good"]["on_alarm_created"]["errors"] == 0
        # Ingest went on while plugins hung (20 samples/s per point at interval 0.05).
        assert seq_during > seq_before
        assert (await app.store.stats()).next_seq > seq_during + 20
        reply = await app.commands.execute("plugins.stats", {})
        assert reply["result"]["hooks"]["hanger"]["on_alarm_created"]["timeouts"] == 1
    text = caplog.text
    assert "plugin raiser: on_alarm_created raised RuntimeError: boom in raiser" in text
    assert "plugin hanger: on_alarm_created did not finish within 0.6 s" in text
    assert "plugin blocking-sync" in text


class EnergyRaiser:
    @hookimpl
    async def on_energy_data_received(self, data_point: Any) -> None:
        if data_point.point == "voltage_v":
            raise ValueError("bad sample handling")


class EnergyHanger:
    @hookimpl
    async def on_energy_data_received(self, data_point: Any) -> None:
        await asyncio.Event().wait()  # never returns: the hook timeout cancels it


async def test_energy_hook_isolation(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    cfg = _cfg(energy_queue_samples=10, energy_batch_timeout=0.2)
    async with running_app(cfg, tmp_path) as app:
        comp = component(app)
        assert comp.energy.feeds == {}  # nobody implements it: no observer, no cost
        assert plugin_observers(app) == []
        comp.add_plugin(EnergyRaiser(), "energy-raiser")
        comp.add_plugin(EnergyHanger(), "energy-hanger")
        hanger = comp.energy.feeds["energy-hanger"]
        raiser = comp.energy.feeds["energy-raiser"]
        seq0 = (await app.store.stats()).next_seq
        await wait_for(lambda: hanger.dropped_samples > 0, timeout=5)
        await wait_for(
            lambda: comp.runner.stat("energy-hanger", "on_energy_data_received").timeouts >= 2)
        # Ingest never waited for the plugins.
        assert (await app.store.stats()).next_seq > seq0 + 20
        # The hanging plugin's drops are its own: the other one got every sample.
        assert raiser.dropped_samples == 0
        committed = (await app.store.stats()).next_seq - seq0
        await wait_for(lambda: raiser.delivered_samples >= committed)
        stats = comp.runner.snapshot()
        assert stats["energy-raiser"]["on_energy_data_received"]["errors"] >= 1
        assert stats["energy-hanger"]["on_energy_data_received"]["timeouts"] >= 1
        reply = (await app.commands.execute("plugins.stats", {}))["result"]
        assert reply["energy"]["plugins"]["energy-hanger"]["dropped_samples"] > 0
        assert reply["energy"]["plugins"]["energy-raiser"]["dropped_samples"] == 0
    assert "plugin energy-raiser: on_energy_data_received raised on 1 of" in caplog.text
    assert "plugin energy-hanger: on_energy_data_received did not get through" in caplog.text
    assert ("plugin energy-hanger: on_energy_data_received is slower than ingest: dropped"
            in caplog.text)
    assert "plugin energy-raiser: on_energy_data_received is slower" not in caplog.text

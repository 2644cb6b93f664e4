"""A graceful stop closes every charger's websocket: those offline events say
``planned: true`` (and the hook gets ``planned=True``); a charger that drops off while the
gateway runs does not."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from drivers.ocpp.simulator import SimCharger
from tests.drivers.ocpp.conftest import PASSWORD, charger
from tests.hooks.support import config, plugin, wait_for
from tests.support.app import running_app

WATCHER = '''
from hooks.base import CustomerHooks


class Watcher(CustomerHooks):
    def __init__(self):
        self.seen = []

    async def on_device_status_changed(self, device, old_status, new_status, db, reason,
                                       planned):
        self.seen.append((device.id, new_status, reason, planned))


hooks = Watcher()
'''


def _site(tmp_path: Path) -> dict[str, Any]:
    cfg = config(tmp_path, WATCHER)
    server = {"host": "127.0.0.1", "port": 0, "call_timeout": 2.0}
    cfg["devices"] = [{"id": "csms", "type": "ocpp", "role": "server", "server": server},
                      charger("cp-1").model_dump(exclude_defaults=True)]
    return cfg


async def _connect(app: Any) -> SimCharger:
    server = app.drivers["ocpp"].server
    await asyncio.wait_for(server.ready.wait(), 5)
    sim = SimCharger("cp-1", "1.6", f"ws://127.0.0.1:{server.port}/ocpp", password=PASSWORD)
    await sim.connect()
    assert await sim.boot() == "Accepted"
    return sim


async def test_offline_at_a_graceful_stop_is_planned(tmp_path: Path) -> None:
    cfg = _site(tmp_path)
    async with running_app(cfg, tmp_path) as app:
        watcher = plugin(app)
        sim = await _connect(app)
        await wait_for(lambda: ("cp-1", "online") in [s[:2] for s in watcher.seen])
        await sim.disconnect()  # the charger drops off: not planned
        await wait_for(lambda: ("cp-1", "offline") in [s[:2] for s in watcher.seen])
        (dropped,) = [s for s in watcher.seen if s[:2] == ("cp-1", "offline")]
        assert dropped == ("cp-1", "offline", "websocket closed", False)
        sim = await _connect(app)
        await wait_for(lambda: [s[:2] for s in watcher.seen].count(("cp-1", "online")) == 2)
    # The stop closed its websocket; the event is delivered now or after the restart.
    async with running_app(cfg, tmp_path) as app:
        await wait_for(lambda: len([s for s in watcher.seen if s[:2] == ("cp-1", "offline")])
                       == 2, timeout=10)
        stopped = [s for s in watcher.seen if s[:2] == ("cp-1", "offline")][1]
        assert stopped == ("cp-1", "offline", "websocket closed", True)
        assert plugin(app) is watcher  # unchanged code: the same module across the runs
    await sim.disconnect()

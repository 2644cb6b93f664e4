"""``reload`` rebuilds with the config it validated, and a rebuild that fails anyway leaves
the gateway running its previous config."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.components import (
    Component,
    ComponentContext,
    ComponentSpec,
    register_component,
    unregister_component,
)
from gateway.config.base import StrictModel
from gateway.errors import StartupError
from gateway.model import Event, Sample
from gateway.runtime import App
from gateway.store import Store
from tests.hooks.support import wait_for
from tests.support.app import running_app

M1 = {"id": "m1", "type": "simulated", "interval": 0.02}
M2 = {"id": "m2", "type": "simulated", "interval": 0.02}


def rewrite(app: App, **sections: Any) -> None:
    assert app.config_path is not None
    data = yaml.safe_load(app.config_path.read_text())
    data.update(sections)
    app.config_path.write_text(yaml.safe_dump(data))


async def test_reload_uses_the_config_it_validated(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Saving a typo right after the reply used to kill the daemon: the runtime read the
    file again after the drain, without error handling."""
    caplog.set_level(logging.WARNING)
    async with running_app({"devices": [M1]}, tmp_path) as app:
        runs = app.started_runs
        rewrite(app, devices=[M1, M2])
        reply = await app.commands.execute("reload", {})
        assert reply == {"ok": True, "result": {"reloading": True, "devices": 2}}
        assert app.config_path is not None
        # No await since the reply: the rebuild has not begun when the typo lands.
        app.config_path.write_text("devices: [oops\n")
        await wait_for(lambda: app.ready.is_set() and app.started_runs > runs)
        assert set(app.device_driver) == {"m1", "m2"}
        assert app.reload_error is None
    # The read cursor a reload left open made the checkpoint at close fail.
    assert "WAL checkpoint at close failed" not in caplog.text


async def test_readers_cancelled_at_reload_leave_no_statement_open(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A reload (and a stop) cancels every reader of the store. A reader cancelled between
    its query and its fetch left the executed statement alive in the task's traceback, so
    the checkpoint at close failed: "WAL checkpoint at close failed (database table is
    locked)". Cancel readers at every point of their call, keep the tasks (the supervisor
    does), and check that nothing is left open."""
    caplog.set_level(logging.WARNING, logger="gateway.store")
    store = Store(tmp_path / "b.db")
    await store.open()
    await store.register_consumer("c")
    await store.add_events([Event("x", {"i": i}) for i in range(5)])
    await store.append_samples([Sample("m", "p", 1_000, 1.0)])
    kept = []
    for yields in range(30):
        for read in (store.read_events("c"), store.read_telemetry_raw(0, 100),
                     store.kv("k").items(), store.query("SELECT * FROM events")):
            task = asyncio.create_task(read)
            for _ in range(yields % 6):  # cancel at each step of the call: yield, not wait
                await asyncio.sleep(0)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            kept.append(task)
    busy = await store.query("SELECT sql FROM sqlite_stmt WHERE busy "
                             "AND sql NOT LIKE '%sqlite_stmt%'")
    assert busy == []
    await store.close()
    assert "WAL checkpoint at close failed" not in caplog.text


async def test_writers_cancelled_at_reload_leave_no_transaction_open(tmp_path: Path) -> None:
    """A writer cancelled while its BEGIN or COMMIT ran on the connection's thread left the
    transaction open (the next one failed: "cannot start a transaction within a
    transaction") or its commit unaccounted (the sequence in memory fell behind)."""
    store = Store(tmp_path / "b.db")
    await store.open()
    for yields in range(40):
        task = asyncio.create_task(store.append_samples([Sample("m", "p", 1_000, 1.0)]))
        for _ in range(yields % 8):  # cancel at each step of the call: yield, not wait
            await asyncio.sleep(0)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        first, last = await store.append_samples([Sample("m", "p", 2_000, 2.0)])
        assert first == last == (await store.stats()).next_seq - 1, "memory == meta"
    rows = await store.query("SELECT seq_first, seq_last FROM telemetry ORDER BY seq_first")
    assert all(a[1] + 1 == b[0] for a, b in itertools.pairwise(rows)), "no gap, no repeat"
    await store.close()


class TripwireSection(StrictModel):
    fail_start: bool = False


class Tripwire(Component):
    name = "tripwire"

    def __init__(self, ctx: ComponentContext[TripwireSection]) -> None:
        self.ctx = ctx

    async def start(self) -> None:
        if self.ctx.config.fail_start:
            raise StartupError("tripwire: fail_start is set", "unset it")


@pytest.fixture
def tripwire() -> Any:
    register_component(ComponentSpec("tripwire", Tripwire, section=TripwireSection))
    yield
    unregister_component("tripwire")


async def test_a_rebuild_that_fails_keeps_the_old_config_running(
    tmp_path: Path, tripwire: None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="gateway.runtime")
    async with running_app({"devices": [M1]}, tmp_path) as app:
        runs = app.started_runs
        rewrite(app, devices=[M1, M2], tripwire={"fail_start": True})
        reply = await app.commands.execute("reload", {})
        assert reply["ok"] is True, "the file is valid; only starting it fails"
        await wait_for(lambda: app.ready.is_set() and app.started_runs > runs)
        assert app.reload_error == "StartupError: tripwire: fail_start is set"
        assert "failed to start (StartupError: tripwire: fail_start is set)" in caplog.text
        assert "goes back to the config it ran before" in caplog.text
        assert set(app.device_driver) == {"m1"}, "the old config runs again"
        assert not app.config.tripwire.fail_start
        pong = await app.commands.execute("ping", {})
        assert pong["ok"] is True
        # A good reload afterwards clears the error.
        rewrite(app, tripwire={"fail_start": False})
        runs = app.started_runs
        assert (await app.commands.execute("reload", {}))["ok"] is True
        await wait_for(lambda: app.ready.is_set() and app.started_runs > runs)
        assert set(app.device_driver) == {"m1", "m2"} and app.reload_error is None

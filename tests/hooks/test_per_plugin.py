"""Per-plugin delivery: a hung plugin delays only itself.

Next to a plugin whose ``async def`` hook hangs and one whose plain ``def`` hook hangs, a
healthy plugin receives 100 events without added delay; the hung ones are named in
``plugins.stats``. And the thread accounting behind it: held threads are counted, a plugin
whose threads are all held is refused, a call that never started is not a timeout."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from gateway.model import Event
from hooks.spec import hookimpl
from hooks.threads import CallNotStarted, CallTimedOut, PluginThreads, ThreadsHeld
from tests.hooks.support import SIM, component, wait_for
from tests.support.app import running_app
from tests.support.wait import stays

EVENTS = 100


class AsyncHung:
    @hookimpl
    async def on_work_order_created(self, order: Any) -> None:
        await asyncio.Event().wait()  # never returns


class SyncHung:
    def __init__(self, release: threading.Event) -> None:
        self.release = release

    @hookimpl
    def on_work_order_created(self, order: Any) -> None:
        self.release.wait()  # blocks its worker thread until the test ends


class Healthy:
    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}

    @hookimpl
    async def on_work_order_created(self, order: Any) -> None:
        self.arrived[order.event_id] = time.monotonic()


def _order(i: int) -> Event:
    body = {"order_id": f"wo-{i}", "title": f"order {i}", "priority": "normal",
            "status": "open", "created_by": "test", "created_ts": 1}
    return Event("work_order_created", body, id=f"wo-ev-{i}")


async def test_hung_plugins_delay_only_themselves(tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    release = threading.Event()
    cfg = {"devices": [SIM], "plugins": {"entry_points": False, "timeout": 0.5, "threads": 2}}
    try:
        async with running_app(cfg, tmp_path) as app:
            comp = component(app)
            healthy = Healthy()
            comp.add_plugin(AsyncHung(), "async-hung")
            comp.add_plugin(SyncHung(release), "sync-hung")
            comp.add_plugin(healthy, "healthy")
            committed: dict[str, float] = {}
            for i in range(EVENTS):
                ev = _order(i)
                committed[ev.id] = time.monotonic()
                await app.store.add_events([ev])
                await asyncio.sleep(0.01)
            await wait_for(lambda: len(healthy.arrived) == EVENTS, timeout=10)
            latencies = sorted(healthy.arrived[k] - committed[k] for k in committed)
            p99 = latencies[int(0.99 * len(latencies)) - 1]
            assert p99 < 0.1, f"p99 delivery latency {p99 * 1000:.0f} ms"
            # In order, once each.
            assert list(healthy.arrived) == [f"wo-ev-{i}" for i in range(EVENTS)]
            # By now the plain-def plugin has both its threads held, and is refused.
            await wait_for(lambda: comp.runner.threads_of("sync-hung").held == 2, timeout=5)
            await wait_for(
                lambda: comp.runner.stat("sync-hung", "on_work_order_created").refused > 0,
                timeout=5)
            async def caught_up() -> dict[str, Any] | None:  # the healthy one acks at once
                stats = (await app.commands.execute("plugins.stats", {}))["result"]
                return stats if stats["plugins"]["healthy"]["events_behind"] == 0 else None

            stats = await wait_for(caught_up, timeout=2)
            assert sorted(stats["hung"]) == ["async-hung", "sync-hung"]
            assert stats["plugins"]["healthy"]["problems"] == []
            assert stats["plugins"]["healthy"]["events_delivered"] == EVENTS
            assert stats["plugins"]["healthy"]["events_behind"] == 0
            sync = stats["plugins"]["sync-hung"]
            assert sync["threads"]["held"] == 2
            assert "2 threads held by plugin sync-hung (of 2)" in sync["problems"][0]
            assert stats["plugins"]["async-hung"]["events_behind"] > 0
            hooks = stats["hooks"]
            assert hooks["sync-hung"]["on_work_order_created"]["timeouts"] == 2
            assert hooks["async-hung"]["on_work_order_created"]["timeouts"] >= 1
    finally:
        release.set()
    text = caplog.text
    assert "plugin async-hung: on_work_order_created did not finish within 0.5 s" in text
    assert "plugin sync-hung: all 2 of its threads are held" in text
    # Refusals are logged once, not per event.
    assert text.count("all 2 of its threads are held") == 1
    assert "plugin healthy" not in text


async def test_threads_held_refused_and_not_started() -> None:
    pool = PluginThreads("p", 1)
    gate = threading.Event()
    ran: list[str] = []

    def slow() -> str:
        ran.append("slow")
        gate.wait(0.6)
        return "slow"

    def quick() -> str:
        ran.append("quick")
        return "quick"

    try:
        # One thread: the quick call waits behind the slow one and gives up before it
        # ever starts. It is "not started", and it never runs later either.
        first = asyncio.ensure_future(pool.call(slow, 2.0, "h"))
        await wait_for(lambda: ran == ["slow"])
        with pytest.raises(CallNotStarted, match=r"not started within 0\.1 s"):
            await pool.call(quick, 0.1, "h")
        assert await first == "slow"
        await wait_for(lambda: pool.held == 0)
        await stays(lambda: ran == ["slow"], 0.05, what="the quick call never runs")
        # A call that overruns holds the thread; with every thread held, calls are refused.
        gate.clear()
        with pytest.raises(CallTimedOut):
            await pool.call(lambda: gate.wait(), 0.1, "h")
        assert pool.held == 1
        with pytest.raises(ThreadsHeld):
            await pool.call(quick, 1.0, "h")
        assert pool.snapshot()["refused"] == 1 and "quick" not in ran
        # Once the held call returns, the thread is free again.
        gate.set()
        await wait_for(lambda: pool.held == 0)
        assert await pool.call(quick, 1.0, "h") == "quick"
        assert pool.snapshot() == {"size": 1, "held": 0, "released": 1, "refused": 1}
    finally:
        gate.set()
        pool.close()


class Blocker:
    def __init__(self) -> None:
        self.started = 0.0

    @hookimpl
    async def on_work_order_created(self, order: Any) -> None:
        self.started = time.time()  # wall time, as logging's record.created
        time.sleep(2)  # noqa: ASYNC251 - the mistake this test is about


async def test_blocking_call_in_async_hook_is_named_within_a_second(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="hooks.loopwatch")
    cfg = {"devices": [SIM], "plugins": {"entry_points": False}}
    async with running_app(cfg, tmp_path) as app:
        comp = component(app)
        blocker = Blocker()
        comp.add_plugin(blocker, "blocker")
        assert comp.watch.stalls == 0
        await app.store.add_events([_order(1)])
        await wait_for(lambda: comp.watch.last and comp.watch.last["duration_s"], timeout=10)
        stats = (await app.commands.execute("plugins.stats", {}))["result"]
    first = next(r for r in caplog.records if "event loop blocked" in r.getMessage())
    message = first.getMessage()
    assert "plugin blocker, hook on_work_order_created" in message
    assert "task hooks[blocker]" in message
    assert "test_per_plugin.py" in message and "in on_work_order_created" in message
    assert 0.2 < first.created - blocker.started < 1.0  # logged during the stall
    assert stats["loop"]["stalls"] == 1
    assert stats["loop"]["by_plugin"] == {"blocker": 1}
    assert stats["plugins"]["blocker"]["loop_stalls"] == 1
    assert 1.9 < stats["loop"]["last"]["duration_s"] < 3
    assert "event loop ran again after a stall of" in caplog.text

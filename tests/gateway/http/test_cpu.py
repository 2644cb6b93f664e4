"""The HTTP CPU meter (gateway/http/cpu.py) counts the server's requests and not the rest of
the loop's work, and says why when it is off."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest
from aiohttp import web

from gateway.http.cpu import HttpCpuMeter


def _spin(seconds: float) -> None:
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


async def _handler(request: web.Request) -> web.Response:
    _spin(0.02)  # a handler that costs 20 ms of CPU
    return web.Response(text="ok")


async def _other_work() -> None:
    _spin(0.1)  # 100 ms of CPU in a task that is not the server's


@pytest.mark.asyncio
async def test_the_meter_counts_the_servers_requests_and_not_other_tasks() -> None:
    meter = HttpCpuMeter()
    assert meter.snapshot() == {"on": False, "reason": meter.off_reason}
    assert "FIELDGATE_HTTP_CPU=1" in str(meter.off_reason)
    assert meter.install(asyncio.get_running_loop())
    app = web.Application()
    app.add_routes([web.get("/", _handler)])
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        await asyncio.create_task(_other_work())
        assert meter.seconds < 0.01  # the other task's 100 ms are not the server's
        # The client is aiohttp's too, but its tasks are this test's: not counted either.
        async with aiohttp.ClientSession() as http:
            for _ in range(3):
                async with http.get(f"http://127.0.0.1:{port}/") as resp:
                    assert await resp.text() == "ok"
        snap = meter.snapshot()
        assert snap["on"] is True
        assert 0.06 <= snap["seconds"] < 0.09, snap  # three requests of 20 ms, and parsing
        assert snap["by"]["task RequestHandler._handle_request"] >= 0.06, snap
    finally:
        meter.uninstall()
        await runner.cleanup()
    counted = meter.seconds
    await asyncio.create_task(_other_work())
    assert meter.seconds == counted  # uninstalled: nothing counts any more
    assert meter.snapshot()["on"] is False


@pytest.mark.asyncio
async def test_a_reload_hands_the_count_to_the_new_meter_and_unwraps_at_the_end() -> None:
    """A reload starts the new component's meter before the old one stops."""
    original = asyncio.events.Handle._run
    old, new = HttpCpuMeter(), HttpCpuMeter()
    loop = asyncio.get_running_loop()
    assert old.install(loop) and new.install(loop)
    old.uninstall()
    assert asyncio.events.Handle._run is not original  # the new meter still counts
    assert new.snapshot()["on"] is True
    new.uninstall()
    assert asyncio.events.Handle._run is original


def test_the_meter_says_why_it_is_off_under_another_loop() -> None:
    class OtherLoop:  # what uvloop's loop is to the meter: not asyncio's BaseEventLoop
        pass

    meter = HttpCpuMeter()
    assert not meter.install(OtherLoop())  # type: ignore[arg-type]
    assert meter.snapshot() == {"on": False, "reason": meter.off_reason}
    assert "OtherLoop" in str(meter.off_reason)

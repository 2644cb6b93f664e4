"""The publish window counts bytes as well as messages, and a payload is let go at its
PUBACK, not when the store's acknowledgement is written (issue 15: the uplink's bytes in
flight grew with the device count)."""

from __future__ import annotations

import asyncio
import tracemalloc
from pathlib import Path

import pytest

from gateway.uplink.ackwindow import InFlight
from gateway.uplink.component import Uplink
from tests.gateway.uplink.helpers import site
from tests.support.app import running_app
from tests.support.mosquitto import Mosquitto
from tests.support.wait import wait_until


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_bytes_bound_the_window_first_come_first_served() -> None:
    w = InFlight(max_messages=10, max_bytes=1_000)
    await w.acquire(600)
    order: list[str] = []

    async def take(name: str, n: int) -> None:
        await w.acquire(n)
        order.append(name)

    big = asyncio.create_task(take("big", 500))  # 600 + 500 > 1,000: waits
    small = asyncio.create_task(take("small", 100))  # would fit, but comes second
    await _settle()
    assert order == [] and (w.messages, w.bytes) == (1, 600)
    w.release(600)
    await _settle()
    assert order == ["big", "small"] and (w.messages, w.bytes) == (2, 600)
    await asyncio.gather(big, small)


async def test_a_message_larger_than_the_window_goes_out_alone() -> None:
    w = InFlight(max_messages=10, max_bytes=1_000)
    await w.acquire(5_000)  # nothing in flight: it goes
    waiting = asyncio.create_task(w.acquire(10))
    await _settle()
    assert not waiting.done()
    w.release(5_000)
    await asyncio.wait_for(waiting, 1)
    assert (w.messages, w.bytes) == (1, 10)


async def test_the_message_count_still_bounds_the_window() -> None:
    w = InFlight(max_messages=2, max_bytes=1_000_000)
    await w.acquire(1)
    await w.acquire(1)
    third = asyncio.create_task(w.acquire(1))
    await _settle()
    assert not third.done()
    w.release(1)
    await asyncio.wait_for(third, 1)


async def test_a_cancelled_waiter_neither_blocks_the_others_nor_leaks_room() -> None:
    w = InFlight(max_messages=10, max_bytes=100)
    await w.acquire(90)
    head = asyncio.create_task(w.acquire(50))
    behind = asyncio.create_task(w.acquire(5))
    await _settle()
    head.cancel()
    await asyncio.wait_for(behind, 1)  # the cancelled head no longer holds it up
    with pytest.raises(asyncio.CancelledError):
        await head
    assert (w.messages, w.bytes) == (2, 95)
    # Granted, then cancelled before it ran: the room is given back.
    w2 = InFlight(max_messages=1, max_bytes=100)
    await w2.acquire(10)
    late = asyncio.create_task(w2.acquire(10))
    await _settle()
    w2.release(10)  # grants ``late``
    late.cancel()
    with pytest.raises(asyncio.CancelledError):
        await late
    assert (w2.messages, w2.bytes) == (0, 0)


async def test_payloads_are_released_at_the_puback_while_the_store_ack_waits(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    """The store's acknowledgement is held back; PUBACKs keep coming, so the forwarder keeps
    publishing. The telemetry it holds must stay within the byte window (plus the message
    being built and the chunk being cut), not grow with every message acknowledged by the
    broker but not yet by the store, as it did (each task kept its payload until then)."""
    window_bytes, max_bytes = 8_192, 2_048
    cfg = site(mosquitto, devices=2, interval=0.02, extra_points=20, max_bytes=max_bytes,
               window_bytes=window_bytes, window=1_000)
    gate = asyncio.Event()
    tracemalloc.start(1)
    try:
        async with running_app(cfg, tmp_path) as app:
            uplink = next(c for c in app.components if isinstance(c, Uplink))
            store = app.store
            ack = store.ack_telemetry

            async def held_ack(upto: int) -> None:
                await gate.wait()
                await ack(upto)

            store.ack_telemetry = held_ack  # type: ignore[method-assign]
            start = uplink.stats.telemetry_messages
            await wait_until(lambda: uplink.stats.telemetry_messages - start >= 150, 60,
                             what="150 telemetry messages acknowledged by the broker")
            sent = uplink.stats.telemetry_messages - start
            snap = tracemalloc.take_snapshot().filter_traces(
                [tracemalloc.Filter(True, "*gateway/uplink/*")])
            held = sum(s.size for s in snap.statistics("filename"))
            gate.set()
    finally:
        tracemalloc.stop()
    # Before the fix this was about ``sent`` payloads (>= 150 x ~2 KB).
    assert held < window_bytes + 2 * max_bytes + 64_000, (
        f"the uplink holds {held:,} bytes after {sent} messages whose store ack waits")

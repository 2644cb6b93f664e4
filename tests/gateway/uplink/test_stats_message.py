"""The periodic MQTT ``stats`` message, against a real mosquitto: it comes every
``uplink.stats_interval`` seconds of the gateway's clock, validates against
config/wire/stats.schema.json, and carries the drivers' poll statistics."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiomqtt
import jsonschema
import pytest

from gateway.clock import FakeClock
from gateway.pollstats import BUCKETS
from gateway.uplink.config import UplinkSection
from tests.gateway.uplink.helpers import BASE, site
from tests.support.app import running_app
from tests.support.mosquitto import Mosquitto
from tests.support.polled import polled_driver
from tests.support.wait import stays, wait_until

__all__ = ["polled_driver"]

ROOT = Path(__file__).resolve().parents[3]
SCHEMA = json.loads((ROOT / "config" / "wire" / "stats.schema.json").read_text())
N = 40


class GatedClock(FakeClock):
    """Time moves only when the test advances it, and a sleep on this clock lasts until it
    has: a task that waits ``stats_interval`` waits exactly that much of the test's time."""

    async def sleep(self, seconds: float) -> None:
        deadline = self.monotonic() + seconds
        await wait_until(lambda: self.monotonic() >= deadline, 10**9,
                         what=f"the test clock to pass {deadline}")


@contextlib.asynccontextmanager
async def recorder(broker: Mosquitto) -> AsyncIterator[list[dict[str, Any]]]:
    """Every stats message that arrives, validated against the schema (a failure is kept as
    ``{"_error": ...}`` so the test fails on it)."""
    got: list[dict[str, Any]] = []
    validator = jsonschema.Draft202012Validator(SCHEMA)
    subscribed = asyncio.Event()

    async def run() -> None:
        async with aiomqtt.Client(broker.host, broker.port, identifier="stats-recorder") as c:
            await c.subscribe(f"{BASE}/stats", qos=1)
            subscribed.set()
            async for message in c.messages:
                assert isinstance(message.payload, bytes)
                body = json.loads(message.payload)
                errors = [f"{e.message} at {list(e.absolute_path)}"
                          for e in validator.iter_errors(body)]
                got.append({**body, "_qos": message.qos, "_retain": message.retain,
                            **({"_error": errors} if errors else {})})

    task = asyncio.create_task(run())
    try:
        await wait_until(subscribed.is_set, 10, what="the recorder subscribed")
        yield got
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def config(broker: Mosquitto, interval: float) -> dict[str, Any]:
    cfg = site(broker, devices=0, stats_interval=interval)
    cfg["devices"] = [{"id": "p1", "type": "polled", "requests": N, "interval": 0},
                      {"id": "sim-0", "type": "simulated", "interval": 1, "enabled": False}]
    return cfg


def test_the_default_interval_is_a_minute() -> None:
    assert UplinkSection().stats_interval == 60


@pytest.mark.usefixtures("polled_driver")
async def test_stats_come_every_interval_valid_and_with_poll_figures(
        tmp_path: Path, mosquitto: Mosquitto) -> None:
    clock = GatedClock()
    async with recorder(mosquitto) as got, \
            running_app(config(mosquitto, 30), tmp_path, clock=clock) as app:
        # The first right after the connect, before the clock moved at all.
        await wait_until(lambda: len(got) == 1, 15, what="the stats message after connect")
        await wait_until(lambda: app.poll_stats.of("p1").requests == N, 10,
                         what="the test driver's requests")
        await stays(lambda: len(got) == 1, 1.0, what="no message before the interval")
        clock.advance(29)
        await stays(lambda: len(got) == 1, 0.5, what="no message 1 s before the interval")
        clock.advance(1)
        await wait_until(lambda: len(got) == 2, 10, what="the second stats message")
        clock.advance(30)
        await wait_until(lambda: len(got) == 3, 10, what="the third stats message")
        book = app.poll_stats.of("p1")
        snapshot, (cumulative, total_s, _) = book.snapshot(), book.histogram()
        health = (await app.commands.execute("health.stats", {}))["result"]
        uplink = (await app.commands.execute("uplink.stats", {}))["result"]

    assert [m.get("_error") for m in got] == [None, None, None]
    assert {(m["_qos"], m["_retain"]) for m in got} == {(1, False)}
    first, second, third = got
    assert second["ts"] - first["ts"] == 30_000 and third["ts"] - second["ts"] == 30_000
    assert third["gw"] == "test-gw" and third["interval_s"] == 30 and third["boot"] >= 1
    # The poll figures of the driver, which stopped counting before the second message.
    poll = third["poll"]["p1"]
    assert {k: v for k, v in poll.items() if k != "latency_histogram"} == snapshot
    assert poll["requests"] == N and poll["errors"] == snapshot["errors"] != {}
    assert poll["latency_histogram"]["counts"] == [n for _le, n in cumulative]
    assert poll["latency_histogram"]["sum_s"] == pytest.approx(total_s, abs=1e-6)
    assert third["poll_buckets_s"] == health["poll_buckets_s"]
    # The same document as health.stats (what /metrics shows), minus what moves.
    assert third["devices"] == health["devices"] == {
        "p1": {"status": "online", "since": third["devices"]["p1"]["since"]},
        "sim-0": {"status": "disabled", "since": None}}
    assert set(third) - {"v", "gw", "boot", "interval_s", "_qos", "_retain"} == set(health)
    assert third["uplink"]["connected"] is True and third["samples_ingested"] > 0
    assert uplink["stats_messages"] >= 3


@pytest.mark.usefixtures("polled_driver")
async def test_interval_zero_sends_none(tmp_path: Path, mosquitto: Mosquitto) -> None:
    clock = GatedClock()
    async with recorder(mosquitto) as got, \
            running_app(config(mosquitto, 0), tmp_path, clock=clock) as app:
        await wait_until(lambda: (r := app.commands.get("uplink.stats")) is not None and r, 10)

        async def connected() -> bool:
            reply = await app.commands.execute("uplink.stats", {})
            return bool(reply["result"]["connected"])

        await wait_until(connected, 15, what="the uplink connected")
        clock.advance(3600)
        await stays(lambda: not got, 1.0, what="no stats message with stats_interval 0")


def test_the_documented_example_is_valid() -> None:
    doc = (ROOT / "docs" / "wire-format.md").read_text()
    block = doc.split("\n## stats\n", 1)[1].split("```json\n", 1)[1].split("```", 1)[0]
    example = json.loads(block)
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    assert not [e.message for e in jsonschema.Draft202012Validator(SCHEMA).iter_errors(example)]
    assert example["poll_buckets_s"] == list(BUCKETS)
    assert len(example["poll"]["pv-1"]["latency_histogram"]["counts"]) == len(BUCKETS) + 1
    assert f"(default {UplinkSection().stats_interval:g};" in doc

"""Poll statistics in the API, ``devices.list`` and ``/metrics``, on an in-process gateway
whose test driver (tests/support/polled.py) counts requests on a known schedule."""

from __future__ import annotations

import re
from math import ceil
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.control import send_command
from gateway.pollstats import BUCKETS
from gateway.runtime import App
from tests.support.app import running_app
from tests.support.mosquitto import free_port
from tests.support.polled import latency, outcome, polled_driver
from tests.support.wait import wait_until

__all__ = ["polled_driver"]

N = 60
DEVICES = [{"id": "p1", "type": "polled", "requests": N, "interval": 0.005},
           {"id": "quiet", "type": "polled", "requests": 0}]


def expected() -> dict[str, Any]:
    """What the schedule of tests/support/polled.py must give, computed here on its own."""
    seen = [latency(i) for i in range(N) if outcome(i) != "timeout"]
    ordered = sorted(seen)

    def rank(q: float) -> float:
        return round(ordered[ceil(q * len(ordered)) - 1] * 1000, 2)

    last = max(i for i in range(N) if outcome(i) != "ok")
    return {
        "requests": N,
        "errors": {"timeout": sum(outcome(i) == "timeout" for i in range(N)),
                   "exception": sum(outcome(i) == "exception" for i in range(N))},
        "p50": rank(0.5), "p99": rank(0.99), "last_kind": outcome(last),
        "buckets": [sum(x <= b for x in seen) for b in BUCKETS] + [len(seen)],
        "sum": sum(seen),
    }


async def _finished(app: App) -> None:
    await wait_until(lambda: (s := app.poll_stats.get("p1")) is not None and s.requests == N,
                     20, what=f"the test driver's {N} requests")


@pytest.mark.usefixtures("polled_driver")
async def test_devices_and_metrics_carry_the_drivers_poll_statistics(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    want = expected()
    async with running_app({"http": {"port": port}, "devices": DEVICES}, tmp_path) as app, \
            aiohttp.ClientSession() as http:
        await _finished(app)
        book = app.poll_stats.of("p1")
        snapshot = book.snapshot()
        assert snapshot["requests"] == want["requests"]
        assert snapshot["errors"] == want["errors"]
        assert snapshot["latency_ms"] == {"p50": want["p50"], "p99": want["p99"]}
        assert snapshot["last_error"]["kind"] == want["last_kind"]

        async with http.get(f"{base}/api/v1/devices") as r:
            devices = {d["id"]: d for d in await r.json()}
        assert devices["p1"]["poll"] == snapshot
        assert devices["quiet"]["poll"] is None  # its driver keeps no statistics
        async with http.get(f"{base}/api/v1/devices/p1") as r:
            assert (await r.json())["poll"] == snapshot
        listed = await app.commands.execute("devices.list", {"device": "p1", "points": False})
        assert listed["result"][0]["poll"] == snapshot
        # health.stats, what /metrics and the MQTT stats message are drawn from, is on the
        # control socket (``fieldgate cmd health.stats``) and, being read-only, on MQTT.
        health = await send_command(app.state_dir, "health.stats", {}, timeout=30)
        assert health["ok"] and health["result"]["poll"]["p1"]["requests"] == N
        command = app.commands.get("health.stats")
        assert command is not None and command.read_only

        async with http.get(f"{base}/metrics") as r:
            text = await r.text()
    samples = [s for fam in text_string_to_metric_families(text) for s in fam.samples]

    def value(name: str, **labels: str) -> float:
        found = [s.value for s in samples if s.name == name and s.labels == labels]
        assert len(found) == 1, (name, labels, found)
        return found[0]

    assert value("fieldgate_poll_requests_total", device="p1") == book.requests == N
    for kind, n in want["errors"].items():
        assert value("fieldgate_poll_errors_total", device="p1", kind=kind) == n
    cumulative, total_s, count = book.histogram()
    assert [n for _le, n in cumulative] == want["buckets"]
    for (bound, n), le in zip(cumulative, [*map(str, BUCKETS), "+Inf"], strict=True):
        assert value("fieldgate_poll_latency_seconds_bucket", device="p1", le=le) == n, bound
    assert value("fieldgate_poll_latency_seconds_count", device="p1") == count
    assert value("fieldgate_poll_latency_seconds_sum", device="p1") == pytest.approx(
        total_s, abs=1e-6) == pytest.approx(want["sum"], abs=1e-6)
    assert not [s for s in samples if s.labels.get("device") == "quiet"
                and s.name.startswith("fieldgate_poll")]
    assert value("fieldgate_device_status", device="p1", status="online") == 1


def test_the_documented_buckets_are_the_histograms() -> None:
    doc = (Path(__file__).resolve().parents[3] / "docs" / "http-api.md").read_text()
    found = re.search(r"in the buckets ([\d.,and ]+) ms, ([\d.,and ]+) s;", " ".join(doc.split()))
    assert found, "the bucket sentence is gone from docs/http-api.md"

    def numbers(text: str) -> list[float]:
        return [float(x) for x in re.split(r",\s*|\s+and\s+", text.strip())]

    assert [*(ms / 1000 for ms in numbers(found[1])), *numbers(found[2])] == list(BUCKETS)

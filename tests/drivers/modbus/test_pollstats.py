"""Poll statistics per device against a real pymodbus server: every request counted once,
errors by kind (a Modbus exception code, a timeout), the last error and the latency."""

from __future__ import annotations

from pymodbus.constants import ExcCodes

from drivers.testing import RecordingContext
from tests.support.wait import wait_until

from .support import device, running, serving

POINTS = [
    {"name": "a", "function": "holding", "address": 0, "type": "uint16"},
    {"name": "b", "function": "input", "address": 0, "type": "float32"},
]


def received(sim: object, unit: int) -> int:
    return sum(1 for way, u, _fc in sim.log if way == "recv" and u == unit)  # type: ignore[attr-defined]


async def test_requests_errors_by_kind_and_last_error_per_device() -> None:
    one = device(id="one", unit=1, points=POINTS, interval=0.05, timeout=0.2, retries=0,
                 offline_after=1000)
    two = device(id="two", unit=2, points=POINTS, interval=0.05, timeout=0.2, retries=0)
    ctx = RecordingContext()
    async with serving(one, two) as (sim, [one, two]):
        async with running([one, two], ctx):
            s1, s2 = ctx.poll_stats("one"), ctx.poll_stats("two")
            await wait_until(lambda: s1.requests >= 6 and s2.requests >= 6, 10)
            assert s1.errors == {} and s1.last_error is None
            assert s1.snapshot()["latency_ms"]["p50"] > 0

            sim.fail[1] = ExcCodes.DEVICE_BUSY  # answered, with exception code 6
            await wait_until(lambda: s1.errors.get("exception", 0) >= 2, 10)
            assert s1.last_error is not None and s1.last_error["kind"] == "exception"
            assert "exception code 6" in s1.last_error["message"]
            del sim.fail[1]

            sim.delay[1] = 1.0  # no answer within the 0.2 s timeout
            await wait_until(lambda: s1.errors.get("timeout", 0) >= 1, 10)
            assert s1.last_error is not None and s1.last_error["kind"] == "timeout"
            assert "no reply within 0.2 s" in s1.last_error["message"]
            del sim.delay[1]
            answered = s1.requests - sum(s1.errors.values())
            await wait_until(lambda: s1.requests - sum(s1.errors.values()) >= answered + 4, 10)
            assert s1.last_error["kind"] == "timeout"  # kept until the next error
        # stopped: each request the server received was counted once for its device (one
        # may have been in flight at the cancel), and unit 2 never saw an error of unit 1
        for stats, unit in ((s1, 1), (s2, 2)):
            assert received(sim, unit) - 1 <= stats.requests <= received(sim, unit)
        assert s2.errors == {} and s2.last_error is None
        histogram, _sum, count = s1.histogram()
        # every answered request has a latency; the timed-out ones have none
        assert count == s1.requests - s1.errors["timeout"]
        assert histogram[-1][1] == count

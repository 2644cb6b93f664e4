"""A tiny driver that counts poll statistics the way a real one does, on a known schedule.

Each device of type ``polled`` makes ``requests`` pretend requests, one every ``interval``
seconds of the gateway's clock, and reports each to ``ctx.poll_stats(device)``: request i
(from 0) is a timeout when i % 10 == 9 (no answer, no latency), a protocol exception after
:func:`latency` when i % 10 == 4, and answered after :func:`latency` otherwise. Then it stops,
so a test can compare figures that no longer move. ``requests: 0`` keeps no statistics at all
(like a driver that does not count). It emits a sample per answered request.

Register it for a test with the ``polled_driver`` fixture (``tests/support/polled.py``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Literal

import pytest

from drivers.base import DeviceConfig, Driver, DriverContext, DriverSpec, TaskFactory
from drivers.registry import _REGISTRY, register_driver
from gateway.model import DeviceStatus, Sample


class PolledDevice(DeviceConfig):
    type: Literal["polled"]
    requests: int = 50
    interval: float = 0.01


def latency(i: int) -> float:
    """The latency of request ``i`` in seconds: 1, 4, 7, ... 19 ms, 3 ms, 40 ms, ... spread
    over several histogram buckets."""
    return ((i * 3) % 20 + 1) / 1000 if i % 5 else 0.04 * (1 + i % 3)


def outcome(i: int) -> str:
    return "timeout" if i % 10 == 9 else "exception" if i % 10 == 4 else "ok"


class PolledDriver(Driver):
    def __init__(self, devices: Sequence[PolledDevice], ctx: DriverContext) -> None:
        super().__init__(devices, ctx)
        self.cfg = list(devices)

    def tasks(self) -> Iterable[tuple[str, TaskFactory]]:
        for dev in self.cfg:
            if dev.requests:
                yield f"polled[{dev.id}]", lambda dev=dev: self._run(dev)  # type: ignore[misc]

    async def _run(self, dev: PolledDevice) -> None:
        stats = self.ctx.poll_stats(dev.id)
        self.ctx.set_status(dev.id, DeviceStatus.ONLINE, "polling")
        for i in range(stats.requests, dev.requests):  # a restarted task goes on
            kind = outcome(i)
            if kind == "timeout":
                stats.error("timeout", f"no answer from {dev.id} within 1 s (request {i})")
            elif kind == "exception":
                stats.error("exception", f"{dev.id} answered exception code 2 (request {i})",
                            latency(i))
            else:
                stats.ok(latency(i))
                await self.ctx.emit([Sample(dev.id, "n", self.ctx.clock.now_ms(), i)])
            await self.ctx.clock.sleep(dev.interval)


@pytest.fixture
def polled_driver() -> Iterator[None]:
    """Registered for the tests that use it only: other tests list the known device types."""
    register_driver(DriverSpec("polled", PolledDevice, PolledDriver))
    yield
    _REGISTRY.pop("polled", None)

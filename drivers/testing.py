"""A DriverContext for driver tests and third-party driver authors: it records what a driver
emits, keeps KV state in memory, and lets a test wait for samples."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.clock import Clock, SystemClock
from gateway.model import Batch, DeviceStatus, Event, PollBatch, Sample
from gateway.pollstats import PollStats, PollStatsBook


class MemoryKV:
    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    async def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    async def put(self, key: str, value: Any) -> None:
        self.data[key] = value

    async def delete(self, key: str) -> None:
        self.data.pop(key, None)

    async def items(self) -> list[tuple[str, Any]]:
        return sorted(self.data.items())


class RecordingContext:
    def __init__(
        self,
        state_dir: Path | None = None,
        clock: Clock | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        self.logger = logger or logging.getLogger("fieldgate.test-driver")
        self.clock: Clock = clock or SystemClock()
        self.state_dir = state_dir or Path(".")
        self.batches: list[Batch] = []
        self.statuses: list[tuple[str, DeviceStatus, str]] = []
        self.events: list[Event] = []
        self._kv: dict[str, MemoryKV] = {}
        self.stats = PollStatsBook(self.clock.now_ms)
        self._changed = asyncio.Condition()

    @property
    def samples(self) -> list[Sample]:
        return [s for b in self.batches for s in b]

    def status_of(self, device: str) -> DeviceStatus | None:
        for dev, status, _ in reversed(self.statuses):
            if dev == device:
                return status
        return None

    async def emit(self, batch: Batch) -> None:
        # A list or a PollBatch as it is (its samples are made only when a test reads them).
        self.batches.append(batch if type(batch) is PollBatch or isinstance(batch, list)
                            else list(batch))
        async with self._changed:
            self._changed.notify_all()

    def set_status(self, device: str, status: DeviceStatus, reason: str = "") -> None:
        if self.status_of(device) != status:
            self.statuses.append((device, status, reason))
        asyncio.get_running_loop().create_task(self._notify())

    async def emit_event(self, event: Event) -> None:
        self.events.append(event)
        await self._notify()

    def kv(self, namespace: str) -> MemoryKV:
        return self._kv.setdefault(namespace, MemoryKV())

    def poll_stats(self, name: str) -> PollStats:
        return self.stats.of(name)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def wait_for(
        self, predicate: Callable[[RecordingContext], bool], timeout: float = 5
    ) -> None:
        """Wait until ``predicate(self)`` holds; fail with TimeoutError after ``timeout``."""
        async def _wait() -> None:
            async with self._changed:
                await self._changed.wait_for(lambda: predicate(self))
        await asyncio.wait_for(_wait(), timeout)

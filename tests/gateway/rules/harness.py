"""A rules engine on a real store file, driven by a FakeClock: feed batches, tick, restart."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from drivers.base import DeviceConfig
from gateway import events as catalogue
from gateway.clock import FakeClock
from gateway.model import DeviceStatus, Event, Quality, Sample, Value
from gateway.rules.config import RulesSection
from gateway.rules.engine import RuleEngine
from gateway.status import DeviceStatusService
from gateway.store import Store


class Dev(DeviceConfig):
    profile: str | None = None


def devices(*ids: str, tags: list[str] | None = None, profile: str | None = None) -> list[Dev]:
    return [Dev(id=i, type="test", tags=tags or [], profile=profile) for i in ids]


class Harness:
    def __init__(self, path: Path, section: dict[str, Any], devs: Sequence[DeviceConfig],
                 clock: FakeClock | None = None, timezone: str = "UTC") -> None:
        self.path = path
        self.section = RulesSection.model_validate(section)
        self.devs = devs
        self.clock = clock or FakeClock()
        self.timezone = timezone
        self.store: Store | None = None
        self.engine: RuleEngine
        self.tracker: DeviceStatusService
        self._seen = 0
        self._injected: set[str] = set()  # ids of events the test made up (driver_events)

    async def start(self) -> Harness:
        self.store = Store(self.path)
        await self.store.open()
        await self.store.register_consumer("test")
        self.tracker = DeviceStatusService()
        await self.tracker.load(self.store)
        self.engine = RuleEngine(self.section, self.devs, self.tracker, self.clock,
                                 self.timezone)
        await self.engine.load(self.store)
        return self

    async def restart(self) -> None:
        """Drop every in-memory object and build them again from the same file."""
        await self.stop()
        await self.start()

    async def stop(self) -> None:
        assert self.store is not None
        await self.store.close()
        self.store = None

    async def feed(self, *samples: tuple[str, str, Value] | Sample,
                   quality: Quality = Quality.GOOD) -> None:
        """Samples at the clock's current time (3-tuples) or given in full."""
        batch = [s if isinstance(s, Sample) else
                 Sample(s[0], s[1], self.clock.now_ms(), s[2], quality) for s in samples]
        assert self.store is not None
        async with self.store.transaction() as tx:
            await self.engine.process(batch, tx)

    async def link(self, device: str, status: DeviceStatus) -> None:
        assert self.store is not None
        async with self.store.transaction() as tx:
            old = self.tracker.current(device)
            if await self.tracker.apply(tx, device, status, "test", self.clock.now_ms()):
                await self.engine.on_status(device, old, status, tx)

    async def tick(self) -> None:
        self.engine.tick(self.clock.now_ms())
        assert self.store is not None
        async with self.store.transaction() as tx:
            await self.engine.flush(tx)

    async def driver_events(self, *events: Event) -> None:
        assert self.store is not None
        self._injected.update(e.id for e in events)
        async with self.store.transaction() as tx:
            await tx.add_events(events)
            await self.engine.on_events(list(events), tx)

    async def checkpoint(self) -> None:
        assert self.store is not None
        async with self.store.transaction() as tx:
            await self.engine.flush(tx, force_checkpoint=True)

    async def events(self, *types: str) -> list[Event]:
        """All events committed so far (of the given types), oldest first."""
        assert self.store is not None
        out = [se.event for se in await self.store.read_events("test", 100_000)]
        wrong = [p for e in out if e.id not in self._injected
                 for p in catalogue.problems(e.type, e.body)]
        assert not wrong, "events that do not match gateway/events.py:\n" + "\n".join(wrong)
        return [e for e in out if not types or e.type in types]

    async def new_events(self, *types: str) -> list[Event]:
        """Events committed since the last call."""
        evs = await self.events()
        fresh, self._seen = evs[self._seen:], len(evs)
        return [e for e in fresh if not types or e.type in types]

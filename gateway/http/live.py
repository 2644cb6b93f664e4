"""What the HTTP side knows without asking anyone: the last value of every point, and a
fan-out of new samples and events to the live-stream clients.

:class:`LatestValues` is a pipeline observer. It runs after each commit, on the pipeline's
task, so it does only O(batch) dictionary stores and one ``put_nowait`` per connected
stream: no JSON, no filtering, no I/O. Each stream client's own task does the filtering and
encoding. A client that cannot keep up (its queue is full) is cut off, not waited for; its
browser reconnects and starts from the current values.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from dataclasses import dataclass, field
from typing import Any

from gateway.model import Event, Sample
from gateway.store import Store

log = logging.getLogger(__name__)

CONSUMER = "http"
RECENT_EVENTS = 200


@dataclass(slots=True, eq=False)  # identity: kept in sets
class Subscriber:
    devices: frozenset[str] | None  # None: every device
    queue: asyncio.Queue[tuple[str, Any]]
    overflowed: bool = False

    def wants(self, device: str | None) -> bool:
        return self.devices is None or device is None or device in self.devices


@dataclass
class LiveStats:
    batches: int = 0
    samples: int = 0
    stream_overflows: int = 0
    events: int = 0


@dataclass
class LatestValues:
    """``values[device][point]``: the newest committed sample of each point."""

    queue_size: int = 1000
    values: dict[str, dict[str, Sample]] = field(default_factory=dict)
    subscribers: list[Subscriber] = field(default_factory=list)
    recent_events: collections.deque[Event] = field(
        default_factory=lambda: collections.deque(maxlen=RECENT_EVENTS))
    stats: LiveStats = field(default_factory=LiveStats)

    # -- the observer (on the pipeline task: keep it cheap) ------------------------------

    def __call__(self, batch: list[Sample], seq_first: int) -> None:
        # One dict store per sample (the Sample itself, no new object); batches come in
        # runs of one device, so the device lookup happens once per run. Samples are
        # committed in order, so the newest one wins without comparing timestamps.
        values = self.values
        device: str | None = None
        points: dict[str, Sample] = {}
        for s in batch:
            if s.device != device:
                device = s.device
                points = values.get(device) or values.setdefault(device, {})
            points[s.point] = s
        self.stats.batches += 1
        self.stats.samples += len(batch)
        if self.subscribers:
            self._publish(("samples", batch))

    def last_seen(self, device: str) -> int | None:
        points = self.values.get(device)
        return max(s.ts_ms for s in points.values()) if points else None

    # -- streams -------------------------------------------------------------------------

    def subscribe(self, devices: frozenset[str] | None) -> Subscriber:
        sub = Subscriber(devices, asyncio.Queue(self.queue_size))
        self.subscribers.append(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        if sub in self.subscribers:
            self.subscribers.remove(sub)

    def event(self, event: Event) -> None:
        self.recent_events.append(event)
        self.stats.events += 1
        if self.subscribers:
            self._publish(("event", event))

    def _publish(self, item: tuple[str, Any]) -> None:
        for sub in self.subscribers:
            if sub.overflowed:
                continue
            try:
                sub.queue.put_nowait(item)
            except asyncio.QueueFull:
                sub.overflowed = True
                self.stats.stream_overflows += 1
                sub.queue.get_nowait()  # make room for the wake-up below
                sub.queue.put_nowait(("overflow", None))


async def follow_events(store: Store, latest: LatestValues, wait: float = 5.0) -> None:
    """Read the outbox as consumer ``http`` and hand each event to the streams (the
    outbox keeps them until every consumer passed, so a restart re-reads what is left)."""
    while True:
        events = await store.read_events(CONSUMER, limit=500)
        for stored in events:
            latest.event(stored.event)
        if events:
            # Shielded: a cancel (stop, reload) must not cut the ack's transaction in half.
            await asyncio.shield(store.ack_events(CONSUMER, events[-1].rowid))
        else:
            await store.wait_events(CONSUMER, wait)


def sample_rows(batch: list[Sample], sub: Subscriber) -> list[Sample]:
    """The samples of ``batch`` a stream client asked for."""
    if sub.devices is None:
        return batch
    wanted = sub.devices
    return [s for s in batch if s.device in wanted]

"""What the HTTP side knows without asking anyone: the last value of every point, and a
fan-out of news to the live-stream clients.

:class:`LatestValues` is a pipeline observer. It runs after each commit, on the pipeline's
task, so it does only O(batch) dictionary stores and, per connected stream, one set union
and at most one ``put_nowait``: no JSON, no I/O. A stream client is only told which of its
devices have news; its own task then reads their newest values and encodes them. A client
that cannot keep up (its queue is full) is cut off, not waited for; its browser reconnects
and starts from the current values.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from dataclasses import dataclass, field
from itertools import compress
from operator import is_not, itemgetter
from typing import Any

from gateway.model import Event, Sample
from gateway.store import Store

log = logging.getLogger(__name__)

CONSUMER = "http"
RECENT_EVENTS = 200
_TS = itemgetter(2)  # Sample.ts_ms, read in C


@dataclass(slots=True, eq=False)  # identity: kept in sets
class Subscriber:
    devices: frozenset[str] | None  # None: every device
    queue: asyncio.Queue[tuple[str, Any]]
    overflowed: bool = False
    #: Devices with new samples since the client's last send, and whether a wake-up for
    #: them is queued already: one per send however many batches arrive meanwhile.
    dirty: set[str] = field(default_factory=set)
    woken: bool = False
    #: Per device, the sample last sent of each point: a send carries only what changed.
    sent: dict[str, dict[str, Sample]] = field(default_factory=dict)

    def wants(self, device: str | None) -> bool:
        return self.devices is None or device is None or device in self.devices

    def show(self, device: str, points: dict[str, Sample]) -> None:
        """The client has these samples (a snapshot showed them): not sent again."""
        self.sent[device] = dict(points)

    def changed(self, values: dict[str, dict[str, Sample]]) -> list[Sample]:
        """The newest sample of each point of the dirty devices not sent yet; marks them
        sent. Its cost follows the points shown, not the sampling rate, and stays in C:
        the sent copy has the device's points in the same order (a device's dict only ever
        gains points, at its end, and a copy keeps the order), so while it has as many, the
        two are compared by position; a device that gained points is compared by name."""
        out: list[Sample] = []
        for device in self.dirty:
            points = values.get(device)
            if not points:
                continue
            sent = self.sent.get(device)
            if sent is not None and len(sent) == len(points):
                now = points.values()
                out += compress(now, map(is_not, now, sent.values()))
            else:
                before = (sent or {}).get
                out += [s for p, s in points.items() if before(p) is not s]
            self.sent[device] = dict(points)
        self.dirty.clear()
        self.woken = False
        return out


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
    #: Per device, a count of the batches that brought it samples: a view encoded at one
    #: generation is still true while the count stands (gateway.http.encode).
    generation: dict[str, int] = field(default_factory=dict)
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
        seen: set[str] = set()
        for s in batch:
            if s.device != device:
                device = s.device
                points = values.get(device) or values.setdefault(device, {})
                seen.add(device)
            points[s.point] = s
        generation = self.generation
        for device in seen:
            generation[device] = generation.get(device, 0) + 1
        self.stats.batches += 1
        self.stats.samples += len(batch)
        for sub in self.subscribers:
            wanted = seen if sub.devices is None else seen & sub.devices
            if wanted:
                sub.dirty |= wanted
                if not sub.woken:
                    sub.woken = True
                    self._put(sub, ("samples", None))

    def last_seen(self, device: str) -> int | None:
        points = self.values.get(device)
        return max(map(_TS, points.values())) if points else None

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
            self._put(sub, item)

    def _put(self, sub: Subscriber, item: tuple[str, Any]) -> None:
        if sub.overflowed:
            return
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

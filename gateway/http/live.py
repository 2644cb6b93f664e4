"""What the HTTP side knows without asking anyone: the last value of every point, and a
fan-out of news to the live-stream clients.

:class:`LatestValues` is a pipeline observer. It runs after each commit, on the pipeline's
task, so it does no JSON and no I/O: per :class:`~gateway.model.PollBatch` (a whole poll
whose every value is good) a few stores, whatever its size; per other sample one dictionary
store; and per connected stream one set union and at most one ``put_nowait``. A stream
client is only told which of its devices have news; its own task then reads their newest
values and encodes them. A client that cannot keep up (its queue is full) is cut off, not
waited for; its browser reconnects and starts from the current values.

Memory: a device's polls are kept as the driver sent them, as columns (:class:`DeviceValues`):
the names tuple the driver keeps anyway, the values list and one timestamp, about 4 KB for
125 points instead of one Sample and one dictionary entry per point (about 18 KB). Samples
are made again only for a reader that asks (the API's views, the live stream's rows).
"""

from __future__ import annotations

import asyncio
import collections
import logging
from dataclasses import dataclass, field
from itertools import compress, repeat
from operator import is_not, itemgetter
from typing import Any

from gateway.model import Batch, Event, PollBatch, Quality, Sample, Value
from gateway.store import Store

log = logging.getLogger(__name__)

CONSUMER = "http"
RECENT_EVENTS = 200
_TS = itemgetter(2)  # Sample.ts_ms, read in C
_GOOD = Quality.GOOD
_new = tuple.__new__  # Sample(...) without the named tuple's Python frame

#: One poll's columns: the driver's names tuple, the values in its order, the timestamp.
Column = tuple[tuple[str, ...], list[Value], int]


class DeviceValues:
    """One device's newest value of each point.

    ``columns``: per poll layout (keyed by ``id(names)``; the tuple is kept in the value, so
    the id stays its own), the last :class:`~gateway.model.PollBatch` of that layout as a
    :data:`Column`. The layouts of one device do not share points: a new layout that does
    takes the shared points over and the old layout's other points become ``loose``.
    ``loose``: the samples that came one by one (a poll with a bad value, other drivers),
    by point. A loose sample is newer than any column value of its point: a column that
    arrives drops the loose samples of its points. So a reader takes the columns and then
    ``loose`` over them.

    ``version`` changes whenever the set of points or their split between columns and
    ``loose`` may have changed other than by ``loose`` gaining points (which only ever
    grows between two versions): ``(version, len(loose))`` names the device's shape, and
    readers keep what they derive from the shape (a sort order, a JSON skeleton) under it.
    """

    __slots__ = ("columns", "device", "loose", "version")

    def __init__(self, device: str) -> None:
        self.device = device
        self.columns: dict[int, Column] = {}
        self.loose: dict[str, Sample] = {}
        self.version = 0

    # -- writes (the observer) ---------------------------------------------------------

    def new_layout(self, names: tuple[str, ...]) -> None:
        """Before the first column of ``names``: older layouts that share points with it go;
        their other points stay, as loose samples (where no newer loose sample is)."""
        self.version += 1
        loose = self.loose
        for key, (old, values, ts) in list(self.columns.items()):
            if old is names or old == names:  # an equal tuple rebuilt: the same points
                del self.columns[key]
            elif not set(old).isdisjoint(names):
                del self.columns[key]
                taken = set(names)
                for name, value in zip(old, values, strict=True):
                    if name not in taken and name not in loose:
                        loose[name] = Sample(self.device, name, ts, value)
        self.forget_loose(names)

    def forget_loose(self, names: tuple[str, ...]) -> None:
        """A column of ``names`` arrived: the loose samples of those points are older."""
        loose = self.loose
        gone = loose.keys() & set(names)
        if gone:
            self.version += 1
            for name in gone:
                del loose[name]

    # -- reads -------------------------------------------------------------------------

    def __len__(self) -> int:
        """How many points have a value."""
        if not self.loose:
            return sum(len(c[0]) for c in self.columns.values())
        return len(self.names())

    def __bool__(self) -> bool:
        return bool(self.columns or self.loose)

    def names(self) -> set[str]:
        out = set(self.loose)
        for names, _values, _ts in self.columns.values():
            out.update(names)
        return out

    def last_seen(self) -> int | None:
        newest = max((c[2] for c in self.columns.values()), default=None)
        if self.loose:
            ts = max(map(_TS, self.loose.values()))
            if newest is None or ts > newest:
                newest = ts
        return newest

    def column_rows(self, column: Column) -> list[tuple[Any, ...]]:
        """A column's samples as plain ``(device, point, ts, value, quality)`` tuples (the
        live stream's rows, made in C), less the points a loose sample overrides."""
        names, values, ts = column
        loose = self.loose
        if loose and not loose.keys().isdisjoint(names):
            return [(self.device, n, ts, v, _GOOD)
                    for n, v in zip(names, values, strict=True) if n not in loose]
        return list(zip(repeat(self.device), names, repeat(ts), values, repeat(_GOOD)))

    def samples(self) -> dict[str, Sample]:
        """Every point's newest sample, made now (a reader's copy)."""
        out: dict[str, Sample] = {}
        device = self.device
        for names, values, ts in self.columns.values():
            out.update(zip(names, map(_new, repeat(Sample), zip(
                repeat(device), names, repeat(ts), values, repeat(_GOOD))), strict=True))
        out.update(self.loose)
        return out

    def get(self, point: str) -> Sample | None:
        found = self.loose.get(point)
        if found is not None:
            return found
        for names, values, ts in self.columns.values():
            if point in names:
                return Sample(self.device, point, ts, values[names.index(point)])
        return None


#: What a stream client was last sent of a device: its columns, a copy of its loose
#: samples, and the device's version at the time.
_Sent = tuple[dict[int, Column], dict[str, Sample], int]


@dataclass(slots=True, eq=False)  # identity: kept in sets
class Subscriber:
    devices: frozenset[str] | None  # None: every device
    queue: asyncio.Queue[tuple[str, Any]]
    overflowed: bool = False
    #: Devices with new samples since the client's last send, and whether a wake-up for
    #: them is queued already: one per send however many batches arrive meanwhile.
    dirty: set[str] = field(default_factory=set)
    woken: bool = False
    #: Per device, what was last sent of it: a send carries only what changed.
    sent: dict[str, _Sent] = field(default_factory=dict)

    def wants(self, device: str | None) -> bool:
        return self.devices is None or device is None or device in self.devices

    def show(self, device: str, points: DeviceValues) -> None:
        """The client has these values (a snapshot showed them): not sent again."""
        self.sent[device] = (dict(points.columns), dict(points.loose), points.version)

    def changed(self, values: dict[str, DeviceValues]) -> list[tuple[Any, ...]]:
        """The newest sample of each point of the dirty devices not sent yet, as Samples or
        plain tuples of the same five fields (what the stream writes); marks them sent.
        Its cost follows the points shown, not the sampling rate, and stays in C: a column
        is sent whole when it is not the one sent (every value of a poll is new); loose
        samples are compared by identity, by position while the device's shape stands (the
        sent copy keeps the order of ``loose``, which only gains points, at its end), else
        by name."""
        out: list[tuple[Any, ...]] = []
        for device in self.dirty:
            points = values.get(device)
            if not points:
                continue
            cols, loose, version = self.sent.get(device) or ({}, {}, -1)
            for key, column in points.columns.items():
                if cols.get(key) is not column:
                    out += points.column_rows(column)
            now = points.loose
            if now:
                if version == points.version and len(loose) == len(now):
                    values_now = now.values()
                    out += compress(values_now, map(is_not, values_now, loose.values()))
                else:
                    before = loose.get
                    out += [s for p, s in now.items() if before(p) is not s]
            self.sent[device] = (dict(points.columns), dict(now), points.version)
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
    """``values[device]``: the newest committed value of each point (:class:`DeviceValues`)."""

    queue_size: int = 1000
    values: dict[str, DeviceValues] = field(default_factory=dict)
    #: Per device, a count of the batches that brought it samples: a view encoded at one
    #: generation is still true while the count stands (gateway.http.encode).
    generation: dict[str, int] = field(default_factory=dict)
    subscribers: list[Subscriber] = field(default_factory=list)
    recent_events: collections.deque[Event] = field(
        default_factory=lambda: collections.deque(maxlen=RECENT_EVENTS))
    stats: LiveStats = field(default_factory=LiveStats)

    # -- the observer (on the pipeline task: keep it cheap) ------------------------------

    def __call__(self, batch: Batch, seq_first: int) -> None:
        # Parts are committed in order, so the newest one wins without comparing
        # timestamps. A PollBatch is kept as its columns: a few stores, no per-sample work
        # (the names tuple is the driver's, the same object poll after poll, so its id
        # finds the layout). Other samples: one dict store each (the Sample itself, no new
        # object); batches come in runs of one device, so the device lookup happens once
        # per run.
        values = self.values
        seen: set[str] = set()
        for part in getattr(batch, "parts", None) or (batch,):
            if type(part) is PollBatch:
                device = part.device
                dev = values.get(device)
                if dev is None:
                    dev = values[device] = DeviceValues(device)
                names = part.names
                key = id(names)
                columns = dev.columns
                if key not in columns:
                    dev.new_layout(names)
                elif dev.loose and not dev.loose.keys().isdisjoint(names):
                    dev.forget_loose(names)
                columns[key] = (names, part.values, part.ts_ms)
                seen.add(device)
                continue
            current: str | None = None
            loose: dict[str, Sample] = {}
            for s in part:
                if s.device != current:
                    current = s.device
                    dev = values.get(current)
                    if dev is None:
                        dev = values[current] = DeviceValues(current)
                    loose = dev.loose
                    seen.add(current)
                loose[s.point] = s
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
        return points.last_seen() if points else None

    def samples(self, device: str) -> dict[str, Sample]:
        """The device's newest sample of each point (made for the caller)."""
        points = self.values.get(device)
        return points.samples() if points else {}

    def count(self, device: str) -> int:
        """How many of the device's points have a value."""
        points = self.values.get(device)
        return len(points) if points else 0

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

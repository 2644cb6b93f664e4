"""Plain data that flows between the parts: samples, device status, events.

A sample is a NamedTuple rather than a dataclass on purpose: the ingest path handles several
hundred thousand per second, a tuple is the cheapest immutable record CPython has, and
``json.dumps`` writes it as the JSON array the wire format uses without a conversion step.
"""

from __future__ import annotations

import enum
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

Value = float | int | bool | str | None


class Quality(enum.StrEnum):
    GOOD = "good"
    UNCERTAIN = "uncertain"
    BAD = "bad"


class Sample(NamedTuple):
    """One reading of one point. ``ts_ms`` is UTC milliseconds since the epoch."""

    device: str
    point: str
    ts_ms: int
    value: Value
    quality: Quality = Quality.GOOD


Batch = Sequence[Sample]


class PollBatch(list[Sample]):
    """A batch that also carries its samples as columns: one read of one device.

    It is a list of :class:`Sample` like any batch, and every consumer may read it so. Its
    samples share one device and one timestamp, every value is GOOD, and they come in the
    order of ``names``: ``self[i] == Sample(device, names[i], ts_ms, values[i])``. A driver
    builds one only when all of that holds (a poll with a bad value sends a plain list).

    ``names`` is the driver's own tuple, the same object from one poll of the device to the
    next while its point map stands, so a consumer may key a cache on ``id(names)`` (keep a
    reference to the tuple beside the key). Consumers on the ingest path (the history, the
    live-value cache) use the columns instead of reading each sample. Nobody may mutate it.
    """

    __slots__ = ("device", "names", "ts_ms", "values")
    device: str
    ts_ms: int
    names: tuple[str, ...]
    values: list[Value]


class Committed(list[Sample]):
    """The samples of one commit, flat, and ``parts``: the batches they came in, in order.

    Pipeline processors and observers receive one (a list of :class:`Sample`, as always);
    ``parts`` lets the ones that know :class:`PollBatch` find the columns. The parts'
    samples, concatenated, are the list itself.
    """

    __slots__ = ("parts",)
    parts: list[list[Sample]]

    @classmethod
    def of(cls, parts: list[list[Sample]]) -> Committed:
        out = cls()
        for part in parts:
            out.extend(part)
        out.parts = parts
        return out


class DeviceStatus(enum.StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"
    ALARM = "alarm"
    MAINTENANCE = "maintenance"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class Event:
    """Something that happened, committed to the outbox before anyone is told.

    ``id`` is stable: a producer that can re-create the same event after a crash (an alarm for
    the same rule, device and start time) derives it from those facts with :func:`event_id`,
    so every receiver can drop a repeat.
    """

    type: str
    body: Mapping[str, Any]
    device: str | None = None
    ts_ms: int = field(default_factory=now_ms)
    id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def to_wire(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type,
            "ts": self.ts_ms,
            "device": self.device,
            "body": dict(self.body),
        }


_EVENT_NS = uuid.UUID("6d1f3c52-7f5e-4b7e-9a43-1c0f1e8a5b11")


def event_id(*parts: object) -> str:
    """A deterministic event id from the facts that make an event unique."""
    return uuid.uuid5(_EVENT_NS, "\x1f".join(str(p) for p in parts)).hex


def is_good(sample: Sample) -> bool:
    return sample.quality is Quality.GOOD or sample.quality == "good"


def samples_of(device: str, ts_ms: int, values: Mapping[str, Value]) -> list[Sample]:
    """Build a batch of good samples that share a device and a timestamp."""
    return [Sample(device, point, ts_ms, value) for point, value in values.items()]


__all__: Sequence[str] = [
    "Batch",
    "DeviceStatus",
    "Event",
    "Quality",
    "Sample",
    "Value",
    "event_id",
    "is_good",
    "now_ms",
    "samples_of",
]

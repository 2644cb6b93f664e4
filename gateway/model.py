"""Plain data that flows between the parts: samples, device status, events.

A sample is a NamedTuple rather than a dataclass on purpose: the ingest path handles several
hundred thousand per second, a tuple is the cheapest immutable record CPython has, and
``json.dumps`` writes it as the JSON array the wire format uses without a conversion step.
"""

from __future__ import annotations

import enum
import operator
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain, repeat
from typing import Any, NamedTuple, overload

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


class PollBatch(Sequence[Sample]):
    """One read of one device whose every value is good, as columns: a read-only sequence
    of :class:`Sample` built only when someone reads it.

    ``PollBatch(device, ts_ms, names, values)``: ``self[i] == Sample(device, names[i], ts_ms,
    values[i])``, every value GOOD. A driver builds one only when all of that holds (a poll
    with a bad value sends a plain list). ``len()`` comes from ``values``; iterating,
    indexing or slicing (a slice is a list) makes the samples once and keeps them. It equals
    any sequence of the same samples (a list in tests). It is not a ``list``: code that
    needs one (``+``, ``json.dumps``) must call ``list(batch)``.

    ``names`` is the driver's own tuple, the same object from one poll of the device to the
    next while its point map stands, so a consumer may key a cache on ``id(names)`` (keep a
    reference to the tuple beside the key). Consumers on the ingest path (the store's codec,
    the history, the live-value cache, the rules) use the columns and never make the
    samples. Nobody may mutate it, its columns included.

    ``floats`` (default False: unknown) is True only when the driver knows that every value
    is a finite ``float`` (e.g. integer registers all scaled by a float): a consumer may
    then skip its own type and finiteness checks.
    """

    __slots__ = ("_rows", "device", "floats", "names", "ts_ms", "values")
    device: str
    ts_ms: int
    names: tuple[str, ...]
    values: list[Value]
    floats: bool

    def __init__(self, device: str, ts_ms: int, names: tuple[str, ...],
                 values: list[Value], floats: bool = False) -> None:
        self.device = device
        self.ts_ms = ts_ms
        self.names = names
        self.values = values
        self.floats = floats
        self._rows: list[Sample] | None = None

    def rows(self) -> list[Sample]:
        """The samples, made on the first call (in C: ``tuple.__new__`` over the zipped
        columns, what ``Sample(...)`` does without its Python frame) and kept."""
        rows = self._rows
        if rows is None:
            rows = self._rows = list(map(tuple.__new__, repeat(Sample), zip(
                repeat(self.device), self.names, repeat(self.ts_ms), self.values,
                repeat(Quality.GOOD))))
        return rows

    @property
    def made(self) -> bool:
        """Whether the samples were made (someone read them)."""
        return self._rows is not None

    def __len__(self) -> int:
        return len(self.values)

    def __iter__(self) -> Iterator[Sample]:
        return iter(self.rows())

    @overload
    def __getitem__(self, index: int) -> Sample: ...

    @overload
    def __getitem__(self, index: slice) -> list[Sample]: ...

    def __getitem__(self, index: int | slice) -> Sample | list[Sample]:
        return self.rows()[index]

    def __eq__(self, other: object) -> bool:
        return _same_samples(self, other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (f"PollBatch(device={self.device!r}, ts_ms={self.ts_ms!r}, "
                f"names={self.names!r}, values={self.values!r})")


class Committed(Sequence[Sample]):
    """The samples of one commit: ``parts``, the batches they came in, in order, seen as one
    read-only sequence of :class:`Sample` (the parts' samples, concatenated).

    Pipeline processors and observers receive one; ``parts`` lets the ones that know
    :class:`PollBatch` find the columns. ``len()`` is known up front, iterating chains the
    parts (a PollBatch part makes its samples then), and indexing or slicing (a slice is a
    list) makes one flat list, once. It equals any sequence of the same samples. It is not
    a ``list``: code that needs one must call ``list(batch)``.
    """

    __slots__ = ("_flat", "_len", "parts")
    parts: list[Sequence[Sample]]

    def __init__(self, parts: list[Sequence[Sample]], length: int | None = None) -> None:
        """``length``: the parts' total length when the caller counted it already (it must
        be right: it is ``len()`` from then on)."""
        self.parts = parts
        self._len = sum(map(len, parts)) if length is None else length
        self._flat: list[Sample] | None = None

    @classmethod
    def of(cls, parts: Iterable[Sequence[Sample]], length: int | None = None) -> Committed:
        """The commit of ``parts``; a part that is itself a Committed (a held batch, retried)
        gives its own parts, so columns stay columns. ``length`` as for the constructor."""
        flat: list[Sequence[Sample]] = []
        for part in parts:
            if type(part) is Committed:
                flat.extend(part.parts)
            else:
                flat.append(part)
        return cls(flat, length)

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[Sample]:
        flat = self._flat
        if flat is not None:
            return iter(flat)
        return chain.from_iterable(self.parts)

    @overload
    def __getitem__(self, index: int) -> Sample: ...

    @overload
    def __getitem__(self, index: slice) -> list[Sample]: ...

    def __getitem__(self, index: int | slice) -> Sample | list[Sample]:
        flat = self._flat
        if flat is None:
            flat = self._flat = list(chain.from_iterable(self.parts))
        return flat[index]

    def __eq__(self, other: object) -> bool:
        return _same_samples(self, other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Committed({self._len} samples in {len(self.parts)} parts: {self.parts!r})"


def _same_samples(mine: Sequence[Sample], other: object) -> bool | Any:
    """``==`` of a lazy batch: the same samples in the same order as any other sequence (not
    text); NotImplemented for anything else, as ``list.__eq__`` does."""
    if not isinstance(other, Sequence) or isinstance(other, (str, bytes, bytearray)):
        return NotImplemented
    if len(mine) != len(other):
        return False
    if other is mine:
        return True
    return all(map(operator.eq, mine, other))


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
    "Committed",
    "DeviceStatus",
    "Event",
    "PollBatch",
    "Quality",
    "Sample",
    "Value",
    "event_id",
    "is_good",
    "now_ms",
    "samples_of",
]

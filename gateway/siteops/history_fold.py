"""The history's in-memory fold: samples into per-minute accumulators, with little Python per
sample.

Per minute there is one *bucket*: a dict from ``(device, point)`` to a list
``[n, total, vmin, vmax, last, last_ts]``. A batch is checked once (all GOOD, all finite
``float``/``int``, all in one minute: C-level passes over the batch), then each sample costs
one dict lookup and a few list updates. Anything else (bad quality, text, booleans, NaN, a
batch across a minute boundary) takes the per-sample path, with the same result.

Energy and power points of a device with an energy source never enter the fast path: their
first lookup in a bucket misses on purpose (they are kept in the bucket's second dict), so
the miss handler feeds the meter too. Points not kept (``history.points``) get an
accumulator marked as dropped, so they cost no more than the others and are never written.

The :class:`~gateway.siteops.history.History` decides when a minute is closed and written;
this module only folds and hands buckets out.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from operator import itemgetter
from typing import Any

from gateway.model import Quality, Sample

MINUTE_MS = 60_000
GOOD = Quality.GOOD
_KEY = itemgetter(0, 1)
_TS = itemgetter(2)
_VALUE = itemgetter(3)
_QUALITY = itemgetter(4)
_NUMBERS = frozenset((float, int))

#: An accumulator of a point that ``history.points`` does not keep: folded, never written.
DROPPED = 6

Acc = list[Any]
Key = tuple[str, str]


class Bucket:
    """One minute's accumulators, and the lowest sequence number folded into it (a lower
    bound: where a restart re-reads the buffer from while the minute is not written)."""

    __slots__ = ("accs", "first_seq", "meter_accs", "n")

    def __init__(self, first_seq: int) -> None:
        self.first_seq = first_seq
        self.n = 0  # samples folded in
        self.accs: dict[Key, Acc] = {}
        #: Accumulators of energy/power points (kept out of ``accs``: see the module doc).
        self.meter_accs: dict[Key, Acc] = {}

    def rows(self) -> list[tuple[str, str, Acc]]:
        return [(d, p, a) for (d, p), a in (*self.accs.items(), *self.meter_accs.items())
                if len(a) != DROPPED + 1]

    def get(self, key: Key) -> Acc | None:
        a = self.accs.get(key) or self.meter_accs.get(key)
        return a if a is not None and len(a) != DROPPED + 1 else None


def number(value: Any) -> float | None:
    t = type(value)
    if t is not float and t is not int:
        return None
    if value != value or value in (math.inf, -math.inf):
        return None
    return float(value)


def _valid(rows: Sequence[Sample]) -> bool:
    """True when every sample is GOOD with a finite float or int value (C-level passes)."""
    if list(map(_QUALITY, rows)).count(GOOD) != len(rows):
        return False
    values = list(map(_VALUE, rows))
    if not _NUMBERS.issuperset(map(type, values)):
        return False
    try:
        total = sum(values)
    except OverflowError:  # an int too large for a float
        return False
    return bool(total - total == 0)  # NaN or an infinity anywhere: not 0


class Folder:
    """The open buckets, by minute start (ms)."""

    def __init__(self, keeps: Callable[[str, str], bool] | None,
                 meter_point: Callable[[str, str], bool]) -> None:
        #: None: every point is kept.
        self._keeps = keeps
        #: Is (device, point) the energy or power point of a device with an energy source?
        self._meter_point = meter_point
        #: Called for each good number of a meter point: (device, point, value, ts).
        self.on_meter: Callable[[str, str, float, int], None] = lambda d, p, v, t: None
        self.buckets: dict[int, Bucket] = {}

    def bucket(self, minute: int, first_seq: int) -> Bucket:
        b = self.buckets.get(minute)
        if b is None:
            b = self.buckets[minute] = Bucket(first_seq)
        return b

    def fold(self, rows: Sequence[Sample], first_seq: int, meters: bool = True) -> None:
        """Fold ``rows`` (numbered from ``first_seq``); ``meters=False`` leaves the energy
        meters alone (a restart re-reading samples the meters already had)."""
        if not rows:
            return
        tss = list(map(_TS, rows))
        lo, hi = min(tss), max(tss)
        minute = lo - lo % MINUTE_MS
        if hi >= minute + MINUTE_MS or not _valid(rows):
            self._fold_slow(rows, first_seq, meters)
            return
        b = self.bucket(minute, first_seq)
        b.n += len(rows)
        get = b.accs.get
        miss = self._miss
        for key, ts, v in zip(map(_KEY, rows), tss, map(_VALUE, rows), strict=True):
            a = get(key)
            if a is None:
                miss(b, key, ts, v, meters)
                continue
            a[0] += 1
            a[1] += v
            if v < a[2]:
                a[2] = v
            elif v > a[3]:
                a[3] = v
            if ts >= a[5]:
                a[4] = v
                a[5] = ts

    def _fold_slow(self, rows: Sequence[Sample], first_seq: int, meters: bool) -> None:
        buckets = self.buckets
        for device, point, ts, value, quality in rows:
            if quality != GOOD:
                continue
            v = number(value)
            if v is None:
                continue
            minute = ts - ts % MINUTE_MS
            b = buckets.get(minute)
            if b is None:
                b = self.bucket(minute, first_seq)
            b.n += 1
            key = (device, point)
            a = b.accs.get(key)
            if a is None:
                self._miss(b, key, ts, v, meters)
            else:
                _add(a, v, ts)

    def _miss(self, b: Bucket, key: Key, ts: int, v: float, meters: bool) -> None:
        device, point = key
        if self._meter_point(device, point):
            if meters:
                self.on_meter(device, point, v, ts)
            a = b.meter_accs.get(key)
            if a is not None:
                _add(a, v, ts)
                return
            a = b.meter_accs[key] = [1, v, v, v, v, ts]
        else:
            a = b.accs[key] = [1, v, v, v, v, ts]
        if self._keeps is not None and not self._keeps(device, point):
            a.append(None)  # DROPPED: length 7

    def pop_closed(self, horizon: int) -> list[tuple[int, Bucket]]:
        """The buckets of minutes before ``horizon``, oldest first (still held: call
        :meth:`forget` once they are written)."""
        return sorted((m, b) for m, b in self.buckets.items() if m < horizon)

    def forget(self, minutes: list[int]) -> None:
        for m in minutes:
            self.buckets.pop(m, None)

    def samples(self) -> int:
        return sum(b.n for b in self.buckets.values())

    def open_rows(self, device: str, point: str | None
                  ) -> list[tuple[str, int, int, float, float, float, float, int]]:
        """(point, minute, n, total, vmin, vmax, last, last_ts) of the open minutes."""
        out = []
        for minute, b in self.buckets.items():
            if point is not None:
                a = b.get((device, point))
                if a is not None:
                    out.append((point, minute, *a))
                continue
            for d, p, a in b.rows():
                if d == device:
                    out.append((p, minute, *a))
        return out


def _add(a: Acc, v: float, ts: int) -> None:
    a[0] += 1
    a[1] += v
    if v < a[2]:
        a[2] = v
    elif v > a[3]:
        a[3] = v
    if ts >= a[5]:
        a[4] = v
        a[5] = ts

"""The history's in-memory fold: samples into per-minute accumulators, with little Python per
sample.

Per minute there is one *bucket*: a dict from ``(device, point)`` to a list
``[n, total, vmin, vmax, last, last_ts]``. A batch is checked once (all GOOD, all finite
``float``/``int``, all in one minute: C-level passes over the batch), then each sample costs
one dict lookup and a few list updates. Anything else (bad quality, text, booleans, NaN, a
batch across a minute boundary) takes the per-sample path, with the same result.

A device poll with the same points as that device's last clean poll goes column-wise
instead (see :meth:`Folder.fold`): the batch's columns come out in C-level passes, the poll's
values wait in its minute's columns (packed, when all are floats), and every
``SETTLE_POLLS`` polls (and before the columns are read) one ``sum`` and one sort per point
fold the waiting polls in. A
:class:`~gateway.model.PollBatch` (a driver's whole good poll, with its columns) goes there
straight from its columns (:meth:`Folder.fold_poll`): no pass over its samples at all.

Energy and power points of a device with an energy source never enter the fast path: their
first lookup in a bucket misses on purpose (they are kept in the bucket's second dict), so
the miss handler feeds the meter too. Points not kept (``history.points``) get an
accumulator marked as dropped, so they cost no more than the others and are never written.

The :class:`~gateway.siteops.history.History` decides when a minute is closed and written;
this module only folds and hands buckets out.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from itertools import compress, repeat
from operator import itemgetter
from typing import Any

from gateway.model import PollBatch, Quality, Sample
from gateway.siteops.history_settle import packer, settle_polls, unpacked

MINUTE_MS = 60_000
GOOD = Quality.GOOD
_KEY = itemgetter(0, 1)
_DEVICE = itemgetter(0)
_POINT = itemgetter(1)
_TS = itemgetter(2)
_VALUE = itemgetter(3)
_QUALITY = itemgetter(4)
_NUMBERS = frozenset((float, int))

#: A device's polls wait, then are folded in one pass per point (``sum`` from its total, one
#: sort for both ends) every this many polls: fewer C-level calls per sample than per-poll
#: passes (the per-point calls are most of the cost: at 125 points, 8 -> 16 -> 32 cut the
#: fold's instructions per poll 141 k -> 94 k -> 52 k). A poll of floats waits packed (8
#: bytes a value): at most 32 KB a device of 125 points, about 16 KB on average.
SETTLE_POLLS = 32

#: A closed minute's rows are made and written this many (whole devices) at a time.
ROWS_CHUNK = 1_000

#: An accumulator of a point that ``history.points`` does not keep: folded, never written.
DROPPED = 6

Acc = list[Any]
Key = tuple[str, str]
#: The ids of a device's points: ``ids(device, points)`` (see :meth:`Bucket.row_chunks`).
Ids = Callable[[str, tuple[str, ...]], Sequence[int]]


class Bucket:
    """One minute's accumulators, and the lowest sequence number folded into it (a lower
    bound: where a restart re-reads the buffer from while the minute is not written)."""

    __slots__ = ("accs", "cols", "first_seq", "meter_accs", "n")

    def __init__(self, first_seq: int) -> None:
        self.first_seq = first_seq
        self.n = 0  # samples folded in
        self.accs: dict[Key, Acc] = {}
        #: Accumulators of energy/power points (kept out of ``accs``: see the module doc).
        self.meter_accs: dict[Key, Acc] = {}
        #: Per device, a whole poll's points at once: [layout, n, totals, mins, maxs,
        #: lasts, last_ts, pending] (in the layout's order; lasts may be packed: see
        #: :func:`~gateway.siteops.history_settle.unpacked`). ``pending`` holds the value
        #: lists of up to ``SETTLE_POLLS`` polls not yet in totals/mins/maxs (which are
        #: the first poll's values before the first settle); read the columns only after
        #: :meth:`settle`.
        self.cols: dict[str, list[Any]] = {}

    def merged(self, kept: Callable[[str, str], bool] | None = None,
               devices: set[str] | None = None) -> dict[Key, Acc]:
        """The point accumulators, merged with the poll columns of ``devices`` (else all
        devices); ``kept`` (else all) says which poll columns count."""
        self.settle()
        out: dict[Key, Acc] = {}
        for accs in (self.accs, self.meter_accs):
            for key, a in accs.items():
                if len(a) == DROPPED + 1:
                    out[key] = a  # stays dropped whatever else comes
                else:
                    merge(out, key, a)
        for device, (layout, n, totals, mins, maxs, last, last_ts, _) in self.cols.items():
            if devices is not None and device not in devices:
                continue
            lasts = unpacked(last, len(layout))
            for k, point in enumerate(layout):
                if kept is None or kept(device, point):
                    merge(out, (device, point),
                          [n, totals[k], mins[k], maxs[k], lasts[k], last_ts])
        return out

    def settle(self) -> None:
        """Fold the polls still pending in the columns (see :func:`settle_polls`)."""
        for c in self.cols.values():
            if c[7]:
                settle_polls(c)

    def rows(self, minute: int, kept: Callable[[str, str], bool] | None = None
             ) -> list[tuple[Any, ...]]:
        """(device, point, minute, n, total, vmin, vmax, last, last_ts) of every point."""
        self.settle()
        return [(d, p, minute, *a[:6]) for (d, p), a in self.merged(kept).items()
                if len(a) != DROPPED + 1]

    def row_chunks(self, minute: int, kept: Callable[[str, str], bool] | None,
                   ids: Ids) -> Iterator[list[tuple[Any, ...]]]:
        """The rows to write, (minute, sid, n, total, vmin, vmax, last, last_ts) with each
        point's id from ``ids(device, points)``, in lists of about ``ROWS_CHUNK`` rows
        (whole devices) made as they are asked for: a minute's rows of a whole site (12,500
        at 100 x 125) never exist at once. A device that has only poll columns gives its
        rows straight from them (C-level)."""
        size = ROWS_CHUNK
        self.settle()
        mixed = {d for d, _ in self.accs} | {d for d, _ in self.meter_accs}
        out: list[tuple[Any, ...]] = [
            (minute, ids(d, (p,))[0], *a[:6]) for (d, p), a in self.merged(kept, mixed).items()
            if len(a) != DROPPED + 1]
        for device, (layout, n, totals, mins, maxs, last, last_ts, _) in self.cols.items():
            if device in mixed:
                continue
            if len(out) >= size:
                yield out
                out = []
            cols = zip(repeat(minute), ids(device, layout), repeat(n), totals, mins, maxs,
                       unpacked(last, len(layout)), repeat(last_ts))
            if kept is None:
                out.extend(cols)
            else:
                out.extend(compress(cols, [kept(device, p) for p in layout]))
        if out:
            yield out


def number(value: Any) -> float | None:
    t = type(value)
    if t is not float and t is not int:
        return None
    if value != value or value in (math.inf, -math.inf):
        return None
    try:
        return float(value)
    except OverflowError:  # an int too large for a float
        return None


def _valid(rows: Sequence[Sample]) -> bool:
    """True when every sample is GOOD with a finite float or int value (C-level passes)."""
    return _valid_columns(list(map(_QUALITY, rows)), list(map(_VALUE, rows)))


def _valid_columns(quals: Sequence[Any], values: Sequence[Any]) -> bool:
    """:func:`_valid` of the samples' qualities and values, taken out already."""
    if quals.count(GOOD) != len(quals):
        return False
    if not _NUMBERS.issuperset(map(type, values)):
        return False
    try:
        total = float(sum(values))
    except OverflowError:  # an int too large for a float
        return False
    return total - total == 0  # NaN or an infinity anywhere: not 0


class Folder:
    """The open buckets, by minute start (ms)."""

    #: Fold whole polls column-wise (see :meth:`fold`).
    columns = True

    def __init__(self, keeps: Callable[[str, str], bool] | None,
                 meter_point: Callable[[str, str], bool]) -> None:
        #: None: every point is kept.
        self._keeps = keeps
        #: Is (device, point) the energy or power point of a device with an energy source?
        self._meter_point = meter_point
        #: Called for each good number of a meter point: (device, point, value, ts).
        self.on_meter: Callable[[str, str, float, int], None] = lambda d, p, v, t: None
        self.buckets: dict[int, Bucket] = {}
        self._kept: dict[Key, bool] = {}
        #: Per device, the points of its last clean poll, in order.
        self._layouts: dict[str, tuple[str, ...]] = {}
        #: Per device, the indexes of its meter points in its layout.
        self._meter_at: dict[str, list[int]] = {}

    def bucket(self, minute: int, first_seq: int) -> Bucket:
        b = self.buckets.get(minute)
        if b is None:
            b = self.buckets[minute] = Bucket(first_seq)
        return b

    def fold(self, rows: Sequence[Sample], first_seq: int, meters: bool = True) -> None:
        """Fold ``rows`` (numbered from ``first_seq``); ``meters=False`` leaves the energy
        meters alone (a restart re-reading samples the meters already had).

        A batch is a series of device polls. A poll with the same points in the same order
        as that device's last clean poll (its *layout*), all GOOD finite numbers of one
        timestamp, is folded column-wise: a few C-level passes over its values. Any other
        run of samples goes through :meth:`_fold_run` and teaches the layout."""
        n = len(rows)
        if not n:
            return
        if not self.columns:
            self._fold_run(rows, first_seq, meters)
            return
        # Five passes take the five columns out of the batch (tuples). Not ``zip(*rows)``:
        # that makes an iterator per sample, objects the garbage collector tracks, alive
        # for the whole call, so in a daemon with a large heap they set off collections of
        # the older generations (measured in the whole gateway at 100 x 125: most of the
        # fold's CPU was the collector's).
        devs = tuple(map(_DEVICE, rows))
        pts = tuple(map(_POINT, rows))
        tss = tuple(map(_TS, rows))
        vals = tuple(map(_VALUE, rows))
        quals = tuple(map(_QUALITY, rows))
        valid = _valid_columns(quals, vals)  # the whole batch at once: usually true
        layouts = self._layouts
        i = 0
        while i < n:
            d = devs[i]
            lay = layouts.get(d)
            if lay is not None:
                j = i + len(lay)
                if (j <= n and pts[i:j] == lay and devs[i:j].count(d) == j - i
                        and self._fold_poll(tss, vals, quals, valid, i, j, d, lay,
                                            first_seq + i, meters)):
                    i = j
                    continue
            j = i + 1
            while j < n and devs[j] == d:
                j += 1
            run = rows[i:j]
            # A clean poll teaches the device's layout and is itself folded column-wise
            # (so a minute's rows usually all come from columns: see Bucket.rows).
            if not (self._learn(d, pts[i:j], run) and len(layouts[d]) == j - i
                    and self._fold_poll(tss, vals, quals, valid, i, j, d, layouts[d],
                                        first_seq + i, meters)):
                self._fold_run(run, first_seq + i, meters)
            i = j

    def _learn(self, device: str, pts: Sequence[str], run: Sequence[Sample]) -> bool:
        """Learn ``device``'s layout from ``run`` if it is a clean poll (its points up to
        the first repeated one); True when the layout is new."""
        seen: set[str] = set()
        for k, p in enumerate(pts):
            if p in seen:
                pts, run = pts[:k], run[:k]
                break
            seen.add(p)
        layout = tuple(pts)
        if layout == self._layouts.get(device) or len(layout) < 2:
            return False
        tss = list(map(_TS, run))
        if tss.count(tss[0]) == len(tss) and _valid(run):
            self._layouts[device] = layout
            self._meter_at[device] = [k for k, p in enumerate(pts)
                                      if self._meter_point(device, p)]
            return True
        return False

    def _fold_poll(self, tss: tuple[int, ...], values: tuple[Any, ...],
                   quals: tuple[Any, ...], valid: bool, i: int, j: int, device: str,
                   layout: tuple[str, ...], first_seq: int, meters: bool) -> bool:
        """One poll of ``device`` in its layout, column-wise; False: not such a poll."""
        ts = tss[i]
        if tss[i:j].count(ts) != j - i:
            return False
        vals = values[i:j]
        if not valid and not _valid_columns(quals[i:j], vals):
            return False
        return self._add_poll(device, layout, vals, ts, first_seq, meters)

    def _add_poll(self, device: str, layout: tuple[str, ...], vals: Sequence[Any], ts: int,
                  first_seq: int, meters: bool, floats: bool = False) -> bool:
        """Add one poll of ``device`` (good numbers in ``layout`` order, one timestamp) to
        its minute's columns; False, with nothing changed, when the device's layout changed
        within the minute (its samples then go sample by sample)."""
        minute = ts - ts % MINUTE_MS
        b = self.bucket(minute, first_seq)
        c = b.cols.get(device)
        if c is None:
            b.cols[device] = [layout, 1, vals, vals, vals, vals, ts, []]
        elif c[0] is not layout and c[0] != layout:
            return False
        else:
            c[0] = layout  # equal: keep the driver's tuple, so the next check is by identity
            c[1] += 1
            pending = c[7]
            # floats (all of them: ``fold_poll`` knows) wait packed, exactly; the last
            # values are then the same bytes (read through :func:`lasts`)
            last = packer(len(vals)).pack(*vals) if floats else vals
            pending.append(last)
            if len(pending) >= SETTLE_POLLS:
                settle_polls(c)
            if ts >= c[6]:
                c[5], c[6] = last, ts
        b.n += len(vals)
        if meters:
            for k in self._meter_at[device]:
                self.on_meter(device, layout[k], vals[k], ts)
        return True

    def fold_poll(self, p: PollBatch, first_seq: int, meters: bool = True) -> None:
        """Fold one :class:`~gateway.model.PollBatch` from its columns: the same result as
        :meth:`fold` of its samples, without taking them apart. Its ``names`` tuple is the
        device's layout (compared by identity first: the driver keeps the same tuple from
        poll to poll); its values are GOOD, of one timestamp, by the class's contract.
        Anything else (a value that is not a finite int or float, a new layout) goes through
        :meth:`fold`, and a layout changed within the minute sample by sample, as a plain
        list of the same samples would."""
        device, names = p.device, p.names
        values: list[Any] = p.values  # checked just below: finite ints and floats
        floats = p.floats  # the driver knows: all finite floats
        if not floats:
            types = list(map(type, values))  # all floats, usually: counted by identity
            n_float = types.count(float)
            if n_float != len(types) and not _NUMBERS.issuperset(types):
                self.fold(p, first_seq, meters)  # not numbers (or a bool): sample by sample
                return
            try:
                total = float(sum(values))
            except OverflowError:  # an int too large for a float
                total = math.inf
            if total - total != 0:  # NaN or an infinity somewhere
                self.fold(p, first_seq, meters)
                return
            floats = len(types) == n_float
        lay = self._layouts.get(device)
        if lay is not names:
            if lay != names:  # a new layout: learnt from the samples, as a plain list's
                self.fold(p, first_seq, meters)
                if self._layouts.get(device) == names:
                    self._layouts[device] = names  # the same points: the driver's tuple
                return
            self._layouts[device] = lay = names
        if not self._add_poll(device, lay, values, p.ts_ms, first_seq, meters, floats):
            self._fold_run(p, first_seq, meters)  # the layout changed within the minute

    def _fold_run(self, rows: Sequence[Sample], first_seq: int, meters: bool) -> None:
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

    def kept(self, device: str, point: str) -> bool:
        if self._keeps is None:
            return True
        found = self._kept.get((device, point))
        if found is None:
            found = self._kept[(device, point)] = self._keeps(device, point)
        return found

    def rows(self, minute: int, b: Bucket) -> list[tuple[Any, ...]]:
        """The rows of bucket ``b`` (minute ``minute``) to write."""
        return b.rows(minute, None if self._keeps is None else self.kept)

    def row_chunks(self, minute: int, b: Bucket, ids: Ids
                   ) -> Iterator[list[tuple[Any, ...]]]:
        """The rows of bucket ``b`` to write, by point id (see :meth:`Bucket.row_chunks`)."""
        return b.row_chunks(minute, None if self._keeps is None else self.kept, ids)

    def open_rows(self, device: str, point: str | None
                  ) -> list[tuple[str, int, int, float, float, float, float, int]]:
        """(point, minute, n, total, vmin, vmax, last, last_ts) of the open minutes."""
        return [r[1:] for minute, b in self.buckets.items() for r in self.rows(minute, b)
                if r[0] == device and (point is None or r[1] == point)]


def merge(into: dict[Any, Acc], key: Any, a: Sequence[Any]) -> None:
    """Add accumulator ``a`` to ``into[key]``."""
    b = into.get(key)
    if b is None:
        into[key] = list(a[:6])
        return
    if len(b) == DROPPED + 1:
        return
    b[0] += a[0]
    b[1] += a[1]
    b[2], b[3] = min(b[2], a[2]), max(b[3], a[3])
    if a[5] >= b[5]:
        b[4], b[5] = a[4], a[5]


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

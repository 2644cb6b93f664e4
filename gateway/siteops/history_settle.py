"""The settle of the history's poll columns: a device's waiting polls folded into its
minute's totals, minima and maxima at once (see :mod:`gateway.siteops.history_fold`)."""

from __future__ import annotations

import struct
from array import array
from collections.abc import Iterable, Sequence
from itertools import compress, repeat
from operator import eq, gt, itemgetter, lt
from typing import Any


def doubles(values: Iterable[Any], n: int) -> array[float]:
    """An array of the ``n`` doubles of ``values``: packed by one ``struct`` call (an
    array's own item by item conversion costs several times as much)."""
    return array("d", packer(n).pack(*values))


def packer(n: int) -> struct.Struct:
    """The ``struct`` of ``n`` doubles (made once per length)."""
    found = _PACKS.get(n)
    if found is None:
        found = _PACKS[n] = struct.Struct(f"{n}d")
    return found


def unpacked(values: Sequence[Any] | bytes, n: int) -> Sequence[Any]:
    """``values`` as a sequence: the ``n`` doubles of packed bytes, else as they are."""
    return packer(n).unpack(values) if type(values) is bytes else values


_PACKS: dict[int, struct.Struct] = {}
_FIRST = itemgetter(0)
_LAST = itemgetter(-1)


def settle_polls(c: list[Any]) -> None:
    """Fold a device's pending polls (value lists, or packed floats) into its totals,
    minima and maxima: one ``zip`` of the waiting polls, then per point one ``sum`` from its
    total (left to right,
    as sample by sample) and one sort; the minima and maxima change only where a waiting
    value is below or above them. They are arrays of doubles (8 bytes a point, not a float
    object each). Until the first settle the three are the minute's first poll's values."""
    pending = c[7]
    if not pending:
        return
    n = len(c[0])  # the layout's points
    # A poll of floats waits packed (8 bytes a value, not a float object): unpacked here.
    cols = list(zip(*[packer(n).unpack(x) if type(x) is bytes else x for x in pending],
                    strict=True))
    c[2] = doubles(map(sum, cols, c[2]), n)
    mins, maxs = c[3], c[4]
    if type(mins) is not array:  # still the first poll's own values: not ours to change
        c[3] = mins = doubles(mins, n)
        c[4] = maxs = doubles(maxs, n)
    # One sort per point gives both ends (a float-only sort is far cheaper than a ``min``
    # and a ``max`` call); it is stable, so its first is ``min``'s (the first of equal
    # minima), but its last is the *last* of equal maxima, where ``max`` (and sample by
    # sample) keeps the first. Equal values differ only as 0.0 and -0.0 (an int's in the
    # array is a double), so a point whose maximum is zero takes ``max`` itself.
    ordered = list(map(sorted, cols))
    lo = list(map(_FIRST, ordered))
    for k in compress(range(n), map(lt, lo, mins)):
        mins[k] = lo[k]
    hi = list(map(_LAST, ordered))
    if 0 in hi:
        for k in compress(range(n), map(eq, hi, repeat(0))):
            hi[k] = max(cols[k])
    for k in compress(range(n), map(gt, hi, maxs)):
        maxs[k] = hi[k]
    c[7] = []

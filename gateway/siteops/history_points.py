"""The local history's point ids: each (device, point) with rollups has a small integer id
in ``history_points``, the second half of a rollup row's key (see
:mod:`gateway.siteops.history_sql`). A flush gives new points their ids as it makes their
rows (in its ``added``), writes them in the same transaction, and makes them known here only
once it commits: a failed flush leaves nothing behind, and the next gives the ids again."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gateway.siteops.history_sql import ADD_POINT

Points = tuple[str, ...]
Added = dict[tuple[str, str], int]


class PointIds:
    """The committed ids, and the ids a flush being written gives (its ``added``)."""

    def __init__(self) -> None:
        #: device -> point -> id (per device: no key tuple per point, about 70 bytes a
        #: point at 100 x 125 where a (device, point) key cost about 110)
        self.sids: dict[str, dict[str, int]] = {}
        self.next_sid = 1
        #: Per device, its last layout's ids, all committed: (the layout tuple, the ids).
        self._layouts: dict[str, tuple[Points, tuple[int, ...]]] = {}

    async def load(self, store: Any) -> None:
        self.sids = {}
        top = 0
        for sid, d, p in await store.query("SELECT sid, device, point FROM history_points"):
            self.sids.setdefault(d, {})[p] = sid
            top = max(top, sid)
        self.next_sid = top + 1

    def sid_of(self, added: Added) -> Callable[[str, str], int]:
        """The id of a point: committed, else given now (into ``added``)."""
        sids, base = self.sids, self.next_sid
        none: dict[str, int] = {}

        def sid(device: str, point: str) -> int:
            found = sids.get(device, none).get(point)
            if found is None:
                key = (device, point)
                found = added.get(key)
                if found is None:
                    found = added[key] = base + len(added)
            return found

        return sid

    def ids_of(self, added: Added) -> Callable[[str, Points], tuple[int, ...]]:
        """The ids of a device's points, as a tuple; a device's layout's ids are kept (the
        driver passes the same tuple of names poll after poll)."""
        sid, cache, base = self.sid_of(added), self._layouts, self.next_sid

        def ids(device: str, points: Points) -> tuple[int, ...]:
            found = cache.get(device)
            if found is not None and found[0] is points:
                return found[1]
            out = tuple(sid(device, p) for p in points)
            if len(points) > 1 and max(out) < base:  # none given by this flush
                cache[device] = (points, out)
            return out

        return ids

    @staticmethod
    async def write(tx: Any, added: Added) -> None:
        """Write the points of ``added`` (in the transaction of their rows)."""
        if added:
            await tx.executemany(ADD_POINT, [(sid, d, p) for (d, p), sid in added.items()])

    def committed(self, added: Added) -> None:
        for (d, p), sid in added.items():
            self.sids.setdefault(d, {})[p] = sid
        self.next_sid += len(added)

    def of_device(self, device: str, point: str | None) -> dict[int, str]:
        """id -> point name of ``device``'s points with rows (of ``point`` only, if given)."""
        points = self.sids.get(device, {})
        if point is not None:
            sid = points.get(point)
            return {} if sid is None else {sid: point}
        return {sid: p for p, sid in points.items()}

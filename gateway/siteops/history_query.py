"""The reads of the local history: a point's rollups over a time range, energy per device
per bucket, the newest values; and the bucketing of timestamps into minutes, quarters,
hours and local days. :class:`gateway.siteops.history.History` writes what these read."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from gateway.siteops.history_sql import ENDS, POINTS_RANGE
from gateway.store import Store

MINUTE_MS = 60_000
QUARTER_MS = 900_000
DAY_MS = 86_400_000
RESOLUTIONS = ("1m", "15m", "1h", "1d")


class HistoryQueries:
    """The query half of :class:`~gateway.siteops.history.History`."""

    store: Store
    tz: ZoneInfo

    async def flush(self, final: bool = False) -> None:
        """Write the closed minutes (History implements it)."""
        raise NotImplementedError

    def open_rows(self, device: str, point: str | None) -> list[tuple[Any, ...]]:
        """(point, minute, n, total, vmin, vmax, last, last_ts) of the minutes still in
        memory (History implements it)."""
        raise NotImplementedError

    def built_until(self) -> int:
        """Quarters before this have their 15-minute rows; later ones are read from their
        1-minute rows (History implements it)."""
        raise NotImplementedError

    def point_ids(self, device: str, point: str | None) -> dict[int, str]:
        """The ids of ``device``'s points with rows (of ``point`` only, if given): id ->
        point name (History implements it)."""
        raise NotImplementedError

    async def _rows(self, device: str, point: str | None, start_ms: int, end_ms: int,
                    fine: bool) -> list[tuple[Any, ...]]:
        """(point, ts, n, total, vmin, vmax, last, last_ts) of [start, end): the 1-minute
        rows (``fine``), else the 15-minute rows, with the minutes of quarters not built
        yet; the open minutes from memory in both cases."""
        ids = self.point_ids(device, point)
        if fine:
            rows = await self._range("history_1m", ids, start_ms, end_ms, MINUTE_MS)
            lo, hi = start_ms, end_ms
        else:
            built = self.built_until()
            # A minute counts in [start, end) when its quarter starts in it, as a quarter.
            lo, hi = -(-start_ms // QUARTER_MS) * QUARTER_MS, -(-end_ms // QUARTER_MS) * QUARTER_MS
            rows = await self._range("history_15m", ids, start_ms, min(end_ms, built),
                                     QUARTER_MS)
            if hi > built:
                rows += await self._range("history_1m", ids, max(lo, built), hi, MINUTE_MS)
        rows += [r for r in self.open_rows(device, point) if lo <= r[1] < hi]
        return rows

    async def _range(self, table: str, ids: dict[int, str], start_ms: int, end_ms: int,
                     step: int) -> list[tuple[Any, ...]]:
        """(point, ts, n, ...) of the points ``ids`` in ``table`` in [start, end): one
        primary-key lookup per point and bucket, from the table's first bucket to its last
        at most."""
        if not ids or start_ms >= end_ms:
            return []
        oldest, newest = await self.store.query_one(ENDS.format(t=table)) or (None, None)
        if oldest is None:
            return []
        first = max(-(-start_ms // step) * step, oldest)
        end = min(end_ms, newest + 1)
        if first >= end:
            return []
        sql = POINTS_RANGE.format(t=table, ids=", ".join(map(str, ids)))
        return [(ids[sid], *r) for sid, *r in await self.store.query(sql, (first, step, end))]

    async def series(self, device: str, point: str, start_ms: int, end_ms: int,
                     resolution: str = "auto") -> list[dict[str, Any]]:
        """Rollups of one point in [start, end): ts (bucket start), min, max, avg, last,
        count. ``1m``/``15m`` are stored; ``1h`` and ``1d`` (local days) are built from
        the 15-minute rows; ``auto`` picks 1m for up to a day, else 15m."""
        if resolution == "auto":
            resolution = "1m" if end_ms - start_ms <= DAY_MS else "15m"
        if resolution not in RESOLUTIONS:
            raise ValueError(f"unknown resolution {resolution!r}; use one of "
                             f"auto, {', '.join(RESOLUTIONS)}")
        await self.flush()
        rows = await self._rows(device, point, start_ms, end_ms, resolution == "1m")
        buckets: dict[int, list[Any]] = {}
        bucket = self.bucketer(resolution)
        for _, ts, n, total, vmin, vmax, lastv, last_ts in rows:
            b = bucket(ts)
            a = buckets.get(b)
            if a is None:
                buckets[b] = [n, total, vmin, vmax, lastv, last_ts]
                continue
            a[0] += n
            a[1] += total
            a[2], a[3] = min(a[2], vmin), max(a[3], vmax)
            if last_ts >= a[5]:
                a[4], a[5] = lastv, last_ts
        return [{"ts": b, "min": a[2], "max": a[3], "avg": a[1] / a[0], "last": a[4],
                 "count": a[0]} for b, a in sorted(buckets.items())]

    def bucketer(self, resolution: str) -> Callable[[int], int]:
        """:meth:`bucket` for many timestamps. Local days are cached per UTC hour (a
        datetime per row made a month of energy for 100 devices take seconds); an hour
        that holds a local midnight (zones with a half- or quarter-hour offset) is
        computed per timestamp."""
        if resolution != "1d":
            return lambda ts: self.bucket(ts, resolution)
        cache: dict[int, int] = {}

        def day(ts: int) -> int:
            hour = ts // 3_600_000
            found = cache.get(hour)
            if found is None:
                first = self.bucket(hour * 3_600_000, "1d")
                last = self.bucket(hour * 3_600_000 + 3_599_999, "1d")
                if first != last:  # a midnight inside this UTC hour: no caching
                    return self.bucket(ts, "1d")
                found = cache[hour] = first
            return found

        return day

    def bucket(self, ts: int, resolution: str) -> int:
        if resolution == "1m":
            return ts - ts % MINUTE_MS
        if resolution == "15m":
            return ts - ts % QUARTER_MS
        if resolution == "1h":
            return ts - ts % 3_600_000  # every real zone's offset is whole quarter hours
        local = datetime.fromtimestamp(ts / 1000, self.tz)
        midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
        return int(midnight.timestamp() * 1000)

    async def energy(self, start_ms: int, end_ms: int, devices: list[str] | None = None,
                     resolution: str = "15m") -> dict[str, list[dict[str, Any]]]:
        """Energy (Wh) per device per bucket in [start, end): 15m, 1h or 1d (local)."""
        if resolution not in ("15m", "1h", "1d"):
            raise ValueError(f"unknown energy resolution {resolution!r}; use 15m, 1h or 1d")
        await self.flush()
        where = "ts >= ? AND ts < ?"
        params: list[Any] = [start_ms, end_ms]
        if devices:
            where += f" AND device IN ({', '.join('?' * len(devices))})"
            params += devices
        out: dict[str, dict[int, float]] = {}
        bucket = self.bucketer(resolution)
        # Hours (and local days that start on a UTC hour) are sums of whole hours: let
        # SQLite add the four quarters, a quarter of the rows come back.
        step = 3_600_000 if resolution == "1h" or (
            resolution == "1d" and self._days_start_on_hours(start_ms, end_ms)) else 1
        for device, ts, wh in await self.store.query(
                f"SELECT device, ts - ts % {step} AS b, SUM(wh) FROM history_energy "
                f"WHERE {where} GROUP BY device, b ORDER BY device, b", params):
            per = out.setdefault(device, {})
            b = bucket(ts)
            per[b] = per.get(b, 0.0) + wh
        return {d: [{"ts": b, "wh": wh} for b, wh in per.items()] for d, per in out.items()}

    def _days_start_on_hours(self, start_ms: int, end_ms: int) -> bool:
        """True when every local midnight in [start, end) is on a UTC hour (not so in
        zones with a half- or quarter-hour offset)."""
        day = self.bucket(start_ms, "1d")
        while day < end_ms:
            if day % 3_600_000:
                return False
            day = self.bucket(day + DAY_MS + 7_200_000, "1d")  # the next local midnight
        return True

    async def energy_total(self, start_ms: int, end_ms: int,
                           devices: list[str] | None = None) -> dict[str, float]:
        per = await self.energy(start_ms, end_ms, devices, "1d")
        return {d: sum(r["wh"] for r in rows) for d, rows in per.items()}

    async def last_values(self, device: str, points: list[str] | None = None,
                          lookback_ms: int = DAY_MS, now_ms: int | None = None
                          ) -> dict[str, dict[str, Any]]:
        """The newest good value of each point of ``device`` seen within ``lookback_ms``."""
        await self.flush()
        since = (now_ms if now_ms is not None else 0) - lookback_ms
        rows = await self._rows(device, None, since - QUARTER_MS, 2**62, False)
        out: dict[str, dict[str, Any]] = {}
        for point, _, _, _, _, _, value, ts in rows:
            if points is not None and point not in points:
                continue
            if point not in out or ts > out[point]["ts"]:
                out[point] = {"value": value, "ts": ts}
        return out

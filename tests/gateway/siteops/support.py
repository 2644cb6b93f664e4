"""Helpers for the siteops tests: an independent computation of rollups from raw samples."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from gateway.model import Sample


def local_ms(tz: str, *args: int) -> int:
    return int(datetime(*args, tzinfo=ZoneInfo(tz)).timestamp() * 1000)  # type: ignore[misc]


def expected_rollups(samples: Iterable[Sample], bucket_of: Any) -> dict[tuple[str, str, int],
                                                                       dict[str, Any]]:
    """(device, point, bucket) -> min, max, avg, last, count, from the raw samples, the
    plain way (lists, then builtins)."""
    groups: dict[tuple[str, str, int], list[tuple[int, float]]] = {}
    for s in samples:
        if s.quality != "good" or type(s.value) not in (int, float):
            continue
        groups.setdefault((s.device, s.point, bucket_of(s.ts_ms)), []).append((s.ts_ms, s.value))
    out = {}
    for key, rows in groups.items():
        values = [v for _, v in rows]
        out[key] = {"min": min(values), "max": max(values), "avg": sum(values) / len(values),
                    "last": max(rows, key=lambda r: r[0])[1], "count": len(values)}
    return out

"""Poll statistics per device: requests, errors by kind, latency.

A driver takes one :class:`PollStats` per device (or per bus) from
``DriverContext.poll_stats(name)`` and calls :meth:`PollStats.ok` after each answered request
and :meth:`PollStats.error` after each failed one. Both are cheap (no allocation on the
success path), so they run on every request. The HTTP API, ``devices.list``, ``/metrics`` and
the periodic MQTT ``stats`` message read :meth:`PollStats.snapshot` and :meth:`histogram`.

Latency percentiles come from a ring of the last :data:`WINDOW` latencies (exact over that
window); the Prometheus histogram counts every request since start in :data:`BUCKETS`.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Callable, Iterator
from math import ceil
from typing import Any

#: Upper bounds in seconds of the latency histogram's buckets (``+Inf`` is implied).
BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: The error kinds drivers use. Others are allowed; these are the ones the docs name.
#: timeout: no answer in time; connection: the link is down or was refused;
#: exception: the device answered with a protocol exception (a Modbus exception code, a bad
#: OPC-UA status); bad_reply: an answer that cannot be decoded (wrong length, garbage).
ERROR_KINDS: tuple[str, ...] = ("timeout", "connection", "exception", "bad_reply", "other")
#: How many of the latest latencies the percentiles are taken over.
WINDOW = 256
#: The ring keeps whole microseconds in 4 bytes (1 KB per device, not 2), up to about 71 min.
_US = 1_000_000
_MAX_US = 2**32 - 1


class PollStats:
    """The counters of one device (or bus)."""

    __slots__ = (
        "_buckets",
        "_now_ms",
        "_pos",
        "_ring",
        "_sum",
        "errors",
        "last_error",
        "name",
        "requests",
    )

    def __init__(self, name: str, now_ms: Callable[[], int]) -> None:
        self.name = name
        self.requests = 0
        self.errors: dict[str, int] = {}
        #: ``{"kind", "message", "ts_ms"}`` of the latest error, or None.
        self.last_error: dict[str, Any] | None = None
        self._now_ms = now_ms
        self._buckets = [0] * (len(BUCKETS) + 1)
        self._sum = 0.0
        self._ring = array("I")  # microseconds
        self._pos = 0

    def ok(self, latency: float) -> None:
        """One request answered after ``latency`` seconds."""
        self.requests += 1
        self._observe(latency)

    def error(self, kind: str, message: str, latency: float | None = None) -> None:
        """One request failed. ``latency``: when an answer came (a protocol exception)."""
        self.requests += 1
        self.errors[kind] = self.errors.get(kind, 0) + 1
        self.last_error = {"kind": kind, "message": message[:300], "ts_ms": self._now_ms()}
        if latency is not None:
            self._observe(latency)

    def _observe(self, latency: float) -> None:
        # Runs on every request: locals and plain comparisons instead of min/max and %.
        self._buckets[bisect_left(BUCKETS, latency)] += 1
        self._sum += latency
        us = round(latency * _US)
        if not 0 <= us <= _MAX_US:
            us = 0 if us < 0 else _MAX_US
        ring = self._ring
        if len(ring) < WINDOW:
            ring.append(us)
        else:
            pos = self._pos
            ring[pos] = us
            self._pos = pos + 1 if pos < WINDOW - 1 else 0

    def percentile(self, q: float) -> float | None:
        """The ``q``-quantile (0..1) in seconds over the last :data:`WINDOW` latencies."""
        if not self._ring:
            return None
        return _rank(sorted(self._ring), q)

    def histogram(self) -> tuple[list[tuple[float, int]], float, int]:
        """Cumulative ``(upper_bound, count)`` pairs (the last is ``inf``), sum and count."""
        out: list[tuple[float, int]] = []
        total = 0
        for bound, n in zip((*BUCKETS, float("inf")), self._buckets, strict=True):
            total += n
            out.append((bound, total))
        return out, self._sum, total

    def snapshot(self) -> dict[str, Any]:
        """The JSON view: requests, errors by kind, latency p50/p99 in ms, last error."""
        ordered = sorted(self._ring)  # once for both
        p50, p99 = (_rank(ordered, 0.5), _rank(ordered, 0.99)) if ordered else (None, None)
        return {
            "requests": self.requests,
            "errors": dict(self.errors),
            "error_total": sum(self.errors.values()),
            "latency_ms": {"p50": None if p50 is None else round(p50 * 1000, 2),
                           "p99": None if p99 is None else round(p99 * 1000, 2)},
            "last_error": None if self.last_error is None else dict(self.last_error),
        }


def _rank(ordered: list[int], q: float) -> float:
    """The ``q``-quantile in seconds of sorted latencies in microseconds, by nearest rank."""
    return ordered[min(len(ordered) - 1, max(0, ceil(q * len(ordered)) - 1))] / _US


class PollStatsBook:
    """Every device's :class:`PollStats`, owned by the App so it outlives a reload."""

    def __init__(self, now_ms: Callable[[], int]) -> None:
        self._now_ms = now_ms
        self._by_name: dict[str, PollStats] = {}

    def of(self, name: str) -> PollStats:
        """The stats of ``name``, created on first use."""
        stats = self._by_name.get(name)
        if stats is None:
            stats = self._by_name[name] = PollStats(name, self._now_ms)
        return stats

    def get(self, name: str) -> PollStats | None:
        return self._by_name.get(name)

    def __iter__(self) -> Iterator[PollStats]:
        return iter(list(self._by_name.values()))

    def snapshot(self) -> dict[str, dict[str, Any]]:
        return {name: s.snapshot() for name, s in self._by_name.items()}

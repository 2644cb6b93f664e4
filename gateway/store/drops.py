"""Exact accounting of the samples the store drops when its buffer is full.

Only rows deleted before they were ever published count (rows in flight are never dropped:
see :meth:`Store.note_sent`). The running count goes out in a ``buffer_overflow`` event at
most once a minute while dropping goes on, with the first commit that drops nothing 5 s
after the last drop (dropping stopped), and at a clean close, each event with the exact
range it covers, so the events add up to ``dropped_total``.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.model import Event

OVERFLOW_EVENT = "buffer_overflow"
EVENT_EVERY_MS = 60_000
#: Dropping has stopped when no commit dropped anything for this long.
QUIET_MS = 5_000


@dataclass
class DropRun:
    """Samples dropped and not yet reported: ``count`` of them, between ``seq_first`` and
    ``seq_last`` (inclusive; a gap inside the range was never buffered)."""

    count: int = 0
    seq_first: int = 0
    seq_last: int = 0

    def add(self, count: int, seq_first: int, seq_last: int) -> None:
        if count <= 0:
            return
        if self.count == 0:
            self.seq_first = seq_first
        self.count += count
        self.seq_last = seq_last

    def merged(self, other: DropRun) -> DropRun:
        out = DropRun(self.count, self.seq_first, self.seq_last)
        out.add(other.count, other.seq_first, other.seq_last)
        return out


def overflow_event(run: DropRun, store_id: str, max_bytes: int, ts_ms: int) -> Event:
    return Event(
        OVERFLOW_EVENT,
        {"store_id": store_id, "dropped": run.count, "seq_first": run.seq_first,
         "seq_last": run.seq_last, "up_to_seq": run.seq_last, "max_bytes": max_bytes},
        ts_ms=ts_ms,
    )

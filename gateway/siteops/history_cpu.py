"""The local history's own CPU time, measured directly: a meter for benchmarks and diagnosis.

Off unless the daemon starts with ``FIELDGATE_HISTORY_CPU=1`` in its environment; when off,
each place it would count costs one attribute test. When on, it adds up thread CPU time
(user and system) of:

- ``observe``: the pipeline observer queueing each committed batch (the commit path);
- ``fold``: folding the queued batches in memory (and the restart's catch-up from the
  buffer), in the event loop's thread;
- ``flush``: the Python part of a flush and of a prune in the loop's thread: taking the
  closed minutes' rows out of memory, energy and meter rows, the bookkeeping after the
  commit;
- ``sql``: the CPU of the store's connection thread (SQLite) from the start of the
  history's transaction (``BEGIN``) to its ``COMMIT``: its inserts, the 15-minute build,
  energy, meters, watermarks, and the prune's deletes. It is read from that thread's own
  CPU clock (``time.pthread_getcpuclockid``). It is an upper bound: a read that another task
  (the uplink, the HTTP API) runs on the same connection while the history's transaction is
  open counts too; writes cannot interleave (the store's lock).

What it leaves out: the history task's wake-ups (a timer, twice a second), the collection of
the garbage the history's objects add to every GC pass, and the queries it answers
(commands, KPIs, reports: on demand, not per sample).

``history.stats`` reports it as ``cpu`` (seconds per part, and since when).
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

ENV = "FIELDGATE_HISTORY_CPU"
PARTS = ("observe", "fold", "flush", "sql")


def wanted() -> bool:
    return os.environ.get(ENV, "") not in ("", "0")


class HistoryCpuMeter:
    """Seconds of CPU the history spent, by part (see the module doc)."""

    def __init__(self, on: bool | None = None) -> None:
        self.on = wanted() if on is None else on
        self.seconds = dict.fromkeys(PARTS, 0.0)
        self.since = time.monotonic()
        self._clock: int | None = None  # the store thread's CPU clock
        self._clock_of: int | None = None  # ... of that thread ident
        self.off_reason: str | None = None if self.on else (
            f"off: start the daemon with {ENV}=1 to measure")

    # The loop thread's parts: ``t0 = meter.start()`` ... ``meter.add("fold", t0)``.
    def start(self) -> float:
        return time.thread_time() if self.on else 0.0

    def add(self, part: str, t0: float) -> None:
        if self.on:
            self.seconds[part] += time.thread_time() - t0

    # The store's thread: ``s0 = meter.sql_start(thread)`` ... ``meter.sql_stop(s0)``.
    def sql_start(self, thread: threading.Thread | None) -> float:
        if not self.on or thread is None or thread.ident is None:
            return -1.0
        if self._clock_of != thread.ident:
            try:
                self._clock = time.pthread_getcpuclockid(thread.ident)
            except (AttributeError, OSError):  # not on this platform
                self._clock = None
            self._clock_of = thread.ident
        if self._clock is None:
            return -1.0
        try:
            return time.clock_gettime(self._clock)
        except OSError:  # the thread ended (the store closed)
            self._clock = None
            return -1.0

    def sql_stop(self, s0: float) -> None:
        if s0 >= 0 and self._clock is not None:
            try:
                self.seconds["sql"] += time.clock_gettime(self._clock) - s0
            except OSError:  # the thread ended (the store closed)
                self._clock = None

    def snapshot(self) -> dict[str, Any]:
        if not self.on:
            return {"on": False, "reason": self.off_reason}
        out: dict[str, Any] = {"on": True, "wall_s": round(time.monotonic() - self.since, 3)}
        out.update({f"{k}_s": round(v, 6) for k, v in self.seconds.items()})
        out["total_s"] = round(sum(self.seconds.values()), 6)
        return out


def store_thread(store: Any) -> threading.Thread | None:
    """The thread of the store's connection (aiosqlite runs each connection on its own)."""
    conn = getattr(store, "_conn", None)
    if isinstance(conn, threading.Thread):  # aiosqlite before 0.20: the connection is one
        return conn
    thread = getattr(conn, "_thread", None)
    return thread if isinstance(thread, threading.Thread) else None

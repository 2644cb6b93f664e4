"""What the pipeline keeps while the store cannot write (a full disk).

A commit that fails keeps its samples here, and the writes its processors (the rules) and
the status tracker made for them (:class:`~gateway.store.tx.Write`: their SQL and events,
recorded, not yet run). The retry runs those writes as they were instead of calling the
processors again: what they keep in memory (an open alarm, a device's link state) already
counts those samples, so a second pass would count a transition twice or lose it. Samples
that failed before any processor saw them (the transaction could not even begin) are kept
apart, as ``fresh``, and are processed by the next attempt.

The pipeline retries with a capped backoff and the drivers wait on the full queue meanwhile
(backpressure). Each retry adds what was queued, up to ``max_samples`` held in memory;
beyond that the oldest held samples are dropped and counted exactly (they never had sequence
numbers: a failed commit uses none). Their effect on the rules is kept.

Events (see docs/wire-format.md):

- ``disk_full`` when the first commit fails: error, since_ts, max_held_samples. It is
  committed as soon as anything can be (often together with the held data).
- ``disk_full_cleared`` with the first commit that succeeds again: since_ts, until_ts,
  failed_commits, dropped_samples, dropped_ts_first, dropped_ts_last (null when none).
- ``store_write_recovered`` instead, with the same keys, when the failure was not a full
  disk (an I/O error, say); such a failure has no start event (the log and
  ``buffer.stats`` say it).

While it lasts, ``Store.write_error`` is ``"disk full: ..."`` (or ``"write failed: ..."``),
shown by ``buffer.stats``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from gateway.events import DISK_FULL, DISK_FULL_CLEARED, STORE_WRITE_RECOVERED
from gateway.model import Batch, Event, Sample, now_ms
from gateway.store.errors import is_disk_full
from gateway.store.tx import Write

if TYPE_CHECKING:
    from gateway.store.db import Store

log = logging.getLogger(__name__)

DISK_FULL_EVENT = DISK_FULL
DISK_FULL_CLEARED_EVENT = DISK_FULL_CLEARED


class CommitFailed(Exception):
    """The store could not commit; the batch is held for the next attempt."""


class HeldBatch:
    def __init__(self, max_samples: int) -> None:
        self.max_samples = max_samples
        #: Samples the processors saw already (their writes are in ``_writes``).
        self.samples: Batch = []
        #: Samples no processor saw yet (the attempt failed before the processors ran).
        self.fresh: Batch = []
        self._writes: list[Write] = []
        self.attempts = 0
        self.since_ms: int | None = None
        self.disk_full = False
        self.dropped = 0
        self.dropped_ts: tuple[int, int] | None = None

    def __bool__(self) -> bool:
        return bool(self.samples or self.fresh or self._writes)

    def take(self) -> tuple[Batch, Batch, list[Write]]:
        """(samples already processed, samples not processed yet, the recorded writes)."""
        taken = self.samples, self.fresh, self._writes
        self.samples, self.fresh, self._writes = [], [], []
        return taken

    def keep(self, samples: Batch, fresh: Batch, writes: list[Write],
             err: Exception, store: Store) -> None:
        """A commit of ``samples`` (processed: their ``writes`` recorded) and ``fresh``
        (not processed) failed with ``err``: hold them for the next attempt."""
        self.attempts += 1
        self._writes = writes
        excess = len(samples) + len(fresh) - self.max_samples
        if excess > 0:  # the oldest first: the processed ones came before the fresh ones
            cut = min(excess, len(samples))
            self._drop([*samples[:cut], *fresh[:excess - cut]])
            samples, fresh = samples[cut:], fresh[excess - cut:]
        self.samples, self.fresh = samples, fresh
        if self.since_ms is None:
            self.since_ms = now_ms()
            self.disk_full = is_disk_full(err)
            store.write_error = f"{'disk full' if self.disk_full else 'write failed'}: {err}"
            log.error("store %s cannot commit (%s): holding %d samples in memory (at most "
                      "%d) and retrying; %s", store.path, err,
                      len(self.samples) + len(self.fresh), self.max_samples,
                      "free disk space or lower store.max_bytes" if self.disk_full else
                      "check the file system and that no other process writes the store")
            if self.disk_full:
                self._writes.insert(0, Write("", [Event(DISK_FULL_EVENT, {
                    "error": str(err), "since_ts": self.since_ms,
                    "max_held_samples": self.max_samples,
                })]))

    def _drop(self, samples: list[Sample]) -> None:
        ts = [s[2] for s in samples]
        lo, hi = min(ts), max(ts)
        if self.dropped_ts is not None:
            lo, hi = min(lo, self.dropped_ts[0]), max(hi, self.dropped_ts[1])
        self.dropped += len(samples)
        self.dropped_ts = (lo, hi)
        log.error("store cannot commit and %d samples are held already: dropped the oldest %d "
                  "(%d dropped since the store stopped writing)", self.max_samples,
                  len(samples), self.dropped)

    def committed(self, store: Store) -> Event | None:
        """A commit went through: the episode (if any) is over; returns the event that says
        so, for the next commit."""
        if self.since_ms is None:
            return None
        until = now_ms()
        event = Event(DISK_FULL_CLEARED_EVENT if self.disk_full else STORE_WRITE_RECOVERED, {
            "since_ts": self.since_ms, "until_ts": until, "failed_commits": self.attempts,
            "dropped_samples": self.dropped,
            "dropped_ts_first": self.dropped_ts[0] if self.dropped_ts else None,
            "dropped_ts_last": self.dropped_ts[1] if self.dropped_ts else None,
        })
        log.warning("store %s commits again after %d failed attempts; %d samples dropped "
                    "meanwhile", store.path, self.attempts, self.dropped)
        store.write_error = None
        self.__init__(self.max_samples)  # type: ignore[misc]
        return event

    def give_up(self, store: Store) -> None:
        """At shutdown, when the store still cannot write: count what is lost."""
        lost = [*self.samples, *self.fresh]  # held batches are Committed: not lists
        if lost:
            self._drop(lost)
        log.error("store %s still cannot commit at shutdown: %d samples held in memory are "
                  "lost (%d dropped in total since it stopped writing), and %d writes of the "
                  "rules and status tracker", store.path, len(lost), self.dropped,
                  len(self._writes))
        self.samples, self.fresh, self._writes = [], [], []

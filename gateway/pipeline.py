"""The one path for data: drivers -> bounded queue -> rules -> store (one commit per batch).

Drivers await :meth:`Pipeline.put`; when the store is slower than the drivers the queue fills
and ``put`` waits, which slows the pollers down instead of growing memory (backpressure).
The queue is bounded in samples (``queue_samples``) as well as in batches: a site of many
small devices (each cycle a batch per device) would otherwise queue as many cycles as 256
batches hold, so the samples waiting for a commit, and the memory they take, grew with the
device count. A batch larger than the bound is taken alone.
The pipeline task takes whatever is queued (up to ``max_commit_samples``), lets each
processor look at it inside the same transaction (so a rule's state and the event it raises
commit together with the samples that caused them), appends it under the next sequence
numbers, commits, and only then tells the observers (hooks, the uplink). With a
``commit_gather`` (a site setting, ``pipeline.commit_gather``), the task first waits for a
cycle's burst of batches to end: until no batch came for :data:`GATHER_QUIET_S`, at most
``commit_gather`` seconds, or until a commit's worth is queued. Each commit has a fixed cost
(its transaction, SQLite's pages and write, the uplink's chunk), so one commit per cycle
instead of several for its first arrivals saves CPU on a site of many devices polled in step;
values wait up to that long more before they are stored (not the first batch after a start,
which is committed at once). A commit that
fails is retried with the processors' recorded writes, not by running them again
(:mod:`gateway.store.held`).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from gateway import heap
from gateway.clock import Clock
from gateway.model import Batch, Committed, DeviceStatus, Event, PollBatch
from gateway.status import DeviceStatusService
from gateway.store import Store, Tx
from gateway.store.held import CommitFailed, HeldBatch

log = logging.getLogger(__name__)

_RETRY_FIRST_S = 0.5
_RETRY_MAX_S = 5.0
_RETRIES_AT_CLOSE = 3
#: Most samples queued for the next commit (see the module docstring): what one commit takes
#: at most by default, about 6 MB at 120 bytes or so a sample, whatever the number of devices.
#: Smaller delays polls: at 200 devices x 125 points a 10,000 bound made drivers wait for
#: room during each cycle's burst (0.95 requests per device per cycle instead of 1.00).
QUEUE_SAMPLES = 50_000
#: A burst of batches has ended when none came for this long (see ``commit_gather``).
GATHER_QUIET_S = 0.02


class BatchProcessor(Protocol):
    """Runs inside the commit transaction of every batch (the rules engine is one).

    Must be fast (it is on the ingest path), must not block the loop, must not mutate the
    batch. Events it raises go in with ``tx.add_events``.

    Its writes (``tx.execute``/``executemany`` of INSERT, UPDATE, DELETE or REPLACE, and
    ``tx.add_events``) are recorded and run after every processor has had the batch, in
    the same transaction: a read in the same commit does not see them, and a write returns
    no cursor. When the commit fails (a full disk) those writes are kept and run again on
    retry; the processor is not called again for the same samples.
    """

    async def process(self, batch: Batch, tx: Tx) -> None: ...

    async def on_status(
        self, device: str, old: DeviceStatus | None, new: DeviceStatus, tx: Tx
    ) -> None: ...

    # Optional: ``async def on_events(self, events: list[Event], tx: Tx) -> None`` sees the
    # events added with :meth:`Pipeline.add_event` (driver events such as ``ocpp_fault``) in
    # the transaction that commits them; the rules turn some of them into alarms.


#: Called after a commit with the batch and its first sequence number. Must not block:
#: hand the work to your own task. The batch is a :class:`~gateway.model.Committed`: a
#: read-only sequence of samples (not a list: ``list(batch)`` for one) whose ``parts`` are
#: the batches as the drivers sent them (PollBatch columns, whose samples are made only when
#: someone reads them).
Observer = Callable[[Batch, int], None]

#: Called with every event added with :meth:`Pipeline.add_event`, before it is queued;
#: returns the event to commit (the same one, or a copy with more in its body: the siteops
#: tariff prices ``charging_order_completed``). Must be quick and pure: no I/O.
EventEnricher = Callable[[Event], Event]


@dataclass(frozen=True, slots=True)
class StatusReport:
    device: str
    status: DeviceStatus
    reason: str
    ts_ms: int


@dataclass
class PipelineStats:
    batches: int = 0
    samples: int = 0
    commits: int = 0


class Pipeline:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        status: DeviceStatusService | None = None,
        *,
        queue_batches: int = 256,
        queue_samples: int = QUEUE_SAMPLES,
        max_commit_samples: int = 50_000,
        max_held_samples: int = 500_000,
        commit_gather: float = 0.0,
    ) -> None:
        self.store = store
        self.clock = clock
        self.queue: asyncio.Queue[Batch] = asyncio.Queue(queue_batches)
        self.queue_samples = queue_samples
        self.queued_samples = 0  # in ``queue``
        self._room = asyncio.Event()  # set when a commit took samples out of the queue
        self.max_commit_samples = max_commit_samples
        self.commit_gather = commit_gather
        self._puts = 0  # batches put so far: has one come during the last quiet wait?
        #: Read only: components add theirs with ``ctx.add_processor`` / ``add_observer``.
        self.processors: list[BatchProcessor] = []
        self.observers: list[Observer] = []
        self.enrichers: list[EventEnricher] = []
        #: The runtime's status service (the pipeline applies the drivers' reports to it).
        self.status = status if status is not None else DeviceStatusService()
        self.stats = PipelineStats()
        self._status_reports: list[StatusReport] = []
        self._pending_events: list[Event] = []
        self._wake = asyncio.Event()
        self._closing = False
        self._held = HeldBatch(max_held_samples)

    def add_processor(self, processor: BatchProcessor) -> Callable[[], None]:
        """Run ``processor`` in every commit from now on; returns its remover."""
        self.processors.append(processor)
        return lambda: _discard(self.processors, processor)

    def add_observer(self, observer: Observer) -> Callable[[], None]:
        """Call ``observer`` after every commit from now on; returns its remover."""
        self.observers.append(observer)
        return lambda: _discard(self.observers, observer)

    def add_event_enricher(self, enricher: EventEnricher) -> Callable[[], None]:
        """Pass every event added from now on through ``enricher``; returns its remover."""
        self.enrichers.append(enricher)
        return lambda: _discard(self.enrichers, enricher)

    async def put(self, batch: Batch) -> None:
        # A list or a PollBatch as it is (a PollBatch's samples are made only if read); a
        # PollBatch's length from its values (its ``__len__`` is a Python call).
        if type(batch) is PollBatch:
            items: Batch = batch
            n = len(batch.values)
        else:
            items = batch if isinstance(batch, list) else list(batch)
            n = len(items)
        if n:
            while self.queued_samples and self.queued_samples + n > self.queue_samples:
                self._room.clear()
                await self._room.wait()
            self.queued_samples += n
            self._puts += 1
            try:
                try:  # the usual case, without Queue.put's coroutine (one per poll)
                    self.queue.put_nowait(items)
                except asyncio.QueueFull:
                    await self.queue.put(items)
            except BaseException:
                self.queued_samples -= n
                raise
            self._wake.set()

    def _take_queued(self) -> tuple[Batch, int]:
        """The next queued batch and its length."""
        items = self.queue.get_nowait()
        n = len(items.values) if type(items) is PollBatch else len(items)
        self.queued_samples -= n
        self._room.set()
        return items, n

    def report_status(self, device: str, status: DeviceStatus, reason: str = "") -> None:
        current = self.status.link.get(device)
        if current is status and not self._status_reports:
            return
        self._status_reports.append(StatusReport(device, status, reason, self.clock.now_ms()))
        self._wake.set()

    async def add_event(self, event: Event) -> None:
        """Commit an event to the outbox in the order of the data around it."""
        for enrich in self.enrichers:
            try:
                event = enrich(event)
            except Exception:
                log.exception("event enricher %r failed on %s %s; the event is committed "
                              "as it was", enrich, event.type, event.id)
        self._pending_events.append(event)
        self._wake.set()

    async def run(self) -> None:
        while True:
            if self._idle():
                if self._closing:
                    return
                await self._wake.wait()
                if self.commit_gather > 0 and self.stats.batches:  # not the first: at once
                    await self._gather()
            self._wake.clear()
            await self._commit_retrying()
            heap.trim_every()  # what the commits freed goes back to the OS, not only to malloc

    async def _gather(self) -> None:
        """Wait for the burst of batches that woke an idle pipeline to end (see the module's
        docstring): no new batch for ``GATHER_QUIET_S``, ``commit_gather`` seconds at most,
        or a commit's worth (or the queue's bound) queued, or closing."""
        loop = asyncio.get_running_loop()
        until = loop.time() + self.commit_gather
        full = min(self.max_commit_samples, self.queue_samples)
        while not self._closing and self.queued_samples < full and not self.queue.full():
            left = until - loop.time()
            if left <= 0:
                return
            puts = self._puts
            await asyncio.sleep(min(GATHER_QUIET_S, left))
            if self._puts == puts:
                return

    def _idle(self) -> bool:
        return (self.queue.empty() and not self._status_reports and not self._pending_events
                and not self._held)

    async def commit_once(self) -> int:
        """Commit whatever is queued now as one transaction; returns the samples written.

        A commit that fails because the store cannot write (a full disk) keeps its batch and
        the writes the status tracker and the processors made for it, and raises
        :class:`CommitFailed`; the next call runs those writes again as they were (the
        processors are not called twice for the same samples) with what was queued
        meanwhile, up to ``max_held_samples``; beyond that the oldest held samples are
        dropped and counted. No sequence number is used by a commit that failed."""
        held, left, writes = self._held.take()
        parts: list[Batch] = [left] if left else []
        taken = len(held) + len(left)
        queued = taken
        while not self.queue.empty() and taken < self.max_commit_samples:
            items, n = self._take_queued()
            parts.append(items)
            taken += n
        # the batches as they came: PollBatch columns kept (their length known here)
        fresh = Committed.of(parts, taken - queued + len(left))
        reports, self._status_reports = self._status_reports, []
        events, self._pending_events = self._pending_events, []
        if not held and not fresh and not writes and not reports and not events:
            return 0
        batch = Committed.of([held, *parts]) if held else fresh
        seq_first = 0
        processed = False
        try:
            async with self.store.transaction() as tx:
                tx.defer(writes)  # recorded, run below: kept as they are if the commit fails
                processed = True
                try:
                    await self._process(tx, reports, events, fresh)
                finally:
                    tx.defer(None)
                await tx.run_writes(writes)
                if batch:
                    seq_first, _ = await self.store.append_samples(batch, tx)
        except sqlite3.OperationalError as err:
            if processed:
                self._held.keep(batch, [], writes, err, self.store)
            else:  # the transaction did not begin: nothing saw these yet
                self._status_reports = reports + self._status_reports
                self._pending_events = events + self._pending_events
                self._held.keep(held, fresh, writes, err, self.store)
            raise CommitFailed(str(err)) from err
        cleared = self._held.committed(self.store)
        if cleared is not None:
            self._pending_events.append(cleared)
            self._wake.set()
        self.stats.commits += 1
        if batch:
            self.stats.batches += 1
            self.stats.samples += len(batch)
            for observer in self.observers:
                try:
                    observer(batch, seq_first)
                except Exception:
                    log.exception("pipeline observer %r failed; continuing", observer)
        return len(batch)

    async def _process(self, tx: Tx, reports: list[StatusReport], events: list[Event],
                       fresh: Committed) -> None:
        """The status reports, the events and the new samples through the status tracker and
        the processors (``tx`` records their writes)."""
        for report in reports:
            old = self.status.current(report.device)
            if await self.status.apply(tx, report.device, report.status, report.reason,
                                       report.ts_ms):
                for proc in self.processors:
                    await proc.on_status(report.device, old, report.status, tx)
        if events:
            await tx.add_events(events)
            for proc in self.processors:
                on_events = getattr(proc, "on_events", None)
                if on_events is not None:  # optional: see BatchProcessor.on_events
                    await on_events(events, tx)
        if fresh:
            for proc in self.processors:
                await proc.process(fresh, tx)

    async def _commit_retrying(self) -> None:
        """:meth:`commit_once`, retried with a capped backoff while the store cannot write.
        Meanwhile the queue fills and the drivers wait (backpressure); each retry takes
        what was queued into the held batch (bounded, see :class:`HeldBatch`)."""
        delay = _RETRY_FIRST_S
        while True:
            try:
                await self.commit_once()
                return
            except CommitFailed:
                if self._closing and self._held.attempts > _RETRIES_AT_CLOSE:
                    self._held.give_up(self.store)
                    return
                await asyncio.sleep(delay)
                delay = min(delay * 2, _RETRY_MAX_S)

    def close(self) -> None:
        """Ask :meth:`run` to commit what is queued and return (drivers stopped first)."""
        self._closing = True
        self._wake.set()

    async def drain(self) -> None:
        """Commit everything still queued, without the run task (used when it is gone)."""
        while not self._idle():
            await self._commit_retrying()


def _discard(items: list[Any], item: Any) -> None:
    if item in items:
        items.remove(item)

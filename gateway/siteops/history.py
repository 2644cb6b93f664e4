"""Local history: 1-minute and 15-minute rollups per point, energy per device per 15 minutes.

Where it lives: in the buffer's SQLite file (tables ``history_*``): one writer, one backup,
the component's migrations, and the rollups commit in one transaction with their
watermarks. ``store.max_bytes`` counts only telemetry; history has ``history.max_bytes``.

How it is written (off the polling path): the pipeline's observer only queues committed
batches; the history task folds them in memory (:mod:`gateway.siteops.history_fold`) and,
every ``flush_interval``, commits in ONE transaction the minutes that closed (each written
once: before the *horizon*, the gateway's clock minus ``CLOSE_AFTER_MS``), the 15-minute
rows of quarters that became complete (built in SQLite from their minutes), the energy and
meters, and the watermarks ``folded_seq`` F, ``horizon`` H and ``replay_seq`` R. The rows
hold exactly the samples numbered <= F whose minute is before H. A kill -9 loses memory
only: the restart re-reads the buffer from R, puts a sample <= F back only if its minute is
at or after H (and never into the meters), so nothing is counted twice. What the uplink had
deleted meanwhile is counted in ``lost_samples`` (exactly for the open minutes, an upper
bound after the last commit). Energy follows :mod:`gateway.rules.quotas` (resets, rollover,
implausible jumps, gaps), split across 15-minute slots in proportion to time.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
from typing import Any
from zoneinfo import ZoneInfo

from gateway.model import Batch, PollBatch, Sample
from gateway.siteops.config import HistoryConfig
from gateway.siteops.history_cpu import HistoryCpuMeter, store_thread
from gateway.siteops.history_fold import Folder, merge
from gateway.siteops.history_meter import EnergyMeter, HistoryStats
from gateway.siteops.history_points import Added, PointIds
from gateway.siteops.history_query import DAY_MS, MINUTE_MS, QUARTER_MS, HistoryQueries
from gateway.siteops.history_sql import BUILD_15M, UPSERT, UPSERT_ENERGY, existing
from gateway.store import Store

log = logging.getLogger(__name__)

#: Estimated bytes per rollup row in the file, for ``max_bytes``: 67.8 in a table of 1.5 M
#: rows of measured-looking values (``bench/history_layout.py``; 96 in the layout before v3,
#: with its index on time).
ROW_BYTES = 68
#: The history task folds what was queued every this many seconds (one timer, nothing per
#: commit: a wake-up per commit, an event and a timeout, cost more than the folds they
#: started at 100 x 125), and commits every ``flush_interval``.
FOLD_EVERY_S = 0.5
#: Samples queued for folding beyond which new batches are dropped (and counted).
MAX_PENDING_SAMPLES = 2_000_000

_STATE_KEYS = ("folded_seq", "horizon", "replay_seq", "open_samples", "est_rows",
               "dropped_rows", "lost_samples")
#: A minute is closed (written) this long after it ends by the gateway's clock; samples
#: of it that come later still count, as a second write of its row.
CLOSE_AFTER_MS = 5_000
Key = tuple[str, str, int]


class History(HistoryQueries):
    """Folds committed samples into rollups; queries them. One per component run."""

    def __init__(self, cfg: HistoryConfig, store: Store, tz: ZoneInfo) -> None:
        self.cfg = cfg
        self.store = store
        self.tz = tz
        self.stats = HistoryStats()
        self.cpu = HistoryCpuMeter()  # off unless FIELDGATE_HISTORY_CPU=1
        self._folder = Folder(None if cfg.points == ["*"] else cfg.keeps, self._is_meter_point)
        self._folder.on_meter = self._feed_meter
        self._energy: dict[tuple[str, int], float] = collections.defaultdict(float)
        self._meters: dict[str, EnergyMeter | None] = {}
        self._dirty_meters: set[str] = set()
        self._energy_seen: set[tuple[str, int]] = set()  # energy keys of the last flush
        self._pending: collections.deque[tuple[Batch, int]] = collections.deque()
        self._pending_samples = 0
        self._behind = False  # the queue overflowed: read the buffer instead
        self._lock = asyncio.Lock()
        self._loaded_meters: dict[str, dict[str, Any]] = {}
        self._catching_up = False
        self._replayed = False
        self._durable_seq = 0  # folded_seq as committed (replayed samples at or below it...)
        self._written_state: tuple[int, ...] | None = None
        self._ids = PointIds()

    # -- start ---------------------------------------------------------------------------

    async def load(self) -> None:
        state = dict(await self.store.query("SELECT key, value FROM history_state"))
        for key in _STATE_KEYS:
            if key in state:
                setattr(self.stats, key, int(state[key]))
        if "horizon" not in state:
            # A store written before the horizon existed holds every folded sample in its
            # rows: start the horizon above all of them (rounded up to a quarter, whose
            # 15-minute rows are then complete), and replay from the watermark.
            newest = await self.store.query_one(
                "SELECT MAX(m) FROM (SELECT MAX(ts) AS m FROM history_1m "
                "UNION ALL SELECT MAX(ts) FROM history_15m)")
            top = newest[0] if newest and newest[0] is not None else None
            self.stats.horizon = 0 if top is None else (
                top + MINUTE_MS + QUARTER_MS - 1) // QUARTER_MS * QUARTER_MS
            self.stats.replay_seq = self.stats.folded_seq
        self._durable_seq = self.stats.folded_seq
        self._written_state = self._state_tuple()
        await self._ids.load(self.store)
        for device, mstate in await self.store.query("SELECT device, state FROM history_meters"):
            self._loaded_meters[device] = json.loads(mstate)

    async def catch_up(self) -> int:
        """Fold again what a restart lost from memory: the samples after ``replay_seq``
        still in the buffer, except those already in the written rows (at or below
        ``folded_seq`` and before the horizon). Returns how many samples were read.
        Batches the observer queues meanwhile are folded after it (their samples are
        later)."""
        self._catching_up = True
        try:
            folded = await self._catch_up()
        finally:
            self._catching_up = False
        return folded

    async def _catch_up(self) -> int:
        stats, folder = self.stats, self._folder
        first_run = not self._replayed
        self._replayed = True
        # The first time, memory is empty: re-read from ``replay_seq`` (open minutes).
        # Later (the queue overflowed): from what is folded in memory.
        pos = min(stats.folded_seq, stats.replay_seq) if first_run else stats.folded_seq
        durable = self._durable_seq if first_run else 0
        horizon, was_open = stats.horizon, stats.open_samples if first_run else 0
        folded = recovered = 0
        first = True
        while True:
            chunks = await self.store.read_telemetry(pos, 20_000)
            if not chunks:
                break
            if first:
                await self._count_lost(pos, chunks[0].seq_first, durable)
            first = False
            t0 = self.cpu.start()
            for chunk in chunks:
                rows = [Sample(*r) for r in chunk.rows]
                seq0 = chunk.seq_first
                if seq0 <= durable:  # in the rows unless in an open minute; meters have them
                    n_old = min(durable - seq0 + 1, len(rows))
                    before = folder.samples()
                    folder.fold([s for s in rows[:n_old] if s[2] >= horizon], seq0,
                                meters=False)
                    recovered += folder.samples() - before
                    rows, seq0 = rows[n_old:], seq0 + n_old
                if rows:
                    self.fold(rows, seq0)  # skips what is folded already
                folded += len(chunk.rows)
                pos = chunk.seq_last
            self.cpu.add("fold", t0)
            async with self._lock:
                await self._flush_locked()  # not the queued batches: they come after
        if was_open > recovered:
            self._lost(was_open - recovered, "of minutes still open at the stop")
        if folded:
            log.info("history: caught up %d sample(s) from the buffer", folded)
        return folded

    async def _count_lost(self, pos: int, first_seq: int, durable: int) -> None:
        """Samples after ``folded_seq`` acknowledged (deleted) before they were rolled up.
        Sequence numbers a restart skipped are in this range too: an upper bound."""
        acked = await self.store.acked_seq()
        start = max(pos, durable)
        gap = min(acked, first_seq - 1) - start
        if gap > 0:
            self._lost(gap, "committed before the restart")

    def _lost(self, n: int, what: str) -> None:
        self.stats.lost_samples += n
        log.warning("history: up to %d sample(s) %s had left the buffer before they were "
                    "rolled up; history has a gap there", n, what)

    # -- write path ----------------------------------------------------------------------

    def observe(self, batch: Batch, seq_first: int) -> None:
        """The pipeline observer: queue only (runs on the commit path)."""
        cpu = self.cpu
        t0 = cpu.start() if cpu.on else 0.0
        if self._pending_samples > MAX_PENDING_SAMPLES or self._behind:
            # Too far behind to queue more: drop the queue and read the buffer instead
            # (committed samples are there until the uplink deletes them; only those are
            # counted as lost, by the catch-up).
            if not self._behind:
                log.warning("history: more than %d samples wait to be rolled up; reading "
                            "them from the buffer instead", MAX_PENDING_SAMPLES)
            self._behind = True
            self._pending.clear()
            self._pending_samples = 0
            return
        self._pending.append((batch, seq_first))
        self._pending_samples += len(batch)
        if cpu.on:
            cpu.add("observe", t0)

    def fold_pending(self) -> None:
        if self._catching_up or self._behind:
            return  # queued batches hold later samples than the buffer's backlog
        pending = self._pending
        if not pending:
            return
        t0 = self.cpu.start()
        plain: list[Sample] = []  # consecutive plain parts, folded as one batch
        plain_seq = 0
        while pending:
            batch, seq = pending.popleft()
            self._pending_samples -= len(batch)
            # A committed batch's parts are the drivers' batches: a PollBatch is folded from
            # its columns; the other parts of consecutive commits (often one device poll
            # each) are folded as one batch, so the per-batch work is paid once.
            for part in getattr(batch, "parts", None) or (batch,):
                if type(part) is PollBatch:
                    if plain:
                        self.fold(plain, plain_seq)
                        plain = []
                    self.fold(part, seq)
                elif plain and plain_seq + len(plain) == seq:
                    plain += part
                else:
                    if plain:
                        self.fold(plain, plain_seq)
                    plain, plain_seq = list(part), seq
                seq += len(part)
        if plain:
            self.fold(plain, plain_seq)
        self.cpu.add("fold", t0)

    def fold(self, batch: Batch, seq_first: int) -> None:
        """Fold samples numbered from ``seq_first``; those at or below the watermark are
        already folded and skipped."""
        skip = self.stats.folded_seq - seq_first + 1
        if skip >= len(batch):
            return
        if skip > 0:
            self._folder.fold(batch[skip:], seq_first + skip)
        elif type(batch) is PollBatch:
            self._folder.fold_poll(batch, seq_first)
        else:
            self._folder.fold(batch, seq_first)
        self.stats.folded_seq = seq_first + len(batch) - 1

    def _is_meter_point(self, device: str, point: str) -> bool:
        meter = self._meters[device] if device in self._meters else self._meter_for(device)
        return meter is not None and (point == meter.src.energy_point
                                      or point == meter.src.power_point)

    def _feed_meter(self, device: str, point: str, v: float, ts: int) -> None:
        meter = self._meters[device]
        if meter is None:
            return
        got = meter.feed(point, v, ts)
        self._dirty_meters.add(device)
        if got is not None and got[0] > 0:
            self._split(device, got[0], got[1], ts)

    def _meter_for(self, device: str) -> EnergyMeter | None:
        src = next((e for e in self.cfg.energy if e.matches(device)), None)
        meter = EnergyMeter(src, self.stats.meters) if src is not None else None
        if meter is not None and device in self._loaded_meters:
            meter.restore(self._loaded_meters.pop(device))
        self._meters[device] = meter
        return meter

    def _split(self, device: str, wh: float, t0: int, t1: int) -> None:
        if t1 <= t0:
            self._energy[(device, t1 - t1 % QUARTER_MS)] += wh
            return
        span = t1 - t0
        slot = t0 - t0 % QUARTER_MS
        while slot < t1:
            end = slot + QUARTER_MS
            part = min(end, t1) - max(slot, t0)
            if part > 0:
                self._energy[(device, slot)] += wh * part / span
            slot = end

    async def flush(self, final: bool = False) -> None:
        """Write the closed minutes, the energy and the watermarks (one transaction).
        ``final`` (a clean stop) closes every minute folded so far."""
        async with self._lock:
            self.fold_pending()
            await self._flush_locked(final)

    async def _flush_locked(self, final: bool = False) -> None:
        cpu = self.cpu
        c0 = cpu.start()
        folder, energy, stats = self._folder, self._energy, self.stats
        old_h = stats.horizon
        now = self.store.clock.now_ms() - CLOSE_AFTER_MS
        horizon = max(old_h, now - now % MINUTE_MS)
        if final and folder.buckets:
            horizon = max(horizon, max(folder.buckets) + MINUTE_MS)
        closed = folder.pop_closed(horizon)
        meters = {d: self._meters[d] for d in self._dirty_meters}
        if (not closed and not energy and not meters and horizon == old_h
                and not self._state_dirty()):
            cpu.add("flush", c0)
            return
        t0 = asyncio.get_running_loop().time()
        old_q, new_q = old_h - old_h % QUARTER_MS, horizon - horizon % QUARTER_MS
        rows1: list[tuple[Any, ...]] = []  # of late minutes (may meet rows): at once
        fresh: list[tuple[int, Any]] = []  # the other closed minutes: written in chunks
        late15: dict[tuple[str, str, int], list[Any]] = {}
        for minute, b in closed:
            if minute >= old_h:
                fresh.append((minute, b))
                continue
            quarter = minute - minute % QUARTER_MS
            late = quarter < old_q  # its quarter's 15-minute row is already built
            rows = folder.rows(minute, b)
            rows1 += rows
            if late:
                for r in rows:
                    merge(late15, (r[0], r[1], quarter), r[3:])
        rest = [b.first_seq for m, b in folder.buckets.items() if m >= horizon]
        replay = min(rest) - 1 if rest else stats.folded_seq
        open_n = sum(b.n for m, b in folder.buckets.items() if m >= horizon)
        new_energy = sum(1 for k in energy if k not in self._energy_seen)
        energy_rows = [(*k, wh) for k, wh in energy.items()]
        meter_rows = [(d, json.dumps(m.snapshot())) for d, m in meters.items() if m is not None]
        added: Added = {}  # points first written now, and their ids
        sid = self._ids.sid_of(added)
        late_rows = [(r[2], sid(r[0], r[1]), *r[3:]) for r in rows1]
        late15_rows = [(q, sid(d, pt), *a) for (d, pt, q), a in late15.items()]
        cpu.add("flush", c0)
        s0 = cpu.sql_start(store_thread(self.store))
        async with self.store.transaction() as tx:
            new_rows = len(late_rows) + new_energy
            if late_rows:  # late minutes may add to existing rows
                new_rows -= await existing(tx, "history_1m", [r[:2] for r in late_rows])
            if late15_rows:
                new_rows += len(late15_rows) - await existing(
                    tx, "history_15m", [r[:2] for r in late15_rows])
                await tx.executemany(UPSERT.format(t="history_15m"), late15_rows)
            if late_rows:
                await tx.executemany(UPSERT.format(t="history_1m"), late_rows)
            for minute, b in fresh:
                chunks = folder.row_chunks(minute, b, self._ids.ids_of(added))
                while True:
                    c1 = cpu.start()
                    chunk = next(chunks, None)
                    cpu.add("flush", c1)
                    if chunk is None:
                        break
                    new_rows += len(chunk)
                    await tx.executemany(UPSERT.format(t="history_1m"), chunk)
            await PointIds.write(tx, added)  # every id its rows use, in their transaction
            if new_q > old_q:  # quarters now complete: built from their minutes
                await tx.execute(BUILD_15M, (old_q, new_q))
                cur = await tx.execute("SELECT changes()")  # (rowcount is -1 after WITH)
                new_rows += (await cur.fetchone() or (0,))[0]
                await cur.close()
            if energy_rows:
                await tx.executemany(UPSERT_ENERGY, energy_rows)
            if meter_rows:
                await tx.executemany(
                    "INSERT OR REPLACE INTO history_meters (device, state) VALUES (?, ?)",
                    meter_rows)
            await self._write_state(tx, est_rows=stats.est_rows + new_rows, horizon=horizon,
                                    replay_seq=replay, open_samples=open_n)
        cpu.sql_stop(s0)
        c0 = cpu.start()
        self._ids.committed(added)
        stats.est_rows += new_rows
        stats.open_samples = open_n
        stats.horizon, stats.replay_seq = horizon, replay
        self._durable_seq = stats.folded_seq
        folder.forget([m for m, _ in closed])
        self._energy_seen = set(energy)
        self._energy = collections.defaultdict(float)
        self._dirty_meters = set()
        self._written_state = self._state_tuple()
        stats.flushes += 1
        stats.flush_s += asyncio.get_running_loop().time() - t0
        cpu.add("flush", c0)

    def _state_tuple(self) -> tuple[int, ...]:
        return tuple(getattr(self.stats, k) for k in _STATE_KEYS)

    def _state_dirty(self) -> bool:
        return self._written_state != self._state_tuple()

    async def _write_state(self, tx: Any, **override: int) -> None:
        values = {k: override.get(k, getattr(self.stats, k)) for k in _STATE_KEYS}
        await tx.executemany("INSERT OR REPLACE INTO history_state (key, value) VALUES (?, ?)",
                             list(values.items()))

    def open_rows(self, device: str, point: str | None) -> list[tuple[Any, ...]]:
        return self._folder.open_rows(device, point)

    def point_ids(self, device: str, point: str | None) -> dict[int, str]:
        return self._ids.of_device(device, point)

    def built_until(self) -> int:
        return self.stats.horizon - self.stats.horizon % QUARTER_MS

    async def prune(self, now_ms: int) -> int:
        """Drop rows older than the retention, then the oldest beyond ``max_bytes``. The
        minutes of a quarter not yet built into its 15-minute row stay."""
        cfg = self.cfg
        async with self._lock:
            s0 = self.cpu.sql_start(store_thread(self.store))
            dropped, over = await self._prune_locked(now_ms)
            self.cpu.sql_stop(s0)
        if over:
            log.warning("history: dropped the %d oldest rollup row(s) to stay under "
                        "siteops.history.max_bytes (%d bytes)", over, cfg.max_bytes)
        return dropped + over

    async def _prune_locked(self, now_ms: int) -> tuple[int, int]:
        cfg = self.cfg
        dropped = 0
        async with self.store.transaction() as tx:
            building = self.stats.horizon - self.stats.horizon % QUARTER_MS
            for table, days in (("history_1m", cfg.minute_days), ("history_15m", cfg.days),
                                ("history_energy", cfg.days)):
                cutoff = now_ms - int(days * DAY_MS)
                if table == "history_1m":
                    cutoff = min(cutoff, building)
                cur = await tx.execute(f"DELETE FROM {table} WHERE ts < ?", (cutoff,))
                dropped += max(cur.rowcount, 0)
            est = max(self.stats.est_rows - dropped, 0)
            over = 0
            for table in ("history_1m", "history_15m", "history_energy"):
                while est * ROW_BYTES > cfg.max_bytes:
                    minute = table == "history_1m"
                    cur = await tx.execute(f"SELECT MIN(ts) FROM {table}")
                    (oldest,) = await cur.fetchone() or (None,)
                    if oldest is None or (minute and oldest >= building):
                        break
                    cur = await tx.execute(f"DELETE FROM {table} WHERE ts < ?",
                                           (oldest + MINUTE_MS,))
                    n = max(cur.rowcount, 0)
                    est, over = max(est - n, 0), over + n
            self.stats.est_rows = est
            self.stats.dropped_rows += over
            await self._write_state(tx)
            self._written_state = self._state_tuple()
        return dropped, over

    async def run(self) -> None:
        """The history task: fold what was queued every ``FOLD_EVERY_S`` (or
        ``flush_interval`` if shorter), commit every ``flush_interval``."""
        await self.catch_up()  # the backlog a crash left, in the background
        loop = asyncio.get_running_loop()
        next_flush = loop.time() + self.cfg.flush_interval
        every = min(FOLD_EVERY_S, self.cfg.flush_interval)
        while True:
            await asyncio.sleep(every)
            if self._behind:
                self._behind = False  # batches observed from now on queue again
                await self.catch_up()
            if self._pending:
                async with self._lock:
                    self.fold_pending()
            if loop.time() >= next_flush:
                await self.flush()
                next_flush = loop.time() + self.cfg.flush_interval

    def snapshot(self) -> dict[str, Any]:
        s = self.stats
        return {"folded_seq": s.folded_seq, "est_bytes": s.est_rows * ROW_BYTES,
                "est_rows": s.est_rows, "dropped_rows": s.dropped_rows,
                "lost_samples": s.lost_samples, "pending_samples": self._pending_samples,
                "flushes": s.flushes, "flush_s": round(s.flush_s, 3),
                "energy_resets": s.meters.resets, "energy_rollovers": s.meters.rollovers,
                "energy_implausible": s.meters.implausible, "energy_gaps": s.meters.gaps,
                "cpu": self.cpu.snapshot()}

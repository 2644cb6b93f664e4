"""Local history: 1-minute and 15-minute rollups per point, energy per device per 15 minutes.

Where it lives: in the buffer's SQLite file (tables ``history_*``), not a second file. One
file means one writer, one backup, the component's migrations like every other table, and
-- what matters most -- the rollups and the watermark of the samples they hold commit in
one transaction. The telemetry buffer's ``store.max_bytes`` counts only telemetry chunks, so
history does not eat the buffer's room; history has its own cap (``history.max_bytes``).

How it is written (off the polling path): the pipeline tells the component's observer about
every committed batch and its first sequence number; the observer only queues it. The
history task folds queued samples into in-memory deltas and, every ``flush_interval``,
upserts the deltas and ``folded_seq`` (the last sample sequence number folded in) in ONE
transaction. A kill -9 loses the unflushed deltas and the watermark with them, never one
without the other: at start the component re-reads the samples after ``folded_seq`` from the
buffer and folds them again, so no rollup is ever counted twice. Samples the uplink had
already acknowledged (and so deleted) in that last interval are gone from the buffer; they
are counted in ``lost_samples`` (an upper bound, since the sequence numbers a restart skips
fall in the same range; visible in ``history.stats``).

Only GOOD finite numbers (not booleans) are rolled up. Energy follows
:mod:`gateway.rules.quotas`: the same counter tracker (resets, rollover, implausible jumps)
and power integrator (gaps), and a delta that covers several 15-minute slots is split in
proportion to time.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import math
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from gateway.model import Sample
from gateway.rules.quotas import CounterOrPower, CounterTracker, MeterStats, PowerIntegrator
from gateway.siteops.config import EnergySource, HistoryConfig
from gateway.siteops.history_query import DAY_MS, MINUTE_MS, QUARTER_MS, HistoryQueries
from gateway.store import Store

log = logging.getLogger(__name__)

#: Estimated bytes per rollup row (key, six numbers, index entry), for ``max_bytes``.
ROW_BYTES = 96
#: Samples queued for folding beyond which new batches are dropped (and counted).
MAX_PENDING_SAMPLES = 2_000_000

MIGRATIONS = [
    """
    CREATE TABLE history_1m (
        device TEXT NOT NULL, point TEXT NOT NULL, ts INTEGER NOT NULL,
        n INTEGER NOT NULL, total REAL NOT NULL, vmin REAL NOT NULL, vmax REAL NOT NULL,
        lastv REAL NOT NULL, last_ts INTEGER NOT NULL,
        PRIMARY KEY (device, point, ts)
    ) WITHOUT ROWID;
    CREATE INDEX history_1m_ts ON history_1m (ts);
    CREATE TABLE history_15m (
        device TEXT NOT NULL, point TEXT NOT NULL, ts INTEGER NOT NULL,
        n INTEGER NOT NULL, total REAL NOT NULL, vmin REAL NOT NULL, vmax REAL NOT NULL,
        lastv REAL NOT NULL, last_ts INTEGER NOT NULL,
        PRIMARY KEY (device, point, ts)
    ) WITHOUT ROWID;
    CREATE INDEX history_15m_ts ON history_15m (ts);
    CREATE TABLE history_energy (
        device TEXT NOT NULL, ts INTEGER NOT NULL, wh REAL NOT NULL,
        PRIMARY KEY (device, ts)
    ) WITHOUT ROWID;
    CREATE TABLE history_meters (device TEXT PRIMARY KEY, state TEXT NOT NULL);
    CREATE TABLE history_state (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
    """,
]

_UPSERT = """
INSERT INTO {t} (device, point, ts, n, total, vmin, vmax, lastv, last_ts)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (device, point, ts) DO UPDATE SET
    n = n + excluded.n, total = total + excluded.total,
    vmin = MIN(vmin, excluded.vmin), vmax = MAX(vmax, excluded.vmax),
    lastv = CASE WHEN excluded.last_ts >= last_ts THEN excluded.lastv ELSE lastv END,
    last_ts = MAX(last_ts, excluded.last_ts)
"""
_UPSERT_ENERGY = """
INSERT INTO history_energy (device, ts, wh) VALUES (?, ?, ?)
ON CONFLICT (device, ts) DO UPDATE SET wh = wh + excluded.wh
"""
_STATE_KEYS = ("folded_seq", "est_rows", "dropped_rows", "lost_samples")

Key = tuple[str, str, int]


class EnergyMeter(CounterOrPower):
    """One device's energy: a counter, and power only while it has delivered no counter."""

    def __init__(self, src: EnergySource, stats: MeterStats) -> None:
        self.src = src
        self.counter = CounterTracker(1000.0 if src.energy_unit == "kWh" else 1.0,
                                      src.counter_max, src.max_power_w, stats)
        self.power = PowerIntegrator(src.max_gap_s, stats)
        self.has_counter = False

    def feed(self, point: str, value: float, ts: int) -> tuple[float, int] | None:
        """(Wh, start of the interval it covers) or None."""
        if point == self.src.energy_point:
            self.has_counter = True
            return self.counter.step(value, ts)
        if point == self.src.power_point and not self.has_counter:
            return self.power.step(value, ts)
        return None



@dataclass
class HistoryStats:
    folded_seq: int = 0
    est_rows: int = 0
    dropped_rows: int = 0
    lost_samples: int = 0
    flushes: int = 0
    flush_s: float = 0.0
    meters: MeterStats = field(default_factory=MeterStats)


def _number(value: Any) -> float | None:
    t = type(value)
    if t is not float and t is not int:
        return None
    if value != value or value in (math.inf, -math.inf):
        return None
    return float(value)


class History(HistoryQueries):
    """Folds committed samples into rollups; queries them. One per component run."""

    def __init__(self, cfg: HistoryConfig, store: Store, tz: ZoneInfo) -> None:
        self.cfg = cfg
        self.store = store
        self.tz = tz
        self.stats = HistoryStats()
        self._m1: dict[Key, list[Any]] = {}
        self._energy: dict[tuple[str, int], float] = collections.defaultdict(float)
        self._meters: dict[str, EnergyMeter | None] = {}
        self._dirty_meters: set[str] = set()
        self._seen: set[tuple[int, Any]] = set()  # keys flushed last time (row estimate)
        self._pending: collections.deque[tuple[list[Sample], int]] = collections.deque()
        self._pending_samples = 0
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._loaded_meters: dict[str, dict[str, Any]] = {}
        self._catching_up = False

    # -- start ---------------------------------------------------------------------------

    async def load(self) -> None:
        for key, value in await self.store.query("SELECT key, value FROM history_state"):
            if key in _STATE_KEYS:
                setattr(self.stats, key, int(value))
        for device, state in await self.store.query("SELECT device, state FROM history_meters"):
            self._loaded_meters[device] = json.loads(state)

    async def catch_up(self) -> int:
        """Fold the samples committed after ``folded_seq`` that are still in the buffer (a
        crash lost their deltas). Returns how many were folded. Batches the observer queues
        meanwhile are folded after it (their samples are later)."""
        self._catching_up = True
        try:
            folded = await self._catch_up()
        finally:
            self._catching_up = False
        return folded

    async def _catch_up(self) -> int:
        folded = 0
        first = True
        while True:
            chunks = await self.store.read_telemetry(self.stats.folded_seq, 20_000)
            if not chunks:
                break
            acked = await self.store.acked_seq() if first else 0
            if first and acked > self.stats.folded_seq:
                # Acknowledged (deleted) before they were rolled up. Sequence numbers a
                # restart skipped are in this range too, so it is an upper bound.
                gap = min(acked, chunks[0].seq_first - 1) - self.stats.folded_seq
                if gap > 0:
                    self.stats.lost_samples += gap
                    log.warning("history: up to %d sample(s) committed before the restart "
                                "had left the buffer before they were rolled up; history "
                                "has a gap there", gap)
            first = False
            for chunk in chunks:
                rows = [Sample(*r) for r in chunk.rows]
                self.fold(rows, chunk.seq_first)
                folded += len(rows)
            async with self._lock:
                await self._flush_locked()  # not the queued batches: they come after
        if folded:
            log.info("history: caught up %d sample(s) from the buffer", folded)
        return folded

    # -- write path ----------------------------------------------------------------------

    def observe(self, batch: list[Sample], seq_first: int) -> None:
        """The pipeline observer: queue only (runs on the commit path)."""
        if self._pending_samples > MAX_PENDING_SAMPLES:
            self.stats.lost_samples += len(batch)
            return
        self._pending.append((batch, seq_first))
        self._pending_samples += len(batch)
        self._wake.set()

    def fold_pending(self) -> None:
        if self._catching_up:
            return  # queued batches hold later samples than the buffer's backlog
        while self._pending:
            batch, seq_first = self._pending.popleft()
            self._pending_samples -= len(batch)
            self.fold(batch, seq_first)

    def fold(self, batch: list[Sample], seq_first: int) -> None:
        """Fold samples numbered from ``seq_first``; those at or below the watermark are
        already in the rollups and skipped."""
        skip = self.stats.folded_seq - seq_first + 1
        if skip >= len(batch):
            return
        rows = batch[skip:] if skip > 0 else batch
        cfg = self.cfg
        m1, meters = self._m1, self._meters
        every = cfg.points == ["*"]
        for s in rows:
            device, point, ts, value, quality = s
            if quality != "good":
                continue
            if type(value) is float and value - value == 0.0:  # finite (nan, inf: not)
                v = value
            else:  # ints, or not a number at all: the slow path
                n = _number(value)
                if n is None:
                    continue
                v = n
            if every or cfg.keeps(device, point):
                # The 15-minute deltas are built from these at flush time.
                key = (device, point, ts - ts % MINUTE_MS)
                a = m1.get(key)
                if a is None:
                    m1[key] = [1, v, v, v, v, ts]
                else:
                    a[0] += 1
                    a[1] += v
                    if v < a[2]:
                        a[2] = v
                    elif v > a[3]:
                        a[3] = v
                    if ts >= a[5]:
                        a[4], a[5] = v, ts
            meter = meters[device] if device in meters else self._meter_for(device)
            if meter is not None and (point == meter.src.energy_point
                                      or point == meter.src.power_point):
                got = meter.feed(point, v, ts)
                self._dirty_meters.add(device)
                if got is not None and got[0] > 0:
                    self._split(device, got[0], got[1], ts)
        self.stats.folded_seq = seq_first + len(batch) - 1

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

    async def flush(self) -> None:
        """Commit the deltas and the watermark together (one transaction)."""
        async with self._lock:
            self.fold_pending()
            await self._flush_locked()

    async def _flush_locked(self) -> None:
        m1, energy = self._m1, self._energy
        m15: dict[Key, list[Any]] = {}
        for (device, point, ts), a in m1.items():
            key = (device, point, ts - ts % QUARTER_MS)
            b = m15.get(key)
            if b is None:
                m15[key] = list(a)
                continue
            b[0] += a[0]
            b[1] += a[1]
            b[2], b[3] = min(b[2], a[2]), max(b[3], a[3])
            if a[5] >= b[5]:
                b[4], b[5] = a[4], a[5]
        meters = {d: self._meters[d] for d in self._dirty_meters}
        if not m1 and not m15 and not energy and not meters and not self._state_dirty():
            return
        t0 = asyncio.get_running_loop().time()
        seen: set[tuple[int, Any]] = {(1, k) for k in m1} | {(15, k) for k in m15}
        new_rows = len(seen - self._seen) + sum(1 for k in energy if (0, k) not in self._seen)
        est = self.stats.est_rows + new_rows
        async with self.store.transaction() as tx:
            if m1:
                await tx.executemany(_UPSERT.format(t="history_1m"),
                                     [(*k, *a) for k, a in m1.items()])
            if m15:
                await tx.executemany(_UPSERT.format(t="history_15m"),
                                     [(*k, *a) for k, a in m15.items()])
            if energy:
                await tx.executemany(_UPSERT_ENERGY, [(*k, wh) for k, wh in energy.items()])
            if meters:
                await tx.executemany(
                    "INSERT OR REPLACE INTO history_meters (device, state) VALUES (?, ?)",
                    [(d, json.dumps(m.snapshot())) for d, m in meters.items() if m is not None])
            await self._write_state(tx, est_rows=est)
        self.stats.est_rows = est
        self._seen = seen | {(0, k) for k in energy}
        self._m1 = {}
        self._energy = collections.defaultdict(float)
        self._dirty_meters = set()
        self._written_state = self._state_tuple()
        self.stats.flushes += 1
        self.stats.flush_s += asyncio.get_running_loop().time() - t0

    def _state_tuple(self) -> tuple[int, ...]:
        return tuple(getattr(self.stats, k) for k in _STATE_KEYS)

    def _state_dirty(self) -> bool:
        return getattr(self, "_written_state", None) != self._state_tuple()

    async def _write_state(self, tx: Any, **override: int) -> None:
        values = {k: override.get(k, getattr(self.stats, k)) for k in _STATE_KEYS}
        await tx.executemany("INSERT OR REPLACE INTO history_state (key, value) VALUES (?, ?)",
                             list(values.items()))

    async def prune(self, now_ms: int) -> int:
        """Drop rows older than the retention, then the oldest beyond ``max_bytes``."""
        cfg = self.cfg
        dropped = 0
        async with self._lock, self.store.transaction() as tx:
            for table, days in (("history_1m", cfg.minute_days), ("history_15m", cfg.days),
                                ("history_energy", cfg.days)):
                cur = await tx.execute(f"DELETE FROM {table} WHERE ts < ?",
                                       (now_ms - int(days * DAY_MS),))
                dropped += max(cur.rowcount, 0)
            est = max(self.stats.est_rows - dropped, 0)
            over = 0
            for table in ("history_1m", "history_15m", "history_energy"):
                while est * ROW_BYTES > cfg.max_bytes:
                    cur = await tx.execute(f"SELECT MIN(ts) FROM {table}")
                    (oldest,) = await cur.fetchone() or (None,)
                    if oldest is None:
                        break
                    cur = await tx.execute(f"DELETE FROM {table} WHERE ts <= ?",
                                           (oldest + MINUTE_MS - 1,))
                    n = max(cur.rowcount, 0)
                    est, over = max(est - n, 0), over + n
            self.stats.est_rows = est
            self.stats.dropped_rows += over
            await self._write_state(tx)
        if over:
            log.warning("history: dropped the %d oldest rollup row(s) to stay under "
                        "siteops.history.max_bytes (%d bytes)", over, cfg.max_bytes)
        return dropped + over

    async def run(self) -> None:
        """The history task: fold as batches come, commit every ``flush_interval``."""
        await self.catch_up()  # the backlog a crash left, in the background
        loop = asyncio.get_running_loop()
        next_flush = loop.time() + self.cfg.flush_interval
        while True:
            timeout = max(next_flush - loop.time(), 0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
            self._wake.clear()
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
                "energy_implausible": s.meters.implausible, "energy_gaps": s.meters.gaps}

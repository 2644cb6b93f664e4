"""``on_energy_data_received``: called per committed sample, so it gets its own path.

A pipeline observer (:class:`EnergyFan`, called after each commit) hands the committed batch
to every implementing plugin's own bounded queue without waiting; each plugin has its own
task (:class:`EnergyFeed`) that takes batches off and calls it sample by sample. A full queue
drops the batch for that plugin only (counted under its name, warned naming it and the
hook): ingest never waits for a plugin, and a slow plugin costs the others nothing. This
hook is best effort; the event hooks are not.

With ``plugins.<name>.energy_increments: true`` a plugin gets, for its energy points, the
increment since the previous counter reading of the same device and point (what the
original platform's ``EnergyData`` held) instead of the reading itself.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import pluggy

from gateway.model import Batch
from hooks.db import HooksDB, device_of
from hooks.manager import HookRunner
from hooks.models import DataPoint, Device
from hooks.threads import CallNotStarted, CallTimedOut, ThreadsHeld

if TYPE_CHECKING:
    from hooks.db import PluginsContext

log = logging.getLogger(__name__)

ENERGY_HOOK = "on_energy_data_received"
_YIELD_EVERY = 1000
_WARN_EVERY_S = 10.0


class Increments:
    """Counter readings -> increments since the previous reading, per device and point.

    The first reading of a counter only sets the baseline (nothing is handed over). A reading
    below the previous one (meter replaced or reset) sets a new baseline too: handing over a
    negative or a whole-register "increment" would be wrong either way."""

    def __init__(self, points: Sequence[str]) -> None:
        self.points = tuple(points)
        self.last: dict[tuple[str, str], float] = {}
        self._is_energy: dict[str, bool] = {}
        self.resets = 0

    def is_energy(self, point: str) -> bool:
        known = self._is_energy.get(point)
        if known is None:
            known = self._is_energy[point] = any(
                fnmatch.fnmatchcase(point, p) for p in self.points)
        return known

    def apply(self, dp: DataPoint) -> DataPoint | None:
        """The data point to hand over, or None (baseline, reset or a bad reading)."""
        if not self.is_energy(dp.point):
            return dp
        value = dp.value
        if dp.quality != "good" or isinstance(value, bool) or not isinstance(
                value, (int, float)):
            return None
        key = (dp.device, dp.point)
        prev = self.last.get(key)
        self.last[key] = float(value)
        if prev is None:
            return None
        if value < prev:
            self.resets += 1
            log.info("energy counter %s.%s went back from %s to %s (meter reset or "
                     "replaced): new baseline, no increment handed over", dp.device, dp.point,
                     prev, value)
            return None
        return dp._replace(value=value - prev)


class EnergyFeed:
    """One plugin's bounded queue of committed batches and the task that feeds it."""

    def __init__(self, app: PluginsContext, runner: HookRunner, impl: pluggy.HookImpl,
                 db: HooksDB, queue_samples: int, batch_timeout: float,
                 increments: Increments | None = None) -> None:
        self.app = app
        self.runner = runner
        self.impl = impl
        self.plugin = impl.plugin_name
        self.db = db
        # Bounded in samples, not batches: one committed batch can hold 50,000 samples.
        self.queue: asyncio.Queue[tuple[Batch, int]] = asyncio.Queue()
        self.max_samples = queue_samples
        self.queued_samples = 0
        self.batch_timeout = batch_timeout
        self.increments = increments
        self.delivered_samples = 0
        self.dropped_samples = 0
        self.dropped_batches = 0
        self._dropped_since_warn = 0
        self._last_warn = 0.0

    def offer(self, batch: Batch, seq_first: int) -> None:
        """Called from the pipeline observer: never blocks, drops when the queue is full."""
        if self.queued_samples + len(batch) <= self.max_samples or self.queue.empty():
            self.queue.put_nowait((batch, seq_first))
            self.queued_samples += len(batch)
            return
        self.dropped_batches += 1
        self.dropped_samples += len(batch)
        self._dropped_since_warn += len(batch)
        now = time.monotonic()
        if now - self._last_warn >= _WARN_EVERY_S:
            log.warning("plugin %s: %s is slower than ingest: dropped %d samples for this "
                        "plugin only (its queue of %d samples is full; the other plugins "
                        "get every sample). Make it cheaper per sample or raise "
                        "plugins.energy_queue_samples", self.plugin, ENERGY_HOOK,
                        self._dropped_since_warn, self.max_samples)
            self._last_warn = now
            self._dropped_since_warn = 0

    async def run(self) -> None:
        while True:
            batch, seq_first = await self.queue.get()
            self.queued_samples -= len(batch)
            devices: dict[str, Device] = {}
            for s in batch:
                if s[0] not in devices:
                    devices[s[0]] = device_of(self.app, s[0])
            await self.deliver(batch, seq_first, devices)
            self.delivered_samples += len(batch)

    async def deliver(self, batch: Batch, seq_first: int,
                      devices: dict[str, Device]) -> None:
        impl, plugin = self.impl, self.plugin
        st = self.runner.stat(plugin, ENERGY_HOOK)
        fn: Callable[..., Any] = impl.function
        errors: list[BaseException] = []
        call = _binder(fn, tuple(impl.argnames), self.db)
        inc = self.increments

        def points() -> Any:
            for i, sample in enumerate(batch):
                dp: DataPoint | None = DataPoint(*sample, seq_first + i)
                if inc is not None:
                    dp = inc.apply(dp)  # type: ignore[arg-type]
                    if dp is None:
                        continue
                yield i, dp

        async def run_async() -> None:
            for i, dp in points():
                try:
                    await call(devices[dp.device], dp)
                except Exception as err:
                    errors.append(err)
                if i % _YIELD_EVERY == _YIELD_EVERY - 1:
                    await asyncio.sleep(0)  # let the pollers and the pipeline run

        def run_sync() -> None:
            for _i, dp in points():
                try:
                    call(devices[dp.device], dp)
                except Exception as err:
                    errors.append(err)

        t0 = time.perf_counter()
        st.calls += len(batch)
        active = self.runner.running(plugin, ENERGY_HOOK)
        try:
            if asyncio.iscoroutinefunction(fn):
                async with asyncio.timeout(self.batch_timeout):
                    await run_async()
            else:
                await self.runner.threads_of(plugin).call(run_sync, self.batch_timeout,
                                                          ENERGY_HOOK)
        except (TimeoutError, CallTimedOut):
            st.timeouts += 1
            st.last_error = f"batch timeout after {self.batch_timeout:g} s"
            log.warning("plugin %s: %s did not get through a batch of %d samples within "
                        "%.1f s; the rest of the batch is skipped for it. Make it cheaper "
                        "or raise plugins.energy_batch_timeout", plugin, ENERGY_HOOK,
                        len(batch), self.batch_timeout)
        except CallNotStarted as err:
            st.not_started += 1
            st.last_error = str(err)
        except ThreadsHeld:
            st.refused += 1
        finally:
            self.runner.active.discard(active)
            elapsed = (time.perf_counter() - t0) * 1000
            st.total_ms += elapsed
            st.max_ms = max(st.max_ms, elapsed)
        if errors:
            st.errors += len(errors)
            st.last_error = f"{type(errors[0]).__name__}: {errors[0]}"
            log.error("plugin %s: %s raised on %d of %d samples (first: %s); fix this plugin",
                      plugin, ENERGY_HOOK, len(errors), len(batch), st.last_error,
                      exc_info=errors[0])

    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "queued_samples": self.queued_samples, "delivered_samples": self.delivered_samples,
            "dropped_samples": self.dropped_samples, "dropped_batches": self.dropped_batches}
        if self.increments is not None:
            out["counter_resets"] = self.increments.resets
        return out


class EnergyFan:
    """The pipeline observer: hands every committed batch to each plugin's own feed."""

    def __init__(self) -> None:
        self.feeds: dict[str, EnergyFeed] = {}

    def observe(self, batch: Batch, seq_first: int) -> None:
        for feed in self.feeds.values():
            feed.offer(batch, seq_first)

    def stats(self) -> dict[str, Any]:
        """Totals over the plugins plus ``plugins``: each plugin's own figures."""
        per = {name: feed.stats() for name, feed in sorted(self.feeds.items())}
        total: dict[str, Any] = {k: sum(p[k] for p in per.values()) for k in (
            "queued_samples", "delivered_samples", "dropped_samples", "dropped_batches")}
        total["plugins"] = per
        return total


def _binder(fn: Callable[..., Any], names: tuple[str, ...], db: HooksDB
            ) -> Callable[[Device, DataPoint], Any]:
    """``(device, data_point) -> fn(...)`` with the arguments ``fn`` asked for, without
    building a dict per sample (this runs once per sample)."""
    if names == ("device", "data_point", "db"):
        return lambda dev, dp: fn(dev, dp, db)
    if names == ("device", "data_point"):
        return fn
    if names == ("data_point",):
        return lambda dev, dp: fn(dp)
    if names == ("data_point", "db"):
        return lambda dev, dp: fn(dp, db)

    def generic(dev: Device, dp: DataPoint) -> Any:
        values = {"device": dev, "data_point": dp, "db": db}
        return fn(*[values[n] for n in names])

    return generic

"""The gateway's health figures, gathered in one place for ``/metrics`` and the MQTT ``stats``.

The ``health`` component is always on. It counts committed samples (one addition per batch,
as a pipeline observer), measures the event loop's wake-up delay, and registers the read-only
command ``health.stats``, which returns every figure as one JSON document:

- samples ingested, the buffer (rows, samples, bytes, oldest, dropped, events pending);
- the uplink (connected, lag in samples and seconds, its counters), when one runs;
- each configured device's status, and the poll statistics of every device or bus whose
  driver keeps them (requests, errors by kind, latency p50/p99, last error, histogram);
- rule evaluations and open alarms, plugin hook calls/errors/timeouts and event-loop
  stalls, OCPP connections and sessions, when those parts run;
- event-loop lag, process CPU seconds, RSS and open files, free disk in the state directory.

The HTTP server's ``/metrics`` turns this document into Prometheus families, and the uplink
publishes it as the ``stats`` message (config/wire/stats.schema.json). Nothing here sits on
the data path beyond the observer's one addition per batch: a call reads the counters the
parts already keep, through the command registry and the store's read-only statistics.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from gateway import heartbeat
from gateway.commands import Command, NoArgs
from gateway.components import (
    Component,
    ComponentContext,
    ComponentSpec,
    TaskFactory,
    register_component,
)
from gateway.model import Batch
from gateway.pollstats import BUCKETS

COMMAND = "health.stats"
#: The statuses ``devices.<id>.status`` takes besides "unknown" and "disabled".
STATUSES = ("online", "offline", "alarm", "maintenance")


class LoopLag:
    """How late the event loop wakes a timer due every ``interval`` seconds (or more
    often): the loop's shared heartbeat (:mod:`gateway.heartbeat`), which the plugins'
    loop watch beats too, so the two cost one timer."""

    def __init__(self, interval: float = 0.5) -> None:
        self.interval = interval
        self._heart: heartbeat.Use | None = None

    @property
    def last(self) -> float:
        return self._heart.lag_last if self._heart is not None else 0.0

    @property
    def max(self) -> float:
        return self._heart.lag_max if self._heart is not None else 0.0

    async def run(self) -> None:
        heart = self._heart = heartbeat.acquire(self.interval)
        try:
            await asyncio.get_running_loop().create_future()  # beats until cancelled
        finally:
            heart.release()


class SampleCounter:
    """A pipeline observer: samples committed since this configuration was loaded."""

    def __init__(self) -> None:
        self.samples = 0

    def __call__(self, batch: Batch, seq_first: int) -> None:
        self.samples += len(batch)


def process_figures() -> dict[str, float | int | None]:
    """CPU seconds (user + system), resident memory and open files of this process (what
    prometheus-client's process collector reports; None where the system does not say)."""
    times = os.times()
    rss: int | None = None
    fds: int | None = None
    try:
        with open("/proc/self/statm", "rb") as f:
            rss = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        fds = len(os.listdir("/proc/self/fd"))
    except (OSError, ValueError, IndexError):
        pass
    return {"cpu_seconds": round(times.user + times.system, 3), "rss_bytes": rss,
            "open_fds": fds}


class Health(Component):
    name = "health"

    def __init__(self, ctx: ComponentContext[None]) -> None:
        self.ctx = ctx
        self.lag = LoopLag()
        self.counter = SampleCounter()
        self._remove: Callable[[], None] | None = None

    async def start(self) -> None:
        self._remove = self.ctx.add_observer(self.counter)
        self.ctx.commands.register(Command(
            COMMAND, NoArgs, self._command,
            "The gateway's health figures (what /metrics and the MQTT stats message carry): "
            "samples, buffer, uplink, devices and poll statistics, rules, hooks, OCPP, "
            "event loop, process, disk.", read_only=True))

    def tasks(self) -> Iterable[tuple[str, TaskFactory]]:
        yield "health-loop-lag", self.lag.run

    async def stop(self) -> None:
        if self._remove is not None:
            self._remove()

    async def _command(self, _: NoArgs) -> dict[str, Any]:
        return await self.gather()

    async def _result(self, name: str) -> Any:
        """A read-only command's result, None when it is not registered or fails."""
        if self.ctx.commands.get(name) is None:
            return None
        reply = await self.ctx.commands.execute(name, {})
        return reply.get("result") if reply.get("ok") else None

    async def gather(self) -> dict[str, Any]:
        ctx = self.ctx
        now = ctx.clock.now_ms()
        buf = (await ctx.store.stats()).as_dict()
        oldest = buf.get("oldest_ts_ms")
        age_s = round((now - oldest) / 1000, 3) if oldest else 0.0
        figures: dict[str, Any] = {
            "ts": now,
            "uptime_s": round((now - ctx.started_ms) / 1000, 3),
            "samples_ingested": self.counter.samples,
            "buffer": {"rows": buf["chunks"], "samples": buf["samples"],
                       "bytes": buf["payload_bytes"], "file_bytes": buf["file_bytes"],
                       "oldest_ts": oldest, "age_s": age_s, "dropped": buf["dropped_total"],
                       "events_pending": buf["events_pending"]},
            "uplink": None, "devices": self._devices(), "poll": self._poll(),
            "poll_buckets_s": list(BUCKETS), "rules": None, "hooks": None, "ocpp": None,
            "event_loop": {"lag_s": round(self.lag.last, 6), "lag_max_s": round(self.lag.max, 6),
                           "stalls": None},
            "process": process_figures(),
            "disk": {"state_dir_free_bytes": _free_bytes(ctx.state_dir)},
        }
        up = await self._result("uplink.stats")
        if up is not None:
            figures["uplink"] = {
                "connected": bool(up.get("connected")), "lag_samples": buf["samples"],
                "lag_s": age_s, **{key: int(up.get(key) or 0) for key in (
                    "telemetry_messages", "samples", "events", "connects", "disconnects")}}
        rules = await self._result("rules.stats")
        if rules is not None:
            figures["rules"] = {"evaluations": int(rules.get("evaluated") or 0),
                                "alarms_open": int(rules.get("open_alarms") or 0)}
        plugins = await self._result("plugins.stats")
        if plugins is not None:
            figures["hooks"] = {
                plugin: {hook: {key: int(row.get(key, 0))
                                for key in ("calls", "errors", "timeouts")}
                         for hook, row in per_hook.items()}
                for plugin, per_hook in (plugins.get("hooks") or {}).items()}
            figures["event_loop"]["stalls"] = (plugins.get("loop") or {}).get("stalls")
            figures["event_loop"]["plugin_stalls"] = {
                name: int(row.get("loop_stalls", 0))
                for name, row in (plugins.get("plugins") or {}).items()}
        ocpp = await self._result("ocpp.sessions")
        if ocpp is not None:
            chargers = ocpp.get("chargers", [])
            figures["ocpp"] = {"connections": sum(1 for c in chargers if c["connected"]),
                               "sessions": sum(len(c["sessions"]) for c in chargers)}
        return figures

    def _devices(self) -> dict[str, dict[str, Any]]:
        current = self.ctx.status.snapshot()
        out: dict[str, dict[str, Any]] = {}
        for dev in self.ctx.site.devices:
            if not dev.enabled:
                out[dev.id] = {"status": "disabled", "since": None}
                continue
            status, _reason, since = current.get(dev.id, ("unknown", "", None))
            out[dev.id] = {"status": str(status), "since": since}
        return out

    def _poll(self) -> dict[str, dict[str, Any]]:
        """Each device's or bus's poll snapshot plus its latency histogram: ``counts`` are
        cumulative per bound of ``poll_buckets_s``, then the total (``+Inf``)."""
        out: dict[str, dict[str, Any]] = {}
        for stats in self.ctx.poll_stats:
            cumulative, total_s, _count = stats.histogram()
            out[stats.name] = {**stats.snapshot(), "latency_histogram": {
                "counts": [n for _bound, n in cumulative], "sum_s": round(total_s, 6)}}
        return out


def _free_bytes(path: Path) -> int | None:
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


def _factory(ctx: ComponentContext[None]) -> Component:
    return Health(ctx)


register_component(ComponentSpec("health", _factory))

__all__ = ["COMMAND", "Health", "LoopLag", "process_figures"]

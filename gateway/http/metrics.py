"""``/metrics``: the gateway's figures in the Prometheus text format (prometheus-client).

Nothing here counts on the data path: a scrape reads the counters the parts already keep
(store, uplink, rules, plugins, OCPP) through the command registry and the store's read-only
statistics, and turns them into metric families. Samples ingested are counted by the
HTTP component's own observer. No driver keeps per-device poll counters or latencies yet,
so those series are not exported.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gateway.http.host import Host
from gateway.http.live import LatestValues

STATUSES = ("online", "offline", "alarm", "maintenance")


class LoopLag:
    """How late the event loop wakes a task that asked to sleep ``interval`` seconds."""

    def __init__(self, interval: float = 0.5) -> None:
        self.interval = interval
        self.last = 0.0
        self.max = 0.0

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            t0 = loop.time()
            await asyncio.sleep(self.interval)
            self.last = max(0.0, loop.time() - t0 - self.interval)
            self.max = max(self.max, self.last)


class _Snapshot(Collector):
    def __init__(self) -> None:
        self.families: list[Metric] = []

    def collect(self) -> Iterable[Metric]:
        return list(self.families)


class Metrics:
    def __init__(self, host: Host, latest: LatestValues, lag: LoopLag) -> None:
        self.host, self.latest, self.lag = host, latest, lag
        self.registry = CollectorRegistry(auto_describe=False)
        self._snapshot = _Snapshot()
        self.registry.register(self._snapshot)
        ProcessCollector(registry=self.registry)  # process CPU seconds, RSS, open fds
        self._lock = asyncio.Lock()

    async def _command(self, name: str) -> Any:
        if self.host.commands.get(name) is None:
            return None
        reply = await self.host.commands.execute(name, {})
        return reply.get("result") if reply.get("ok") else None

    async def render(self) -> bytes:
        async with self._lock:
            self._snapshot.families = await self._gather()
            return generate_latest(self.registry)

    async def _gather(self) -> list[Metric]:
        h = self.host
        out: list[Metric] = []

        def gauge(name: str, doc: str, value: float | None) -> None:
            if value is not None:
                out.append(GaugeMetricFamily(name, doc, value=value))

        def counter(name: str, doc: str, value: float | None) -> None:
            if value is not None:
                out.append(CounterMetricFamily(name, doc, value=value))

        now = h.clock.now_ms()
        gauge("fieldgate_up", "1 while the gateway answers.", 1)
        gauge("fieldgate_uptime_seconds", "Seconds since the daemon started.",
              (now - h.started_ms) / 1000)
        counter("fieldgate_samples_ingested", "Samples committed by the pipeline since this "
                "configuration was loaded.", self.latest.stats.samples)
        buf = (await h.store.stats()).as_dict()
        gauge("fieldgate_buffer_samples", "Samples in the buffer waiting for the uplink.",
              buf["samples"])
        gauge("fieldgate_buffer_rows", "Telemetry chunks (rows) in the buffer.", buf["chunks"])
        gauge("fieldgate_buffer_bytes", "Compressed payload bytes in the buffer.",
              buf["payload_bytes"])
        gauge("fieldgate_buffer_file_bytes", "Size of the SQLite file.", buf["file_bytes"])
        oldest = buf.get("oldest_ts_ms")
        gauge("fieldgate_buffer_age_seconds", "Age of the oldest buffered sample.",
              (now - oldest) / 1000 if oldest else 0.0)
        counter("fieldgate_samples_dropped", "Samples dropped because the buffer was full.",
                buf["dropped_total"])
        gauge("fieldgate_events_pending", "Events in the outbox.", buf["events_pending"])

        up = await self._command("uplink.stats")
        if up is not None:
            gauge("fieldgate_uplink_connected", "1 while the MQTT uplink is connected.",
                  1 if up.get("connected") else 0)
            gauge("fieldgate_uplink_lag_samples", "Samples not yet acknowledged by the broker.",
                  buf["samples"])
            gauge("fieldgate_uplink_lag_seconds", "Age of the oldest unacknowledged sample.",
                  (now - oldest) / 1000 if oldest else 0.0)
            for key, doc in (("telemetry_messages", "Telemetry messages acknowledged."),
                             ("samples", "Samples published."), ("events", "Events published."),
                             ("connects", "Successful broker connections."),
                             ("disconnects", "Lost broker connections.")):
                counter(f"fieldgate_uplink_{key}", doc, up.get(key))

        status = GaugeMetricFamily("fieldgate_device_status",
                                   "1 for the device's current status.", labels=["device",
                                                                                 "status"])
        current = h.status()
        for dev in h.site.devices:
            now_st = current.get(dev.id, ("unknown",))[0]
            for st in STATUSES:
                status.add_metric([dev.id, st], 1 if now_st == st else 0)
        out.append(status)

        rules = await self._command("rules.stats")
        if rules is not None:
            counter("fieldgate_rule_evaluations", "Rule evaluations of samples.",
                    rules.get("evaluated"))
            gauge("fieldgate_alarms_open", "Open alarms.", rules.get("open_alarms"))

        plugins = await self._command("plugins.stats")
        if plugins is not None:
            self._hook_metrics(out, plugins.get("hooks") or {})
            counter("fieldgate_event_loop_stalls", "Times the event loop did not run for longer "
                    "than plugins.loop_stall_warn (the log names the task and plugin hook).",
                    (plugins.get("loop") or {}).get("stalls"))
            stalls = CounterMetricFamily("fieldgate_plugin_loop_stalls",
                                         "Event-loop stalls while a plugin's hook ran.",
                                         labels=["plugin"])
            for name, row in (plugins.get("plugins") or {}).items():
                stalls.add_metric([name], row.get("loop_stalls", 0))
            out.append(stalls)

        ocpp = await self._command("ocpp.sessions")
        if ocpp is not None:
            chargers = ocpp.get("chargers", [])
            gauge("fieldgate_ocpp_connections", "Chargers connected.",
                  sum(1 for c in chargers if c["connected"]))
            gauge("fieldgate_ocpp_sessions", "Open charging sessions.",
                  sum(len(c["sessions"]) for c in chargers))

        gauge("fieldgate_event_loop_lag_seconds", "Last measured event-loop wake-up delay.",
              self.lag.last)
        gauge("fieldgate_event_loop_lag_max_seconds", "Largest event-loop delay seen.",
              self.lag.max)
        gauge("fieldgate_live_streams", "Connected live-stream (SSE) clients.",
              len(self.latest.subscribers))
        try:
            free = shutil.disk_usage(h.state_dir).free
        except OSError:
            free = None
        gauge("fieldgate_state_dir_free_bytes", "Free disk space in the state directory.", free)
        return out

    @staticmethod
    def _hook_metrics(out: list[Metric], hooks: dict[str, dict[str, dict[str, Any]]]) -> None:
        fams = {key: CounterMetricFamily(f"fieldgate_hook_{key}", f"Plugin hook {key}.",
                                         labels=["plugin", "hook"])
                for key in ("calls", "errors", "timeouts")}
        for plugin, per_hook in hooks.items():
            for hook, row in per_hook.items():
                for key, fam in fams.items():
                    fam.add_metric([plugin, hook], row.get(key, 0))
        out.extend(fams.values())

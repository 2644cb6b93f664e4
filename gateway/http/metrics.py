"""``/metrics``: the gateway's figures in the Prometheus text format (prometheus-client).

Nothing here counts on the data path: a scrape runs the ``health.stats`` command
(:mod:`gateway.health`, the same document the MQTT ``stats`` message carries) and turns it
into metric families; the HTTP server adds only its own count of live streams.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from gateway.health import COMMAND, STATUSES
from gateway.http.host import Host
from gateway.http.live import LatestValues


class _Snapshot(Collector):
    def __init__(self) -> None:
        self.families: list[Metric] = []

    def collect(self) -> Iterable[Metric]:
        return list(self.families)


class Metrics:
    def __init__(self, host: Host, latest: LatestValues) -> None:
        self.host, self.latest = host, latest
        self.registry = CollectorRegistry(auto_describe=False)
        self._snapshot = _Snapshot()
        self.registry.register(self._snapshot)
        self._lock = asyncio.Lock()

    async def render(self) -> bytes:
        async with self._lock:
            figures: dict[str, Any] | None = None
            if self.host.commands.get(COMMAND) is not None:
                reply = await self.host.commands.execute(COMMAND, {})
                figures = reply.get("result") if reply.get("ok") else None
            self._snapshot.families = families(figures or {}, len(self.latest.subscribers))
            return generate_latest(self.registry)


def families(f: dict[str, Any], live_streams: int) -> list[Metric]:
    """The metric families of a ``health.stats`` document ``f`` (parts that are None or
    missing are left out)."""
    out: list[Metric] = []

    def gauge(name: str, doc: str, value: float | None) -> None:
        if value is not None:
            out.append(GaugeMetricFamily(name, doc, value=value))

    def counter(name: str, doc: str, value: float | None) -> None:
        if value is not None:
            out.append(CounterMetricFamily(name, doc, value=value))

    gauge("fieldgate_up", "1 while the gateway answers.", 1)
    gauge("fieldgate_uptime_seconds", "Seconds since the daemon started.", f.get("uptime_s"))
    counter("fieldgate_samples_ingested", "Samples committed by the pipeline since this "
            "configuration was loaded.", f.get("samples_ingested"))
    buf = f.get("buffer") or {}
    gauge("fieldgate_buffer_samples", "Samples in the buffer waiting for the uplink.",
          buf.get("samples"))
    gauge("fieldgate_buffer_rows", "Telemetry chunks (rows) in the buffer.", buf.get("rows"))
    gauge("fieldgate_buffer_bytes", "Compressed payload bytes in the buffer.", buf.get("bytes"))
    gauge("fieldgate_buffer_file_bytes", "Size of the SQLite file.", buf.get("file_bytes"))
    gauge("fieldgate_buffer_age_seconds", "Age of the oldest buffered sample.", buf.get("age_s"))
    counter("fieldgate_samples_dropped", "Samples dropped because the buffer was full.",
            buf.get("dropped"))
    gauge("fieldgate_events_pending", "Events in the outbox.", buf.get("events_pending"))

    up = f.get("uplink")
    if up is not None:
        gauge("fieldgate_uplink_connected", "1 while the MQTT uplink is connected.",
              1 if up["connected"] else 0)
        gauge("fieldgate_uplink_lag_samples", "Samples not yet acknowledged by the broker.",
              up["lag_samples"])
        gauge("fieldgate_uplink_lag_seconds", "Age of the oldest unacknowledged sample.",
              up["lag_s"])
        for key, doc in (("telemetry_messages", "Telemetry messages acknowledged."),
                         ("samples", "Samples published."), ("events", "Events published."),
                         ("connects", "Successful broker connections."),
                         ("disconnects", "Lost broker connections.")):
            counter(f"fieldgate_uplink_{key}", doc, up.get(key))

    if "devices" in f:
        status = GaugeMetricFamily("fieldgate_device_status",
                                   "1 for the device's current status.",
                                   labels=["device", "status"])
        for device, row in f["devices"].items():
            for st in STATUSES:
                status.add_metric([device, st], 1 if row["status"] == st else 0)
        out.append(status)
    out.extend(poll_families(f.get("poll") or {}, f.get("poll_buckets_s") or []))

    rules = f.get("rules")
    if rules is not None:
        counter("fieldgate_rule_evaluations", "Rule evaluations of samples.",
                rules["evaluations"])
        gauge("fieldgate_alarms_open", "Open alarms.", rules["alarms_open"])

    hooks = f.get("hooks")
    loop = f.get("event_loop") or {}
    if hooks is not None:
        fams = {key: CounterMetricFamily(f"fieldgate_hook_{key}", f"Plugin hook {key}.",
                                         labels=["plugin", "hook"])
                for key in ("calls", "errors", "timeouts")}
        for plugin, per_hook in hooks.items():
            for hook, row in per_hook.items():
                for key, fam in fams.items():
                    fam.add_metric([plugin, hook], row[key])
        out.extend(fams.values())
        counter("fieldgate_event_loop_stalls", "Times the event loop did not run for longer "
                "than plugins.loop_stall_warn (the log names the task and plugin hook).",
                loop.get("stalls"))
        stalls = CounterMetricFamily("fieldgate_plugin_loop_stalls",
                                     "Event-loop stalls while a plugin's hook ran.",
                                     labels=["plugin"])
        for name, n in (loop.get("plugin_stalls") or {}).items():
            stalls.add_metric([name], n)
        out.append(stalls)

    ocpp = f.get("ocpp")
    if ocpp is not None:
        gauge("fieldgate_ocpp_connections", "Chargers connected.", ocpp["connections"])
        gauge("fieldgate_ocpp_sessions", "Open charging sessions.", ocpp["sessions"])

    gauge("fieldgate_event_loop_lag_seconds", "Last measured event-loop wake-up delay.",
          loop.get("lag_s"))
    gauge("fieldgate_event_loop_lag_max_seconds", "Largest event-loop delay seen.",
          loop.get("lag_max_s"))
    gauge("fieldgate_live_streams", "Connected live-stream (SSE) clients.", live_streams)
    gauge("fieldgate_state_dir_free_bytes", "Free disk space in the state directory.",
          (f.get("disk") or {}).get("state_dir_free_bytes"))
    proc = f.get("process") or {}
    counter("process_cpu_seconds", "Total user and system CPU time spent in seconds.",
            proc.get("cpu_seconds"))
    gauge("process_resident_memory_bytes", "Resident memory size in bytes.",
          proc.get("rss_bytes"))
    gauge("process_open_fds", "Number of open file descriptors.", proc.get("open_fds"))
    return out


def poll_families(poll: dict[str, dict[str, Any]], bounds: list[float]) -> list[Metric]:
    """Per device (or bus): requests, errors by kind and the latency histogram."""
    requests = CounterMetricFamily("fieldgate_poll_requests",
                                   "Requests a driver sent to the device (answered or not).",
                                   labels=["device"])
    errors = CounterMetricFamily("fieldgate_poll_errors",
                                 "Failed requests, by kind (timeout, connection, exception, "
                                 "bad_reply, other).", labels=["device", "kind"])
    latency = HistogramMetricFamily("fieldgate_poll_latency_seconds",
                                    "Time from request to answer (failed requests that got "
                                    "no answer are not observed).", labels=["device"])
    les = [*map(floatToGoString, bounds), "+Inf"]
    for name, row in poll.items():
        requests.add_metric([name], row["requests"])
        for kind, n in row["errors"].items():
            errors.add_metric([name, kind], n)
        hist = row["latency_histogram"]
        latency.add_metric([name], list(zip(les, hist["counts"], strict=True)), hist["sum_s"])
    return [requests, errors, latency]

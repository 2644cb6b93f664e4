"""What every benchmark shares: one counting driver context, the machine and the conditions
it ran under, and one result writer (one layout for every ``bench/results/*.json``).

Layout of a result file::

    {"benchmark": "site", "what": "...one sentence: what ran...",
     "machine": {"cores": 2, "cpu": "...", "memory_gb": 24.0, "python": "3.11.7", ...},
     "conditions": {"load_before": 7.8, "load_after": 8.1, "cores": 2, "busy": true,
                    "note": "...computed from the figures above..."},
     "params": {...what was asked for...},
     "summary": {...the figures, medians of the runs...},
     "runs": [{...one dict per run...}]}

The note is computed from the load average sampled before and after the runs, never written
by hand: a figure taken while other processes competed for the CPU says so, and one taken on
a quiet machine says that.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import statistics
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
#: smoke runs (and tests) write here instead, so they never overwrite measured figures
RESULTS_ENV = "FIELDGATE_BENCH_RESULTS"

#: a 1-minute load average above this share of the cores counts as a busy machine
BUSY_LOAD_PER_CORE = 0.5


def machine() -> dict[str, Any]:
    """The machine the figures were taken on."""
    cpu = platform.processor() or platform.machine()
    memory_gb = 0.0
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
                break
    except OSError:
        pass
    return {"cores": os.cpu_count(), "cpu": cpu, "memory_gb": memory_gb,
            "python": platform.python_version(), "platform": platform.platform()}


def load_average() -> float:
    """The 1-minute load average (0.0 where the OS has none)."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return 0.0


class Conditions:
    """Samples the load average around the runs: ``with Conditions() as cond: ...``."""

    def __init__(self) -> None:
        self.cores = os.cpu_count() or 1
        self.load_before = self.load_after = 0.0

    def __enter__(self) -> Conditions:
        self.load_before = load_average()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.load_after = load_average()

    @property
    def busy(self) -> bool:
        return max(self.load_before, self.load_after) > BUSY_LOAD_PER_CORE * self.cores

    def note(self) -> str:
        loads = (f"1-minute load average {self.load_before:g} before the runs and "
                 f"{self.load_after:g} after, on {self.cores} cores")
        if self.busy:
            return (f"busy machine: {loads}; other processes competed for the CPU, so CPU "
                    "and latency figures are upper bounds and throughput figures lower bounds")
        return f"quiet machine: {loads}"

    def as_dict(self) -> dict[str, Any]:
        return {"load_before": self.load_before, "load_after": self.load_after,
                "cores": self.cores, "busy": self.busy, "note": self.note()}


def median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


def medians(runs: list[dict[str, Any]], keys: Iterable[str]) -> dict[str, float]:
    """The median over the runs of each numeric key."""
    return {key: median(r[key] for r in runs) for key in keys}


def write_result(name: str, *, what: str, params: dict[str, Any], summary: dict[str, Any],
                 runs: list[dict[str, Any]], conditions: Conditions,
                 goal: str | None = None) -> Path:
    """Write ``bench/results/<name>.json`` in the one layout, print the summary, return the
    path."""
    result = {"benchmark": name, "what": what, "goal": goal, "machine": machine(),
              "conditions": conditions.as_dict(), "params": params, "summary": summary,
              "runs": runs}
    out = Path(os.environ.get(RESULTS_ENV) or RESULTS)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.json"
    path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    _print(summary, "  ")
    print(f"  conditions: {conditions.note()}")
    print(f"  written to {path}")
    return path


def _print(figures: dict[str, Any], indent: str) -> None:
    for key, value in figures.items():
        if isinstance(value, dict):
            print(f"{indent}{key}:")
            _print(value, indent + "  ")
        else:
            shown = f"{value:,.4g}" if isinstance(value, float) else str(value)
            print(f"{indent}{key:44s} {shown}")


def read_result(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((RESULTS / f"{name}.json").read_text(encoding="utf-8"))
    return data


class CountingContext:
    """A DriverContext that counts what a bare driver emits and keeps nothing, so a driver
    bench measures the driver, not a growing list. Not the gateway: no pipeline, store or
    uplink (bench/site.py measures the whole gateway)."""

    def __init__(self) -> None:
        from gateway.clock import SystemClock
        from gateway.model import PollBatch

        self._columns = PollBatch
        self.logger = logging.getLogger("bench")
        self.clock = SystemClock()
        self.state_dir = Path(".")
        self.samples = 0
        self.batches = 0
        self.good = 0
        self.bad = 0
        self.events = 0
        self.offline: set[str] = set()
        self._kv: dict[str, Any] = {}

    async def emit(self, batch: Any) -> None:
        self.batches += 1
        self.samples += len(batch)
        if type(batch) is self._columns:  # every value good: counted from its columns, no Sample
            self.good += len(batch)
            return
        for sample in batch:
            if sample.value is None:
                self.bad += 1
            elif getattr(sample, "quality", "good") == "good":
                self.good += 1

    def set_status(self, device: str, status: Any, reason: str = "") -> None:
        from gateway.model import DeviceStatus

        (self.offline.add if status is DeviceStatus.OFFLINE else self.offline.discard)(device)

    async def emit_event(self, event: Any) -> None:
        self.events += 1

    def kv(self, namespace: str) -> Any:
        from drivers.testing import MemoryKV

        return self._kv.setdefault(namespace, MemoryKV())

    def poll_stats(self, name: str) -> Any:
        if not hasattr(self, "_stats"):
            from gateway.pollstats import PollStatsBook

            self._stats = PollStatsBook(self.clock.now_ms)
        return self._stats.of(name)

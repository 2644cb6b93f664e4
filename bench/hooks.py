"""Pipeline throughput with plugins implementing on_energy_data_received, and the split
between a slow plugin and a fast one.

A producer task pushes batches of samples into the pipeline of a real in-process gateway
as fast as the pipeline takes them (backpressure), for a few seconds; we count committed
samples per second. Three modes:

- ``none``: no plugin implements the hook (no observer, no cost);
- ``fast``: one cheap plugin (a running maximum per point);
- ``slow+fast``: the same cheap plugin next to a slow one that awaits 1 ms per sample (an
  I/O call per sample: about 1,000 samples/s, far below ingest).

Each plugin has its own queue and task: what a plugin cannot keep up with is dropped for
that plugin only (counted under its name), never waited for. So the fast plugin's figures
and ingest should be the same with or without the slow one next to it. Prints the medians
and writes bench/results/hooks.json.

    python bench/hooks.py [--seconds 3] [--runs 3] [--batch 1000] [--queue 50000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from gateway.config.loader import load_config  # noqa: E402
from gateway.model import Sample  # noqa: E402
from gateway.runtime import App  # noqa: E402
from hooks.component import PluginsComponent  # noqa: E402
from hooks.spec import hookimpl  # noqa: E402


class Counter:
    """A realistic cheap per-sample plugin: keeps a running maximum per point."""

    def __init__(self) -> None:
        self.n = 0
        self.peak: dict[str, float] = {}

    @hookimpl
    async def on_energy_data_received(self, device: Any, data_point: Any) -> None:
        self.n += 1
        v = data_point.value
        if v > self.peak.get(data_point.point, -1e300):
            self.peak[data_point.point] = v


class SlowIO:
    """A plugin that does an I/O call per sample: 1 ms each, awaited (not blocking)."""

    def __init__(self) -> None:
        self.n = 0

    @hookimpl
    async def on_energy_data_received(self, data_point: Any) -> None:
        self.n += 1
        await asyncio.sleep(0.001)


MODES = ("none", "fast", "slow+fast")


async def one_run(mode: str, seconds: float, batch_size: int, queue: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "site.yaml"
        path.write_text(yaml.safe_dump({
            "gateway": {"id": "bench", "state_dir": tmp},
            "plugins": {"entry_points": False, "energy_queue_samples": queue},
            "pipeline": {"queue_batches": 64}}))
        app = App(load_config(path), path)
        runner = asyncio.create_task(app.run())
        await app.ready.wait()
        comp = next(c for c in app.components if isinstance(c, PluginsComponent))
        plugin, slow = Counter(), SlowIO()
        if mode == "slow+fast":
            comp.add_plugin(slow, "bench-slow")
        if mode != "none":
            comp.add_plugin(plugin, "bench-fast")
        points = [f"p{i}" for i in range(batch_size)]
        stop = time.monotonic() + seconds
        start_samples = app.pipeline.stats.samples
        t0 = time.monotonic()
        ts = 1_700_000_000_000
        while time.monotonic() < stop:
            ts += 1
            await app.pipeline.put([Sample("meter", p, ts, float(i)) for i, p in
                                    enumerate(points)])
        committed = app.pipeline.stats.samples - start_samples
        calls, slow_calls = plugin.n, slow.n
        elapsed = time.monotonic() - t0
        per = comp.energy.stats()["plugins"] if comp.energy.feeds else {}
        app.request_stop()
        await runner
        return {"samples_per_s": committed / elapsed,
                "fast_calls_per_s": calls / elapsed,
                "fast_dropped_samples": per.get("bench-fast", {}).get("dropped_samples", 0),
                "slow_calls_per_s": slow_calls / elapsed,
                "slow_dropped_samples": per.get("bench-slow", {}).get("dropped_samples", 0)}


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--queue", type=int, default=50_000,
                    help="plugins.energy_queue_samples (per plugin)")
    args = ap.parse_args()
    results: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
    for _ in range(args.runs):
        for mode in MODES:
            results[mode].append(await one_run(mode, args.seconds, args.batch, args.queue))

    def med(mode: str, key: str) -> float:
        return statistics.median(r[key] for r in results[mode])

    none, fast = med("none", "samples_per_s"), med("fast", "samples_per_s")
    both = med("slow+fast", "samples_per_s")
    summary = {
        "samples_per_s_without_plugin": round(none),
        "samples_per_s_with_fast_plugin": round(fast),
        "samples_per_s_with_slow_and_fast": round(both),
        "ratio_fast_over_none": round(fast / none, 3),
        "ratio_slow_and_fast_over_fast": round(both / fast, 3),
        "fast_calls_per_s_alone": round(med("fast", "fast_calls_per_s")),
        "fast_calls_per_s_next_to_slow": round(med("slow+fast", "fast_calls_per_s")),
        "fast_dropped_samples_alone": med("fast", "fast_dropped_samples"),
        "fast_dropped_samples_next_to_slow": med("slow+fast", "fast_dropped_samples"),
        "slow_calls_per_s": round(med("slow+fast", "slow_calls_per_s")),
        "slow_dropped_samples": med("slow+fast", "slow_dropped_samples"),
        "runs": args.runs, "seconds": args.seconds, "batch": args.batch,
        "energy_queue_samples": args.queue, "raw": results,
    }
    for key, value in summary.items():
        if key != "raw":
            print(f"{key:38s} {value}")
    out = ROOT / "bench" / "results" / "hooks.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    asyncio.run(main())

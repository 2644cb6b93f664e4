"""Pipeline throughput with a plugin implementing on_energy_data_received vs with none.

A producer task pushes batches of samples into the pipeline of a real in-process gateway
as fast as the pipeline takes them (backpressure), for a few seconds; we count committed
samples per second. With the plugin, the energy dispatcher shares the event loop and calls
the plugin once per sample; what it cannot keep up with is dropped (counted), never waited
for. Prints the medians and the ratio, and writes bench/results/hooks.json.

    python bench/hooks.py [--seconds 3] [--runs 3] [--batch 1000]
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


async def one_run(with_plugin: bool, seconds: float, batch_size: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "site.yaml"
        path.write_text(yaml.safe_dump({
            "gateway": {"id": "bench", "state_dir": tmp},
            "plugins": {"entry_points": False, "energy_queue_samples": 200_000},
            "pipeline": {"queue_batches": 64}}))
        app = App(load_config(path), path)
        runner = asyncio.create_task(app.run())
        await app.ready.wait()
        comp = next(c for c in app.components if isinstance(c, PluginsComponent))
        plugin = Counter()
        if with_plugin:
            comp.add_plugin(plugin, "bench-counter")
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
        calls = plugin.n
        elapsed = time.monotonic() - t0
        energy = comp.energy.stats() if comp.energy else {}
        app.request_stop()
        await runner
        return {"samples_per_s": committed / elapsed,
                "plugin_calls_per_s": calls / elapsed,
                "dropped_samples": energy.get("dropped_samples", 0)}


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--batch", type=int, default=1000)
    args = ap.parse_args()
    results: dict[str, list[dict[str, float]]] = {"none": [], "plugin": []}
    for _ in range(args.runs):
        for mode in ("none", "plugin"):
            results[mode].append(await one_run(mode == "plugin", args.seconds, args.batch))

    def med(mode: str, key: str) -> float:
        return statistics.median(r[key] for r in results[mode])

    none, plug = med("none", "samples_per_s"), med("plugin", "samples_per_s")
    summary = {
        "samples_per_s_without_plugin": round(none),
        "samples_per_s_with_plugin": round(plug),
        "ratio_with_over_without": round(plug / none, 3),
        "plugin_calls_per_s": round(med("plugin", "plugin_calls_per_s")),
        "plugin_dropped_samples_median": med("plugin", "dropped_samples"),
        "runs": args.runs, "seconds": args.seconds, "batch": args.batch, "raw": results,
    }
    for key, value in summary.items():
        if key != "raw":
            print(f"{key:34s} {value}")
    out = ROOT / "bench" / "results" / "hooks.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    asyncio.run(main())

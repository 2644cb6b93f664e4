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
and ingest should be the same with or without the slow one next to it. Reports each run's
ratios (the three modes run back to back), the samples dropped for each plugin (summed over
the runs) and those still queued when the window closed; writes bench/results/hooks.json.

    python bench/hooks.py [--seconds 3] [--runs 3] [--batch 1000] [--queue 50000]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from bench.common import Conditions, medians, write_result  # noqa: E402
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
        fast, slow_st = per.get("bench-fast", {}), per.get("bench-slow", {})
        # every committed sample is either handed to the plugin, dropped for it, or still in
        # its queue when the window closes: all three are reported
        return {"samples_per_s": committed / elapsed, "committed_samples": committed,
                "fast_calls_per_s": calls / elapsed,
                "fast_dropped_samples": fast.get("dropped_samples", 0),
                "fast_queued_at_end": fast.get("queued_samples", 0),
                "slow_calls_per_s": slow_calls / elapsed,
                "slow_dropped_samples": slow_st.get("dropped_samples", 0),
                "slow_queued_at_end": slow_st.get("queued_samples", 0)}


def _ratio(a: dict[str, float], b: dict[str, float]) -> float:
    return a["samples_per_s"] / b["samples_per_s"] if b["samples_per_s"] else float("nan")


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--queue", type=int, default=50_000,
                    help="plugins.energy_queue_samples (per plugin)")
    args = ap.parse_args()
    runs: list[dict[str, Any]] = []
    with Conditions() as conditions:
        for i in range(args.runs):  # the three modes back to back, so a run's ratios compare
            by_mode = {mode: await one_run(mode, args.seconds, args.batch, args.queue)
                       for mode in MODES}  # like with like
            none, fast, both = (by_mode[m] for m in MODES)
            run = {"run": i + 1, **{f"{m}.{k}": v for m in MODES for k, v in by_mode[m].items()},
                   "ratio_fast_over_none": _ratio(fast, none),
                   "ratio_slow_and_fast_over_fast": _ratio(both, fast)}
            runs.append(run)
            print(f"run {i + 1}: none {none['samples_per_s']:,.0f}/s, fast "
                  f"{fast['samples_per_s']:,.0f}/s (dropped {fast['fast_dropped_samples']:,}, "
                  f"queued {fast['fast_queued_at_end']:,}), slow+fast "
                  f"{both['samples_per_s']:,.0f}/s (fast dropped "
                  f"{both['fast_dropped_samples']:,}, slow dropped "
                  f"{both['slow_dropped_samples']:,})", flush=True)
    keys = [k for k, v in runs[0].items() if k != "run" and isinstance(v, (int, float))]
    summary: dict[str, Any] = medians(runs, keys)
    # drops are summed, not medians: one run that dropped is not hidden by two that did not
    for key in keys:
        if "dropped" in key:
            summary[key.replace("dropped", "dropped_total")] = sum(r[key] for r in runs)
    summary["ratio_fast_over_none_per_run"] = [round(r["ratio_fast_over_none"], 3) for r in runs]
    summary["ratio_slow_and_fast_over_fast_per_run"] = [
        round(r["ratio_slow_and_fast_over_fast"], 3) for r in runs]
    write_result(
        "hooks",
        what=("pipeline -> SQLite store in this process fed as fast as it takes batches "
              "(saturation), with no plugin, a cheap plugin, and the cheap one next to a slow "
              "one; no uplink"),
        goal=("the cheap plugin's calls and drops, and ingest, the same with or without the "
              "slow one"),
        params={"runs": args.runs, "seconds": args.seconds, "batch": args.batch,
                "energy_queue_samples": args.queue},
        summary=summary, runs=runs, conditions=conditions)


if __name__ == "__main__":
    asyncio.run(main())

"""A slow ``on_energy_data_received`` plugin next to ingest and next to a fast plugin.

A real in-process gateway (pipeline -> SQLite store, no uplink); a producer task puts batches
of samples into its pipeline. Four windows per run, back to back:

- ``none`` and ``slow``, at saturation (the producer puts batches as fast as the pipeline
  takes them): committed samples/s with no plugin, and with one slow plugin (it awaits 1 ms
  per sample, an I/O call each: about 1,000 samples/s at best). Each plugin has its own
  energy queue and task, so the slow plugin should not change ingest.
- ``fast`` and ``slow+fast``, at an offered rate (``--rate``, default 3,000 samples/s, the
  rate of the issue's report): a cheap plugin (a running maximum per point) alone, then next
  to the slow one. The fast plugin should drop nothing in both; the slow one cannot keep
  up, and what it drops is counted under its own name.

Every committed sample is, for each plugin, handed to it, dropped for it, or still in its
queue when the window closes: all three are reported. Prints each run, then the medians
(drops are summed over the runs, so one run that dropped is not hidden by two that did
not), and writes bench/results/hooks.json.

    python bench/hooks.py --runs 3            # about a minute and a half on 2 cores
    python bench/hooks.py --runs 1 --seconds 1  # a smoke run
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

FAST, SLOW = "bench-fast", "bench-slow"


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


#: mode -> (plugins, offered rate or None for saturation)
MODES: dict[str, tuple[tuple[str, ...], bool]] = {
    "none": ((), False), "slow": ((SLOW,), False),
    "fast": ((FAST,), True), "slow+fast": ((SLOW, FAST), True),
}


async def one_window(mode: str, seconds: float, batch_size: int, queue: int,
                     rate: float) -> dict[str, float]:
    plugins, paced = MODES[mode]
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
        fast, slow = Counter(), SlowIO()
        if SLOW in plugins:
            comp.add_plugin(slow, SLOW)
        if FAST in plugins:
            comp.add_plugin(fast, FAST)
        points = [f"p{i}" for i in range(batch_size)]
        loop = asyncio.get_running_loop()
        interval = batch_size / rate
        start_samples = app.pipeline.stats.samples
        t0 = loop.time()
        stop = t0 + seconds
        ts = 1_700_000_000_000
        sent = 0
        while loop.time() < stop:
            ts += 1
            await app.pipeline.put([Sample("meter", p, ts, float(i)) for i, p in
                                    enumerate(points)])
            sent += 1
            if paced:  # the next batch is due at t0 + sent * interval
                await asyncio.sleep(max(0.0, t0 + sent * interval - loop.time()))
        await wait_committed(app, start_samples + sent * batch_size)
        elapsed = loop.time() - t0
        committed = app.pipeline.stats.samples - start_samples
        per = comp.energy.stats()["plugins"] if comp.energy.feeds else {}
        app.request_stop()
        await runner
    f, s = per.get(FAST, {}), per.get(SLOW, {})
    return {"samples_per_s": committed / elapsed, "committed_samples": committed,
            "fast_calls": fast.n, "fast_dropped_samples": f.get("dropped_samples", 0),
            "fast_queued_at_end": f.get("queued_samples", 0),
            "slow_calls": slow.n, "slow_dropped_samples": s.get("dropped_samples", 0),
            "slow_queued_at_end": s.get("queued_samples", 0)}


async def wait_committed(app: App, target: int, limit_s: float = 5.0) -> None:
    """Let the pipeline commit what the producer put (it was not waited for)."""
    deadline = time.monotonic() + limit_s
    while app.pipeline.stats.samples < target and time.monotonic() < deadline:
        await asyncio.sleep(0.005)


def _line(i: int, w: dict[str, dict[str, float]]) -> str:
    none, slow, fast, both = (w[m] for m in MODES)
    return (f"run {i}: ingest at saturation {none['samples_per_s']:,.0f}/s with no plugin, "
            f"{slow['samples_per_s']:,.0f}/s with the slow plugin "
            f"(ratio {slow['samples_per_s'] / none['samples_per_s']:.3f}); at "
            f"{fast['samples_per_s']:,.0f}/s offered, the fast plugin dropped "
            f"{fast['fast_dropped_samples']:,} alone and {both['fast_dropped_samples']:,} next "
            f"to the slow one, which dropped {both['slow_dropped_samples']:,} (its own count)")


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3, help="runs of the four windows (median)")
    ap.add_argument("--seconds", type=float, default=4.0, help="length of each window")
    ap.add_argument("--batch", type=int, default=100, help="samples per pipeline batch")
    ap.add_argument("--rate", type=float, default=3000.0,
                    help="offered samples/s in the fast and slow+fast windows")
    ap.add_argument("--queue", type=int, default=2000,
                    help="plugins.energy_queue_samples (per plugin; the default config has "
                         "200,000, which the slow plugin would take minutes to fill)")
    args = ap.parse_args()
    runs: list[dict[str, Any]] = []
    with Conditions() as conditions:
        for i in range(1, args.runs + 1):
            w = {m: await one_window(m, args.seconds, args.batch, args.queue, args.rate)
                 for m in MODES}
            runs.append({"run": i, **{f"{m}.{k}": v for m in MODES for k, v in w[m].items()},
                         "ratio_slow_over_none": w["slow"]["samples_per_s"]
                         / w["none"]["samples_per_s"]})
            print(_line(i, w), flush=True)
    keys = [k for k, v in runs[0].items() if k != "run" and isinstance(v, (int, float))]
    summary: dict[str, Any] = medians(runs, keys)
    for key in keys:
        if "dropped" in key:
            summary[key.replace("dropped", "dropped_total")] = sum(r[key] for r in runs)
    summary["ratio_slow_over_none_per_run"] = [round(r["ratio_slow_over_none"], 3)
                                               for r in runs]
    write_result(
        "hooks",
        what=("in-process gateway (pipeline -> SQLite store, no uplink): ingest at saturation "
              "with no plugin and with a slow on_energy_data_received plugin (1 ms awaited "
              "per sample); then a cheap plugin alone and next to the slow one at an offered "
              "rate"),
        goal=("ingest the same with or without the slow plugin; the cheap plugin drops "
              "nothing next to it; the slow plugin's drops counted under its name"),
        params={"runs": args.runs, "seconds": args.seconds, "batch": args.batch,
                "rate": args.rate, "energy_queue_samples": args.queue},
        summary=summary, runs=runs, conditions=conditions)


if __name__ == "__main__":
    asyncio.run(main())

"""Ingest benchmark: samples/s from the simulated driver into the SQLite buffer.

Runs the real App (drivers -> pipeline -> store) in-process with no uplink, for a few
seconds per run, and reports the median of several runs: samples/s, bytes on disk per
sample, and the process's peak RSS. Goal (issue 2): >= 300,000 samples/s on 2 cores.

    python bench/ingest.py [--runs 5] [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Conditions, medians, write_result
from gateway.config.loader import load_config
from gateway.runtime import App
from tests.support.app import write_config


async def one_run(seconds: float, devices: int, points: int,
                  history: bool = True) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = {
            "store": {"max_bytes": 20_000_000_000},
            "logging": {"level": "WARNING"},
            "siteops": {"history": {"enabled": history}},
            "devices": [
                {"id": f"bench-{i:02d}", "type": "simulated", "interval": 0.005,
                 "extra_points": points, "seed": i}
                for i in range(devices)
            ],
        }
        path = write_config(Path(tmp), cfg)
        app = App(load_config(path), path)
        task = asyncio.create_task(app.run())
        await app.ready.wait()
        await asyncio.sleep(1.0)  # warm-up
        s0, t0 = app.pipeline.stats.samples, time.perf_counter()
        await asyncio.sleep(seconds)
        s1, t1 = app.pipeline.stats.samples, time.perf_counter()
        app.request_stop()
        await task
        stats = await asyncio.to_thread(_stats, app.store.path)
        rate = (s1 - s0) / (t1 - t0)
        return {
            "samples_per_s": rate,
            "bytes_per_sample": stats[1] / max(1, stats[0]),
            "samples": stats[0],
        }


def _stats(path: Path) -> tuple[int, int]:
    from gateway.store import read_stats

    st = read_stats(path)
    return st.samples, st.file_bytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--devices", type=int, default=4)
    parser.add_argument("--points", type=int, default=2_000)
    parser.add_argument("--history", choices=("on", "off"), default="off",
                        help="the siteops local history (its write cost is the difference)")
    args = parser.parse_args()
    runs = []
    with Conditions() as conditions:
        for i in range(args.runs):
            run = asyncio.run(one_run(args.seconds, args.devices, args.points,
                                      args.history == "on"))
            run["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            runs.append(run)
            print(f"run {i + 1}: {run['samples_per_s']:,.0f} samples/s, "
                  f"{run['bytes_per_sample']:.1f} B/sample, peak RSS {run['rss_mb']:.0f} MB",
                  flush=True)
    write_result(
        "ingest" if args.history == "off" else "ingest_history",
        what=("gateway in this process without uplink (simulated driver -> pipeline -> "
              "SQLite buffer); the drivers produce as fast as ingest takes them (saturation)"),
        goal=">= 300,000 samples/s",
        params={"runs": args.runs, "seconds": args.seconds, "devices": args.devices,
                "points": args.points, "history": args.history},
        summary=medians(runs, runs[0]), runs=runs, conditions=conditions)

if __name__ == "__main__":
    main()

"""Where the memory per device goes: tracemalloc snapshots of the whole gateway per device count.

Runs the real App in this process (Modbus polling, store, rules, uplink to a real mosquitto;
the simulators in another process, as in bench/site.py) for each device count, lets it poll
for ``--seconds``, then takes a tracemalloc snapshot and reads the RSS. Prints the RSS per
added device and the allocation sites (file:line) that grow most between the smallest and the
largest count, divided by the added devices: what each device costs, and where.

    python bench/memory.py [--devices 10,50] [--registers 125] [--seconds 10] [--top 15]
                           [--runs 1]

Writes bench/results/memory.json. tracemalloc itself slows the gateway and adds to RSS;
the RSS figures of bench/site.py (no tracemalloc) are the ones to quote.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import tracemalloc
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import Conditions, median, write_result  # noqa: E402
from bench.site import in_process  # noqa: E402

MEGA = 1024 * 1024


async def snapshot_at(devices: int, registers: int, seconds: float
                      ) -> tuple[tracemalloc.Snapshot, float, int, float]:
    """The snapshot, the RSS, the samples committed, and the RSS after ``malloc_trim``
    (what glibc held free: how much a trim would give back; the RSS when not glibc)."""
    import psutil

    from gateway import heap

    async with in_process(devices, registers) as app:
        await asyncio.sleep(seconds)
        gc.collect()
        snap = tracemalloc.take_snapshot()
        rss = psutil.Process().memory_info().rss / MEGA
        samples = app.pipeline.stats.samples
        heap.trim()
        trimmed = psutil.Process().memory_info().rss / MEGA
    return snap, rss, samples, trimmed


def _traced(snap: tracemalloc.Snapshot) -> float:
    return sum(s.size for s in snap.statistics("filename")) / MEGA


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", default="10,50")
    ap.add_argument("--registers", type=int, default=125)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--runs", type=int, default=1,
                    help="runs per device count; RSS and traced memory are their medians")
    ap.add_argument("--frames", type=int, default=1,
                    help="traceback depth kept by tracemalloc (group by the innermost frame)")
    args = ap.parse_args()
    counts = [int(n) for n in args.devices.split(",")]
    tracemalloc.start(args.frames)
    snaps: dict[int, tuple[tracemalloc.Snapshot, float, int]] = {}
    trimmed: dict[int, float] = {}
    traced_by_count: dict[int, float] = {}
    with Conditions() as conditions:
        for n in counts:
            runs = [asyncio.run(snapshot_at(n, args.registers, args.seconds))
                    for _ in range(args.runs)]
            rss = median(r[1] for r in runs)
            traced_mb = median(_traced(r[0]) for r in runs)
            snaps[n] = (runs[-1][0], rss, runs[-1][2])
            traced_by_count[n] = traced_mb
            trimmed[n] = median(r[3] for r in runs)
            print(f"{n} devices: RSS {rss:.1f} MB ({trimmed[n]:.1f} after malloc_trim), "
                  f"traced {traced_mb:.1f} MB (median of {args.runs}), {runs[-1][2]:,} "
                  "samples", flush=True)
    lo, hi = min(counts), max(counts)
    added = hi - lo
    diff = snaps[hi][0].compare_to(snaps[lo][0], "lineno")
    top: list[dict[str, Any]] = []
    print(f"\ngrowth from {lo} to {hi} devices, per added device:")
    for stat in diff[:args.top]:
        frame = stat.traceback[0]
        where = f"{Path(frame.filename).name}:{frame.lineno}"
        per_device_kb = stat.size_diff / added / 1024
        top.append({"where": f"{frame.filename}:{frame.lineno}", "kb_per_device": per_device_kb,
                    "blocks_per_device": stat.count_diff / added})
        print(f"  {per_device_kb:8.1f} KB  {stat.count_diff / added:8.0f} blocks  {where}")
    traced = traced_by_count
    write_result(
        "memory",
        what=("whole gateway in this process under tracemalloc (Modbus polling, store, rules, "
              "uplink to mosquitto), simulators in another process"),
        goal="<= 100 KB per added device",
        params={"devices": counts, "registers": args.registers, "seconds": args.seconds,
                "runs": args.runs},
        summary={"rss_mb": {str(n): snaps[n][1] for n in counts},
                 "traced_mb": {str(n): traced[n] for n in counts},
                 "rss_after_malloc_trim_mb": {str(n): trimmed[n] for n in counts},
                 "rss_kb_per_added_device": (snaps[hi][1] - snaps[lo][1]) * 1024 / added,
                 "traced_kb_per_added_device": (traced[hi] - traced[lo]) * 1024 / added,
                 "top_growth": top},
        runs=[], conditions=conditions)


if __name__ == "__main__":
    main()

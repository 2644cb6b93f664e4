"""Where the memory per device goes: tracemalloc snapshots of the whole gateway per device count.

Runs the real App in this process (Modbus polling, store, rules, uplink to a real mosquitto;
the simulators in another process, as in bench/site.py) for each device count, lets it poll
for ``--seconds``, then takes a tracemalloc snapshot and reads the RSS. Prints the RSS per
added device and the allocation sites (file:line) that grow most between the smallest and the
largest count, divided by the added devices: what each device costs, and where.

    python bench/memory.py [--devices 10,50] [--registers 125] [--seconds 10] [--top 15]
                           [--runs 1] [--frames 1] [--split]

Writes bench/results/memory.json. tracemalloc itself slows the gateway and adds to RSS;
the RSS figures of bench/site.py (no tracemalloc) are the ones to quote.

``--split`` runs without tracemalloc and splits the RSS per added device instead: Python's
small-object allocator (pymalloc: the bytes its live blocks take, and its arenas, which hold
freed blocks too until a whole arena is empty), glibc's heap (blocks in use: Python objects
over 512 bytes, buffers, C libraries; and free), glibc's own mappings, and the rest
(file-backed pages, stacks). Writes bench/results/memory_split.json.

Both modes also print the live-value cache's own size per device (``live_cache``: what
:class:`gateway.http.live.LatestValues` holds for the API and the dashboard, counted object
by object, without the point-name strings and name tuples it shares with the config and
the drivers).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import gc
import os
import re
import sys
import tracemalloc
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import Conditions, median, write_result  # noqa: E402
from bench.site import in_process  # noqa: E402

MEGA = 1024 * 1024


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


def heap_split() -> dict[str, float]:
    """MB of: pymalloc's live blocks and its arenas, glibc's heap in use and free, glibc's
    mappings, and the RSS and its anonymous part (``/proc/self/smaps_rollup``)."""
    out: dict[str, float] = {}
    with open("/proc/self/smaps_rollup") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("Rss", "Anonymous"):
                out[key.lower() + "_mb"] = int(value.split()[0]) / 1024
    read, write = os.pipe()  # sys._debugmallocstats writes to the C stderr
    saved = os.dup(2)
    os.dup2(write, 2)
    os.close(write)
    try:
        sys._debugmallocstats()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    os.set_blocking(read, False)
    text = b""
    with contextlib.suppress(BlockingIOError):
        while chunk := os.read(read, 1 << 16):
            text += chunk
    os.close(read)
    for label, key in (("# bytes in allocated blocks", "pymalloc_live_mb"),
                       ("Total", "pymalloc_arenas_mb")):
        found = re.search(re.escape(label) + r"\s*=\s*([\d,]+)", text.decode())
        if found:
            out[key] = int(found.group(1).replace(",", "")) / MEGA
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _MallInfo2
        info = libc.mallinfo2()
    except (OSError, AttributeError):  # not glibc (2.33+)
        return out
    out.update(glibc_in_use_mb=info.uordblks / MEGA, glibc_free_mb=info.fordblks / MEGA,
               glibc_mapped_mb=info.hblkhd / MEGA)
    return out


def live_cache_bytes(app: Any) -> int:
    """The bytes the live-value cache holds: its dicts, each device's columns (tuple,
    values list, values, timestamp) and loose samples; not the strings and name tuples it
    shares with the config and the drivers."""
    from gateway.http.component import HttpComponent

    latest = next(c for c in app.components if isinstance(c, HttpComponent)).latest
    seen: set[int] = set()
    total = 0

    def add(obj: Any) -> None:
        nonlocal total
        if id(obj) not in seen and not isinstance(obj, str):
            seen.add(id(obj))
            total += sys.getsizeof(obj)

    for top in (latest.values, latest.generation):
        add(top)
    for count in latest.generation.values():
        add(count)
    for dev in latest.values.values():
        if isinstance(dev, dict):  # the cache before columns: a Sample per point
            add(dev)
            for sample in dev.values():
                add(sample)
                add(sample.ts_ms)
                add(sample.value)
            continue
        for obj in (dev, dev.columns, dev.loose):
            add(obj)
        for key, column in dev.columns.items():
            add(key)
            add(column)
            names, values, ts = column
            seen.add(id(names))  # the driver's
            add(values)
            add(ts)
            for v in values:
                add(v)
        for sample in dev.loose.values():
            add(sample)
            add(sample.ts_ms)
            add(sample.value)
    return total


async def split_at(devices: int, registers: int, seconds: float, samples: int = 4
                   ) -> dict[str, float]:
    """The medians of :func:`heap_split` over ``samples`` readings 2.3 s apart (the commits
    come each second, so the readings fall at different points of the cycle)."""
    async with in_process(devices, registers) as app:
        await asyncio.sleep(seconds)
        readings = []
        for _ in range(samples):
            await asyncio.sleep(2.3)
            readings.append(heap_split())
            readings[-1]["live_cache_kb_per_device"] = live_cache_bytes(app) / 1024 / devices
    return {key: median(r[key] for r in readings) for key in readings[0]}


def split_main(counts: list[int], args: argparse.Namespace) -> None:
    with Conditions() as conditions:
        figures = {}
        for n in counts:
            runs = [asyncio.run(split_at(n, args.registers, args.seconds))
                    for _ in range(args.runs)]
            figures[n] = {key: median(r[key] for r in runs) for key in runs[0]}
            print(f"{n} devices: " + ", ".join(f"{k} {v:.1f}" for k, v in figures[n].items()),
                  flush=True)
    lo, hi = min(counts), max(counts)
    per_device = {key: (figures[hi][key] - figures[lo][key]) * 1024 / (hi - lo)
                  for key in figures[lo] if key in figures[hi] and key.endswith("_mb")}
    known = sum(per_device.get(k, 0.0) for k in ("pymalloc_arenas_mb", "glibc_in_use_mb",
                                                  "glibc_free_mb", "glibc_mapped_mb"))
    per_device["other_anonymous_mb"] = per_device.get("anonymous_mb", 0.0) - known
    print(f"\nper added device ({lo} -> {hi}), KB:")
    for key, kb in per_device.items():
        print(f"  {key.removesuffix('_mb'):22s} {kb:8.1f}")
    print(f"  {'(live cache, own)':22s} {figures[hi]['live_cache_kb_per_device']:8.1f}")
    write_result(
        "memory_split",
        what=("whole gateway in this process without tracemalloc (as bench/memory.py): RSS "
              "per added device split into pymalloc, glibc heap in use / free, glibc mappings"),
        goal="<= 100 KB per added device",
        params={"devices": counts, "registers": args.registers, "seconds": args.seconds,
                "runs": args.runs},
        summary={"mb": {str(n): figures[n] for n in counts},
                 "kb_per_added_device": {k.removesuffix("_mb"): v
                                         for k, v in per_device.items()},
                 "live_cache_kb_per_device": figures[hi]["live_cache_kb_per_device"]},
        runs=[], conditions=conditions)


async def snapshot_at(devices: int, registers: int, seconds: float
                      ) -> tuple[tracemalloc.Snapshot, float, int, float, float]:
    """The snapshot, the RSS, the samples committed, and the RSS after ``malloc_trim``
    (what glibc held free: how much a trim would give back; the RSS when not glibc), and
    the live-value cache's KB per device."""
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
        live = live_cache_bytes(app) / 1024 / devices
    return snap, rss, samples, trimmed, live


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
    ap.add_argument("--split", action="store_true",
                    help="no tracemalloc: split the RSS per added device by allocator")
    args = ap.parse_args()
    counts = [int(n) for n in args.devices.split(",")]
    if args.split:
        split_main(counts, args)
        return
    tracemalloc.start(args.frames)
    snaps: dict[int, tuple[tracemalloc.Snapshot, float, int]] = {}
    trimmed: dict[int, float] = {}
    traced_by_count: dict[int, float] = {}
    live: dict[int, float] = {}
    with Conditions() as conditions:
        for n in counts:
            runs = [asyncio.run(snapshot_at(n, args.registers, args.seconds))
                    for _ in range(args.runs)]
            rss = median(r[1] for r in runs)
            traced_mb = median(_traced(r[0]) for r in runs)
            snaps[n] = (runs[-1][0], rss, runs[-1][2])
            traced_by_count[n] = traced_mb
            trimmed[n] = median(r[3] for r in runs)
            live[n] = median(r[4] for r in runs)
            print(f"{n} devices: RSS {rss:.1f} MB ({trimmed[n]:.1f} after malloc_trim), "
                  f"traced {traced_mb:.1f} MB (median of {args.runs}), {runs[-1][2]:,} "
                  f"samples, live cache {live[n]:.1f} KB per device", flush=True)
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
                 "live_cache_kb_per_device": {str(n): live[n] for n in counts},
                 "top_growth": top},
        runs=[], conditions=conditions)


if __name__ == "__main__":
    main()

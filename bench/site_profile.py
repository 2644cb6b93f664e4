"""Where the whole gateway's CPU goes: cProfile of the real App polling Modbus simulators.

The App runs in this process (Modbus polling, store, rules, uplink to a real mosquitto; the
simulators in another process, as in bench/site.py). After ``--warmup`` seconds, for
``--seconds``, it prints:

- the samples committed per second, and the process's CPU-seconds per 1,000 of them, split
  into the main thread (the event loop: everything but SQLite) and the other threads (the
  aiosqlite worker, the executor);
- the garbage collector: collections per generation and the share of the process's CPU
  spent in them (in any thread);
- the main thread's CPU by area (Modbus driver, pymodbus, store, rules, pipeline, site-ops,
  uplink, HTTP, the asyncio loop): each function's own time goes to its area; time in the
  standard library and in built-ins goes to the areas of its callers, in proportion;
- the functions with the most own time and the most cumulative time.

The App runs on uvloop, as ``fieldgate run`` does from 10 devices on (``--loop asyncio``: the
standard loop, as ``FIELDGATE_LOOP=asyncio`` gives the daemon). Under uvloop the loop's own
work is C that cProfile does not see: compare ``--no-profile`` figures between the loops.

As ``fieldgate run`` does, the heap is settled once the App is up (``gateway.runtime.
settle_heap``: start-up's objects frozen, a larger first GC threshold); ``--no-settle`` leaves
Python's defaults, to see what that changes.

The profile counts CPU time of the main thread (``time.thread_time``), not waiting. cProfile
slows Python code, calls into C most, so read the shares, not the absolute times; for CPU per
datapoint without the profiler, use ``--no-profile`` (or bench/site.py, the daemon as its
own process).

    python bench/site_profile.py [--devices 100] [--registers 125] [--warmup 10]
                                 [--seconds 20] [--top 25] [--no-profile] [--no-settle]
                                 [--loop uvloop|asyncio] [--commit-gather S] [--out FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import os
import pstats
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.site import in_process  # noqa: E402
from gateway.runtime import LOOP_ENV, event_loop_factory, settle_heap  # noqa: E402

#: area -> substrings of a function's file name; the first match wins
AREAS: list[tuple[str, tuple[str, ...]]] = [
    ("modbus driver", ("drivers/modbus/",)),
    ("pymodbus", ("/pymodbus/",)),
    ("store", ("gateway/store/", "/aiosqlite/")),
    ("pipeline", ("gateway/pipeline.py",)),
    ("rules", ("gateway/rules/",)),
    ("site-ops", ("gateway/siteops/",)),
    ("uplink", ("gateway/uplink/", "/aiomqtt/", "/paho/")),
    ("http", ("gateway/http/", "/aiohttp/")),
    ("other gateway", ("gateway/", "drivers/", "hooks/")),
    ("asyncio loop", ("/asyncio/", "selectors.py")),
]

Func = tuple[str, int, str]


class GcClock:
    """Collections per generation, and the time spent in them (main thread)."""

    def __init__(self) -> None:
        self.collections = [0, 0, 0]
        self.seconds = 0.0
        self._t0 = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._t0 = time.thread_time()
        else:
            self.seconds += time.thread_time() - self._t0
            self.collections[info["generation"]] += 1


async def measure(devices: int, registers: int, warmup: float, seconds: float,
                  profiled: bool, settle: bool = True, commit_gather: float | None = None
                  ) -> tuple[cProfile.Profile | None, dict[str, Any]]:
    prof = cProfile.Profile(time.thread_time) if profiled else None
    clock = GcClock()
    async with in_process(devices, registers) as app:
        if settle:  # as `fieldgate run` does once started
            settle_heap()
        if commit_gather is not None:  # as `pipeline.commit_gather` in the site file
            app.pipeline.commit_gather = commit_gather
        await asyncio.sleep(warmup)
        s0, cpu0, main0 = app.pipeline.stats.samples, time.process_time(), time.thread_time()
        c0 = app.pipeline.stats.commits
        gc.callbacks.append(clock)
        if prof is not None:
            prof.enable()
        t0 = time.monotonic()
        await asyncio.sleep(seconds)
        if prof is not None:
            prof.disable()
        gc.callbacks.remove(clock)
        wall = time.monotonic() - t0
        samples = app.pipeline.stats.samples - s0
        commits = app.pipeline.stats.commits - c0
        cpu, main = time.process_time() - cpu0, time.thread_time() - main0
    offered = devices * registers * wall
    return prof, {"samples": samples, "samples_per_s": samples / wall,
                  "commits_per_s": commits / wall,
                  "delivered_share_of_offered": samples / offered, "cpu_s": cpu,
                  "main_thread_cpu_s": main, "other_threads_cpu_s": cpu - main,
                  "gc_collections": clock.collections, "gc_cpu_s": clock.seconds}


def area_of(func: Func) -> str | None:
    name = func[0].replace("\\", "/")
    for area, keys in AREAS:
        if any(k in name for k in keys):
            return area
    return None


def by_area(stats: pstats.Stats) -> dict[str, float]:
    """Own time by area; the standard library's and built-ins' own time goes to the areas of
    their callers, in proportion to the cumulative time each caller spent in them."""
    table: dict[Func, Any] = stats.stats  # type: ignore[attr-defined]
    out: dict[str, float] = defaultdict(float)

    def give(func: Func, amount: float, depth: int) -> None:
        area = area_of(func)
        if area is not None:
            out[area] += amount
            return
        callers = table.get(func, (0, 0, 0, 0, {}))[4]
        total = sum(c[3] for c in callers.values())
        if depth > 12 or not callers or total <= 0:
            out["other"] += amount
            return
        for caller, c in callers.items():
            give(caller, amount * c[3] / total, depth + 1)

    for func, (_cc, _nc, tt, _ct, _callers) in table.items():
        give(func, tt, 0)
    return dict(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=100)
    ap.add_argument("--registers", type=int, default=125)
    ap.add_argument("--warmup", type=float, default=10.0)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--no-profile", action="store_true",
                    help="no cProfile: CPU per datapoint and the GC figures only")
    ap.add_argument("--no-settle", action="store_true",
                    help="leave the garbage collector as Python sets it (no settle_heap)")
    ap.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop",
                    help="the event loop (the daemon's from 10 devices on: uvloop)")
    ap.add_argument("--commit-gather", type=float, default=None, metavar="SECONDS",
                    help="set the pipeline's commit_gather (the site setting; default: the "
                         "config's, 0)")
    ap.add_argument("--out", type=Path, help="also save the raw profile here (pstats format)")
    args = ap.parse_args()
    os.environ[LOOP_ENV] = args.loop
    factory = event_loop_factory(args.devices)
    with asyncio.Runner(loop_factory=factory) as runner:
        prof, f = runner.run(measure(args.devices, args.registers, args.warmup, args.seconds,
                                     not args.no_profile, not args.no_settle,
                                     args.commit_gather))
    print(f"event loop: {'uvloop' if factory is not None else 'asyncio'}")
    per_k = 1000 / max(1, f["samples"])
    print(f"{args.devices}x{args.registers}: {f['samples_per_s']:.0f} samples/s committed "
          f"({100 * f['delivered_share_of_offered']:.1f} % of offered); CPU-s per 1,000: "
          f"{f['cpu_s'] * per_k:.4f} (main thread {f['main_thread_cpu_s'] * per_k:.4f}, other "
          f"threads {f['other_threads_cpu_s'] * per_k:.4f})"
          f"{' under cProfile' if prof is not None else ''}")
    print(f"pipeline: {f['commits_per_s']:.1f} commits/s, "
          f"{f['samples_per_s'] / max(1e-9, f['commits_per_s']):.0f} samples per commit")
    print(f"gc: collections per generation {f['gc_collections']}, "
          f"{100 * f['gc_cpu_s'] / max(1e-9, f['cpu_s']):.1f} % of the process's CPU")
    if prof is None:
        return
    if args.out:
        prof.dump_stats(args.out)
    stats = pstats.Stats(prof)
    areas = by_area(stats)
    total = sum(areas.values()) or 1.0
    print("main thread CPU by area (cProfile):")
    for area, secs in sorted(areas.items(), key=lambda kv: -kv[1]):
        print(f"  {area:<16} {secs:7.2f} s  {100 * secs / total:5.1f} %")
    stats.sort_stats("tottime").print_stats(args.top)
    stats.sort_stats("cumulative").print_stats(args.top)


if __name__ == "__main__":
    main()

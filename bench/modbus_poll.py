"""Bench: the bare Modbus driver, 100 simulated Modbus TCP devices x 125 points every second.

The driver alone, with a counting context: no pipeline, store or uplink (bench/site.py runs
the whole gateway). The simulators (one pymodbus server per device, each on its own loopback
port) run in a separate process, so the CPU figure is the driver's: its poll loops, pymodbus
client framing, decoding and sample building. Reports tags/s (the offered load, not the most
it could take), requests per cycle against the optimum for the gap rule (an independent
O(n^2) DP over the points), and CPU as a share of one core. Goal: 12,500 tags/s at <= 15 %
of one core.

    python bench/modbus_poll.py [--devices 100] [--seconds 10] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import Conditions, CountingContext, median, write_result  # noqa: E402
from drivers.modbus.config import ModbusDeviceConfig  # noqa: E402
from drivers.modbus.driver import ModbusDriver  # noqa: E402
from drivers.modbus.simulator import ModbusSimulator, SimUnit  # noqa: E402

POINTS = 125
TYPES = [("uint16", 1), ("int16", 1), ("float32", 2), ("uint32", 2), ("float32", 2)]
MAX_GAP = 10


def point_map(seed: int = 7) -> list[dict[str, Any]]:
    """125 points of mixed types with occasional gaps (some wider than MAX_GAP)."""
    rng = random.Random(seed)
    points, addr = [], 0
    for i in range(POINTS):
        kind, size = TYPES[i % len(TYPES)]
        points.append({"name": f"p{i:03d}", "function": "holding", "address": addr,
                       "type": kind, "scale": 0.1 if kind.endswith("16") else 1.0})
        addr += size + (rng.choice([0] * 12 + [3, 14]))
    return points


def optimum(points: list[dict[str, Any]], max_count: int = 125) -> int:
    """Fewest reads for the gap rule, by DP over the address-sorted points (independent of the
    driver's greedy planner): best[j] = min over feasible last reads i..j-1 of best[i] + 1."""
    sizes = {"uint16": 1, "int16": 1}
    spans = sorted((p["address"], p["address"] + sizes.get(p["type"], 2)) for p in points)
    n = len(spans)
    best = [0] + [n + 1] * n
    for i in range(n):
        end = spans[i][1]
        for j in range(i, n):  # one read covering spans i..j
            if j > i:
                if spans[j][0] - end > MAX_GAP:
                    break
                end = max(end, spans[j][1])
            if end - spans[i][0] > max_count:
                break
            best[j + 1] = min(best[j + 1], best[i] + 1)
    return best[n]


def serve(n: int) -> None:
    """Child process: start n simulators, print their ports as JSON, serve until stdin closes."""
    async def main() -> None:
        cfg = ModbusDeviceConfig.model_validate(
            {"id": "x", "host": "127.0.0.1", "points": point_map()})
        sims = [ModbusSimulator([SimUnit(1, list(cfg.points), animate=False)]) for _ in range(n)]
        ports = [await s.start() for s in sims]
        print(json.dumps(ports), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

    asyncio.run(main())


async def one_run(ports: list[int], seconds: float) -> dict[str, float]:
    cfgs = [ModbusDeviceConfig.model_validate(
        {"id": f"m{i:03d}", "host": "127.0.0.1", "port": port, "interval": 1.0, "timeout": 1.0,
         "max_gap": MAX_GAP, "points": point_map()}) for i, port in enumerate(ports)]
    ctx = CountingContext()
    drv = ModbusDriver(cfgs, ctx)  # type: ignore[arg-type]
    tasks: list[asyncio.Future[None]] = [asyncio.ensure_future(f()) for _n, f in drv.tasks()]
    await asyncio.sleep(2.0)  # connect and settle
    start_samples, start_bad = ctx.samples, ctx.bad
    start_req = sum(b.requests for b in drv.buses.values())
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
    await asyncio.sleep(seconds)
    r1, t1 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
    requests = sum(b.requests for b in drv.buses.values()) - start_req
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await drv.close()
    wall = t1 - t0
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return {"tags_per_s": (ctx.samples - start_samples) / wall,
            "bad_per_s": (ctx.bad - start_bad) / wall,
            "requests_per_s": requests / wall,
            "cpu_percent_of_core": 100 * cpu / wall}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve(args.serve)
        return
    with Conditions() as conditions:
        child = subprocess.Popen([sys.executable, __file__, "--serve", str(args.devices)],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                 cwd=ROOT)
        try:
            assert child.stdout is not None
            ports = json.loads(child.stdout.readline())
            runs = [asyncio.run(one_run(ports, args.seconds)) for _ in range(args.runs)]
        finally:
            if child.stdin:
                child.stdin.close()
            child.wait(timeout=10)
    points = point_map()
    drv = ModbusDriver([ModbusDeviceConfig.model_validate(
        {"id": "p", "host": "h", "max_gap": MAX_GAP, "points": points})],
        CountingContext())  # type: ignore[arg-type]
    write_result(
        "modbus_poll",
        what=("bare Modbus driver (no pipeline, store or uplink) polling pymodbus simulators "
              "in another process; offered load, not saturation"),
        goal="12500 tags/s at <= 15 % of one core",
        params={"devices": args.devices, "points_per_device": POINTS, "interval_s": 1.0,
                "seconds_per_run": args.seconds, "runs": args.runs},
        summary={
            "tags_per_s": median(r["tags_per_s"] for r in runs),
            "cpu_percent_of_core": median(r["cpu_percent_of_core"] for r in runs),
            "requests_per_s": median(r["requests_per_s"] for r in runs),
            "requests_per_cycle_per_device": drv.requests_per_cycle(),
            "optimum_requests_per_cycle_per_device": optimum(points)},
        runs=runs, conditions=conditions)

if __name__ == "__main__":
    main()

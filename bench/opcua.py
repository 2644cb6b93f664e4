"""OPC-UA ingest benchmark: 5,000 monitored items changing every second on one server.

The server (the inverter simulator with ``--items``) runs in a separate process so its CPU is
not counted. The gateway side is the real driver (one subscription group) feeding a context
that only counts samples (no pipeline, store or uplink), so the figure is the bare driver's
cost: asyncua decoding + our mapping + batching, at the offered load (not saturation).
Reported: samples/s and the process's CPU in % of one core, as the median of several
windows. Goal: 5,000 samples/s at <= 20 % of one core.

    PYTHONPATH=. python bench/opcua.py [--items 5000] [--window 10] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import Conditions, CountingContext, median, write_result  # noqa: E402
from drivers.opcua.config import OpcuaDeviceConfig  # noqa: E402
from drivers.opcua.driver import OpcuaDriver  # noqa: E402
from drivers.opcua.simulator import BENCH_BASE, free_port  # noqa: E402


def _wait_port(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise SystemExit(f"simulator did not listen on port {port} within {timeout} s")


async def measure(url: str, items: int, window: float, runs: int) -> dict[str, Any]:
    cfg = OpcuaDeviceConfig.model_validate(
        {
            "id": "bench",
            "type": "opcua",
            "url": url,
            "request_timeout": 30,
            "groups": [
                {
                    "name": "all",
                    "interval": 0.5,
                    "queue_size": 1,
                    "points": [
                        {"name": f"item{i}", "node": f"ns=2;i={BENCH_BASE + i}"}
                        for i in range(items)
                    ],
                }
            ],
        }
    )
    ctx = CountingContext()
    driver = OpcuaDriver([cfg], ctx)  # type: ignore[arg-type]
    tasks = [asyncio.create_task(f(), name=n) for n, f in driver.tasks()]
    try:
        t0 = time.monotonic()
        while ctx.samples < 2 * items:  # connected, subscribed, first updates in
            if time.monotonic() - t0 > 120:
                raise SystemExit("no data from the simulator within 120 s")
            await asyncio.sleep(0.2)
        setup_s = time.monotonic() - t0
        rates, cpus = [], []
        for _ in range(runs):
            n0, c0, w0 = ctx.samples, time.process_time(), time.monotonic()
            await asyncio.sleep(window)
            n1, c1, w1 = ctx.samples, time.process_time(), time.monotonic()
            rates.append((n1 - n0) / (w1 - w0))
            cpus.append(100 * (c1 - c0) / (w1 - w0))
            print(
                f"  window: {rates[-1]:8.0f} samples/s  gateway CPU {cpus[-1]:5.1f} % of one core"
            )
        runs_out = [{"samples_per_s": r, "cpu_percent_of_core": c}
                    for r, c in zip(rates, cpus, strict=True)]
        return {"setup_s": setup_s, "batches": ctx.batches,
                "bad_or_uncertain": ctx.samples - ctx.good, "runs": runs_out}
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def main() -> int:
    parser = argparse.ArgumentParser(description="OPC-UA ingest benchmark")
    parser.add_argument("--items", type=int, default=5000)
    parser.add_argument("--window", type=float, default=10.0)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "drivers.opcua.simulator",
            "--port",
            str(port),
            "--items",
            str(args.items),
            "--period",
            "1",
        ],
        cwd=ROOT,
        env=env,
    )
    with Conditions() as conditions:
        try:
            _wait_port(port, 120)
            result = asyncio.run(
                measure(f"opc.tcp://127.0.0.1:{port}", args.items, args.window, args.runs)
            )
        finally:
            server.terminate()
            server.wait(10)
    runs = result.pop("runs")
    write_result(
        "opcua",
        what=("bare OPC-UA driver (no pipeline, store or uplink) subscribed to the inverter "
              "simulator in another process; offered load, not saturation"),
        goal=f"{args.items}/s at <= 20 % of one core",
        params={"items": args.items, "window_s": args.window, "runs": args.runs},
        summary={"samples_per_s": median(r["samples_per_s"] for r in runs),
                 "cpu_percent_of_core": median(r["cpu_percent_of_core"] for r in runs),
                 **result},
        runs=runs, conditions=conditions)
    return 0

if __name__ == "__main__":
    raise SystemExit(main())

"""CPU per Modbus request: one read of 125 holding registers through ``drivers.modbus.bus.Bus``
(pymodbus, the event loop, the bus's own checks and statistics), back to back, the simulator
in another process. Prints the best and the median of ``--runs`` rounds of ``--requests`` reads
(CPU time of this process, so the simulator is not counted). The ``pymodbus`` logger is set to
CRITICAL, as the daemon sets it. A per-request figure: at 125 points a read,
1 µs per request is 0.008 ms per 1,000 datapoints.

``--loop asyncio|uvloop`` picks the event loop; ``--tree DIR`` runs another checkout's
``drivers`` package with this script (A/B against main, e.g. ``--tree /work/main``). Prints
only; writes no results file.

    python bench/modbus_request.py [--loop uvloop] [--tree DIR] [--runs 5] [--requests 500]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import subprocess
import sys
import time
from pathlib import Path
from statistics import median
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

SERVE = """
import asyncio, json, sys
sys.path.insert(0, {tree!r})
from drivers.modbus.config import ModbusDeviceConfig
from drivers.modbus.simulator import ModbusSimulator, SimUnit

async def main() -> None:
    cfg = ModbusDeviceConfig.model_validate({{"id": "x", "host": "127.0.0.1", "points": [
        {{"name": f"r{{i}}", "address": i, "type": "uint16"}} for i in range(125)]}})
    sim = ModbusSimulator([SimUnit(1, list(cfg.points), animate=False)])
    print(json.dumps(await sim.start()), flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


async def measure(port: int, runs: int, requests: int) -> float:
    from drivers.modbus.bus import Bus
    from drivers.modbus.config import ModbusDeviceConfig
    from drivers.modbus.datatypes import Function

    cfg = ModbusDeviceConfig.model_validate({"id": "x", "host": "127.0.0.1", "port": port,
                                             "points": [{"name": "a", "address": 0,
                                                         "type": "uint16"}]})
    # As the daemon sets it (gateway/logs.py): pymodbus's own ERROR lines off, so its frame
    # ring is skipped as in `fieldgate run`.
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    bus = Bus("bench", cfg)
    await bus.connect()
    try:
        for _ in range(200):  # warm-up
            await bus.read(cfg, Function.HOLDING, 0, 125)
        per_read = []
        for _ in range(runs):
            c0 = time.process_time()
            for _ in range(requests):
                await bus.read(cfg, Function.HOLDING, 0, 125)
            per_read.append((time.process_time() - c0) / requests)
    finally:
        bus.close()
    return per_read


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--loop", choices=["asyncio", "uvloop"], default="uvloop")
    ap.add_argument("--tree", type=Path, default=ROOT)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--requests", type=int, default=500)
    args = ap.parse_args()
    tree = str(args.tree.resolve())
    sys.path.insert(0, tree)
    sim = subprocess.Popen([sys.executable, "-c", SERVE.format(tree=tree)],
                           stdout=subprocess.PIPE, text=True)
    try:
        assert sim.stdout is not None
        port = json.loads(sim.stdout.readline())
        factory: Any = None
        if args.loop == "uvloop":
            import uvloop

            factory = uvloop.new_event_loop
        with asyncio.Runner(loop_factory=factory) as runner:
            per_read = runner.run(measure(port, args.runs, args.requests))
    finally:
        sim.kill()
        sim.wait()
    print(f"{tree} on {args.loop}: {min(per_read) * 1e6:.0f} µs CPU per read of 125 registers "
          f"(best of {args.runs} x {args.requests}; median {median(per_read) * 1e6:.0f})")


if __name__ == "__main__":
    main()

"""End-to-end throughput: simulated driver -> pipeline -> SQLite buffer -> uplink -> mosquitto.

A real gateway runs in this process with simulated devices producing volume
(``extra_points``); a real mosquitto listens on loopback. The figure is samples per second
acknowledged by the broker (PUBACK: they have left the buffer), measured over a sustained
window after a short warm-up. Goal: >= 150,000 samples/s on 2 cores.

    python bench/pipeline.py [--seconds 60] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from _uplink_common import report, start_app, stop_app, uplink_of, write_site

from tests.support.mosquitto import Mosquitto

DEVICES = 4
POINTS = 5_000
INTERVAL = 0.1  # 4 x 5,005 samples every 0.1 s: the drivers offer ~200,000 samples/s


def site(workdir: Path, broker: Mosquitto) -> dict[str, Any]:
    return {
        "gateway": {"id": "bench-gw", "state_dir": str(workdir / "state")},
        "logging": {"level": "WARNING"},
        "uplink": {"broker": {"host": broker.host, "port": broker.port},
                   "max_samples": 10_000, "max_bytes": 4_000_000, "window": 32},
        "devices": [{"id": f"bench-{i}", "type": "simulated", "interval": INTERVAL,
                     "extra_points": POINTS, "seed": i} for i in range(DEVICES)],
    }


async def one_run(seconds: float, warmup: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        with Mosquitto(workdir) as broker:
            app, task = await start_app(write_site(workdir, site(workdir, broker)))
            try:
                uplink = uplink_of(app)
                await asyncio.sleep(warmup)
                s0, p0, t0 = uplink.stats.samples, app.pipeline.stats.samples, time.monotonic()
                await asyncio.sleep(seconds)
                s1, p1, t1 = uplink.stats.samples, app.pipeline.stats.samples, time.monotonic()
                backlog = (await app.store.stats()).next_seq - 1 - uplink.stats.acked_seq
            finally:
                await stop_app(app, task)
    run = {"samples_per_s": (s1 - s0) / (t1 - t0), "ingested_per_s": (p1 - p0) / (t1 - t0),
           "seconds": t1 - t0, "backlog_at_end": backlog}
    print(f"  forwarded {run['samples_per_s']:,.0f}/s, ingested {run['ingested_per_s']:,.0f}/s,"
          f" backlog at end {backlog:,}")
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--warmup", type=float, default=3.0)
    args = parser.parse_args()
    runs = [asyncio.run(one_run(args.seconds, args.warmup)) for _ in range(args.runs)]
    report("pipeline", runs, "samples_per_s", 150_000,
           {"seconds": args.seconds, "devices": DEVICES, "points_per_device": POINTS + 5,
            "interval_s": INTERVAL, "max_samples": 10_000, "window": 32})


if __name__ == "__main__":
    main()

"""Backfill: how fast a 10-million-sample backlog drains while new samples keep arriving.

A store is filled with a backlog (chunks of 1,000 samples, like a site of a few hundred
points committing every second during a long outage), then a real gateway starts on it with
a mosquitto on loopback and simulated devices still producing ~10,000 samples/s. The figure
is backlog samples per second acknowledged by the broker until the whole backlog has left.
Goal: >= 200,000 samples/s.

    python bench/backfill.py [--samples 10000000] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from _uplink_common import Conditions, report, start_app, stop_app, uplink_of, write_site

from gateway.model import Sample
from gateway.store import Store
from tests.support.mosquitto import Mosquitto

CHUNK = 1_000


async def build_backlog(path: Path, samples: int) -> None:
    store = Store(path)
    await store.open()
    try:
        points = [f"sim_{i:05d}" for i in range(CHUNK)]
        ts = 1_700_000_000_000
        for n in range(samples // CHUNK):
            device = f"meter-{n % 50}"
            batch = [Sample(device, p, ts + n * 1000, n * 0.5 + i) for i, p in enumerate(points)]
            await store.append_samples(batch)
    finally:
        await store.close()


def site(workdir: Path, store: Path, broker: Mosquitto) -> dict[str, Any]:
    return {
        "gateway": {"id": "bench-gw", "state_dir": str(workdir / "state")},
        "store": {"path": str(store)},
        "logging": {"level": "WARNING"},
        "uplink": {"broker": {"host": broker.host, "port": broker.port},
                   "max_samples": 10_000, "max_bytes": 4_000_000, "window": 32},
        "devices": [{"id": "live", "type": "simulated", "interval": 0.1,
                     "extra_points": 995, "seed": 1}],
    }


async def one_run(template: Path, samples: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        store = workdir / "buffer.sqlite3"
        shutil.copy(template, store)
        with Mosquitto(workdir) as broker:
            t0 = time.monotonic()
            app, task = await start_app(write_site(workdir, site(workdir, store, broker)))
            try:
                uplink = uplink_of(app)
                while uplink.stats.acked_seq < samples:
                    await asyncio.sleep(0.05)
                took = time.monotonic() - t0
                live = app.pipeline.stats.samples
            finally:
                await stop_app(app, task)
    run = {"samples_per_s": samples / took, "seconds": took, "live_samples_meanwhile": live}
    print(f"  drained {samples:,} in {took:.1f} s = {run['samples_per_s']:,.0f}/s "
          f"({live:,} new samples arrived meanwhile)")
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=10_000_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, Conditions() as conditions:
        template = Path(tmp) / "backlog.sqlite3"
        t = time.monotonic()
        asyncio.run(build_backlog(template, args.samples))
        print(f"built a backlog of {args.samples:,} samples in {time.monotonic() - t:.1f} s "
              f"({template.stat().st_size / 1e6:.0f} MB)")
        runs = [asyncio.run(one_run(template, args.samples)) for _ in range(args.runs)]
    report("backfill", runs, "samples_per_s", ">= 200,000 samples/s",
           {"backlog_samples": args.samples, "chunk_samples": CHUNK, "max_samples": 10_000,
            "window": 32, "live_rate_per_s": 10_000, "runs": args.runs}, conditions,
           "whole gateway in this process draining a stored backlog to mosquitto on loopback "
           "while live samples arrive; saturation (as fast as it drains)")

if __name__ == "__main__":
    main()

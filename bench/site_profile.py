"""Where the whole gateway's CPU goes: cProfile of the real App polling Modbus simulators.

The App runs in this process under cProfile (Modbus polling, store, rules, uplink to a real
mosquitto; the simulators in another process, as in bench/site.py) for ``--seconds`` after a
warm-up; prints the functions with the most own time and the most cumulative time. cProfile
slows Python code by about 2x, so read the shares, not the absolute times.

    python bench/site_profile.py [--devices 50] [--registers 125] [--seconds 20] [--top 25]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.site import in_process  # noqa: E402


async def profile(devices: int, registers: int, warmup: float, seconds: float) -> cProfile.Profile:
    prof = cProfile.Profile()
    async with in_process(devices, registers):
        await asyncio.sleep(warmup)
        prof.enable()
        await asyncio.sleep(seconds)
        prof.disable()
    return prof


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=50)
    ap.add_argument("--registers", type=int, default=125)
    ap.add_argument("--warmup", type=float, default=5.0)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--out", type=Path, help="also save the raw profile here (pstats format)")
    args = ap.parse_args()
    prof = asyncio.run(profile(args.devices, args.registers, args.warmup, args.seconds))
    if args.out:
        prof.dump_stats(args.out)
    stats = pstats.Stats(prof)
    stats.sort_stats("tottime").print_stats(args.top)
    stats.sort_stats("cumulative").print_stats(args.top)


if __name__ == "__main__":
    main()

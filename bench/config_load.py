"""How fast a big site loads its config, and how much memory the loaded config keeps.

Generates a site of DEVICES Modbus devices with POINTS listed points each (default 200 x 125,
25,000 points), then loads it with ``gateway.config.loader.load_config`` in fresh processes:

- CPU seconds and wall seconds of the load (median of ``--runs`` runs, imports excluded);
- resident memory: RSS before and after the load and its peak (VmHWM), per configured point;
- traced memory (tracemalloc, in a run of its own because tracing slows the load): the peak
  while loading and what stays live afterwards with the config held, per configured point;
- start to loaded config: wall and CPU seconds from starting ``python`` to the config
  validated, imports included (what ``fieldgate run`` spends before it can start a driver: a
  lower bound of the time to the first datapoint, not that time itself). The tree is compiled
  first, so this starts from bytecode as an installed gateway does (see
  ``bench.first_datapoint``).

With ``--first-datapoint``, also the time to the first datapoint: ``fieldgate run`` on the same
site with every device served by the built-in simulator (one simulated Modbus TCP gateway on
loopback, one unit id per device, no uplink), until the buffer holds a sample (polled from
outside with ``read_stats``): wall seconds from the start of the process.

Usage: ``python -m bench.config_load [--devices 200] [--points 125] [--runs 3]
[--first-datapoint]``. Prints the figures and writes ``bench/results/config_load.json``. CPU
figures are only as quiet as the machine: re-measure on an idle box before quoting them.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import Conditions, median, write_result

ROOT = Path(__file__).resolve().parents[1]

_TYPES = ("uint16", "int16", "uint32", "int32", "float32")


def site_yaml(devices: int, points: int, state_dir: Path) -> str:
    lines = ["gateway:", "  id: big-site", f"  state_dir: {state_dir}", "devices:"]
    for d in range(devices):
        lines += [f"  - id: meter-{d:03d}", "    type: modbus",
                  f"    host: 10.0.{d // 250}.{d % 250}", f"    unit: {d % 247 + 1}",
                  "    interval: 1", "    points:"]
        address = 0
        for p in range(points):
            kind = _TYPES[p % len(_TYPES)]
            lines.append(f"      - {{name: p{p:03d}_value, address: {address}, type: {kind}, "
                         f"scale: 0.1, unit: kW}}")
            address += 2 if kind.endswith("32") else 1
    return "\n".join(lines) + "\n"


# Run in a fresh interpreter so imports, RSS and the allocator start from the same place.
_CHILD = r"""
import gc, json, resource, sys, time, tracemalloc
from pathlib import Path

def status(key):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return 0

from gateway.config.loader import load_config
import gateway.config.site as site
site.site_model()  # build the model (a one-off cost of any start) outside the measure
path, traced = sys.argv[1], sys.argv[2] == "1"
gc.collect()
rss_before = status("VmRSS")
if traced:
    tracemalloc.start()
cpu, wall = time.process_time(), time.perf_counter()
config = load_config(path)
cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
gc.collect()
out = {"cpu_s": cpu, "wall_s": wall, "devices": len(config.devices),
       "points": sum(len(d.points) for d in config.devices)}
if traced:
    current, peak = tracemalloc.get_traced_memory()
    out.update(traced_peak_bytes=peak, traced_retained_bytes=current)
else:
    out.update(rss_before_bytes=rss_before, rss_after_bytes=status("VmRSS"),
               rss_peak_bytes=status("VmHWM"))
print(json.dumps(out))
"""


_START = """
import sys
from gateway.config.loader import load_config
load_config(sys.argv[1])
"""


def _start_to_loaded(path: Path) -> tuple[float, float]:
    """Wall and CPU seconds of a fresh interpreter that imports the loader and loads."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", _START, str(path)], cwd=ROOT, check=True,
                   timeout=600, capture_output=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def _first_datapoint(tmp: Path, devices: int, points: int) -> float | None:
    """Wall seconds from starting the daemon to the first sample in its buffer (the run of
    bench/first_datapoint.py, with the in-process simulator)."""
    from bench.first_datapoint import one_run

    seconds: float | None = one_run(tmp, devices, points, external=False,
                                    timeout=120)["first_datapoint_s"]
    return seconds


def run_child(code: str, *args: str) -> dict[str, Any]:
    """Run ``python -c code args`` in a fresh interpreter; its last line of output is JSON."""
    proc = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True,
                          text=True, check=True, timeout=600)
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def _child(path: Path, traced: bool) -> dict[str, Any]:
    return run_child(_CHILD, str(path), "1" if traced else "0")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument("--points", type=int, default=125)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--name", default="config_load", help="results file name")
    parser.add_argument("--first-datapoint", action="store_true",
                        help="also run the daemon on a simulated site: time to the first sample")
    args = parser.parse_args(argv)
    from bench.first_datapoint import compile_tree

    compile_tree()  # start from bytecode, as an installed gateway does (see first_datapoint)
    with tempfile.TemporaryDirectory() as tmp, Conditions() as conditions:
        path = Path(tmp) / "site.yaml"
        path.write_text(site_yaml(args.devices, args.points, Path(tmp) / "state"))
        size = path.stat().st_size
        runs = [_child(path, traced=False) for _ in range(args.runs)]
        traced = _child(path, traced=True)
        starts = [_start_to_loaded(path) for _ in range(args.runs)]
        firsts = ([_first_datapoint(Path(tmp) / f"run{i}", args.devices, args.points)
                   for i in range(args.runs)] if args.first_datapoint else [])
    points = runs[0]["points"]
    figures = {
        "devices": args.devices,
        "points": points,
        "file_bytes": size,
        "cpu_s": round(median([r["cpu_s"] for r in runs]), 3),
        "wall_s": round(median([r["wall_s"] for r in runs]), 3),
        "start_to_loaded_s": round(median([wall for wall, _ in starts]), 3),
        "start_to_loaded_cpu_s": round(median([cpu for _, cpu in starts]), 3),
        "rss_growth_bytes_per_point": round(median(
            [(r["rss_after_bytes"] - r["rss_before_bytes"]) / points for r in runs])),
        "rss_peak_mb": round(median([r["rss_peak_bytes"] for r in runs]) / 1e6, 1),
        "rss_after_mb": round(median([r["rss_after_bytes"] for r in runs]) / 1e6, 1),
        "traced_peak_mb": round(traced["traced_peak_bytes"] / 1e6, 1),
        "traced_retained_mb": round(traced["traced_retained_bytes"] / 1e6, 1),
        "traced_retained_bytes_per_point": round(traced["traced_retained_bytes"] / points),
    }
    if firsts:
        done = [f for f in firsts if f is not None]
        figures["first_datapoint_s"] = round(median(done), 2) if done else None
        figures["first_datapoint_missed_runs"] = len(firsts) - len(done)
    write_result(
        args.name,
        what=(f"loading a generated site of {args.devices} devices x {args.points} points in a "
              "fresh process" + (", and the daemon on it to its first datapoint"
                                 if args.first_datapoint else "")),
        goal="first datapoint within 2 s of start; <= 1 KB resident per configured point",
        params={"devices": args.devices, "points": args.points, "runs": args.runs},
        summary=figures, conditions=conditions,
        runs=[*runs, {"traced": traced}, {"start_to_loaded_s": starts},
              {"first_datapoint_s": firsts}])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

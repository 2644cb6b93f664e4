"""Start to first datapoint: ``fieldgate run`` on a generated big Modbus site.

Generates a site of DEVICES Modbus devices with POINTS listed points each (default 200 x 125,
25,000 points, the site of ``bench.config_load``), all behind one Modbus TCP gateway on
loopback (one unit id per device), no uplink. Then starts the daemon as a fresh process and
polls its buffer from outside (``gateway.store.read_stats``) until it holds a sample: the
wall seconds from starting the process to the first sample committed to the buffer, and the
daemon's CPU seconds (user + system, from /proc) at that moment.

Two ways to serve the devices (``--sim``):

- ``inprocess`` (default): ``simulate: true`` on every device, so the daemon runs the
  built-in simulator itself (what the demo does); its start-up is part of the figure;
- ``external``: one simulator process serving all units, started and listening before the
  daemon starts (a real site: the devices are already there).

Beside it, in a fresh process per run, the CPU seconds of the start-up steps of the Modbus
driver that block the event loop: building the driver (planning every device's reads),
starting the built-in simulator (its register maps and the first values), and one simulator
tick (moving every value, once a second while it runs).

The daemon's log is kept per run; the number of "cannot connect" warnings in it before the
first datapoint is reported too (pollers that started before the simulator listened).

Bytecode: an installed gateway starts from compiled bytecode (pip compiles a wheel's modules,
the Debian package's postinst runs ``compileall``), but a source checkout run with
``PYTHONDONTWRITEBYTECODE=1`` compiles every fieldgate module at every start (0.3-0.4 CPU-s
of the imports, measured on a busy 2-core box). So the bench first compiles the tree's
``gateway``, ``drivers`` and ``hooks`` (``python -m compileall``, which writes ``__pycache__``
whatever that variable says), as an install does; ``--source`` instead removes their
``__pycache__`` folders, to measure a daemon that compiles its sources at every start (the
daemons get ``PYTHONDONTWRITEBYTECODE=1``).

``--against DIR``: A/B in the same minutes. Each run of this tree's daemon is preceded by one
of the ``gateway`` package of DIR (another checkout: ``git worktree add`` or ``git archive`` of
main), compiled the same way; the medians of both and each pair are reported (``against``).
On a busy machine the CPU figure of a pair is the one to compare.

``--profile FILE``: one more daemon run under cProfile, stopped at its first committed
datapoint; the profile is written to FILE (``python -m pstats FILE``) and its largest
cumulative entries are printed. Not part of the figures (cProfile slows Python code).

Usage: ``python -m bench.first_datapoint [--devices 200] [--points 125] [--runs 3]
[--sim inprocess|external] [--source] [--against DIR] [--profile FILE]
[--name first_datapoint]``. Prints the
median of the runs and writes ``bench/results/NAME.json``. Wall figures on a busy, shared
machine are inflated (they count waiting for a core); the CPU figure is the steadier one.
Re-measure on a quiet machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import Conditions, median, write_result  # noqa: E402
from bench.config_load import run_child, site_yaml  # noqa: E402

_TICK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def site(tmp: Path, devices: int, points: int, port: int, simulate: bool) -> Path:
    text = site_yaml(devices, points, tmp / "state")
    sim = "    simulate: true\n" if simulate else ""
    text = re.sub(r"    host: 10\.0\.\d+\.\d+\n", f"    host: 127.0.0.1\n    port: {port}\n{sim}",
                  text)
    path = tmp / "site.yaml"
    path.write_text(text)
    return path


def cpu_of(pid: int) -> float:
    """User + system CPU seconds of a running process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def serve(path: Path) -> None:
    """``--serve``: run one simulator for every device of the site until killed."""
    from drivers.modbus.simulator import ModbusSimulator, unit_of
    from gateway.config.loader import load_config

    config = load_config(path)
    devices: list[Any] = list(config.devices)
    sim = ModbusSimulator([unit_of(d) for d in devices], port=devices[0].port)

    async def main() -> None:
        await sim.start()
        print("ready", flush=True)
        while True:
            await asyncio.sleep(1.0)
            sim.tick()

    asyncio.run(main())


_PARTS = r"""
import asyncio, json, sys, time
from drivers.modbus.driver import ModbusDriver
from drivers.modbus.simulator import ModbusSimulator, unit_of
from drivers.testing import RecordingContext
from gateway.config.loader import load_config

devices = list(load_config(sys.argv[1]).devices)
out = {}

async def main():
    cpu = time.process_time()
    ModbusDriver(devices, RecordingContext())
    out["driver_init_cpu_s"] = time.process_time() - cpu
    sim = ModbusSimulator([unit_of(d) for d in devices], port=0)
    cpu = time.process_time()
    await sim.start()
    out["simulator_start_cpu_s"] = time.process_time() - cpu
    cpu = time.process_time()
    sim.tick()
    out["simulator_tick_cpu_s"] = time.process_time() - cpu
    await sim.stop()

asyncio.run(main())
print(json.dumps(out))
"""


def parts(tmp: Path, devices: int, points: int) -> dict[str, float]:
    """CPU seconds of the driver's start-up steps, in a fresh process."""
    tmp.mkdir(parents=True, exist_ok=True)
    path = site(tmp, devices, points, free_port(), simulate=False)
    return run_child(_PARTS, str(path))


_OWN = ("gateway", "drivers", "hooks")


def compile_tree(tree: Path = ROOT) -> None:
    """Compile the modules the daemon imports, as installing it does (see the docstring)."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", *_OWN], cwd=tree, check=True,
                   capture_output=True, timeout=600)


def uncompile_tree(tree: Path = ROOT) -> None:
    """``--source``: no compiled fieldgate module left, so the daemon compiles each one (it
    writes none back with ``PYTHONDONTWRITEBYTECODE=1``). Only caches are removed."""
    import shutil

    for package in _OWN:
        for cache in (tree / package).rglob("__pycache__"):
            shutil.rmtree(cache, ignore_errors=True)


# ``fieldgate run`` under cProfile, stopped (os._exit) right after its first commit with samples.
_PROFILED = r"""
import cProfile, os, sys
profile = cProfile.Profile()
profile.enable()
import gateway.pipeline as pipeline
commit_once = pipeline.Pipeline.commit_once

async def first_commit(self):
    done = await commit_once(self)
    if done:
        profile.disable()
        profile.dump_stats(sys.argv[2])
        os._exit(0)
    return done

pipeline.Pipeline.commit_once = first_commit
from gateway.cli import main
main(["run", "-c", sys.argv[1], "--log-level", "WARNING"])
"""


def profile_run(tmp: Path, devices: int, points: int, external: bool, out: Path) -> None:
    """One daemon under cProfile until its first datapoint; prints the largest entries."""
    import pstats

    tmp.mkdir(parents=True, exist_ok=True)
    port = free_port()
    path = site(tmp, devices, points, port, simulate=not external)
    server = _serve(path) if external else None
    try:
        subprocess.run([sys.executable, "-c", _PROFILED, str(path), str(out)], cwd=ROOT,
                       check=True, timeout=600, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
    finally:
        if server is not None:
            server.kill()
            server.wait()
    pstats.Stats(str(out)).sort_stats("cumulative").print_stats(40)


def _serve(path: Path) -> subprocess.Popen[str]:
    server = subprocess.Popen([sys.executable, "-m", "bench.first_datapoint", "--serve",
                               str(path)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None
    if server.stdout.readline().strip() != "ready":
        raise RuntimeError("the simulator process did not start")
    return server


def one_run(tmp: Path, devices: int, points: int, external: bool,
            timeout: float, tree: Path = ROOT) -> dict[str, Any]:
    from gateway.store import read_stats

    tmp.mkdir(parents=True, exist_ok=True)
    port = free_port()
    path = site(tmp, devices, points, port, simulate=not external)
    server = _serve(path) if external else None
    db = tmp / "state" / "buffer.sqlite3"
    log_path = tmp / "daemon.log"
    out: dict[str, Any] = {"first_datapoint_s": None, "cpu_s": None,
                           "loadavg_1m": os.getloadavg()[0]}
    with log_path.open("w") as log:
        started = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "gateway", "run", "-c", str(path)],
                                cwd=tree, stdout=log, stderr=subprocess.STDOUT)
        try:
            while time.perf_counter() - started < timeout and proc.poll() is None:
                try:
                    if db.exists() and read_stats(db).samples > 0:
                        out["first_datapoint_s"] = round(time.perf_counter() - started, 3)
                        out["cpu_s"] = round(cpu_of(proc.pid), 3)
                        break
                except Exception:  # the store is being created: try again
                    pass
                time.sleep(0.02)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if server is not None:
                server.kill()
                server.wait()
    text = log_path.read_text(errors="replace")
    out["cannot_connect_warnings"] = text.count("cannot connect") + text.count("is down (")
    warnings = [line for line in text.splitlines() if "WARNING" in line]
    out["warnings"], out["first_warnings"] = len(warnings), warnings[:3]
    if out["first_datapoint_s"] is None:
        out["log_tail"] = text[-2000:]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument("--points", type=int, default=125)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sim", choices=("inprocess", "external"), default="inprocess")
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--source", action="store_true",
                        help="do not compile the tree first: the daemon compiles its sources "
                        "at start (with PYTHONDONTWRITEBYTECODE=1)")
    parser.add_argument("--profile", type=Path, metavar="FILE",
                        help="also profile one run (cProfile) until its first datapoint")
    parser.add_argument("--against", type=Path, metavar="DIR",
                        help="also run the gateway package of this checkout, each run "
                        "before one of this tree's (A/B in the same minutes)")
    parser.add_argument("--name", default="first_datapoint", help="results file name")
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve)
        return 0
    trees = [ROOT] if args.against is None else [args.against.resolve(), ROOT]
    for tree in trees:
        if args.source:
            os.environ["PYTHONDONTWRITEBYTECODE"] = "1"  # the daemons inherit it
            uncompile_tree(tree)
        else:
            compile_tree(tree)
    if args.profile:
        with tempfile.TemporaryDirectory() as tmp:
            profile_run(Path(tmp), args.devices, args.points, args.sim == "external",
                        args.profile)
    with tempfile.TemporaryDirectory() as tmp, Conditions() as conditions:
        runs, other = [], []
        for i in range(args.runs):
            if args.against is not None:
                other.append(one_run(Path(tmp) / f"against{i}", args.devices, args.points,
                                     args.sim == "external", args.timeout, trees[0]))
            runs.append(one_run(Path(tmp) / f"run{i}", args.devices, args.points,
                                args.sim == "external", args.timeout))
        for i, run in enumerate(runs):
            run.update(parts(Path(tmp) / f"parts{i}", args.devices, args.points))
    done = [r for r in runs if r["first_datapoint_s"] is not None]
    figures: dict[str, Any] = {
        "devices": args.devices,
        "points": args.devices * args.points,
        "sim": args.sim,
        "bytecode": "source" if args.source else "compiled",
        "runs": args.runs,
        "missed_runs": len(runs) - len(done),
        "first_datapoint_s": median([r["first_datapoint_s"] for r in done]) if done else None,
        "cpu_to_first_datapoint_s": median([r["cpu_s"] for r in done]) if done else None,
        **{key: round(median([r[key] for r in runs]), 3) for key in (
            "driver_init_cpu_s", "simulator_start_cpu_s", "simulator_tick_cpu_s")},
        "cannot_connect_warnings": median([r["cannot_connect_warnings"] for r in runs]),
        "loadavg_1m_at_start": median([r["loadavg_1m"] for r in runs]),
    }
    if args.against is not None:
        both = [r for r in other if r["first_datapoint_s"] is not None]
        figures["against"] = {
            "tree": str(trees[0]),
            "first_datapoint_s": median([r["first_datapoint_s"] for r in both]) if both else None,
            "cpu_to_first_datapoint_s": median([r["cpu_s"] for r in both]) if both else None,
            "pairs_cpu_s": [[a["cpu_s"], b["cpu_s"]] for a, b in zip(other, runs, strict=True)],
        }
    write_result(
        args.name,
        what=(f"`fieldgate run` as its own process on a generated site of {args.devices} Modbus "
              f"devices x {args.points} points against simulators: process start to the first "
              "datapoint committed, and the CPU the daemon spent until then"),
        goal="first datapoint within 2 s of start at 25,000 points",
        params={k: figures[k] for k in ("devices", "points", "sim", "bytecode", "runs")},
        summary=figures, runs=runs, conditions=conditions)
    return 0 if done else 1


if __name__ == "__main__":
    raise SystemExit(main())

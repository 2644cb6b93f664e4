"""Bench: start-up cost of the CLI and idle memory of a Modbus-only site (issue 11 item 8).

1. ``fieldgate --help`` and ``fieldgate --version``: wall time, CPU time (user + system: the
   wall time of an idle machine) and peak RSS of the process, median of ``--runs`` fresh
   processes. Goal: ``--help`` under 0.3 s.
2. A Modbus-only site: one meter (the Eastron SDM630 profile) polled every second from a
   Modbus simulator running in ANOTHER process, the uplink to a local mosquitto (if installed;
   otherwise the uplink is disabled and the result says so). ``--idle`` seconds after the
   meter's first sample reached the buffer, the daemon's RSS is read with psutil. Median of
   ``--runs`` fresh daemons. Goal: <= 50 MB.
3. Then, against that running daemon, the commands that talk to its control socket:
   ``fieldgate cmd ping``, ``fieldgate status`` and ``fieldgate devices``, each ``--cli-runs``
   times per daemon as fresh processes: wall and CPU time, median over all runs (their peak
   RSS is not reported: this process is large by then, and a child's peak counts the pages
   it shares with it between fork and exec). Goal: the same order as ``--help`` (~0.3 s).

    python bench/startup.py [--runs 5] [--idle 10] [--cli-runs 5]

``--tree DIR`` runs the ``gateway`` package of another checkout (e.g. ``git worktree add``
of an older commit, or ``git archive`` of it) with this script, to measure the code before a
change alongside.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import Conditions, median, write_result  # noqa: E402

MEGA = 1024 * 1024
METER = {"id": "meter-01", "type": "modbus", "host": "127.0.0.1", "unit": 1,
         "profile": "eastron-sdm630", "interval": 1.0}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


#: the checkout whose ``gateway`` package runs (``--tree``; default this one)
TREE = ROOT
#: the commands that only talk to the daemon's control socket (``-c SITE`` is added)
SOCKET_COMMANDS = {"cmd": ["cmd", "ping"], "status": ["status"], "devices": ["devices"]}


def fieldgate_cmd() -> list[str]:
    """``python -m gateway`` run from the checkout (what the ``fieldgate`` script runs)."""
    return [sys.executable, "-m", "gateway"]


def time_cli(*args: str) -> dict[str, float]:
    """Wall time, CPU time and peak RSS of one ``fieldgate ARGS`` process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([*fieldgate_cmd(), *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, cwd=TREE)
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"fieldgate {' '.join(args)} exited {proc.returncode}: "
                           f"{err.decode()[-1000:]}")
    # CPU time (user + system) is what the wall time is on an idle machine; on a shared,
    # busy one the wall time also counts waiting for a core.
    return {"seconds": seconds, "cpu_seconds": usage.ru_utime + usage.ru_stime,
            "peak_rss_mb": usage.ru_maxrss * 1024 / MEGA}


def serve_modbus(port: int) -> None:
    """Run the Modbus simulator for METER until killed (the ``--serve-modbus`` mode)."""
    from drivers.modbus.config import ModbusDeviceConfig
    from drivers.modbus.simulator import ModbusSimulator, unit_of

    cfg = ModbusDeviceConfig.model_validate({**METER, "port": port})

    async def main() -> None:
        sim = ModbusSimulator([unit_of(cfg)], port=port)
        await sim.start()
        print("ready", flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def site_config(workdir: Path, modbus_port: int, mqtt_port: int | None) -> Path:
    uplink = (f"uplink:\n  broker: {{host: 127.0.0.1, port: {mqtt_port}}}\n"
              if mqtt_port else "uplink:\n  enabled: false\n")
    meter = {**METER, "port": modbus_port}
    path = workdir / "site.yaml"
    path.write_text(
        f"gateway:\n  id: bench-gw\n  state_dir: {workdir / 'state'}\n"
        f"{uplink}"
        f"devices:\n  - {json.dumps(meter)}\n"
    )
    return path


def idle_rss(workdir: Path, idle: float, mosquitto: str | None,
             cli_runs: int = 0) -> dict[str, Any]:
    """The daemon's RSS after ``idle`` seconds; then ``cli_runs`` timings of each socket
    command against it (after the RSS is read: they make the daemon work)."""
    import psutil

    from gateway.store import read_stats

    procs: list[subprocess.Popen[bytes]] = []
    try:
        modbus_port = free_port()
        procs.append(subprocess.Popen([sys.executable, __file__, "--serve-modbus",
                                       str(modbus_port)], stdout=subprocess.DEVNULL))
        mqtt_port = None
        if mosquitto:
            mqtt_port = free_port()
            conf = workdir / "mosquitto.conf"
            conf.write_text(f"listener {mqtt_port} 127.0.0.1\nallow_anonymous true\n")
            procs.append(subprocess.Popen([mosquitto, "-c", str(conf)],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            wait_port(mqtt_port)
        wait_port(modbus_port)
        config = site_config(workdir, modbus_port, mqtt_port)
        log = workdir / "daemon.log"
        with open(log, "wb") as out:  # a file, not a pipe nobody reads while it runs
            daemon = subprocess.Popen([*fieldgate_cmd(), "run", "-c", str(config)],
                                      stdout=subprocess.DEVNULL, stderr=out, cwd=TREE)
        procs.append(daemon)
        buffer = workdir / "state" / "buffer.sqlite3"

        def stored() -> int:
            if daemon.poll() is not None:
                raise RuntimeError(f"the daemon exited ({daemon.returncode}): "
                                   f"{log.read_text()[-2000:]}")
            try:
                return read_stats(buffer).next_seq - 1
            except (FileNotFoundError, sqlite3.OperationalError):  # not created yet
                return 0

        t0 = time.monotonic()
        while not stored():  # a busy machine may take seconds to start it
            if time.monotonic() - t0 > 120:
                raise RuntimeError("the meter's samples never reached the buffer in 120 s: "
                                   "not a valid run")
            time.sleep(0.1)
        first_sample_s = time.monotonic() - t0
        time.sleep(idle)  # the measurement itself: the daemon idles, polling once a second
        polled = stored()
        rss = psutil.Process(daemon.pid).memory_info().rss / MEGA
        cli = {name: [time_cli(*args, "-c", str(config)) for _ in range(cli_runs)]
               for name, args in SOCKET_COMMANDS.items()}
        return {"rss_mb": rss, "samples_stored": polled, "first_sample_s": first_sample_s,
                "uplink": "mosquitto" if mqtt_port
                else "disabled", "cli": cli}
    finally:
        for proc in reversed(procs):
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--idle", type=float, default=10.0, help="seconds idle before reading RSS")
    ap.add_argument("--cli-runs", type=int, default=5,
                    help="timings of each socket command per daemon (default 5)")
    ap.add_argument("--tree", type=Path, help="run the gateway package of this checkout")
    ap.add_argument("--name", default="startup", help="results file name (bench/results/NAME"
                    ".json)")
    ap.add_argument("--serve-modbus", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = ap.parse_args()
    global TREE
    if args.tree is not None:
        TREE = args.tree.resolve()
    if args.serve_modbus:
        serve_modbus(args.serve_modbus)
        return
    runs: list[dict[str, Any]] = []
    with Conditions() as conditions:
        # The CLI first: a child's peak RSS counts the pages it shares with this process
        # between fork and exec, so this process must still be small (idle_rss imports the
        # store).
        runs = [{"help": time_cli("--help"), "version": time_cli("--version")}
                for _ in range(args.runs)]
        for run in runs:
            with tempfile.TemporaryDirectory(prefix="fieldgate-startup-") as tmp:
                run["idle"] = idle_rss(Path(tmp), args.idle, shutil.which("mosquitto"),
                                       args.cli_runs)
            cli = run["idle"]["cli"]
            print(f"run: --help {run['help']['seconds']:.3f} s, --version "
                  f"{run['version']['seconds']:.3f} s / {run['version']['peak_rss_mb']:.1f} MB, "
                  f"idle {run['idle']['rss_mb']:.1f} MB, " + ", ".join(
                      f"{name} {median([t['seconds'] for t in cli[name]]):.3f} s"
                      for name in SOCKET_COMMANDS if cli[name]), flush=True)
    figures = {
        "help_seconds": median([r["help"]["seconds"] for r in runs]),
        "help_cpu_seconds": median([r["help"]["cpu_seconds"] for r in runs]),
        "version_cpu_seconds": median([r["version"]["cpu_seconds"] for r in runs]),
        "help_peak_rss_mb": median([r["help"]["peak_rss_mb"] for r in runs]),
        "version_seconds": median([r["version"]["seconds"] for r in runs]),
        "version_peak_rss_mb": median([r["version"]["peak_rss_mb"] for r in runs]),
        "idle_rss_mb": median([r["idle"]["rss_mb"] for r in runs]),
        "uplink": runs[0]["idle"]["uplink"],
    }
    for name in SOCKET_COMMANDS:
        timings = [t for r in runs for t in r["idle"]["cli"][name]]
        if timings:
            figures[f"{name}_seconds"] = median([t["seconds"] for t in timings])
            figures[f"{name}_cpu_seconds"] = median([t["cpu_seconds"] for t in timings])
    path = write_result(
        args.name,
        what=("fresh `fieldgate` processes; a Modbus-only daemon as its own process, its "
              "simulator in another, uplink to mosquitto; `fieldgate cmd ping`, `status` and "
              "`devices` against that daemon"
              + (f"; the gateway package of {TREE}" if TREE != ROOT else "")),
        goal="--help < 0.3 s; idle <= 50 MB; cmd/status/devices ~0.3 s",
        params={"runs": args.runs, "idle_seconds": args.idle, "cli_runs": args.cli_runs},
        summary=figures, runs=runs, conditions=conditions)
    print(f"fieldgate --help: {figures['help_seconds']:.3f} s wall, "
          f"{figures['help_cpu_seconds']:.3f} s CPU (goal < 0.3 s), peak "
          f"{figures['help_peak_rss_mb']:.1f} MB")
    print(f"fieldgate --version: {figures['version_seconds']:.3f} s wall, "
          f"{figures['version_cpu_seconds']:.3f} s CPU, peak "
          f"{figures['version_peak_rss_mb']:.1f} MB")
    print(f"Modbus-only site idle RSS after {args.idle:g} s: {figures['idle_rss_mb']:.1f} MB "
          f"(goal <= 50 MB; uplink {figures['uplink']})")
    for name, argv in SOCKET_COMMANDS.items():
        if f"{name}_seconds" in figures:
            print(f"fieldgate {' '.join(argv)}: {figures[f'{name}_seconds']:.3f} s wall, "
                  f"{figures[f'{name}_cpu_seconds']:.3f} s CPU")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

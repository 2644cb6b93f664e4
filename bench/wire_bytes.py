"""Bytes per datapoint on the wire, for each telemetry encoding and each kind of value.

The real gateway runs as its own process (``python -m gateway run``) with simulated devices
and forwards to a real mosquitto on a free loopback port; a subscriber counts the payload
bytes of every telemetry message and the samples they hold (by their sequence numbers).
After a warm-up, the figure of a run is payload bytes / samples over the messages received
in the measuring window. Each cell is the median of ``--runs`` runs.

Value kinds (the simulated driver's ``extra_values``): ``shared`` (every value of a tick has
the same fractional digits, which flatters compression), ``decimals`` (independent values at
1 to 3 decimals) and ``floats`` (independent full floats).

    python -m bench.wire_bytes                       # 10 devices x 100 points, 1 s, 3 runs
    python -m bench.wire_bytes --devices 2 --points 20 --warmup 2 --seconds 4 --runs 1

Self-contained on purpose (its own broker, subscriber and result file).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

import aiomqtt
import yaml

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
GW = "bench-wire"
ENCODINGS = ("json", "columns+deflate")
TOPICS = {"json": f"fieldgate/{GW}/telemetry",
          "columns+deflate": f"fieldgate/{GW}/telemetry/columns-deflate"}
KINDS = ("shared", "decimals", "floats")


def machine() -> str:
    cpu = platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_broker(tmp: Path) -> tuple[subprocess.Popen[bytes], int]:
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    port = free_port()
    conf = tmp / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n"
                    "max_inflight_messages 0\nmax_queued_messages 0\n")
    proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return proc, port
        time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"mosquitto ({binary}) did not listen on port {port} within 10 s")


def site(tmp: Path, port: int, encoding: str, kind: str, args: argparse.Namespace) -> Path:
    cfg = {
        "gateway": {"id": GW, "state_dir": str(tmp / "state")},
        "uplink": {"broker": {"host": "127.0.0.1", "port": port}, "encoding": encoding,
                   "linger": args.linger},
        "devices": [
            {"id": f"meter-{i:03d}", "type": "simulated", "interval": args.interval,
             "seed": i, "extra_points": args.points - 5, "extra_values": kind}
            for i in range(args.devices)
        ],
    }
    path = tmp / "site.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def samples_of(encoding: str, payload: bytes) -> int:
    body = json.loads(zlib.decompress(payload) if encoding != "json" else payload)
    return int(body["seq_last"]) - int(body["seq_first"]) + 1


async def one_run(port: int, encoding: str, kind: str, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="wire-bytes-") as tmpdir:
        config = site(Path(tmpdir), port, encoding, kind, args)
        counted = {"bytes": 0, "samples": 0, "messages": 0}
        measuring = False
        async with aiomqtt.Client("127.0.0.1", port, identifier=f"wire-{os.getpid()}") as sub:
            await sub.subscribe(TOPICS[encoding], qos=1)
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "gateway", "run", "-c", str(config), "--log-level",
                "WARNING", cwd=ROOT, stdout=subprocess.DEVNULL,
            )

            async def count() -> None:
                async for message in sub.messages:
                    if measuring:
                        payload = message.payload
                        assert isinstance(payload, bytes)
                        counted["bytes"] += len(payload)
                        counted["samples"] += samples_of(encoding, payload)
                        counted["messages"] += 1

            task = asyncio.create_task(count())
            try:
                await asyncio.sleep(args.warmup)
                measuring = True
                await asyncio.sleep(args.seconds)
                measuring = False
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                proc.send_signal(signal.SIGTERM)
                await asyncio.wait_for(proc.wait(), 30)
        if not counted["samples"]:
            raise SystemExit(f"no telemetry arrived for {encoding}/{kind}: is the gateway "
                             f"starting? Try it by hand with -c {config}")
        return {**counted, "bytes_per_datapoint": counted["bytes"] / counted["samples"],
                "samples_per_message": counted["samples"] / counted["messages"]}


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="wire-broker-") as tmp:
        broker, port = start_broker(Path(tmp))
        try:
            for n in range(args.runs):  # runs alternated across the cells
                for encoding in args.encodings:
                    for kind in args.kinds:
                        run = await one_run(port, encoding, kind, args)
                        runs.append({"encoding": encoding, "values": kind, "run": n + 1, **run})
                        print(f"run {n + 1} {encoding:16s} {kind:9s} "
                              f"{run['bytes_per_datapoint']:6.2f} B/datapoint "
                              f"({run['samples_per_message']:.0f} samples/message)",
                              file=sys.stderr)
        finally:
            broker.terminate()
            broker.wait(10)
    median = {
        enc: {kind: round(statistics.median(r["bytes_per_datapoint"] for r in runs
                                            if r["encoding"] == enc and r["values"] == kind), 2)
              for kind in args.kinds}
        for enc in args.encodings
    }
    return {"bench": "wire_bytes", "machine": machine(),
            "params": {k: getattr(args, k) for k in ("devices", "points", "interval", "linger",
                                                     "warmup", "seconds", "runs")},
            "unit": "payload bytes per datapoint at the subscriber (median of runs)",
            "median": median, "runs": runs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--devices", type=int, default=10)
    ap.add_argument("--points", type=int, default=100, help="points per device (>= 5)")
    ap.add_argument("--interval", type=float, default=1.0, help="seconds between polls")
    ap.add_argument("--linger", type=float, default=0.0, help="uplink.linger (seconds)")
    ap.add_argument("--warmup", type=float, default=5.0)
    ap.add_argument("--seconds", type=float, default=20.0, help="measuring window")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--encodings", nargs="+", default=list(ENCODINGS), choices=ENCODINGS)
    ap.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    ap.add_argument("--out", type=Path, default=None,
                    help="result file (default bench/results/wire_bytes[_linger<s>].json)")
    args = ap.parse_args()
    if args.points < 5:
        ap.error("--points must be at least 5 (the simulated device's own points)")
    result = asyncio.run(main_async(args))
    print(f"bytes per datapoint on the wire, {args.devices} devices x {args.points} points "
          f"every {args.interval:g} s, uplink.linger {args.linger:g} s, median of {args.runs} "
          f"({result['machine']})")
    print(f"| encoding | {' | '.join(args.kinds)} |")
    print(f"|---|{'---|' * len(args.kinds)}")
    for enc, cells in result["median"].items():
        print(f"| {enc} | {' | '.join(f'{cells[k]:.2f}' for k in args.kinds)} |")
    out = args.out or RESULTS / (f"wire_bytes_linger{args.linger:g}.json" if args.linger
                                 else "wire_bytes.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")


if __name__ == "__main__":
    main()

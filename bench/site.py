"""Whole-gateway Modbus bench: the daemon as a process, simulators in another, a counter at
the broker.

For each size (devices x registers) and run:

- a simulator process serves one pymodbus server per device on its own loopback port, every
  register changing each second, and counts the requests it answers;
- a real mosquitto listens on loopback; a subscriber in this process (QoS 1) counts the
  datapoints and bytes the gateway delivers, deduplicated by sequence number, and the age of
  each value on arrival (arrival time minus the sample's timestamp);
- ``fieldgate run`` runs on a generated config (Modbus polling at ``--interval``, the SQLite
  store, one alarm rule per device, the uplink) as a process of its own; its CPU time and RSS
  are read with psutil.

After ``--warmup`` seconds a ``--window`` is measured. Reported per size, as the median of
``--runs`` runs: CPU-seconds per 1,000 delivered datapoints, RSS at the start and the end of
the window, payload bytes per datapoint (topic + payload), requests per device per cycle
(counted at the simulators), the age of values at delivery (p50, p99), and the share of the
offered datapoints that was delivered. ``--quick`` is one short run per size. RSS is also
read every 5 s of the window (``rss_trace_mb`` in each run): its maximum and its trend
(least squares, MB per hour) over the window and over its second half say whether memory
is flat (a heap filling up after start shows in the first, a leak in both); for the
hour-long check, ``--sizes 200x125 --runs 1 --warmup 60 --window 3600``. With several
sizes of the same registers, the RSS per added device (end of the window) is printed and
written as ``rss_kb_per_added_device``.

``--saturate DEVICESxREGISTERS`` halves the poll interval from ``--interval`` until the
gateway stops keeping up (delivers < 98 % of the offered datapoints or the p99 age exceeds
two intervals plus one second) or reaches ``--min-interval``, and reports the most it took
while keeping up (one run per step; ``--quick`` makes each step 5 s + 15 s). A smoke run
that proves it works in about a minute, without touching bench/results:

    FIELDGATE_BENCH_RESULTS=/tmp/smoke python bench/site.py --saturate 5x20 \
        --interval 0.5 --warmup 2 --window 4 --min-interval 0.1

    python bench/site.py [--sizes 10x100,100x125,200x125] [--runs 3] [--warmup 20]
                         [--window 120] [--quick] [--saturate 100x125]
                         [--tree CHECKOUT] [--commit-gather SECONDS]

Writes bench/results/site.json (and site_saturation.json).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import zlib
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import Conditions, median, write_result  # noqa: E402

GATEWAY_ID = "site-bench"
#: The checkout whose daemon runs (``--tree``: A/B against another branch, same bench code).
DAEMON_TREE = ROOT
#: pipeline.commit_gather for the site file (--commit-gather); None: the daemon's default
COMMIT_GATHER: float | None = None
RSS_EVERY_S = 5.0  # RSS is read this often during the window (max and trend)
MEGA = 1024 * 1024
DEFAULT_SIZES = "10x100,100x125,200x125"


def points(registers: int) -> list[dict[str, Any]]:
    """``registers`` contiguous holding registers (uint16 volts, scale 0.1): one read each."""
    return [{"name": f"r{i:03d}", "address": i, "type": "uint16", "scale": 0.1, "unit": "V"}
            for i in range(registers)]


# --- simulator process ---------------------------------------------------------------------

def serve(devices: int, registers: int) -> None:
    """Child process: one server per device, values moving every second. Prints the ports as
    JSON, then answers each line on stdin with the total requests served so far."""
    from drivers.modbus.config import ModbusDeviceConfig
    from drivers.modbus.datatypes import Function
    from drivers.modbus.simulator import ModbusSimulator, SimUnit

    class CountingSimulator(ModbusSimulator):
        requests = 0

        def _trace(self, sending: bool, pdu: Any) -> Any:
            if not sending:
                CountingSimulator.requests += 1
            return pdu

        def tick(self) -> None:
            """Every register moves each second (one slice write per device, so 200 devices
            x 125 registers stay cheap for the simulator process)."""
            t = time.monotonic() - self._t0
            words = [round(2300 * (1 + 0.05 * math.sin(t / 7.0 + i))) for i in range(registers)]
            self.set_registers(1, Function.HOLDING, 0, words)

    async def main() -> None:
        cfg = ModbusDeviceConfig.model_validate(
            {"id": "x", "host": "127.0.0.1", "points": points(registers)})
        sims = [CountingSimulator([SimUnit(1, list(cfg.points), animate=False)])
                for _ in range(devices)]
        ports = [await s.start() for s in sims]

        async def tick() -> None:
            while True:
                await asyncio.sleep(1.0)
                for s in sims:
                    s.tick()

        ticker = asyncio.create_task(tick())
        print(json.dumps(ports), flush=True)
        loop = asyncio.get_running_loop()
        while await loop.run_in_executor(None, sys.stdin.readline):
            print(CountingSimulator.requests, flush=True)
        ticker.cancel()

    asyncio.run(main())


class Simulators:
    def __init__(self, devices: int, registers: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", f"{devices}x{registers}"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the simulator process exited before listing its ports")
        self.ports: list[int] = json.loads(line)

    def requests(self) -> int:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        return int(self.proc.stdout.readline())

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# --- the broker-side counter ---------------------------------------------------------------

class Counter_:
    """Counts what reaches the broker's telemetry topic; dedupes by sequence number."""

    def __init__(self) -> None:
        self.high = 0
        self.datapoints = 0
        self.bytes = 0
        self.messages = 0
        self.ages: Counter[int] = Counter()  # 10 ms buckets -> datapoints

    def take(self, topic: str, payload: bytes) -> None:
        now_ms = time.time() * 1000
        raw = payload if payload[:1] in (b"{", b"[") else zlib.decompress(payload)
        msg = json.loads(raw)
        first = msg["seq_first"]
        fresh = msg["samples"][max(0, self.high + 1 - first):]
        if not fresh:
            return
        self.high = max(self.high, msg["seq_last"])
        self.messages += 1
        self.datapoints += len(fresh)
        self.bytes += len(payload) + len(topic)
        for sample in fresh:
            self.ages[int((now_ms - sample[2]) // 10)] += 1

    def reset_window(self) -> tuple[int, int]:
        self.ages.clear()
        return self.datapoints, self.bytes

    def age_ms(self, q: float) -> float:
        total = sum(self.ages.values())
        if not total:
            return float("nan")
        seen = 0
        for bucket in sorted(self.ages):
            seen += self.ages[bucket]
            if seen >= q * total:
                return bucket * 10.0 + 5.0
        return max(self.ages) * 10.0 + 5.0


async def subscribe(host: str, port: int, counter: Counter_, ready: asyncio.Event) -> None:
    import aiomqtt

    async with aiomqtt.Client(host, port, identifier="site-bench-counter",
                              max_queued_incoming_messages=0) as client:
        await client.subscribe(f"fieldgate/{GATEWAY_ID}/telemetry/#", qos=1)
        await client.subscribe(f"fieldgate/{GATEWAY_ID}/telemetry", qos=1)
        ready.set()
        async for message in client.messages:
            payload = message.payload
            assert isinstance(payload, (bytes, bytearray))
            counter.take(str(message.topic), bytes(payload))


# --- the daemon ----------------------------------------------------------------------------

def site_config(workdir: Path, ports: list[int], registers: int, interval: float,
                broker_port: int, encoding: str | None) -> Path:
    import yaml

    uplink: dict[str, Any] = {"broker": {"host": "127.0.0.1", "port": broker_port}}
    if encoding:
        uplink["encoding"] = encoding
    site = {
        "gateway": {"id": GATEWAY_ID, "state_dir": str(workdir / "state")},
        "logging": {"level": "WARNING"},
        "uplink": uplink,
        "devices": [{"id": f"m{i:03d}", "type": "modbus", "host": "127.0.0.1", "port": port,
                     "interval": interval, "timeout": max(1.0, interval),
                     "points": points(registers)} for i, port in enumerate(ports)],
        "rules": {"alarms": [{"name": f"over-{i:03d}", "devices": [f"m{i:03d}"],
                              "point": "r000", "condition": {"op": ">", "value": 1e6}}
                             for i in range(len(ports))]},
    }
    if COMMIT_GATHER is not None:  # else the daemon's default (see pipeline.commit_gather)
        site["pipeline"] = {"commit_gather": COMMIT_GATHER}
    path = workdir / "site.yaml"
    path.write_text(yaml.safe_dump(site, sort_keys=False))
    return path


@contextlib.asynccontextmanager
async def in_process(devices: int, registers: int, interval: float = 1.0) -> AsyncIterator[Any]:
    """The real App in this process (Modbus polling, store, rules, uplink to a real mosquitto)
    on the config of :func:`site_config`, the simulators in another process, as in a run;
    yields the App (bench/memory.py and bench/site_profile.py look inside it)."""
    from bench._uplink_common import start_app, stop_app
    from tests.support.mosquitto import Mosquitto

    with tempfile.TemporaryDirectory(prefix="fieldgate-site-") as tmp:
        workdir = Path(tmp)
        sims = Simulators(devices, registers)
        try:
            with Mosquitto(workdir) as broker:
                config = site_config(workdir, sims.ports, registers, interval, broker.port,
                                     None)
                app, task = await start_app(config)
                try:
                    yield app
                finally:
                    await stop_app(app, task)
        finally:
            sims.close()


async def one_run(devices: int, registers: int, interval: float, warmup: float, window: float,
                  encoding: str | None) -> dict[str, Any]:
    from tests.support.mosquitto import Mosquitto

    with tempfile.TemporaryDirectory(prefix="fieldgate-site-") as tmp:
        workdir = Path(tmp)
        sims = Simulators(devices, registers)
        try:
            with Mosquitto(workdir) as broker:
                counter, ready = Counter_(), asyncio.Event()
                sub = asyncio.create_task(subscribe(broker.host, broker.port, counter, ready))
                try:
                    await asyncio.wait_for(ready.wait(), 10)
                    config = site_config(workdir, sims.ports, registers, interval,
                                         broker.port, encoding)
                    figures = await measure(workdir, config, sims, counter, sub, warmup,
                                            window)
                finally:
                    sub.cancel()
                    await asyncio.gather(sub, return_exceptions=True)
        finally:
            sims.close()
    return report(figures, counter, devices, registers, interval)


async def measure(workdir: Path, config: Path, sims: Simulators, counter: Counter_,
                  sub: asyncio.Task[None], warmup: float, window: float) -> dict[str, float]:
    """Start the daemon, wait for its first datapoint and the warm-up, measure a window."""
    import psutil

    with (workdir / "daemon.log").open("wb") as log:
        t_start = time.monotonic()
        daemon = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway", "run", "-c", str(config), stdout=log, stderr=log,
            cwd=DAEMON_TREE)
    try:
        proc = psutil.Process(daemon.pid)
        while counter.datapoints == 0:
            if daemon.returncode is not None or sub.done():
                raise RuntimeError(f"the daemon exited ({daemon.returncode}): "
                                   f"{(workdir / 'daemon.log').read_text()[-2000:]}")
            if time.monotonic() - t_start > 120:
                raise RuntimeError("no datapoint reached the broker within 120 s")
            await asyncio.sleep(0.1)
        first_datapoint_s = time.monotonic() - t_start
        rss_first = proc.memory_info().rss
        await asyncio.sleep(warmup)
        cpu0, rss0, req0 = sum(proc.cpu_times()[:2]), proc.memory_info().rss, sims.requests()
        dp0, by0 = counter.reset_window()
        t0 = time.monotonic()
        rss_trace = [(0.0, rss0)]  # (seconds into the window, RSS): is it flat?
        while (left := t0 + window - time.monotonic()) > 0:
            await asyncio.sleep(min(left, RSS_EVERY_S))
            rss_trace.append((time.monotonic() - t0, proc.memory_info().rss))
        cpu1, rss1, req1 = sum(proc.cpu_times()[:2]), proc.memory_info().rss, sims.requests()
        t1 = time.monotonic()
        dp1, by1 = counter.datapoints, counter.bytes
    finally:
        if daemon.returncode is None:
            daemon.terminate()
            try:
                await asyncio.wait_for(daemon.wait(), 30)
            except TimeoutError:
                daemon.kill()
                await daemon.wait()
    return {"cpu": cpu1 - cpu0, "rss_first": rss_first, "rss0": rss0, "rss1": rss1,
            "requests": req1 - req0, "datapoints": dp1 - dp0, "bytes": by1 - by0,
            "wall": t1 - t0, "first_datapoint_s": first_datapoint_s,
            "rss_max": max(r for _, r in rss_trace),
            "rss_slope": _slope(rss_trace),
            "rss_slope_2nd_half": _slope([(t, r) for t, r in rss_trace if t >= window / 2]),
            "rss_trace": rss_trace}


def _slope(trace: list[tuple[float, int]]) -> float:
    """Least-squares growth of RSS over the window, bytes per second (0 for one point)."""
    n = len(trace)
    if n < 2:
        return 0.0
    mt = sum(t for t, _ in trace) / n
    mr = sum(r for _, r in trace) / n
    var = sum((t - mt) ** 2 for t, _ in trace)
    return sum((t - mt) * (r - mr) for t, r in trace) / var if var else 0.0


def report(f: dict[str, float], counter: Counter_, devices: int, registers: int,
           interval: float) -> dict[str, Any]:
    delivered, wall = f["datapoints"], f["wall"]
    offered = devices * registers * wall / interval
    run = {
        "cpu_s_per_1000_datapoints": f["cpu"] / max(1, delivered) * 1000,
        "cpu_percent_of_core": 100 * f["cpu"] / wall,
        "rss_first_datapoint_mb": f["rss_first"] / MEGA,
        "rss_start_mb": f["rss0"] / MEGA, "rss_end_mb": f["rss1"] / MEGA,
        "rss_max_mb": f["rss_max"] / MEGA,
        "rss_growth_mb_per_hour": f["rss_slope"] * 3600 / MEGA,
        # The second half alone: a heap that fills up to a plateau after the warm-up shows
        # a trend over the whole window but none here; a leak shows in both.
        "rss_growth_2nd_half_mb_per_hour": f["rss_slope_2nd_half"] * 3600 / MEGA,
        "bytes_per_datapoint": f["bytes"] / max(1, delivered),
        "requests_per_device_per_cycle": f["requests"] / devices / (wall / interval),
        "age_p50_ms": counter.age_ms(0.5), "age_p99_ms": counter.age_ms(0.99),
        "datapoints_per_s": delivered / wall, "delivered_share": delivered / offered,
        "first_datapoint_s": f["first_datapoint_s"], "window_s": wall,
        "rss_trace_mb": [[round(t, 1), round(r / MEGA, 1)] for t, r in f["rss_trace"]],
    }
    print(f"  {devices}x{registers} @ {interval:g} s: "
          f"{run['cpu_s_per_1000_datapoints']:.4f} CPU-s/1000 dp, "
          f"RSS {run['rss_start_mb']:.1f} -> {run['rss_end_mb']:.1f} MB "
          f"(max {run['rss_max_mb']:.1f}, trend {run['rss_growth_mb_per_hour']:+.1f} MB/h, "
          f"2nd half {run['rss_growth_2nd_half_mb_per_hour']:+.1f}), "
          f"{run['bytes_per_datapoint']:.1f} B/dp, "
          f"{run['requests_per_device_per_cycle']:.2f} req/device/cycle, age p50 "
          f"{run['age_p50_ms']:.0f} ms p99 {run['age_p99_ms']:.0f} ms, delivered "
          f"{100 * run['delivered_share']:.1f} %", flush=True)
    return run


def parse_size(text: str) -> tuple[int, int]:
    devices, _, registers = text.partition("x")
    return int(devices), int(registers)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default=DEFAULT_SIZES)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--warmup", type=float, default=20.0)
    ap.add_argument("--window", type=float, default=120.0)
    ap.add_argument("--interval", type=float, default=1.0)
    ap.add_argument("--encodings", default="json",
                    help="comma-separated uplink.encoding values to measure (json is v1)")
    ap.add_argument("--quick", action="store_true", help="1 run per size, 5 s + 15 s")
    ap.add_argument("--saturate", metavar="DEVICESxREGISTERS",
                    help="find the most this size takes while keeping up, instead")
    ap.add_argument("--min-interval", type=float, default=0.05,
                    help="--saturate: the shortest poll interval tried")
    ap.add_argument("--tree", type=Path, default=ROOT,
                    help="run the daemon of this checkout (`python -m gateway` from it), to "
                         "compare branches with the same bench code")
    ap.add_argument("--commit-gather", type=float, default=None, metavar="SECONDS",
                    help="set pipeline.commit_gather in the site file (0: commit as batches "
                         "come); default: the daemon's own default")
    ap.add_argument("--serve", help=argparse.SUPPRESS)
    args = ap.parse_args()
    global DAEMON_TREE, COMMIT_GATHER
    DAEMON_TREE = args.tree.resolve()
    COMMIT_GATHER = args.commit_gather
    if args.serve:
        serve(*parse_size(args.serve))
        return
    if args.quick:
        args.runs, args.warmup, args.window = 1, 5.0, 15.0
    encodings = args.encodings.split(",")
    if args.saturate:
        from bench.site_saturate import saturate

        saturate(args, *parse_size(args.saturate), one_run)
        return
    summary: dict[str, Any] = {}
    all_runs: list[dict[str, Any]] = []
    with Conditions() as conditions:
        for size in args.sizes.split(","):
            devices, registers = parse_size(size)
            for encoding in encodings:
                runs = [asyncio.run(one_run(devices, registers, args.interval, args.warmup,
                                            args.window, None if encoding == "json"
                                            else encoding)) for _ in range(args.runs)]
                key = size if encoding == "json" else f"{size} {encoding}"
                summary[key] = {k: median(r[k] for r in runs) for k in runs[0]
                                if not isinstance(runs[0][k], list)}
                all_runs += [{"size": size, "encoding": encoding, **r} for r in runs]
    per_device = _per_added_device(summary)
    if per_device is not None:
        summary["rss_kb_per_added_device"] = per_device
        print(f"RSS per added device (end of window, {per_device[0]}): "
              f"{per_device[1]:.0f} KB", flush=True)
    write_result(
        "site",
        what=("whole gateway: `fieldgate run` as its own process (Modbus polling, store, one "
              "alarm rule per device, uplink to mosquitto), simulators in another process, "
              "datapoints counted at the broker; offered load (every register each interval)"),
        goal="<= 0.003 CPU-s per 1,000 datapoints; <= 90 MB RSS at 200x125",
        params={"sizes": args.sizes, "runs": args.runs, "warmup_s": args.warmup,
                "tree": str(DAEMON_TREE), "commit_gather_s": args.commit_gather,
                "window_s": args.window, "interval_s": args.interval,
                "encodings": encodings},
        summary=summary, runs=all_runs, conditions=conditions)


def _per_added_device(summary: dict[str, Any]) -> tuple[str, float] | None:
    """RSS at the end of the window per device added between the smallest and the largest
    json size with the same registers: ("AxR..BxR", KB), or None."""
    sizes = [(parse_size(k), k) for k in summary if " " not in k]
    by_regs: dict[int, list[tuple[int, str]]] = {}
    for (devices, registers), key in sizes:
        by_regs.setdefault(registers, []).append((devices, key))
    for registers, found in sorted(by_regs.items(), key=lambda kv: -len(kv[1])):
        (lo, lo_key), (hi, hi_key) = min(found), max(found)
        if hi > lo:
            kb = (summary[hi_key]["rss_end_mb"] - summary[lo_key]["rss_end_mb"]) * 1024
            return f"{lo}x{registers}..{hi}x{registers}", kb / (hi - lo)
    return None


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()

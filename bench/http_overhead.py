"""The cost of the HTTP component under load: ingest throughput and CPU per sample of a
daemon without the HTTP server, and of the same daemon with one dashboard open on a device
page and 10 API clients polling ``/api/v1/devices`` once a second. Goal: within 5 %.

The daemon runs as a ``fieldgate run`` subprocess with simulated devices producing volume
(4 devices of 2,005 points every 0.1 s: 80,200 samples/s offered, ``--points``) and no
uplink (the buffer keeps everything), so the figures are the ingest path's. The load runs in
this process and offers what the issue names:

- the dashboard's device page on ``bench-0``, as app.js opens it: one read of the device
  with its points, the live stream of that device (``/api/v1/stream?device=bench-0``), and
  the page's refresh of status and poll statistics every 5 s
  (``/api/v1/devices/bench-0?points=false``); ``--stream-all`` streams every device instead;
- 10 clients polling ``/api/v1/devices`` (every point of every device, about 0.5 MB, or
  120 KB gzipped: aiohttp's client asks for gzip as browsers do) once a second each, at
  independent phases.

Throughput is samples committed per second (``buffer.stats`` ``next_seq`` over the window);
CPU per sample is the daemon's user+system CPU time over the window divided by those
samples (the clients' own CPU is not counted: they are this process). Each run pair
(without, then with) is interleaved, so drift of the machine hits both alike; the overhead is
the median over the pairs of the per-pair change, and the medians of each mode are printed
beside it. The machine's load average before and after goes into the result file.

Both daemons run with the HTTP CPU meter (``FIELDGATE_HTTP_CPU=1``, gateway/http/cpu.py;
``--no-meter`` turns it off): the with-HTTP run also reports the CPU the server's own
callbacks took (``http_cpu_ms_per_s``, by kind of callback in ``http_cpu_by_ms_per_s``) and
what that adds to the rest of the same daemon's CPU (``http_cpu_pct_of_rest``) and to the
daemon's CPU per second without the server (``http_cpu_pct_of_without``, the medians: the
HTTP work follows the polls, not the samples, so a run whose ingest the machine starved does
not inflate it). These figures count the server's own work, so the machine's other load
moves them far less than it moves the comparison of two runs; they leave out what the
server causes elsewhere (the garbage it leaves for a collection another task triggers,
cache misses).

    python bench/http_overhead.py --seconds 30 --runs 3   # about 4 minutes
    python bench/http_overhead.py --seconds 8 --runs 3    # a quick look, under 2 minutes
    python bench/http_overhead.py [--warmup 3] [--points 2000] [--stream-all] [--no-gzip]
                                  [--no-meter]

A run costs about ``warmup + seconds + 5`` s (the daemon's start and stop), so ``--runs N``
takes about ``2 N`` times that. On a shared machine the CPU per sample of the same daemon
varies by about 10 % between runs: use 30-second windows to resolve a 5 % goal.
Results: bench/results/http_overhead.json (bench/common.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import Conditions, median, write_result  # noqa: E402
from gateway.control import ControlUnreachable, send_command  # noqa: E402
from gateway.http.cpu import ENV  # noqa: E402
from tests.support.daemon import spawn  # noqa: E402
from tests.support.mosquitto import free_port  # noqa: E402

DEVICES = 4
INTERVAL = 0.1
POLLERS = 10
PAGE_REFRESH_S = 5.0  # app.js refreshes a device page's status and poll statistics


def site(workdir: Path, points: int, http_port: int | None) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "gateway": {"id": "bench-gw", "state_dir": str(workdir / "state")},
        "logging": {"level": "WARNING"},
        "store": {"max_bytes": 4_000_000_000},
        "devices": [{"id": f"bench-{i}", "type": "simulated", "interval": INTERVAL,
                     "extra_points": points, "seed": i} for i in range(DEVICES)],
    }
    if http_port is not None:
        cfg["http"] = {"host": "127.0.0.1", "port": http_port}
    return cfg


async def _http_cpu(state_dir: Path) -> dict[str, Any] | None:
    """The daemon's own HTTP CPU so far (gateway/http/cpu.py: ``seconds`` and ``by``
    kind of callback), None when the meter is off."""
    reply = await send_command(state_dir, "http.stats", {}, timeout=30)
    cpu: dict[str, Any] = reply["result"]["cpu"]
    return cpu if cpu["on"] else None


async def _next_seq(state_dir: Path) -> int:
    reply = await send_command(state_dir, "buffer.stats", {}, timeout=30)
    return int(reply["result"]["next_seq"])


async def _wait_socket(state_dir: Path, proc: subprocess.Popen[bytes], log: Path,
                       timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            await _next_seq(state_dir)
            return
        except (OSError, KeyError, ControlUnreachable):
            if proc.poll() is not None:
                raise SystemExit(f"the daemon exited with {proc.returncode}:\n"
                                 + log.read_text()[-3000:]) from None  # noqa: ASYNC240
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def _wait_http(base: str, timeout: float = 60) -> None:
    """Until the HTTP server answers /readyz with 200 (it listens a little after the
    control socket does)."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while True:
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(base + "/readyz") as resp:
                    if resp.status == 200:
                        return
            if time.monotonic() > deadline:
                raise SystemExit(f"the HTTP server at {base} did not get ready in {timeout:g} s")
            await asyncio.sleep(0.2)


async def _stream(base: str, device: str | None, stop: asyncio.Event, seen: list[int]) -> None:
    query = f"?device={device}" if device else ""
    async with aiohttp.ClientSession() as http, \
            http.get(base + "/api/v1/stream" + query) as resp:
        resp.raise_for_status()
        # By chunk, not by line: the snapshot of a device of 2,000 points is one line longer
        # than aiohttp's line limit.
        async for chunk in resp.content.iter_any():
            seen[0] += len(chunk)
            if stop.is_set():
                return


async def _poll(base: str, path: str, every: float, stop: asyncio.Event,
                done: list[int], gzip: bool = True) -> None:
    headers = None if gzip else {"Accept-Encoding": "identity"}
    async with aiohttp.ClientSession(headers=headers) as http:
        while not stop.is_set():
            t0 = time.monotonic()
            async with http.get(base + path) as resp:
                await resp.read()
                resp.raise_for_status()
                done[0] += 1
            await asyncio.sleep(max(0.0, every - (time.monotonic() - t0)))


async def _device_page(base: str, device: str | None, stop: asyncio.Event,
                       streamed: list[int], refreshed: list[int]) -> None:
    """What app.js does on a device page: read the device, open its stream, refresh the
    status and poll statistics every 5 s. ``device`` None: the stream of every device."""
    page = device or "bench-0"
    async with aiohttp.ClientSession() as http, \
            http.get(f"{base}/api/v1/devices/{page}") as resp:
        resp.raise_for_status()
        await resp.read()
    refresh = asyncio.create_task(_poll(base, f"/api/v1/devices/{page}?points=false",
                                        PAGE_REFRESH_S, stop, refreshed))
    try:
        await _stream(base, device, stop, streamed)
    finally:
        refresh.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await refresh


async def one_run(with_http: bool, seconds: float, warmup: float, points: int,
                  stream_all: bool, meter: bool, gzip: bool = True) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        port = free_port() if with_http else None
        config = workdir / "site.yaml"
        config.write_text(yaml.safe_dump(site(workdir, points, port)))
        proc = spawn(config, env={ENV: "1" if meter else "0"}, log=workdir / "daemon.log")
        state_dir = workdir / "state"
        stop = asyncio.Event()
        load: list[asyncio.Task[None]] = []
        streamed, polled, refreshed = [0], [0], [0]
        try:
            await _wait_socket(state_dir, proc, workdir / "daemon.log")
            if port is not None:
                base = f"http://127.0.0.1:{port}"
                await _wait_http(base)
                # The dashboard's device page streams its device; --stream-all: every sample.
                device = None if stream_all else "bench-0"
                load.append(asyncio.create_task(
                    _device_page(base, device, stop, streamed, refreshed)))
                load += [asyncio.create_task(_poll(base, "/api/v1/devices", 1.0, stop, polled,
                                                   gzip)) for _ in range(POLLERS)]
            await asyncio.sleep(warmup)
            ps = psutil.Process(proc.pid)
            h0 = await _http_cpu(state_dir)
            c0, s0, t0 = sum(ps.cpu_times()[:2]), await _next_seq(state_dir), time.monotonic()
            await asyncio.sleep(seconds)
            c1, s1, t1 = sum(ps.cpu_times()[:2]), await _next_seq(state_dir), time.monotonic()
            h1 = await _http_cpu(state_dir)
        finally:
            stop.set()
            for task in load:
                task.cancel()
            failed = []
            for task in load:
                with contextlib.suppress(asyncio.CancelledError):
                    try:
                        await task
                    except Exception as err:
                        failed.append(repr(err))
            proc.terminate()
            proc.wait(60)
    samples = s1 - s0
    if failed:
        raise SystemExit(f"the HTTP load failed, so this run measured less than it should: "
                         f"{failed[:3]}")
    if samples <= 0:
        raise SystemExit(f"the daemon committed no samples in {seconds:g} s "
                         f"({'with' if with_http else 'without'} http): is it running?")
    run: dict[str, Any] = {
        "http": with_http, "samples_per_s": samples / (t1 - t0),
        "cpu_us_per_sample": (c1 - c0) / samples * 1e6 if samples else None,
        "cpu_ms_per_s": (c1 - c0) / (t1 - t0) * 1e3,
        "api_polls": polled[0], "page_refreshes": refreshed[0], "stream_bytes": streamed[0]}
    if with_http and h0 is not None and h1 is not None:
        # The HTTP side's own CPU (the meter), and what it adds to the rest of the daemon's
        # CPU in the same run: a share within one process, which the machine's other load
        # moves far less than it moves a comparison of two runs.
        http_s = h1["seconds"] - h0["seconds"]
        run["http_cpu_ms_per_s"] = http_s / (t1 - t0) * 1e3
        run["http_cpu_pct_of_rest"] = http_s / ((c1 - c0) - http_s) * 100
        run["http_cpu_by_ms_per_s"] = {
            k: round((v - h0["by"].get(k, 0.0)) / (t1 - t0) * 1e3, 2)
            for k, v in sorted(h1["by"].items(), key=lambda kv: -kv[1])}
    print(f"  {'with' if with_http else 'without'} http: {run['samples_per_s']:,.0f} samples/s, "
          f"{run['cpu_us_per_sample']:.2f} us CPU/sample, {polled[0]} polls, "
          f"{refreshed[0]} page refreshes, {streamed[0]:,} B streamed"
          + (f"; HTTP's own CPU {run['http_cpu_ms_per_s']:.1f} ms/s, "
             f"+{run['http_cpu_pct_of_rest']:.1f} % of the rest"
             if "http_cpu_ms_per_s" in run else ""))
    return run


def pct(after: float, before: float) -> float:
    return (after / before - 1) * 100


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0,
                        help="measured window of each run (after the warm-up)")
    parser.add_argument("--runs", type=int, default=3, help="run pairs (without, with HTTP)")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--points", type=int, default=2000,
                        help="extra points per device (4 devices every 0.1 s)")
    parser.add_argument("--stream-all", action="store_true",
                        help="stream every device's samples, not one device's as the "
                        "dashboard's device page does")
    parser.add_argument("--no-meter", action="store_true",
                        help=f"run the daemons without the HTTP CPU meter ({ENV})")
    parser.add_argument("--no-gzip", action="store_true",
                        help="the pollers ask for no compression (Accept-Encoding: identity), "
                        "as curl does without --compressed")
    args = parser.parse_args()
    started = time.monotonic()
    runs: list[dict[str, Any]] = []
    pairs: list[dict[str, float]] = []
    with Conditions() as conditions:
        for i in range(args.runs):
            print(f"run pair {i + 1}/{args.runs}")
            without, with_ = (asyncio.run(one_run(flag, args.seconds, args.warmup,
                                                  args.points, args.stream_all,
                                                  not args.no_meter, not args.no_gzip))
                              for flag in (False, True))
            pair = {
                "throughput_change_pct": pct(with_["samples_per_s"], without["samples_per_s"]),
                "cpu_per_sample_change_pct": pct(with_["cpu_us_per_sample"],
                                                 without["cpu_us_per_sample"])}
            pairs.append(pair)
            with_["vs_previous_run"] = pair  # the change against the run just before
            runs += [without, with_]
    summary: dict[str, Any] = {}
    for label, flag in (("without_http", False), ("with_http", True)):
        picked = [r for r in runs if r["http"] is flag]
        summary[label] = {
            "samples_per_s": round(median(r["samples_per_s"] for r in picked)),
            "cpu_us_per_sample": round(median(r["cpu_us_per_sample"] for r in picked), 3)}
    for key in ("throughput_change_pct", "cpu_per_sample_change_pct"):
        summary[key] = round(median(p[key] for p in pairs), 1)
    metered = [r for r in runs if "http_cpu_ms_per_s" in r]
    if metered:
        summary["http_cpu_ms_per_s"] = round(median(r["http_cpu_ms_per_s"] for r in metered), 1)
        summary["http_cpu_pct_of_rest"] = round(
            median(r["http_cpu_pct_of_rest"] for r in metered), 1)
        # The same cost against the daemon without the server (its whole CPU per second):
        # the HTTP work goes with the polls, not with the samples, so a run whose ingest the
        # machine starved does not inflate this share as it does the one above.
        without_ms = median(r["cpu_ms_per_s"] for r in runs if not r["http"])
        summary["http_cpu_pct_of_without"] = round(
            summary["http_cpu_ms_per_s"] / without_ms * 100, 1)
    params = {"devices": DEVICES, "points_per_device": args.points + 5,
              "interval_s": INTERVAL, "pollers": POLLERS, "poll_every_s": 1.0, "streams": 1,
              "stream": "every device" if args.stream_all else "one device",
              "dashboard": "device page of bench-0 (read, stream, refresh every 5 s)",
              "seconds": args.seconds, "warmup_s": args.warmup, "runs": args.runs,
              "http_cpu_meter": not args.no_meter,
              "pollers_accept_gzip": not args.no_gzip}
    write_result(
        "http_overhead",
        what=("fieldgate run as its own process (4 simulated devices, no uplink), without "
              "the HTTP server and with it serving one dashboard on a device page (its "
              "live stream and 5-s refresh) and 10 clients polling /api/v1/devices once a "
              "second; run pairs interleaved"),
        params=params, summary=summary, runs=runs,
        conditions=conditions, goal="throughput and CPU per sample within 5 %")
    print(f"median overhead with HTTP: throughput {summary['throughput_change_pct']:+.1f} %, "
          f"CPU per sample {summary['cpu_per_sample_change_pct']:+.1f} % (goal: within 5 %); "
          f"{time.monotonic() - started:.0f} s in all")
    if metered:
        print(f"HTTP's own CPU (meter, median): {summary['http_cpu_ms_per_s']:.1f} ms per second, "
              f"+{summary['http_cpu_pct_of_rest']:.1f} % of the rest of the daemon's CPU, "
              f"+{summary['http_cpu_pct_of_without']:.1f} % of the daemon's CPU without HTTP")


if __name__ == "__main__":
    main()

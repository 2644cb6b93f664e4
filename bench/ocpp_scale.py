"""OCPP scale benchmark: N simulated 1.6J chargers against the driver's central system.

Every run starts a fresh gateway process (the driver's central system alone) and a separate
client process (the chargers), so one run's heap never inflates the next run's RSS. Each
client connects with HTTP Basic (security profile 1, one scrypt check per charger), boots,
stays connected and, once all are booted, sends Heartbeat every 30 s and MeterValues every
10 s (start times jittered). Reported: seconds until all chargers booted, CALL->CALLRESULT
latency p50/p99 measured by the clients during the steady phase, and the gateway process's
RSS (idle before the first connection, peak, and the per-connection difference). Median over
--runs. ``--whole`` runs the whole gateway instead of the bare driver: the central system with
the SQLite store, one alarm rule per charger and the uplink to a real mosquitto (writes
``ocpp_scale_whole.json``).

    python bench/ocpp_scale.py [--chargers 1000] [--duration 60] [--runs 3] [--tracemalloc]
                               [--whole]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PASSWORD = "bench-password-0123456789"


# --- client process ----------------------------------------------------------------------

async def _client(url: str, cid: str, start: asyncio.Semaphore, booted: list[float],
                  lat: list[float], t0: float, steady: asyncio.Event, stop: list[float],
                  hb: float, mv: float, retries: list[str]) -> None:
    import websockets
    from websockets.exceptions import WebSocketException

    from drivers.ocpp.security import basic_auth_header

    while True:  # like a real charger: a refused or timed-out handshake is retried later
        try:
            async with start:
                ws = await websockets.connect(
                    f"{url}/{cid}", subprotocols=["ocpp1.6"],  # type: ignore[list-item]
                    additional_headers={"Authorization": basic_auth_header(cid, PASSWORD)},
                    open_timeout=30)
            break
        except (WebSocketException, OSError, TimeoutError):
            retries.append(cid)
            await asyncio.sleep(random.uniform(2.0, 6.0))
    n = 0

    async def call(action: str, payload: dict[str, Any]) -> float:
        nonlocal n
        n += 1
        uid = f"{cid}-{n}"
        sent = time.perf_counter()
        await ws.send(json.dumps([2, uid, action, payload]))
        reply = json.loads(await ws.recv())
        if reply[0] != 3 or reply[1] != uid:
            raise RuntimeError(f"{cid}: unexpected reply {reply}")
        return time.perf_counter() - sent

    try:
        await call("BootNotification", {"chargePointVendor": "bench", "chargePointModel": "b"})
        booted.append(time.perf_counter() - t0)
        await steady.wait()
        loop = asyncio.get_running_loop()
        next_hb = loop.time() + random.uniform(0, hb)
        next_mv = loop.time() + random.uniform(0, mv)
        wh = 0.0
        while True:
            due = min(next_hb, next_mv)
            if due >= stop[0]:
                break
            await asyncio.sleep(max(0.0, due - loop.time()))
            if next_mv <= next_hb:
                wh += 30.5
                lat.append(await call("MeterValues", {"connectorId": 1, "meterValue": [{
                    "timestamp": "2024-01-01T00:00:00Z", "sampledValue": [
                        {"value": f"{wh:.1f}", "measurand": "Energy.Active.Import.Register",
                         "unit": "Wh"},
                        {"value": "11.0", "measurand": "Power.Active.Import", "unit": "kW"}]}]}))
                next_mv += mv
            else:
                lat.append(await call("Heartbeat", {}))
                next_hb += hb
    finally:
        await ws.close()


async def _clients_main(url: str, count: int, duration: float, hb: float, mv: float,
                        in_flight: int) -> None:
    t0 = time.perf_counter()
    booted: list[float] = []
    lat: list[float] = []
    steady = asyncio.Event()
    start = asyncio.Semaphore(in_flight)  # handshakes in flight at a time
    stop = [float("inf")]
    retries: list[str] = []
    tasks = [asyncio.create_task(_client(url, f"cp-{i:05d}", start, booted, lat, t0, steady,
                                         stop, hb, mv, retries)) for i in range(count)]
    while len(booted) < count:
        await asyncio.sleep(0.2)
        failed = [t for t in tasks if t.done() and t.exception()]
        if failed:
            raise RuntimeError(f"{len(failed)} clients failed: {failed[0].exception()}")
    print(json.dumps({"phase": "booted", "seconds": max(booted),
                      "connect_retries": len(retries)}), flush=True)
    # steady phase: all chargers stay connected; heartbeats and meter values until the end
    stop[0] = asyncio.get_running_loop().time() + duration
    steady.set()
    await asyncio.gather(*tasks)
    lat.sort()
    print(json.dumps({"phase": "done", "calls": len(lat),
                      "p50_ms": lat[len(lat) // 2] * 1000,
                      "p99_ms": lat[int(len(lat) * 0.99)] * 1000}), flush=True)


# --- gateway process ---------------------------------------------------------------------

def _top_diff(before: Any, after: Any, n: int = 15) -> list[str]:
    stats = after.compare_to(before, "lineno")
    return [str(s) for s in stats[:n]]


async def _gateway_main(count: int, trace: bool) -> None:
    """Serve the chargers; answer "stats" on stdin with RSS figures, then exit."""
    import gc
    import logging
    import tracemalloc

    import psutil

    from drivers.ocpp.config import OcppDeviceConfig
    from drivers.ocpp.driver import OcppDriver
    from drivers.ocpp.security import hash_password

    logging.basicConfig(level=logging.WARNING)
    proc = psutil.Process()
    stored = hash_password(PASSWORD)
    devices = [OcppDeviceConfig.model_validate({"id": "csms", "type": "ocpp", "role": "server",
                                                "server": {"host": "127.0.0.1", "port": 0}})]
    devices += [OcppDeviceConfig(id=f"cp-{i:05d}", type="ocpp", password_hash=stored)
                for i in range(count)]
    from bench.common import CountingContext

    ctx = CountingContext()
    driver = OcppDriver(devices, ctx)  # type: ignore[arg-type]
    server = asyncio.create_task(driver.server.run())
    await driver.server.ready.wait()
    gc.collect()
    idle = proc.memory_info().rss
    snap0 = None
    if trace:
        tracemalloc.start(3)
        snap0 = tracemalloc.take_snapshot()
    peak = [idle]

    async def sample_rss() -> None:
        while True:
            peak[0] = max(peak[0], proc.memory_info().rss)
            await asyncio.sleep(0.25)

    sampler = asyncio.create_task(sample_rss())
    print(json.dumps({"port": driver.server.port}), flush=True)
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            break
        cmd = line.strip()
        connected = len(driver.hub.sessions)
        now = proc.memory_info().rss
        peak[0] = max(peak[0], now)
        out: dict[str, Any] = {"rss_mb": now / 2**20, "sessions": connected}
        if trace and snap0 is not None and cmd == "booted":
            out["top"] = _top_diff(snap0, tracemalloc.take_snapshot())
            out["traced_mb"] = tracemalloc.get_traced_memory()[0] / 2**20
        if cmd == "stats":
            out.update(rss_idle_mb=idle / 2**20, rss_peak_mb=peak[0] / 2**20,
                       samples=ctx.samples)
            print(json.dumps(out), flush=True)
            break
        print(json.dumps(out), flush=True)
    sampler.cancel()
    server.cancel()
    await asyncio.gather(server, sampler, return_exceptions=True)


async def _whole_gateway_main(count: int) -> None:
    """The whole gateway in this process: the OCPP central system plus the store, one alarm
    rule per charger and the uplink to a real mosquitto; same stdin/stdout protocol."""
    import gc
    import logging
    import tempfile

    import psutil
    import yaml

    from bench._uplink_common import start_app, stop_app
    from drivers.ocpp.security import hash_password
    from tests.support.mosquitto import Mosquitto, free_port

    logging.basicConfig(level=logging.WARNING)
    proc = psutil.Process()
    stored = hash_password(PASSWORD)
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="fieldgate-ocpp-") as tmp, \
            Mosquitto(Path(tmp)) as broker:
        site = {
            "gateway": {"id": "ocpp-bench", "state_dir": str(Path(tmp) / "state")},
            "logging": {"level": "WARNING"},
            "uplink": {"broker": {"host": broker.host, "port": broker.port}},
            "devices": [{"id": "csms", "type": "ocpp", "role": "server",
                         "server": {"host": "127.0.0.1", "port": port}}]
            + [{"id": f"cp-{i:05d}", "type": "ocpp", "password_hash": stored}
               for i in range(count)],
            "rules": {"alarms": [{"name": f"power-{i:05d}", "devices": [f"cp-{i:05d}"],
                                  "point": "Power.Active.Import",
                                  "condition": {"op": ">", "value": 1e9}}
                                 for i in range(count)]},
        }
        config = Path(tmp) / "site.yaml"
        config.write_text(yaml.safe_dump(site, sort_keys=False))
        app, task = await start_app(config)
        gc.collect()
        idle = proc.memory_info().rss
        peak = [idle]

        async def sample_rss() -> None:
            while True:
                peak[0] = max(peak[0], proc.memory_info().rss)
                await asyncio.sleep(0.25)

        sampler = asyncio.create_task(sample_rss())
        print(json.dumps({"port": port}), flush=True)
        loop = asyncio.get_running_loop()
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                break
            now = proc.memory_info().rss
            peak[0] = max(peak[0], now)
            out: dict[str, Any] = {"rss_mb": now / 2**20}
            if line.strip() == "stats":
                out.update(rss_idle_mb=idle / 2**20, rss_peak_mb=peak[0] / 2**20,
                           samples=app.pipeline.stats.samples)
                print(json.dumps(out), flush=True)
                break
            print(json.dumps(out), flush=True)
        sampler.cancel()
        await asyncio.gather(sampler, return_exceptions=True)
        await stop_app(app, task)


# --- orchestration -----------------------------------------------------------------------

async def _run_once(count: int, duration: float, hb: float, mv: float, trace: bool,
                    in_flight: int, whole: bool = False) -> dict[str, float]:
    me = [sys.executable, __file__, "--chargers", str(count)]
    gw = await asyncio.create_subprocess_exec(
        *me, "--gateway", *(["--tracemalloc"] if trace else []), *(["--whole"] if whole else []),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=ROOT)
    assert gw.stdout is not None and gw.stdin is not None

    async def ask(cmd: str) -> dict[str, Any]:
        assert gw.stdout is not None and gw.stdin is not None
        gw.stdin.write(f"{cmd}\n".encode())
        await gw.stdin.drain()
        return dict(json.loads(await gw.stdout.readline()))

    port = json.loads(await gw.stdout.readline())["port"]
    clients = await asyncio.create_subprocess_exec(
        *me, "--client", f"ws://127.0.0.1:{port}/ocpp", "--duration", str(duration),
        "--hb", str(hb), "--mv", str(mv), "--in-flight", str(in_flight),
        stdout=subprocess.PIPE, cwd=ROOT)
    assert clients.stdout is not None
    result: dict[str, float] = {}
    async for line in clients.stdout:
        msg = json.loads(line)
        if msg["phase"] == "booted":
            result["boot_all_s"] = msg["seconds"]
            result["connect_retries"] = msg["connect_retries"]
            state = await ask("booted")
            result["rss_booted_mb"] = state["rss_mb"]
            for entry in state.get("top", []):
                print(f"  tracemalloc: {entry}", file=sys.stderr)
            if "traced_mb" in state:
                print(f"  tracemalloc: {state['traced_mb']:.1f} MB traced", file=sys.stderr)
        else:
            result.update(p50_ms=msg["p50_ms"], p99_ms=msg["p99_ms"], calls=msg["calls"])
    await clients.wait()
    stats = await ask("stats")
    await gw.wait()
    if clients.returncode != 0:
        raise RuntimeError(f"client process failed with {clients.returncode}")
    result.update(rss_idle_mb=stats["rss_idle_mb"], rss_mb=stats["rss_peak_mb"],
                  samples=stats["samples"])
    result["kb_per_connection"] = (result["rss_booted_mb"] - result["rss_idle_mb"]) * 1024 / count
    return result


def main() -> int:
    from bench.common import Conditions, write_result

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--chargers", type=int, default=1000)
    p.add_argument("--duration", type=float, default=60.0, help="steady phase seconds")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--hb", type=float, default=30.0)
    p.add_argument("--mv", type=float, default=10.0)
    p.add_argument("--in-flight", type=int, default=100,
                   help="handshakes in flight at once (--in-flight 1000: all at the same time)")
    p.add_argument("--tracemalloc", action="store_true",
                   help="print the gateway's top allocations by line once all are booted")
    p.add_argument("--whole", action="store_true",
                   help="run the whole gateway (store, rules, uplink to mosquitto), not the "
                        "bare driver")
    p.add_argument("--client", help=argparse.SUPPRESS)
    p.add_argument("--gateway", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.client:
        asyncio.run(_clients_main(args.client, args.chargers, args.duration, args.hb, args.mv,
                                  args.in_flight))
        return 0
    if args.gateway:
        if args.whole:
            asyncio.run(_whole_gateway_main(args.chargers))
        else:
            asyncio.run(_gateway_main(args.chargers, args.tracemalloc))
        return 0
    runs = []
    with Conditions() as conditions:
        for i in range(args.runs):
            r = asyncio.run(_run_once(args.chargers, args.duration, args.hb, args.mv,
                                      args.tracemalloc, args.in_flight, args.whole))
            print(f"run {i + 1}: {json.dumps({k: round(v, 2) for k, v in r.items()})}",
                  flush=True)
            runs.append(r)
    median = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    print(f"median of {args.runs} fresh gateway processes: all booted in "
          f"{median['boot_all_s']:.1f} s ({median['connect_retries']:.0f} connect retries); "
          f"latency p50 {median['p50_ms']:.1f} ms, "
          f"p99 {median['p99_ms']:.1f} ms ({int(median['calls'])} calls); gateway RSS peak "
          f"{median['rss_mb']:.0f} MB (idle {median['rss_idle_mb']:.0f} MB, "
          f"{median['kb_per_connection']:.0f} KB per connection)")
    name = "ocpp_scale" if args.in_flight == 100 else f"ocpp_scale_inflight{args.in_flight}"
    if args.whole:
        name += "_whole"
    write_result(
        name,
        what=("whole gateway (OCPP central system, store, one alarm rule per charger, uplink "
              "to mosquitto) in a process of its own, chargers in another" if args.whole else
              "bare OCPP driver (no pipeline, store or uplink; a counting context) in a "
              "process of its own, chargers in another"),
        goal="p99 < 50 ms, RSS < 300 MB",
        params={"chargers": args.chargers, "duration_s": args.duration,
                "handshakes_in_flight": args.in_flight, "heartbeat_s": args.hb,
                "meter_values_s": args.mv, "runs": args.runs},
        summary=median, runs=runs, conditions=conditions)
    return 0

if __name__ == "__main__":
    raise SystemExit(main())

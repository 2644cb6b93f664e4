"""OCPP scale benchmark: N simulated 1.6J chargers (clients in a separate process) against the
driver's central system in this process.

Each client connects with HTTP Basic (security profile 1, one scrypt check per charger), boots,
then sends Heartbeat every 30 s and MeterValues every 10 s (start times jittered). Reported:
seconds until all chargers booted, CALL->CALLRESULT latency p50/p99 measured by the clients
during the steady phase, and the gateway process's RSS. Median over --runs.

    python bench/ocpp_scale.py [--chargers 1000] [--duration 60] [--runs 3]
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
                  lat: list[float], t0: float, steady: asyncio.Event, stop_at: float,
                  hb: float, mv: float) -> None:
    import websockets

    from drivers.ocpp.security import basic_auth_header

    async with start:
        ws = await websockets.connect(
            f"{url}/{cid}", subprotocols=["ocpp1.6"],  # type: ignore[list-item]
            additional_headers={"Authorization": basic_auth_header(cid, PASSWORD)},
            open_timeout=120)
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

    await call("BootNotification", {"chargePointVendor": "bench", "chargePointModel": "b"})
    booted.append(time.perf_counter() - t0)
    await steady.wait()
    loop = asyncio.get_running_loop()
    next_hb = loop.time() + random.uniform(0, hb)
    next_mv = loop.time() + random.uniform(0, mv)
    wh = 0.0
    while loop.time() < stop_at:
        await asyncio.sleep(max(0.0, min(next_hb, next_mv) - loop.time()))
        if loop.time() >= next_mv:
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
    await ws.close()


async def _clients_main(url: str, count: int, duration: float, hb: float, mv: float) -> None:
    t0 = time.perf_counter()
    booted: list[float] = []
    lat: list[float] = []
    steady = asyncio.Event()
    start = asyncio.Semaphore(100)
    stop_at = float("inf")
    tasks = [asyncio.create_task(_client(url, f"cp-{i:05d}", start, booted, lat, t0, steady,
                                         stop_at, hb, mv)) for i in range(count)]
    while len(booted) < count:
        await asyncio.sleep(0.2)
        failed = [t for t in tasks if t.done() and t.exception()]
        if failed:
            raise RuntimeError(f"{len(failed)} clients failed: {failed[0].exception()}")
    all_booted = max(booted)
    loop = asyncio.get_running_loop()
    # the clients read stop_at through their closure: restart them with the real end
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    print(json.dumps({"phase": "booted", "seconds": all_booted}), flush=True)
    # steady phase: reconnects are cached (no scrypt), then heartbeats and meter values
    steady.set()
    stop_at = loop.time() + duration
    tasks = [asyncio.create_task(_client(url, f"cp-{i:05d}", start, [], lat, t0, steady,
                                         stop_at, hb, mv)) for i in range(count)]
    await asyncio.gather(*tasks)
    lat.sort()
    print(json.dumps({"phase": "done", "calls": len(lat),
                      "p50_ms": lat[len(lat) // 2] * 1000,
                      "p99_ms": lat[int(len(lat) * 0.99)] * 1000}), flush=True)


# --- gateway side ------------------------------------------------------------------------

class CountingContext:
    """A DriverContext that counts and drops samples, so RSS is the driver's, not a list's."""

    def __init__(self) -> None:
        import logging

        from drivers.testing import MemoryKV
        from gateway.clock import SystemClock

        self.logger = logging.getLogger("bench")
        self.clock = SystemClock()
        self.state_dir = Path(".")
        self.samples = 0
        self.events = 0
        self._kv: dict[str, Any] = {}
        self._mkv = MemoryKV

    async def emit(self, batch: Any) -> None:
        self.samples += len(batch)

    def set_status(self, device: str, status: Any, reason: str = "") -> None:
        pass

    async def emit_event(self, event: Any) -> None:
        self.events += 1

    def kv(self, namespace: str) -> Any:
        return self._kv.setdefault(namespace, self._mkv())


async def _run_once(count: int, duration: float, hb: float, mv: float) -> dict[str, float]:
    import psutil

    from drivers.ocpp.config import OcppDeviceConfig
    from drivers.ocpp.driver import OcppDriver
    from drivers.ocpp.security import hash_password

    stored = hash_password(PASSWORD)
    devices = [OcppDeviceConfig.model_validate({"id": "csms", "type": "ocpp", "role": "server",
                                                "server": {"host": "127.0.0.1", "port": 0}})]
    devices += [OcppDeviceConfig(id=f"cp-{i:05d}", type="ocpp", password_hash=stored)
                for i in range(count)]
    ctx = CountingContext()
    driver = OcppDriver(devices, ctx)  # type: ignore[arg-type]
    server = asyncio.create_task(driver.server.run())
    await driver.server.ready.wait()
    url = f"ws://127.0.0.1:{driver.server.port}/ocpp"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--client", url, "--chargers", str(count),
        "--duration", str(duration), "--hb", str(hb), "--mv", str(mv),
        stdout=subprocess.PIPE, cwd=ROOT)
    result: dict[str, float] = {}
    rss = 0
    assert proc.stdout is not None
    async for line in proc.stdout:
        msg = json.loads(line)
        rss = max(rss, psutil.Process().memory_info().rss)
        if msg["phase"] == "booted":
            result["boot_all_s"] = msg["seconds"]
        else:
            result.update(p50_ms=msg["p50_ms"], p99_ms=msg["p99_ms"], calls=msg["calls"])
    await proc.wait()
    rss = max(rss, psutil.Process().memory_info().rss)
    result["rss_mb"] = rss / 2**20
    result["samples"] = ctx.samples
    server.cancel()
    await asyncio.gather(server, return_exceptions=True)
    if proc.returncode != 0:
        raise RuntimeError(f"client process failed with {proc.returncode}")
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--chargers", type=int, default=1000)
    p.add_argument("--duration", type=float, default=60.0, help="steady phase seconds")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--hb", type=float, default=30.0)
    p.add_argument("--mv", type=float, default=10.0)
    p.add_argument("--client", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.client:
        asyncio.run(_clients_main(args.client, args.chargers, args.duration, args.hb, args.mv))
        return 0
    runs = []
    for i in range(args.runs):
        r = asyncio.run(_run_once(args.chargers, args.duration, args.hb, args.mv))
        print(f"run {i + 1}: {json.dumps({k: round(v, 2) for k, v in r.items()})}", flush=True)
        runs.append(r)
    median = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    summary = {"chargers": args.chargers, "duration_s": args.duration, "runs": runs,
               "median": median, "goals": {"p99_ms": 50, "rss_mb": 300}}
    print(f"all booted in {median['boot_all_s']:.1f} s; latency p50 {median['p50_ms']:.1f} ms, "
          f"p99 {median['p99_ms']:.1f} ms ({int(median['calls'])} calls); gateway RSS "
          f"{median['rss_mb']:.0f} MB")
    out = ROOT / "bench" / "results" / "ocpp_scale.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Local history (siteops) bench: its CPU cost at an offered load, and its query times.

``cost``: the gateway (App) in this process without drivers or uplink; every second this
script puts one sample of each of ``--devices`` x ``--points`` points into the pipeline
(100 x 125 = 12,500 samples/s by default: an offered load, not saturation). After
``--warmup`` seconds the CPU time of the process (all threads: the loop and SQLite's) is
measured over ``--window`` seconds, once with ``siteops.history.enabled: false`` and once
with it on, per run. The figure is the extra CPU with the history, as a share of the CPU
without it: the *bare ingest path* figure. The baseline is the ingest path only (pipeline
commit and store, plus this script making the samples), so the share is an upper bound of
the history's share of a whole gateway, where drivers and the uplink also cost CPU.

``site``: the whole gateway (bench/site.py's harness in this process: Modbus polling of
``--devices`` x ``--points`` registers served by simulators in another process, every
register each second, the store, one alarm rule per device and the uplink to a real
mosquitto), once with the history off and once on, per run; the CPU of this process (the
gateway: the simulators and the broker are other processes) per sample committed. This is
the issue's denominator: the history's share of what the whole gateway costs. With the
history on and ``--window`` of 60 or more, the window runs from just after a flush that
closes a minute to just after the first one ``--window`` - 30 s later (a whole number of
minute closes; the wall time is measured, so the figures stay per second).

``cost`` and ``site`` start from a store that already holds ``--prefill-minutes`` (default
120) of rollups of the same points (:mod:`bench._history_prefill`), both with the history
off and on: a history that has run for a while, as on a site. Writing to one a few minutes
old costs less (the previous release's layout kept a point's minutes on a page shared with
other points' until it had about 50 of them), so runs without it (``--prefill-minutes 0``,
and the results before it existed) are not comparable.

``query``: a store with 24 h of 1-minute rollups of ``--query-points`` points on each of
``--devices`` devices and a month of 15-minute energy of each device (built once, through
the history's own fold, from samples), then per run the median time of
``history.series`` for 24 h of one point (1-minute resolution) and of ``history.energy``
for the month across every device (per local day).

    python bench/history.py [--runs 2] [--devices 100] [--points 125] [--window 15]
                            [--warmup 5] [--query-points 5] [--only cost|site|query]
                            [--prefill-minutes 120]

Writes bench/results/history_cost.json (bare ingest path), history_site.json (whole
gateway) and history_query.json.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Conditions, medians, write_result
from gateway.config.loader import load_config
from gateway.model import Sample
from gateway.runtime import App
from gateway.siteops import history_cpu
from tests.support.app import write_config

DAY_MS = 86_400_000
TZ = "Europe/Berlin"
# Both modes run the history's own CPU meter (gateway/siteops/history_cpu.py): a steadier
# figure than the whole-process A/B, which other processes on the machine move.
os.environ[history_cpu.ENV] = "1"


def history_seconds(app: App) -> dict[str, float]:
    """The history's own CPU so far by part (its meter), zeros without a history."""
    comp = app.running.get("siteops")
    hist = getattr(comp, "history", None)
    return dict(hist.cpu.seconds) if hist is not None else dict.fromkeys(history_cpu.PARTS, 0.0)


async def minute_written(app: App, limit_s: float = 90.0) -> None:
    """Return just after the history's next flush that closes a minute (at once without a
    history). The site run's window goes from one to another, so it holds a whole number
    of minute closes (each writes 12,500 rows at 100 x 125 and settles the minute: a window
    of a fixed length held 0, 1 or 2 of them, a large part of the figure's noise)."""
    hist = getattr(app.running.get("siteops"), "history", None)
    if hist is None:
        return
    horizon, end = hist.stats.horizon, time.monotonic() + limit_s
    while hist.stats.horizon == horizon and time.monotonic() < end:
        await asyncio.sleep(0.1)


def spent(now: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: now[k] - before[k] for k in now}


def own_cpu(run: dict[str, float], cpu_per_s: float, parts: dict[str, float],
            wall: float) -> None:
    """Add the meter's figures to ``run``: ms/s (in all, and by part), and % of the rest of
    the daemon (the process's CPU without the history's own)."""
    hist_per_s = sum(parts.values()) / wall
    run["history_own_ms_per_s"] = 1000 * hist_per_s
    run["history_own_pct_of_rest"] = 100 * hist_per_s / max(cpu_per_s - hist_per_s, 1e-9)
    for part, seconds in parts.items():
        run[f"history_{part}_ms_per_s"] = 1000 * seconds / wall


def own_line(run: dict[str, float]) -> str:
    parts = ", ".join(f"{p} {run[f'history_{p}_ms_per_s']:.1f}" for p in history_cpu.PARTS)
    return (f"history's own CPU: {run['history_own_ms_per_s']:.1f} ms/s, "
            f"{run['history_own_pct_of_rest']:.1f} % of the rest of the daemon ({parts})")


# --- cost ----------------------------------------------------------------------------------

async def cost_run(history: bool, devices: int, points: int, warmup: float,
                   window: float, flush_interval: float = 10.0,
                   prefill_minutes: int = 0) -> dict[str, Any]:
    """CPU seconds per wall second of the ingest path at the offered load."""
    with tempfile.TemporaryDirectory(prefix="fieldgate-hist-") as tmp:
        cfg = {"logging": {"level": "WARNING"}, "gateway": {"timezone": TZ},
               "store": {"max_bytes": 20_000_000_000},
               "siteops": {"history": {"enabled": history, "flush_interval": flush_interval,
                                       "energy": [
                   {"devices": ["*"], "energy_point": "p000"}]}},
               "devices": []}
        path = write_config(Path(tmp), cfg)
        names = [(f"d{d:03d}", f"p{p:03d}") for d in range(devices) for p in range(points)]
        if prefill_minutes:  # both runs: the same store file to start from
            from bench._history_prefill import prefill

            (Path(tmp) / "state").mkdir(exist_ok=True)
            await asyncio.to_thread(prefill, Path(tmp) / "state" / "buffer.sqlite3", names,
                                    prefill_minutes)
        app = App(load_config(path), path)
        task = asyncio.create_task(app.run())
        await app.ready.wait()
        loop = asyncio.get_running_loop()
        start = loop.time()
        tick = 0
        measured: dict[str, float] = {}
        cpu0 = wall0 = 0.0
        offered = 0
        while True:
            now = loop.time()
            elapsed = now - start
            if elapsed >= warmup and not cpu0:
                cpu0, wall0, offered = time.process_time(), now, 0
                h0 = history_seconds(app)
            if elapsed >= warmup + window:
                measured = {"cpu_s": time.process_time() - cpu0, "wall_s": now - wall0,
                            "offered": offered}
                hist = spent(history_seconds(app), h0)
                break
            ts = int(time.time() * 1000)
            batch = [Sample(d, p, ts, float(tick + i % 97)) for i, (d, p) in enumerate(names)]
            for i in range(0, len(batch), 2_500):  # as drivers would: one batch per device group
                await app.pipeline.put(batch[i:i + 2_500])
            offered += len(batch)
            tick += 1
            await asyncio.sleep(max(0.0, start + tick - loop.time()))
        committed = app.pipeline.stats.samples
        app.request_stop()
        await task
    return {"cpu_per_s": measured["cpu_s"] / measured["wall_s"],
            "offered_per_s": measured["offered"] / measured["wall_s"],
            "wall_s": measured["wall_s"], "committed": float(committed), "hist": hist}


def cost(args: argparse.Namespace) -> None:
    runs = []
    with Conditions() as conditions:
        for i in range(args.runs):
            off = asyncio.run(cost_run(False, args.devices, args.points, args.warmup,
                                       args.window, prefill_minutes=args.prefill_minutes))
            on = asyncio.run(cost_run(True, args.devices, args.points, args.warmup,
                                      args.window, args.flush_interval, args.prefill_minutes))
            run = {"cpu_per_s_off": off["cpu_per_s"], "cpu_per_s_on": on["cpu_per_s"],
                   "offered_per_s": on["offered_per_s"],
                   "extra_pct": 100 * (on["cpu_per_s"] - off["cpu_per_s"]) / off["cpu_per_s"]}
            own_cpu(run, on["cpu_per_s"], on["hist"], on["wall_s"])
            runs.append(run)
            print(f"run {i + 1}: CPU {run['cpu_per_s_off']:.3f} s/s without history, "
                  f"{run['cpu_per_s_on']:.3f} with it: {run['extra_pct']:+.1f} % "
                  f"({run['offered_per_s']:,.0f} samples/s offered); {own_line(run)}",
                  flush=True)
    write_result(
        "history_cost",
        what=("App in this process, no drivers or uplink; this script offers one sample per "
              "point per second; CPU of the process (all threads) per wall second, history "
              "off and on; extra_pct = (on - off) / off"),
        goal="< 10 % at 100 devices x 125 points at 1 s",
        params={"runs": args.runs, "devices": args.devices, "points": args.points,
                "warmup": args.warmup, "window": args.window,
                "flush_interval": args.flush_interval,
                "prefill_minutes": args.prefill_minutes},
        summary=medians(runs, runs[0]), runs=runs, conditions=conditions)


# --- site: the whole gateway --------------------------------------------------------------

async def site_run(history: bool, devices: int, points: int, warmup: float,
                   window: float, prefill_minutes: int = 0) -> dict[str, Any]:
    """CPU seconds per wall second and per 1,000 committed samples of the whole gateway."""
    import yaml

    from bench._history_prefill import prefill
    from bench._uplink_common import start_app, stop_app
    from bench.site import Simulators, site_config
    from bench.site import points as point_map
    from tests.support.mosquitto import Mosquitto

    with tempfile.TemporaryDirectory(prefix="fieldgate-histsite-") as tmp:
        workdir = Path(tmp)
        sims = Simulators(devices, points)
        try:
            with Mosquitto(workdir) as broker:
                config = site_config(workdir, sims.ports, points, 1.0, broker.port, None)
                site = yaml.safe_load(config.read_text())
                site["siteops"] = {"history": {"enabled": history}}
                config.write_text(yaml.safe_dump(site, sort_keys=False))
                filled = {}
                if prefill_minutes:  # both runs: the same store file to start from
                    names = [(f"m{d:03d}", p["name"]) for d in range(devices)
                             for p in point_map(points)]
                    filled = await asyncio.to_thread(
                        prefill, workdir / "state" / "buffer.sqlite3", names, prefill_minutes)
                app, task = await start_app(config)
                try:
                    await asyncio.sleep(warmup)
                    await minute_written(app)  # the window starts just after a close
                    cpu0, n0 = time.process_time(), app.pipeline.stats.samples
                    t0, h0 = time.monotonic(), history_seconds(app)
                    await asyncio.sleep(window - 30 if history and window >= 60 else window)
                    if history and window >= 60:
                        await minute_written(app)  # ... and ends just after one
                    cpu = time.process_time() - cpu0
                    n, wall = app.pipeline.stats.samples - n0, time.monotonic() - t0
                    hist = spent(history_seconds(app), h0)
                finally:
                    await stop_app(app, task)
        finally:
            sims.close()
    return {"cpu_per_s": cpu / wall, "samples_per_s": n / wall,
            "cpu_per_1000": 1000 * cpu / max(n, 1), "wall_s": wall, "hist": hist, **filled}


def site(args: argparse.Namespace) -> None:
    runs = []
    with Conditions() as conditions:
        for i in range(args.runs):
            pair = {}
            for on in ((False, True) if i % 2 == 0 else (True, False)):  # alternate order
                pair[on] = asyncio.run(site_run(on, args.devices, args.points, args.warmup,
                                                args.window, args.prefill_minutes))
            off, on_ = pair[False], pair[True]
            run = {"cpu_per_1000_off": off["cpu_per_1000"],
                   "cpu_per_1000_on": on_["cpu_per_1000"],
                   "cpu_per_s_off": off["cpu_per_s"], "cpu_per_s_on": on_["cpu_per_s"],
                   "samples_per_s_off": off["samples_per_s"],
                   "samples_per_s_on": on_["samples_per_s"],
                   "extra_pct": 100 * (on_["cpu_per_1000"] - off["cpu_per_1000"])
                   / off["cpu_per_1000"]}
            own_cpu(run, on_["cpu_per_s"], on_["hist"], on_["wall_s"])
            run.update({k: v for k, v in on_.items() if k.startswith("prefill_")})
            runs.append(run)
            print(f"run {i + 1} (whole gateway): {run['cpu_per_1000_off']:.4f} CPU-s per "
                  f"1,000 samples without history, {run['cpu_per_1000_on']:.4f} with it: "
                  f"{run['extra_pct']:+.1f} % ({run['samples_per_s_on']:,.0f} samples/s); "
                  f"{own_line(run)}", flush=True)
    write_result(
        "history_site",
        what=("whole gateway in this process (Modbus polling of simulators in another "
              "process, store, one alarm rule per device, uplink to mosquitto), history off "
              "and on; CPU of this process per 1,000 committed samples; extra_pct = "
              "(on - off) / off"),
        goal="< 10 % at 100 devices x 125 points at 1 s",
        params={"runs": args.runs, "devices": args.devices, "points": args.points,
                "warmup": args.warmup, "window": args.window,
                "prefill_minutes": args.prefill_minutes},
        summary=medians(runs, runs[0]), runs=runs, conditions=conditions)


# --- query ---------------------------------------------------------------------------------

async def build_store(tmp: Path, devices: int, query_points: int, day0: int) -> Any:
    from gateway.siteops.config import EnergySource, HistoryConfig
    from gateway.siteops.history import History
    from gateway.store import Store

    store = Store(tmp / "b.db", max_bytes=20_000_000_000)
    await store.open()
    cfg = HistoryConfig(energy=[EnergySource(devices=["*"], energy_point="energy_wh")])
    hist = History(cfg, store, ZoneInfo(TZ))
    await hist.load()

    async def feed(samples: list[Sample]) -> None:
        for i in range(0, len(samples), 20_000):
            batch = samples[i:i + 20_000]
            seq, last = await store.append_samples(batch)
            hist.observe(batch, seq)
            await hist.flush()
            await store.ack_telemetry(last)  # as the uplink would: the buffer stays small

    # A month of energy: each device's counter every 15 minutes (31 days before day0 + 1).
    month0 = day0 - 30 * DAY_MS
    for d in range(devices):
        await feed([Sample(f"d{d:03d}", "energy_wh", ts, 10.0 * (ts - month0) / 900_000 + d)
                    for ts in range(month0, day0 + DAY_MS, 900_000)])
    # 24 h of one sample per minute of ``query_points`` points per device.
    for d in range(devices):
        await feed([Sample(f"d{d:03d}", f"p{p:03d}", ts, float(p + ts % 1000))
                    for ts in range(day0, day0 + DAY_MS, 60_000) for p in range(query_points)])
    return store, hist, month0


async def time_it(fn: Any, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        await fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


async def query_runs(runs: int, devices: int, query_points: int, repeat: int
                     ) -> list[dict[str, float]]:
    """Build the store once, then time the two queries ``runs`` times."""
    with tempfile.TemporaryDirectory(prefix="fieldgate-histq-") as tmp:
        day0 = 1_780_000_000_000 - 1_780_000_000_000 % DAY_MS
        t0 = time.perf_counter()
        store, hist, month0 = await build_store(Path(tmp), devices, query_points, day0)
        built = time.perf_counter() - t0
        rows = {t: (await store.query_one(f"SELECT COUNT(*) FROM {t}") or (0,))[0]
                for t in ("history_1m", "history_15m", "history_energy")}

        async def day_of_one_point() -> None:
            got = await hist.series(f"d{devices // 2:03d}", "p001", day0, day0 + DAY_MS, "1m")
            assert len(got) == 1440, len(got)

        async def month_of_energy() -> None:
            got = await hist.energy(month0, day0 + DAY_MS, None, "1d")
            assert len(got) == devices, len(got)

        out = []
        for i in range(runs):
            run = {"day_1m_one_point_ms": 1000 * await time_it(day_of_one_point, repeat),
                   "month_energy_all_devices_ms": 1000 * await time_it(month_of_energy,
                                                                       repeat),
                   "build_s": built, **{f"rows_{k}": float(v) for k, v in rows.items()}}
            print(f"run {i + 1}: 24 h of one point {run['day_1m_one_point_ms']:.1f} ms, a "
                  f"month of energy x {devices} devices "
                  f"{run['month_energy_all_devices_ms']:.1f} ms", flush=True)
            out.append(run)
        await store.close()
    return out


def query(args: argparse.Namespace) -> None:
    with Conditions() as conditions:
        runs = asyncio.run(query_runs(args.runs, args.devices, args.query_points, args.repeat))
    write_result(
        "history_query",
        what=("query times of the local history in a store holding a month of 15-minute "
              "energy per device and 24 h of 1-minute rollups of query_points points per "
              "device, built once (median of `repeat` calls per run)"),
        params={"runs": args.runs, "devices": args.devices,
                "query_points": args.query_points, "repeat": args.repeat},
        summary=medians(runs, runs[0]), runs=runs, conditions=conditions)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--devices", type=int, default=100)
    parser.add_argument("--points", type=int, default=125)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--window", type=float, default=15.0)
    parser.add_argument("--query-points", type=int, default=5)
    parser.add_argument("--flush-interval", type=float, default=10.0,
                        help="siteops.history.flush_interval of the run with history")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--only", choices=("cost", "site", "query"))
    parser.add_argument("--prefill-minutes", type=int, default=120,
                        help="cost, site: minutes of rollups of the points in the store "
                             "before the gateway starts (a history that has run a while)")
    args = parser.parse_args()
    if args.only in (None, "cost"):
        cost(args)
    if args.only in (None, "site"):
        site(args)
    if args.only in (None, "query"):
        query(args)


if __name__ == "__main__":
    main()

"""Benchmark: the rules engine on the ingest path.

Mixed input modelled on a large site at 200,000 samples/s of sample time: 2,000 devices with
10 points each, every device polled every 100 ms. 1,000 alarm rules (threshold with for and
deadband, rate, fault bitmask, stale, offline) and 100 counter quotas (50 per device, 50 per
group of 10 devices). Values cross thresholds now and then so alarms open, merge and resolve.

Reports, as the median of several runs:
- ingest throughput (pipeline -> store append, one commit per 10 polls) without and with rules,
  and the loss in percent (goal: < 15 %);
- rule evaluation cost per sample (µs), from timing ``engine.process`` alone, and the same
  divided over the samples that match a rule.

Usage: python bench/rules.py [--runs 5] [--seconds 1.0]
Writes bench/results/rules.json.

``--mode pipeline`` measures the issue's own goal on the pipeline bench (bench/pipeline.py:
4 simulated devices x 5,005 points every 100 ms -> buffer -> uplink -> a real mosquitto),
without and with 1,000 alarm rules + 100 quotas on those devices' points, alternating runs.
It reports samples/s acknowledged by the broker, samples/s ingested, and the gateway
process's CPU time per sample: the pipeline bench is paced by its drivers (it offers ~200,000
samples/s), so when the gateway keeps up the throughput loss is ~0 and the CPU per sample is
what shows the cost of the rules (the capacity lost); ``--interval 0.05`` offers twice the
load to saturate the pipeline. Writes bench/results/rules_pipeline.json
(rules_pipeline_interval_<s>.json with another interval).

    python bench/rules.py --mode pipeline [--runs 3] [--seconds 25] [--interval 0.1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from drivers.base import DeviceConfig
from gateway.clock import FakeClock
from gateway.model import Sample
from gateway.pipeline import Pipeline
from gateway.rules.config import RulesSection
from gateway.rules.engine import RuleEngine
from gateway.status import DeviceStatusService
from gateway.store import Store

DEVICES = 2000
POINTS = ["power_w", "voltage_v", "current_a", "frequency_hz", "energy_wh", "temp_c",
          "faults", "soc", "q_var", "pf"]
POLL_MS = 100
POLLS_PER_COMMIT = 10


def site() -> tuple[list[DeviceConfig], dict[str, Any]]:
    devs = [DeviceConfig(id=f"dev-{i:04d}", type="bench", tags=["inv"] if i % 2 else ["meter"])
            for i in range(DEVICES)]
    alarms: list[dict[str, Any]] = []
    for i in range(600):
        alarms.append({"name": f"temp-{i}", "devices": [f"dev-{i:04d}"], "point": "temp_c",
                       "condition": {"op": ">", "value": 70}, "for": 0.3, "deadband": 2})
    for i in range(150):
        alarms.append({"name": f"ramp-{i}", "kind": "rate", "devices": [f"dev-{i + 600:04d}"],
                       "point": "power_w", "window": 10,
                       "condition": {"op": ">", "value": 50_000}})
    for i in range(100):
        alarms.append({"name": f"fault-{i}", "kind": "fault", "mode": "bitmask",
                       "devices": [f"dev-{i + 750:04d}"], "point": "faults",
                       "codes": {0: "over temperature", 3: "fan"}})
    for i in range(100):
        alarms.append({"name": f"stale-{i}", "kind": "stale", "devices": [f"dev-{i + 850:04d}"],
                       "point": "soc", "after": 60})
    for i in range(50):
        alarms.append({"name": f"volt-{i}", "devices": [f"dev-{i:03d}*"],
                       "point": "voltage_v", "condition": {"op": "outside",
                                                           "range": [207, 253]}})
    quotas: list[dict[str, Any]] = []
    for i in range(50):
        quotas.append({"name": f"dev-day-{i}", "devices": [f"dev-{1000 + i:04d}"],
                       "period": "day", "budget_kwh": 50, "max_power_w": 100_000})
    for i in range(50):
        quotas.append({"name": f"group-month-{i}", "devices": [f"dev-{1100 + i * 10:04d}",
                       f"dev-{1101 + i * 10:04d}", f"dev-{1102 + i * 10:04d}"],
                       "period": "month", "budget_kwh": 5000})
    assert len(alarms) == 1000 and len(quotas) == 100
    return devs, {"alarms": alarms, "quotas": quotas}


def batches(seconds: float, start_ms: int) -> list[list[Sample]]:
    """One commit's worth of polls per list."""
    rng = random.Random(7)
    energy = [rng.uniform(1e3, 1e6) for _ in range(DEVICES)]
    out: list[list[Sample]] = []
    polls = int(seconds * 1000 / POLL_MS)
    commit: list[Sample] = []
    for n in range(polls):
        ts = start_ms + n * POLL_MS
        phase = (n // 5) % 2 == 1  # every 0.5 s, 10 % of the devices run hot (or recover)
        for d in range(DEVICES):
            dev = f"dev-{d:04d}"
            hot = phase and d % 10 == 0
            energy[d] += 0.5
            commit.extend((
                Sample(dev, "power_w", ts, 5000.0 + (n % 50) * 20.0),
                Sample(dev, "voltage_v", ts, 262.0 if hot else 230.0 + rng.uniform(-10, 10)),
                Sample(dev, "current_a", ts, 21.7),
                Sample(dev, "frequency_hz", ts, 50.0),
                Sample(dev, "energy_wh", ts, round(energy[d], 1)),
                Sample(dev, "temp_c", ts, 72.0 + rng.uniform(-1, 1) if hot else 40.0),
                Sample(dev, "faults", ts, 9 if hot else 0),
                Sample(dev, "soc", ts, 55.0),
                Sample(dev, "q_var", ts, 120.0),
                Sample(dev, "pf", ts, 0.98),
            ))
        if (n + 1) % POLLS_PER_COMMIT == 0:
            out.append(commit)
            commit = []
    if commit:
        out.append(commit)
    return out


async def ingest(data: list[list[Sample]], with_rules: bool, tmp: Path) -> dict[str, float]:
    store = Store(tmp / f"bench-{with_rules}-{time.monotonic_ns()}.db", max_bytes=10**10)
    await store.open()
    clock = FakeClock(data[0][0].ts_ms)
    status = DeviceStatusService()
    pipeline = Pipeline(store, clock, status, max_commit_samples=10**6)
    engine: RuleEngine | None = None
    if with_rules:
        devs, section = site()
        engine = RuleEngine(RulesSection.model_validate(section), devs, status, clock)
        await engine.load(store)
        pipeline.add_processor(engine)
    n = sum(len(b) for b in data)
    t0 = time.perf_counter()
    for b in data:
        await pipeline.put(b)
        await pipeline.commit_once()
    elapsed = time.perf_counter() - t0
    eval_s = 0.0
    if engine is not None:  # the evaluation alone, outside the store, on the same data
        engine2 = RuleEngine(engine.section, engine.devices, status, clock)
        await engine2.load(store)
        async with store.transaction() as tx:
            t1 = time.perf_counter()
            for b in data:
                await engine2.process(b, tx)
            eval_s = time.perf_counter() - t1
            await tx.execute("ROLLBACK")
            await tx.execute("BEGIN")
    result = {"samples": n, "seconds": elapsed, "rate": n / elapsed, "eval_s": eval_s,
              "matched": sum(1 for b in data for s in b
                             if engine and s[1] in engine.index.get(s[0], {}))}
    if engine is not None:
        result["alarms_created"] = engine.book.stats.created
        result["alarms_resolved"] = engine.book.stats.resolved
    await store.close()
    return result


# -- --mode pipeline --------------------------------------------------------------------


def pipeline_rules(devices: int, points: int) -> dict[str, Any]:
    """The bench's rule mix, spread over the pipeline bench's devices and their synthetic
    points (``sim_NNNNN`` = a random 0..100 plus NNNNN): thresholds that a value crosses in
    about one poll in ten, rates, faults, stale, a voltage band on every device; half of the
    quotas on the energy counters, half integrating a synthetic point as power."""
    alarms: list[dict[str, Any]] = []

    def dev(i: int) -> str:
        return f"bench-{i % devices}"

    for i in range(600):
        k = (i * 7) % points
        alarms.append({"name": f"temp-{i}", "devices": [dev(i)], "point": f"sim_{k:05d}",
                       "condition": {"op": ">", "value": k + 90}, "for": 0.3, "deadband": 2})
    for i in range(150):
        k = (i * 13 + 1) % points
        alarms.append({"name": f"ramp-{i}", "kind": "rate", "devices": [dev(i)],
                       "point": f"sim_{k:05d}", "window": 10,
                       "condition": {"op": ">", "value": 50_000}})
    for i in range(100):
        alarms.append({"name": f"fault-{i}", "kind": "fault", "mode": "bitmask",
                       "devices": [dev(i)], "point": f"sim_{(i * 17 + 2) % points:05d}",
                       "codes": {0: "over temperature", 3: "fan"}})
    for i in range(100):
        alarms.append({"name": f"stale-{i}", "kind": "stale", "devices": [dev(i)],
                       "point": f"sim_{(i * 19 + 3) % points:05d}", "after": 60})
    for i in range(50):
        alarms.append({"name": f"volt-{i}", "devices": ["bench-*"], "point": "voltage_v",
                       "condition": {"op": "outside", "range": [226 - i * 0.01, 234]}})
    quotas: list[dict[str, Any]] = []
    for i in range(50):
        quotas.append({"name": f"energy-day-{i}", "devices": [dev(i)], "period": "day",
                       "budget_kwh": 50, "max_power_w": 100_000})
    for i in range(50):
        quotas.append({"name": f"power-month-{i}", "devices": [dev(i)], "period": "month",
                       "budget_kwh": 5000, "energy_point": None,
                       "power_point": f"sim_{(i * 23 + 4) % points:05d}"})
    return {"alarms": alarms, "quotas": quotas}


async def pipeline_run(with_rules: bool, seconds: float, warmup: float,
                       interval: float) -> dict[str, Any]:
    import pipeline as pipeline_bench  # bench/pipeline.py (this script's directory)
    from _uplink_common import start_app, stop_app, uplink_of, write_site

    from gateway.rules.component import RulesComponent
    from tests.support.mosquitto import Mosquitto

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        with Mosquitto(workdir) as broker:
            site_cfg = pipeline_bench.site(workdir, broker)
            for d in site_cfg["devices"]:
                d["interval"] = interval
            if with_rules:  # else: the pipeline bench as it is (no rules configured)
                site_cfg["rules"] = pipeline_rules(pipeline_bench.DEVICES,
                                                   pipeline_bench.POINTS)
            app, task = await start_app(write_site(workdir, site_cfg))
            try:
                uplink = uplink_of(app)
                rules = app.running.get("rules")
                assert rules is None or isinstance(rules, RulesComponent)
                await asyncio.sleep(warmup)
                s0, p0, t0, c0 = (uplink.stats.samples, app.pipeline.stats.samples,
                                  time.monotonic(), time.process_time())
                await asyncio.sleep(seconds)
                s1, p1, t1, c1 = (uplink.stats.samples, app.pipeline.stats.samples,
                                  time.monotonic(), time.process_time())
                stats = rules.engine.describe() if rules and rules.engine else {}
            finally:
                await stop_app(app, task)
    run = {"rules": with_rules, "forwarded_per_s": (s1 - s0) / (t1 - t0),
           "ingested_per_s": (p1 - p0) / (t1 - t0),
           "cpu_us_per_sample": (c1 - c0) / max(1, p1 - p0) * 1e6,
           "cpu_load": (c1 - c0) / (t1 - t0),
           "alarms_created": stats.get("alarms_created", 0),
           "evaluated": stats.get("evaluated", 0)}
    print(f"  {'with' if with_rules else 'no  '} rules: forwarded {run['forwarded_per_s']:,.0f}/s,"
          f" ingested {run['ingested_per_s']:,.0f}/s, {run['cpu_us_per_sample']:.2f} µs CPU/sample"
          f" ({run['cpu_load']:.2f} cores)", flush=True)
    return run


async def pipeline_main(args: argparse.Namespace) -> dict[str, Any]:
    runs: list[dict[str, Any]] = []
    for _ in range(args.runs):  # alternate, so drift in the machine's load hits both alike
        runs.append(await pipeline_run(False, args.seconds, args.warmup, args.interval))
        runs.append(await pipeline_run(True, args.seconds, args.warmup, args.interval))

    def med(key: str, with_rules: bool) -> float:
        return statistics.median(r[key] for r in runs if r["rules"] is with_rules)

    fwd0, fwd1 = med("forwarded_per_s", False), med("forwarded_per_s", True)
    cpu0, cpu1 = med("cpu_us_per_sample", False), med("cpu_us_per_sample", True)
    return {
        "benchmark": "rules_pipeline" if args.interval == 0.1 else
                     f"rules_pipeline_interval_{args.interval:g}",
        "alarm_rules": 1000, "quotas": 100,
        "offered_samples_per_s": round(4 * 5005 / args.interval),
        "seconds_per_run": args.seconds, "runs_each": args.runs,
        "forwarded_no_rules_per_s": round(fwd0), "forwarded_with_rules_per_s": round(fwd1),
        "throughput_loss_pct": round((1 - fwd1 / fwd0) * 100, 1),
        "cpu_us_per_sample_no_rules": round(cpu0, 3),
        "cpu_us_per_sample_with_rules": round(cpu1, 3),
        "capacity_loss_pct_from_cpu": round((1 - cpu0 / cpu1) * 100, 1),
        "alarms_created_per_run": statistics.median(r["alarms_created"] for r in runs
                                                    if r["rules"]),
        "python": platform.python_version(), "machine": platform.machine(),
        "note": "shared 2-core machine, other jobs running: figures are noisy",
        "runs": runs,
    }


async def main() -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["ingest", "pipeline"], default="ingest")
    parser.add_argument("--runs", type=int, default=None, help="5 (ingest), 3 (pipeline).")
    parser.add_argument("--seconds", type=float, default=None,
                        help="ingest: seconds of sample time per run (200k samples each), "
                             "default 2; pipeline: seconds measured per run, default 25.")
    parser.add_argument("--warmup", type=float, default=3.0, help="pipeline mode only.")
    parser.add_argument("--interval", type=float, default=0.1,
                        help="pipeline mode: the simulated devices' poll interval.")
    args = parser.parse_args()
    if args.mode == "pipeline":
        args.runs = args.runs or 3
        args.seconds = args.seconds or 25.0
        return await pipeline_main(args)
    args.runs = args.runs or 5
    args.seconds = args.seconds or 2.0
    data = batches(args.seconds, 1_700_000_000_000)
    n = sum(len(b) for b in data)
    base_rates, rule_rates, eval_us, extra = [], [], [], {}
    with tempfile.TemporaryDirectory() as tmp:
        await ingest(data[:2], True, Path(tmp))  # warm up
        for _ in range(args.runs):
            base = await ingest(data, False, Path(tmp))
            ruled = await ingest(data, True, Path(tmp))
            base_rates.append(base["rate"])
            rule_rates.append(ruled["rate"])
            eval_us.append(ruled["eval_s"] / n * 1e6)
            extra = ruled
    base_med, rule_med = statistics.median(base_rates), statistics.median(rule_rates)
    eval_med = statistics.median(eval_us)
    result = {
        "samples_per_run": n, "runs": args.runs, "sample_rate_modelled": 200_000,
        "alarm_rules": 1000, "quotas": 100,
        "matched_fraction": round(extra["matched"] / n, 3),
        "alarms_created_per_run": extra["alarms_created"],
        "alarms_resolved_per_run": extra["alarms_resolved"],
        "ingest_no_rules_samples_per_s": round(base_med),
        "ingest_with_rules_samples_per_s": round(rule_med),
        "throughput_loss_pct": round((1 - rule_med / base_med) * 100, 1),
        "rule_eval_us_per_sample": round(eval_med, 3),
        "rule_eval_us_per_matched_sample": round(eval_med * n / max(1, extra["matched"]), 3),
        "python": platform.python_version(), "machine": platform.machine(),
        "note": "shared 2-core machine, other jobs running: figures are noisy",
    }
    return result


if __name__ == "__main__":
    figures = asyncio.run(main())
    for key, value in figures.items():
        if key != "runs":
            print(f"{key:36} {value}")
    name = figures.get("benchmark", "rules")
    out = Path(__file__).resolve().parent / "results" / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n")

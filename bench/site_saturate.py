"""`bench/site.py --saturate DEVICESxREGISTERS`: the most a size takes while keeping up.

Writes bench/results/site_saturation.json. Run through bench/site.py, which owns the runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from bench.common import Conditions, write_result


def keeps_up(run: dict[str, Any], interval: float) -> bool:
    return bool(run["delivered_share"] >= 0.98
                and run["age_p99_ms"] <= (2 * interval + 1.0) * 1000)


def saturate(args: argparse.Namespace, devices: int, registers: int,
             one_run: Callable[..., Awaitable[dict[str, Any]]]) -> None:
    """Halve the poll interval from ``--interval`` until the gateway no longer keeps up;
    ``one_run`` is bench/site.py's (passed in: run as a script, that module is ``__main__``,
    whose ``--tree`` setting an import of ``bench.site`` would not see)."""
    interval = args.interval
    runs: list[dict[str, Any]] = []
    best: dict[str, Any] | None = None
    with Conditions() as conditions:
        while interval >= args.min_interval:
            run = asyncio.run(one_run(devices, registers, interval, args.warmup, args.window,
                                      None))
            run["interval_s"] = interval
            run["offered_datapoints_per_s"] = devices * registers / interval
            run["kept_up"] = keeps_up(run, interval)
            runs.append(run)
            if not run["kept_up"]:
                break
            best = run
            interval /= 2
    summary: dict[str, Any] = {"size": f"{devices}x{registers}"}
    if best is not None:
        summary.update(max_datapoints_per_s_kept_up=best["datapoints_per_s"],
                       at_interval_s=best["interval_s"],
                       cpu_percent_of_core=best["cpu_percent_of_core"])
    if runs and not runs[-1]["kept_up"]:
        summary["fell_behind_at_offered_per_s"] = runs[-1]["offered_datapoints_per_s"]
    else:  # kept up down to --min-interval: the figure is a lower bound, not the limit
        summary["kept_up_to_min_interval_s"] = args.min_interval
    print(f"saturation {devices}x{registers}: {json.dumps(summary)}", flush=True)
    write_result(
        "site_saturation",
        what=("whole gateway as in bench/site.py, poll interval halved until it no longer "
              "keeps up (>= 98 % delivered, p99 age <= 2 intervals + 1 s); one run per step"),
        goal=None,
        params={"devices": devices, "registers": registers, "start_interval_s": args.interval,
                "warmup_s": args.warmup, "window_s": args.window},
        summary=summary, runs=runs, conditions=conditions)

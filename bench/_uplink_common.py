"""Shared by bench/pipeline.py and bench/backfill.py: a real mosquitto and a real gateway."""

from __future__ import annotations

import asyncio
import json
import os
import platform
import statistics
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway.config.loader import load_config  # noqa: E402
from gateway.runtime import App  # noqa: E402
from gateway.uplink.component import Uplink  # noqa: E402


def write_site(workdir: Path, site: dict[str, Any]) -> Path:
    path = workdir / "site.yaml"
    path.write_text(yaml.safe_dump(site, sort_keys=False))
    return path


async def start_app(config: Path) -> tuple[App, asyncio.Task[int]]:
    app = App(load_config(config), config)
    task = asyncio.create_task(app.run())
    await asyncio.wait_for(app.ready.wait(), 30)
    return app, task


def uplink_of(app: App) -> Uplink:
    return next(c for c in app.components if isinstance(c, Uplink))


async def stop_app(app: App, task: asyncio.Task[int]) -> None:
    app.request_stop()
    await asyncio.wait_for(task, 60)


def report(name: str, runs: list[dict[str, Any]], key: str, goal: float,
           extra: dict[str, Any]) -> dict[str, Any]:
    values = [r[key] for r in runs]
    result = {
        "benchmark": name,
        "median_" + key: statistics.median(values),
        "runs": runs,
        "goal_" + key: goal,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform(),
                    "note": "shared 2-core box; other jobs were running (noisy)"},
        **extra,
    }
    out = ROOT / "bench" / "results" / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{name}: median {key} = {result['median_' + key]:,.0f} (goal {goal:,.0f}); "
          f"runs: {', '.join(f'{v:,.0f}' for v in values)}; written to {out}")
    return result

"""Shared by bench/pipeline.py and bench/backfill.py: a real mosquitto and a real gateway."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import Conditions, medians, write_result  # noqa: E402
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


def report(name: str, runs: list[dict[str, Any]], key: str, goal: str,
           params: dict[str, Any], conditions: Conditions, what: str) -> dict[str, Any]:
    """Write the median of ``key`` (and of every other numeric per-run figure)."""
    summary = medians(runs, [k for k, v in runs[0].items() if isinstance(v, (int, float))])
    print(f"{name}: median {key} = {summary[key]:,.0f} (goal {goal}); "
          f"runs: {', '.join(f'{r[key]:,.0f}' for r in runs)}")
    write_result(name, what=what, goal=goal, params=params, summary=summary, runs=runs,
                 conditions=conditions)
    return summary

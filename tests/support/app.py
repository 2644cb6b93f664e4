"""Run a real gateway App in-process for a test: ``async with running_app(cfg, tmp_path)``."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import yaml

from gateway.clock import Clock
from gateway.config.loader import load_config
from gateway.runtime import App


def write_config(tmp_path: Path, config: dict[str, Any], name: str = "site.yaml") -> Path:
    config = dict(config)
    gw = dict(config.get("gateway", {}))
    gw.setdefault("id", "test-gw")
    gw.setdefault("state_dir", str(tmp_path / "state"))
    config["gateway"] = gw
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@contextlib.asynccontextmanager
async def running_app(
    config: dict[str, Any], tmp_path: Path, clock: Clock | None = None, timeout: float = 10
) -> AsyncIterator[App]:
    """Start an App from a config dict (gateway.id/state_dir filled in), yield it once it
    is ready, then stop it and wait for a clean exit."""
    path = write_config(tmp_path, config)
    app = App(load_config(path), path, clock=clock)
    task = asyncio.create_task(app.run(), name="test-app")
    ready = asyncio.create_task(app.ready.wait())
    done, _ = await asyncio.wait({task, ready}, timeout=timeout,
                                 return_when=asyncio.FIRST_COMPLETED)
    if ready not in done:
        ready.cancel()
        if task.done():
            task.result()  # raises the startup error
        task.cancel()
        raise TimeoutError("gateway did not become ready")
    try:
        yield app
    finally:
        app.request_stop()
        await asyncio.wait_for(task, timeout)

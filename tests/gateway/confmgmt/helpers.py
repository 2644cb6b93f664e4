"""A gateway started the way ``fieldgate run`` starts it (managed config versions)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import yaml

from gateway.config.loader import load_config
from gateway.confmgmt.boot import resolve
from gateway.runtime import App
from tests.support.app import write_config


@contextlib.asynccontextmanager
async def managed_app(config: dict[str, Any], tmp_path: Path,
                      timeout: float = 10) -> AsyncIterator[App]:
    path = write_config(tmp_path, config)
    app = App(load_config(resolve(path)), path)
    task = asyncio.create_task(app.run(), name="test-app")
    await asyncio.wait_for(asyncio.shield(app.ready.wait()), timeout)
    try:
        yield app
    finally:
        app.request_stop()
        await asyncio.wait_for(task, timeout)


async def call(app: App, name: str, args: Any = None) -> Any:
    """Run a command; return its result, or fail the test with its error."""
    reply = await app.commands.execute(name, args or {})
    assert reply["ok"], reply
    return reply["result"]


async def error_of(app: App, name: str, args: Any) -> dict[str, Any]:
    reply = await app.commands.execute(name, args)
    assert not reply["ok"], reply
    error: dict[str, Any] = reply["error"]
    return error


def dump(config: dict[str, Any], tmp_path: Path) -> str:
    """The YAML text of ``config`` with the state dir the test gateway uses."""
    gw = {"id": "test-gw", "state_dir": str(tmp_path / "state"), **config.get("gateway", {})}
    return yaml.safe_dump({**config, "gateway": gw}, sort_keys=False)

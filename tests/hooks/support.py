"""Helpers for plugin tests: customer folders on disk, a recording plugin, waiting."""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.runtime import App
from hooks.component import PluginsComponent

SIM = {"id": "m1", "type": "simulated", "interval": 0.05, "seed": 1}

RECORDER = '''
from hooks.base import CustomerHooks


class Recorder(CustomerHooks):
    """Records every business hook call as (hook, kwargs)."""

    def __init__(self):
        self.calls = []

    def _rec(self, hook, **kwargs):
        self.calls.append((hook, kwargs))

    async def on_alarm_created(self, alarm_event, device, rule, db):
        self._rec("on_alarm_created", alarm_event=alarm_event, device=device, rule=rule, db=db)

    async def on_alarm_resolved(self, alarm_event, device, db):
        self._rec("on_alarm_resolved", alarm_event=alarm_event, device=device, db=db)

    async def on_energy_data_received(self, device, data_point, db):
        self._rec("on_energy_data_received", device=device, data_point=data_point)

    async def on_device_status_changed(self, device, old_status, new_status, db):
        self._rec("on_device_status_changed", device=device, old_status=old_status,
                  new_status=new_status)

    async def on_quota_exceeded(self, quota, usage, db):
        self._rec("on_quota_exceeded", quota=quota, usage=usage)

    async def on_work_order_created(self, order, db):
        self._rec("on_work_order_created", order=order)

    async def on_work_order_completed(self, order, db):
        self._rec("on_work_order_completed", order=order)

    async def on_inspection_completed(self, record, db):
        self._rec("on_inspection_completed", record=record)

    async def on_report_generated(self, report_task, file_path, db):
        self._rec("on_report_generated", report_task=report_task, file_path=file_path)

    async def calculate_custom_kpis(self, period, db):
        return {"recorder_period": period}

    async def on_charging_order_created(self, order, db):
        self._rec("on_charging_order_created", order=order)

    async def on_charging_order_completed(self, order, db):
        self._rec("on_charging_order_completed", order=order)


hooks = Recorder()
'''


def write_customer(tmp_path: Path, name: str, code: str) -> Path:
    """Write ``<tmp>/customers/<name>/__init__.py``; returns the customers directory."""
    folder = tmp_path / "customers" / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "__init__.py").write_text(textwrap.dedent(code))
    return tmp_path / "customers"


def config(tmp_path: Path, code: str = RECORDER, name: str = "acme", **plugins: Any
           ) -> dict[str, Any]:
    cdir = write_customer(tmp_path, name, code)
    section = {"customer": name, "customer_dir": str(cdir), "entry_points": False, **plugins}
    return {"devices": [SIM], "plugins": section}


def component(app: App) -> PluginsComponent:
    return next(c for c in app.components if isinstance(c, PluginsComponent))


def plugin(app: App, name: str = "acme") -> Any:
    return component(app).pm.get_plugin(name)


def calls(app: App, hook: str, name: str = "acme") -> list[dict[str, Any]]:
    return [kw for h, kw in plugin(app, name).calls if h == hook]


async def wait_for(cond: Callable[[], Any], timeout: float = 5.0) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = cond()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)

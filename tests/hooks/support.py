"""Helpers for plugin tests: customer folders on disk, a recording plugin, waiting."""

from __future__ import annotations

import datetime as dt
import textwrap
from pathlib import Path
from typing import Any

from gateway.clock import SystemClock
from gateway.runtime import App
from hooks.component import PluginsComponent
from tests.support.wait import wait_until

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


wait_for = wait_until  # the shared polling helper, under the name these tests use


class NoonClock(SystemClock):
    """Wall time shifted to today's 12:00 UTC, so a simulated inverter produces about its
    rated power whatever the hour the test runs at; sleeps are real."""

    def __init__(self) -> None:
        noon = dt.datetime.now(dt.UTC).replace(hour=12, minute=0, second=0, microsecond=0)
        self.offset = int(noon.timestamp() * 1000) - super().now_ms()

    def now_ms(self) -> int:
        return super().now_ms() + self.offset


INVERTER = {"id": "pv1", "type": "simulated", "kind": "inverter", "interval": 0.05,
            "rated_power_w": 10_000, "seed": 1}
PV_HIGH = {"name": "pv-high", "devices": ["pv*"], "point": "power_w",
           "condition": {"op": ">", "value": 5000}, "severity": "critical",
           "message": "{device} produces {value:.0f} W, above {threshold} W"}


def alarm_config(tmp_path: Path, code: str = RECORDER) -> dict[str, Any]:
    """An inverter at noon (~9.5 kW) and a critical rule at 5 kW: the alarm is raised at the
    first sample and, critical >= status_severity, puts the device in `alarm`."""
    cfg = config(tmp_path, code)
    cfg["devices"] = [INVERTER]
    cfg["rules"] = {"alarms": [PV_HIGH]}
    return cfg


async def curtail(app: Any) -> None:
    """The real way out of the alarm: limit the inverter below the threshold."""
    assert await app.write("pv1", "power_limit_w", 1000) == 1000.0


def plugin_observers(app: Any) -> list[Any]:
    """The pipeline observers the plugins component added (the HTTP component's live-value
    observer is not a plugin's cost)."""
    return [o for o in app.pipeline.observers
            if getattr(o, "__module__", "").startswith("hooks")
            or getattr(getattr(o, "__self__", None), "__module__", "").startswith("hooks")]

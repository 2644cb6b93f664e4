"""Example customer plugin: what a site integrator typically writes, using eight hooks.

Enable it with ``plugins: {customer: example}``. It

- opens a work order for every critical alarm and closes it when the alarm clears;
- opens a work order for a failed inspection, unless the site's inspection plan already
  opened one (``record.work_order_id``);
- caps the devices' power when an energy quota that has no action of its own in the rules
  engine (``quota.action`` is None) reaches 100 % (needs
  ``plugins.example.may_write: ["*.power_limit_w"]``);
- reports devices going offline to the cloud as a custom uplink message;
- keeps the peak power per device from the sample stream (cheaply, in memory);
- offers KPIs: peak power, open work orders, energy charged today;
- posts a notice of every finished charging session to the CRM webhook in
  ``$EXAMPLE_CHARGING_WEBHOOK`` (once per session, even across restarts).

It subclasses the customer design's ``CustomerHooks`` and uses only fieldgate's documented
``db`` (for a plugin ported from the original platform, see tests/hooks/ported/).
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

from gateway.channels.http import post
from hooks.base import CustomerHooks

log = logging.getLogger(__name__)

POWER_LIMIT_POINT = "power_limit_w"


class ExampleHooks(CustomerHooks):
    name = "example"

    def __init__(self) -> None:
        self.peak_power_w: dict[str, float] = {}
        self.charged_wh = 0.0

    async def on_alarm_created(self, alarm_event: Any, device: Any, rule: Any, db: Any) -> None:
        if alarm_event.severity != "critical":
            return
        # key=alarm_id: one order per alarm, however often this event is delivered.
        await db.create_work_order(
            f"{device.name or device.id}: {alarm_event.message}", device=device.id,
            alarm_id=alarm_event.alarm_id, priority="urgent", key=alarm_event.alarm_id,
            description=f"rule {rule.name}, value {alarm_event.value}")

    async def on_alarm_resolved(self, alarm_event: Any, device: Any, db: Any) -> None:
        for order in await db.work_orders(status="open", device=device.id):
            if order.alarm_id == alarm_event.alarm_id:
                await db.complete_work_order(order.order_id, "alarm cleared by itself")

    async def on_inspection_completed(self, record: Any, db: Any) -> None:
        if record.result == "fail" and not record.work_order_id:
            await db.create_work_order(f"inspection failed: {record.findings}",
                                       device=record.device, priority="high",
                                       key=record.record_id)

    async def on_quota_exceeded(self, quota: Any, usage: Any, db: Any) -> None:
        # quota.action is what the rules engine did itself (e.g. {"limit_charging": ...});
        # act only where it did nothing, and only once the budget is used up.
        if quota.action is not None or usage.usage_pct < 100:
            return
        for device_id in quota.devices:
            try:
                await db.write(device_id, POWER_LIMIT_POINT, 0.5 * quota.budget_kwh * 1000)
            except Exception as err:  # one device refusing must not stop the others
                log.warning("example: cannot cap %s for quota %s: %s", device_id, quota.name,
                            err)

    async def on_device_status_changed(self, device: Any, old_status: Any, new_status: str,
                                       db: Any) -> None:
        if new_status == "offline":
            await db.publish("site/availability", {"device": device.id, "status": new_status,
                                                   "was": old_status})

    async def on_energy_data_received(self, device: Any, data_point: Any, db: Any) -> None:
        # Called per sample: no I/O here, just aggregate.
        value = data_point.value
        if (data_point.point == "power_w" and isinstance(value, (int, float))
                and value > self.peak_power_w.get(device.id, float("-inf"))):
            self.peak_power_w[device.id] = float(value)

    async def calculate_custom_kpis(self, period: str, db: Any) -> dict[str, Any]:
        return {
            "example.peak_power_w": max(self.peak_power_w.values(), default=None),
            "example.open_work_orders": len(await db.work_orders(status="open")),
            "example.charged_kwh": round(self.charged_wh / 1000, 3),
        }

    async def on_charging_order_completed(self, order: Any, db: Any) -> None:
        done = db.kv()
        if await done.get(order.event_id):
            return  # delivered again after a restart: already counted and notified
        self.charged_wh += order.energy_wh or 0
        url = os.environ.get("EXAMPLE_CHARGING_WEBHOOK")
        if url:
            body = {"order_id": order.order_id, "charger": order.charger,
                    "id_tag": order.id_tag, "energy_kwh": round((order.energy_wh or 0) / 1000, 3),
                    "stop_reason": order.stop_reason}
            response = await post(url, json.dumps(body).encode(),
                                  {"Content-Type": "application/json"}, 10)
            if response.status >= 300:
                raise RuntimeError(f"CRM webhook answered HTTP {response.status}")
        await done.put(order.event_id, True)

hooks = ExampleHooks()

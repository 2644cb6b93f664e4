"""ACME Energy: customer hooks (customers/acme/hooks/__init__.py).

Posts alarms, work orders, quota breaches, reports and charging sessions to ACME's
operations webhook; opens a work order for every major or critical alarm and for a failed
inspection, and closes it when the alarm clears; keeps notes on device status, quotas,
charging sessions and finished work orders; adds up the energy per device; two KPIs.
"""

import dataclasses
import logging
from collections import defaultdict

from hooks.base import CustomerHooks

from .webhook import post_json

logger = logging.getLogger("hooks.acme")

SEVERE = ("critical", "major")


class AcmeHooks(CustomerHooks):
    def __init__(self):
        self.energy_wh = defaultdict(float)  # device id -> Wh received
        self.charged_wh = 0.0

    # -- storage: the helpers that use the database ----------------------------------------

    async def _open_order(self, db, title, device_id, alarm_id, priority):
        await db.create_work_order(title, device=device_id, alarm_id=alarm_id,
                                   priority=priority, key=alarm_id)

    async def _close_orders(self, db, device_id, alarm_id, resolution):
        for order in await db.work_orders(status="open", device=device_id):
            if order.alarm_id == alarm_id:
                await db.complete_work_order(order.id, resolution)

    async def _note(self, db, subject, text):
        await db.kv().put(f"note:{subject}", text)

    async def _count_open_orders(self, db):
        return len(await db.work_orders(status="open"))

    # -- hooks -----------------------------------------------------------------------------

    async def on_alarm_created(self, alarm_event, device, rule, db):
        await post_json("alarm", {"alarm": dataclasses.asdict(alarm_event),
                                  "device": device.id, "rule": rule.name})
        if alarm_event.severity in SEVERE:
            await self._open_order(db, f"{device.name or device.id}: {alarm_event.message}",
                                   device.id, alarm_event.id, "high")

    async def on_alarm_resolved(self, alarm_event, device, db):
        await self._close_orders(db, device.id, alarm_event.id, "alarm cleared")

    async def on_energy_data_received(self, device, data_point, db):
        if data_point.point == "energy_wh":
            self.energy_wh[device.id] += data_point.value  # the energy since the last one

    async def on_device_status_changed(self, device, old_status, new_status, db):
        await self._note(db, f"status:{device.id}", f"{old_status} -> {new_status}")

    async def on_quota_exceeded(self, quota, usage, db):
        if usage.usage_rate >= 100:
            await post_json("quota", {"quota": quota.name, "usage_rate": usage.usage_rate})
            await self._note(db, f"quota:{quota.name}", f"{usage.usage_rate:.0f} % used")

    async def on_work_order_created(self, order, db):
        await post_json("work_order", {"id": order.id, "title": order.title,
                                       "priority": order.priority})

    async def on_work_order_completed(self, order, db):
        await self._note(db, f"order:{order.id}", f"completed: {order.resolution}")

    async def on_inspection_completed(self, record, db):
        if record.result == "fail":
            await self._open_order(db, f"inspection failed: {record.findings}",
                                   record.device, None, "normal")

    async def on_report_generated(self, report_task, file_path, db):
        await post_json("report", {"name": report_task.name, "file": file_path})

    async def calculate_custom_kpis(self, period, db):
        return {"acme_energy_kwh": round(sum(self.energy_wh.values()) / 1000, 6),
                "acme_open_work_orders": await self._count_open_orders(db)}

    async def on_charging_order_created(self, order, db):
        await self._note(db, f"charging:{order.id}", f"started on {order.charger}")

    async def on_charging_order_completed(self, order, db):
        self.charged_wh += order.energy_wh or 0
        await post_json("charging", {"id": order.id, "charger": order.charger,
                                     "energy_wh": order.energy_wh})


hooks = AcmeHooks()

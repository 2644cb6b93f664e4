"""The class-based plugin API of the customer design: subclass, override what you need.

A plugin written for the original design keeps its hooks after changing its import to
``from hooks.base import CustomerHooks`` (and its database code, see docs/plugins.md)::

    class AcmeHooks(CustomerHooks):
        async def on_alarm_created(self, alarm_event, device, rule, db):
            ...

    hooks = AcmeHooks()

Only the methods a subclass overrides are registered with pluggy (see
:meth:`hooks.manager.FieldgatePluginManager.parse_hookimpl_opts`): the no-op defaults below
are not implementations. That matters for ``on_energy_data_received``, which costs a call
per sample as soon as one plugin implements it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from hooks.spec import ALL_HOOKS

if TYPE_CHECKING:
    from drivers.base import DriverSpec
    from gateway.commands import Command
    from hooks.db import HooksDB
    from hooks.models import (
        AlarmEvent,
        ChargingOrder,
        DataPoint,
        Device,
        InspectionRecord,
        Quota,
        QuotaUsage,
        ReportTask,
        Rule,
        WorkOrder,
    )


class CustomerHooks:
    """Every hook as a no-op; see :mod:`hooks.spec` for when each fires."""

    #: Shown in logs and ``plugins.stats``; defaults to the registration name.
    name: str | None = None

    async def on_alarm_created(
        self, alarm_event: AlarmEvent, device: Device, rule: Rule, db: HooksDB
    ) -> None:
        pass

    async def on_alarm_resolved(self, alarm_event: AlarmEvent, device: Device, db: HooksDB) -> None:
        pass

    async def on_energy_data_received(
        self, device: Device, data_point: DataPoint, db: HooksDB
    ) -> None:
        pass

    async def on_device_status_changed(
        self, device: Device, old_status: str | None, new_status: str, db: HooksDB
    ) -> None:
        pass

    async def on_quota_exceeded(self, quota: Quota, usage: QuotaUsage, db: HooksDB) -> None:
        pass

    async def on_work_order_created(self, order: WorkOrder, db: HooksDB) -> None:
        pass

    async def on_work_order_completed(self, order: WorkOrder, db: HooksDB) -> None:
        pass

    async def on_inspection_completed(self, record: InspectionRecord, db: HooksDB) -> None:
        pass

    async def on_report_generated(
        self, report_task: ReportTask, file_path: str, db: HooksDB
    ) -> None:
        pass

    async def calculate_custom_kpis(self, period: str, db: HooksDB) -> Mapping[str, Any]:
        return {}

    async def on_charging_order_created(self, order: ChargingOrder, db: HooksDB) -> None:
        pass

    async def on_charging_order_completed(self, order: ChargingOrder, db: HooksDB) -> None:
        pass

    # Registration hooks are synchronous: they run while plugins load.

    def register_drivers(self) -> Iterable[DriverSpec]:
        return ()

    def register_channels(self) -> Iterable[type]:
        return ()

    def register_commands(self) -> Iterable[Command]:
        return ()

    def register_converters(self) -> Mapping[str, Callable[..., Any]]:
        return {}


def overridden_hooks(plugin: CustomerHooks) -> list[str]:
    """The hook names ``plugin``'s class overrides (its implementations)."""
    cls = type(plugin)
    return [name for name in ALL_HOOKS
            if getattr(cls, name, None) is not getattr(CustomerHooks, name)]


def unknown_hook_methods(plugin: CustomerHooks) -> list[str]:
    """Public methods that look like hooks but are none (``on_alarm_create``): a typo would
    otherwise be a silently dead implementation."""
    out = []
    for name, _member in inspect.getmembers(type(plugin), inspect.isfunction):
        if name.startswith(("on_", "calculate_", "register_")) and name not in ALL_HOOKS:
            out.append(name)
    return out

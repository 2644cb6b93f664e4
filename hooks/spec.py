"""Every hook a fieldgate plugin can implement, in one place.

The twelve business hooks keep the names and parameter names of the customer plugin design
(``CustomerHooks``), so a customer plugin written for it keeps its hooks; its import and its
database code change (docs/plugins.md, "Porting from the original CustomerHooks").
Four registration hooks let a plugin add drivers, notification channels, commands and value
converters.

Rules that hold for every business hook (the dispatcher enforces them):

* It fires *after* the event that caused it was committed to the outbox, from the plugin's
  own task on its own cursor of the outbox, never on the polling path: a slow or hung plugin
  delays only itself. A crash between the commit and the call means the call happens again
  after the restart with the same ``event_id`` (at least once, per plugin), so an
  implementation that has side effects outside fieldgate must be idempotent on
  ``<object>.event_id``.
* Implementations may be ``async def`` (preferred) or plain ``def``. An ``async def`` must
  never block: it shares the event loop with everything (a watch thread logs a stall longer
  than ``plugins.loop_stall_warn`` naming the plugin and hook). Plain functions run in the
  plugin's own worker threads so they cannot stall the event loop; they cannot use ``db``
  (its methods are coroutines) except by returning the coroutine, which is then awaited.
* Each implementation is called on its own under the configured timeout
  (``plugins.timeout``). An exception or a timeout is logged with the plugin's name and
  counted (command ``plugins.stats``); it never stops the gateway, the other plugins or the
  next event. A failed call is *not* retried.
* The objects passed are read-only records (see :mod:`hooks.models`): read them; nothing can
  change them. Every one carries ``event_id``, the id of the event being delivered.
* ``db`` is a :class:`hooks.db.HooksDB`, a facade over the gateway's store bound to the plugin
  and the event: queries, work orders, custom uplink messages, device writes, a private
  key-value map. It is not a database connection.

Only implementations matter: a plugin that does not implement a hook costs nothing for it
(``CustomerHooks`` subclasses count only the methods they override).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

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

PROJECT = "fieldgate"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


class BusinessHooks:
    """The twelve hooks of the customer plugin design."""

    # -- alarms ----------------------------------------------------------------------------

    @hookspec
    def on_alarm_created(
        self, alarm_event: AlarmEvent, device: Device, rule: Rule, db: HooksDB
    ) -> None:
        """Called once an alarm was raised (event ``alarm_created``).

        :param alarm_event: the alarm: ``alarm_id``, ``severity``, ``kind``, ``point``,
            ``code``, ``message``, ``value``, ``started_ts``, ``count``, ``event_id``.
        :param device: the device that raised it (``id``, ``type``, ``name``, ``tags``,
            ``status``); ``type`` is None when the id is not a configured device.
        :param rule: the rule that matched (``name``, ``kind``, ``severity``).
        :param db: the store facade; ``db.create_work_order(...)`` is the usual reaction.

        Results: ignored.
        Must not: block the loop, or act twice on one ``alarm_event.event_id``.
        """

    @hookspec
    def on_alarm_resolved(self, alarm_event: AlarmEvent, device: Device, db: HooksDB) -> None:
        """Called once an alarm cleared (event ``alarm_resolved``).

        :param alarm_event: the alarm with ``resolved_ts`` and ``last_value`` set.
        :param device: the device that raised it.
        :param db: the store facade (close the related work order here).

        Results: ignored.
        Must not: block the loop, or act twice on one ``alarm_event.event_id``.
        """

    # -- energy data -----------------------------------------------------------------------

    @hookspec
    def on_energy_data_received(self, device: Device, data_point: DataPoint, db: HooksDB) -> None:
        """Called for every sample after it was committed to the buffer.

        :param device: the device that produced the sample.
        :param data_point: the sample: ``device``, ``point``, ``ts_ms``, ``value``,
            ``quality``, ``seq`` (its buffer sequence number) and ``event_id``
            (``"sample:<seq>"``). ``value`` is what the device reported: for an energy
            counter its *reading*, not the energy since the previous one, unless
            ``plugins.<name>.energy_increments`` is true (then, for the points matching
            ``energy_points``, the increment since the previous reading).
        :param db: the store facade.

        Results: ignored.
        Best effort, unlike the event hooks: samples reach each plugin through a bounded
        queue of its own; when a plugin is slower than ingest its queue fills and whole
        batches are dropped for it alone (counted and warned under its name) rather than
        slowing the pollers or the other plugins. There is no redelivery after a crash. One
        timeout covers a whole batch of calls.
        Must not: do I/O per sample (aggregate, then act), block the loop, mutate anything.
        """

    # -- devices ---------------------------------------------------------------------------

    @hookspec
    def on_device_status_changed(
        self, device: Device, old_status: str | None, new_status: str, db: HooksDB,
        reason: str, planned: bool
    ) -> None:
        """Called when a device's status changed (event ``device_status_changed``).

        :param device: the device (``device.status`` is its status *now*, which may already
            be newer than ``new_status`` when events queue up).
        :param old_status: ``online``/``offline``/``alarm``/``maintenance``, or None the
            first time the gateway sees the device.
        :param new_status: the status it changed to.
        :param db: the store facade.
        :param reason: what the driver or the rules engine said (``websocket closed``, a
            failed poll's error, the alarm's message); may be empty.
        :param planned: True when the device went offline because the gateway itself was
            stopping or reloading (a charger's websocket closes at every graceful stop):
            not a failure of the device. Optional, like every parameter: take it by name.

        Results: ignored.
        Must not: block the loop; write to the device synchronously in a retry loop.
        """

    # -- quotas ----------------------------------------------------------------------------

    @hookspec
    def on_quota_exceeded(self, quota: Quota, usage: QuotaUsage, db: HooksDB) -> None:
        """Called when an energy quota crossed its threshold (event ``quota_exceeded``).

        :param quota: the quota (``name``, ``devices``, ``period``, ``threshold_pct``,
            ``budget_kwh``, ``action``).
        :param usage: the usage that crossed it (``usage_kwh``, ``usage_pct``,
            ``period_start``, ``period_end``).
        :param db: the store facade (``db.write`` to shed load, ``db.publish`` to escalate).

        Results: ignored.
        Must not: block the loop, or act twice on one ``quota.event_id``.
        """

    # -- work orders -----------------------------------------------------------------------

    @hookspec
    def on_work_order_created(self, order: WorkOrder, db: HooksDB) -> None:
        """Called when a work order was created (event ``work_order_created``), whether by
        a plugin through ``db.create_work_order`` or by the ``workorders.create`` command.

        :param order: the work order (``order_id``, ``title``, ``device``, ``alarm_id``,
            ``priority``, ``status``, ``created_by``, ``created_ts``).
        :param db: the store facade.

        Results: ignored.
        Must not: create another work order for the same order (loops).
        """

    @hookspec
    def on_work_order_completed(self, order: WorkOrder, db: HooksDB) -> None:
        """Called when a work order was completed (event ``work_order_completed``).

        :param order: the work order with ``completed_ts`` and ``resolution``.
        :param db: the store facade.

        Results: ignored.
        Must not: block the loop.
        """

    # -- inspections -----------------------------------------------------------------------

    @hookspec
    def on_inspection_completed(self, record: InspectionRecord, db: HooksDB) -> None:
        """Called when an inspection round was recorded (event ``inspection_completed``,
        from the ``inspections.complete`` command or ``db.record_inspection``).

        :param record: ``record_id``, ``device``, ``inspector``, ``result``
            (``pass``/``fail``), ``findings``, ``completed_ts``.
        :param db: the store facade (create a work order for a failed inspection).

        Results: ignored.
        Must not: block the loop.
        """

    # -- reports ---------------------------------------------------------------------------

    @hookspec
    def on_report_generated(self, report_task: ReportTask, file_path: str, db: HooksDB) -> None:
        """Called when a report file was produced (event ``report_generated``, announced by
        the ``reports.generated`` command or ``db.announce_report``).

        :param report_task: ``report_id``, ``name``, ``period``, ``format``,
            ``generated_ts``.
        :param file_path: where the file is on the gateway.
        :param db: the store facade.

        Results: ignored.
        Must not: upload synchronously from a plain ``def`` on the loop; use ``async def``.
        """

    # -- KPIs ------------------------------------------------------------------------------

    @hookspec
    def calculate_custom_kpis(self, period: str, db: HooksDB) -> Mapping[str, Any]:
        """Called on demand (command ``kpis``) to compute customer KPIs.

        :param period: ``today``, ``month`` or ``year``; ``yesterday`` (the finished local
            day) for the daily ``kpis`` uplink message of the siteops component.
        :param db: the store facade.

        Results: every plugin's dict is merged into one. A key returned by more than one
        plugin is a conflict: the first plugin (in call order) wins and the command reports
        the conflict with the plugin names. A result that is not a mapping is an error.
        Must not: take long (the command waits), return non-JSON values.
        """
        raise NotImplementedError  # the spec has no body; implementations return a dict

    # -- charging --------------------------------------------------------------------------

    @hookspec
    def on_charging_order_created(self, order: ChargingOrder, db: HooksDB) -> None:
        """Called when a charging session started (event ``charging_order_created``).

        :param order: ``order_id``, ``charger``, ``connector``, ``id_tag``,
            ``transaction_id``, ``started_ts``, ``meter_start_wh``.
        :param db: the store facade.

        Results: ignored (the session has already been authorised by the OCPP driver).
        Must not: block the loop.
        """

    @hookspec
    def on_charging_order_completed(self, order: ChargingOrder, db: HooksDB) -> None:
        """Called when a charging session ended (event ``charging_order_completed``).

        :param order: as for created, plus ``stopped_ts``, ``meter_stop_wh``,
            ``energy_wh``, ``stop_reason``.
        :param db: the store facade.

        Results: ignored.
        Must not: bill twice for one ``order.event_id``.
        """


class RegistrationHooks:
    """Called when the config is loaded (``run``, ``reload``, ``check-config``), before
    anything is built from it; ``register_commands`` when the plugins component starts."""

    @hookspec
    def register_drivers(self) -> Iterable[DriverSpec]:
        """Return driver specs to add to the driver registry.

        Results: the lists of all plugins are concatenated; each spec is passed to
        :func:`drivers.base.register_driver` (a name clash is a load error of the plugin).
        Must not: open connections (drivers are built later from the config).
        """
        raise NotImplementedError

    @hookspec
    def register_channels(self) -> Iterable[type]:
        """Return notification channel classes (subclasses of
        :class:`gateway.channels.base.Channel` with a ``channel_type``).

        Results: concatenated; each class is registered like ``@register_channel``.
        Must not: send anything.
        """
        raise NotImplementedError

    @hookspec
    def register_commands(self) -> Iterable[Command]:
        """Return :class:`gateway.commands.Command` objects to add to the command registry
        (reachable over MQTT ``cmd/<name>`` and ``fieldgate cmd``). Prefix names with the
        plugin's name.

        Results: concatenated; a name already taken is a load error of the plugin.
        Must not: block in the handler beyond the command's timeout.
        """
        raise NotImplementedError

    @hookspec
    def register_converters(self) -> Mapping[str, Callable[..., Any]]:
        """Return ``{event_type: fn}`` alarm converters for the rules engine: ``fn(event)``
        yields :class:`gateway.rules.AlarmSignal` for events of that type.

        Results: merged; each is passed to ``gateway.rules.register_converter`` when the
        config is loaded, before the rules engine is built (``plugins.list`` lists them).
        Must not: be slow: converters run on the ingest path.
        """
        raise NotImplementedError


BUSINESS_HOOKS: tuple[str, ...] = tuple(
    n for n in vars(BusinessHooks) if n.startswith(("on_", "calculate_"))
)
REGISTRATION_HOOKS: tuple[str, ...] = tuple(
    n for n in vars(RegistrationHooks) if n.startswith("register_")
)
ALL_HOOKS: tuple[str, ...] = BUSINESS_HOOKS + REGISTRATION_HOOKS

#: Parameters added after the original design, offered by name only: ``CustomerHooks``
#: keeps the original signature (so a subclass written for it still type-checks), and an
#: implementation that wants them names them.
EXTRA_PARAMS: dict[str, tuple[str, ...]] = {
    "on_device_status_changed": ("reason", "planned"),
}

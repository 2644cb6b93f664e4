"""``db``: what a plugin may do with the gateway's store, as a small documented facade.

Plugins get this instead of a database connection: the store has one writer and the
telemetry buffer must never be blocked or corrupted by customer code. Each instance is bound
to one plugin and (for event hooks) the event being delivered, which makes the writing
methods idempotent on redelivery: a work order created while handling event E gets an id
derived from (plugin, E, title), so handling E twice after a crash creates it once.

Work orders, inspections, reports and the local history belong to the ``siteops`` component
(:mod:`gateway.siteops`); these methods are a facade over it. Everything that changes state
also commits an event to the outbox in the same transaction,
so work orders, inspections, reports and custom messages reach the uplink, the channels and
the other plugins store-and-forward, like every other event.

The boundary: :class:`HooksDB` has only its documented methods. It holds no reference to the
app or the store in an attribute (``__slots__``; the implementation, :class:`_Backend`, is
reached only through a closure that refuses every name but the documented ones), its
``kv()`` is bound to the plugin's own namespace the same way, and ``write`` goes through the
plugin's allow-list (``plugins.<name>.may_write``). Plugin code runs in the gateway's
process, so this is a boundary against mistakes and shortcuts, not a sandbox against hostile
code.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import uuid
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from gateway.events import CUSTOM
from gateway.model import Event, Value, event_id
from gateway.siteops.workorders import WorkOrderError as WorkOrderError  # re-exported
from gateway.store.kv import KV
from hooks.models import Device, WorkOrder, from_body

if TYPE_CHECKING:
    from gateway.components import ComponentContext
    from gateway.siteops import SiteOpsComponent

    #: The plugins component's context: what the facade and the dispatchers reach through.
    PluginsContext = ComponentContext[Any]

log = logging.getLogger(__name__)

def device_of(app: PluginsContext, device_id: str | None, source_event: str = "") -> Device:
    """The :class:`Device` record for an id (``type`` None when it is not configured)."""
    did = device_id or ""
    cfg = app.device(did) if did else None
    status = app.status.current(did)
    if cfg is None:
        return Device(id=did, status=status.value if status else None, event_id=source_event)
    return Device(id=cfg.id, type=cfg.type, name=cfg.name, tags=tuple(cfg.tags),
                  status=status.value if status else None, event_id=source_event)


class WriteNotAllowed(PermissionError):
    """``db.write`` to a point not in the plugin's ``plugins.<name>.may_write``."""


class _Backend:
    """What ``db`` does. Bound to ``plugin``, ``event_id`` and the plugin's write patterns;
    never handed to plugin code (see :class:`HooksDB`)."""

    def __init__(self, app: PluginsContext, plugin: str, event_id: str,
                 may_write: tuple[str, ...]) -> None:
        self._app = app
        self.plugin = plugin
        self.event_id = event_id
        self.may_write = may_write

    # -- queries -------------------------------------------------------------------------

    def device(self, device_id: str) -> Device:
        """The configured device with its current status."""
        return device_of(self._app, device_id, self.event_id)

    def devices(self) -> list[Device]:
        return [self.device(d.id) for d in self._app.site.devices]

    def device_status(self, device_id: str) -> str | None:
        """``online``/``offline``/``alarm``/``maintenance``, or None if never seen."""
        status = self._app.status.current(device_id)
        return status.value if status else None

    async def open_alarms(self, device: str | None = None, rule: str | None = None,
                          min_severity: str | None = None) -> list[dict[str, Any]]:
        """The rules engine's open alarms, oldest first, as the ``alarm.list`` command returns
        them (the ``alarm_created`` body plus ``last_value``, ``last_ts``, ``acked_by``,
        ``acked_ts``). ``min_severity``: critical, major, minor or warning. [] when the
        config turns the rules off."""
        from gateway.rules import RulesComponent

        rules = self._app.get_component("rules")
        if not isinstance(rules, RulesComponent):
            return []  # the config turns the rules off
        return rules.open_alarms(device, rule, min_severity)

    async def recent_events(self, type: str | None = None, device: str | None = None,
                            limit: int = 50) -> list[dict[str, Any]]:
        """The newest events the hooks dispatcher has seen (up to the last 1000)."""
        where, params = ["1 = 1"], []
        if type is not None:
            where.append("type = ?")
            params.append(type)
        if device is not None:
            where.append("device = ?")
            params.append(device)
        rows = await self._app.store.query(
            f"SELECT id, type, device, ts_ms, body FROM hooks_recent_events "
            f"WHERE {' AND '.join(where)} ORDER BY seq DESC LIMIT ?", [*params, limit])
        return [{"id": i, "type": t, "device": d, "ts": ts, "body": json.loads(b)}
                for i, t, d, ts, b in rows]

    async def work_orders(self, status: str | None = None, device: str | None = None,
                          limit: int = 100) -> list[WorkOrder]:
        orders = await self._siteops().orders.list(status, device, limit=limit)
        return [_order(o) for o in orders]

    async def get_work_order(self, order_id: str) -> WorkOrder | None:
        order = await self._siteops().orders.get(order_id)
        return _order(order) if order else None

    # -- history -------------------------------------------------------------------------

    async def history(self, device: str, point: str, start_ms: int, end_ms: int | None = None,
                      resolution: str = "auto") -> list[dict[str, Any]]:
        """Rollups of one point in [start_ms, end_ms): ``ts``, ``min``, ``max``, ``avg``,
        ``last``, ``count`` per bucket; resolution auto, 1m, 15m, 1h or 1d (local days)."""
        comp = self._siteops()
        if comp.history is None:
            raise LookupError("local history is off (siteops.history.enabled: false)")
        end = end_ms if end_ms is not None else self._app.clock.now_ms()
        rows: list[dict[str, Any]] = await comp.history.series(device, point, start_ms, end,
                                                               resolution)
        return rows

    async def last_values(self, device: str, points: list[str] | None = None
                          ) -> dict[str, dict[str, Any]]:
        """The newest good value and its time of each point of ``device`` (last 24 h):
        ``{point: {"value": v, "ts": ms}}``."""
        comp = self._siteops()
        if comp.history is None:
            raise LookupError("local history is off (siteops.history.enabled: false)")
        found: dict[str, dict[str, Any]] = await comp.history.last_values(
            device, points, now_ms=self._app.clock.now_ms())
        return found

    # -- actions -------------------------------------------------------------------------

    async def create_work_order(self, title: str, *, device: str | None = None,
                                alarm_id: str | None = None, priority: str = "normal",
                                description: str = "", key: str | None = None,
                                assignee: str | None = None) -> WorkOrder:
        """Create (once) a work order and emit ``work_order_created``.

        ``key`` makes creation idempotent on your own terms (e.g. one open order per alarm:
        ``key=alarm_event.alarm_id``); by default the order is keyed by this plugin, the
        event being handled and the title."""
        order, _ = await self._siteops().orders.create(
            self._stable_id("work_order", key, title), title, created_by=self.plugin,
            device=device, alarm_id=alarm_id, priority=priority, description=description,
            assignee=assignee, source=f"plugin:{self.plugin}")
        return _order(order)

    async def complete_work_order(self, order_id: str, resolution: str = "") -> WorkOrder:
        """Complete a work order (status ``done``) and emit ``work_order_completed``.
        Completing a completed order returns it unchanged (idempotent); an unknown id raises
        WorkOrderError."""
        order = await self._siteops().orders.transition(order_id, "done", self.plugin,
                                                        resolution)
        return _order(order)

    async def record_inspection(self, device: str | None, inspector: str, result: str,
                                findings: str = "", key: str | None = None) -> str:
        """Record a completed inspection; emits ``inspection_completed``. Returns its id."""
        record_id = self._stable_id("inspection", key, f"{device}|{inspector}|{result}")
        await self._siteops().record_inspection(record_id, device, inspector, result, findings)
        return record_id

    async def announce_report(self, name: str, file_path: str, period: str = "",
                              format: str = "", key: str | None = None) -> str:
        """Announce a report file the plugin wrote; emits ``report_generated``. Returns its
        id. The file must exist (FileNotFoundError otherwise)."""
        report_id = self._stable_id("report", key, f"{name}|{file_path}")
        await self._siteops().announce_report(report_id, name, file_path, period, format)
        return report_id

    async def publish(self, topic: str, body: Any) -> str:
        """Send a custom message to the cloud: an outbox event of type ``custom`` with
        ``{topic, body, plugin}``, forwarded by the uplink like any event (store and forward).
        ``body`` must be JSON-serialisable. Returns the event id."""
        json.dumps(body)  # fail here, in the plugin, not later in the uplink
        key = f"{topic}|{json.dumps(body, sort_keys=True, default=str)}"
        mid = self._stable_id("custom", None, key)
        await self._emit(CUSTOM, {"topic": topic, "body": body, "plugin": self.plugin},
                         None, mid)
        return mid

    async def write(self, device: str, point: str, value: Value) -> Any:
        """Write a value to a device point through its driver (``app.write``), if the
        plugin's ``may_write`` patterns allow ``device.point``."""
        target = f"{device}.{point}"
        if not any(fnmatch.fnmatchcase(target, p) for p in self.may_write):
            log.warning("plugin %s tried to write %s = %r: refused, not in "
                        "plugins.%s.may_write", self.plugin, target, value, self.plugin)
            raise WriteNotAllowed(
                f"plugin {self.plugin} may not write {target}: add it (or a pattern such as "
                f"'{device}.*') to plugins.{self.plugin}.may_write in the config")
        log.info("plugin %s writes %s = %r", self.plugin, target, value)
        return await self._app.write(device, point, value)

    def kv(self) -> PluginKV:
        """A persistent key-value map private to this plugin (for your own idempotency)."""
        return PluginKV(self._app.store.kv(f"plugin.{self.plugin}"))

    # -- internals -----------------------------------------------------------------------

    def _siteops(self) -> SiteOpsComponent:
        from gateway.siteops import SiteOpsComponent

        comp = self._app.get_component("siteops")
        if not isinstance(comp, SiteOpsComponent):
            raise LookupError("work orders, inspections, reports and history need the siteops "
                              "component, which the config turns off (siteops.enabled: false)")
        return comp

    def _stable_id(self, kind: str, key: str | None, default_key: str) -> str:
        if key is not None:
            return event_id(kind, self.plugin, key)
        if self.event_id:
            return event_id(kind, self.plugin, self.event_id, default_key)
        return uuid.uuid4().hex

    async def _emit(self, type_: str, body: dict[str, Any], device: str | None,
                    key: str) -> None:
        ev = Event(type_, body, device=device, id=event_id(type_, key))
        await self._app.store.add_events([ev])


def _closure(target: object, names: frozenset[str]) -> Callable[..., Any]:
    """``call(name, *args)`` -> ``target.name(*args)`` for the allowed names only."""

    def call(name: str, *args: Any, **kwargs: Any) -> Any:
        if name not in names:
            raise AttributeError(name)
        return getattr(target, name)(*args, **kwargs)

    return call


class _ReadOnly:
    __slots__ = ()

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is read-only")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is read-only")


class PluginKV(_ReadOnly):
    """A persistent JSON key-value map in the plugin's own namespace."""

    __slots__ = ("_call",)
    _call: Callable[..., Any]

    def __init__(self, kv: KV) -> None:
        object.__setattr__(self, "_call", _closure(kv, _KV_NAMES))

    async def get(self, key: str, default: Any = None) -> Any:
        return await self._call("get", key, default)

    async def put(self, key: str, value: Any) -> None:
        await self._call("put", key, value)

    async def delete(self, key: str) -> None:
        await self._call("delete", key)

    async def items(self) -> list[tuple[str, Any]]:
        result: list[tuple[str, Any]] = await self._call("items")
        return result


_KV_NAMES = frozenset({"get", "put", "delete", "items"})


class HooksDB(_ReadOnly):
    """The store facade handed to hooks as ``db``, bound to ``plugin`` and ``event_id``.
    Only the methods below; see :class:`_Backend` for what they do."""

    __slots__ = ("_call", "_event_id", "_plugin")
    _call: Callable[..., Any]
    _plugin: str
    _event_id: str

    def __init__(self, app: PluginsContext, plugin: str, event_id: str = "",
                 may_write: Iterable[str] = ()) -> None:
        backend = _Backend(app, plugin, event_id, tuple(may_write))
        object.__setattr__(self, "_call", _closure(backend, _DB_NAMES))
        object.__setattr__(self, "_plugin", plugin)
        object.__setattr__(self, "_event_id", event_id)

    @property
    def plugin(self) -> str:
        return self._plugin

    @property
    def event_id(self) -> str:
        return self._event_id

    def device(self, device_id: str) -> Device:
        """The configured device with its current status."""
        result: Device = self._call("device", device_id)
        return result

    def devices(self) -> list[Device]:
        result: list[Device] = self._call("devices")
        return result

    def device_status(self, device_id: str) -> str | None:
        """``online``/``offline``/``alarm``/``maintenance``, or None if never seen."""
        result: str | None = self._call("device_status", device_id)
        return result

    async def open_alarms(self, device: str | None = None, rule: str | None = None,
                          min_severity: str | None = None) -> list[dict[str, Any]]:
        """The rules engine's open alarms, oldest first (see docs/plugins.md)."""
        result: list[dict[str, Any]] = await self._call("open_alarms", device, rule,
                                                        min_severity)
        return result

    async def recent_events(self, type: str | None = None, device: str | None = None,
                            limit: int = 50) -> list[dict[str, Any]]:
        """The newest events the gateway has seen (up to the last 1000)."""
        result: list[dict[str, Any]] = await self._call("recent_events", type, device, limit)
        return result

    async def work_orders(self, status: str | None = None, device: str | None = None,
                          limit: int = 100) -> list[WorkOrder]:
        result: list[WorkOrder] = await self._call("work_orders", status, device, limit)
        return result

    async def get_work_order(self, order_id: str) -> WorkOrder | None:
        result: WorkOrder | None = await self._call("get_work_order", order_id)
        return result

    async def create_work_order(self, title: str, *, device: str | None = None,
                                alarm_id: str | None = None, priority: str = "normal",
                                description: str = "", key: str | None = None,
                                assignee: str | None = None) -> WorkOrder:
        """Create (once) a work order and emit ``work_order_created``."""
        result: WorkOrder = await self._call(
            "create_work_order", title, device=device, alarm_id=alarm_id, priority=priority,
            description=description, key=key, assignee=assignee)
        return result

    async def history(self, device: str, point: str, start_ms: int, end_ms: int | None = None,
                      resolution: str = "auto") -> list[dict[str, Any]]:
        """Rollups of one point from the local history (see docs/operations.md)."""
        result: list[dict[str, Any]] = await self._call("history", device, point, start_ms,
                                                        end_ms, resolution)
        return result

    async def last_values(self, device: str, points: list[str] | None = None
                          ) -> dict[str, dict[str, Any]]:
        """The newest value and time of each point of ``device`` (last 24 h)."""
        result: dict[str, dict[str, Any]] = await self._call("last_values", device, points)
        return result

    async def complete_work_order(self, order_id: str, resolution: str = "") -> WorkOrder:
        """Complete a work order (``done``), emit ``work_order_completed`` (idempotent)."""
        result: WorkOrder = await self._call("complete_work_order", order_id, resolution)
        return result

    async def record_inspection(self, device: str | None, inspector: str, result: str,
                                findings: str = "", key: str | None = None) -> str:
        """Record a completed inspection; emits ``inspection_completed``. Returns its id."""
        rid: str = await self._call("record_inspection", device, inspector, result,
                                    findings, key)
        return rid

    async def announce_report(self, name: str, file_path: str, period: str = "",
                              format: str = "", key: str | None = None) -> str:
        """Announce a generated report file; emits ``report_generated``. Returns its id."""
        rid: str = await self._call("announce_report", name, file_path, period, format, key)
        return rid

    async def publish(self, topic: str, body: Any) -> str:
        """Send a custom message to the cloud (a ``custom`` event). Returns the event id."""
        mid: str = await self._call("publish", topic, body)
        return mid

    async def write(self, device: str, point: str, value: Value) -> Any:
        """Write a device point through its driver; only points in ``may_write``, else
        :class:`WriteNotAllowed`."""
        return await self._call("write", device, point, value)

    def kv(self) -> PluginKV:
        """A persistent key-value map private to this plugin."""
        result: PluginKV = self._call("kv")
        return result

    def __repr__(self) -> str:
        return f"<db of plugin {self._plugin!r}>"


_DB_NAMES = frozenset(
    name for name in vars(HooksDB) if not name.startswith("_") and name not in (
        "plugin", "event_id"))


def _order(order: dict[str, Any]) -> WorkOrder:
    return from_body(WorkOrder, {k: v for k, v in order.items() if k != "source"}, "")


def order_of(event: Event) -> WorkOrder:
    return from_body(WorkOrder, event.body, event.id)

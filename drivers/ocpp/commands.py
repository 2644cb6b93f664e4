"""``ocpp.*`` commands: each sends one CALL to a charger and returns its answer.

The names are the same for both versions; the session of the charger's connection picks the
1.6 or 2.0.1 message (RemoteStartTransaction vs RequestStartTransaction, ...). A charger that
does not answer in ``call_timeout`` gives a ``timeout`` CommandError; one that is not
connected gives ``offline``.

``ocpp.limit`` with ``scope: site`` is what the quota rule action ``limit_charging`` calls: it
sets the site power that the active sessions share and re-sends their profiles.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from drivers.ocpp.config import IdTagEntry
from drivers.ocpp.hub import Hub
from gateway.commands import Command, CommandError, NoArgs


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ChargerArgs(_Args):
    charger: str = Field(description="Charger (device) id.")


class RemoteStartArgs(ChargerArgs):
    id_tag: str
    connector: Annotated[int, Field(ge=1)] | None = None


class RemoteStopArgs(ChargerArgs):
    transaction_id: str


class ResetArgs(ChargerArgs):
    hard: bool = False


class ConnectorArgs(ChargerArgs):
    connector: Annotated[int, Field(ge=1)] = 1


class AvailabilityArgs(ChargerArgs):
    connector: Annotated[int, Field(ge=0)] = 0
    operative: bool


class TriggerArgs(ChargerArgs):
    message: Literal["BootNotification", "Heartbeat", "MeterValues", "StatusNotification",
                     "FirmwareStatusNotification", "DiagnosticsStatusNotification",
                     "LogStatusNotification"]
    connector: Annotated[int, Field(ge=0)] | None = None


class SetConfigArgs(ChargerArgs):
    key: str = Field(description="1.6 key, or <Component>.<Variable> for 2.0.1.")
    value: str


class GetConfigArgs(ChargerArgs):
    keys: list[str] = []


class LimitArgs(_Args):
    scope: Literal["site", "charger"] = "site"
    charger: str | None = None
    connector: Annotated[int, Field(ge=0)] = 1
    limit_w: Annotated[float, Field(gt=0)] | None = Field(
        None, description="Watts; null clears the limit (site: back to max_site_power_w).")


class IdTagsArgs(_Args):
    action: Literal["list", "add", "remove"] = "list"
    id_tag: str | None = None
    status: Literal["Accepted", "Blocked", "Expired"] = "Accepted"
    expiry: str | None = None


def build_commands(hub: Hub) -> list[Command]:
    def session(charger: str) -> Any:
        if charger not in hub.chargers:
            raise CommandError("unknown_charger", f"no charger {charger!r} in the config",
                               {"known": sorted(hub.chargers)})
        sess = hub.sessions.get(charger)
        if sess is None:
            raise CommandError("offline", f"charger {charger} is not connected")
        return sess

    async def remote_start(a: RemoteStartArgs) -> Any:
        return await session(a.charger).remote_start(a.id_tag, a.connector)

    async def remote_stop(a: RemoteStopArgs) -> Any:
        return await session(a.charger).remote_stop(a.transaction_id)

    async def reset(a: ResetArgs) -> Any:
        return await session(a.charger).reset(a.hard)

    async def unlock(a: ConnectorArgs) -> Any:
        return await session(a.charger).unlock(a.connector)

    async def availability(a: AvailabilityArgs) -> Any:
        return await session(a.charger).change_availability(a.connector, a.operative)

    async def trigger(a: TriggerArgs) -> Any:
        return await session(a.charger).trigger(a.message, a.connector)

    async def set_config(a: SetConfigArgs) -> Any:
        return await session(a.charger).set_config(a.key, a.value)

    async def get_config(a: GetConfigArgs) -> Any:
        return await session(a.charger).get_config(a.keys)

    async def limit(a: LimitArgs) -> Any:
        if a.scope == "site":
            applied = await hub.set_site_limit(a.limit_w)
            return {"site_limit_w": await hub.site_limit_w(), "applied": applied}
        if a.charger is None:
            raise CommandError("bad_arguments", "scope: charger needs a charger id")
        sess = session(a.charger)
        if a.limit_w is None:
            return await sess.clear_limit(a.connector)
        return await sess.set_limit(a.connector, a.limit_w)

    async def id_tags(a: IdTagsArgs) -> Any:
        if a.action != "list":
            if not a.id_tag:
                raise CommandError("bad_arguments", f"action {a.action} needs id_tag")
            if a.action == "add":
                await hub.put_id_tag(IdTagEntry(id_tag=a.id_tag, status=a.status,
                                                expiry=a.expiry))
            elif not await hub.remove_id_tag(a.id_tag):
                raise CommandError("not_found", f"id tag {a.id_tag!r} is not in the list")
        return {"id_tags": [e.model_dump() for e in (await hub.id_tags()).values()]}

    async def sessions(_: NoArgs) -> Any:
        """Every configured charger: connection, connector states and open charging
        sessions (id tag, meter at start and now, energy so far, the limit sent)."""
        site_limit = await hub.site_limit_w()
        orders = await hub.orders.open_orders()
        chargers = []
        for cid in sorted(hub.chargers):
            sess = hub.sessions.get(cid)
            open_ = []
            for o in sorted((o for o in orders if o.charger == cid), key=lambda o: o.started_ts):
                energy = (None if o.last_meter_wh is None or o.meter_start_wh is None
                          else round(o.last_meter_wh - o.meter_start_wh, 3))
                open_.append({"order_id": o.order_id, "connector": o.connector,
                              "id_tag": o.id_tag, "transaction_id": o.transaction_id,
                              "started_ts": o.started_ts, "meter_start_wh": o.meter_start_wh,
                              "meter_wh": o.last_meter_wh, "energy_wh": energy,
                              "limit_w": hub.limit_sent(cid, o.connector)})
            chargers.append({"charger": cid, "connected": sess is not None,
                             "version": str(sess.version) if sess else None,
                             "remote": sess.remote if sess else None,
                             "connectors": dict(sess.connector_status) if sess else {},
                             "sessions": open_})
        return {"site_limit_w": site_limit, "chargers": chargers}

    t = hub.settings.call_timeout + 2
    table: list[tuple[str, type[BaseModel], Callable[[Any], Awaitable[Any]], str]] = [
        ("remote_start", RemoteStartArgs, remote_start, "Start a charge remotely."),
        ("remote_stop", RemoteStopArgs, remote_stop, "Stop a transaction by its id."),
        ("reset", ResetArgs, reset, "Reset a charger (soft/hard)."),
        ("unlock", ConnectorArgs, unlock, "Unlock a connector."),
        ("change_availability", AvailabilityArgs, availability, "Operative/Inoperative."),
        ("trigger", TriggerArgs, trigger, "Ask a charger to send a message now."),
        ("set_config", SetConfigArgs, set_config, "ChangeConfiguration / SetVariables."),
        ("get_config", GetConfigArgs, get_config, "GetConfiguration / GetVariables."),
        ("limit", LimitArgs, limit, "Site power share or one charger's charging profile."),
        ("id_tags", IdTagsArgs, id_tags, "List, add or remove local id tags."),
    ]
    table.append(("sessions", NoArgs, sessions, "Chargers, connector states, open sessions."))
    read_only = {"get_config", "sessions"}
    return [Command(f"ocpp.{name}", model, fn, help, t, read_only=name in read_only)
            for name, model, fn, help in table]

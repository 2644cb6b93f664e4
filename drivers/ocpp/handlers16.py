"""OCPP 1.6J: the charger's CALLs, and the central system's CALLs behind the commands."""

from __future__ import annotations

import logging
from typing import Any

from ocpp.routing import on
from ocpp.v16 import ChargePoint, call, call_result

from drivers.ocpp.meter import iso_now, parse_ts
from drivers.ocpp.protocol import SessionBase
from gateway.commands import CommandError

log = logging.getLogger(__name__)

#: Our TxDefaultProfile id per connector: a fixed id so a new share replaces the old one.
PROFILE_ID_BASE = 7100


class Session16(SessionBase, ChargePoint):
    version = "1.6"

    def _now(self) -> str:
        return iso_now(self.hub.ctx.clock.now_ms())

    @on("BootNotification")
    async def on_boot(self, charge_point_vendor: str, charge_point_model: str,
                      **info: Any) -> call_result.BootNotification:
        status = await self.hub.on_boot(self.id, self.version, {
            "vendor": charge_point_vendor, "model": charge_point_model,
            "firmware": info.get("firmware_version"),
            "serial": info.get("charge_point_serial_number"),
        })
        self.accepted = status == "Accepted"
        s = self.hub.settings
        interval = s.heartbeat_interval if self.accepted else s.pending_retry_interval
        if self.accepted:
            self.hub.sessions_changed()
        return call_result.BootNotification(current_time=self._now(), interval=interval,
                                            status=status)

    @on("Heartbeat")
    async def on_heartbeat(self) -> call_result.Heartbeat:
        return call_result.Heartbeat(current_time=self._now())

    @on("StatusNotification")
    async def on_status(self, connector_id: int, error_code: str, status: str,
                        **kw: Any) -> call_result.StatusNotification:
        await self.hub.connector_status(
            self, connector_id, status, error_code, kw.get("vendor_error_code"), kw.get("info"),
            parse_ts(kw.get("timestamp"), self.hub.ctx.clock.now_ms()),
        )
        return call_result.StatusNotification()

    @on("Authorize")
    async def on_authorize(self, id_tag: str) -> call_result.Authorize:
        return call_result.Authorize(id_tag_info={"status": await self.hub.authorize(id_tag)})

    @on("StartTransaction")
    async def on_start(self, connector_id: int, id_tag: str, meter_start: int, timestamp: str,
                       **kw: Any) -> call_result.StartTransaction:
        status = await self.hub.authorize(id_tag)
        tx = await self.hub.orders.next_transaction_id()
        await self.hub.orders.open(
            charger=self.id, connector=connector_id, id_tag=id_tag, transaction_id=str(tx),
            started_ts=parse_ts(timestamp, self.hub.ctx.clock.now_ms()),
            meter_start_wh=float(meter_start),
        )
        if status != "Accepted":
            log.info("charger %s started transaction %s with id tag %s answered %s; the "
                     "charger is expected to stop it", self.id, tx, id_tag, status)
        self.hub.sessions_changed()
        return call_result.StartTransaction(transaction_id=tx, id_tag_info={"status": status})

    @on("StopTransaction")
    async def on_stop(self, meter_stop: int, timestamp: str, transaction_id: int,
                      **kw: Any) -> call_result.StopTransaction:
        order = await self.hub.orders.find(self.id, str(transaction_id))
        connector = order.connector if order else 0
        if kw.get("transaction_data"):
            await self.hub.meter_values(self, connector, kw["transaction_data"], None)
        await self.hub.orders.close(
            charger=self.id, transaction_id=str(transaction_id),
            stopped_ts=parse_ts(timestamp, self.hub.ctx.clock.now_ms()),
            meter_stop_wh=float(meter_stop), stop_reason=kw.get("reason") or "Local",
        )
        self.hub.sessions_changed()
        if kw.get("id_tag"):
            return call_result.StopTransaction(
                id_tag_info={"status": await self.hub.authorize(kw["id_tag"])})
        return call_result.StopTransaction()

    @on("MeterValues")
    async def on_meter_values(self, connector_id: int, meter_value: list[dict[str, Any]],
                              transaction_id: int | None = None,
                              **kw: Any) -> call_result.MeterValues:
        tx = str(transaction_id) if transaction_id is not None else None
        await self.hub.meter_values(self, connector_id, meter_value, tx)
        return call_result.MeterValues()

    @on("DataTransfer")
    async def on_data_transfer(self, vendor_id: str, **kw: Any) -> call_result.DataTransfer:
        reply = self.hub.settings.datatransfer_reply
        log.info("charger %s DataTransfer vendor=%s message=%s data=%.200s -> %s", self.id,
                 vendor_id, kw.get("message_id"), kw.get("data"), reply.status)
        return call_result.DataTransfer(status=reply.status, data=reply.data)

    @on("FirmwareStatusNotification")
    async def on_firmware(self, status: str, **kw: Any) -> call_result.FirmwareStatusNotification:
        await self.hub.record_notice(self, "firmware_status", {"status": status})
        return call_result.FirmwareStatusNotification()

    @on("DiagnosticsStatusNotification")
    async def on_diagnostics(self, status: str,
                             **kw: Any) -> call_result.DiagnosticsStatusNotification:
        await self.hub.record_notice(self, "diagnostics_status", {"status": status})
        return call_result.DiagnosticsStatusNotification()

    @on("SecurityEventNotification")
    async def on_security_event(self, type: str, timestamp: str,
                                **kw: Any) -> call_result.SecurityEventNotification:
        await self.hub.record_notice(self, "security_event",
                                     {"type": type, "info": kw.get("tech_info")})
        return call_result.SecurityEventNotification()

    # --- central system -> charger ---------------------------------------------------------

    async def remote_start(self, id_tag: str, connector: int | None) -> dict[str, Any]:
        return await self.ask(call.RemoteStartTransaction(id_tag=id_tag, connector_id=connector),
                              {"idTag": "id_tag", "connectorId": "connector"})

    async def remote_stop(self, transaction_id: str) -> dict[str, Any]:
        if not transaction_id.isdigit():
            raise CommandError(
                "bad_arguments",
                f"charger {self.id} speaks OCPP 1.6, whose transaction ids are integers; "
                f"{transaction_id!r} is not one (see the order's transaction_id); nothing was "
                "sent", {"field": "transaction_id", "error": "not an integer"})
        return await self.ask(call.RemoteStopTransaction(transaction_id=int(transaction_id)),
                              {"transactionId": "transaction_id"})

    async def reset(self, hard: bool) -> dict[str, Any]:
        return await self.ask(call.Reset(type="Hard" if hard else "Soft"))

    async def unlock(self, connector: int) -> dict[str, Any]:
        return await self.ask(call.UnlockConnector(connector_id=connector),
                              {"connectorId": "connector"})

    async def change_availability(self, connector: int, operative: bool) -> dict[str, Any]:
        kind = "Operative" if operative else "Inoperative"
        return await self.ask(call.ChangeAvailability(connector_id=connector, type=kind),
                              {"connectorId": "connector", "type": "operative"})

    async def trigger(self, message: str, connector: int | None) -> dict[str, Any]:
        return await self.ask(call.TriggerMessage(requested_message=message,
                                                  connector_id=connector),
                              {"requestedMessage": "message", "connectorId": "connector"})

    async def set_config(self, key: str, value: str) -> dict[str, Any]:
        return await self.ask(call.ChangeConfiguration(key=key, value=value))  # same names

    async def get_config(self, keys: list[str]) -> dict[str, Any]:
        return await self.ask(call.GetConfiguration(key=keys or None), {"key": "keys"})

    async def set_limit(self, connector: int, limit_w: float,
                        transaction_id: str | None = None) -> dict[str, Any]:
        profile = {
            "chargingProfileId": PROFILE_ID_BASE + connector,
            "stackLevel": 1,
            "chargingProfilePurpose": "TxDefaultProfile",
            "chargingProfileKind": "Relative",
            "chargingSchedule": {
                "chargingRateUnit": "W",
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": round(limit_w, 1)}],
            },
        }
        return await self.ask(call.SetChargingProfile(connector_id=connector,
                                                      cs_charging_profiles=profile),
                              {"connectorId": "connector", "csChargingProfiles": "limit_w"})

    async def clear_limit(self, connector: int) -> dict[str, Any]:
        return await self.ask(call.ClearChargingProfile(id=PROFILE_ID_BASE + connector))


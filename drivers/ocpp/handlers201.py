"""OCPP 2.0.1: the station's CALLs, and the CSMS's CALLs behind the commands.

2.0.1 has EVSEs with connectors; the driver's ``connector`` number is the EVSE id (one
connector per EVSE is what the chargers we meet have), so points and commands read the same
for both versions. Transactions are TransactionEvent Started/Updated/Ended with the station's
own transaction id.
"""

from __future__ import annotations

import logging
from typing import Any

from ocpp.routing import on
from ocpp.v201 import ChargePoint, call, call_result

from drivers.ocpp.meter import iso_now, parse_ts, to_samples
from drivers.ocpp.protocol import SessionBase

log = logging.getLogger(__name__)

PROFILE_ID_BASE = 7100
_STOP_REASONS_LOCAL = "Local"


class Session201(SessionBase, ChargePoint):
    version = "2.0.1"

    def _now(self) -> str:
        return iso_now(self.hub.ctx.clock.now_ms())

    @on("BootNotification")
    async def on_boot(self, charging_station: dict[str, Any], reason: str,
                      **kw: Any) -> call_result.BootNotification:
        status = await self.hub.on_boot(self.id, self.version, {
            "vendor": charging_station.get("vendor_name"), "model": charging_station.get("model"),
            "firmware": charging_station.get("firmware_version"),
            "serial": charging_station.get("serial_number"), "reason": reason,
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
    async def on_status(self, timestamp: str, connector_status: str, evse_id: int,
                        connector_id: int, **kw: Any) -> call_result.StatusNotification:
        error = "Faulted" if connector_status == "Faulted" else "NoError"
        await self.hub.connector_status(
            self, evse_id, connector_status, error, None, None,
            parse_ts(timestamp, self.hub.ctx.clock.now_ms()),
        )
        return call_result.StatusNotification()

    async def _token_info(self, id_token: dict[str, Any] | None) -> dict[str, str]:
        status = await self.hub.authorize((id_token or {}).get("id_token"))
        return {"status": "Unknown" if status == "Invalid" and not id_token else status}

    @on("Authorize")
    async def on_authorize(self, id_token: dict[str, Any], **kw: Any) -> call_result.Authorize:
        return call_result.Authorize(id_token_info=await self._token_info(id_token))

    @on("TransactionEvent")
    async def on_transaction_event(self, event_type: str, timestamp: str, trigger_reason: str,
                                   seq_no: int, transaction_info: dict[str, Any],
                                   **kw: Any) -> call_result.TransactionEvent:
        tx = str(transaction_info["transaction_id"])
        ts = parse_ts(timestamp, self.hub.ctx.clock.now_ms())
        evse = (kw.get("evse") or {}).get("id")
        order = await self.hub.orders.find(self.id, tx)
        id_token = kw.get("id_token")
        if order is None and await self.hub.orders.recently_completed(self.id, tx):
            # re-sent after a lost answer (a station retries transaction messages until they
            # are answered): the order and its meter values were recorded the first time
            log.info("station %s re-sent TransactionEvent %s #%s of completed transaction %s; "
                     "acknowledged, nothing recorded twice", self.id, event_type, seq_no, tx)
            return await self._tx_answer(id_token)
        connector = evse or (order.connector if order else 1)
        meter = kw.get("meter_value") or []
        energy = None
        if meter:
            await self.hub.meter_values(self, connector, meter, tx)
            energy = _energy_of(meter)
        if order is None and event_type != "Ended":
            await self.hub.orders.open(
                charger=self.id, connector=connector,
                id_tag=(id_token or {}).get("id_token"), transaction_id=tx, started_ts=ts,
                meter_start_wh=energy,
            )
            self.hub.sessions_changed()
        elif order is None:
            # Started was never seen (sent while we were away and lost): open and close now
            # so the energy the station reports is not lost.
            await self.hub.orders.open(
                charger=self.id, connector=connector,
                id_tag=(id_token or {}).get("id_token"), transaction_id=tx, started_ts=ts,
                meter_start_wh=None,
            )
        if event_type == "Ended":
            await self.hub.orders.close(
                charger=self.id, transaction_id=tx, stopped_ts=ts, meter_stop_wh=energy,
                stop_reason=transaction_info.get("stopped_reason") or _STOP_REASONS_LOCAL,
            )
            self.hub.sessions_changed()
        return await self._tx_answer(id_token)

    async def _tx_answer(self, id_token: dict[str, Any] | None) -> call_result.TransactionEvent:
        if id_token:
            return call_result.TransactionEvent(id_token_info=await self._token_info(id_token))
        return call_result.TransactionEvent()

    @on("MeterValues")
    async def on_meter_values(self, evse_id: int, meter_value: list[dict[str, Any]],
                              **kw: Any) -> call_result.MeterValues:
        await self.hub.meter_values(self, evse_id, meter_value, None)
        return call_result.MeterValues()

    @on("DataTransfer")
    async def on_data_transfer(self, vendor_id: str, **kw: Any) -> call_result.DataTransfer:
        reply = self.hub.settings.datatransfer_reply
        log.info("station %s DataTransfer vendor=%s message=%s data=%.200s -> %s", self.id,
                 vendor_id, kw.get("message_id"), kw.get("data"), reply.status)
        return call_result.DataTransfer(status=reply.status, data=reply.data)

    @on("FirmwareStatusNotification")
    async def on_firmware(self, status: str, **kw: Any) -> call_result.FirmwareStatusNotification:
        await self.hub.record_notice(self, "firmware_status", {"status": status})
        return call_result.FirmwareStatusNotification()

    @on("LogStatusNotification")
    async def on_log_status(self, status: str, **kw: Any) -> call_result.LogStatusNotification:
        await self.hub.record_notice(self, "diagnostics_status", {"status": status})
        return call_result.LogStatusNotification()

    @on("SecurityEventNotification")
    async def on_security_event(self, type: str, timestamp: str,
                                **kw: Any) -> call_result.SecurityEventNotification:
        await self.hub.record_notice(self, "security_event",
                                     {"type": type, "info": kw.get("tech_info")})
        return call_result.SecurityEventNotification()

    @on("NotifyEvent")
    async def on_notify_event(self, generated_at: str, seq_no: int,
                              event_data: list[dict[str, Any]],
                              **kw: Any) -> call_result.NotifyEvent:
        fallback = parse_ts(generated_at, self.hub.ctx.clock.now_ms())
        for data in event_data:
            await self.hub.notify_event(self, data, parse_ts(data.get("timestamp"), fallback))
        return call_result.NotifyEvent()

    # --- CSMS -> station -------------------------------------------------------------------

    async def remote_start(self, id_tag: str, connector: int | None) -> dict[str, Any]:
        self._request_id = getattr(self, "_request_id", 0) + 1
        return await self.ask(call.RequestStartTransaction(
            id_token={"id_token": id_tag, "type": "ISO14443"}, remote_start_id=self._request_id,
            evse_id=connector), {"idToken": "id_tag", "evseId": "connector"})

    async def remote_stop(self, transaction_id: str) -> dict[str, Any]:
        return await self.ask(call.RequestStopTransaction(transaction_id=transaction_id),
                              {"transactionId": "transaction_id"})

    async def reset(self, hard: bool) -> dict[str, Any]:
        return await self.ask(call.Reset(type="Immediate" if hard else "OnIdle"))

    async def unlock(self, connector: int) -> dict[str, Any]:
        return await self.ask(call.UnlockConnector(evse_id=connector, connector_id=1),
                              {"evseId": "connector"})

    async def change_availability(self, connector: int, operative: bool) -> dict[str, Any]:
        status = "Operative" if operative else "Inoperative"
        evse = {"id": connector} if connector else None
        return await self.ask(call.ChangeAvailability(operational_status=status, evse=evse),
                              {"evse": "connector", "operationalStatus": "operative"})

    async def trigger(self, message: str, connector: int | None) -> dict[str, Any]:
        evse = {"id": connector} if connector else None
        return await self.ask(call.TriggerMessage(requested_message=message, evse=evse),
                              {"requestedMessage": "message", "evse": "connector"})

    async def set_config(self, key: str, value: str) -> dict[str, Any]:
        component, _, variable = key.rpartition(".")
        return await self.ask(call.SetVariables(set_variable_data=[{
            "attribute_value": value, "component": {"name": component or "OCPPCommCtrlr"},
            "variable": {"name": variable}}]),
            {"setVariableData/0/attributeValue": "value", "setVariableData": "key"})

    async def get_config(self, keys: list[str]) -> dict[str, Any]:
        data = []
        for key in keys:
            component, _, variable = key.rpartition(".")
            data.append({"component": {"name": component or "OCPPCommCtrlr"},
                         "variable": {"name": variable}})
        return await self.ask(call.GetVariables(get_variable_data=data),
                              {"getVariableData": "keys"})

    async def set_limit(self, connector: int, limit_w: float,
                        transaction_id: str | None = None) -> dict[str, Any]:
        profile = {
            "id": PROFILE_ID_BASE + connector,
            "stack_level": 1,
            "charging_profile_purpose": "TxDefaultProfile",
            "charging_profile_kind": "Relative",
            "charging_schedule": [{
                "id": PROFILE_ID_BASE + connector,
                "charging_rate_unit": "W",
                "charging_schedule_period": [{"start_period": 0, "limit": round(limit_w, 1)}],
            }],
        }
        return await self.ask(call.SetChargingProfile(evse_id=connector, charging_profile=profile),
                              {"evseId": "connector", "chargingProfile": "limit_w"})

    async def clear_limit(self, connector: int) -> dict[str, Any]:
        return await self.ask(call.ClearChargingProfile(charging_profile_id=PROFILE_ID_BASE
                                                        + connector))


def _energy_of(meter_values: list[dict[str, Any]]) -> float | None:
    _, energy = to_samples("", 0, False, meter_values, 0)
    return energy

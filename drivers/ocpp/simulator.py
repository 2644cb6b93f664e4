"""Simulated charge points (1.6J and 2.0.1) that talk to the central system over a real websocket.

Used by the tests, the benchmark's peers and the demo site (``simulate:`` on a charger entry).
The state (meter, open transaction, charging limit, queued messages) lives in
:class:`SimCharger`, separate from the connection, so a simulated charger survives a gateway
restart like a real one: it keeps charging, queues its StopTransaction while offline and sends
it after reconnecting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import uuid
from dataclasses import dataclass, field
from typing import Any

import websockets
from ocpp.routing import on
from ocpp.v16 import ChargePoint as Cp16
from ocpp.v16 import call as c16
from ocpp.v16 import call_result as r16
from ocpp.v201 import ChargePoint as Cp201
from ocpp.v201 import call as c201
from ocpp.v201 import call_result as r201
from websockets.typing import Subprotocol

from drivers.ocpp.meter import iso_now
from drivers.ocpp.security import basic_auth_header
from gateway.model import now_ms

log = logging.getLogger(__name__)
PERIODIC = "Sample.Periodic"


@dataclass
class Connector:
    meter_wh: float = 0.0
    transaction_id: str | None = None
    id_tag: str | None = None
    limit_w: float | None = None
    seq: int = 0


@dataclass
class SimCharger:
    charger_id: str
    version: str
    url: str
    password: str | None = None
    connectors: int = 1
    power_w: float = 11_000.0
    ssl_context: ssl.SSLContext | None = None
    config: dict[str, str] = field(default_factory=lambda: {
        "HeartbeatInterval": "300", "MeterValueSampleInterval": "10"})
    state: dict[int, Connector] = field(default_factory=dict)
    queue: list[Any] = field(default_factory=list)
    received: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.state = {c: Connector() for c in range(1, self.connectors + 1)}
        self.cp: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._ws: Any = None
        self.background: set[asyncio.Task[Any]] = set()

    # --- connection ------------------------------------------------------------------------

    @property
    def online(self) -> bool:
        return self._reader is not None and not self._reader.done()

    async def connect(self) -> None:
        headers = {}
        if self.password is not None:
            headers["Authorization"] = basic_auth_header(self.charger_id, self.password)
        self._ws = await websockets.connect(
            f"{self.url.rstrip('/')}/{self.charger_id}",
            subprotocols=[Subprotocol(f"ocpp{self.version}")],
            additional_headers=headers, ssl=self.ssl_context, open_timeout=10)
        cls = _Sim16 if self.version == "1.6" else _Sim201
        self.cp = cls(self.charger_id, self._ws, sim=self)
        self._reader = asyncio.create_task(self._read(), name=f"sim-read[{self.charger_id}]")
        while self.queue:  # messages the charger kept while it was offline
            await self.cp.call(self.queue[0], suppress=False)
            self.queue.pop(0)

    async def _read(self) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            await self.cp.start()

    async def disconnect(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)

    async def send(self, payload: Any, *, queue_offline: bool = False) -> Any:
        _raise_if_cancelled()
        if not self.online:
            if queue_offline:
                self.queue.append(payload)
                return None
            raise ConnectionError(f"simulated charger {self.charger_id} is offline")
        return await self.cp.call(payload, suppress=False)

    def _soon(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    # --- what a charger does ----------------------------------------------------------------

    async def boot(self) -> str:
        if self.version == "1.6":
            res = await self.send(c16.BootNotification(charge_point_vendor="fieldgate",
                                                       charge_point_model="sim-16"))
        else:
            res = await self.send(c201.BootNotification(
                charging_station={"vendor_name": "fieldgate", "model": "sim-201"},
                reason="PowerUp"))
        return str(res.status)

    async def heartbeat(self) -> str:
        payload = c16.Heartbeat() if self.version == "1.6" else c201.Heartbeat()
        return str((await self.send(payload)).current_time)

    async def status(self, connector: int, status: str, error_code: str = "NoError") -> None:
        if self.version == "1.6":
            await self.send(c16.StatusNotification(connector_id=connector, error_code=error_code,
                                                   status=status))
        else:
            await self.send(c201.StatusNotification(
                timestamp=iso_now(now_ms()), connector_status=status, evse_id=connector,
                connector_id=1))

    async def notify_event(self, event_data: list[dict[str, Any]], seq_no: int = 0) -> None:
        """2.0.1 NotifyEvent with the given EventData (snake_case keys)."""
        await self.send(c201.NotifyEvent(generated_at=iso_now(now_ms()), seq_no=seq_no,
                                         event_data=event_data))

    async def authorize(self, id_tag: str) -> str:
        if self.version == "1.6":
            return str((await self.send(c16.Authorize(id_tag=id_tag))).id_tag_info["status"])
        res = await self.send(c201.Authorize(id_token={"id_token": id_tag, "type": "ISO14443"}))
        return str(res.id_token_info["status"])

    def _sampled(self, connector: int, context: str) -> list[dict[str, Any]]:
        c = self.state[connector]
        power = min(self.power_w, c.limit_w) if c.limit_w is not None else self.power_w
        current = round(power / 3 / 230, 2)
        values: list[dict[str, Any]]
        if self.version == "1.6":
            values = [{"value": f"{c.meter_wh:.1f}", "measurand": "Energy.Active.Import.Register",
                       "unit": "Wh", "context": context},
                      {"value": f"{power / 1000:.3f}", "measurand": "Power.Active.Import",
                       "unit": "kW", "context": context}]
            values += [{"value": str(current), "measurand": "Current.Import", "phase": p,
                        "unit": "A", "context": context} for p in ("L1", "L2", "L3")]
        else:
            values = [{"value": round(c.meter_wh, 1), "measurand": "Energy.Active.Import.Register",
                       "unit_of_measure": {"unit": "Wh"}, "context": context},
                      {"value": power, "measurand": "Power.Active.Import", "context": context}]
            values += [{"value": current, "measurand": "Current.Import", "phase": p,
                        "context": context} for p in ("L1", "L2", "L3")]
        return [{"timestamp": iso_now(now_ms()), "sampled_value": values}]

    async def start(self, connector: int, id_tag: str) -> str:
        c = self.state[connector]
        c.id_tag = id_tag
        if self.version == "1.6":
            res = await self.send(c16.StartTransaction(
                connector_id=connector, id_tag=id_tag, meter_start=int(c.meter_wh),
                timestamp=iso_now(now_ms())))
            c.transaction_id = str(res.transaction_id)
        else:
            c.transaction_id, c.seq = uuid.uuid4().hex[:16], 0
            await self.send(self._tx_event(connector, "Started", "Authorized",
                                           "Transaction.Begin", id_tag=id_tag))
        return c.transaction_id

    def _tx_event(self, connector: int, kind: str, trigger: str, context: str,
                  id_tag: str | None = None, reason: str | None = None) -> Any:
        c = self.state[connector]
        c.seq += 1
        info: dict[str, Any] = {"transaction_id": c.transaction_id}
        if reason:
            info["stopped_reason"] = reason
        return c201.TransactionEvent(
            event_type=kind, timestamp=iso_now(now_ms()), trigger_reason=trigger, seq_no=c.seq,
            transaction_info=info, evse={"id": connector, "connector_id": 1},
            id_token={"id_token": id_tag, "type": "ISO14443"} if id_tag else None,
            meter_value=self._sampled(connector, context))

    def advance(self, connector: int, seconds: float) -> None:
        """Let energy flow for ``seconds`` at the connector's power (capped by its limit)."""
        c = self.state[connector]
        if c.transaction_id is not None:
            power = min(self.power_w, c.limit_w) if c.limit_w is not None else self.power_w
            c.meter_wh += power * seconds / 3600

    async def meter_values(self, connector: int) -> None:
        c = self.state[connector]
        if self.version == "1.6":
            tx = int(c.transaction_id) if c.transaction_id else None
            await self.send(c16.MeterValues(connector_id=connector, transaction_id=tx,
                                            meter_value=self._sampled(connector, PERIODIC)))
        elif c.transaction_id:
            await self.send(self._tx_event(connector, "Updated", "MeterValuePeriodic",
                                           "Sample.Periodic"))
        else:
            await self.send(c201.MeterValues(evse_id=connector,
                                             meter_value=self._sampled(connector, PERIODIC)))

    async def stop(self, connector: int, reason: str = "Local") -> None:
        """Stop the transaction; while offline the message is queued and sent on reconnect."""
        c = self.state[connector]
        if c.transaction_id is None:
            return
        if self.version == "1.6":
            payload: Any = c16.StopTransaction(
                meter_stop=int(c.meter_wh), timestamp=iso_now(now_ms()),
                transaction_id=int(c.transaction_id), reason=reason, id_tag=c.id_tag)
        else:
            payload = self._tx_event(connector, "Ended", "StopAuthorized", "Transaction.End",
                                     reason=reason)
        c.transaction_id = None
        await self.send(payload, queue_offline=True)

    async def run_demo(self, session_s: float = 600, pause_s: float = 120,
                       id_tag: str = "DEMO-TAG") -> None:
        """Forever: connect, boot, heartbeat, and charge sessions with periodic meter values."""
        while True:
            _raise_if_cancelled()
            try:
                if not self.online:
                    await self.connect()
                    await self.boot()
                    for conn in self.state:
                        await self.status(conn, "Available")
                await self._demo_session(session_s, pause_s, id_tag)
            except (OSError, websockets.WebSocketException, TimeoutError) as err:
                log.info("simulated charger %s: %s; retrying in 5 s", self.charger_id, err)
                await self.disconnect()
                await asyncio.sleep(5)

    async def _demo_session(self, session_s: float, pause_s: float, id_tag: str) -> None:
        interval = float(self.config.get("MeterValueSampleInterval", "10"))
        await self.authorize(id_tag)
        await self.start(1, id_tag)
        await self.status(1, "Charging" if self.version == "1.6" else "Occupied")
        loop = asyncio.get_running_loop()
        end = loop.time() + session_s
        while loop.time() < end and self.state[1].transaction_id is not None:
            await asyncio.sleep(interval)
            _raise_if_cancelled()
            self.advance(1, interval)
            await self.meter_values(1)
        await self.stop(1)
        await self.status(1, "Available")
        await asyncio.sleep(pause_s)

    # --- commands from the central system ---------------------------------------------------

    def remote_start(self, connector: int | None, id_tag: str) -> None:
        conn = connector or 1
        if self.state[conn].transaction_id is None:
            self._soon(self.start(conn, id_tag))

    def remote_stop(self, transaction_id: str) -> bool:
        for conn, c in self.state.items():
            if c.transaction_id == str(transaction_id):
                self._soon(self.stop(conn, "Remote"))
                return True
        return False

    def set_limit(self, connector: int, limit: float | None) -> None:
        targets = list(self.state) if connector == 0 else [connector]
        for conn in targets:
            if conn in self.state:
                self.state[conn].limit_w = limit


def _raise_if_cancelled() -> None:
    """Python 3.11's ``asyncio.wait_for`` (inside the library's ``call()``) can swallow a
    cancellation that arrives as the answer does; the demo loop would then run on after its
    task was cancelled (seen as a test hanging on the cancelled simulator task). The task
    still counts the request, so the loop checks it at every step."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class _Sim16(Cp16):
    def __init__(self, cid: str, ws: Any, sim: SimCharger) -> None:
        super().__init__(cid, ws, response_timeout=10, logger=log)
        self.sim = sim

    def _note(self, action: str, kw: dict[str, Any]) -> None:
        self.sim.received.append((action, kw))

    @on("RemoteStartTransaction")
    def _remote_start(self, id_tag: str, **kw: Any) -> Any:
        self._note("RemoteStartTransaction", {"id_tag": id_tag, **kw})
        self.sim.remote_start(kw.get("connector_id"), id_tag)
        return r16.RemoteStartTransaction(status="Accepted")

    @on("RemoteStopTransaction")
    def _remote_stop(self, transaction_id: int) -> Any:
        self._note("RemoteStopTransaction", {"transaction_id": transaction_id})
        ok = self.sim.remote_stop(str(transaction_id))
        return r16.RemoteStopTransaction(status="Accepted" if ok else "Rejected")

    @on("Reset")
    def _reset(self, type: str) -> Any:
        self._note("Reset", {"type": type})
        return r16.Reset(status="Accepted")

    @on("UnlockConnector")
    def _unlock(self, connector_id: int) -> Any:
        self._note("UnlockConnector", {"connector_id": connector_id})
        return r16.UnlockConnector(status="Unlocked")

    @on("ChangeAvailability")
    def _availability(self, connector_id: int, type: str) -> Any:
        self._note("ChangeAvailability", {"connector_id": connector_id, "type": type})
        return r16.ChangeAvailability(status="Accepted")

    @on("TriggerMessage")
    def _trigger(self, requested_message: str, **kw: Any) -> Any:
        self._note("TriggerMessage", {"requested_message": requested_message, **kw})
        if requested_message == "Heartbeat":
            self.sim._soon(self.sim.heartbeat())
        elif requested_message == "MeterValues":
            self.sim._soon(self.sim.meter_values(kw.get("connector_id") or 1))
        elif requested_message == "StatusNotification":
            self.sim._soon(self.sim.status(kw.get("connector_id") or 1, "Available"))
        else:
            return r16.TriggerMessage(status="NotImplemented")
        return r16.TriggerMessage(status="Accepted")

    @on("ChangeConfiguration")
    def _change_config(self, key: str, value: str) -> Any:
        self._note("ChangeConfiguration", {"key": key, "value": value})
        self.sim.config[key] = value
        return r16.ChangeConfiguration(status="Accepted")

    @on("GetConfiguration")
    def _get_config(self, key: list[str] | None = None) -> Any:
        keys = key or list(self.sim.config)
        known = [{"key": k, "readonly": False, "value": self.sim.config[k]}
                 for k in keys if k in self.sim.config]
        unknown = [k for k in keys if k not in self.sim.config]
        return r16.GetConfiguration(configuration_key=known, unknown_key=unknown or None)

    @on("SetChargingProfile")
    def _set_profile(self, connector_id: int, cs_charging_profiles: dict[str, Any]) -> Any:
        self._note("SetChargingProfile", {"connector_id": connector_id,
                                          "profile": cs_charging_profiles})
        period = cs_charging_profiles["charging_schedule"]["charging_schedule_period"][0]
        self.sim.set_limit(connector_id, float(period["limit"]))
        return r16.SetChargingProfile(status="Accepted")

    @on("ClearChargingProfile")
    def _clear_profile(self, **kw: Any) -> Any:
        self._note("ClearChargingProfile", kw)
        self.sim.set_limit(kw.get("connector_id") or 0, None)
        return r16.ClearChargingProfile(status="Accepted")


class _Sim201(Cp201):
    def __init__(self, cid: str, ws: Any, sim: SimCharger) -> None:
        super().__init__(cid, ws, response_timeout=10, logger=log)
        self.sim = sim

    def _note(self, action: str, kw: dict[str, Any]) -> None:
        self.sim.received.append((action, kw))

    @on("RequestStartTransaction")
    def _remote_start(self, id_token: dict[str, Any], remote_start_id: int, **kw: Any) -> Any:
        self._note("RequestStartTransaction", {"id_token": id_token, **kw})
        self.sim.remote_start(kw.get("evse_id"), id_token["id_token"])
        return r201.RequestStartTransaction(status="Accepted")

    @on("RequestStopTransaction")
    def _remote_stop(self, transaction_id: str, **kw: Any) -> Any:
        self._note("RequestStopTransaction", {"transaction_id": transaction_id})
        ok = self.sim.remote_stop(transaction_id)
        return r201.RequestStopTransaction(status="Accepted" if ok else "Rejected")

    @on("Reset")
    def _reset(self, type: str, **kw: Any) -> Any:
        self._note("Reset", {"type": type})
        return r201.Reset(status="Accepted")

    @on("UnlockConnector")
    def _unlock(self, evse_id: int, connector_id: int, **kw: Any) -> Any:
        self._note("UnlockConnector", {"evse_id": evse_id})
        return r201.UnlockConnector(status="Unlocked")

    @on("ChangeAvailability")
    def _availability(self, operational_status: str, **kw: Any) -> Any:
        self._note("ChangeAvailability", {"operational_status": operational_status, **kw})
        return r201.ChangeAvailability(status="Accepted")

    @on("TriggerMessage")
    def _trigger(self, requested_message: str, **kw: Any) -> Any:
        self._note("TriggerMessage", {"requested_message": requested_message, **kw})
        if requested_message == "Heartbeat":
            self.sim._soon(self.sim.heartbeat())
            return r201.TriggerMessage(status="Accepted")
        return r201.TriggerMessage(status="NotImplemented")

    @on("SetVariables")
    def _set_variables(self, set_variable_data: list[dict[str, Any]], **kw: Any) -> Any:
        results = []
        for item in set_variable_data:
            self.sim.config[item["variable"]["name"]] = item["attribute_value"]
            results.append({"attribute_status": "Accepted", "component": item["component"],
                            "variable": item["variable"]})
        self._note("SetVariables", {"data": set_variable_data})
        return r201.SetVariables(set_variable_result=results)

    @on("GetVariables")
    def _get_variables(self, get_variable_data: list[dict[str, Any]], **kw: Any) -> Any:
        results = []
        for item in get_variable_data:
            value = self.sim.config.get(item["variable"]["name"])
            entry = {"attribute_status": "Accepted" if value is not None else "UnknownVariable",
                     "component": item["component"], "variable": item["variable"]}
            if value is not None:
                entry["attribute_value"] = value
            results.append(entry)
        return r201.GetVariables(get_variable_result=results)

    @on("SetChargingProfile")
    def _set_profile(self, evse_id: int, charging_profile: dict[str, Any], **kw: Any) -> Any:
        self._note("SetChargingProfile", {"evse_id": evse_id, "profile": charging_profile})
        period = charging_profile["charging_schedule"][0]["charging_schedule_period"][0]
        self.sim.set_limit(evse_id, float(period["limit"]))
        return r201.SetChargingProfile(status="Accepted")

    @on("ClearChargingProfile")
    def _clear_profile(self, **kw: Any) -> Any:
        self._note("ClearChargingProfile", kw)
        self.sim.set_limit(0, None)
        return r201.ClearChargingProfile(status="Accepted")

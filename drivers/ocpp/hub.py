"""State shared by every charger session: configs, admission, id tags, orders, site power.

Sessions are per connection and short-lived; the hub outlives them, so a charger that
reconnects finds its acceptance, its open orders and its power share where it left them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from drivers.base import DriverContext
from drivers.ocpp.config import IdTagEntry, OcppDeviceConfig, ServerSettings
from drivers.ocpp.meter import parse_ts, qualify, to_samples
from drivers.ocpp.orders import OrderBook
from drivers.ocpp.protocol import SessionBase
from drivers.ocpp.security import PasswordChecker
from drivers.ocpp.sitepower import lowering_first, plan_shares
from gateway import events
from gateway.model import DeviceStatus, Event, Sample, event_id

log = logging.getLogger(__name__)


class Hub:
    def __init__(
        self, ctx: DriverContext, settings: ServerSettings, chargers: Mapping[str, OcppDeviceConfig]
    ) -> None:
        self.ctx = ctx
        self.settings = settings
        self.chargers = dict(chargers)
        self.orders = OrderBook(ctx)
        self.sessions: dict[str, SessionBase] = {}
        #: in-memory hashes for simulated chargers (their password is made at start)
        self.extra_hashes: dict[str, str] = {}
        self.passwords = PasswordChecker(settings.auth_workers, settings.auth_max_pending)
        self._charger_kv = ctx.kv("ocpp.chargers")
        self._idtag_kv = ctx.kv("ocpp.idtags")
        self._site_kv = ctx.kv("ocpp.site")
        #: (charger, connector) -> (the connection it was sent over, the share in W)
        self._limits_sent: dict[tuple[str, int], tuple[SessionBase, float | None]] = {}
        self._rebalance_lock = asyncio.Lock()
        self._rebalance_task: asyncio.Task[None] | None = None
        self._dirty = False

    # --- admission -------------------------------------------------------------------------

    def device_for(self, charger: str) -> OcppDeviceConfig:
        """The configured entry, or a default one for a charger admitted by policy."""
        return self.chargers.get(charger) or OcppDeviceConfig(id=charger, type="ocpp")

    def password_hash(self, charger: str) -> str | None:
        device = self.chargers.get(charger)
        return self.extra_hashes.get(charger) or (device.password_hash if device else None)

    async def check_password(self, charger: str, password: str) -> bool:
        """scrypt costs ~35 ms of CPU and 16 MiB: see ``PasswordChecker`` for how a storm of
        1,000 reconnecting chargers is paced. Raises ``AuthBusy`` when the queue is full."""
        stored = self.password_hash(charger)
        if stored is None:
            return False
        return await self.passwords.check(charger, password, stored)

    async def is_accepted(self, charger: str) -> bool:
        record = await self._charger_kv.get(charger)
        return charger in self.chargers and bool(record and record.get("accepted"))

    async def on_boot(self, charger: str, version: str, info: Mapping[str, Any]) -> str:
        """Accepted for configured chargers; Pending for ones admitted for commissioning."""
        known = charger in self.chargers
        record = {
            "accepted": known,
            "version": version,
            "boot": dict(info),
            "ts": self.ctx.clock.now_ms(),
        }
        previous = await self._charger_kv.get(charger)
        await self._charger_kv.put(charger, record)
        if not known and not previous:
            log.warning(
                "unknown charger %s booted (%s); recorded and kept Pending - add a device entry "
                "with role: charger to commission it",
                charger,
                info,
            )
            await self.ctx.emit_event(
                Event("ocpp_charger_discovered", {"charger": charger, "version": version,
                                                 "boot": dict(info)},
                      device=None, id=event_id("ocpp_charger_discovered", charger))
            )
        return "Accepted" if known else "Pending"

    # --- connections -----------------------------------------------------------------------

    def attach(self, session: SessionBase) -> SessionBase | None:
        """Register a new connection; the site share is recomputed and sent to it."""
        old = self.sessions.get(session.id)
        self.sessions[session.id] = session
        if session.id in self.chargers:
            self.ctx.set_status(session.id, DeviceStatus.ONLINE, f"connected from {session.remote}")
        self.sessions_changed()
        return old

    def detach(self, session: SessionBase) -> None:
        """Forget a closed connection (unless a newer one replaced it); the share is
        recomputed."""
        if self.sessions.get(session.id) is session:
            del self.sessions[session.id]
            if session.id in self.chargers:
                self.ctx.set_status(session.id, DeviceStatus.OFFLINE, "websocket closed")
            self.sessions_changed()

    # --- id tags ---------------------------------------------------------------------------

    async def id_tags(self) -> dict[str, IdTagEntry]:
        """Config entries overlaid by the ones changed through ``ocpp.id_tags``."""
        tags = {e.id_tag: e for e in self.settings.id_tags}
        for tag, raw in await self._idtag_kv.items():
            if raw is None:
                tags.pop(tag, None)
            else:
                tags[tag] = IdTagEntry.model_validate(raw)
        return tags

    async def put_id_tag(self, entry: IdTagEntry) -> None:
        await self._idtag_kv.put(entry.id_tag, entry.model_dump())

    async def remove_id_tag(self, id_tag: str) -> bool:
        present = id_tag in await self.id_tags()
        await self._idtag_kv.put(id_tag, None)  # a tombstone also hides a config entry
        return present

    async def authorize(self, id_tag: str | None) -> str:
        if not id_tag:
            return "Invalid"
        entry = (await self.id_tags()).get(id_tag)
        if entry is None:
            return "Invalid"
        if entry.status != "Accepted":
            return entry.status
        if entry.expiry and parse_ts(entry.expiry, 0) < self.ctx.clock.now_ms():
            return "Expired"
        return "Accepted"

    # --- data ------------------------------------------------------------------------------

    async def meter_values(
        self,
        session: SessionBase,
        connector: int,
        meter_values: list[dict[str, Any]],
        transaction_id: str | None,
    ) -> None:
        samples, energy = to_samples(
            session.id, connector, session.multi, meter_values, self.ctx.clock.now_ms()
        )
        if samples and session.id in self.chargers:
            await self.ctx.emit(samples)
        if energy is not None and transaction_id is not None:
            await self.orders.note_meter(session.id, transaction_id, energy)

    async def connector_status(
        self,
        session: SessionBase,
        connector: int,
        status: str,
        error_code: str = "NoError",
        vendor_error_code: str | None = None,
        info: str | None = None,
        ts_ms: int | None = None,
    ) -> None:
        ts = ts_ms or self.ctx.clock.now_ms()
        was = session.connector_status.get(connector)
        session.connector_status[connector] = status
        if session.id not in self.chargers:
            return
        await self.ctx.emit([Sample(session.id, qualify("status", connector, session.multi),
                                    ts, status)])
        if status == "Faulted" or error_code not in ("NoError", ""):
            body = {"charger": session.id, "connector": connector, "error_code": error_code,
                    "vendor_error_code": vendor_error_code, "status": status, "info": info}
            await self.ctx.emit_event(Event(
                "ocpp_fault", body, device=session.id, ts_ms=ts,
                id=event_id("ocpp_fault", session.id, connector, error_code, ts)))
            log.warning("charger %s connector %s reports fault %s (%s); see the charger's "
                        "error log", session.id, connector, error_code, info or status)
        elif was == "Faulted":
            await self.ctx.emit_event(Event(
                "ocpp_fault_cleared", {"charger": session.id, "connector": connector,
                                       "status": status}, device=session.id, ts_ms=ts,
                id=event_id("ocpp_fault_cleared", session.id, connector, ts)))
        # The driver reports the link only. A fault becomes an alarm through the rules
        # (the ocpp_fault converter), and the open alarm puts the device in `alarm`; the
        # rules clear it again when ocpp_fault_cleared arrives.
        self.ctx.set_status(session.id, DeviceStatus.ONLINE, status)

    async def record_notice(self, session: SessionBase, kind: str, body: Mapping[str, Any]) -> None:
        """Firmware/diagnostics/security notifications: a sample for dashboards, an event for
        anything that wants to react (a firmware rollout, a security incident)."""
        ts = self.ctx.clock.now_ms()
        status = str(body.get("status") or body.get("type") or "")
        if session.id in self.chargers:
            await self.ctx.emit([Sample(session.id, kind, ts, status)])
        await self.ctx.emit_event(Event(f"ocpp_{kind}", {"charger": session.id, **body},
                                        device=session.id, ts_ms=ts,
                                        id=event_id("ocpp", kind, session.id, ts, status)))

    async def notify_event(self, session: SessionBase, data: Mapping[str, Any],
                           ts: int) -> None:
        """One EventData of a 2.0.1 NotifyEvent -> event ``ocpp_notify_event``. Whether it is
        a fault (a ``Problem`` or ``Tripped`` variable set, a monitor ``Alerting``) is for
        the rules to decide: the converter of the same name turns those into alarms."""
        component = data.get("component") or {}
        variable = data.get("variable") or {}
        evse = component.get("evse") or {}
        body = {
            "charger": session.id,
            "event_id": data.get("event_id"),
            "trigger": data.get("trigger"),
            "component": component.get("name"),
            "component_instance": component.get("instance"),
            "evse": evse.get("id"),
            "connector": evse.get("connector_id"),
            "variable": variable.get("name"),
            "variable_instance": variable.get("instance"),
            "actual_value": data.get("actual_value"),
            "cleared": bool(data.get("cleared", False)),
            "tech_code": data.get("tech_code"),
            "tech_info": data.get("tech_info"),
            "cause": data.get("cause"),
            "transaction_id": data.get("transaction_id"),
            "notification_type": data.get("event_notification_type"),
        }
        await self.ctx.emit_event(Event(
            events.OCPP_NOTIFY_EVENT, body, device=session.id, ts_ms=ts,
            id=event_id(events.OCPP_NOTIFY_EVENT, session.id, body["event_id"], ts)))
        log.info("charger %s event %s: %s/%s = %.80s%s", session.id, body["trigger"],
                 body["component"], body["variable"], body["actual_value"],
                 " (cleared)" if body["cleared"] else "")

    # --- site power ------------------------------------------------------------------------

    def limit_sent(self, charger: str, connector: int) -> float | None:
        """The power share last applied to a connector (None: no limit sent)."""
        sent = self._limits_sent.get((charger, connector))
        return sent[1] if sent is not None else None

    async def site_limit_w(self) -> float | None:
        override = await self._site_kv.get("limit_w")
        if override is not None:
            return float(override)
        return self.settings.max_site_power_w

    async def set_site_limit(self, limit_w: float | None) -> dict[str, float | None]:
        """Keep the new site limit and send the new shares (once each); returns what was sent."""
        if limit_w is None:
            await self._site_kv.delete("limit_w")
        else:
            await self._site_kv.put("limit_w", limit_w)
        return await self.rebalance()

    def sessions_changed(self) -> None:
        """Recompute the power share soon, off the session's receive loop (a handler must
        not wait for its own charger's answer)."""
        self._dirty = True
        if self._rebalance_task is None or self._rebalance_task.done():
            self._rebalance_task = asyncio.get_running_loop().create_task(
                self._rebalance_while_dirty(), name="ocpp-rebalance"
            )

    @property
    def rebalancing(self) -> bool:
        """A background recomputation is pending or running."""
        return self._rebalance_task is not None and not self._rebalance_task.done()

    async def _rebalance_while_dirty(self) -> None:
        """Changes that arrive while a rebalance runs are picked up by one more round."""
        while self._dirty:
            self._dirty = False
            try:
                await self.rebalance()
            except Exception:  # a bug here must not kill later rebalances
                log.exception("site power rebalance failed; shares stay as they were")

    async def rebalance(self) -> dict[str, float | None]:
        """Recompute the shares (see sitepower.py) and send each connected charger its own,
        unless its current connection already has it; returns what was sent.

        A charger that reconnects gets its share again on the new connection (it may have
        rebooted and lost the profile). One rebalance runs at a time, so a share is never
        sent twice over one connection.
        """
        async with self._rebalance_lock:
            limit = await self.site_limit_w()
            orders = {(o.charger, o.connector): o for o in await self.orders.open_orders()}
            held = {key: sent[1] for key, sent in self._limits_sent.items()}
            plan = plan_shares(limit, list(orders), set(self.sessions), held)
            result: dict[str, float | None] = {}
            for key in lowering_first(plan, held):
                share, order, session = plan[key], orders[key], self.sessions[key[0]]
                if self._limits_sent.get(key) == (session, share):
                    continue
                try:
                    if share is None:
                        await session.clear_limit(order.connector)  # type: ignore[attr-defined]
                    else:
                        await session.set_limit(  # type: ignore[attr-defined]
                            order.connector, share, order.transaction_id
                        )
                    self._limits_sent[key] = (session, share)
                    result[f"{order.charger}/{order.connector}"] = share
                except Exception as err:  # one charger's refusal must not stop the others'
                    log.warning("charger %s: could not apply site power share %s W: %s; it "
                                "keeps its previous limit", order.charger, share, err)
            for key in [k for k in self._limits_sent if k not in orders]:
                del self._limits_sent[key]
            return result

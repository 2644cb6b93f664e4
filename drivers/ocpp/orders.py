"""Charging orders: one per transaction, persisted in the driver's KV namespace.

Why KV and not tables: the driver only needs the *open* orders (a handful per charger) and a
transaction id counter to survive a restart; completed orders leave the driver as
``charging_order_completed`` events, and the core's state tables and the cloud keep them from
there. Nothing here needs a query beyond "the open order of this transaction".

A restart mid-session keeps the order open (it is in the KV), so a StopTransaction that
arrives later - even one the charger queued while the gateway was away - closes it with the
charger's own stop time and meter reading.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import asdict, dataclass, replace
from typing import Any

from drivers.base import DriverContext
from gateway.model import Event, event_id

log = logging.getLogger(__name__)

#: How many completed transaction keys to remember, so a StopTransaction re-sent after a lost
#: answer is acknowledged without a second completed event.
RECENT_DONE = 500


@dataclass(frozen=True)
class ChargingOrder:
    order_id: str
    charger: str
    connector: int
    id_tag: str | None
    transaction_id: str
    started_ts: int
    meter_start_wh: float | None
    last_meter_wh: float | None = None
    stopped_ts: int | None = None
    meter_stop_wh: float | None = None
    energy_wh: float | None = None
    stop_reason: str | None = None

    def created_body(self) -> dict[str, Any]:
        return {
            "order_id": self.order_id,
            "charger": self.charger,
            "connector": self.connector,
            "id_tag": self.id_tag,
            "transaction_id": self.transaction_id,
            "started_ts": self.started_ts,
            "meter_start_wh": self.meter_start_wh,
        }

    def completed_body(self) -> dict[str, Any]:
        return {
            **self.created_body(),
            "stopped_ts": self.stopped_ts,
            "meter_stop_wh": self.meter_stop_wh,
            "energy_wh": self.energy_wh,
            "stop_reason": self.stop_reason,
            # Priced on the way to the outbox by the siteops tariff, when one is configured.
            "cost": None,
            "currency": None,
            "energy_by_period": {},
            "cost_by_period": {},
        }


def _key(charger: str, transaction_id: str) -> str:
    return f"open:{charger}:{transaction_id}"


class OrderBook:
    def __init__(self, ctx: DriverContext) -> None:
        self.ctx = ctx
        self.kv = ctx.kv("ocpp.orders")
        self._lock = asyncio.Lock()

    async def next_transaction_id(self) -> int:
        """A 1.6 transaction id, unique across restarts: the counter is persisted before the
        id is handed out. Starts from a time-derived value so a lost KV does not reuse ids."""
        async with self._lock:
            last = int(await self.kv.get("tx_counter", 0))
            floor = (self.ctx.clock.now_ms() // 1000) % 1_000_000_000
            value = last + 1 if last else max(1, floor)
            await self.kv.put("tx_counter", value)
            return value

    async def open(
        self,
        *,
        charger: str,
        connector: int,
        id_tag: str | None,
        transaction_id: str,
        started_ts: int,
        meter_start_wh: float | None,
    ) -> ChargingOrder | None:
        """The open order of the transaction, made (with its created event) if there is none;
        None if the transaction was completed already (a message re-sent after a lost
        answer must not open a second order)."""
        async with self._lock:
            return await self._open(charger, connector, id_tag, transaction_id, started_ts,
                                    meter_start_wh)

    async def _open(self, charger: str, connector: int, id_tag: str | None,
                    transaction_id: str, started_ts: int,
                    meter_start_wh: float | None) -> ChargingOrder | None:
        existing = await self.find(charger, transaction_id)
        if existing is not None:
            return existing  # a re-sent start: same order, no second event
        if await self._recently_completed(charger, transaction_id):
            log.info("charger %s re-sent a message of transaction %s, which is completed "
                     "already; no new order", charger, transaction_id)
            return None
        order = ChargingOrder(
            order_id=event_id("ocpp-order", charger, transaction_id, started_ts)[:20],
            charger=charger,
            connector=connector,
            id_tag=id_tag,
            transaction_id=transaction_id,
            started_ts=started_ts,
            meter_start_wh=meter_start_wh,
            last_meter_wh=meter_start_wh,
        )
        await self.kv.put(_key(charger, transaction_id), asdict(order))
        await self.ctx.emit_event(
            Event(
                "charging_order_created",
                order.created_body(),
                device=charger,
                ts_ms=started_ts,
                id=event_id("charging_order_created", order.order_id),
            )
        )
        log.info("charging order %s opened on %s/%s", order.order_id, charger, connector)
        return order

    async def find(self, charger: str, transaction_id: str) -> ChargingOrder | None:
        raw = await self.kv.get(_key(charger, transaction_id))
        return ChargingOrder(**raw) if raw else None

    async def recently_completed(self, charger: str, transaction_id: str) -> bool:
        """True if this transaction's order was completed (among the last RECENT_DONE)."""
        async with self._lock:
            return await self._recently_completed(charger, transaction_id)

    async def _recently_completed(self, charger: str, transaction_id: str) -> bool:
        return f"{charger}:{transaction_id}" in await self.kv.get("recent_done", [])

    async def open_orders(self) -> list[ChargingOrder]:
        return [ChargingOrder(**v) for k, v in await self.kv.items() if k.startswith("open:")]

    async def note_meter(self, charger: str, transaction_id: str, wh: float) -> None:
        """Remember the latest register reading: it closes an order whose stop has none."""
        async with self._lock:  # a close in between must not be undone by this put
            order = await self.find(charger, transaction_id)
            if order is None:
                return
            start = order.meter_start_wh if order.meter_start_wh is not None else wh
            updated = replace(order, last_meter_wh=wh, meter_start_wh=start)
            if updated != order:
                await self.kv.put(_key(charger, transaction_id), asdict(updated))

    async def close(
        self,
        *,
        charger: str,
        transaction_id: str,
        stopped_ts: int,
        meter_stop_wh: float | None,
        stop_reason: str | None,
    ) -> ChargingOrder | None:
        """Close the open order; None if there is none (unknown or already closed).

        The whole step runs under the book's lock: two stops at once each append to the
        recently-completed list, and neither update is lost (a lost one turned the re-send
        of that stop into a "no open order" warning)."""
        async with self._lock:
            return await self._close(charger, transaction_id, stopped_ts, meter_stop_wh,
                                     stop_reason)

    async def _close(self, charger: str, transaction_id: str, stopped_ts: int,
                     meter_stop_wh: float | None, stop_reason: str | None) -> ChargingOrder | None:
        order = await self.find(charger, transaction_id)
        if order is None:
            if await self._recently_completed(charger, transaction_id):
                log.info("stop of %s/%s repeated; already completed", charger, transaction_id)
            else:
                log.warning(
                    "charger %s stopped transaction %s that has no open order (state lost or "
                    "never started here); no charging order is written - check the charger's "
                    "transaction log",
                    charger,
                    transaction_id,
                )
            return None
        stop = meter_stop_wh if meter_stop_wh is not None else order.last_meter_wh
        energy = None
        if stop is not None and order.meter_start_wh is not None:
            energy = round(stop - order.meter_start_wh, 3)
        order = replace(
            order,
            stopped_ts=stopped_ts,
            meter_stop_wh=stop,
            energy_wh=energy,
            stop_reason=stop_reason,
        )
        await self.ctx.emit_event(
            Event(
                "charging_order_completed",
                order.completed_body(),
                device=charger,
                ts_ms=stopped_ts,
                id=event_id("charging_order_completed", order.order_id),
            )
        )
        done = [*await self.kv.get("recent_done", []), f"{charger}:{transaction_id}"]
        await self.kv.put("recent_done", done[-RECENT_DONE:])
        await self.kv.delete(_key(charger, transaction_id))
        log.info("charging order %s completed: %s Wh", order.order_id, energy)
        return order

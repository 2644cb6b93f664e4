"""Work orders: open -> acknowledged -> in_progress -> done, or cancelled on the way.

Every change of state commits its event in the same transaction as the row
(``work_order_created``, ``work_order_updated`` for acknowledged / in_progress / assigned /
a note, ``work_order_completed`` for done and cancelled), each with an id derived from the
order and the transition, so an event (and the hook it fires) exists once per transition.
A transition that is not allowed from the current state changes nothing and says why;
repeating the one that already happened is a no-op (idempotent).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from gateway.clock import Clock
from gateway.events import WORK_ORDER_COMPLETED, WORK_ORDER_CREATED, WORK_ORDER_UPDATED
from gateway.model import Event, event_id
from gateway.store import Store, Tx

log = logging.getLogger(__name__)

STATUSES = ("open", "acknowledged", "in_progress", "done", "cancelled")
PRIORITIES = ("low", "normal", "high", "urgent")
CLOSED = ("done", "cancelled")
#: target status -> the statuses it may be reached from
ALLOWED: dict[str, tuple[str, ...]] = {
    "acknowledged": ("open",),
    "in_progress": ("open", "acknowledged"),
    "done": ("open", "acknowledged", "in_progress"),
    "cancelled": ("open", "acknowledged", "in_progress"),
}
_TS_COLUMN = {"acknowledged": "acknowledged_ts", "in_progress": "started_ts",
              "done": "completed_ts", "cancelled": "completed_ts"}

MIGRATIONS = [
    """
    CREATE TABLE siteops_work_orders (
        id              TEXT PRIMARY KEY,
        title           TEXT NOT NULL,
        description     TEXT NOT NULL DEFAULT '',
        device          TEXT,
        alarm_id        TEXT,
        priority        TEXT NOT NULL,
        status          TEXT NOT NULL,
        assignee        TEXT,
        notes           TEXT NOT NULL DEFAULT '[]',
        source          TEXT NOT NULL DEFAULT '',
        created_by      TEXT NOT NULL,
        created_ts      INTEGER NOT NULL,
        updated_ts      INTEGER NOT NULL,
        acknowledged_ts INTEGER,
        started_ts      INTEGER,
        completed_ts    INTEGER,
        resolution      TEXT NOT NULL DEFAULT ''
    ) WITHOUT ROWID;
    CREATE INDEX siteops_work_orders_by_status ON siteops_work_orders (status, created_ts);
    CREATE INDEX siteops_work_orders_by_alarm ON siteops_work_orders (alarm_id);
    """,
]

COLUMNS = ("id", "title", "description", "device", "alarm_id", "priority", "status",
           "assignee", "notes", "source", "created_by", "created_ts", "updated_ts",
           "acknowledged_ts", "started_ts", "completed_ts", "resolution")
_SELECT = f"SELECT {', '.join(COLUMNS)} FROM siteops_work_orders"


class WorkOrderError(LookupError):
    """No such work order, or the transition is not allowed from its state."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def as_dict(row: Any) -> dict[str, Any]:
    """A row as the event body and the command reply (``order_id``, ``notes`` a list)."""
    d = dict(zip(COLUMNS, row, strict=True))
    d["order_id"] = d.pop("id")
    d["notes"] = json.loads(d["notes"])
    return d


def order_event(type_: str, order: dict[str, Any], transition: str) -> Event:
    body = {k: v for k, v in order.items() if k != "source"}
    body["transition"] = transition
    eid = (event_id(type_, order["order_id"]) if type_ != WORK_ORDER_UPDATED
           else event_id(type_, order["order_id"], transition, str(order["updated_ts"])))
    return Event(type_, body, device=order.get("device"), id=eid)


class WorkOrders:
    def __init__(self, store: Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock

    async def get(self, order_id: str) -> dict[str, Any] | None:
        row = await self.store.query_one(f"{_SELECT} WHERE id = ?", (order_id,))
        return as_dict(row) if row else None

    async def list(self, status: str | None = None, device: str | None = None,
                   assignee: str | None = None, alarm_id: str | None = None,
                   limit: int = 100) -> list[dict[str, Any]]:
        """Newest first. ``status`` may also be ``active`` (not done or cancelled) or the
        old name ``completed`` (done)."""
        where, params = ["1 = 1"], []
        if status == "active":
            where.append("status NOT IN ('done', 'cancelled')")
        elif status is not None:
            where.append("status = ?")
            params.append("done" if status == "completed" else status)
        for column, value in (("device", device), ("assignee", assignee),
                              ("alarm_id", alarm_id)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        rows = await self.store.query(
            f"{_SELECT} WHERE {' AND '.join(where)} ORDER BY created_ts DESC, id LIMIT ?",
            [*params, limit])
        return [as_dict(r) for r in rows]

    async def create(self, order_id: str, title: str, *, created_by: str,
                     device: str | None = None, alarm_id: str | None = None,
                     priority: str = "normal", description: str = "",
                     assignee: str | None = None, source: str = "",
                     tx: Tx | None = None) -> tuple[dict[str, Any], bool]:
        """Create the order ``order_id`` once (a second call returns it unchanged).
        Returns (order, created)."""
        if priority not in PRIORITIES:
            raise WorkOrderError("bad_priority", f"unknown priority {priority!r}; use one of "
                                 f"{', '.join(PRIORITIES)}")
        ts = self.clock.now_ms()
        row = (order_id, title, description, device, alarm_id, priority, "open", assignee,
               "[]", source, created_by, ts, ts, None, None, None, "")
        if tx is None:
            async with self.store.transaction() as own:
                return await self._create(own, row)
        return await self._create(tx, row)

    async def _create(self, tx: Tx, row: tuple[Any, ...]) -> tuple[dict[str, Any], bool]:
        cur = await tx.execute(
            f"INSERT OR IGNORE INTO siteops_work_orders ({', '.join(COLUMNS)}) "
            f"VALUES ({', '.join('?' * len(COLUMNS))})", row)
        created = cur.rowcount == 1
        cur = await tx.execute(f"{_SELECT} WHERE id = ?", (row[0],))
        order = as_dict(await cur.fetchone())
        if created:
            await tx.add_events([order_event(WORK_ORDER_CREATED, order, "created")])
            log.info("work order %s created by %s: %s", order["order_id"],
                     order["created_by"], order["title"])
        return order, created

    async def transition(self, order_id: str, to: str, by: str, note: str = "",
                         tx: Tx | None = None) -> dict[str, Any]:
        """Move an order to ``to`` (acknowledged, in_progress, done, cancelled). For done and
        cancelled ``note`` is the resolution."""
        if to not in ALLOWED:
            raise WorkOrderError("bad_status", f"cannot move a work order to {to!r}; use one "
                                 f"of {', '.join(ALLOWED)}")
        if tx is None:
            async with self.store.transaction() as own:
                return await self._transition(own, order_id, to, by, note)
        return await self._transition(tx, order_id, to, by, note)

    async def _transition(self, tx: Tx, order_id: str, to: str, by: str,
                          note: str) -> dict[str, Any]:
        order = await self._get_tx(tx, order_id)
        if order["status"] == to:
            return order  # already there: idempotent
        if order["status"] not in ALLOWED[to]:
            raise WorkOrderError(
                "bad_transition", f"work order {order_id} is {order['status']}; it cannot "
                f"become {to} (allowed from: {', '.join(ALLOWED[to])})")
        ts = self.clock.now_ms()
        notes = order["notes"] + ([{"ts": ts, "by": by, "text": note}] if note else [])
        closing = to in CLOSED
        await tx.execute(
            f"UPDATE siteops_work_orders SET status = ?, updated_ts = ?, {_TS_COLUMN[to]} = ?, "
            "notes = ?, resolution = CASE WHEN ? THEN ? ELSE resolution END WHERE id = ?",
            (to, ts, ts, json.dumps(notes), closing, note, order_id))
        order = await self._get_tx(tx, order_id)
        type_ = WORK_ORDER_COMPLETED if closing else WORK_ORDER_UPDATED
        await tx.add_events([order_event(type_, order, to)])
        log.info("work order %s: %s by %s", order_id, to, by)
        return order

    async def update(self, order_id: str, by: str, *, assignee: str | None = None,
                     note: str = "") -> dict[str, Any]:
        """Assign and/or add a note (emits ``work_order_updated``)."""
        async with self.store.transaction() as tx:
            order = await self._get_tx(tx, order_id)
            if order["status"] in CLOSED:
                raise WorkOrderError("closed", f"work order {order_id} is {order['status']}; "
                                     "open a new one instead")
            ts = max(self.clock.now_ms(), order["updated_ts"] + 1)
            notes = order["notes"] + ([{"ts": ts, "by": by, "text": note}] if note else [])
            new_assignee = assignee if assignee is not None else order["assignee"]
            await tx.execute(
                "UPDATE siteops_work_orders SET assignee = ?, notes = ?, updated_ts = ? "
                "WHERE id = ?", (new_assignee, json.dumps(notes), ts, order_id))
            order = await self._get_tx(tx, order_id)
            what = "assigned" if assignee is not None else "note"
            await tx.add_events([order_event(WORK_ORDER_UPDATED, order, what)])
        return order

    async def _get_tx(self, tx: Tx, order_id: str) -> dict[str, Any]:
        cur = await tx.execute(f"{_SELECT} WHERE id = ?", (order_id,))
        row = await cur.fetchone()
        if row is None:
            raise WorkOrderError("unknown_work_order", f"no work order {order_id!r}; "
                                 "list them with workorders.list")
        return as_dict(row)

    async def import_legacy(self) -> int:
        """Move the orders the plugins component kept (table ``work_orders``, in stores
        made before siteops) here, and drop that table: one transaction, once."""
        if not await self.store.query_one(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'work_orders'"):
            return 0
        async with self.store.transaction() as tx:
            cur = await tx.execute(
                "INSERT OR IGNORE INTO siteops_work_orders (id, title, description, device, "
                "alarm_id, priority, status, created_by, created_ts, updated_ts, completed_ts, "
                "resolution, source) SELECT id, title, description, device, alarm_id, "
                "priority, CASE status WHEN 'completed' THEN 'done' ELSE status END, "
                "created_by, created_ts, COALESCE(completed_ts, created_ts), completed_ts, "
                "resolution, 'legacy' FROM work_orders")
            moved = max(cur.rowcount, 0)
            await tx.execute("DROP TABLE work_orders")
        if moved:
            log.info("work orders: %d moved from the plugins' table", moved)
        return moved

"""Durable outgoing messages other than telemetry and events: a queue in the store that the
uplink publishes to ``<prefix>/<gateway>/<kind>`` (QoS 1) whenever it is connected.

A component queues a message with :func:`enqueue` inside its own transaction, so the
message exists exactly when what it reports was committed (a report recorded, a day's KPIs
computed). The uplink publishes the queue in order and deletes a row only after its PUBACK;
a link lost in between sends it again on the next connection. Delivery is therefore at
least once: every message carries a stable ``key`` (unique in the queue) so the receiver
drops a repeat. The queue survives restarts and outages; nothing is dropped for age.

Used by siteops for ``report`` and ``kpis`` (see docs/wire-format.md and
``config/wire/report.schema.json`` / ``kpis.schema.json``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import weakref
from typing import TYPE_CHECKING, Any

from gateway.store import Store, Tx

if TYPE_CHECKING:
    import aiomqtt

log = logging.getLogger(__name__)

MIGRATIONS = [
    """
    CREATE TABLE uplink_messages (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        kind       TEXT NOT NULL,
        key        TEXT NOT NULL UNIQUE,
        payload    BLOB NOT NULL,
        created_ts INTEGER NOT NULL
    );
    """,
]

#: Kinds are topic levels: no wildcards, no slashes, and not the uplink's own topics.
_KIND = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
RESERVED = frozenset({"telemetry", "events", "status", "reply", "cmd"})
_BATCH = 16
_IDLE_POLL_S = 5.0

_wakers: weakref.WeakKeyDictionary[Store, asyncio.Event] = weakref.WeakKeyDictionary()


def _waker(store: Store) -> asyncio.Event:
    event = _wakers.get(store)
    if event is None:
        event = _wakers[store] = asyncio.Event()
    return event


async def enqueue(store: Store, tx: Tx, kind: str, key: str, payload: bytes,
                  ts_ms: int) -> bool:
    """Queue ``payload`` for ``<base>/<kind>`` in the caller's transaction ``tx`` (of
    ``store``). False when a message with this ``key`` is queued already (nothing added)."""
    if not _KIND.match(kind) or kind in RESERVED:
        raise ValueError(f"uplink message kind {kind!r} is not allowed: use lower-case "
                         f"letters, digits, - and _, and none of {sorted(RESERVED)}")
    cur = await tx.execute(
        "INSERT OR IGNORE INTO uplink_messages (kind, key, payload, created_ts) "
        "VALUES (?, ?, ?, ?)", (kind, key, payload, ts_ms))
    _waker(store).set()  # the sender reads under the store's lock: after our commit
    return bool(cur.rowcount)


async def pending(store: Store) -> int:
    row = await store.query_one("SELECT COUNT(*) FROM uplink_messages")
    return int(row[0]) if row else 0


class MessageSender:
    """Publishes the queue over one connection (a task of the uplink's session)."""

    def __init__(self, client: aiomqtt.Client, store: Store, base: str,
                 publish_timeout: float) -> None:
        self.client = client
        self.store = store
        self.base = base
        self.publish_timeout = publish_timeout
        self.sent = 0

    async def run(self) -> None:
        waker = _waker(self.store)
        while True:
            waker.clear()
            if not await self.send_once():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(_IDLE_POLL_S):  # not wait_for: see store/outbox.py
                        await waker.wait()

    async def send_once(self) -> int:
        # Read under the store's lock, so a row of a transaction still open is not seen.
        async with self.store.transaction() as tx:
            rows: list[tuple[Any, ...]] = [tuple(r) for r in await tx.conn.execute_fetchall(
                "SELECT id, kind, payload FROM uplink_messages ORDER BY id LIMIT ?",
                (_BATCH,))]
        for row_id, kind, payload in rows:
            await self.client.publish(f"{self.base}/{kind}", bytes(payload), qos=1,
                                      timeout=self.publish_timeout)
            async with self.store.transaction() as tx:
                await tx.execute("DELETE FROM uplink_messages WHERE id = ?", (row_id,))
            self.sent += 1
        return len(rows)

"""The plugins component's own table and outbox consumer, which every site runs, plugins or
not: the last events the gateway saw (``db.recent_events``), and the ``hooks`` cursor where
a plugin added later starts (:class:`hooks.dispatcher.PluginFeed`). Kept apart from the
dispatchers so that a site without plugins does not import them (or pluggy)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.model import Event
    from hooks.db import PluginsContext

#: The outbox consumer of :class:`RecentEvents`; each plugin's own is ``hooks:<plugin>``.
CONSUMER = "hooks"
RECENT_EVENTS_KEPT = 1000
_READ_LIMIT = 100

#: The schema of the plugins component (ComponentSpec.migrations; append-only).
#: Version 1 also created a ``work_orders`` table while the plugins kept work orders; they
#: live in the siteops component now, which moves the rows of a store that has that table
#: and drops it (:meth:`gateway.siteops.workorders.WorkOrders.import_legacy`). No later
#: step refers to the table, so a new store is not given it.
MIGRATIONS = [
    """
    -- The last events the hooks dispatcher saw (the outbox forgets delivered events).
    CREATE TABLE hooks_recent_events (
        seq    INTEGER PRIMARY KEY AUTOINCREMENT,
        id     TEXT NOT NULL UNIQUE,
        type   TEXT NOT NULL,
        device TEXT,
        ts_ms  INTEGER NOT NULL,
        body   TEXT NOT NULL
    );
    """,
]


class RecentEvents:
    """Consumer ``hooks``: remembers the last events for ``db.recent_events`` (the outbox
    forgets delivered events), and marks where a newly added plugin starts."""

    def __init__(self, app: PluginsContext) -> None:
        self.app = app

    async def open(self) -> None:
        await self.app.store.register_consumer(CONSUMER)

    async def run(self) -> None:
        store = self.app.store
        while True:
            batch = await store.read_events(CONSUMER, _READ_LIMIT)
            if not batch:
                # Every commit that adds events wakes it: the timeout is only a fallback,
                # and each one a wake-up of the loop (this runs on every site).
                await store.wait_events(CONSUMER, 5.0)
                continue
            await self._remember([s.event for s in batch])
            await store.ack_events(CONSUMER, batch[-1].rowid)

    async def _remember(self, events: list[Event]) -> None:
        rows = [(e.id, e.type, e.device, e.ts_ms, json.dumps(dict(e.body), default=str))
                for e in events]
        async with self.app.store.transaction() as tx:
            await tx.executemany(
                "INSERT OR IGNORE INTO hooks_recent_events (id, type, device, ts_ms, body) "
                "VALUES (?,?,?,?,?)", rows)
            await tx.execute(
                "DELETE FROM hooks_recent_events WHERE seq <= "
                "(SELECT MAX(seq) FROM hooks_recent_events) - ?", (RECENT_EVENTS_KEPT,))

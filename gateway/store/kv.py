"""A small persistent JSON key-value map per namespace, for state a driver or component keeps
across restarts (open OCPP transactions, a reply cache)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.store.db import Store


class KV:
    """A persistent JSON key-value map in one namespace (see DriverContext.kv)."""

    def __init__(self, store: Store, namespace: str) -> None:
        self._store = store
        self.namespace = namespace

    async def get(self, key: str, default: Any = None) -> Any:
        row = await self._store.query_one(
            "SELECT value FROM kv WHERE namespace = ? AND key = ?", (self.namespace, key)
        )
        return json.loads(row[0]) if row else default

    async def put(self, key: str, value: Any) -> None:
        async with self._store.transaction() as tx:
            await tx.execute(
                "INSERT OR REPLACE INTO kv VALUES (?, ?, ?)",
                (self.namespace, key, json.dumps(value)),
            )

    async def delete(self, key: str) -> None:
        async with self._store.transaction() as tx:
            await tx.execute(
                "DELETE FROM kv WHERE namespace = ? AND key = ?", (self.namespace, key)
            )

    async def items(self) -> list[tuple[str, Any]]:
        rows = await self._store.query(
            "SELECT key, value FROM kv WHERE namespace = ? ORDER BY key", (self.namespace,)
        )
        return [(k, json.loads(v)) for k, v in rows]

"""The SQLite store (store-and-forward buffer, event outbox, state tables)."""

from gateway.store.db import BufferStats, Store, StoredEvent, TelemetryChunk, Tx, read_stats
from gateway.store.schema import register_migrations

__all__ = [
    "BufferStats",
    "Store",
    "StoredEvent",
    "TelemetryChunk",
    "Tx",
    "read_stats",
    "register_migrations",
]

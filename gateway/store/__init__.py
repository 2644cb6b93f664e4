"""The SQLite store (store-and-forward buffer, event outbox, state tables)."""

from gateway.store.db import BufferStats, Store, StoredEvent, TelemetryChunk, Tx, read_stats

__all__ = [
    "BufferStats",
    "Store",
    "StoredEvent",
    "TelemetryChunk",
    "Tx",
    "read_stats",
]

"""Schema migrations, per component.

Each component (``core``, and later ``rules``, ``ocpp``, ...) owns an ordered list of SQL
scripts. ``schema_version`` remembers how many of each have run, so a component can add
tables without touching anyone else's migrations. Scripts are append-only: never edit one that
has shipped, add the next.
"""

from __future__ import annotations

from collections.abc import Sequence

_MIGRATIONS: dict[str, list[str]] = {}


def register_migrations(component: str, steps: Sequence[str]) -> None:
    """Declare a component's migrations. Call at import time, before the store opens."""
    existing = _MIGRATIONS.get(component)
    if existing is not None and list(steps[: len(existing)]) != existing:
        raise ValueError(f"migrations of {component!r} may only be appended to")
    _MIGRATIONS[component] = list(steps)


def migrations() -> dict[str, list[str]]:
    return {name: list(steps) for name, steps in _MIGRATIONS.items()}


register_migrations(
    "core",
    [
        """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
        INSERT INTO meta VALUES ('next_seq', 1), ('acked_seq', 0), ('dropped_total', 0),
                                ('boot_count', 0);
        -- One row holds a chunk of samples with contiguous sequence numbers.
        CREATE TABLE telemetry (
            seq_first INTEGER PRIMARY KEY,
            seq_last  INTEGER NOT NULL,
            ts_first  INTEGER NOT NULL,
            ts_last   INTEGER NOT NULL,
            nbytes    INTEGER NOT NULL,
            payload   BLOB NOT NULL
        );
        CREATE TABLE events (
            rowid  INTEGER PRIMARY KEY AUTOINCREMENT,
            id     TEXT NOT NULL UNIQUE,
            type   TEXT NOT NULL,
            device TEXT,
            ts_ms  INTEGER NOT NULL,
            body   TEXT NOT NULL
        );
        CREATE TABLE event_cursors (consumer TEXT PRIMARY KEY, last_rowid INTEGER NOT NULL);
        CREATE TABLE kv (
            namespace TEXT NOT NULL,
            key       TEXT NOT NULL,
            value     TEXT NOT NULL,
            PRIMARY KEY (namespace, key)
        ) WITHOUT ROWID;
        CREATE TABLE device_status (
            device TEXT PRIMARY KEY,
            status TEXT NOT NULL,
            reason TEXT NOT NULL DEFAULT '',
            ts_ms  INTEGER NOT NULL
        ) WITHOUT ROWID;
        """,
    ],
)

register_migrations(
    "core",
    [
        *migrations()["core"],
        """
        -- store_id: a random id created with the store (see docs/wire-format.md).
        CREATE TABLE store_info (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
        -- Chunks that could not be decoded, kept for inspection (chunk_quarantined event).
        CREATE TABLE telemetry_quarantine (
            seq_first INTEGER PRIMARY KEY,
            seq_last  INTEGER NOT NULL,
            ts_ms     INTEGER NOT NULL,
            reason    TEXT NOT NULL,
            payload   BLOB NOT NULL
        );
        """,
    ],
)

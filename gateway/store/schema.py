"""Schema migrations, per component.

The core owns two lists (``core``: telemetry, outbox, kv; ``status``: the device status
service's flags); every component declares its own in ``ComponentSpec.migrations``.
``schema_version`` remembers how many of each have run, so a component can add tables
without touching anyone else's migrations. Scripts are append-only: never edit one that has
shipped, add the next.

What runs does not depend on which modules happen to be imported: :func:`migrations` asks
the component registry, which imports the built-in components itself.
"""

from __future__ import annotations

CORE_MIGRATIONS: dict[str, list[str]] = {}


def migrations() -> dict[str, list[str]]:
    """The core's migrations, then every registered component's."""
    from gateway import components  # the registry imports the components, which import us

    out = {name: list(steps) for name, steps in CORE_MIGRATIONS.items()}
    for name, steps in components.migrations().items():
        if name in out:
            raise ValueError(f"component {name!r} would replace the core's {name!r} "
                             "migrations; rename the component")
        out[name] = steps
    return out


CORE_MIGRATIONS["core"] = [
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
]

CORE_MIGRATIONS["status"] = [
    """
    CREATE TABLE device_flags (
        device      TEXT PRIMARY KEY,
        link        TEXT,
        maintenance INTEGER NOT NULL DEFAULT 0,
        alarm       INTEGER NOT NULL DEFAULT 0
    ) WITHOUT ROWID;
    """,
]

"""Opening the SQLite file: the path checks, the pragmas, a quick integrity check, the
migrations, the store id; and what to do with a damaged file (``store.on_corrupt``)."""

from __future__ import annotations

import logging
import os
import sqlite3
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import aiosqlite

from gateway.config.models import Durability
from gateway.paths import STATE_DIR_MODE
from gateway.store.errors import EX_CANTCREAT, EX_DATAERR, StoreCorrupt, StoreError
from gateway.store.schema import migrations

if TYPE_CHECKING:
    from gateway.store.db import Tx

log = logging.getLogger(__name__)

#: The WAL is checkpointed every this many pages (4 KiB each: 1 MiB) ...
WAL_AUTOCHECKPOINT_PAGES = 256
#: ... and truncated back to this size after a checkpoint (see the README's file bound).
JOURNAL_SIZE_LIMIT = 1_048_576
_SQLITE_READONLY = 8


def ensure_dir(path: Path, what: str) -> None:
    """Create a directory (and its parents) or raise a one-line :class:`StoreError`. A new
    directory gets mode 0750 whatever the umask; an existing one keeps its mode."""
    existed = path.is_dir()
    try:
        path.mkdir(parents=True, exist_ok=True)
        if not existed:
            os.chmod(path, STATE_DIR_MODE)
    except FileExistsError:
        raise StoreError(f"{what} {path} exists and is not a directory; remove it or point "
                         "the config elsewhere", EX_CANTCREAT) from None
    except OSError as err:
        raise StoreError(f"{what} {path} cannot be created ({err.strerror}); create it "
                         "writable for the fieldgate user or point the config elsewhere",
                         EX_CANTCREAT) from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise StoreError(f"{what} {path} is not writable by this user; fix its owner or mode "
                         "or point the config elsewhere", EX_CANTCREAT)


def prepare_path(path: Path) -> None:
    ensure_dir(path.parent, "store directory")
    if path.is_dir():
        raise StoreError(f"store path {path} is a directory, not a file; set store.path to a "
                         "file name (default <state_dir>/buffer.sqlite3)", EX_CANTCREAT)
    for suffix in ("", "-wal", "-shm"):
        file = Path(f"{path}{suffix}")
        if file.exists() and not os.access(file, os.R_OK | os.W_OK):
            raise read_only(file)


def read_only(file: Path) -> StoreError:
    """The one line for a store file this user cannot write (exit 73)."""
    try:
        st = file.stat()
        try:
            import pwd

            owner = pwd.getpwuid(st.st_uid).pw_name
        except (ImportError, KeyError):
            owner = str(st.st_uid)
        how = f"mode {st.st_mode & 0o777:04o}, owner {owner}"
    except OSError as err:
        how = err.strerror or str(err)
    return StoreError(
        f"store file {file} is read-only for this user ({how}; running as uid {os.getuid()}): "
        "make it writable for the user fieldgate runs as (chown/chmod the file and its "
        "directory), or point store.path elsewhere", EX_CANTCREAT)


def is_read_only(err: BaseException) -> bool:
    """SQLite refused a write because the file (or its file system) is read-only."""
    code = getattr(err, "sqlite_errorcode", None)
    if isinstance(code, int) and (code & 0xFF) == _SQLITE_READONLY:
        return True
    return isinstance(err, sqlite3.OperationalError) and "readonly database" in str(err)


async def connect(path: Path, durability: Durability) -> aiosqlite.Connection:
    try:
        conn = await aiosqlite.connect(path, isolation_level=None)
    except sqlite3.OperationalError as err:
        raise StoreError(f"store {path} cannot be opened ({err}); check its owner and mode",
                         EX_CANTCREAT) from None
    try:
        await conn.execute("PRAGMA busy_timeout=5000")
        await conn.execute("PRAGMA journal_mode=WAL")
        sync = "FULL" if durability is Durability.FULL else "NORMAL"
        await conn.execute(f"PRAGMA synchronous={sync}")
        await conn.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
        await conn.execute(f"PRAGMA journal_size_limit={JOURNAL_SIZE_LIMIT}")
    except BaseException as err:
        await conn.close()
        if is_read_only(err):
            raise read_only(path) from None
        raise
    return conn


async def check(conn: aiosqlite.Connection, path: Path) -> None:
    """``PRAGMA quick_check``: a damaged page anywhere is found now, not by a crash later."""
    async with conn.execute("PRAGMA quick_check(5)") as cur:
        rows = [str(r[0]) for r in await cur.fetchall()]
    if rows != ["ok"]:
        raise StoreCorrupt("; ".join(rows)[:300])


async def migrate(conn: aiosqlite.Connection, path: Path) -> None:
    await conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_version "
        "(component TEXT PRIMARY KEY, version INTEGER NOT NULL)"
    )
    for component, steps in migrations().items():
        async with conn.execute(
            "SELECT version FROM schema_version WHERE component = ?", (component,)
        ) as cur:
            row = await cur.fetchone()
        done = int(row[0]) if row else 0
        if done > len(steps):
            raise StoreError(
                f"store {path} has {component} schema v{done}, newer than this fieldgate "
                f"(v{len(steps)}); upgrade fieldgate or use another store file", EX_DATAERR
            )
        for version in range(done + 1, len(steps) + 1):
            await conn.executescript(
                "BEGIN;\n" + steps[version - 1] + "\n"
                f"INSERT OR REPLACE INTO schema_version VALUES ('{component}', {version});\n"
                "COMMIT;"
            )
            log.info("migrated %s schema to v%d", component, version)


def new_store_id() -> str:
    return uuid.uuid4().hex


async def ensure_store_id(tx: Tx) -> str:
    """The store's random id, created with the store (and given to an older store on its
    first open by this version)."""
    cur = await tx.execute("SELECT value FROM store_info WHERE key = 'store_id'")
    row = await cur.fetchone()
    if row is not None:
        return str(row[0])
    store_id = new_store_id()
    await tx.execute("INSERT INTO store_info VALUES ('store_id', ?)", (store_id,))
    return store_id


def handle_corrupt(path: Path, why: str, policy: str) -> Path:
    """Refuse (raise) or move the damaged file (and its -wal/-shm) aside; returns the new
    name of the damaged file."""
    if policy == "refuse":
        raise StoreError(f"store {path} is damaged ({why}); it was left untouched "
                         "(store.on_corrupt: refuse): move it aside, or set "
                         "store.on_corrupt: quarantine to salvage it", EX_DATAERR)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    moved = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while moved.exists():
        n += 1
        moved = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
    for suffix in ("", "-wal", "-shm"):
        src = Path(f"{path}{suffix}")
        if src.exists():
            os.replace(src, Path(f"{moved}{suffix}"))
    log.error("store %s is damaged (%s): moved it to %s and starting a new store; readable "
              "chunks and events are salvaged into it", path, why, moved)
    return moved

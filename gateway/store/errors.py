"""Why the store cannot open, as one line and an exit code systemd does not restart on.

The exit codes (documented in the README, listed in ``RestartPreventExitStatus`` of
systemd/fieldgate.service) are those of sysexits.h:

- 65 (EX_DATAERR): the store file is damaged and ``store.on_corrupt`` is ``refuse``, or the
  store was written by a newer fieldgate.
- 73 (EX_CANTCREAT): the store path is a directory, the state directory (or the store's
  directory) cannot be created or written, or the store file (or its -wal/-shm) is
  read-only for this user or on a read-only file system.
"""

from __future__ import annotations

import sqlite3

from gateway.errors import StartupError

EX_DATAERR = 65
EX_CANTCREAT = 73

_SQLITE_CORRUPT = 11
_SQLITE_FULL = 13
_SQLITE_NOTADB = 26


class StoreError(StartupError):
    """The store cannot be used as it is; ``str(err)`` is one line saying what, where and
    what to do; ``exit_code`` is 65 or 73."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class StoreCorrupt(Exception):
    """The store file is damaged (SQLite says corrupt, or not a database)."""


def is_corrupt(err: BaseException) -> bool:
    code = getattr(err, "sqlite_errorcode", None)
    if isinstance(code, int) and (code & 0xFF) in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
        return True
    text = str(err).lower()
    return isinstance(err, sqlite3.DatabaseError) and (
        "malformed" in text or "not a database" in text or "corrupt" in text
    )


def is_disk_full(err: BaseException) -> bool:
    code = getattr(err, "sqlite_errorcode", None)
    if isinstance(code, int) and (code & 0xFF) == _SQLITE_FULL:
        return True
    return isinstance(err, sqlite3.OperationalError) and "full" in str(err).lower()

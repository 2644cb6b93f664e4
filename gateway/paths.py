"""The state directory and the buffer file get the same modes whatever the umask.

The service's umask (or an installer's shell) decides nothing here: the state directory is
created 0750 (:func:`gateway.store.opening.ensure_dir`) and the store file 0640, so the
store, the certificates and the control socket are never readable by other users of the
box. Existing paths keep the mode an administrator gave them.
"""

from __future__ import annotations

import os
from pathlib import Path

STATE_DIR_MODE = 0o750
STORE_FILE_MODE = 0o640


def precreate_private_file(path: Path, mode: int = STORE_FILE_MODE) -> None:
    """Create an empty ``path`` with ``mode`` unless it exists (SQLite then opens it and
    gives its -wal and -shm files the same mode)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        return
    try:
        os.fchmod(fd, mode)
    finally:
        os.close(fd)

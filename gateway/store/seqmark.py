"""The durable high-water mark of the sequence: ``<store>.seq``, next to the SQLite file.

The store hands out sequence numbers from blocks it reserves here *before* it commits a row
that uses them: the file is written to a temporary name, fsync'ed, renamed over the old one
and the directory fsync'ed. So whatever happens to the SQLite file afterwards (a power cut
that loses the end of the WAL with ``durability: normal``, a truncated or deleted WAL), no
number at or above the mark was ever used, and a restart continues at the mark. The numbers
between what the database remembers and the mark are skipped and announced (``seq_gap``).

A clean close writes the exact next number (``clean``), so a normal restart skips nothing.
The mark also remembers the ``store_id`` it belongs to and the acknowledged mark at the last
reservation, so a store that lost its content can announce the range the old one held.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

log = logging.getLogger(__name__)

#: Sequence numbers reserved at a time (one fsync per block).
BLOCK = 100_000


@dataclass(frozen=True, slots=True)
class SeqMark:
    store_id: str
    reserved: int  # no number >= reserved was ever handed out
    acked: int  # the acknowledged mark when this was written
    clean: bool  # written by a clean close: reserved is the exact next number


def mark_path(store_path: Path) -> Path:
    return Path(f"{store_path}.seq")


def read_mark(store_path: Path) -> SeqMark | None:
    path = mark_path(store_path)
    try:
        data = json.loads(path.read_text())
        return SeqMark(str(data["store_id"]), int(data["reserved"]), int(data["acked"]),
                       bool(data["clean"]))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as err:
        log.warning("sequence mark %s is unreadable (%s); treating it as missing", path, err)
        return None


def write_mark(store_path: Path, mark: SeqMark) -> None:
    """Replace the mark atomically and durably (blocking: call it in a thread)."""
    path = mark_path(store_path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        f.write(json.dumps(asdict(mark)))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    with contextlib.suppress(OSError):  # some filesystems cannot fsync a directory
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

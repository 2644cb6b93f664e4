"""The managed config versions under ``<state_dir>/config/``, written so that kill -9 at any
moment leaves one whole version in force.

Layout::

    versions/000007.yaml   the YAML text of version 7, exactly as applied (``${VAR}`` kept)
    versions/000007.json   its record: hash, source, time, parent, diff summary
    current.yaml           symlink to the version in force: the daemon runs this path
    state.json             last good version, the apply awaiting its health gate, boot notes
    boot.json              the boot record: which version started and how many times in a row

Every file is written to a temporary name, fsynced, renamed over the old one and the
directory fsynced. The switch of ``current.yaml`` is the one commit point of an apply:
before it the old version is in force, after it the new one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

CURRENT = "current.yaml"
REDACTED = "<redacted>"
_SECRET_KEY = re.compile(r"(password|passwd|secret|token|hmac|private|(^|_)key$)", re.I)
_REFERENCE = re.compile(r"^\s*(\$\{[A-Za-z_][A-Za-z0-9_]*(:-[^}]*)?\}\s*)+$")


def text_hash(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def redact(text: str) -> str:
    """``text`` with every literal secret (a value under a key such as ``password``,
    ``token``, ``secret``, ``hmac``, ``key``) replaced by ``<redacted>``; ``${VAR}`` references are
    kept as they are. Text that is not YAML comes back unchanged."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return text
    spans: list[tuple[int, int]] = []

    def walk(node: yaml.Node, secret: bool) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                walk(value, secret or bool(_SECRET_KEY.search(str(key.value))))
        elif isinstance(node, yaml.SequenceNode):
            for child in node.value:
                walk(child, secret)
        elif secret and isinstance(node, yaml.ScalarNode) and node.value \
                and not _REFERENCE.match(node.value):
            spans.append((node.start_mark.index, node.end_mark.index))

    if root is not None:
        walk(root, False)
    for start, end in sorted(spans, reverse=True):
        text = text[:start] + f'"{REDACTED}"' + text[end:]
    return text


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: str) -> None:
    """Write ``data`` to ``path`` so that a crash leaves the old or the new file whole."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.chmod(tmp, 0o600)  # the config may hold literal secrets
    os.replace(tmp, path)
    _fsync_dir(path.parent)


@dataclass(frozen=True)
class Version:
    number: int
    hash: str
    source: str
    ts_ms: int
    parent: int | None
    summary: str

    def as_dict(self) -> dict[str, Any]:
        return {"version": self.number, "hash": self.hash, "source": self.source,
                "ts_ms": self.ts_ms, "parent": self.parent, "summary": self.summary}


class VersionStore:
    """The managed versions of one gateway (``<state_dir>/config``)."""

    def __init__(self, state_dir: Path, keep: int = 20) -> None:
        self.root = Path(state_dir) / "config"
        self.versions = self.root / "versions"
        self.current_path = self.root / CURRENT
        self.keep = keep

    def ensure(self) -> None:
        self.versions.mkdir(parents=True, exist_ok=True, mode=0o700)

    # -- versions ------------------------------------------------------------------------

    def _file(self, number: int, ext: str) -> Path:
        return self.versions / f"{number:06d}.{ext}"

    def numbers(self) -> list[int]:
        """The versions on disk whose record is complete, oldest first."""
        out = []
        for meta in self.versions.glob("[0-9]*.json"):
            with contextlib.suppress(ValueError):
                number = int(meta.stem)
                if self._file(number, "yaml").exists():
                    out.append(number)
        return sorted(out)

    def text(self, number: int) -> str:
        return self._file(number, "yaml").read_text(encoding="utf-8")

    def path(self, number: int) -> Path:
        return self._file(number, "yaml")

    def record(self, number: int) -> Version:
        data = json.loads(self._file(number, "json").read_text(encoding="utf-8"))
        return Version(data["version"], data["hash"], data["source"], data["ts_ms"],
                       data.get("parent"), data.get("summary", ""))

    def history(self) -> list[Version]:
        return [self.record(n) for n in reversed(self.numbers())]

    def add(self, text: str, source: str, summary: str) -> Version:
        """Store ``text`` as the next version (not yet in force)."""
        self.ensure()
        numbers = self.numbers()
        number = (numbers[-1] if numbers else 0) + 1
        # A version file left by a crash before its record was written is overwritten.
        write_atomic(self._file(number, "yaml"), text)
        version = Version(number, text_hash(text), source, int(time.time() * 1000),
                          self.current(), summary)
        write_atomic(self._file(number, "json"), json.dumps(version.as_dict()))
        return version

    def prune(self, protect: set[int]) -> None:
        """Keep the newest ``keep`` versions (and every version in ``protect``)."""
        numbers = self.numbers()
        for number in numbers[:-self.keep] if self.keep else []:
            if number in protect:
                continue
            for ext in ("json", "yaml"):  # the record first: a version without it is ignored
                with contextlib.suppress(FileNotFoundError):
                    self._file(number, ext).unlink()

    # -- the pointer ---------------------------------------------------------------------

    def current(self) -> int | None:
        """The version in force (None: none managed yet)."""
        try:
            target = os.readlink(self.current_path)
        except OSError:
            return None
        try:
            return int(Path(target).stem)
        except ValueError:
            return None

    def set_current(self, number: int) -> None:
        """Put ``number`` in force: one atomic rename of a symlink, then fsync."""
        if not self.path(number).exists():
            raise FileNotFoundError(self.path(number))
        tmp = self.root / f".{CURRENT}.tmp"
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        os.symlink(f"versions/{number:06d}.yaml", tmp)
        os.replace(tmp, self.current_path)
        _fsync_dir(self.root)

    # -- state and boot record -----------------------------------------------------------

    def _read_json(self, name: str) -> dict[str, Any]:
        try:
            data = json.loads((self.root / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def state(self) -> dict[str, Any]:
        return self._read_json("state.json")

    def write_state(self, state: dict[str, Any]) -> None:
        self.ensure()
        write_atomic(self.root / "state.json", json.dumps(state))

    def update_state(self, **changes: Any) -> dict[str, Any]:
        state = {**self.state(), **changes}
        self.write_state({k: v for k, v in state.items() if v is not None})
        return state

    def boot_record(self) -> dict[str, Any]:
        return self._read_json("boot.json")

    def write_boot_record(self, version: int | None, starts: int) -> None:
        self.ensure()
        write_atomic(self.root / "boot.json", json.dumps({"version": version, "starts": starts}))

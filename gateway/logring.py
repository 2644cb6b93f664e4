"""Remote logs: the last log lines in memory, and log levels raised for a while.

A technician far from the box asks for ``logs.tail`` (over MQTT, the control socket or the
HTTP API) instead of logging in for journalctl. The ring keeps the newest records within
:data:`RING_LINES` lines and :data:`RING_BYTES` bytes of message text, whatever the level of
the journal; it holds what the loggers let through, so ``logs.level`` (say ``drivers.modbus``
at DEBUG for ten minutes) makes both the ring and the journal more talkative, and reverts by
itself when its ``ttl`` runs out, so a forgotten DEBUG does not fill the disk.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from gateway.commands import Command, CommandError

RING_LINES = 5_000
RING_BYTES = 2_000_000
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
Level = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


@dataclass(frozen=True, slots=True)
class Entry:
    ts_ms: int
    levelno: int
    logger: str
    msg: str

    def as_dict(self) -> dict[str, Any]:
        return {"ts": self.ts_ms, "level": logging.getLevelName(self.levelno),
                "logger": self.logger, "msg": self.msg}


class LogRing(logging.Handler):
    """A bounded ring of formatted records (tracebacks included in ``msg``)."""

    def __init__(self, max_lines: int = RING_LINES, max_bytes: int = RING_BYTES) -> None:
        super().__init__(logging.NOTSET)
        self.max_bytes = max_bytes
        self.entries: deque[Entry] = deque(maxlen=max_lines)
        self.bytes = 0
        self.dropped = 0
        self._formatter = logging.Formatter()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = record.getMessage()
            if record.exc_info:
                msg += "\n" + self._formatter.formatException(record.exc_info)
        except Exception:  # a bad format string must not break logging
            msg = str(record.msg)
        entry = Entry(int(record.created * 1000), record.levelno, record.name, msg)
        if len(self.entries) == self.entries.maxlen:
            self._forget(self.entries[0])
        self.entries.append(entry)
        self.bytes += len(msg)
        while self.bytes > self.max_bytes and len(self.entries) > 1:
            self._forget(self.entries.popleft())

    def _forget(self, entry: Entry) -> None:
        self.bytes -= len(entry.msg)
        self.dropped += 1

    def tail(self, lines: int, level: int = logging.NOTSET, since_ms: int | None = None,
             logger: str | None = None) -> list[Entry]:
        """The newest ``lines`` entries at ``level`` or above, oldest first."""
        out: list[Entry] = []
        for entry in reversed(self.entries):
            if since_ms is not None and entry.ts_ms < since_ms:
                break
            if entry.levelno < level:
                continue
            if logger and not (entry.logger == logger or entry.logger.startswith(logger + ".")):
                continue
            out.append(entry)
            if len(out) >= lines:
                break
        out.reverse()
        return out


_RING: LogRing | None = None


def ring() -> LogRing:
    """The process's ring, attached to the root logger on first use."""
    global _RING
    if _RING is None:
        _RING = LogRing()
    root = logging.getLogger()
    if _RING not in root.handlers:
        root.addHandler(_RING)
    return _RING


class LevelOverrides:
    """Logger levels raised for a while; each reverts to what it was when its ttl ends."""

    def __init__(self) -> None:
        self._original: dict[str, int] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self.until_ms: dict[str, int] = {}

    def set(self, name: str, level: int, ttl: float) -> None:
        logger = logging.getLogger(name or None)
        key = logger.name
        self._original.setdefault(key, logger.level)
        old = self._timers.pop(key, None)
        if old is not None:
            old.cancel()
        logger.setLevel(level)
        self._timers[key] = asyncio.get_running_loop().call_later(ttl, self.revert, key)
        self.until_ms[key] = int((time.time() + ttl) * 1000)

    def revert(self, key: str) -> None:
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        self.until_ms.pop(key, None)
        if key in self._original:
            logger = logging.getLogger(None if key == "root" else key)
            logger.setLevel(self._original.pop(key))
            logging.getLogger(__name__).info("log level of %s back to %s", key,
                                             logging.getLevelName(logger.level))

    def revert_all(self) -> None:
        for key in list(self._original):
            self.revert(key)


OVERRIDES = LevelOverrides()


class TailArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lines: Annotated[int, Field(ge=1, le=RING_LINES)] = 100
    level: Level = "DEBUG"
    since: int | None = Field(None, description="Only entries at or after this time (ms).")
    logger: str | None = Field(None, description="Only this logger and its children.")


class LevelArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    logger: str = Field("", description="Logger name, e.g. drivers.modbus; empty: the root.")
    level: Level
    ttl: Annotated[float, Field(gt=0, le=86_400)] = Field(
        600.0, description="Seconds until the level reverts by itself (at most a day).")


def commands() -> list[Command]:
    ring()

    async def logs_tail(args: TailArgs) -> dict[str, Any]:
        """The newest log lines kept in memory (filter by level, time and logger)."""
        buf = ring()
        entries = buf.tail(args.lines, logging.getLevelName(args.level), args.since,
                           args.logger)
        return {"lines": [e.as_dict() for e in entries], "kept": len(buf.entries),
                "dropped": buf.dropped}

    async def logs_level(args: LevelArgs) -> dict[str, Any]:
        """Set a logger's level for ttl seconds; it then reverts by itself."""
        if args.logger and not all(part for part in args.logger.split(".")):
            raise CommandError("bad_arguments", f"{args.logger!r} is not a logger name")
        OVERRIDES.set(args.logger, logging.getLevelName(args.level), args.ttl)
        name = logging.getLogger(args.logger or None).name
        logging.getLogger(__name__).warning(
            "log level of %s set to %s for %g s (logs.level)", name, args.level, args.ttl)
        return {"logger": name, "level": args.level, "until": OVERRIDES.until_ms[name]}

    return [
        Command("logs.tail", TailArgs, logs_tail, logs_tail.__doc__ or "", read_only=True),
        Command("logs.level", LevelArgs, logs_level, logs_level.__doc__ or ""),
    ]


__all__ = ["LEVELS", "OVERRIDES", "LogRing", "commands", "ring"]

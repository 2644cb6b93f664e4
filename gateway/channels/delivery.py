"""Routing events to channels and delivering them: durable, retried, idempotent, isolated.

The router consumes the outbox (consumer ``channels``). For each event a route matches it
renders a message per target channel and inserts it into ``channel_queue`` (unique per
channel and event id, skipped when ``channel_delivered`` already has it), then acks the
event. Each channel has its own sender task that works through its own rows oldest first:
a channel that is down backs off and retries without holding up any other channel, and a
crash at any point re-sends at most the message that was in flight.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from gateway.channels.base import Channel, DeliveryError, Message
from gateway.clock import Clock
from gateway.model import Event
from gateway.supervisor import backoff_delay

if TYPE_CHECKING:
    from gateway.channels.component import ChannelsSection, Route, Template
    from gateway.store import Store

log = logging.getLogger(__name__)

CONSUMER = "channels"
DELIVERED_KEPT_MS = 7 * 86_400_000

#: The schema of the channels component (ComponentSpec.migrations; append-only).
MIGRATIONS = [
    """
    CREATE TABLE channel_queue (
        seq        INTEGER PRIMARY KEY AUTOINCREMENT,
        channel    TEXT NOT NULL,
        event_id   TEXT NOT NULL,
        message    TEXT NOT NULL,
        attempts   INTEGER NOT NULL DEFAULT 0,
        next_ms    INTEGER NOT NULL DEFAULT 0,
        last_error TEXT,
        UNIQUE (channel, event_id)
    );
    CREATE TABLE channel_delivered (
        channel  TEXT NOT NULL,
        event_id TEXT NOT NULL,
        status   TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        ts_ms    INTEGER NOT NULL,
        PRIMARY KEY (channel, event_id)
    ) WITHOUT ROWID;
    """,
]


class _Fields(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def fields_of(event: Event, gateway: str) -> _Fields:
    ts = datetime.fromtimestamp(event.ts_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    out = _Fields({k: v for k, v in event.body.items() if isinstance(k, str)})
    out.update(id=event.id, type=event.type, ts=ts, gateway=gateway)
    out.setdefault("device", event.device or "")
    return out


def render(template: Template, event: Event, gateway: str) -> tuple[str, str]:
    values = fields_of(event, gateway)
    return template.title.format_map(values), template.text.format_map(values)


def matches(route: Route, event: Event) -> bool:
    if event.type not in route.events:
        return False
    body = event.body
    if route.severities and str(body.get("severity", "")) not in route.severities:
        return False
    device = str(body.get("device") or event.device or "")
    return not route.devices or any(fnmatch.fnmatchcase(device, g) for g in route.devices)


class Router:
    def __init__(self, store: Store, section: ChannelsSection, gateway: str,
                 wake: Mapping[str, asyncio.Event]) -> None:
        self.store = store
        self.section = section
        self.gateway = gateway
        self.wake = wake
        self.routed = 0

    def messages(self, event: Event) -> dict[str, Message]:
        """Channel name -> message for one event (the first matching route per channel)."""
        out: dict[str, Message] = {}
        for route in self.section.routes:
            if not matches(route, event):
                continue
            template = self.section.template_for(route, event.type)
            title, text = render(template, event, self.gateway)
            msg = Message(event.id, event.type, title, text,
                          str(event.body.get("severity") or "") or None,
                          event.body.get("device") or event.device, event.to_wire())
            for channel in route.channels:
                out.setdefault(channel, msg)
        return out

    async def run(self) -> None:
        while True:
            batch = await self.store.read_events(CONSUMER, 200)
            if not batch:
                # Every commit that adds events wakes it: the timeout is only a fallback
                # (each one a wake-up of the loop).
                await self.store.wait_events(CONSUMER, 5.0)
                continue
            rows = [(channel, s.event.id, msg.to_json())
                    for s in batch for channel, msg in self.messages(s.event).items()]
            if rows:
                async with self.store.transaction() as tx:
                    await tx.executemany(
                        "INSERT OR IGNORE INTO channel_queue (channel, event_id, message) "
                        "SELECT ?1, ?2, ?3 WHERE NOT EXISTS (SELECT 1 FROM channel_delivered "
                        "WHERE channel = ?1 AND event_id = ?2)", rows)
                self.routed += len(rows)
                for channel in {r[0] for r in rows}:
                    self.wake[channel].set()
            await self.store.ack_events(CONSUMER, batch[-1].rowid)


class Sender:
    """Delivers one channel's queue in order, with capped, jittered exponential backoff."""

    def __init__(self, store: Store, channel: Channel, section: ChannelsSection,
                 wake: asyncio.Event, clock: Clock) -> None:
        self.store = store
        self.channel = channel
        self.section = section
        self.wake = wake
        self.clock = clock  # the retry schedule runs on it (a FakeClock in tests)
        self.now_ms = clock.now_ms
        self.sent = self.failed = self.retries = 0
        self.last_error: str | None = None

    async def run(self) -> None:
        name = self.channel.name
        while True:
            self.wake.clear()  # before the query, so an insert after it is not missed
            row = await self.store.query_one(
                "SELECT seq, event_id, message, attempts, next_ms FROM channel_queue "
                "WHERE channel = ? ORDER BY seq LIMIT 1", (name,))
            if row is None:
                await self.wake.wait()
                continue
            seq, event_id, text, attempts, next_ms = row
            wait_s = (next_ms - self.now_ms()) / 1000
            if wait_s > 0:
                await self.clock.sleep(wait_s)
            await self._attempt(seq, event_id, Message.from_json(text), attempts + 1)

    async def _attempt(self, seq: int, event_id: str, message: Message, attempt: int) -> None:
        name = self.channel.name
        try:
            await self.channel.send(message, self.now_ms())
        except DeliveryError as err:
            self.last_error = str(err)
            if err.retryable and attempt < self.section.max_attempts:
                delay = self.backoff(attempt)
                self.retries += 1
                log.warning("channel %s: delivery of event %s failed (attempt %d: %s); "
                            "retrying in %.1f s. Other channels are not affected",
                            name, event_id, attempt, err, delay)
                await self._retry_later(seq, attempt, delay, str(err))
                return
            self.failed += 1
            log.error("channel %s: giving up on event %s after %d attempt(s): %s. Check the "
                      "target's url and secret in channels.targets.%s",
                      name, event_id, attempt, err, name)
            await self._finish(seq, event_id, "failed", attempt)
            return
        self.sent += 1
        await self._finish(seq, event_id, "sent", attempt)

    def backoff(self, attempt: int) -> float:
        return backoff_delay(attempt, self.section.retry_initial, self.section.retry_max)

    async def _retry_later(self, seq: int, attempt: int, delay: float, error: str) -> None:
        async with self.store.transaction() as tx:
            await tx.execute(
                "UPDATE channel_queue SET attempts = ?, next_ms = ?, last_error = ? "
                "WHERE seq = ?", (attempt, self.now_ms() + int(delay * 1000), error[:500], seq))

    async def _finish(self, seq: int, event_id: str, status: str, attempts: int) -> None:
        now = self.now_ms()
        async with self.store.transaction() as tx:
            await tx.execute("DELETE FROM channel_queue WHERE seq = ?", (seq,))
            await tx.execute("INSERT OR REPLACE INTO channel_delivered VALUES (?,?,?,?,?)",
                             (self.channel.name, event_id, status, attempts, now))
            await tx.execute("DELETE FROM channel_delivered WHERE ts_ms < ?",
                             (now - DELIVERED_KEPT_MS,))

    async def stats(self) -> dict[str, Any]:
        row = await self.store.query_one(
            "SELECT COUNT(*) FROM channel_queue WHERE channel = ?", (self.channel.name,))
        return {"type": self.channel.channel_type, "pending": int(row[0]) if row else 0,
                "sent": self.sent, "failed": self.failed, "retries": self.retries,
                "last_error": self.last_error}
